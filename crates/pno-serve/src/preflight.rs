//! Pre-flight checks (kubeadm-style): every start-up check, each with a stable short name and an
//! `ok` / `warn` / `fail` status and a one-line detail. `pno serve --check` runs them without
//! serving ([`run`]); the server runs the same ones at start ([`at_start`]) and stays not ready
//! while one fails (`AppState::set_preflight`).
//!
//! | name | what |
//! |---|---|
//! | `config` | the config file parsed and validated (a bad key is named), and the replica id resolved |
//! | `keys` | the keys file exists, parses, and only its owner may read it (mode 0600 or stricter) |
//! | `tls` | `[tls]`'s certificate and key load, match, and the certificate has not expired |
//! | `audit` | the audit log's hash chain verifies, and so does the latest signed checkpoint; its folder is writable |
//! | `listen` | the listen address can be bound (`--check` only: at start the bind itself is the check) |
//! | `disk` | free space where the audit log and the repository live |
//! | `models` | every version the policy selects loads (checksums, format, gate) |
//! | `smoke` | every loaded version answers a smoke inference, finite, within `health.smoke_budget_ms` |
//! | `memory` | the loaded versions' estimated footprints against the memory budget |
//!
//! `--ignore-check NAME` turns a named check's `fail` into `warn` (`config` cannot be ignored:
//! nothing else runs without a valid config).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use pno_models::burn::tensor::Device;
use serde::Serialize;

use crate::config::ServeConfig;
use crate::error::ServeError;
use crate::state::AppState;

/// Every check's name, in the order they run.
pub const NAMES: [&str; 9] = [
    "config", "keys", "tls", "audit", "listen", "disk", "models", "smoke", "memory",
];

/// Below this much free space a folder fails the `disk` check.
pub const DISK_FAIL_BYTES: u64 = 64 << 20;
/// Below this much free space (or [`DISK_WARN_FRACTION`] of the filesystem) it warns.
pub const DISK_WARN_BYTES: u64 = 1 << 30;
/// Below this fraction of the filesystem free it warns.
pub const DISK_WARN_FRACTION: f64 = 0.05;

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but worth a look (or a fail downgraded by `--ignore-check`).
    Warn,
    /// Would not serve correctly.
    Fail,
}

impl Status {
    /// `ok`, `warn` or `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// Its stable short name (one of [`NAMES`]).
    pub name: &'static str,
    /// Its outcome.
    pub status: Status,
    /// One line: what was found.
    pub detail: String,
    /// True when `--ignore-check` turned a `fail` into this `warn`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ignored: bool,
}

impl Check {
    /// A check that was not ignored.
    pub fn new(name: &'static str, status: Status, detail: impl Into<String>) -> Self {
        Self {
            name,
            status,
            detail: detail.into(),
            ignored: false,
        }
    }
}

/// Every check that ran, in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// The checks.
    pub checks: Vec<Check>,
}

impl Report {
    /// No check failed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Fail)
    }

    /// The failed checks as `name: detail; ...`, or `None` when none failed.
    pub fn failures(&self) -> Option<String> {
        let f: Vec<String> = self
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        (!f.is_empty()).then(|| f.join("; "))
    }

    /// The checks as aligned lines (`[ok]   config  ...`) and a summary line headed `title`
    /// (`pre-flight: 7 ok, 1 warn, 0 fail`).
    pub fn to_text(&self, title: &str) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let tag = format!("[{}]", c.status.as_str());
            out.push_str(&format!("{tag:<6} {:<8} {}\n", c.name, c.detail));
        }
        let count = |s| self.checks.iter().filter(|c| c.status == s).count();
        out.push_str(&format!(
            "{title}: {} ok, {} warn, {} fail\n",
            count(Status::Ok),
            count(Status::Warn),
            count(Status::Fail)
        ));
        out
    }

    fn push(&mut self, c: Check, opts: &Options) {
        let mut c = c;
        if c.status == Status::Fail && opts.ignore.contains(c.name) {
            c.status = Status::Warn;
            c.ignored = true;
            c.detail = format!("{} (ignored by --ignore-check {})", c.detail, c.name);
        }
        self.checks.push(c);
    }
}

