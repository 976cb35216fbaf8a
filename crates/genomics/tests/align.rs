//! The aligner on a synthetic genome with reads of known origin: positions,
//! strands, CIGARs, pair flags and mates, and the SAM it writes.

use accelhub_genomics::align::{AlignOptions, Aligner};
use accelhub_genomics::fasta::{Contig, Reference};
use accelhub_genomics::fastq::{FastqReader, PairReader};
use accelhub_genomics::index::{Index, Params};
use accelhub_genomics::seq::{complement, LETTER};
use std::fmt::Write as _;
use std::path::Path;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        (self.next() >> 11) % n
    }
}

fn genome() -> Reference {
    let mut rng = Rng(42);
    let lens = [300_000u64, 120_000];
    let mut seq = Vec::new();
    let mut contigs = Vec::new();
    for (i, &len) in lens.iter().enumerate() {
        contigs.push(Contig {
            name: format!("ctg{}", i + 1),
            offset: seq.len() as u64,
            len,
        });
        seq.extend((0..len).map(|_| rng.below(4) as u8));
    }
    Reference { contigs, seq }
}

fn letters(codes: &[u8]) -> String {
    codes.iter().map(|&c| LETTER[c as usize] as char).collect()
}

fn revcomp(codes: &[u8]) -> Vec<u8> {
    codes.iter().rev().map(|&c| complement(c)).collect()
}

/// Pairs: mate 1 forward at `pos`, mate 2 reverse ending at pos+insert;
/// every 3rd pair swapped (mate 1 reverse). Some reads get mismatches,
/// some a 2-base deletion. Truth: (contig, pos1, pos2) 0-based.
fn simulate(r: &Reference, n: usize, dir: &Path) -> Vec<(usize, u64, u64)> {
    let mut rng = Rng(7);
    let (mut f1, mut f2) = (String::new(), String::new());
    let mut truth = Vec::new();
    let len = 150u64;
    for i in 0..n {
        let ci = (i % 5 == 4) as usize;
        let c = &r.contigs[ci];
        let insert = 350 + rng.below(100);
        let start = rng.below(c.len - insert - 10);
        let g = (c.offset + start) as usize;
        let mut a = r.seq[g..g + len as usize].to_vec();
        let b_end = g + insert as usize;
        let mut b = revcomp(&r.seq[b_end - len as usize..b_end]);
        if i % 4 == 1 {
            for _ in 0..3 {
                let p = rng.below(len) as usize;
                a[p] = (a[p] + 1) % 4;
            }
        }
        let mut pos1 = start;
        if i % 7 == 3 {
            // A 2-base deletion in mate 1, mid-read: take 152 bases, drop 2.
            let mut d = r.seq[g..g + len as usize + 2].to_vec();
            d.drain(70..72);
            a = d;
        }
        let pos2 = start + insert - len;
        if i % 3 == 2 {
            std::mem::swap(&mut a, &mut b);
            truth.push((ci, pos2, pos1));
            pos1 = pos2;
        } else {
            truth.push((ci, pos1, pos2));
        }
        let _ = pos1;
        let q = "I".repeat(len as usize);
        writeln!(f1, "@p{i}/1\n{}\n+\n{q}", letters(&a)).unwrap();
        writeln!(f2, "@p{i}/2\n{}\n+\n{q}", letters(&b)).unwrap();
    }
    std::fs::write(dir.join("r1.fq"), f1).unwrap();
    std::fs::write(dir.join("r2.fq"), f2).unwrap();
    truth
}

struct Rec {
    name: String,
    flag: u16,
    rname: String,
    pos: u64,
    mapq: u8,
    cigar: String,
    rnext: String,
    pnext: u64,
    tlen: i64,
    seq_len: usize,
    tags: Vec<String>,
}

