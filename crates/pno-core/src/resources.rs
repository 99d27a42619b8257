//! Process readings (resident memory and its peak, CPU time) and the memory this process may
//! use: the tightest cgroup v2 `memory.max` on the way from the
//! process's cgroup to the root, else the tightest cgroup v1 `memory.limit_in_bytes` (a value
//! ≥ 2^62 means unlimited), else `/proc/meminfo`'s `MemTotal`. The parsers are pure functions of
//! the files' text, so every rule is tested without a container.
//!
//! ```
//! use pno_core::resources::{parse_v1_limit, parse_v2_max};
//! assert_eq!(parse_v2_max("max\n"), Some(None));
//! assert_eq!(parse_v2_max("1073741824\n"), Some(Some(1 << 30)));
//! assert_eq!(parse_v1_limit("9223372036854771712\n"), Some(None)); // unlimited
//! ```

use std::path::{Path, PathBuf};

/// A memory budget and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget {
    /// Bytes.
    pub bytes: u64,
    /// `cgroup_v2`, `cgroup_v1` or `meminfo`.
    pub source: &'static str,
}

/// cgroup v1 writes "no limit" as a huge page-aligned number; anything from 2^62 up is that.
const V1_UNLIMITED: u64 = 1 << 62;

/// A cgroup v2 `memory.max`: `Some(None)` for `max` (unlimited), `Some(Some(bytes))`, or
/// `None` when it is neither.
pub fn parse_v2_max(text: &str) -> Option<Option<u64>> {
    match text.trim() {
        "max" => Some(None),
        t => t.parse().ok().map(Some),
    }
}

/// A cgroup v1 `memory.limit_in_bytes`: `Some(None)` when unlimited (≥ 2^62).
pub fn parse_v1_limit(text: &str) -> Option<Option<u64>> {
    let v: u64 = text.trim().parse().ok()?;
    Some((v < V1_UNLIMITED).then_some(v))
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    meminfo_field(text, "MemTotal:")
}

/// `MemAvailable` of `/proc/meminfo` (what new work can use without swapping), in bytes.
pub fn parse_meminfo_available(text: &str) -> Option<u64> {
    meminfo_field(text, "MemAvailable:")
}

/// `MemAvailable` of this machine's `/proc/meminfo`, bytes; `None` off Linux.
pub fn mem_available() -> Option<u64> {
    parse_meminfo_available(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

/// A `NAME: N kB` line of `/proc/meminfo`, in bytes.
fn meminfo_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let mut it = line[name.len()..].split_whitespace();
    let n: u64 = it.next()?.parse().ok()?;
    match it.next() {
        Some("kB") | None => n.checked_mul(1024),
        Some(_) => None,
    }
}

/// The cgroup paths of `/proc/self/cgroup`: (the v2 path from `0::PATH`, the v1 path of the
/// `memory` controller).
pub fn cgroup_paths(proc_self_cgroup: &str) -> (Option<String>, Option<String>) {
    let (mut v2, mut v1) = (None, None);
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id == "0" && ctrls.is_empty() {
            v2 = Some(path.to_string());
        } else if ctrls.split(',').any(|c| c == "memory") {
            v1 = Some(path.to_string());
        }
    }
    (v2, v1)
}

/// The tightest limit among `file` in `mount/path` and each folder above it up to `mount`
/// (inside a container the process's path may not exist under the mount: then the mount's own
/// file counts). `Some(None)`: a readable file said unlimited everywhere; `None`: no file.
fn tightest(
    mount: &Path,
    path: &str,
    file: &str,
    parse: fn(&str) -> Option<Option<u64>>,
) -> Option<Option<u64>> {
    let mut dir = PathBuf::from(mount);
    dir.push(path.trim_start_matches('/'));
    let mut found: Option<Option<u64>> = None;
    loop {
        if let Some(v) = std::fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|t| parse(&t))
        {
            found = Some(match (found.flatten(), v) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            });
        }
        if dir == mount || !dir.pop() || !dir.starts_with(mount) {
            break;
        }
    }
    found
}

/// The memory budget of this process (see the module docs); `None` off Linux.
pub fn memory_budget() -> Option<MemoryBudget> {
    memory_budget_at(Path::new("/sys/fs/cgroup"), Path::new("/proc"))
}

/// [`memory_budget`] with the cgroup mount and `/proc` elsewhere (tests).
pub fn memory_budget_at(cgroup: &Path, proc: &Path) -> Option<MemoryBudget> {
    let own = std::fs::read_to_string(proc.join("self/cgroup")).unwrap_or_default();
    let (v2, v1) = cgroup_paths(&own);
    // cgroup v2 is mounted at the root (unified) or, on hybrid hosts, at `unified/`.
    if let Some(p) = &v2 {
        for mount in [cgroup.to_path_buf(), cgroup.join("unified")] {
            if let Some(Some(bytes)) = tightest(&mount, p, "memory.max", parse_v2_max) {
                return Some(MemoryBudget {
                    bytes,
                    source: "cgroup_v2",
                });
            }
        }
    }
    if let Some(p) = &v1
        && let Some(Some(bytes)) = tightest(
            &cgroup.join("memory"),
            p,
            "memory.limit_in_bytes",
            parse_v1_limit,
        )
    {
        return Some(MemoryBudget {
            bytes,
            source: "cgroup_v1",
        });
    }
    let meminfo = std::fs::read_to_string(proc.join("meminfo")).ok()?;
    parse_meminfo_total(&meminfo).map(|bytes| MemoryBudget {
        bytes,
        source: "meminfo",
    })
}