/// How to run the checks.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Checks whose `fail` becomes `warn` (validated by [`parse_ignore`]).
    pub ignore: BTreeSet<String>,
}

/// Parse `--ignore-check` values (each may be a comma-separated list); an unknown name (or
/// `config`, which cannot be ignored) is refused, naming it and the valid names.
pub fn parse_ignore<S: AsRef<str>>(values: &[S]) -> Result<BTreeSet<String>, String> {
    let valid: Vec<&str> = NAMES.iter().copied().filter(|n| *n != "config").collect();
    let mut out = BTreeSet::new();
    for v in values {
        for name in v
            .as_ref()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            if !valid.contains(&name) {
                return Err(format!(
                    "--ignore-check: unknown check `{name}`; expected one of {}",
                    valid.join(", ")
                ));
            }
            out.insert(name.to_string());
        }
    }
    Ok(out)
}

/// All the checks for `cfg` without serving: the `config` check reports `config_error` (the
/// error of reading or validating the file; nothing else runs then), then the files, the listen
/// address, the disks, and the models loaded on `device` into a private state (without the
/// keys, audit log or TLS, which are checked on their own) and smoke-tested.
pub fn run(
    cfg: Result<&ServeConfig, &ServeError>,
    source: &str,
    device: Device,
    opts: &Options,
) -> Report {
    let mut r = Report::default();
    let cfg = match cfg {
        Ok(c) => c,
        Err(e) => {
            r.push(
                Check::new("config", Status::Fail, format!("{source}: {e}")),
                opts,
            );
            return r;
        }
    };
    // The replica id may come from the environment: a bad `PNO_REPLICA` fails here, named.
    match crate::replica::resolve(cfg.replica.as_deref()) {
        Ok(id) => r.push(
            Check::new(
                "config",
                Status::Ok,
                format!("{source}: valid; replica {id}"),
            ),
            opts,
        ),
        Err(e) => {
            r.push(
                Check::new("config", Status::Fail, format!("{source}: {e}")),
                opts,
            );
            return r;
        }
    }
    r.push(keys(cfg), opts);
    r.push(tls(cfg), opts);
    r.push(audit(cfg, true), opts);
    r.push(listen(cfg), opts);
    r.push(disk(cfg), opts);
    let mut probe = cfg.clone();
    probe.keys = None;
    probe.audit.path = None;
    probe.audit.checkpoint_key = None;
    probe.audit.checkpoint_webhook = None;
    probe.tls = None;
    match AppState::new(probe, device) {
        Ok(st) => {
            let refused = match st.repository().load_all() {
                Ok(e) => e,
                Err(e) => vec![e],
            };
            for c in model_checks(&st, &refused, Status::Fail) {
                r.push(c, opts);
            }
        }
        Err(e) => {
            r.push(Check::new("models", Status::Fail, e.to_string()), opts);
        }
    }
    r
}

/// The checks at the server's start, on its own state (models already loaded; `refused` are
/// the versions it could not load, which are warnings here: it serves the others, and
/// readiness already says when none is loaded). Without `config` (validated before the state
/// was built) and `listen` (the bind that follows is the check). Blocking.
pub fn at_start(st: &AppState, refused: &[ServeError], opts: &Options) -> Report {
    let cfg = st.config();
    let mut r = Report::default();
    r.push(keys(&cfg), opts);
    r.push(tls(&cfg), opts);
    // The chain was verified when the state opened the log; the checkpoint and folder remain.
    r.push(audit(&cfg, false), opts);
    r.push(disk(&cfg), opts);
    for c in model_checks(st, refused, Status::Warn) {
        r.push(c, opts);
    }
    r
}

/// A file's permission bits: `Ok` for 0600 or stricter, `Warn` when its group may read or
/// write it, `Fail` when others may.
pub fn mode_status(mode: u32) -> Status {
    if mode & 0o007 != 0 {
        Status::Fail
    } else if mode & 0o070 != 0 {
        Status::Warn
    } else {
        Status::Ok
    }
}

