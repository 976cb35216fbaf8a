//! Coordinate sort and duplicate marking on generated alignments: the
//! order, every record kept, the index answering region queries, spills
//! giving the same file, duplicates as samtools marks them, and bad input
//! refused without leaving output. Where samtools is installed, its
//! `quickcheck`, region queries and `markdup` are the reference.
#![allow(clippy::unwrap_used)] // a test: a panic is a failure

use accelhub_genomics::bam::reader::Reader;
use accelhub_genomics::bam::record::Record;
use accelhub_genomics::markdup::{markdup_file, MarkdupOptions};
use accelhub_genomics::sort::{key_of, sort_file, SortOptions};
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

mod common;
use common::Rng;

const REFS: [(&str, u64); 2] = [("chrA", 200_000), ("chrB", 90_000)];

fn seq_and_qual(rng: &mut Rng, n: usize) -> (String, String) {
    let s = (0..n)
        .map(|_| b"ACGT"[rng.below(4) as usize] as char)
        .collect();
    let q = (0..n)
        .map(|_| (33 + 10 + rng.below(31) as u8) as char)
        .collect();
    (s, q)
}

/// A CIGAR for a read of `len` bases with random clips (and sometimes an
/// indel); returns it and the reference span.
fn cigar(rng: &mut Rng, len: u32) -> (String, u32) {
    let front = if rng.below(4) == 0 {
        1 + rng.below(10) as u32
    } else {
        0
    };
    let back = if rng.below(4) == 0 {
        1 + rng.below(10) as u32
    } else {
        0
    };
    let mut mid = len - front - back;
    let mut c = String::new();
    if front > 0 {
        write!(c, "{front}S").unwrap();
    }
    let mut span = mid;
    if rng.below(5) == 0 {
        let a = mid / 2;
        write!(c, "{a}M2D").unwrap();
        span += 2;
        mid -= a;
    }
    write!(c, "{mid}M").unwrap();
    if back > 0 {
        write!(c, "{back}S").unwrap();
    }
    (c, span)
}

