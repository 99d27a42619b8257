//! Per-sample random streams.
//!
//! Sample `i` of a dataset with base seed `s` draws from its own ChaCha8 stream
//! (`seed_from_u64(s)`, stream `i`), so a sample's values depend only on `(s, i)`: never on the
//! thread that computed it, the order of completion, or the shard it belongs to. ChaCha8 is
//! portable across platforms; `rand_distr`'s normal sampler is pinned through `Cargo.lock`.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The random stream of sample `index` in a dataset seeded with `seed`.
pub fn sample_rng(seed: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    rng
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn sample_rng_streams_are_distinct_and_reproducible() {
        let a: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(sample_rng(7, 3), |r, _| Some(r.random()))
            .collect();
        let b: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(sample_rng(7, 3), |r, _| Some(r.random()))
            .collect();
        let c: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(sample_rng(7, 4), |r, _| Some(r.random()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
