//! Seed derivation: every random stream of the workspace is keyed by a user seed mixed with a
//! named salt (and indices), so streams never collide and the same seed always gives the same
//! numbers.
//!
//! ```
//! use pno_core::seed::{mix, salt};
//! let a = mix(&[7, salt::SPLITS]);
//! assert_eq!(a, mix(&[7, salt::SPLITS]));
//! assert_ne!(a, mix(&[7, salt::VALIDATION]));
//! ```

/// Named salts: one per random stream. Their values are part of the reproducibility contract
/// (changing one changes every run that uses it).
pub mod salt {
    /// Weight initialisation: `mix(&[seed, counter, INIT])`.
    pub const INIT: u64 = 3;
    /// Per-draw, per-row noise of a stochastic forward pass: `mix(&[seed, draw, row, DRAW])`.
    pub const DRAW: u64 = 1;
    /// Noise shared by every row of a draw: `mix(&[seed, draw, 0, SHARED_DRAW])`.
    pub const SHARED_DRAW: u64 = 2;
    /// Ensemble member `k` of a prediction: `mix(&[seed, k, MEMBER])`.
    pub const MEMBER: u64 = 17;
    /// The seeded permutation that carves train/validation/calibration splits.
    pub const SPLITS: u64 = 0x5eed;
    /// Draws of the validation pass during training.
    pub const VALIDATION: u64 = 0x7a1;
    /// The shuffled data order of training epoch `e`: `mix(&[seed, e, EPOCH_ORDER])`.
    pub const EPOCH_ORDER: u64 = 0xe9;
    /// Per-step training noise: `mix(&[seed, step, TRAIN_STEP])`.
    pub const TRAIN_STEP: u64 = 0x57e9;
    /// Rollout step `k` of an evaluation: `mix(&[seed, ROLLOUT, k])`.
    pub const ROLLOUT: u64 = 0x7011;
}

/// Mixes `parts` into one 64-bit seed (a boost-style hash combine followed by SplitMix64 per
/// part), so nearby inputs give unrelated seeds.
pub fn mix(parts: &[u64]) -> u64 {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15;
    for &p in parts {
        h ^= p
            .wrapping_add(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(h << 6)
            .wrapping_add(h >> 2);
        h = splitmix(h);
    }
    h
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_values_pin_the_stream_contract() {
        // Changing `mix` would silently change every seeded run; these values come from an
        // independent Python transcription of the algorithm (64-bit wrapping arithmetic).
        assert_eq!(mix(&[]), 0x9e37_79b9_7f4a_7c15);
        assert_eq!(mix(&[0]), 0x3a13_eaf2_0263_2586);
        assert_eq!(mix(&[42, 0x5eed]), 0x5450_0346_cac9_5176);
        let a = mix(&[0, salt::SPLITS]);
        let b = mix(&[1, salt::SPLITS]);
        assert_ne!(a, b);
        let salts = [
            salt::INIT,
            salt::DRAW,
            salt::SHARED_DRAW,
            salt::MEMBER,
            salt::SPLITS,
            salt::VALIDATION,
            salt::TRAIN_STEP,
            salt::ROLLOUT,
            salt::EPOCH_ORDER,
        ];
        let mut seen: Vec<u64> = salts.iter().map(|&s| mix(&[42, s])).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), salts.len(), "salts must give distinct streams");
    }
}