fn keys(cfg: &ServeConfig) -> Check {
    let Some(p) = &cfg.keys else {
        let who = match cfg.anonymous_role() {
            Some(r) => format!("anonymous requests are {}", r.as_str()),
            None => "anonymous requests are refused".into(),
        };
        return Check::new(
            "keys",
            Status::Ok,
            format!("no keys file configured ({who})"),
        );
    };
    let meta = match std::fs::metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Check::new(
                "keys",
                Status::Warn,
                format!(
                    "{}: missing (no key authenticates until `pno keys create --keys {}` writes it)",
                    p.display(),
                    p.display()
                ),
            );
        }
        Err(e) => return Check::new("keys", Status::Fail, format!("{}: {e}", p.display())),
    };
    let n = match crate::auth::KeyStore::open(p) {
        Ok(store) => store.list().len(),
        Err(e) => return Check::new("keys", Status::Fail, e.to_string()),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        let status = mode_status(mode);
        if status != Status::Ok {
            let who = if status == Status::Fail {
                "other users"
            } else {
                "its group"
            };
            return Check::new(
                "keys",
                status,
                format!(
                    "{}: mode {mode:04o} lets {who} read the key hashes; expected 0600 or stricter (chmod 600 {})",
                    p.display(),
                    p.display()
                ),
            );
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    Check::new(
        "keys",
        Status::Ok,
        format!("{}: {n} key(s), owner-only", p.display()),
    )
}

fn tls(cfg: &ServeConfig) -> Check {
    let Some(t) = &cfg.tls else {
        return Check::new("tls", Status::Ok, "off (plain HTTP)");
    };
    match crate::state::load_tls(cfg) {
        Err(e) => Check::new("tls", Status::Fail, e.to_string()),
        Ok(setup) => {
            let now = crate::state::now_s();
            match setup.and_then(|s| s.not_after) {
                Some(at) if at < now => Check::new(
                    "tls",
                    Status::Fail,
                    format!(
                        "{}: expired {}; clients will refuse it",
                        t.cert.display(),
                        crate::auth::utc(at)
                    ),
                ),
                Some(at) if at < now + 14 * 86_400 => Check::new(
                    "tls",
                    Status::Warn,
                    format!(
                        "{}: expires {} (in less than 14 days)",
                        t.cert.display(),
                        crate::auth::utc(at)
                    ),
                ),
                Some(at) => Check::new(
                    "tls",
                    Status::Ok,
                    format!("{}: valid until {}", t.cert.display(), crate::auth::utc(at)),
                ),
                None => Check::new("tls", Status::Ok, format!("{}: loaded", t.cert.display())),
            }
        }
    }
}

fn audit(cfg: &ServeConfig, verify_chain: bool) -> Check {
    let Some(path) = &cfg.audit.path else {
        return Check::new("audit", Status::Ok, "no audit log configured");
    };
    let dir = crate::checks::folder_of(path);
    if !dir.is_dir() {
        return Check::new(
            "audit",
            Status::Fail,
            format!(
                "{}: its folder {} does not exist",
                path.display(),
                dir.display()
            ),
        );
    }
    if let Err(e) = crate::checks::writable(&dir) {
        return Check::new("audit", Status::Fail, e);
    }
    let mut found = if !path.exists() {
        format!("{}: new log (folder writable)", path.display())
    } else if verify_chain {
        match pno_audit::verify(path) {
            Ok(v) => format!(
                "{}: chain verifies ({} records in {} segment(s))",
                path.display(),
                v.records,
                v.segments.len()
            ),
            Err(e) => return Check::new("audit", Status::Fail, e.to_string()),
        }
    } else {
        format!("{}: chain verified when opened", path.display())
    };
    if let Some(key) = &cfg.audit.checkpoint_key {
        match checkpoint(cfg, path, key) {
            Ok(Some(s)) => found.push_str(&format!("; {s}")),
            Ok(None) => {}
            Err(e) => return Check::new("audit", Status::Fail, e),
        }
    }
    Check::new("audit", Status::Ok, found)
}

/// The latest signed checkpoint (`<checkpoint_dir>/latest.txt`) verified with the configured
/// signer key's public half, and the log checked against it; `None` without one yet.
fn checkpoint(cfg: &ServeConfig, log: &Path, key: &Path) -> Result<Option<String>, String> {
    let dir = cfg.audit.checkpoint_dir.clone().unwrap_or_else(|| {
        let mut p = log.as_os_str().to_owned();
        p.push(".checkpoints");
        std::path::PathBuf::from(p)
    });
    let latest = dir.join("latest.txt");
    let text = std::fs::read_to_string(key)
        .map_err(|e| format!("audit.checkpoint_key {}: {e}", key.display()))?;
    let signer = pno_audit::checkpoint::SignerKey::parse(&text)
        .map_err(|e| format!("audit.checkpoint_key {}: {e}", key.display()))?;
    let note = match std::fs::read_to_string(&latest) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", latest.display())),
    };
    let cp = pno_audit::checkpoint::open(&note, &signer.verifier())
        .map_err(|e| format!("checkpoint {}: {e}", latest.display()))?;
    if !log.exists() {
        return Err(format!(
            "{} is missing but checkpoint {} pins {} records",
            log.display(),
            latest.display(),
            cp.size
        ));
    }
    pno_audit::checkpoint::verify_against(log, &cp).map_err(|e| {
        format!(
            "{} against checkpoint {}: {e}",
            log.display(),
            latest.display()
        )
    })?;
    Ok(Some(format!(
        "checkpoint {} ({} records) holds",
        latest.display(),
        cp.size
    )))
}