/// Read pairs crowded onto few fragment starts (so that many are
/// duplicates), single reads, pairs with an unmapped mate, secondary and
/// unplaced records; in random order. Two read groups, two libraries.
fn sam(rng: &mut Rng, pairs: usize) -> String {
    let mut out = String::from("@HD\tVN:1.6\tSO:unsorted\n");
    for (n, l) in REFS {
        writeln!(out, "@SQ\tSN:{n}\tLN:{l}").unwrap();
    }
    out.push_str("@RG\tID:a\tSM:s\tLB:L1\n@RG\tID:b\tSM:s\tLB:L2\n");
    let mut lines = Vec::new();
    for i in 0..pairs {
        let r = rng.below(2) as usize;
        let start = 1000 + rng.below(300) * 7;
        let insert = 250 + rng.below(3) * 10;
        let rg = if rng.below(5) == 0 { "b" } else { "a" };
        let (c1, _) = cigar(rng, 100);
        let (c2, span2) = cigar(rng, 100);
        let p1 = start;
        let p2 = start + insert - span2 as u64;
        let (s1, q1) = seq_and_qual(rng, 100);
        let (s2, q2) = seq_and_qual(rng, 100);
        let name = format!("p{i:05}");
        let refname = REFS[r].0;
        match rng.below(10) {
            0 => {
                // Mate unmapped, placed with the read.
                lines.push(format!(
                    "{name}\t73\t{refname}\t{p1}\t60\t{c1}\t=\t{p1}\t0\t{s1}\t{q1}\tRG:Z:{rg}"
                ));
                lines.push(format!(
                    "{name}\t133\t{refname}\t{p1}\t0\t*\t=\t{p1}\t0\t{s2}\t{q2}\tRG:Z:{rg}"
                ));
            }
            1 => {
                // Unpaired.
                let flag = if rng.below(2) == 0 { 0 } else { 16 };
                lines.push(format!(
                    "{name}\t{flag}\t{refname}\t{p1}\t60\t{c1}\t*\t0\t0\t{s1}\t{q1}\tRG:Z:{rg}"
                ));
            }
            2 => {
                // Both unmapped.
                lines.push(format!(
                    "{name}\t77\t*\t0\t0\t*\t*\t0\t0\t{s1}\t{q1}\tRG:Z:{rg}"
                ));
                lines.push(format!(
                    "{name}\t141\t*\t0\t0\t*\t*\t0\t0\t{s2}\t{q2}\tRG:Z:{rg}"
                ));
            }
            k => {
                let (f1, f2) = if k % 2 == 0 { (99, 147) } else { (163, 83) };
                let t = insert as i64;
                lines.push(format!(
                    "{name}\t{f1}\t{refname}\t{p1}\t60\t{c1}\t=\t{p2}\t{t}\t{s1}\t{q1}\tMC:Z:{c2}\tRG:Z:{rg}"
                ));
                lines.push(format!(
                    "{name}\t{f2}\t{refname}\t{p2}\t60\t{c2}\t=\t{p1}\t{}\t{s2}\t{q2}\tMC:Z:{c1}\tRG:Z:{rg}",
                    -t
                ));
                if k == 9 {
                    lines.push(format!(
                        "{name}\t{}\t{refname}\t{}\t0\t{c1}\t=\t{p2}\t0\t*\t*\tRG:Z:{rg}",
                        f1 | 0x100,
                        p1 + 5000
                    ));
                }
            }
        }
    }
    // Shuffle.
    for i in (1..lines.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        lines.swap(i, j);
    }
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

fn records(path: &Path) -> Vec<Vec<u8>> {
    let mut r = Reader::open(path, 2).unwrap();
    let mut out = Vec::new();
    let mut b = Vec::new();
    while r.next_into(&mut b).unwrap() {
        out.push(b.clone());
    }
    out
}

fn opts(dir: &Path, memory: usize) -> SortOptions {
    SortOptions {
        memory,
        tmp_dir: dir.to_path_buf(),
        threads: 2,
        level: 6,
    }
}

fn samtools() -> bool {
    let ok = Command::new("samtools").arg("--version").output().is_ok();
    if !ok {
        eprintln!("samtools is not installed: skipping the checks against it");
    }
    ok
}

#[test]
fn sorting_keeps_every_record_in_coordinate_order_and_spills_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.sam");
    std::fs::write(&input, sam(&mut Rng(7), 3000)).unwrap();
    let whole = dir.path().join("whole.bam");
    let spilled = dir.path().join("spilled.bam");
    let s1 = sort_file(
        &input,
        &whole,
        &opts(dir.path(), 1 << 30),
        None,
        "test",
        &mut |_, _| {},
    )
    .unwrap();
    let s2 = sort_file(
        &input,
        &spilled,
        &opts(dir.path(), 64 << 10),
        None,
        "test",
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(s1.runs, 0);
    assert!(s2.runs > 5, "{} runs", s2.runs);
    // No temporary files are left.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("accelhub-sort") || n.ends_with(".partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(
        std::fs::read(&whole).unwrap(),
        std::fs::read(&spilled).unwrap()
    );
    assert!(whole.with_extension("bam.bai").exists());

    let input_recs = records(&input);
    let sorted = records(&whole);
    assert_eq!(sorted.len(), input_recs.len());
    let mut a = input_recs.clone();
    let mut b = sorted.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b, "the same records");
    // In order, and records with one key keep their input order.
    let rank: HashMap<&[u8], usize> = input_recs
        .iter()
        .enumerate()
        .map(|(i, r)| (&r[..], i))
        .collect();
    for w in sorted.windows(2) {
        let (x, y) = (Record::new(&w[0]).unwrap(), Record::new(&w[1]).unwrap());
        assert!(key_of(&x) <= key_of(&y));
        if key_of(&x) == key_of(&y) && w[0] != w[1] {
            assert!(rank[&w[0][..]] < rank[&w[1][..]]);
        }
    }
    let header = Reader::open(&whole, 1).unwrap().header;
    assert_eq!(header.sort_order().as_deref(), Some("coordinate"));

    if samtools() {
        let st = Command::new("samtools")
            .arg("quickcheck")
            .arg(&whole)
            .status()
            .unwrap();
        assert!(st.success());
        // Region queries through our index count what a scan counts.
        for (r, beg, end) in [
            (0usize, 1500i64, 1800i64),
            (1, 1, 90_000),
            (0, 2900, 2950),
            (1, 3000, 3001),
        ] {
            let want = sorted
                .iter()
                .map(|b| Record::new(b).unwrap())
                .filter(|x| {
                    x.ref_id() == r as i32
                        && x.pos() >= 0
                        && (x.pos() as i64) < end
                        && x.end() > beg - 1
                })
                .count();
            let region = format!("{}:{beg}-{end}", REFS[r].0);
            let out = Command::new("samtools")
                .args(["view", "-c"])
                .arg(&whole)
                .arg(&region)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let got: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
            assert_eq!(got, want, "{region}");
        }
        let out = Command::new("samtools")
            .arg("idxstats")
            .arg(&whole)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let unplaced: usize = sorted
            .iter()
            .filter(|b| Record::new(b).unwrap().ref_id() < 0)
            .count();
        assert!(
            text.lines().any(|l| l == format!("*\t0\t0\t{unplaced}")),
            "{text}"
        );
    }
}

