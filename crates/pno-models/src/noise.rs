//! Seeded, batch-invariant randomness for stochastic forward passes.
//!
//! Every input row of a batch owns its own ChaCha8 stream, derived from `(seed, draw, row)`,
//! where `draw` is the sample index at prediction time (or the step counter in training) and
//! `row` is the input's index in the whole request or epoch. A dropout mask or a noise field
//! for row `i` therefore never depends on which other inputs share its batch: `pno predict`
//! with any batch size and the server answering one request give the same samples for the
//! same seed. Tensors are built on the host and uploaded, so burn's global RNG is never used.

use burn::tensor::{Device, Tensor, TensorData};
use pno_core::seed::{mix, salt};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

/// Stream words drawn at a time for a dropout mask.
const MASK_BLOCK: usize = 512;

/// The inverted-dropout rule for probability `p`: an entry is 0 when its stream word is below
/// the threshold (probability `p`) and the keep scale `1/(1-p)` otherwise.
fn mask_rule(p: f64) -> (u32, f32) {
    // P(u < threshold) = p with u uniform on [0, 2^32).
    let threshold = (p * 4_294_967_296.0).min(4_294_967_295.0) as u32;
    (threshold, 1.0 / (1.0 - p) as f32)
}

/// The next `out.len()` mask entries of one row's stream, one stream word each.
fn fill_mask(rng: &mut ChaCha8Rng, out: &mut [f32], threshold: u32, keep: f32) {
    // The stream's next words in bulk (the same words, in the same order, as one `next_u32`
    // per entry), then a branch-free select the compiler vectorises.
    let mut words = [0u32; MASK_BLOCK];
    for chunk in out.chunks_mut(MASK_BLOCK) {
        let words = &mut words[..chunk.len()];
        rng.fill(words);
        for (o, &u) in chunk.iter_mut().zip(words.iter()) {
            *o = if u < threshold { 0.0 } else { keep };
        }
    }
}

/// Dropout masks kept as the positions of the row streams they come from (see
/// [`Noise::mask_streams`]): row `i`'s mask is the next `per_row` words of stream `i` from its
/// saved position, any part of it made on demand, the same values [`Noise::dropout_mask`] gives.
#[derive(Debug, Clone)]
pub struct MaskStreams {
    starts: Vec<ChaCha8Rng>,
    per_row: usize,
    threshold: u32,
    keep: f32,
}

impl MaskStreams {
    /// Rows (the batch).
    pub fn batch(&self) -> usize {
        self.starts.len()
    }

    /// Entries per row.
    pub fn per_row(&self) -> usize {
        self.per_row
    }

    /// Entries `offset .. offset + out.len()` of row `row`'s mask into `out`.
    pub fn fill(&self, row: usize, offset: usize, out: &mut [f32]) {
        assert!(
            row < self.starts.len() && offset + out.len() <= self.per_row,
            "mask entries {offset}..{} of row {row}: the masks have {} rows of {}",
            offset + out.len(),
            self.starts.len(),
            self.per_row
        );
        let mut rng = self.starts[row].clone();
        let at = rng.get_word_pos();
        rng.set_word_pos(at + offset as u128);
        fill_mask(&mut rng, out, self.threshold, self.keep);
    }

    /// Every mask, `[batch · per_row]` row after row (for backends without the fused kernel).
    pub fn to_vec(&self) -> Vec<f32> {
        let mut v = vec![0.0f32; self.batch() * self.per_row];
        v.par_chunks_mut(self.per_row.max(1))
            .enumerate()
            .for_each(|(row, out)| self.fill(row, 0, out));
        v
    }
}

/// Per-row random streams for one stochastic forward pass over a batch.
#[derive(Debug, Clone)]
pub struct Noise {
    rows: Vec<ChaCha8Rng>,
    shared: ChaCha8Rng,
}

impl Noise {
    /// Streams for rows `first_row .. first_row + batch` of draw `draw` under `seed`.
    ///
    /// `shared` (used for quantities common to the whole pass, such as a weight sample of a
    /// Bayesian layer) depends on `(seed, draw)` only.
    pub fn new(seed: u64, draw: u64, first_row: u64, batch: usize) -> Self {
        Self::from_keys(seed, draw, (0..batch as u64).map(|r| (draw, first_row + r)))
    }

    /// One stream per `(draw, row)` key, for passes that stack several draws of the same inputs
    /// into one batch; the shared stream is keyed by `shared_draw`.
    pub fn from_keys(
        seed: u64,
        shared_draw: u64,
        keys: impl IntoIterator<Item = (u64, u64)>,
    ) -> Self {
        Self::from_seeded_keys(
            seed,
            shared_draw,
            keys.into_iter().map(|(d, r)| (seed, d, r)),
        )
    }

