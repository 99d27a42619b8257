//! The footprint estimate against a real measurement: a fresh child process (this test binary
//! re-run on [`probe`] alone) loads a run folder and answers one request; the growth of its peak
//! resident memory (`VmHWM`) over its resident memory before the load is what the estimate
//! must match within a stated factor.

use std::collections::BTreeMap;
use std::path::Path;

use pno_core::sha256_hex;
use pno_models::burn::tensor::Device;
use pno_models::config::{BackboneSpec, ModelConfig};
use pno_models::laplace::LaplacePosterior;
use pno_models::weights::named_tensors;
use pno_run::{
    DataSpec, FORMAT, FootprintAsk, ModelFile, Normalizers, PredictRequest, RunDir, load_trained,
    to_safetensors, write_json,
};

const PROBE_ENV: &str = "PNO_FOOTPRINT_PROBE";

/// Writes a run folder for a freshly initialised model of `cfg` on `grid` (one channel in and
/// out), with an identity Laplace posterior for `laplace`.
pub(crate) fn write_run(dir: &Path, cfg: &ModelConfig, grid: &[usize]) {
    let spec = cfg.validate(1, 1, grid).unwrap();
    let device = Device::flex();
    let model = spec.init(1, &device);
    let bytes = to_safetensors(&named_tensors(&model), BTreeMap::new()).unwrap();
    let run = RunDir::new(dir);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(run.weights(), &bytes).unwrap();
    if spec.kind == pno_models::Kind::Laplace {
        let BackboneSpec::Fno(f) = &spec.backbone else {
            panic!("laplace needs an fno backbone")
        };
        let features = if f.projection_channels > 0 {
            f.projection_channels
        } else {
            f.hidden_channels
        } + 1;
        let mut eigvecs = vec![0.0; features * features];
        (0..features).for_each(|i| eigvecs[i * features + i] = 1.0);
        let post = LaplacePosterior {
            features,
            eigvecs,
            eigvals: vec![1.0; features],
            sigma_obs: 0.1,
            prior_precision: 1.0,
            log_evidence: 0.0,
        };
        write_json(&run.laplace(), &post).unwrap();
    }
    let file = ModelFile {
        format: FORMAT.into(),
        model: spec,
        train: serde_json::json!({"seed": 1}),
        data: DataSpec {
            x: "x".into(),
            y: "y".into(),
            n_train: None,
            n_test: 0,
            val_fraction: 0.1,
            subsample: 1,
            normalize: false,
            check: false,
            domain_length: 1.0,
            periodic: false,
            n_calibration: 0,
            window: None,
        },
        in_channels: 1,
        out_channels: 1,
        grid: grid.to_vec(),
        weights_sha256: sha256_hex(&bytes),
        spread_scale: 1.0,
        calibration: None,
    };
    write_json(&run.model(), &file).unwrap();
    write_json(&run.normalizer(), &Normalizers { x: None, y: None }).unwrap();
}

/// One measurement: `dir` loaded and asked `rows` inputs × `draws` draws, `batch` per pass.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ask {
    pub(crate) rows: usize,
    pub(crate) draws: usize,
    pub(crate) batch: usize,
}

/// Child side: runs only when the parent set [`PROBE_ENV`] (`DIR ROWS DRAWS BATCH`).
#[test]
fn probe() {
    let Ok(spec) = std::env::var(PROBE_ENV) else {
        return;
    };
    let mut it = spec.split(' ');
    let dir = it.next().unwrap().to_string();
    let mut num = || it.next().unwrap().parse::<usize>().unwrap();
    let (rows, draws, batch) = (num(), num(), num());
    let (before, peak_before) = pno_core::resources::rss_bytes().unwrap();
    let device = Device::flex();
    let t = load_trained(Path::new(&dir), &device).unwrap();
    let grid = t.file.grid.clone();
    let p: usize = grid.iter().product();
    let x: Vec<f32> = (0..rows * p).map(|i| (i as f32 * 0.37).sin()).collect();
    let out = t
        .predict(
            &PredictRequest {
                x: &x,
                n: rows,
                grid: &grid,
                n_samples: draws,
                seed: 3,
                batch,
                cancel: None,
            },
            &device,
        )
        .unwrap();
    assert!(out.mean.iter().all(|v| v.is_finite()));
    let (_, peak) = pno_core::resources::rss_bytes().unwrap();
    println!(
        "FOOTPRINT_MEASURED {} {} {}",
        peak.saturating_sub(before),
        before,
        peak_before
    );
}