#[test]
fn bad_input_is_refused_and_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 1 << 20);
    let out = dir.path().join("out.bam");
    // A record on a reference the header lacks.
    let bad = dir.path().join("bad.sam");
    std::fs::write(
        &bad,
        "@SQ\tSN:chrA\tLN:1000\nr1\t0\tchrA\t5\t60\t4M\t*\t0\t0\tACGT\tIIII\nr2\t0\tchrZ\t5\t60\t4M\t*\t0\t0\tACGT\tIIII\n",
    )
    .unwrap();
    let e = sort_file(&bad, &out, &o, None, "t", &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bad.sam") && e.contains("record 2") && e.contains("chrZ"),
        "{e}"
    );
    assert!(!out.exists());
    // A BAM cut short, at its end and in its middle.
    let input = dir.path().join("in.sam");
    std::fs::write(&input, sam(&mut Rng(3), 300)).unwrap();
    let good = dir.path().join("good.bam");
    sort_file(&input, &good, &o, None, "t", &mut |_, _| {}).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    for cut in [bytes.len() - 28, bytes.len() / 2] {
        let t = dir.path().join("cut.bam");
        std::fs::write(&t, &bytes[..cut]).unwrap();
        let e = sort_file(&t, &out, &o, None, "t", &mut |_, _| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("cut.bam") && e.contains("truncated"), "{e}");
        let e = markdup_file(&t, &out, &mdopts(), "t", &mut |_, _| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated"), "{e}");
        assert!(!out.exists());
    }
    // markdup wants coordinate order.
    let e = markdup_file(&input, &out, &mdopts(), "t", &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("not sorted by coordinate"), "{e}");
    assert!(!out.exists() && !dir.path().join("out.bam.partial").exists());
    // A failed run leaves an earlier output as it was.
    std::fs::copy(&good, &out).unwrap();
    assert!(markdup_file(&input, &out, &mdopts(), "t", &mut |_, _| {}).is_err());
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
}

fn mdopts() -> MarkdupOptions {
    MarkdupOptions {
        threads: 2,
        level: 6,
        remove: false,
        supplementary: false,
    }
}

/// Names of records flagged duplicate, with their flags.
fn duplicates(path: &Path) -> BTreeSet<(Vec<u8>, u16)> {
    records(path)
        .iter()
        .map(|b| Record::new(b).unwrap())
        .filter(|r| r.flag() & 0x400 != 0)
        .map(|r| (r.name().to_vec(), r.flag() & !0x400))
        .collect()
}