    /// One stream per `(seed, draw, row)` key: rows of different requests (each with its own
    /// seed) in one pass, each row's stream the same as in a pass of its own request alone.
    /// The shared stream is keyed by `(shared_seed, shared_draw)`.
    pub fn from_seeded_keys(
        shared_seed: u64,
        shared_draw: u64,
        keys: impl IntoIterator<Item = (u64, u64, u64)>,
    ) -> Self {
        let rows = keys
            .into_iter()
            .map(|(s, d, r)| ChaCha8Rng::seed_from_u64(mix(&[s, d, r, salt::DRAW])))
            .collect();
        let shared =
            ChaCha8Rng::seed_from_u64(mix(&[shared_seed, shared_draw, 0, salt::SHARED_DRAW]));
        Self { rows, shared }
    }

    /// Number of rows (batch size) this pass was made for.
    pub fn batch(&self) -> usize {
        self.rows.len()
    }

    /// Inverted-dropout mask of shape `[batch, per_row...]`: each entry is 0 with probability
    /// `p` and `1/(1-p)` otherwise. The models never draw it as a tensor: their fused ops make the
    /// same entries inside the kernels from [`Noise::mask_streams`]; this is the reference they
    /// are tested against.
    pub fn dropout_mask<const D: usize>(
        &mut self,
        p: f64,
        dims: [usize; D],
        device: &Device,
    ) -> Tensor<D> {
        let per_row: usize = dims[1..].iter().product();
        let (threshold, keep) = mask_rule(p);
        // Rows are independent streams: fill them in parallel, deterministically.
        let mut v = vec![0.0f32; dims[0] * per_row];
        let rows = self.rows.par_iter_mut();
        v.par_chunks_mut(per_row.max(1))
            .zip(rows)
            .for_each(|(out, rng)| fill_mask(rng, out, threshold, keep));
        Tensor::from_data(TensorData::new(v, dims), device)
    }

    /// The dropout masks of `per_row` entries per row that [`Noise::dropout_mask`] would draw
    /// now, as stream positions instead of values: each row's stream moves on past the words
    /// the mask takes, exactly as if it had been drawn, and a kernel makes any part of the mask
    /// from the returned [`MaskStreams`] when it needs it ([`crate::fused`] does, forward and
    /// backward, so the mask is never stored).
    pub fn mask_streams(&mut self, p: f64, per_row: usize) -> MaskStreams {
        let starts = self.rows.clone();
        for rng in &mut self.rows {
            let at = rng.get_word_pos();
            rng.set_word_pos(at + per_row as u128);
        }
        let (threshold, keep) = mask_rule(p);
        MaskStreams {
            starts,
            per_row,
            threshold,
            keep,
        }
    }

    /// Standard normal draws of shape `[batch, per_row...]`, row `i` from stream `i`.
    pub fn normal<const D: usize>(&mut self, dims: [usize; D], device: &Device) -> Tensor<D> {
        let per_row: usize = dims[1..].iter().product();
        let mut v = vec![0.0f32; dims[0] * per_row];
        let rows = self.rows.par_iter_mut();
        v.par_chunks_mut(per_row.max(1))
            .zip(rows)
            .for_each(|(out, rng)| {
                for o in out {
                    *o = Distribution::<f64>::sample(&StandardNormal, rng) as f32;
                }
            });
        Tensor::from_data(TensorData::new(v, dims), device)
    }

    /// Spatially correlated standard normal fields `[batch, channels, points]` on a periodic
    /// grid with spatial `grid` dims: white noise smoothed by a separable Gaussian kernel of
    /// standard deviation `length / sqrt(2)` (domain length 1), renormalised to unit pointwise
    /// variance, so the covariance is `exp(-|x-x'|^2 / (2 length^2))` up to truncation.
    pub fn correlated(
        &mut self,
        channels: usize,
        grid: &[usize],
        length: f64,
        device: &Device,
    ) -> Tensor<3> {
        let points: usize = grid.iter().product();
        let batch = self.rows.len();
        let mut out = Vec::with_capacity(batch * channels * points);
        let kernels: Vec<Vec<f64>> = grid.iter().map(|&n| gaussian_kernel(n, length)).collect();
        for rng in &mut self.rows {
            for _ in 0..channels {
                let mut f: Vec<f64> = (0..points).map(|_| StandardNormal.sample(rng)).collect();
                let mut stride = 1;
                for (axis, &n) in grid.iter().enumerate().rev() {
                    f = convolve_axis(&f, grid, axis, stride, n, &kernels[axis]);
                    stride *= n;
                }
                out.extend(f.iter().map(|&x| x as f32));
            }
        }
        Tensor::from_data(TensorData::new(out, [batch, channels, points]), device)
    }

