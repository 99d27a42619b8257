//! RFC 9162 tree hashes and proofs against pymerkle; signed notes against `cryptography`.

use pno_audit::checkpoint::{Checkpoint, SignerKey, VerifierKey, key_pair, open, sign};
use pno_audit::merkle::{
    Frontier, Hash, consistency_proof, inclusion_proof, leaf_hash, root, verify_consistency,
    verify_inclusion,
};

fn golden() -> serde_json::Value {
    serde_json::from_str(include_str!("../golden/golden.json")).unwrap()
}

fn h(hex_str: &str) -> Hash {
    let v = hex::decode(hex_str).unwrap();
    v.try_into().unwrap()
}

fn leaves(g: &serde_json::Value) -> Vec<Hash> {
    g["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| leaf_hash(e.as_str().unwrap().as_bytes()))
        .collect()
}

#[test]
fn roots_match_pymerkle_for_every_size() {
    let g = golden();
    let l = leaves(&g);
    for (i, want) in g["leaf_hashes"].as_array().unwrap().iter().enumerate() {
        assert_eq!(l[i], h(want.as_str().unwrap()));
    }
    let mut f = Frontier::default();
    for size in 1..=l.len() {
        f.push(l[size - 1]);
        let want = h(g["roots"][size.to_string()].as_str().unwrap());
        assert_eq!(root(&l[..size]), want, "size {size}");
        assert_eq!(f.root(), want, "frontier at size {size}");
    }
}

#[test]
fn inclusion_proofs_match_pymerkle_and_verify() {
    let g = golden();
    let l = leaves(&g);
    for c in g["inclusion"].as_array().unwrap() {
        let (i, n) = (
            c["index"].as_u64().unwrap() as usize,
            c["size"].as_u64().unwrap() as usize,
        );
        let proof = inclusion_proof(&l[..n], i).unwrap();
        // pymerkle's path starts with the leaf itself, then the RFC 9162 PATH bottom-up.
        let theirs: Vec<Hash> = c["path"].as_array().unwrap()[1..]
            .iter()
            .map(|p| h(p.as_str().unwrap()))
            .collect();
        assert_eq!(proof, theirs, "index {i} size {n}");
        let r = h(g["roots"][n.to_string()].as_str().unwrap());
        verify_inclusion(&l[i], i, n, &proof, &r).unwrap();
        // Any other leaf, index or root fails.
        let other = l[(i + 1) % l.len()];
        if other != l[i] {
            assert!(verify_inclusion(&other, i, n, &proof, &r).is_err());
        }
        if n > 1 {
            assert!(verify_inclusion(&l[i], (i + 1) % n, n, &proof, &r).is_err());
        }
        let mut bad = r;
        bad[0] ^= 1;
        assert!(verify_inclusion(&l[i], i, n, &proof, &bad).is_err());
    }
}

#[test]
fn consistency_proofs_verify_against_pymerkle_roots() {
    // pymerkle's consistency paths follow its own algorithm (not RFC 9162 SUBPROOF), so the
    // oracle here is its roots: our RFC proofs must verify between them.
    let g = golden();
    let l = leaves(&g);
    for c in g["consistency"].as_array().unwrap() {
        let (m, n) = (
            c["old"].as_u64().unwrap() as usize,
            c["new"].as_u64().unwrap() as usize,
        );
        let proof = consistency_proof(&l[..n], m).unwrap();
        let (ro, rn) = (
            h(g["roots"][m.to_string()].as_str().unwrap()),
            h(g["roots"][n.to_string()].as_str().unwrap()),
        );
        verify_consistency(m, n, &proof, &ro, &rn).unwrap();
        // A rewritten old tree (another old root) is caught.
        let mut bad = ro;
        bad[5] ^= 0x10;
        assert!(
            verify_consistency(m, n, &proof, &bad, &rn).is_err(),
            "{m} → {n}"
        );
        if !proof.is_empty() {
            let mut p = proof.clone();
            p[0][0] ^= 1;
            assert!(verify_consistency(m, n, &p, &ro, &rn).is_err(), "{m} → {n}");
        }
    }
    // Every pair of sizes, exhaustively.
    for n in 1..=l.len() {
        for m in 1..=n {
            let p = consistency_proof(&l[..n], m).unwrap();
            verify_consistency(m, n, &p, &root(&l[..m]), &root(&l[..n])).unwrap();
        }
        for i in 0..n {
            let p = inclusion_proof(&l[..n], i).unwrap();
            verify_inclusion(&l[i], i, n, &p, &root(&l[..n])).unwrap();
        }
    }
}

#[test]
fn signed_note_matches_cryptography_byte_for_byte() {
    let g = golden();
    let e = &g["ed25519"];
    let seed: [u8; 32] = hex::decode(e["seed_hex"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let name = e["name"].as_str().unwrap();
    let (sk, vk) = key_pair(name, &seed);
    assert!(vk.contains(e["key_id_hex"].as_str().unwrap()), "{vk}");
    let l = leaves(&g);
    let cp = Checkpoint {
        origin: name.into(),
        size: l.len() as u64,
        root: root(&l),
    };
    let note = sign(&cp, &SignerKey::parse(&sk).unwrap());
    assert_eq!(note, e["note"].as_str().unwrap());
    let vk = VerifierKey::parse(&vk).unwrap();
    assert_eq!(open(&note, &vk).unwrap(), cp);
    // A changed size, root or signature does not verify; another key is not accepted.
    let forged = note.replacen(&format!("\n{}\n", l.len()), "\n12\n", 1);
    assert!(open(&forged, &vk).is_err());
    let (_, other) = key_pair(name, &[7u8; 32]);
    assert!(open(&note, &VerifierKey::parse(&other).unwrap()).is_err());
    assert!(VerifierKey::parse("name+00000000+AAAA").is_err());
    assert!(SignerKey::parse("PRIVATE+KEY+x+y").is_err());
}
