//! How much memory a loaded model needs to answer one request: its parameters, the activations
//! of the largest forward pass [`TrainedModel::predict`] runs, and the host buffers it fills
//! (the draws, mean and std, for the whole request and for the chunk being computed). The
//! server sums these over the versions it loads against its memory budget.
//!
//! The estimate follows the code path, not a rule of thumb: the rows one forward pass takes
//! (`batch` inputs; for `mc_dropout`/`pno_d` several draws of them stacked, up to the same row
//! cap `predict` uses), the padded grid of the Fourier blocks, and the tensors alive at the
//! widest stage of the network (lifting, a fused Fourier block with its transforms, the
//! projection and std heads). What glibc's allocator does is measured, not assumed away: blocks
//! under its largest mmap threshold (32 MiB) come from arenas that keep much of what is freed,
//! so half of every smaller stage is counted on top of the widest, and half of loading's
//! temporary copies; larger blocks are returned whole. Not counted: the server's encoding of
//! the answer (JSON text or binary tensors) and the request body. The integration tests check
//! the estimate against the resident-memory growth of a fresh process that loads a run and
//! answers one request (`tests/it/footprint.rs`; BENCHMARKS.md has the shipped configs).

use pno_models::config::{BackboneSpec, DeepOnetSpec, FnoSpec};
use pno_models::{Kind, Model};

use crate::trained::TrainedModel;

/// Bytes of an f32 and an f64. The arithmetic is in f64 (an estimate; no overflow whatever the
/// limits), rounded to bytes at the end (saturating).
const F32: f64 = 4.0;
const F64: f64 = 8.0;
/// glibc's largest dynamic mmap threshold on 64-bit targets.
const MMAP_MAX: f64 = 32.0 * 1048576.0;

/// An estimate of the memory one request takes, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Footprint {
    /// Parameters (f32), plus a Laplace posterior's eigenvectors (f64): resident while loaded.
    pub params_bytes: u64,
    /// The widest forward pass: the tensors alive at its largest stage, and what the allocator
    /// keeps of the smaller stages.
    pub activations_bytes: u64,
    /// Host buffers of the answer: the input copy, the draws, mean and std of the whole
    /// request, and the chunk being computed.
    pub outputs_bytes: u64,
    /// The peak of loading: the file's bytes, the tensors read from them and the model they
    /// are copied into (three copies of the weights, measured), plus the posterior.
    pub load_bytes: u64,
    /// The peak: loading, or `params + activations + outputs` plus what loading left in the
    /// allocator's arenas (half its temporary copies), whichever is larger.
    pub total: u64,
}

/// What to size for: `rows` inputs with `draws` draws each on `grid`, `batch` inputs per
/// forward pass (as in [`crate::PredictRequest`]).
#[derive(Debug, Clone, Copy)]
pub struct FootprintAsk<'a> {
    /// Inputs in the request.
    pub rows: usize,
    /// Draws per input.
    pub draws: usize,
    /// Spatial grid.
    pub grid: &'a [usize],
    /// Inputs per forward pass.
    pub batch: usize,
}

impl TrainedModel {
    /// The estimated memory of answering `ask` with this model (see the module docs).
    pub fn footprint(&self, ask: FootprintAsk<'_>) -> Footprint {
        let weights = pno_models::num_params(&self.model) as f64 * F32;
        let posterior = self.model.laplace.as_ref().map_or(0.0, |post| {
            (post.eigvecs.len() + post.eigvals.len()) as f64 * F64
        });
        let (activations, outputs) = estimate(&self.model, self.file.in_channels, ask);
        let params = weights + posterior;
        let load = 3.0 * weights + 2.0 * posterior;
        // As between the stages of a forward pass, about half of the load's temporary copies
        // stay in the allocator's arenas while the first request is answered (measured).
        let kept = (load - params) / 2.0;
        let total = (params + kept + activations + outputs).max(load);
        Footprint {
            params_bytes: params as u64,
            activations_bytes: activations as u64,
            outputs_bytes: outputs as u64,
            load_bytes: load as u64,
            total: total as u64,
        }
    }
}

/// `(activations, outputs)` in bytes.
fn estimate(model: &Model, cin: usize, ask: FootprintAsk<'_>) -> (f64, f64) {
    let spec = &model.spec;
    let points: usize = ask.grid.iter().product::<usize>().max(1);
    let p = points as f64;
    let n = ask.rows.max(1) as f64;
    let s = ask.draws.max(1) as f64;
    let batch = ask.batch.max(1).min(ask.rows.max(1));
    let b = batch as f64;
    let cout = match &spec.backbone {
        BackboneSpec::Fno(f) => f.out_channels,
        BackboneSpec::Deeponet(d) => d.out_channels,
    } as f64;
    let d = cout * p;
    // Rows in one forward pass.
    let r = if matches!(spec.kind, Kind::McDropout | Kind::PnoD) {
        let per_pass = (crate::trained::max_rows(points, ask.batch.max(1)) / batch).max(1);
        b * per_pass.min(ask.draws.max(1)) as f64
    } else {
        b
    };
    let members = model.members.len() as f64;
    let activations = match &spec.backbone {
        BackboneSpec::Fno(f) => fno_floats(f, spec.kind, members, r, ask.grid),
        BackboneSpec::Deeponet(o) => deeponet_floats(o, r, ask.grid),
    } * F32;
    // The whole answer: input copy, draws, mean, std (and aleatoric variance for std heads).
    let heads = if matches!(spec.kind, Kind::PnoR | Kind::ViPno | Kind::Laplace)
        || matches!(&spec.backbone, BackboneSpec::Fno(f) if f.std_head)
        || matches!(&spec.backbone, BackboneSpec::Deeponet(o) if o.std_head)
    {
        3.0
    } else {
        2.0
    };
    let whole = (n * cin as f64 * p + s * n * d + heads * n * d) * F32;
    // One chunk of `b` rows inside `Model::predict`: the draws and the scaled samples (f32),
    // mean and variance (f64), plus the per-member heads of an ensemble.
    let ensemble = if spec.kind == Kind::Ensemble {
        2.0 * members * b * d * F32
    } else {
        0.0
    };
    let chunk = 2.0 * s * b * d * F32 + 2.0 * b * d * F64 + ensemble;
    (activations, whole + chunk)
}

