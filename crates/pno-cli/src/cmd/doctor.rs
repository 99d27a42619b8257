//! `pno doctor`: what this machine offers the toolkit — threads, memory, CPU features, a font
//! and Chromium for reports, a CUDA driver — each ok/warn/fail with a detail (the same report
//! type as `pno serve --check`).

use anyhow::Result;
use clap::Args;
use pno_serve::preflight::{Check, Report, Status};
use serde_json::json;

/// Less memory than this (the tighter of the budget and what is available now) fails.
const MIN_MEMORY: u64 = 1 << 30;

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  pno doctor
  pno --json doctor

Checks: threads (available parallelism), memory (cgroup v2 memory.max, cgroup v1
memory.limit_in_bytes, /proc/meminfo; fail under 1 GiB), CPU features (x86: avx2, fma,
avx512f; aarch64: neon), a TrueType font for plot labels (PNO_FONT or the usual paths),
Chromium for rendering HTML reports, and a CUDA driver (/proc/driver/nvidia/version or
libcuda.so) against whether this binary was built with the `cuda` feature. Exit 1 only when
one fails.")]
pub(crate) struct DoctorArgs {}

fn threads() -> (Check, usize) {
    match std::thread::available_parallelism() {
        Ok(n) => {
            let n = n.get();
            let st = if n >= 2 { Status::Ok } else { Status::Warn };
            (
                Check::new(
                    "threads",
                    st,
                    format!("{n} available (rayon, burn's flex backend)"),
                ),
                n,
            )
        }
        Err(e) => (
            Check::new("threads", Status::Warn, format!("cannot tell: {e}")),
            0,
        ),
    }
}

fn memory() -> (Check, serde_json::Value) {
    let budget = pno_core::resources::memory_budget();
    let avail = pno_core::resources::mem_available();
    let mib = |b: u64| format!("{:.0} MiB", b as f64 / 1048576.0);
    let usable = match (budget.map(|b| b.bytes), avail) {
        (Some(b), Some(a)) => Some(b.min(a)),
        (b, a) => b.or(a),
    };
    let detail = format!(
        "budget {} ({}), available now {}",
        budget.map_or("unknown".into(), |b| mib(b.bytes)),
        budget.map_or("none detected", |b| b.source),
        avail.map_or("unknown".into(), mib)
    );
    let st = match usable {
        None => Status::Warn,
        Some(u) if u < MIN_MEMORY => Status::Fail,
        Some(_) => Status::Ok,
    };
    let detail = if st == Status::Fail {
        format!("{detail}: below 1 GiB")
    } else {
        detail
    };
    (
        Check::new("memory", st, detail),
        json!({
            "budget_bytes": budget.map(|b| b.bytes),
            "source": budget.map(|b| b.source),
            "available_bytes": avail,
            "bytes": usable,
        }),
    )
}

fn cpu() -> (Check, Vec<&'static str>) {
    #[allow(unused_mut)]
    let mut have: Vec<&'static str> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            have.push("avx2");
        }
        if std::arch::is_x86_feature_detected!("fma") {
            have.push("fma");
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            have.push("avx512f");
        }
        let st = if have.contains(&"avx2") && have.contains(&"fma") {
            Status::Ok
        } else {
            Status::Warn
        };
        let detail = format!(
            "x86_64 with {}{}",
            if have.is_empty() {
                "none of avx2, fma, avx512f".to_string()
            } else {
                have.join(", ")
            },
            if st == Status::Warn {
                " (without avx2 and fma the CPU kernels run slower)"
            } else {
                ""
            }
        );
        (Check::new("cpu", st, detail), have)
    }
    #[cfg(target_arch = "aarch64")]
    {
        let neon = std::arch::is_aarch64_feature_detected!("neon");
        if neon {
            have.push("neon");
        }
        let st = if neon { Status::Ok } else { Status::Warn };
        let detail = if neon {
            "aarch64 with neon"
        } else {
            "aarch64 without neon"
        };
        (Check::new("cpu", st, detail), have)
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        (
            Check::new(
                "cpu",
                Status::Warn,
                format!("{}: SIMD features not checked", std::env::consts::ARCH),
            ),
            have,
        )
    }
}

