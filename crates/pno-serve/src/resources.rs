//! The memory budget (`[resources]`): which budget is in force, each loaded version's estimated
//! footprint for the configured worst case, the load check against `load_fraction` of the
//! budget (called by the repository), and the high-water mark that sheds inference requests
//! while resident memory is above `shed_fraction` of it. The `memory` health check and the
//! `pno_memory_budget_bytes` gauge read the same budget.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use pno_core::resources::MemoryBudget;
use pno_run::{Footprint, FootprintAsk, TrainedModel};

use crate::config::{Limits, ResourcesConfig};
use crate::error::ApiError;
use crate::failure::FailureClass;
use crate::metrics::Metrics;

const MIB: f64 = 1048576.0;

/// How long a reading of resident memory (and of a detected budget) is reused.
const READING_TTL: Duration = Duration::from_millis(100);

/// The budget in force: `memory_budget_mb` MiB (source `config`) when set, else the detected
/// one (cgroup v2, cgroup v1, `/proc/meminfo`); `None` when nothing can be detected.
pub(crate) fn budget(r: &ResourcesConfig) -> Option<MemoryBudget> {
    if r.memory_budget_mb > 0 {
        return Some(MemoryBudget {
            bytes: r.memory_budget_mb.saturating_mul(1 << 20),
            source: "config",
        });
    }
    reading().1
}

/// Resident memory now (bytes), read at most every [`READING_TTL`].
pub(crate) fn rss() -> Option<u64> {
    reading().0
}

/// `(resident bytes, detected budget)`, cached for [`READING_TTL`]: the admission path reads it
/// on every inference request.
fn reading() -> (Option<u64>, Option<MemoryBudget>) {
    type Reading = (Instant, Option<u64>, Option<MemoryBudget>);
    static LAST: Mutex<Option<Reading>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    match *last {
        Some((at, rss, b)) if now.duration_since(at) < READING_TTL => (rss, b),
        _ => {
            let rss = pno_core::resources::rss_bytes().map(|(now, _)| now);
            let b = pno_core::resources::memory_budget();
            *last = Some((now, rss, b));
            (rss, b)
        }
    }
}

/// The worst case a version is sized for (see `ResourcesConfig`): `limits.max_batch` inputs
/// (fewer when `limits.max_sample_values` admits fewer with one draw), `limits.max_samples`
/// draws (fewer when `max_sample_values` caps them, counted as the protocol counts them:
/// inputs × draws × input channels × points), `limits.batch` per forward pass, on the training
/// grid or `limits.max_resolution` per axis when other resolutions are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WorstCase {
    max_batch: usize,
    max_samples: usize,
    max_sample_values: usize,
    batch: usize,
    max_resolution: usize,
}

impl WorstCase {
    /// From the limits in force.
    pub(crate) fn of(l: &Limits) -> Self {
        Self {
            max_batch: l.max_batch,
            max_samples: l.max_samples,
            max_sample_values: l.max_sample_values,
            batch: l.batch,
            max_resolution: l.max_resolution,
        }
    }

    /// The footprint of `m` in this worst case, and a description of the case.
    pub(crate) fn footprint(&self, m: &TrainedModel) -> (Footprint, String) {
        let grid: Vec<usize> = if self.max_resolution > 0 {
            vec![self.max_resolution; m.file.grid.len()]
        } else {
            m.file.grid.clone()
        };
        let per_draw = m.file.in_channels.max(1) * grid.iter().product::<usize>().max(1);
        let msv = self.max_sample_values.max(1);
        let rows = self.max_batch.min(msv / per_draw).max(1);
        let draws = self.max_samples.min(msv / (rows * per_draw)).max(1);
        let f = m.footprint(FootprintAsk {
            rows,
            draws,
            grid: &grid,
            batch: self.batch,
        });
        let case = format!(
            "{rows} inputs × {draws} draws on {grid:?}, {} per forward pass",
            self.batch
        );
        (f, case)
    }
}

/// Bytes as MiB with one decimal (KiB below one MiB).
pub(crate) fn mib(bytes: u64) -> String {
    if bytes < 1 << 20 {
        format!("{:.0} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / MIB)
    }
}

/// Whether a version with footprint `f` fits beside `used` bytes of loaded versions' footprints:
/// `Err(reason)` naming the estimate, what is used, the budget and `resources.load_fraction`.
pub(crate) fn fits(
    r: &ResourcesConfig,
    budget: Option<MemoryBudget>,
    f: &Footprint,
    case: &str,
    used: u64,
) -> Result<(), String> {
    let Some(b) = budget else {
        return Ok(());
    };
    let share = (b.bytes as f64 * r.load_fraction) as u64;
    if used.saturating_add(f.total) <= share {
        return Ok(());
    }
    Err(format!(
        "not enough memory: its estimated footprint is {} (parameters {}, activations {}, outputs {}, loading {}; for {case}) and the versions already loaded use {}, together more than resources.load_fraction = {} of the {} memory budget of {} ({}); raise resources.memory_budget_mb or resources.load_fraction, unload a version, or lower limits.max_batch / limits.max_samples",
        mib(f.total),
        mib(f.params_bytes),
        mib(f.activations_bytes),
        mib(f.outputs_bytes),
        mib(f.load_bytes),
        mib(used),
        r.load_fraction,
        b.source,
        mib(b.bytes),
        mib(share),
    ))
}

/// The high-water mark: while resident memory is above `shed_fraction` of the budget, an
/// inference request for the version labelled `labels` is shed with 503 and `Retry-After`,
/// counted in `pno_shed_total{reason="memory"}`.
pub(crate) fn admit(r: &ResourcesConfig, metrics: &Metrics, labels: &str) -> Result<(), ApiError> {
    let (Some(b), Some(rss)) = (budget(r), rss()) else {
        return Ok(());
    };
    let mark = (b.bytes as f64 * r.shed_fraction) as u64;
    if rss <= mark {
        return Ok(());
    }
    metrics.inc("pno_shed_total", format!("{labels},reason=\"memory\""), 1.0);
    Err(ApiError::unavailable(
        format!(
            "memory is above the high-water mark: resident {} is more than resources.shed_fraction = {} of the {} memory budget of {} ({}); retry later",
            mib(rss),
            r.shed_fraction,
            b.source,
            mib(b.bytes),
            mib(mark)
        ),
        1,
    )
    .class(FailureClass::Transient))
}