fn listen(cfg: &ServeConfig) -> Check {
    let addr = match cfg.listen_addr() {
        Ok(a) => a,
        Err(e) => return Check::new("listen", Status::Fail, e.to_string()),
    };
    match std::net::TcpListener::bind(addr) {
        Ok(l) => {
            drop(l);
            let detail = if addr.port() == 0 {
                format!("{addr}: a free port is picked at start")
            } else {
                format!("{addr}: can be bound")
            };
            Check::new("listen", Status::Ok, detail)
        }
        Err(e) => Check::new(
            "listen",
            Status::Fail,
            format!("cannot bind {addr} (listen): {e}"),
        ),
    }
}

/// The `disk` status of `free` bytes out of `total`.
pub fn disk_status(free: u64, total: u64) -> Status {
    if free < DISK_FAIL_BYTES {
        Status::Fail
    } else if free < DISK_WARN_BYTES
        || (total > 0 && (free as f64) < DISK_WARN_FRACTION * total as f64)
    {
        Status::Warn
    } else {
        Status::Ok
    }
}

fn disk(cfg: &ServeConfig) -> Check {
    let mut places = vec![("repository", cfg.repository.clone())];
    if let Some(p) = &cfg.audit.path {
        places.push(("audit log", crate::checks::folder_of(p)));
    }
    let mut worst = Status::Ok;
    let mut parts = Vec::new();
    for (what, dir) in places {
        match rustix::fs::statvfs(&dir) {
            Ok(s) => {
                let free = s.f_bavail.saturating_mul(s.f_frsize);
                let total = s.f_blocks.saturating_mul(s.f_frsize);
                let st = disk_status(free, total);
                worst = worst.max(st);
                let pct = if total > 0 {
                    100.0 * free as f64 / total as f64
                } else {
                    0.0
                };
                let mut part = format!(
                    "{what} {}: {} free ({pct:.1} %)",
                    dir.display(),
                    crate::resources::mib(free)
                );
                match st {
                    Status::Fail => part.push_str(&format!(
                        ", below {}",
                        crate::resources::mib(DISK_FAIL_BYTES)
                    )),
                    Status::Warn => part.push_str(&format!(
                        ", below {} or {} %",
                        crate::resources::mib(DISK_WARN_BYTES),
                        DISK_WARN_FRACTION * 100.0
                    )),
                    Status::Ok => {}
                }
                parts.push(part);
            }
            Err(e) => {
                worst = Status::Fail;
                parts.push(format!("{what} {}: statvfs: {e}", dir.display()));
            }
        }
    }
    Check::new("disk", worst, parts.join("; "))
}

