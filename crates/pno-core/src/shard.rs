//! Shards: disjoint contiguous parts of a sample index range, for cluster job arrays.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The `index`-th of `count` disjoint parts (`--shard I/K`, zero-based `I`).
///
/// Part `I` of `n` samples is the contiguous range `[⌊I·n/K⌋, ⌊(I+1)·n/K⌋)`, so the parts are
/// disjoint, cover `0..n` exactly and differ in size by at most one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardSpec {
    /// Zero-based part number, `< count`.
    pub index: usize,
    /// Number of parts, `>= 1`.
    pub count: usize,
}

impl ShardSpec {
    /// The whole range as one part.
    pub const WHOLE: ShardSpec = ShardSpec { index: 0, count: 1 };

    /// A validated shard.
    pub fn new(index: usize, count: usize) -> Result<Self> {
        if count == 0 || index >= count {
            return Err(Error::Invalid {
                field: "shard",
                expected: "I/K with K >= 1 and 0 <= I < K".into(),
                got: format!("{index}/{count}"),
            });
        }
        Ok(Self { index, count })
    }

    /// The sample indices of this part out of `n`.
    pub fn range(&self, n: usize) -> Range<usize> {
        let lo = (self.index as u128 * n as u128 / self.count as u128) as usize;
        let hi = ((self.index as u128 + 1) * n as u128 / self.count as u128) as usize;
        lo..hi
    }
}

impl Default for ShardSpec {
    fn default() -> Self {
        Self::WHOLE
    }
}

impl fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for ShardSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::Invalid {
            field: "shard",
            expected: "I/K, e.g. 0/4".into(),
            got: s.to_string(),
        };
        let (i, k) = s.split_once('/').ok_or_else(bad)?;
        let i = i.trim().parse().map_err(|_| bad())?;
        let k = k.trim().parse().map_err(|_| bad())?;
        Self::new(i, k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_ranges_partition_exactly() {
        for n in [0usize, 1, 7, 10, 101] {
            for k in 1..=8 {
                let mut next = 0;
                for i in 0..k {
                    let r = ShardSpec::new(i, k).unwrap().range(n);
                    assert_eq!(r.start, next);
                    assert!(r.len() <= n / k + 1);
                    next = r.end;
                }
                assert_eq!(next, n);
            }
        }
    }

    #[test]
    fn shard_parse_rejects_bad_input() {
        assert!("3/3".parse::<ShardSpec>().is_err());
        assert!("1-3".parse::<ShardSpec>().is_err());
        assert!("0/0".parse::<ShardSpec>().is_err());
        assert_eq!(
            "2/5".parse::<ShardSpec>().unwrap(),
            ShardSpec::new(2, 5).unwrap()
        );
    }
}