/// Floats alive at the widest stage of one FNO forward pass over `r` rows on `grid`, for a
/// model of `kind` with `members` networks.
fn fno_floats(f: &FnoSpec, kind: Kind, members: f64, r: f64, grid: &[usize]) -> f64 {
    let p = grid.iter().map(|&n| n as f64).product::<f64>();
    let padded: Vec<f64> = grid
        .iter()
        .map(|&n| n as f64 + (n as f64 * f.domain_padding).round())
        .collect();
    let pp: f64 = padded.iter().product();
    let h = f.hidden_channels as f64;
    let co = f.out_channels as f64;
    let axes = if f.positional_embedding {
        grid.len()
    } else {
        0
    };
    let d_in = (f.in_channels + axes) as f64;
    // A two-layer channel MLP runs as one fused op: its input and output are alive, its hidden
    // features only as a cache-sized block per thread (the dropout mask made inside the kernel),
    // counted as nothing.
    let mlp = |d_in: f64, d_out: f64| -> f64 { d_in + d_out };
    let lift = (r * p * mlp(d_in, h), r * p * d_in.max(h));
    // A Fourier block on the padded grid is one fused op (convolution, skip, GELU): its input
    // and output, the last-axis transform of every row (`[rows, h, h₁·2·k2]`, `2·k` in 1-D; the
    // forward's and the inverse's are not alive together) and the input's Fourier coefficients
    // (`[rows, h, 2·k1·k2]`); the mixed coefficients, as large, are freed before the output is
    // allocated. The op reads the weights in place (a selected copy of both halves when the
    // grid truncates modes); `vi_pno` samples them (noise, softplus and product for each half:
    // ~10 weight-sized temporaries).
    let w = pno_models::spectral::mode_count(&f.n_modes) as f64 * h * h;
    let half = |m: usize, n: f64| ((m / 2 + 1) as f64).min((n / 2.0).floor() + 1.0);
    let (rows_transform, coefs) = match padded.as_slice() {
        [n] => (2.0 * half(f.n_modes[0], *n), 2.0 * half(f.n_modes[0], *n)),
        [hh, ww] => {
            let k2 = half(f.n_modes[1], *ww);
            let k1 = (f.n_modes[0] as f64).min(*hh);
            (2.0 * hh * k2, 2.0 * k1 * k2)
        }
        _ => (0.0, 0.0),
    };
    let sampled = if kind == Kind::ViPno { 10.0 * w } else { 0.0 };
    let block = (
        r * h * (2.0 * pp + rows_transform + coefs) + 2.0 * w + sampled,
        r * h * pp,
    );
    // The projection (the std head runs first; its output stays alive).
    let heads = if f.std_head { 2.0 } else { 1.0 };
    let projection = f.projection_channels as f64;
    let features = projection.max(h);
    let mut proj = r * p * (mlp(h, co) + heads * co);
    if kind == Kind::Laplace {
        // Last-layer Laplace keeps the features of the last layer and copies them to the host.
        proj = proj.max(r * p * (h + 2.0 * features));
    }
    let proj = (proj, r * p * features);
    // An ensemble keeps every member's heads (mean and std; the features only a Laplace pass
    // returns) until all have run.
    let kept = (members - 1.0).max(0.0) * r * p * 2.0 * co;
    kept + widest(&[lift, block, proj])
}

/// The peak of consecutive stages `(floats alive, floats in the largest tensor)`: the widest
/// stage, plus half of every other stage whose tensors are under glibc's largest mmap
/// threshold (32 MiB): those come from the allocator's arenas, which keep much of what is
/// freed (measured), while larger ones are mapped and unmapped whole.
fn widest(stages: &[(f64, f64)]) -> f64 {
    let top = stages.iter().map(|s| s.0).fold(0.0, f64::max);
    let i = stages.iter().position(|s| s.0 == top).unwrap_or(0);
    let sticky: f64 = stages
        .iter()
        .enumerate()
        .filter(|&(j, s)| j != i && s.1 * F32 < MMAP_MAX)
        .map(|(_, s)| s.0)
        .sum();
    top + sticky / 2.0
}

/// Floats alive at the widest stage of one DeepONet forward pass over `r` rows on `grid`:
/// the branch (on the sensors), the trunk (on the grid) and the combined output.
fn deeponet_floats(o: &DeepOnetSpec, r: f64, grid: &[usize]) -> f64 {
    let p = grid.iter().map(|&n| n as f64).product::<f64>();
    let sensors = o.sensors.iter().map(|&n| n as f64).product::<f64>();
    let h = o.hidden_channels as f64;
    let heads = if o.std_head { 2.0 } else { 1.0 };
    let co = o.out_channels as f64;
    let basis = o.basis_size as f64;
    let cin = o.in_channels as f64;
    // Inputs off the sensor grid are resampled onto it first.
    let resample = if sensors == p {
        0.0
    } else {
        2.0 * r * cin * sensors.max(p)
    };
    let branch = r * (2.0 * cin * sensors + 3.0 * h + heads * co * basis);
    let trunk = 3.0 * h.max(basis) * p;
    let out = 3.0 * r * heads * co * p;
    resample + branch.max(trunk + out)
}