/// `models`, `smoke` and `memory` on a state whose repository is loaded; `refused_status` is
/// what a version the repository refused counts as.
fn model_checks(st: &AppState, refused: &[ServeError], refused_status: Status) -> Vec<Check> {
    let cfg = st.config();
    let loaded = st.repository().loaded();
    let names: Vec<String> = loaded.iter().map(|(m, v)| format!("{m}/{v}")).collect();
    let (over_budget, bad): (Vec<&ServeError>, Vec<&ServeError>) = refused
        .iter()
        .partition(|e| matches!(e, ServeError::Memory { .. }));
    let models = if !bad.is_empty() {
        let errs: Vec<String> = bad.iter().map(|e| e.to_string()).collect();
        let also = if names.is_empty() {
            String::new()
        } else {
            format!(" (loaded: {})", names.join(", "))
        };
        Check::new(
            "models",
            refused_status,
            format!("refused {}{also}", errs.join("; ")),
        )
    } else if loaded.is_empty() && over_budget.is_empty() {
        Check::new(
            "models",
            Status::Fail,
            format!(
                "no model version in {} (expected <model>/<version>/ run folders)",
                cfg.repository.display()
            ),
        )
    } else {
        Check::new(
            "models",
            Status::Ok,
            format!(
                "{} version(s) load: {}",
                names.len(),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ),
        )
    };
    vec![models, smoke(st, &loaded), memory(st, &over_budget)]
}

fn smoke(st: &AppState, loaded: &[(String, u64)]) -> Check {
    let budget = Duration::from_millis(st.config().health.smoke_budget_ms);
    let mut fails = Vec::new();
    let mut times = Vec::new();
    for (m, v) in loaded {
        let t = Instant::now();
        let r = smoke_one(st, m, *v, budget);
        let ms = t.elapsed().as_secs_f64() * 1e3;
        match r {
            Ok(()) if t.elapsed() <= budget => times.push(format!("{m}/{v} {ms:.0} ms")),
            Ok(()) => fails.push(format!(
                "model `{m}` version {v}: smoke inference took {ms:.0} ms, over health.smoke_budget_ms = {}",
                budget.as_millis()
            )),
            Err(e) => fails.push(format!("model `{m}` {e}")),
        }
    }
    if !fails.is_empty() {
        Check::new("smoke", Status::Fail, fails.join("; "))
    } else if times.is_empty() {
        Check::new("smoke", Status::Warn, "no version loaded to smoke-test")
    } else {
        Check::new(
            "smoke",
            Status::Ok,
            format!(
                "finite answers within {} ms: {}",
                budget.as_millis(),
                times.join(", ")
            ),
        )
    }
}

/// One smoke inference (`reload::smoke_prediction`, as reloads and the health checks run it),
/// cancelled when it runs past `budget`.
fn smoke_one(st: &AppState, model: &str, v: u64, budget: Duration) -> Result<(), String> {
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let (done, wait) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let cancel = &cancel;
        s.spawn(move || {
            if wait.recv_timeout(budget).is_err() {
                cancel.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        });
        let r = crate::reload::smoke_prediction(st, model, v, Some(cancel))
            .and_then(|p| crate::reload::check_finite(v, &p));
        let _ = done.send(());
        r
    })
}