#[test]
fn duplicates_follow_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let q = |c: char| c.to_string().repeat(10);
    let (hi, lo) = (q('I'), q('5'));
    let s = "ACGTACGTAC";
    let mut t = String::from("@SQ\tSN:chrA\tLN:10000\n@RG\tID:a\tLB:L1\n@RG\tID:b\tLB:L2\n");
    let mut pair = |name: &str, p1: u32, c1: &str, p2: u32, c2: &str, qual: &str, rg: &str| {
        writeln!(
            t,
            "{name}\t99\tchrA\t{p1}\t60\t{c1}\t=\t{p2}\t100\t{s}\t{qual}\tMC:Z:{c2}\tRG:Z:{rg}"
        )
        .unwrap();
        writeln!(
            t,
            "{name}\t147\tchrA\t{p2}\t60\t{c2}\t=\t{p1}\t-100\t{s}\t{qual}\tMC:Z:{c1}\tRG:Z:{rg}"
        )
        .unwrap();
    };
    // Same ends: the better quality stays.
    pair("a1", 100, "10M", 200, "10M", &lo, "a");
    pair("a2", 100, "10M", 200, "10M", &hi, "a");
    // Same unclipped ends through clips: a tie, the smaller name stays.
    pair("b2", 300, "10M", 400, "10M", &hi, "a");
    pair("b1", 302, "2S8M", 400, "8M2S", &hi, "a");
    // Another library: not a duplicate of b1/b2.
    pair("b3", 300, "10M", 400, "10M", &hi, "b");
    // A mate elsewhere: not a duplicate.
    pair("c1", 100, "10M", 250, "10M", &lo, "a");
    // Single reads: one where a pair's read starts is a duplicate; of two
    // alone, the lower quality is.
    writeln!(t, "s1\t0\tchrA\t100\t60\t10M\t*\t0\t0\t{s}\t{hi}\tRG:Z:a").unwrap();
    writeln!(t, "s2\t16\tchrA\t600\t60\t10M\t*\t0\t0\t{s}\t{lo}\tRG:Z:a").unwrap();
    writeln!(
        t,
        "s3\t16\tchrA\t598\t60\t12M\t*\t0\t0\tAC{s}\tII{hi}\tRG:Z:a"
    )
    .unwrap();
    // A supplementary record of a1 (a duplicate) and of a2 (not).
    writeln!(
        t,
        "a1\t2113\tchrA\t5000\t60\t5S5M\t=\t200\t0\t{s}\t{hi}\tRG:Z:a"
    )
    .unwrap();
    writeln!(
        t,
        "a2\t2113\tchrA\t6000\t60\t5S5M\t=\t200\t0\t{s}\t{hi}\tRG:Z:a"
    )
    .unwrap();
    let input = dir.path().join("in.sam");
    std::fs::write(&input, &t).unwrap();
    let sorted = dir.path().join("sorted.bam");
    sort_file(
        &input,
        &sorted,
        &opts(dir.path(), 1 << 20),
        None,
        "t",
        &mut |_, _| {},
    )
    .unwrap();
    let out = dir.path().join("md.bam");
    let stats = markdup_file(&sorted, &out, &mdopts(), "t", &mut |_, _| {}).unwrap();
    let got: BTreeSet<_> = duplicates(&out)
        .into_iter()
        .map(|(n, _)| String::from_utf8(n).unwrap())
        .collect();
    let want: BTreeSet<String> = ["a1", "b2", "s1", "s2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(got, want);
    assert_eq!((stats.duplicate_pair, stats.duplicate_single), (4, 2));
    assert_eq!((stats.examined, stats.excluded), (15, 2));
    assert!(!duplicates(&out).iter().any(|(_, f)| f & 0x800 != 0));
    // -S flags the supplementary record of a duplicate too.
    let with_supp = dir.path().join("supp.bam");
    let o = MarkdupOptions {
        supplementary: true,
        ..mdopts()
    };
    let st = markdup_file(&sorted, &with_supp, &o, "t", &mut |_, _| {}).unwrap();
    let supp: Vec<_> = duplicates(&with_supp)
        .into_iter()
        .filter(|(_, f)| f & 0x800 != 0)
        .collect();
    assert_eq!(supp, vec![(b"a1".to_vec(), 2113)]);
    assert_eq!(st.duplicate_non_primary, 1);
    // -r drops them.
    let removed = dir.path().join("rm.bam");
    let o = MarkdupOptions {
        remove: true,
        ..mdopts()
    };
    let st = markdup_file(&sorted, &removed, &o, "t", &mut |_, _| {}).unwrap();
    assert_eq!(st.written, 17 - 6);
    assert!(duplicates(&removed).is_empty());
}

#[test]
fn duplicates_match_samtools_markdup() {
    if !samtools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.sam");
    std::fs::write(&input, sam(&mut Rng(11), 4000)).unwrap();
    let sorted = dir.path().join("sorted.bam");
    sort_file(
        &input,
        &sorted,
        &opts(dir.path(), 1 << 20),
        None,
        "t",
        &mut |_, _| {},
    )
    .unwrap();
    let ours = dir.path().join("ours.bam");
    let stats = markdup_file(&sorted, &ours, &mdopts(), "t", &mut |_, _| {}).unwrap();
    // samtools needs its mate scores: name order, fixmate -m, sort. Its
    // 1.16 has no per-library mode; the read group as a barcode is the
    // same here, where each group is its own library.
    let theirs = dir.path().join("theirs.bam");
    let sh = format!(
        "samtools sort -n -o {d}/n.bam {i} && samtools fixmate -m {d}/n.bam {d}/f.bam && samtools sort -o {d}/c.bam {d}/f.bam && samtools markdup --barcode-tag RG {d}/c.bam {t}",
        d = dir.path().display(),
        i = sorted.display(),
        t = theirs.display()
    );
    let st = Command::new("sh").arg("-c").arg(&sh).output().unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let (a, b) = (duplicates(&ours), duplicates(&theirs));
    // Marking while sorting, with runs spilled, decides the same and
    // writes the same records.
    let fused = dir.path().join("fused.bam");
    let st = sort_file(
        &input,
        &fused,
        &opts(dir.path(), 64 << 10),
        Some(&mdopts()),
        "t",
        &mut |_, _| {},
    )
    .unwrap();
    assert!(st.runs > 5);
    assert_eq!(st.markdup.unwrap(), stats);
    assert_eq!(records(&fused), records(&ours));
    assert!(a.len() > 1000, "{} duplicates", a.len());
    assert_eq!(
        a.len() as u64,
        stats.duplicate_pair + stats.duplicate_single
    );
    let only_ours: Vec<_> = a.difference(&b).take(5).collect();
    let only_theirs: Vec<_> = b.difference(&a).take(5).collect();
    assert!(
        a == b,
        "ours only: {only_ours:?}; samtools only: {only_theirs:?}"
    );
}