/// The font the report plots would use (`PNO_FONT`, then `pno_bench::plots::FONT_CANDIDATES`).
fn font() -> Check {
    let env = std::env::var("PNO_FONT").ok();
    let found = env
        .iter()
        .map(String::as_str)
        .chain(pno_bench::plots::FONT_CANDIDATES.iter().copied())
        .find(|p| std::path::Path::new(p).is_file());
    match found {
        Some(p) => Check::new("font", Status::Ok, format!("{p} (plot labels)")),
        None => Check::new(
            "font",
            Status::Warn,
            "no TrueType font for plot labels: `pno bench` reports fail to draw plots (install fonts-dejavu-core, or set PNO_FONT=/path/to/font.ttf)",
        ),
    }
}

/// Chromium as the report render check looks for it: the first of chromium, chromium-browser,
/// google-chrome on PATH that answers `--version`.
fn chromium() -> Check {
    for b in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(o) = std::process::Command::new(b).arg("--version").output()
            && o.status.success()
        {
            let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
            return Check::new("chromium", Status::Ok, format!("{b}: {v}"));
        }
    }
    Check::new(
        "chromium",
        Status::Warn,
        "not found (chromium, chromium-browser or google-chrome on PATH): HTML reports are written but cannot be rendered or printed to PDF here",
    )
}

/// The NVIDIA driver: `/proc/driver/nvidia/version`'s first line, or a libcuda.so path.
fn cuda_driver() -> Option<String> {
    if let Ok(t) = std::fs::read_to_string("/proc/driver/nvidia/version") {
        return Some(t.lines().next().unwrap_or("").trim().to_string());
    }
    [
        "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
        "/usr/lib/aarch64-linux-gnu/libcuda.so.1",
        "/usr/lib64/libcuda.so.1",
        "/usr/lib/libcuda.so.1",
        "/usr/local/cuda/compat/libcuda.so.1",
        "/usr/lib/wsl/lib/libcuda.so.1",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .map(str::to_string)
}

fn cuda() -> (Check, serde_json::Value) {
    let built = cfg!(feature = "cuda");
    let driver = cuda_driver();
    let (st, detail) = match (&driver, built) {
        (Some(d), true) => (Status::Ok, format!("driver {d}; built with cuda")),
        (Some(d), false) => (
            Status::Warn,
            format!("driver {d}, but this binary was built without the `cuda` feature (CPU only)"),
        ),
        (None, true) => (
            Status::Warn,
            "built with cuda but no NVIDIA driver found (/proc/driver/nvidia/version, libcuda.so): --device cuda will fail".to_string(),
        ),
        (None, false) => (
            Status::Ok,
            "no NVIDIA driver; built without the `cuda` feature (CPU only)".to_string(),
        ),
    };
    (
        Check::new("cuda", st, detail),
        json!({ "driver": driver, "built_with_cuda": built }),
    )
}

pub(crate) fn run(_args: DoctorArgs, json_out: bool) -> Result<()> {
    let (t, n) = threads();
    let (m, mem) = memory();
    let (c, features) = cpu();
    let (g, gpu) = cuda();
    let report = Report {
        checks: vec![t, m, c, font(), chromium(), g],
    };
    if json_out {
        println!(
            "{}",
            json!({
                "ok": report.passed(),
                "checks": report.checks,
                "threads": n,
                "memory": mem,
                "cpu_features": features,
                "cuda": gpu,
            })
        );
    } else {
        print!("{}", report.to_text("doctor"));
    }
    match report.failures() {
        None => Ok(()),
        Some(f) => anyhow::bail!("doctor: {f}"),
    }
}
