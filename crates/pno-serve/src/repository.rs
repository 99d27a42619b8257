//! The model repository: `<repository>/<model>/<version>/` where each version folder is a run
//! folder written by `pno train` and versions are positive integers. A version policy picks
//! what is served (`latest`, `all`, or `specific`); loading a version that fails (corrupt
//! weights, checksum mismatch, bad config) is refused with the reason while the versions already
//! loaded keep serving. So is a version whose estimated memory footprint would take the loaded
//! versions past `resources.load_fraction` of the memory budget (`crate::resources`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use pno_models::burn::tensor::Device;
use pno_run::{TrainedModel, load_trained};
use serde::Serialize;

use crate::config::{ResourcesConfig, VersionPolicy};
use crate::error::{ApiError, Result, ServeError};
use crate::failure::FailureClass;

/// A loaded model version.
#[derive(Debug)]
pub(crate) struct LoadedVersion {
    /// Model name.
    pub(crate) name: String,
    /// Version.
    pub(crate) version: u64,
    /// The trained model.
    pub(crate) model: TrainedModel,
}

impl LoadedVersion {
    /// The version as a string (the protocol's form).
    pub(crate) fn version_str(&self) -> String {
        self.version.to_string()
    }
}

#[derive(Debug, Default)]
struct ModelState {
    versions: BTreeMap<u64, Arc<LoadedVersion>>,
    last_error: Option<String>,
}

/// One row of the repository index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct IndexEntry {
    /// Model name.
    pub(crate) name: String,
    /// Version.
    pub(crate) version: String,
    /// `READY` or `UNAVAILABLE`.
    pub(crate) state: String,
    /// Why a version is unavailable.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) reason: String,
}

/// What the configuration says about loading: version policies, gate requirements, retries.
/// Replaced whole by a config reload.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Version policy per model (default: latest).
    pub(crate) policies: BTreeMap<String, VersionPolicy>,
    /// Require a passing gate record.
    pub(crate) require_gate: bool,
    /// Per-model override of `require_gate`.
    pub(crate) gates: BTreeMap<String, bool>,
    /// Backoff of transient I/O while loading.
    pub(crate) retry: pno_core::retry::Backoff,
    /// The memory budget and the share loaded versions may take.
    pub(crate) resources: ResourcesConfig,
    /// The request a version's footprint is sized for.
    pub(crate) worst: crate::resources::WorstCase,
}

impl Settings {
    /// The settings a configuration asks for.
    pub(crate) fn of(config: &crate::config::ServeConfig) -> Self {
        let r = config.retry;
        Self {
            policies: config
                .models
                .iter()
                .map(|(k, v)| (k.clone(), v.version_policy.clone()))
                .collect(),
            require_gate: config.require_gate,
            gates: config
                .models
                .iter()
                .filter_map(|(k, v)| v.require_gate.map(|g| (k.clone(), g)))
                .collect(),
            retry: pno_core::retry::Backoff {
                base: std::time::Duration::from_millis(r.base_ms),
                max: std::time::Duration::from_millis(r.max_ms),
                attempts: r.attempts,
                max_elapsed: std::time::Duration::from_millis(r.max_elapsed_ms),
            },
            resources: config.resources.clone(),
            worst: crate::resources::WorstCase::of(&config.limits),
        }
    }
}

/// The repository and what is loaded from it.
#[derive(Debug)]
pub struct Repository {
    root: PathBuf,
    settings: RwLock<Settings>,
    device: Device,
    models: RwLock<BTreeMap<String, ModelState>>,
    retries: std::sync::atomic::AtomicU64,
    #[cfg(feature = "fault-injection")]
    fail_loads: std::sync::atomic::AtomicU32,
}