/// Parent side: the peak resident growth of a fresh process answering `ask` with the run in
/// `dir`, bytes.
pub(crate) fn measure(dir: &Path, ask: Ask) -> u64 {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(&exe)
        .args([
            "footprint::probe",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            PROBE_ENV,
            format!("{} {} {} {}", dir.display(), ask.rows, ask.draws, ask.batch),
        )
        .output()
        .unwrap_or_else(|e| panic!("running the probe {}: {e}", exe.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "probe failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find_map(|l| l.split_once("FOOTPRINT_MEASURED ").map(|(_, m)| m))
        .unwrap_or_else(|| panic!("no measurement in {text}"));
    line.split(' ').next().unwrap().parse().unwrap()
}

/// The estimate for `ask` with the run in `dir`.
pub(crate) fn estimate(dir: &Path, ask: Ask) -> pno_run::Footprint {
    let t = load_trained(dir, &Device::flex()).unwrap();
    let grid = t.file.grid.clone();
    t.footprint(FootprintAsk {
        rows: ask.rows,
        draws: ask.draws,
        grid: &grid,
        batch: ask.batch,
    })
}

fn fno(kind: &str, hidden: usize, lift: usize, proj: usize, modes: usize) -> ModelConfig {
    ModelConfig {
        kind: Some(kind.into()),
        hidden_channels: Some(hidden),
        n_layers: Some(4),
        n_modes: Some(vec![modes, modes]),
        lifting_channels: Some(lift),
        projection_channels: Some(proj),
        n_members: (kind == "ensemble").then_some(3),
        gaussian_head: (kind == "ensemble").then_some(true),
        ..Default::default()
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / 1048576.0
}

fn ask(rows: usize, draws: usize, batch: usize) -> Ask {
    Ask { rows, draws, batch }
}

/// Every kind on 64², at sizes where the estimate is tens of MiB or more (allocator noise is a
/// few MiB): activation-bound requests, output-bound ones (many draws) and a load-bound model
/// (large spectral weights). The estimate is meant to be on the safe side: within [0.75, 2] ×
/// the measured growth (1.0–1.6 × on the 2-core dev machine, BENCHMARKS.md).
#[test]
fn estimates_match_measured_resident_growth() {
    let deeponet = ModelConfig {
        kind: Some("deeponet".into()),
        hidden_channels: Some(128),
        n_layers: Some(3),
        basis_size: Some(64),
        ..Default::default()
    };
    let cases: Vec<(&str, ModelConfig, Ask)> = vec![
        (
            "fno 32/256/256",
            fno("fno", 32, 256, 256, 12),
            ask(16, 8, 16),
        ),
        (
            "pno_d 16/32/32",
            fno("pno_d", 16, 32, 32, 12),
            ask(16, 8, 8),
        ),
        (
            "mc_dropout 32/64/64",
            fno("mc_dropout", 32, 64, 64, 12),
            ask(16, 4, 16),
        ),
        (
            "pno_r 16/32/32, 64 draws",
            fno("pno_r", 16, 32, 32, 12),
            ask(64, 64, 16),
        ),
        (
            "laplace 16/64/64",
            fno("laplace", 16, 64, 64, 12),
            ask(16, 8, 16),
        ),
        (
            "vi_pno 64/16/16",
            fno("vi_pno", 64, 16, 16, 12),
            ask(16, 2, 16),
        ),
        (
            "ensemble 32/64/64",
            fno("ensemble", 32, 64, 64, 12),
            ask(16, 8, 16),
        ),
        ("deeponet 128/64", deeponet, ask(64, 32, 16)),
        (
            "fno 64/16/16, 32 modes",
            fno("fno", 64, 16, 16, 32),
            ask(1, 1, 1),
        ),
    ];
    let mut report = Vec::new();
    for (name, cfg, ask) in cases {
        let dir = tempfile::tempdir().unwrap();
        write_run(dir.path(), &cfg, &[64, 64]);
        let est = estimate(dir.path(), ask);
        let got = measure(dir.path(), ask);
        let ratio = est.total as f64 / got as f64;
        report.push(format!(
            "{name} ({} × {} draws, batch {}): estimate {:.1} MiB (params {:.1}, activations {:.1}, outputs {:.1}, load {:.1}), measured {:.1} MiB, ratio {ratio:.2}",
            ask.rows,
            ask.draws,
            ask.batch,
            mib(est.total),
            mib(est.params_bytes),
            mib(est.activations_bytes),
            mib(est.outputs_bytes),
            mib(est.load_bytes),
            mib(got)
        ));
        assert!((0.75..=2.0).contains(&ratio), "{}", report.join("\n"));
    }
    println!("{}", report.join("\n"));
}

/// The BENCHMARKS.md table: every shipped `configs/darcy{16,64}_*.toml` model, freshly
/// initialised on its grid, answering the server's default worst case (64 inputs × 256 draws,
/// 16 per pass). Slow (minutes): `cargo test -p pno-run --test it footprint::shipped -- --ignored
/// --nocapture`.
#[test]
#[ignore = "benchmark table; minutes of CPU"]
fn shipped_configs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            (n.starts_with("darcy16_") || n.starts_with("darcy64_")) && n.ends_with(".toml")
        })
        .collect();
    files.sort();
    let ask = ask(64, 256, 16);
    println!(
        "| config | params MiB | activations MiB | outputs MiB | estimate MiB | measured MiB | ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let table: toml::Table = text.parse().unwrap();
        let cfg: ModelConfig = table["model"].clone().try_into().unwrap();
        let name = f.file_stem().unwrap().to_string_lossy().to_string();
        let n = if name.starts_with("darcy16") { 16 } else { 64 };
        let dir = tempfile::tempdir().unwrap();
        write_run(dir.path(), &cfg, &[n, n]);
        let est = estimate(dir.path(), ask);
        let got = measure(dir.path(), ask);
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} |",
            mib(est.params_bytes),
            mib(est.activations_bytes),
            mib(est.outputs_bytes),
            mib(est.total),
            mib(got),
            est.total as f64 / got as f64
        );
    }
}