fn parse(sam: &str) -> (Vec<String>, Vec<Rec>) {
    let mut header = Vec::new();
    let mut recs = Vec::new();
    for line in sam.lines() {
        if line.starts_with('@') {
            header.push(line.to_string());
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        assert!(f.len() >= 11, "{line}");
        recs.push(Rec {
            name: f[0].into(),
            flag: f[1].parse().unwrap(),
            rname: f[2].into(),
            pos: f[3].parse().unwrap(),
            mapq: f[4].parse().unwrap(),
            cigar: f[5].into(),
            rnext: f[6].into(),
            pnext: f[7].parse().unwrap(),
            tlen: f[8].parse().unwrap(),
            seq_len: f[9].len(),
            tags: f[11..].iter().map(|s| s.to_string()).collect(),
        });
    }
    (header, recs)
}

fn query_len(cigar: &str) -> usize {
    let mut n = 0usize;
    let mut total = 0usize;
    for ch in cigar.chars() {
        if let Some(d) = ch.to_digit(10) {
            n = n * 10 + d as usize;
        } else {
            if matches!(ch, 'M' | 'I' | 'S') {
                total += n;
            }
            n = 0;
        }
    }
    total
}

#[test]
fn pairs_map_to_their_origin_with_valid_sam() {
    let dir = tempfile::tempdir().unwrap();
    let idx = Index::build(genome(), Params::default(), &mut |_, _, _| {}).unwrap();
    let truth = simulate(&idx.reference, 600, dir.path());
    let opts = AlignOptions {
        threads: 2,
        read_group: Some("@RG\\tID:g1\\tSM:s1".into()),
        batch: 250,
        ..Default::default()
    };
    let al = Aligner::new(&idx, opts);
    let mut out = Vec::new();
    let reader = PairReader::open(&dir.path().join("r1.fq"), &dir.path().join("r2.fq")).unwrap();
    let stats = al.align_pairs(reader, &mut out, &mut |_| {}).unwrap();
    assert_eq!(stats.reads, 1200);
    let ins = stats.insert.expect("an insert-size model");
    assert!((350.0..450.0).contains(&ins.mean), "{ins:?}");

    let sam = String::from_utf8(out).unwrap();
    let (header, recs) = parse(&sam);
    assert_eq!(header[0], "@HD\tVN:1.6\tSO:unsorted");
    assert!(header.contains(&"@SQ\tSN:ctg1\tLN:300000".to_string()));
    assert!(header.contains(&"@SQ\tSN:ctg2\tLN:120000".to_string()));
    assert!(header.contains(&"@RG\tID:g1\tSM:s1".to_string()));
    assert!(header.iter().any(|h| h.starts_with("@PG\tID:accelhub")));
    assert_eq!(recs.len(), 1200);

    let mut correct = 0;
    let mut proper = 0;
    for (i, pair) in recs.chunks(2).enumerate() {
        let (a, b) = (&pair[0], &pair[1]);
        assert_eq!(a.name, format!("p{i}"));
        assert_eq!(b.name, a.name);
        assert_eq!(a.flag & 0x41, 0x41, "first in pair, paired");
        assert_eq!(b.flag & 0x81, 0x81);
        for r in [a, b] {
            assert_eq!(r.flag & 0x4, 0, "{} mapped", r.name);
            assert_eq!(query_len(&r.cigar), r.seq_len, "{} {}", r.name, r.cigar);
            assert!(r.tags.iter().any(|t| t.starts_with("NM:i:")));
            assert!(r.tags.iter().any(|t| t.starts_with("MD:Z:")));
            assert!(r.tags.iter().any(|t| t.starts_with("AS:i:")));
            assert!(r.tags.contains(&"RG:Z:g1".to_string()));
            assert!(r.mapq <= 60);
        }
        // Mates point at each other; TLEN is opposite.
        assert_eq!(a.pnext, b.pos);
        assert_eq!(b.pnext, a.pos);
        assert_eq!(a.rnext, "=");
        assert_eq!(a.tlen, -b.tlen);
        // Opposite strands, and each one's mate-strand flag says so.
        assert_ne!(a.flag & 0x10, b.flag & 0x10);
        assert_eq!((a.flag & 0x10) != 0, (b.flag & 0x20) != 0);
        if a.flag & 0x2 != 0 {
            proper += 1;
        }
        let (ci, p1, p2) = truth[i];
        let name = format!("ctg{}", ci + 1);
        if a.rname == name && b.rname == name && a.pos == p1 + 1 && b.pos == p2 + 1 {
            correct += 1;
        }
        if i % 7 == 3 && i % 3 != 2 {
            assert!(a.cigar.contains("2D"), "pair {i}: {}", a.cigar);
        }
    }
    assert!(correct >= 595, "{correct} of 600 pairs exactly placed");
    assert!(proper >= 595, "{proper} proper pairs");
}

#[test]
fn single_end_and_unmapped_reads() {
    let dir = tempfile::tempdir().unwrap();
    let idx = Index::build(genome(), Params::default(), &mut |_, _, _| {}).unwrap();
    simulate(&idx.reference, 50, dir.path());
    // Add a read of pure noise: it must come out unmapped, not lost.
    let mut text = std::fs::read_to_string(dir.path().join("r1.fq")).unwrap();
    let mut rng = Rng(99);
    let noise: Vec<u8> = (0..150).map(|_| rng.below(4) as u8).collect();
    writeln!(text, "@noise\n{}\n+\n{}", letters(&noise), "I".repeat(150)).unwrap();
    std::fs::write(dir.path().join("se.fq"), text).unwrap();
    let al = Aligner::new(&idx, AlignOptions::default());
    let mut out = Vec::new();
    let reader = FastqReader::open(&dir.path().join("se.fq")).unwrap();
    let stats = al.align_single(reader, &mut out, &mut |_| {}).unwrap();
    assert_eq!(stats.reads, 51);
    assert_eq!(stats.mapped, 50);
    let (_, recs) = parse(&String::from_utf8(out).unwrap());
    let noise = recs.iter().find(|r| r.name == "noise").unwrap();
    assert_eq!(noise.flag, 4);
    assert_eq!(
        (noise.rname.as_str(), noise.pos, noise.cigar.as_str()),
        ("*", 0, "*")
    );
    assert!(recs
        .iter()
        .filter(|r| r.name != "noise")
        .all(|r| r.flag & 0x1 == 0 && r.mapq > 0));
}

/// MAPQ tells unique placements from repeats: a read inside an exact
/// two-copy duplication gets MAPQ 0 and its other copy as XS; a unique read
/// gets a high MAPQ; a pair with one mate in the duplication and the other
/// outside is placed at the right copy, its mate's uniqueness carrying it.
#[test]
fn mapq_separates_unique_reads_from_repeats() {
    let mut rng = Rng(1234);
    let len = 200_000usize;
    let mut seq: Vec<u8> = (0..len).map(|_| rng.below(4) as u8).collect();
    // Copy 3 kb at 20,000 onto 150,000.
    let dup: Vec<u8> = seq[20_000..23_000].to_vec();
    seq[150_000..153_000].copy_from_slice(&dup);
    let reference = Reference {
        contigs: vec![Contig {
            name: "g".into(),
            offset: 0,
            len: len as u64,
        }],
        seq,
    };
    let idx = Index::build(reference, Params::default(), &mut |_, _, _| {}).unwrap();
    let al = Aligner::new(&idx, AlignOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let q = "I".repeat(150);
    let s = &idx.reference.seq;

    // Single-end: inside the duplication, and unique.
    let mut fq = String::new();
    for (i, start) in [20_500usize, 21_200, 22_000].iter().enumerate() {
        writeln!(fq, "@dup{i}\n{}\n+\n{q}", letters(&s[*start..start + 150])).unwrap();
    }
    for (i, start) in [5_000usize, 60_000, 120_000].iter().enumerate() {
        writeln!(fq, "@uniq{i}\n{}\n+\n{q}", letters(&s[*start..start + 150])).unwrap();
    }
    std::fs::write(dir.path().join("se.fq"), fq).unwrap();
    let mut out = Vec::new();
    let reader = FastqReader::open(&dir.path().join("se.fq")).unwrap();
    al.align_single(reader, &mut out, &mut |_| {}).unwrap();
    let (_, recs) = parse(&String::from_utf8(out).unwrap());
    for r in &recs {
        let xs = r.tags.iter().find(|t| t.starts_with("XS:i:")).unwrap();
        let as_ = r.tags.iter().find(|t| t.starts_with("AS:i:")).unwrap();
        if r.name.starts_with("dup") {
            assert_eq!(r.mapq, 0, "{} in a repeat", r.name);
            assert_eq!(
                xs[5..],
                as_[5..],
                "{}: the other copy scores the same",
                r.name
            );
        } else {
            assert!(r.mapq >= 30, "{} is unique: MAPQ {}", r.name, r.mapq);
        }
    }

    // Pairs: mate 1 inside the second copy, mate 2 (250 bases on) beyond
    // its end, unique.
    let (mut f1, mut f2) = (String::new(), String::new());
    // The last pair lies wholly inside the copy: as ambiguous as a read.
    let starts = [152_760usize, 152_800, 152_850, 152_000];
    for (i, &start) in starts.iter().enumerate() {
        let a = &s[start..start + 150];
        let b = revcomp(&s[start + 250..start + 400]);
        writeln!(f1, "@p{i}/1\n{}\n+\n{q}", letters(a)).unwrap();
        writeln!(f2, "@p{i}/2\n{}\n+\n{q}", letters(&b)).unwrap();
    }
    std::fs::write(dir.path().join("p1.fq"), f1).unwrap();
    std::fs::write(dir.path().join("p2.fq"), f2).unwrap();
    let mut out = Vec::new();
    let reader = PairReader::open(&dir.path().join("p1.fq"), &dir.path().join("p2.fq")).unwrap();
    al.align_pairs(reader, &mut out, &mut |_| {}).unwrap();
    let (_, recs) = parse(&String::from_utf8(out).unwrap());
    let inside = &recs[6..8];
    assert!(inside.iter().all(|r| r.mapq == 0), "a pair inside a repeat");
    for (pair, &start) in recs[..6].chunks(2).zip(&starts) {
        let (m1, m2) = (&pair[0], &pair[1]);
        assert_eq!(
            m1.pos,
            start as u64 + 1,
            "{}: the copy next to its mate",
            m1.name
        );
        assert_eq!(m1.flag & 0x2, 0x2, "{}: a proper pair", m1.name);
        assert!(m2.mapq >= 30, "{}: the unique mate", m2.name);
        assert!(m1.mapq > 0, "{}: lifted by its mate", m1.name);
    }
}
