//! The validated data setup of a run (`model.json` → `data`): which tensors, how the samples are
//! split, subsampled and normalised, and how trajectory windows are cut.

use serde::{Deserialize, Serialize};

use pno_core::SplitPlan;

/// Validated `[data]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSpec {
    /// Input tensor.
    pub x: String,
    /// Target tensor.
    pub y: String,
    /// Training-sample limit.
    pub n_train: Option<usize>,
    /// Held-out test samples at the end.
    pub n_test: usize,
    /// Validation fraction.
    pub val_fraction: f64,
    /// Subsampling stride.
    pub subsample: usize,
    /// Normalise.
    pub normalize: bool,
    /// Run the quality gate.
    pub check: bool,
    /// Domain length per axis.
    pub domain_length: f64,
    /// Periodic domain.
    pub periodic: bool,
    /// Calibration samples carved from the training part.
    #[serde(default)]
    pub n_calibration: usize,
    /// Windows cut from trajectories (`None`: the tensors are input/target pairs).
    #[serde(default)]
    pub window: Option<Window>,
}

/// How trajectory frames are laid out as model fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowLayout {
    /// Frames × channels become the channels of a field on the spatial grid.
    Channels,
    /// Time becomes the first axis of a `(t, x)` field (1-D data, one channel).
    Field,
}

/// Validated `[data.window]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Input frames.
    pub t_in: usize,
    /// Target frames.
    pub t_out: usize,
    /// Temporal stride.
    pub stride: usize,
    /// First input frame.
    pub start: usize,
    /// Layout.
    pub layout: WindowLayout,
}

impl Window {
    /// Frame indices (in the stored trajectory) of rollout step `step` (0 = the input window,
    /// k ≥ 1 = the k-th predicted window).
    pub fn frames(&self, step: usize) -> Vec<usize> {
        let (first, len) = if step == 0 {
            (0, self.t_in)
        } else {
            (self.t_in + (step - 1) * self.t_out, self.t_out)
        };
        (first..first + len)
            .map(|k| self.start + k * self.stride)
            .collect()
    }

    /// Frames a trajectory needs for `steps` rollout steps.
    pub fn frames_needed(&self, steps: usize) -> usize {
        self.start + (self.t_in + steps.max(1) * self.t_out - 1) * self.stride + 1
    }
}

impl DataSpec {
    /// The split plan a run with training seed `seed` carves from this data.
    pub fn plan(&self, seed: u64) -> SplitPlan {
        SplitPlan {
            n_test: self.n_test,
            n_calibration: self.n_calibration,
            val_fraction: self.val_fraction,
            n_train: self.n_train,
            seed,
        }
    }
}