fn memory(st: &AppState, over_budget: &[&ServeError]) -> Check {
    let cfg = st.config();
    let mib = crate::resources::mib;
    if !over_budget.is_empty() {
        let errs: Vec<String> = over_budget.iter().map(|e| e.to_string()).collect();
        return Check::new("memory", Status::Fail, errs.join("; "));
    }
    let total: u64 = st
        .repository()
        .footprints()
        .iter()
        .map(|(_, _, b)| *b)
        .sum();
    let Some(b) = crate::resources::budget(&cfg.resources) else {
        return Check::new(
            "memory",
            Status::Warn,
            format!(
                "no memory budget detected (no cgroup limit, no /proc/meminfo) and none configured (resources.memory_budget_mb); loaded versions need about {}",
                mib(total)
            ),
        );
    };
    let share = (b.bytes as f64 * cfg.resources.load_fraction) as u64;
    let head = format!(
        "loaded versions need about {} of the {} budget of {} (resources.load_fraction = {} allows {})",
        mib(total),
        b.source,
        mib(b.bytes),
        cfg.resources.load_fraction,
        mib(share)
    );
    if total > share {
        return Check::new("memory", Status::Fail, head);
    }
    match pno_core::resources::mem_available() {
        Some(avail) if total > avail => Check::new(
            "memory",
            Status::Warn,
            format!("{head}; but only {} is available now", mib(avail)),
        ),
        _ => Check::new("memory", Status::Ok, head),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_owner_only_pass_group_warns_other_fails() {
        assert_eq!(mode_status(0o600), Status::Ok);
        assert_eq!(mode_status(0o400), Status::Ok);
        assert_eq!(mode_status(0o640), Status::Warn);
        assert_eq!(mode_status(0o660), Status::Warn);
        assert_eq!(mode_status(0o644), Status::Fail);
        assert_eq!(mode_status(0o602), Status::Fail);
    }

    #[test]
    fn disk_thresholds() {
        let gib = 1u64 << 30;
        assert_eq!(disk_status(10 * gib, 100 * gib), Status::Ok);
        // Under 5 % of the filesystem, though more than 1 GiB.
        assert_eq!(disk_status(4 * gib, 100 * gib), Status::Warn);
        // Under 1 GiB, though most of a small filesystem.
        assert_eq!(disk_status(512 << 20, 600 << 20), Status::Warn);
        assert_eq!(disk_status((64 << 20) - 1, 100 * gib), Status::Fail);
        assert_eq!(disk_status(64 << 20, 1 << 27), Status::Warn);
    }

    #[test]
    fn ignore_names_are_checked_and_downgrade_fails_only() {
        let set = parse_ignore(&["keys,disk", "smoke"]).unwrap();
        assert_eq!(
            set.iter().map(String::as_str).collect::<Vec<_>>(),
            ["disk", "keys", "smoke"]
        );
        let e = parse_ignore(&["keys,nope"]).unwrap_err();
        assert!(e.contains("`nope`") && e.contains("listen"), "{e}");
        let e = parse_ignore(&["config"]).unwrap_err();
        assert!(e.contains("`config`"), "{e}");
        let opts = Options { ignore: set };
        let mut r = Report::default();
        r.push(Check::new("keys", Status::Fail, "mode 0644"), &opts);
        r.push(Check::new("listen", Status::Fail, "in use"), &opts);
        r.push(Check::new("disk", Status::Ok, "plenty"), &opts);
        assert_eq!(r.checks[0].status, Status::Warn);
        assert!(r.checks[0].ignored && r.checks[0].detail.contains("--ignore-check keys"));
        assert_eq!(r.checks[1].status, Status::Fail);
        assert!(!r.checks[2].ignored);
        assert!(!r.passed());
        assert_eq!(r.failures().as_deref(), Some("listen: in use"));
        let text = r.to_text("pre-flight");
        assert!(
            text.contains("[warn] keys") && text.ends_with("pre-flight: 1 ok, 1 warn, 1 fail\n"),
            "{text}"
        );
    }

    #[test]
    fn the_listen_check_fails_on_a_bound_port_and_passes_on_port_0() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut cfg = ServeConfig {
            listen: held.local_addr().unwrap().to_string(),
            ..ServeConfig::default()
        };
        let c = listen(&cfg);
        assert_eq!(c.status, Status::Fail, "{c:?}");
        assert!(c.detail.contains(&cfg.listen), "{c:?}");
        cfg.listen = "127.0.0.1:0".into();
        assert_eq!(listen(&cfg).status, Status::Ok);
    }
}
