//! The minimizer index: reads find their origin, on either strand; N
//! breaks k-mers; the saved index loads back identical.
#![allow(clippy::unwrap_used)] // a test: a panic is a failure

use accelhub_genomics::fasta::{Contig, Reference};
use accelhub_genomics::index::{sketch, Index, Minimizer, Params};
use accelhub_genomics::seq::revcomp_into;

/// A deterministic pseudo-random sequence (xorshift), no repeats to speak of.
fn random_seq(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 33) as u8 & 3
        })
        .collect()
}

fn reference() -> Reference {
    let mut seq = random_seq(50_000, 7);
    // An N run in contig 1.
    seq[20_000..20_100].iter_mut().for_each(|c| *c = 4);
    let second = random_seq(30_000, 9);
    let contigs = vec![
        Contig {
            name: "one".into(),
            offset: 0,
            len: 50_000,
        },
        Contig {
            name: "two".into(),
            offset: 50_000,
            len: 30_000,
        },
    ];
    seq.extend(second);
    Reference { contigs, seq }
}

#[test]
fn window_guarantee_and_n_handling() {
    let r = reference();
    let p = Params::default();
    let mut m = Vec::new();
    sketch(&r.seq[..50_000], p, &mut m);
    // Every window of w k-mers holds a minimizer: gaps between consecutive
    // minimizers are at most w, except across the N run.
    for pair in m.windows(2) {
        let gap = pair[1].pos - pair[0].pos;
        let spans_n = pair[0].pos < 20_100 && pair[1].pos >= 20_100;
        assert!(gap <= p.w || spans_n, "gap {gap} at {}", pair[0].pos);
    }
    // No k-mer that touches the N run.
    assert!(m
        .iter()
        .all(|x| !(20_000..20_100 + p.k - 1).contains(&x.pos)));
    // Density is about 2 / (w + 1).
    let density = m.len() as f64 / 50_000.0;
    assert!((0.14..0.24).contains(&density), "density {density}");
}

#[test]
fn reads_find_their_origin_on_both_strands() {
    let idx = Index::build(reference(), Params::default(), &mut |_, _, _| {}).unwrap();
    let (keys, occ) = idx.stats();
    assert!(keys > 10_000 && occ >= keys);
    for &start in &[100usize, 33_333, 50_500, 79_800] {
        let read = idx.reference.seq[start..start + 150].to_vec();
        let mut rc = Vec::new();
        revcomp_into(&read, &mut rc);
        for (q, reverse) in [(&read, false), (&rc, true)] {
            let mut m: Vec<Minimizer> = Vec::new();
            sketch(q, idx.params, &mut m);
            assert!(m.len() >= 10);
            // Most minimizers vote for the same diagonal.
            let mut votes = std::collections::HashMap::new();
            for x in &m {
                for &p in idx.get(x.hash) {
                    let (rpos, rrev) = ((p >> 1) as i64, p & 1 == 1);
                    let same_strand = rrev == x.reverse;
                    let diag = if same_strand {
                        rpos - x.pos as i64
                    } else {
                        rpos + x.pos as i64
                    };
                    *votes.entry((same_strand, diag)).or_insert(0) += 1;
                }
            }
            let (&(same, diag), &n) = votes.iter().max_by_key(|(_, &n)| n).unwrap();
            assert!(n * 10 >= m.len() * 9, "{n} of {} agree", m.len());
            assert_eq!(same, !reverse);
            if same {
                assert_eq!(diag, start as i64);
            } else {
                // Reverse strand: read position i maps to start+149-i.
                assert_eq!(diag, start as i64 + 149 + idx.params.k as i64 - 1);
            }
        }
    }
}

#[test]
fn saved_index_loads_back_and_bad_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let idx = Index::build(reference(), Params { k: 15, w: 5 }, &mut |_, _, _| {}).unwrap();
    let path = dir.path().join("ref.ahx");
    idx.save(&path).unwrap();
    let back = Index::load(&path).unwrap();
    assert_eq!(back.params, idx.params);
    assert_eq!(back.reference.contigs, idx.reference.contigs);
    assert_eq!(back.reference.seq, idx.reference.seq);
    assert_eq!(back.stats(), idx.stats());
    let mut m = Vec::new();
    sketch(&idx.reference.seq[1000..1200], idx.params, &mut m);
    for x in &m {
        assert_eq!(back.get(x.hash), idx.get(x.hash));
        assert!(!idx.get(x.hash).is_empty());
    }

    let mut bytes = std::fs::read(&path).unwrap();
    // The directory is the last table: break its order.
    let n = bytes.len();
    bytes[n - 8..n - 4].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let msg = Index::load(&path).err().unwrap().to_string();
    assert!(msg.contains("corrupt"), "{msg}");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let msg = Index::load(&path).err().unwrap().to_string();
    assert!(msg.contains("truncated"), "{msg}");
    std::fs::write(&path, b"not an index at all").unwrap();
    let msg = Index::load(&path).err().unwrap().to_string();
    assert!(msg.contains("not an Accelhub genomics index"), "{msg}");
}