/// Resident memory now (`VmRSS`) and at its peak (`VmHWM`) from `/proc/self/status`, bytes.
pub fn rss_bytes() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    Some((status_kb(&text, "VmRSS:")?, status_kb(&text, "VmHWM:")?))
}

/// A `NAME: N kB` line of `/proc/self/status`, in bytes.
pub fn status_kb(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kb: u64 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
    kb.checked_mul(1024)
}

/// CPU time (user + system) this process has used, seconds, from `/proc/self/stat` (clock
/// ticks of `USER_HZ` = 100, the value on every Linux architecture we build for).
pub fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_stat_cpu(&s)
}

/// utime + stime of a `/proc/PID/stat` line, seconds (fields 14 and 15, after the command name
/// in parentheses, which may itself contain spaces and parentheses).
pub fn parse_stat_cpu(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let u: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    Some((u + st) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn process_readings() {
        let stat = "1234 (my (odd) cmd) S 1 1 1 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 1 0 1 1 1";
        assert_eq!(parse_stat_cpu(stat), Some(3.0));
        let status = "Name:\tpno\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(status_kb(status, "VmRSS:"), Some(1024 * 1024));
        assert_eq!(status_kb(status, "VmHWM:"), Some(2048 * 1024));
        let (rss, peak) = rss_bytes().unwrap();
        assert!(rss > 0 && peak >= rss, "{rss} {peak}");
        assert!(cpu_seconds().unwrap() >= 0.0);
    }

    #[test]
    fn parsers() {
        assert_eq!(parse_v2_max("max"), Some(None));
        assert_eq!(parse_v2_max(" 536870912\n"), Some(Some(536_870_912)));
        assert_eq!(parse_v2_max("lots"), None);
        assert_eq!(parse_v1_limit("4611686018427387904"), Some(None));
        assert_eq!(
            parse_v1_limit("4611686018427387903"),
            Some(Some((1 << 62) - 1))
        );
        assert_eq!(parse_v1_limit("-1"), None);
        let mi = "MemTotal:       24683792 kB\nMemFree: 1 kB\n";
        assert_eq!(parse_meminfo_total(mi), Some(24_683_792 * 1024));
        assert_eq!(parse_meminfo_total("MemFree: 1 kB"), None);
        let mi = "MemTotal: 8 kB\nMemFree: 1 kB\nMemAvailable:    5 kB\n";
        assert_eq!(parse_meminfo_available(mi), Some(5 * 1024));
        assert_eq!(parse_meminfo_total(mi), Some(8 * 1024));
        assert_eq!(parse_meminfo_available("MemAvailable: 5 MB\n"), None);
        assert_eq!(parse_meminfo_available("MemTotal: 5 kB\n"), None);
        let (v2, v1) =
            cgroup_paths("12:memory:/docker/abc\n3:cpu,cpuacct:/x\n0::/system.slice/pno.service\n");
        assert_eq!(v2.as_deref(), Some("/system.slice/pno.service"));
        assert_eq!(v1.as_deref(), Some("/docker/abc"));
    }

    #[test]
    fn budgets_follow_v2_then_v1_then_meminfo_taking_the_tightest_ancestor() {
        let d = tempfile::tempdir().unwrap();
        let (cg, proc) = (d.path().join("cg"), d.path().join("proc"));
        write(&proc.join("meminfo"), "MemTotal: 1000 kB\n");
        // No cgroup files at all: meminfo.
        write(&proc.join("self/cgroup"), "0::/a/b\n");
        assert_eq!(
            memory_budget_at(&cg, &proc),
            Some(MemoryBudget {
                bytes: 1_024_000,
                source: "meminfo"
            })
        );
        // v2: the leaf is unlimited, its parent is not: the parent's limit binds.
        write(&cg.join("a/b/memory.max"), "max\n");
        write(&cg.join("a/memory.max"), "2048\n");
        write(&cg.join("memory.max"), "4096\n");
        assert_eq!(
            memory_budget_at(&cg, &proc),
            Some(MemoryBudget {
                bytes: 2048,
                source: "cgroup_v2"
            })
        );
        // Every level unlimited: fall through to v1, whose ≥ 2^62 also means unlimited.
        for p in ["a/b/memory.max", "a/memory.max", "memory.max"] {
            write(&cg.join(p), "max\n");
        }
        write(&proc.join("self/cgroup"), "4:memory:/job\n0::/a/b\n");
        write(
            &cg.join("memory/job/memory.limit_in_bytes"),
            "9223372036854771712\n",
        );
        assert_eq!(memory_budget_at(&cg, &proc).unwrap().source, "meminfo");
        write(&cg.join("memory/job/memory.limit_in_bytes"), "3000\n");
        assert_eq!(
            memory_budget_at(&cg, &proc),
            Some(MemoryBudget {
                bytes: 3000,
                source: "cgroup_v1"
            })
        );
        // Inside a container the process's path is absent under the mount: the mount's own file.
        write(&proc.join("self/cgroup"), "0::/kubepods/pod1/c1\n");
        write(&cg.join("memory.max"), "8192\n");
        assert_eq!(
            memory_budget_at(&cg, &proc),
            Some(MemoryBudget {
                bytes: 8192,
                source: "cgroup_v2"
            })
        );
    }
}