#[test]
fn a_stream_cut_anywhere_sorts_as_the_file_does() {
    use accelhub_genomics::sort::StreamSink;
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.sam");
    std::fs::write(&input, sam(&mut Rng(5), 500)).unwrap();
    let from_file = dir.path().join("file.bam");
    let o = opts(dir.path(), 16 << 10);
    sort_file(&input, &from_file, &o, Some(&mdopts()), "t", &mut |_, _| {}).unwrap();
    // The stream the aligner writes: the binary header, then records.
    let mut r = Reader::open(&input, 1).unwrap();
    let mut stream = r.header.to_bam();
    let mut b = Vec::new();
    while r.next_into(&mut b).unwrap() {
        stream.extend_from_slice(&(b.len() as u32).to_le_bytes());
        stream.extend_from_slice(&b);
    }
    let mut sink = StreamSink::new(&o, Some(&mdopts()));
    let mut rng = Rng(9);
    let mut rest = &stream[..];
    while !rest.is_empty() {
        let n = (1 + rng.below(700) as usize).min(rest.len());
        sink.write_all(&rest[..n]).unwrap();
        rest = &rest[n..];
    }
    let from_stream = dir.path().join("stream.bam");
    let st = sink.finish(&from_stream, &mut |_| {}).unwrap();
    assert!(st.runs > 0);
    assert_eq!(records(&from_stream), records(&from_file));
    // A stream that stops inside a record is an error, and writes nothing.
    let mut sink = StreamSink::new(&o, None);
    sink.write_all(&stream[..stream.len() - 3]).unwrap();
    let cut = dir.path().join("cut.bam");
    assert!(sink.finish(&cut, &mut |_| {}).is_err());
    assert!(!cut.exists());
}

#[test]
fn region_queries_through_bai_and_csi_find_what_a_scan_finds() {
    use accelhub_genomics::bam::reader::IndexedReader;
    let dir = tempfile::tempdir().unwrap();
    for (label, huge) in [("bai", false), ("csi", true)] {
        let mut text = sam(&mut Rng(13), 3000);
        if huge {
            // A reference past BAI's 2^29 bases: the index must be a CSI.
            text = text.replace("SN:chrB\tLN:90000", "SN:chrB\tLN:900000000");
        }
        let input = dir.path().join(format!("{label}.sam"));
        std::fs::write(&input, text).unwrap();
        let bam = dir.path().join(format!("{label}.bam"));
        let st = sort_file(
            &input,
            &bam,
            &opts(dir.path(), 1 << 20),
            None,
            "t",
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(st.index.extension().unwrap(), label);
        let all = records(&bam);
        let mut r = IndexedReader::open(&bam).unwrap();
        let mut rng = Rng(17);
        let mut b = Vec::new();
        for _ in 0..200 {
            let rid = rng.below(2) as usize;
            let beg = rng.below(4000) as i64;
            let span = if rng.below(5) == 0 { 100_000 } else { 300 };
            let end = beg + 1 + rng.below(span) as i64;
            let want: Vec<&Vec<u8>> = all
                .iter()
                .filter(|x| {
                    let x = Record::new(x).unwrap();
                    x.ref_id() == rid as i32
                        && x.pos() >= 0
                        && (x.pos() as i64) < end
                        && x.end() > beg
                })
                .collect();
            r.fetch(rid, beg, end).unwrap();
            let mut got = Vec::new();
            while r.next_into(&mut b).unwrap() {
                got.push(b.clone());
            }
            assert_eq!(got.len(), want.len(), "{label} {rid}:{beg}-{end}");
            assert!(got.iter().zip(&want).all(|(a, b)| a == *b));
        }
        if samtools() {
            let out = Command::new("samtools")
                .args(["view", "-c"])
                .arg(&bam)
                .arg("chrB:1000-3000")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{label}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // No index: the error says how to make one.
    let input = dir.path().join("bai.sam");
    let plain = dir.path().join("plain.bam");
    sort_file(
        &input,
        &plain,
        &opts(dir.path(), 1 << 20),
        None,
        "t",
        &mut |_, _| {},
    )
    .unwrap();
    std::fs::remove_file(dir.path().join("plain.bam.bai")).unwrap();
    let e = IndexedReader::open(&plain).err().unwrap().to_string();
    assert!(e.contains("plain.bam") && e.contains("no index"), "{e}");
}