impl Repository {
    /// A repository at `root` (nothing loaded yet) loading by `settings`.
    pub(crate) fn new(root: &Path, settings: Settings, device: Device) -> Self {
        Self {
            root: root.to_path_buf(),
            settings: RwLock::new(settings),
            device,
            models: RwLock::new(BTreeMap::new()),
            retries: std::sync::atomic::AtomicU64::new(0),
            #[cfg(feature = "fault-injection")]
            fail_loads: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// The loading settings now.
    pub(crate) fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replace the loading settings (a config reload); returns the old ones.
    pub(crate) fn set_settings(&self, settings: Settings) -> Settings {
        std::mem::replace(
            &mut *self.settings.write().unwrap_or_else(|p| p.into_inner()),
            settings,
        )
    }

    /// Retries of version loads so far (transient I/O errors).
    pub(crate) fn retries(&self) -> u64 {
        self.retries.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Make the next `n` attempts to read a version from disk fail with a transient I/O error
    /// (test builds with the `fault-injection` feature only).
    #[cfg(feature = "fault-injection")]
    pub(crate) fn fail_next_loads(&self, n: u32) {
        self.fail_loads
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// Read a run folder, retrying transient I/O errors (each retry logged with its class).
    fn read_run(&self, path: &Path, name: &str, version: u64) -> pno_run::Result<TrainedModel> {
        use std::sync::atomic::Ordering;
        let policy = self.settings().retry;
        let out = pno_core::retry::retry_io(
            &policy,
            None,
            |_| {
                #[cfg(feature = "fault-injection")]
                if self
                    .fail_loads
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::Interrupted,
                        "injected transient I/O fault (repository)",
                    ));
                }
                match load_trained(path, &self.device) {
                    Err(pno_run::RunError::Io { source, .. })
                        if pno_core::retry::is_transient(&source) =>
                    {
                        Err(source)
                    }
                    other => Ok(other),
                }
            },
            |r| {
                self.retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(model = name, version, attempt = r.attempt, delay_ms = r.delay.as_millis() as u64, error = %r.error, class = "transient", "retrying a version load");
            },
        );
        match out {
            Ok(r) => r,
            Err(source) => Err(pno_run::RunError::Io {
                op: "read",
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    fn policy(&self, name: &str) -> VersionPolicy {
        let st = self.settings.read().unwrap_or_else(|p| p.into_inner());
        st.policies.get(name).cloned().unwrap_or_default()
    }

    fn gate_required(&self, name: &str) -> bool {
        let st = self.settings.read().unwrap_or_else(|p| p.into_inner());
        st.gates.get(name).copied().unwrap_or(st.require_gate)
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Model names on disk.
    pub(crate) fn models_on_disk(&self) -> Result<Vec<String>> {
        let rd = std::fs::read_dir(&self.root).map_err(|e| ServeError::Repository {
            path: self.root.clone(),
            what: format!("cannot list: {e}"),
        })?;
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| pno_run::check_model_name(n).is_ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Versions of `name` on disk, ascending.
    pub(crate) fn versions_on_disk(&self, name: &str) -> Result<Vec<u64>> {
        pno_run::check_model_name(name).map_err(|what| ServeError::Repository {
            path: self.root.clone(),
            what,
        })?;
        let dir = self.root.join(name);
        let missing = || ServeError::Repository {
            path: dir.clone(),
            what: format!("no model `{name}` in the repository"),
        };
        if !dir.is_dir() {
            return Err(missing());
        }
        pno_run::versions(&self.root, name).map_err(|_| missing())
    }

    fn load_version(&self, name: &str, version: u64) -> Result<LoadedVersion> {
        let path = self.root.join(name).join(version.to_string());
        // Loading validates checksums, shapes and values; a panic inside the model library
        // still becomes a refusal, never a crash.
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.read_run(&path, name, version)
        }));
        let class_err = |reason: String, class| ServeError::Load {
            model: name.into(),
            version: version.to_string(),
            path: path.clone(),
            reason,
            class,
        };
        let err = |reason: String| class_err(reason, FailureClass::Persistent);
        let model = match loaded {
            Ok(Ok(m)) => m,
            Ok(Err(pno_run::RunError::Io {
                op,
                path: p,
                source,
            })) if pno_core::retry::is_transient(&source) => {
                return Err(class_err(
                    format!(
                        "{op} {}: {source} (transient; retries exhausted)",
                        p.display()
                    ),
                    FailureClass::Transient,
                ));
            }
            Ok(Err(e)) => return Err(err(e.to_string())),
            Err(_) => {
                return Err(class_err(
                    "the model library panicked while loading".into(),
                    FailureClass::Internal,
                ));
            }
        };
        if self.gate_required(name) {
            match model.run.read_gate() {
                Ok(Some(g)) if g.passed => {}
                Ok(Some(g)) => {
                    let failed: Vec<String> =
                        g.failures().iter().map(|r| r.check.clone()).collect();
                    return Err(err(format!(
                        "its gate record (gate.json) failed ({}); this server requires a passing gate",
                        failed.join("; ")
                    )));
                }
                Ok(None) => {
                    return Err(err(
                        "no gate record (gate.json): this server requires versions promoted through a passing gate (`pno promote`)".into(),
                    ));
                }
                Err(e) => return Err(err(e.to_string())),
            }
        }
        if model.file.grid.len() != 2 && model.file.grid.len() != 1 {
            return Err(err(format!(
                "grid {:?}: only 1-D and 2-D models are served",
                model.file.grid
            )));
        }
        Ok(LoadedVersion {
            name: name.into(),
            version,
            model,
        })
    }

    /// Load `name` according to its version policy, or exactly `version`. All or nothing: when
    /// any chosen version fails, nothing changes and the error names it. With the `latest`
    /// policy the newly loaded version replaces the others.
    pub(crate) fn load(&self, name: &str, version: Option<u64>) -> Result<Vec<u64>> {
        let on_disk = self.versions_on_disk(name)?;
        let policy = self.policy(name);
        let wanted: Vec<u64> = match (version, &policy) {
            (Some(v), _) => vec![v],
            (None, VersionPolicy::Latest) => on_disk.last().copied().into_iter().collect(),
            (None, VersionPolicy::All) => on_disk.clone(),
            (None, VersionPolicy::Specific(v)) => v.clone(),
        };
        if wanted.is_empty() {
            return Err(ServeError::Repository {
                path: self.root.join(name),
                what: format!("model `{name}` has no version folders (1, 2, …)"),
            });
        }
        if let Some(v) = wanted.iter().find(|v| !on_disk.contains(v)) {
            return Err(ServeError::Repository {
                path: self.root.join(name),
                what: format!("model `{name}` has no version {v}"),
            });
        }
        let mut loaded = Vec::new();
        for &v in &wanted {
            match self.load_version(name, v) {
                Ok(m) => loaded.push(Arc::new(m)),
                Err(e) => {
                    let mut models = self.models.write().unwrap_or_else(|p| p.into_inner());
                    models.entry(name.to_string()).or_default().last_error = Some(e.to_string());
                    return Err(e);
                }
            }
        }
        let mut models = self.models.write().unwrap_or_else(|p| p.into_inner());
        let replaces_all = matches!(policy, VersionPolicy::Latest);
        if let Err(e) = self.check_memory(&models, name, replaces_all, &loaded) {
            tracing::error!(model = name, error = %e, class = "persistent", "version refused: over the memory budget");
            models.entry(name.to_string()).or_default().last_error = Some(e.to_string());
            return Err(e);
        }
        let st = models.entry(name.to_string()).or_default();
        if replaces_all {
            st.versions.clear();
        }
        for m in loaded {
            st.versions.insert(m.version, m);
        }
        st.last_error = None;
        Ok(wanted)
    }

    /// Refuse `new` versions of `name` whose estimated footprints, with those of the versions
    /// loaded (less the ones they replace: all of `name`'s when `replaces_all`, else the same
    /// version numbers), exceed `resources.load_fraction` of the memory budget. Loaded versions
    /// count what serving takes (parameters, activations, outputs); a new one its peak, which
    /// may be its loading.
    fn check_memory(
        &self,
        models: &BTreeMap<String, ModelState>,
        name: &str,
        replaces_all: bool,
        new: &[Arc<LoadedVersion>],
    ) -> Result<()> {
        let settings = self.settings();
        let budget = crate::resources::budget(&settings.resources);
        if budget.is_none() {
            return Ok(());
        }
        let replaced =
            |m: &str, v: u64| m == name && (replaces_all || new.iter().any(|n| n.version == v));
        let mut used: u64 = models
            .iter()
            .flat_map(|(m, st)| st.versions.values().map(move |lv| (m, lv)))
            .filter(|(m, lv)| !replaced(m, lv.version))
            .map(|(_, lv)| {
                let (f, _) = settings.worst.footprint(&lv.model);
                f.params_bytes + f.activations_bytes + f.outputs_bytes
            })
            .sum();
        for lv in new {
            let (f, case) = settings.worst.footprint(&lv.model);
            if let Err(reason) =
                crate::resources::fits(&settings.resources, budget, &f, &case, used)
            {
                return Err(ServeError::Memory {
                    model: name.into(),
                    version: lv.version.to_string(),
                    path: lv.model.run.dir.clone(),
                    reason,
                });
            }
            used += f.params_bytes + f.activations_bytes + f.outputs_bytes;
        }
        Ok(())
    }

    /// The estimated footprint (peak bytes) of every loaded version under the settings now.
    pub(crate) fn footprints(&self) -> Vec<(String, u64, u64)> {
        let worst = self.settings().worst;
        let models = self.models.read().unwrap_or_else(|p| p.into_inner());
        models
            .iter()
            .flat_map(|(n, s)| {
                s.versions
                    .values()
                    .map(|lv| (n.clone(), lv.version, worst.footprint(&lv.model).0.total))
            })
            .collect()
    }

    /// Startup: load every model on disk by policy; with `latest`, fall back to older versions
    /// when the newest fails. Returns the errors met (the server starts anyway; readiness tells).
    pub fn load_all(&self) -> Result<Vec<ServeError>> {
        let mut errors = Vec::new();
        for name in self.models_on_disk()? {
            match self.load(&name, None) {
                Ok(_) => {}
                Err(e) => {
                    errors.push(e);
                    let policy = self.policy(&name);
                    if matches!(policy, VersionPolicy::Latest) {
                        let mut older = self.versions_on_disk(&name)?;
                        older.pop();
                        for v in older.into_iter().rev() {
                            match self.load(&name, Some(v)) {
                                Ok(_) => break,
                                Err(e) => errors.push(e),
                            }
                        }
                    }
                }
            }
        }
        Ok(errors)
    }

    /// Unload every version of `name`; false when nothing was loaded.
    pub(crate) fn unload(&self, name: &str) -> bool {
        let mut models = self.models.write().unwrap_or_else(|p| p.into_inner());
        match models.get_mut(name) {
            Some(st) if !st.versions.is_empty() => {
                st.versions.clear();
                true
            }
            _ => false,
        }
    }

    /// The served version of `name` (`version` or the newest loaded), or a 404.
    pub(crate) fn get(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> std::result::Result<Arc<LoadedVersion>, ApiError> {
        let models = self.models.read().unwrap_or_else(|p| p.into_inner());
        let st = models
            .get(name)
            .filter(|s| !s.versions.is_empty())
            .ok_or_else(|| ApiError::not_found(format!("unknown model '{}'", clip(name))))?;
        match version {
            None => st
                .versions
                .values()
                .next_back()
                .cloned()
                .ok_or_else(|| ApiError::not_found(format!("unknown model '{}'", clip(name)))),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .and_then(|n| st.versions.get(&n).cloned())
                .ok_or_else(|| {
                    ApiError::not_found(format!(
                        "unknown version '{}' of model '{}'",
                        clip(v),
                        clip(name)
                    ))
                }),
        }
    }

    /// The versions of `name` served now, to put back with [`Repository::restore`].
    pub(crate) fn snapshot(&self, name: &str) -> BTreeMap<u64, Arc<LoadedVersion>> {
        let models = self.models.read().unwrap_or_else(|p| p.into_inner());
        models
            .get(name)
            .map(|s| s.versions.clone())
            .unwrap_or_default()
    }

    /// Serve exactly `versions` of `name` again (the same artifacts, no I/O).
    pub(crate) fn restore(&self, name: &str, versions: BTreeMap<u64, Arc<LoadedVersion>>) {
        let mut models = self.models.write().unwrap_or_else(|p| p.into_inner());
        models.entry(name.to_string()).or_default().versions = versions;
    }

    /// Versions of `name` being served.
    pub(crate) fn loaded_versions(&self, name: &str) -> Vec<u64> {
        let models = self.models.read().unwrap_or_else(|p| p.into_inner());
        models
            .get(name)
            .map(|s| s.versions.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Every loaded `(model, version)`.
    pub fn loaded(&self) -> Vec<(String, u64)> {
        let models = self.models.read().unwrap_or_else(|p| p.into_inner());
        models
            .iter()
            .flat_map(|(n, s)| s.versions.keys().map(move |v| (n.clone(), *v)))
            .collect()
    }

    /// True when at least one model version is loaded.
    pub fn any_loaded(&self) -> bool {
        let models = self.models.read().unwrap_or_else(|p| p.into_inner());
        models.values().any(|s| !s.versions.is_empty())
    }

    /// Every model and version on disk with its state.
    pub(crate) fn index(&self) -> Result<Vec<IndexEntry>> {
        let mut out = Vec::new();
        let models = self.models.read().unwrap_or_else(|p| p.into_inner());
        for name in self.models_on_disk()? {
            let st = models.get(&name);
            for v in self.versions_on_disk(&name).unwrap_or_default() {
                let ready = st.is_some_and(|s| s.versions.contains_key(&v));
                out.push(IndexEntry {
                    name: name.clone(),
                    version: v.to_string(),
                    state: if ready { "READY" } else { "UNAVAILABLE" }.into(),
                    reason: if ready {
                        String::new()
                    } else {
                        st.and_then(|s| s.last_error.clone())
                            .filter(|e| e.contains(&format!("version {v} ")))
                            .unwrap_or_else(|| "not loaded".into())
                    },
                });
            }
        }
        Ok(out)
    }
}

/// At most 64 characters of user input in messages.
pub(crate) fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}