    /// Standard normal draws shared by the whole pass (same for every row).
    pub fn shared_normal<const D: usize>(
        &mut self,
        dims: [usize; D],
        device: &Device,
    ) -> Tensor<D> {
        let n: usize = dims.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| Distribution::<f64>::sample(&StandardNormal, &mut self.shared) as f32)
            .collect();
        Tensor::from_data(TensorData::new(v, dims), device)
    }

    /// A uniform integer in `0..n` from the shared stream.
    pub fn shared_index(&mut self, n: usize) -> usize {
        self.shared.random_range(0..n.max(1))
    }
}

/// Normalised (unit sum of squares) periodic Gaussian kernel on `n` points, half-width 3σ.
fn gaussian_kernel(n: usize, length: f64) -> Vec<f64> {
    let sigma = (length / std::f64::consts::SQRT_2 * n as f64).max(1e-3);
    // Taps never wrap onto each other, so the folded kernel keeps unit sum of squares.
    let half = ((3.0 * sigma).ceil() as usize).min(n.saturating_sub(1) / 2);
    let mut k: Vec<f64> = (0..=2 * half)
        .map(|i| {
            let d = i as f64 - half as f64;
            (-0.5 * d * d / (sigma * sigma)).exp()
        })
        .collect();
    let norm = k.iter().map(|x| x * x).sum::<f64>().sqrt();
    k.iter_mut().for_each(|x| *x /= norm);
    k
}

fn convolve_axis(
    f: &[f64],
    grid: &[usize],
    _axis: usize,
    stride: usize,
    n: usize,
    k: &[f64],
) -> Vec<f64> {
    let half = (k.len() / 2) as isize;
    let total: usize = grid.iter().product();
    let mut out = vec![0.0; total];
    for (idx, o) in out.iter_mut().enumerate() {
        let i = (idx / stride) % n;
        let base = idx - i * stride;
        let mut acc = 0.0;
        for (t, &w) in k.iter().enumerate() {
            let j = (i as isize + t as isize - half).rem_euclid(n as isize) as usize;
            acc += w * f[base + j * stride];
        }
        *o = acc;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    /// The mask against the plain rule on each row's stream, one `next_u32` per entry, over
    /// three consecutive masks (the streams carry on from one to the next) whose rows are not
    /// multiples of the block the mask draws at a time.
    #[test]
    fn dropout_masks_follow_each_rows_stream_word_by_word() {
        let device = Device::flex();
        let (seed, draw, first, batch) = (7, 3, 11, 3);
        let mut noise = Noise::new(seed, draw, first, batch);
        let mut reference = noise.rows.clone();
        for (p, per_row) in [
            (0.3, [5, MASK_BLOCK + 37]),
            (0.1, [1, 1]),
            (0.5, [2, 3 * MASK_BLOCK]),
        ] {
            let dims = [batch, per_row[0], per_row[1]];
            let got = noise
                .dropout_mask(p, dims, &device)
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32 mask");
            let threshold = (p * 4_294_967_296.0) as u32;
            let keep = 1.0 / (1.0 - p) as f32;
            let want: Vec<f32> = reference
                .iter_mut()
                .flat_map(|rng| {
                    (0..per_row[0] * per_row[1])
                        .map(|_| {
                            if rng.next_u32() < threshold {
                                0.0
                            } else {
                                keep
                            }
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            assert_eq!(got, want, "p = {p}, rows of {per_row:?}");
            let dropped = got.iter().filter(|&&v| v == 0.0).count() as f64 / got.len() as f64;
            assert!(
                got.len() < 100 || (dropped - p).abs() < 0.05,
                "p = {p}: dropped {dropped}"
            );
        }
    }

    /// Masks kept as stream positions give the values `dropout_mask` draws, whole or in parts
    /// from any offset, and leave the streams where drawing them would have.
    #[test]
    fn mask_streams_match_drawn_masks_in_any_part_and_move_the_streams_on() {
        let device = Device::flex();
        let (batch, per_row) = (3, 2 * MASK_BLOCK + 77);
        let mut drawn = Noise::new(5, 1, 0, batch);
        let mut kept = drawn.clone();
        let _ = drawn.dropout_mask(0.2, [batch, 4], &device);
        let _ = kept.dropout_mask(0.2, [batch, 4], &device);
        let want = drawn
            .dropout_mask(0.3, [batch, per_row], &device)
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32 mask");
        let streams = kept.mask_streams(0.3, per_row);
        assert_eq!(streams.to_vec(), want);
        for (row, offset, len) in [(0, 0, 1), (1, 5, MASK_BLOCK + 3), (2, per_row - 9, 9)] {
            let mut part = vec![0.0f32; len];
            streams.fill(row, offset, &mut part);
            let at = row * per_row + offset;
            assert_eq!(part, want[at..at + len], "row {row} from {offset}");
        }
        // The next draws agree: the kept streams moved on by exactly the mask's words.
        let next = |n: &mut Noise| {
            n.normal([batch, 7], &device)
                .into_data()
                .try_to_vec::<f32>()
        };
        assert_eq!(next(&mut kept).ok(), next(&mut drawn).ok());
    }
}
