//! The aligner on a synthetic genome with reads of known origin: positions,
//! strands, CIGARs, pair flags and mates, and the SAM it writes.
#![allow(clippy::unwrap_used)] // a test: a panic is a failure

use accelhub_genomics::align::{AlignOptions, Aligner};
use accelhub_genomics::fasta::{Contig, Reference};
use accelhub_genomics::fastq::{FastqReader, PairReader};
use accelhub_genomics::index::{Index, Params};
use accelhub_genomics::seq::{complement, LETTER};
use std::fmt::Write as _;
use std::path::Path;

mod common;
use common::Rng;

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

/// The index of a one-contig reference, `g`.
fn one_contig_index(seq: Vec<u8>) -> Index {
    let len = seq.len() as u64;
    let reference = Reference {
        contigs: vec![Contig {
            name: "g".into(),
            offset: 0,
            len,
        }],
        seq,
    };
    Index::build(reference, Params::default(), &mut |_, _, _| {}).unwrap()
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

/// Rewrite the first record of a FASTQ file: `edit` gets its lines.
fn edit_first_record(path: &Path, edit: impl FnOnce(&mut [String])) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    edit(&mut lines[..4]);
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// Align the pairs of two FASTQ files: the SAM text.
fn align_pair_files(al: &Aligner, r1: &Path, r2: &Path) -> String {
    let mut out = Vec::new();
    let reader = PairReader::open(r1, r2).unwrap();
    al.align_pairs(reader, &mut out, &mut |_| {}).unwrap();
    String::from_utf8(out).unwrap()
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
    let idx = one_contig_index(seq);
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
    let sam = align_pair_files(&al, &dir.path().join("p1.fq"), &dir.path().join("p2.fq"));
    let (_, recs) = parse(&sam);
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

/// A chimeric read (two parts from far-apart loci, as a translocation or a
/// ligation artefact makes) gets a primary record for its longer part and a
/// supplementary one (flag 0x800) for the other, each naming the other in
/// SA; the primary's MAPQ is not lowered by its own other half. In a pair,
/// the supplementary keeps the mate's fields.
#[test]
fn chimeric_reads_get_a_supplementary_record() {
    let idx = Index::build(genome(), Params::default(), &mut |_, _, _| {}).unwrap();
    let s = &idx.reference.seq;
    let ctg2 = idx.reference.contigs[1].offset as usize;
    // 90 bases of ctg1 at 40,000, then 60 bases of ctg2 at 50,000 reversed.
    let mut read = s[40_000..40_090].to_vec();
    read.extend(revcomp(&s[ctg2 + 50_000..ctg2 + 50_060]));
    let mate = revcomp(&s[40_300..40_450]);
    let dir = tempfile::tempdir().unwrap();
    let q = "I".repeat(150);
    std::fs::write(
        dir.path().join("c1.fq"),
        format!("@chim/1\n{}\n+\n{q}\n", letters(&read)),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("c2.fq"),
        format!("@chim/2\n{}\n+\n{q}\n", letters(&mate)),
    )
    .unwrap();

    let al = Aligner::new(&idx, AlignOptions::default());
    let mut out = Vec::new();
    let reader = FastqReader::open(&dir.path().join("c1.fq")).unwrap();
    al.align_single(reader, &mut out, &mut |_| {}).unwrap();
    let (_, recs) = parse(&String::from_utf8(out).unwrap());
    assert_eq!(recs.len(), 2, "a primary and a supplementary");
    let (p, sup) = (&recs[0], &recs[1]);
    assert_eq!((p.flag, p.rname.as_str(), p.pos), (0, "ctg1", 40_001));
    assert_eq!(p.cigar, "90M60S");
    assert!(p.mapq >= 50, "MAPQ {}: its other half is no rival", p.mapq);
    assert_eq!(
        (sup.flag, sup.rname.as_str(), sup.pos),
        (0x800 | 0x10, "ctg2", 50_001)
    );
    // The junction may lend it a few bases matching by chance.
    let m: usize = sup
        .cigar
        .strip_suffix('S')
        .unwrap()
        .split('M')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((60..=70).contains(&m), "{}", sup.cigar);
    assert_eq!(sup.cigar, format!("{m}M{}S", 150 - m));
    assert!(sup.mapq > 0);
    let sa = |r: &Rec| {
        r.tags
            .iter()
            .find_map(|t| t.strip_prefix("SA:Z:"))
            .unwrap()
            .to_string()
    };
    let nm = sup
        .tags
        .iter()
        .find_map(|t| t.strip_prefix("NM:i:"))
        .unwrap();
    assert_eq!(
        sa(p),
        format!("ctg2,50001,-,{},{},{nm};", sup.cigar, sup.mapq)
    );
    assert_eq!(sa(sup), format!("ctg1,40001,+,90M60S,{},0;", p.mapq));

    // Paired: mate 1 chimeric, mate 2 near its primary part.
    let sam = align_pair_files(&al, &dir.path().join("c1.fq"), &dir.path().join("c2.fq"));
    let (_, recs) = parse(&sam);
    assert_eq!(recs.len(), 3);
    let sup = recs.iter().find(|r| r.flag & 0x800 != 0).unwrap();
    let mate = recs.iter().find(|r| r.flag & 0x80 != 0).unwrap();
    assert_eq!(sup.flag & 0xC1, 0x41, "paired, first in pair");
    assert_eq!((sup.rnext.as_str(), sup.pnext), ("ctg1", mate.pos));
    assert_eq!(sup.rname, "ctg2");
    assert!(mate.flag & 0x2 != 0, "the primary parts pair properly");
}

/// A read across an indel longer than the extension's band aligns in two
/// parts; they are joined into one record with the gap, on either strand,
/// as bwa reports it (a caller sees no indel in a clipped read).
#[test]
fn reads_across_long_indels_get_the_gap_not_a_split() {
    let idx = Index::build(genome(), Params::default(), &mut |_, _, _| {}).unwrap();
    let s = &idx.reference.seq;
    let dir = tempfile::tempdir().unwrap();
    let al = Aligner::new(&idx, AlignOptions::default());
    let q = "I".repeat(150);
    // (deletion length, insertion length, bases before it).
    for (del, ins, before) in [
        (24usize, 0usize, 60usize),
        (40, 0, 80),
        (0, 18, 70),
        (0, 30, 55),
        (55, 0, 75),
    ] {
        for reverse in [false, true] {
            let start = 60_000 + 1000 * del + 100 * ins;
            let mut read = s[start..start + before].to_vec();
            read.extend((0..ins).map(|i| [0u8, 1, 1, 3, 2][i % 5]));
            let after = 150 - before - ins;
            let resume = start + before + del;
            read.extend_from_slice(&s[resume..resume + after]);
            let read = if reverse { revcomp(&read) } else { read };
            let fq = dir.path().join("indel.fq");
            std::fs::write(&fq, format!("@r\n{}\n+\n{q}\n", letters(&read))).unwrap();
            let mut out = Vec::new();
            al.align_single(FastqReader::open(&fq).unwrap(), &mut out, &mut |_| {})
                .unwrap();
            let (_, recs) = parse(&String::from_utf8(out).unwrap());
            assert_eq!(
                recs.len(),
                1,
                "{del}D {ins}I reverse={reverse}: {:?}",
                recs.iter().map(|r| &r.cigar).collect::<Vec<_>>()
            );
            let r = &recs[0];
            assert_eq!(r.pos as usize, start + 1, "{del}D {ins}I {}", r.cigar);
            let gap = if del > 0 {
                format!("{del}D")
            } else {
                format!("{ins}I")
            };
            assert!(
                r.cigar.contains(&gap) && !r.cigar.contains('S'),
                "{gap}: {}",
                r.cigar
            );
            assert!(r.mapq >= 30, "{gap}: MAPQ {}", r.mapq);
        }
    }
    // A deletion and an insertion a few bases apart leave both ends on the
    // diagonal: they are still two gaps, not a run of mismatches.
    for (gap, reverse) in [(4usize, false), (7, true), (9, false)] {
        let start = 150_000 + 1000 * gap;
        let mut read = s[start..start + 70].to_vec();
        // Skip one reference base, copy `gap` bases, insert one.
        read.extend_from_slice(&s[start + 71..start + 71 + gap]);
        read.push((s[start + 71 + gap] + 1) % 4);
        let rest = 150 - read.len();
        read.extend_from_slice(&s[start + 71 + gap..start + 71 + gap + rest]);
        let read = if reverse { revcomp(&read) } else { read };
        let fq = dir.path().join("pair.fq");
        std::fs::write(&fq, format!("@r\n{}\n+\n{q}\n", letters(&read))).unwrap();
        let mut out = Vec::new();
        al.align_single(FastqReader::open(&fq).unwrap(), &mut out, &mut |_| {})
            .unwrap();
        let (_, recs) = parse(&String::from_utf8(out).unwrap());
        let r = &recs[0];
        assert!(
            r.cigar.contains("1D") && r.cigar.contains("1I"),
            "gap {gap}: {}",
            r.cigar
        );
        assert!(
            r.tags.contains(&"NM:i:2".to_string()),
            "gap {gap}: {:?}",
            r.tags
        );
    }
}

/// In a segmental duplication, a pair told from its paralogs by a single
/// base of one mate (the other mate matching every copy) is placed at its
/// copy, but with a MAPQ that falls as copies are added: each near-equal
/// pair elsewhere is one more place the fragment may come from.
#[test]
fn pair_mapq_falls_with_the_number_of_paralogs() {
    let mapq_with = |copies: usize| -> (u64, u8, u8) {
        let mut rng = Rng(77);
        let len = 300_000usize;
        let mut seq: Vec<u8> = (0..len).map(|_| rng.below(4) as u8).collect();
        let unit: Vec<u8> = seq[10_000..13_000].to_vec();
        for c in 1..copies {
            let at = 10_000 + c * 35_000;
            seq[at..at + 3_000].copy_from_slice(&unit);
            // Every paralog differs from the first copy at one base.
            seq[at + 1_100] = (seq[at + 1_100] + 1) % 4;
        }
        let idx = one_contig_index(seq);
        let s = &idx.reference.seq;
        let q = "I".repeat(150);
        // Mate 1 covers the distinguishing base; mate 2 matches all copies.
        let (start, insert) = (11_000usize, 420usize);
        let r1 = letters(&s[start..start + 150]);
        let r2 = letters(&revcomp(&s[start + insert - 150..start + insert]));
        // Enough unique pairs beside it for the insert-size model.
        let (mut f1, mut f2) = (
            format!("@dup/1\n{r1}\n+\n{q}\n"),
            format!("@dup/2\n{r2}\n+\n{q}\n"),
        );
        for i in 0..100 {
            let (p, t) = (100_000 + i * 1_500, 350 + (i * 37) % 100);
            writeln!(f1, "@u{i}/1\n{}\n+\n{q}", letters(&s[p..p + 150])).unwrap();
            writeln!(
                f2,
                "@u{i}/2\n{}\n+\n{q}",
                letters(&revcomp(&s[p + t - 150..p + t]))
            )
            .unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("1.fq"), f1).unwrap();
        std::fs::write(dir.path().join("2.fq"), f2).unwrap();
        let al = Aligner::new(&idx, AlignOptions::default());
        let sam = align_pair_files(&al, &dir.path().join("1.fq"), &dir.path().join("2.fq"));
        let (_, recs) = parse(&sam);
        (recs[0].pos, recs[0].mapq, recs[1].mapq)
    };
    let (pos2, q2, _) = mapq_with(2);
    let (pos4, q4, _) = mapq_with(4);
    let (pos8, q8, mate8) = mapq_with(4 + 4);
    assert_eq!((pos2, pos4, pos8), (11_001, 11_001, 11_001), "its own copy");
    assert!(q8 > 0, "the base tells them apart");
    assert!(
        q2 > q4 && q4 > q8,
        "more paralogs, less confidence: {q2} {q4} {q8}"
    );
    // BWA-MEM's scale: 6.02 per point of pair score (one mismatch is 5
    // points: 30), less 4.343 ln(n + 1) for n near-equal pairs (7: 9).
    assert!(
        q8 <= 21 && mate8 <= q8,
        "one base against seven copies: {q8} {mate8}"
    );
}

/// A genome with an exact duplication, its second copy reverse
/// complemented: every read from it matches both copies equally, one on
/// each strand.
fn inverted_duplication() -> (Index, std::ops::Range<usize>) {
    let mut rng = Rng(5150);
    let len = 200_000usize;
    let mut seq: Vec<u8> = (0..len).map(|_| rng.below(4) as u8).collect();
    let unit = 20_000..24_000;
    let copy = revcomp(&seq[unit.clone()]);
    seq[120_000..124_000].copy_from_slice(&copy);
    let idx = one_contig_index(seq);
    (idx, unit)
}

/// Equally good placements are chosen at random over reads, by a hash of
/// the read's name: half on each copy and each strand, not the first one
/// found; and the same choice in every run, with any thread count. The
/// other copy is listed in XA.
#[test]
fn ties_are_broken_by_the_read_name_without_strand_or_side_bias() {
    let (idx, unit) = inverted_duplication();
    let s = &idx.reference.seq;
    let q = "I".repeat(150);
    let mut fq = String::new();
    let n = 400;
    for i in 0..n {
        let p = unit.start + 50 + (i * 37) % (unit.len() - 300);
        writeln!(fq, "@tie{i}\n{}\n+\n{q}", letters(&s[p..p + 150])).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("se.fq"), fq).unwrap();
    let run = |threads: usize| {
        let opts = AlignOptions {
            threads,
            batch: 64,
            ..Default::default()
        };
        let al = Aligner::new(&idx, opts);
        let mut out = Vec::new();
        let reader = FastqReader::open(&dir.path().join("se.fq")).unwrap();
        al.align_single(reader, &mut out, &mut |_| {}).unwrap();
        String::from_utf8(out).unwrap()
    };
    let sam = run(1);
    let body = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with('@'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        body(&sam),
        body(&run(2)),
        "the same choice with any thread count"
    );
    assert_eq!(body(&sam), body(&run(1)), "and in every run");
    let (_, recs) = parse(&sam);
    assert_eq!(recs.len(), n);
    let reverse = recs.iter().filter(|r| r.flag & 0x10 != 0).count();
    for r in &recs {
        assert_eq!(r.mapq, 0, "{} ties", r.name);
        // The other copy, on the other strand, is the one alternative.
        let xa = r.tags.iter().find_map(|t| t.strip_prefix("XA:Z:"));
        let xa = xa.unwrap_or_else(|| panic!("{} has no XA", r.name));
        assert_eq!(xa.matches(';').count(), 1, "{xa}");
        let fields: Vec<&str> = xa.trim_end_matches(';').split(',').collect();
        assert_eq!(fields[0], "g");
        let (strand, at) = fields[1].split_at(1);
        assert_eq!(strand == "-", r.flag & 0x10 == 0, "{xa}");
        let at: usize = at.parse().unwrap();
        assert_eq!(
            at > 100_000,
            r.pos < 100_000,
            "{xa} for a read at {}",
            r.pos
        );
        assert_eq!((fields[2], fields[3]), ("150M", "0"));
    }
    // 400 fair coin flips: 200 +- 3 standard deviations.
    assert!(
        (170..=230).contains(&reverse),
        "{reverse} of {n} on the reverse strand"
    );
}

/// SAM tags as bwa writes them: MC carries the mate's CIGAR, and AS the
/// best local score (a mismatch two bases from the end is aligned through,
/// yet scores as if clipped there).
#[test]
fn mate_cigar_and_local_score_tags() {
    let dir = tempfile::tempdir().unwrap();
    let idx = Index::build(genome(), Params::default(), &mut |_, _, _| {}).unwrap();
    simulate(&idx.reference, 200, dir.path());
    // Pair 0 gets a mismatch at mate 1's second-to-last base.
    let (r1, r2) = (dir.path().join("r1.fq"), dir.path().join("r2.fq"));
    edit_first_record(&r1, |lines| {
        let mut seq = lines[1].clone().into_bytes();
        seq[148] = if seq[148] == b'A' { b'C' } else { b'A' };
        lines[1] = String::from_utf8(seq).unwrap();
    });
    let al = Aligner::new(&idx, AlignOptions::default());
    let (_, recs) = parse(&align_pair_files(&al, &r1, &r2));
    for pair in recs.chunks(2) {
        for (r, mate) in [(&pair[0], &pair[1]), (&pair[1], &pair[0])] {
            let mc = format!("MC:Z:{}", mate.cigar);
            assert!(r.tags.contains(&mc), "{}: {:?} lacks {mc}", r.name, r.tags);
        }
    }
    let p0 = &recs[0];
    assert_eq!(p0.name, "p0");
    assert_eq!(p0.cigar, "150M");
    assert!(p0.tags.contains(&"NM:i:1".to_string()), "{:?}", p0.tags);
    // Forward strand: the mismatch is at reference offset 148.
    let md = if p0.flag & 0x10 == 0 {
        "MD:Z:148"
    } else {
        "MD:Z:1"
    };
    assert!(p0.tags.iter().any(|t| t.starts_with(md)), "{:?}", p0.tags);
    assert!(p0.tags.contains(&"AS:i:148".to_string()), "{:?}", p0.tags);
}

/// A mate too different from the reference for any seed of its own (a
/// mismatch every ten bases) is still found next to its partner: rescue
/// searches every diagonal of the window where a proper pair puts it.
#[test]
fn a_mate_without_seeds_is_rescued_next_to_its_partner() {
    let dir = tempfile::tempdir().unwrap();
    let idx = Index::build(genome(), Params::default(), &mut |_, _, _| {}).unwrap();
    let truth = simulate(&idx.reference, 200, dir.path());
    let (r1, r2) = (dir.path().join("r1.fq"), dir.path().join("r2.fq"));
    edit_first_record(&r2, |lines| {
        let mut seq = lines[1].clone().into_bytes();
        for p in (5..seq.len()).step_by(10) {
            seq[p] = if seq[p] == b'A' { b'C' } else { b'A' };
        }
        lines[1] = String::from_utf8(seq).unwrap();
    });
    let al = Aligner::new(&idx, AlignOptions::default());
    let (_, recs) = parse(&align_pair_files(&al, &r1, &r2));
    let (ci, _, p2) = truth[0];
    let mate = &recs[1];
    assert_eq!(mate.name, "p0");
    assert_eq!(
        (mate.rname.as_str(), mate.pos),
        (format!("ctg{}", ci + 1).as_str(), p2 + 1)
    );
    assert!(mate.flag & 0x2 != 0, "a proper pair: {}", mate.flag);
    assert!(
        mate.tags.contains(&"NM:i:15".to_string()),
        "{:?}",
        mate.tags
    );
}

/// A mate with no bases (FASTQ allows an empty sequence) is written
/// unmapped, with SEQ and QUAL as `*`, and its partner is placed alone:
/// looking for it next to its partner finds nothing, and fails nothing.
#[test]
fn an_empty_mate_is_unmapped_and_its_partner_placed() {
    let dir = tempfile::tempdir().unwrap();
    let idx = Index::build(genome(), Params::default(), &mut |_, _, _| {}).unwrap();
    let truth = simulate(&idx.reference, 100, dir.path());
    let (r1, r2) = (dir.path().join("r1.fq"), dir.path().join("r2.fq"));
    edit_first_record(&r2, |lines| {
        lines[1].clear();
        lines[3].clear();
    });
    let al = Aligner::new(&idx, AlignOptions::default());
    let sam = align_pair_files(&al, &r1, &r2);
    let (_, recs) = parse(&sam);
    let (ci, p1, _) = truth[0];
    let (first, empty) = (&recs[0], &recs[1]);
    assert_eq!((empty.name.as_str(), empty.flag & 0x4), ("p0", 0x4));
    let line = sam
        .lines()
        .find(|l| l.starts_with("p0\t") && l.contains("\t*\t*"))
        .unwrap();
    assert_eq!(
        line.split('\t').nth(1),
        Some(empty.flag.to_string().as_str())
    );
    assert_eq!(
        (first.rname.as_str(), first.pos),
        (format!("ctg{}", ci + 1).as_str(), p1 + 1)
    );
}
