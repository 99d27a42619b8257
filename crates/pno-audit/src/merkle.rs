//! The Merkle tree of RFC 9162 §2.1 over the audit records: leaf hash `SHA-256(0x00 ‖ record)`,
//! node hash `SHA-256(0x01 ‖ left ‖ right)`, the tree of `n` leaves split at the largest power of
//! two below `n`. Inclusion proofs (§2.1.3) show a record is in the tree of a given size;
//! consistency proofs (§2.1.4) show a tree of size `m` is a prefix of a tree of size `n`, so a
//! signed checkpoint of an older size pins every record written before it.

use sha2::{Digest, Sha256};

use crate::error::{Result, invalid};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The Merkle tree hash of the leaf hashes `leaves` (`SHA-256("")` for none).
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The inclusion proof of leaf `index` in the tree of `leaves` (RFC 9162 `PATH`).
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Result<Vec<Hash>> {
    if index >= leaves.len() {
        return Err(invalid(
            "inclusion proof",
            format!("a leaf index below the tree size {}", leaves.len()),
            index,
        ));
    }
    fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
        let n = d.len();
        if n <= 1 {
            return Vec::new();
        }
        let k = split(n);
        if m < k {
            let mut p = path(m, &d[..k]);
            p.push(root(&d[k..]));
            p
        } else {
            let mut p = path(m - k, &d[k..]);
            p.push(root(&d[..k]));
            p
        }
    }
    Ok(path(index, leaves))
}

/// The consistency proof between the tree of the first `old` leaves and the tree of all
/// `leaves` (RFC 9162 `PROOF`); `old` in `1..=leaves.len()`.
pub fn consistency_proof(leaves: &[Hash], old: usize) -> Result<Vec<Hash>> {
    if old == 0 || old > leaves.len() {
        return Err(invalid(
            "consistency proof",
            format!("an old size in 1..={}", leaves.len()),
            old,
        ));
    }
    fn subproof(m: usize, d: &[Hash], complete: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if complete { Vec::new() } else { vec![root(d)] };
        }
        let k = split(n);
        if m <= k {
            let mut p = subproof(m, &d[..k], complete);
            p.push(root(&d[k..]));
            p
        } else {
            let mut p = subproof(m - k, &d[k..], false);
            p.push(root(&d[..k]));
            p
        }
    }
    Ok(subproof(old, leaves, true))
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2): leaf `index` with hash `leaf` is in the
/// tree of `size` leaves with root `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: usize,
    size: usize,
    proof: &[Hash],
    root_hash: &Hash,
) -> Result<()> {
    if index >= size {
        return Err(invalid(
            "inclusion proof",
            format!("index < size {size}"),
            index,
        ));
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(invalid("inclusion proof", "a shorter path", proof.len()));
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 || r != *root_hash {
        return Err(invalid(
            "inclusion proof",
            format!("root {}", hex::encode(root_hash)),
            format!("root {}", hex::encode(r)),
        ));
    }
    Ok(())
}

/// Verifies a consistency proof (RFC 9162 §2.1.4.2): the tree of `old` leaves with root
/// `old_root` is a prefix of the tree of `new` leaves with root `new_root`.
pub fn verify_consistency(
    old: usize,
    new: usize,
    proof: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> Result<()> {
    let fail = |got: String| invalid("consistency proof", "a prefix of the newer tree", got);
    if old == 0 || old > new {
        return Err(fail(format!("sizes {old} → {new}")));
    }
    if old == new {
        return if proof.is_empty() && old_root == new_root {
            Ok(())
        } else {
            Err(fail("different roots for the same size".into()))
        };
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if old.is_power_of_two() {
        path.insert(0, *old_root);
    }
    let Some((first, rest)) = path.split_first() else {
        return Err(fail("an empty proof".into()));
    };
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return Err(fail("a shorter proof".into()));
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 || fr != *old_root || sr != *new_root {
        return Err(fail(format!(
            "recomputed roots {} / {}",
            hex::encode(fr),
            hex::encode(sr)
        )));
    }
    Ok(())
}

/// The compact state of a Merkle tree being built leaf by leaf: the roots of its perfect
/// subtrees, largest first (O(log n) memory).
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    nodes: Vec<(u64, Hash)>,
}

impl Frontier {
    /// Append a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.nodes.push((1, leaf));
        while self.nodes.len() >= 2 {
            let (sr, r) = self.nodes[self.nodes.len() - 1];
            let (sl, l) = self.nodes[self.nodes.len() - 2];
            if sl != sr {
                break;
            }
            self.nodes.truncate(self.nodes.len() - 2);
            self.nodes.push((sl + sr, node_hash(&l, &r)));
        }
    }

    /// The tree hash of the leaves so far (`SHA-256("")` for none).
    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        let Some(&(_, mut acc)) = it.next() else {
            return Sha256::digest([]).into();
        };
        for (_, h) in it {
            acc = node_hash(h, &acc);
        }
        acc
    }
}
