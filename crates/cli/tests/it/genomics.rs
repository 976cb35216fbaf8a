//! `accelhub genomics index|align|sort|markdup|call|germline` as a user
//! runs them: a reference with several contigs (gzip), reads in, SAM and
//! BAM out, sorted and indexed, duplicates marked, variants called; bad
//! input stops with the file and record named and leaves no output behind.

use crate::common::{bin, random_bases, revcomp_reference};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

fn index(fasta: &Path, prefix: &Path) -> Output {
    Command::new(bin())
        .args(["genomics", "index"])
        .arg(fasta)
        .arg("-o")
        .arg(prefix)
        .output()
        .unwrap()
}

fn align(prefix: &Path, reads: &[&Path], flags: &[&str], out: Option<&Path>) -> Output {
    let mut c = Command::new(bin());
    c.args(["genomics", "align"])
        .arg(prefix)
        .args(reads)
        .args(flags);
    if let Some(o) = out {
        c.arg("-o").arg(o);
    }
    c.output().unwrap()
}

fn gzip_to(path: &Path, data: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap();
}

#[test]
fn index_then_align_pairs_to_sam() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c1 = random_bases(60_000, 3);
    let c2 = random_bases(40_000, 5);
    let mut fa = Vec::new();
    for (name, seq) in [("alpha", &c1), ("beta", &c2)] {
        writeln!(fa, ">{name} test contig").unwrap();
        for line in seq.chunks(60) {
            fa.extend_from_slice(line);
            fa.push(b'\n');
        }
    }
    gzip_to(&d.join("ref.fa.gz"), &fa);
    let out = index(&d.join("ref.fa.gz"), &d.join("ref"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("indexed 2 contigs, 100000 bases"));

    let (mut f1, mut f2) = (Vec::new(), Vec::new());
    for i in 0..200usize {
        let (seq, name) = if i % 2 == 0 {
            (&c1, "alpha")
        } else {
            (&c2, "beta")
        };
        let start = (i * 97) % (seq.len() - 500);
        let a = &seq[start..start + 100];
        let b = revcomp_reference(&seq[start + 300..start + 400]);
        let q = "F".repeat(100);
        writeln!(
            f1,
            "@{name}_{start}/1\n{}\n+\n{q}",
            String::from_utf8_lossy(a)
        )
        .unwrap();
        writeln!(
            f2,
            "@{name}_{start}/2\n{}\n+\n{q}",
            String::from_utf8_lossy(&b)
        )
        .unwrap();
    }
    gzip_to(&d.join("r1.fq.gz"), &f1);
    std::fs::write(d.join("r2.fq"), &f2).unwrap();
    let out = align(
        &d.join("ref"),
        &[&d.join("r1.fq.gz"), &d.join("r2.fq")],
        &["-t", "2", "-R", "@RG\\tID:t1\\tSM:s"],
        Some(&d.join("out.sam")),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("aligned 400 reads: 400 mapped"), "{err}");
    let sam = std::fs::read_to_string(d.join("out.sam")).unwrap();
    assert!(sam.contains("@SQ\tSN:alpha\tLN:60000\n@SQ\tSN:beta\tLN:40000\n"));
    assert!(sam.contains("@RG\tID:t1\tSM:s\n"));
    let records: Vec<Vec<&str>> = sam
        .lines()
        .filter(|l| !l.starts_with('@'))
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(records.len(), 400);

    // The same alignments as BAM: BGZF is gzip-compatible, so decode it
    // and walk the records (the SAM specification's layout).
    let out = align(
        &d.join("ref"),
        &[&d.join("r1.fq.gz"), &d.join("r2.fq")],
        &["-t", "2", "-R", "@RG\\tID:t1\\tSM:s"],
        Some(&d.join("out.bam")),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut bam = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::MultiGzDecoder::new(std::fs::File::open(d.join("out.bam")).unwrap()),
        &mut bam,
    )
    .unwrap();
    assert_eq!(&bam[..4], b"BAM\x01");
    let le = |b: &[u8]| i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let l_text = le(&bam[4..]) as usize;
    let text = std::str::from_utf8(&bam[8..8 + l_text]).unwrap();
    assert!(text.contains("@SQ\tSN:alpha\tLN:60000"));
    let mut at = 8 + l_text;
    assert_eq!(le(&bam[at..]), 2, "two references");
    at += 4;
    for _ in 0..2 {
        let l = le(&bam[at..]) as usize;
        at += 4 + l + 4;
    }
    let mut n = 0;
    while at < bam.len() {
        let size = le(&bam[at..]) as usize;
        let rec = &bam[at + 4..at + 4 + size];
        let (ref_id, pos) = (le(&rec[0..]), le(&rec[4..]));
        let l_name = rec[8] as usize;
        let flag = u16::from_le_bytes([rec[14], rec[15]]);
        let name = std::str::from_utf8(&rec[32..32 + l_name - 1]).unwrap();
        let sam = &records[n];
        assert_eq!(name, sam[0]);
        assert_eq!(flag.to_string(), sam[1]);
        assert_eq!(["alpha", "beta"][ref_id as usize], sam[2]);
        assert_eq!((pos + 1).to_string(), sam[3]);
        at += 4 + size;
        n += 1;
    }
    assert_eq!(n, 400);

    // Sort (marking duplicates on the way), then mark again on the sorted
    // file: both indexed, the same records in coordinate order.
    let run = |args: &[&str]| {
        let out = Command::new(bin())
            .arg("genomics")
            .args(args)
            .current_dir(d)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = run(&[
        "sort",
        "out.bam",
        "-o",
        "sorted.bam",
        "-t",
        "2",
        "--markdup",
        "-s",
    ]);
    assert!(ok, "{err}");
    assert!(
        err.contains("sorted 400 records") && err.contains("EXAMINED: 400"),
        "{err}"
    );
    assert!(d.join("sorted.bam.bai").exists());
    let (ok, err) = run(&["markdup", "sorted.bam", "-o", "md.bam"]);
    assert!(ok, "{err}");
    assert!(
        err.contains("of 400 examined reads are duplicates"),
        "{err}"
    );
    let read_all = |p: &Path| {
        let mut r = accelhub_genomics::bam::reader::Reader::open(p, 1).unwrap();
        let mut v = Vec::new();
        let mut b = Vec::new();
        while r.next_into(&mut b).unwrap() {
            v.push(b.clone());
        }
        v
    };
    let sorted = read_all(&d.join("sorted.bam"));
    assert_eq!(sorted, read_all(&d.join("md.bam")));
    // Aligning straight into a sorted, marked BAM gives the same records.
    let out = align(
        &d.join("ref"),
        &[&d.join("r1.fq.gz"), &d.join("r2.fq")],
        &["-t", "2", "-R", "@RG\\tID:t1\\tSM:s", "--markdup"],
        Some(&d.join("direct.bam")),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("indexed"), "{err}");
    assert_eq!(read_all(&d.join("direct.bam")), sorted);
    assert!(d.join("direct.bam.bai").exists());
    let out = align(
        &d.join("ref"),
        &[&d.join("r1.fq.gz")],
        &["--sort"],
        Some(&d.join("x.sam")),
    );
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("give -o OUT.bam")
    );
    assert_eq!(sorted.len(), 400);
    let keys: Vec<(i32, i32)> = sorted
        .iter()
        .map(|b| {
            let r = accelhub_genomics::bam::record::Record::new(b).unwrap();
            (r.ref_id(), r.pos())
        })
        .collect();
    assert!(keys.windows(2).all(|w| w[0] <= w[1]));
    // Unsorted input to markdup: refused, naming the file and record, and
    // no output left; a memory bound too small to work with is refused.
    let (ok, err) = run(&["markdup", "out.bam", "-o", "bad.bam"]);
    assert!(
        !ok && err.contains("out.bam: record") && err.contains("not sorted by coordinate"),
        "{err}"
    );
    assert!(!d.join("bad.bam").exists() && !d.join("bad.bam.partial").exists());
    let (ok, err) = run(&["sort", "out.bam", "-o", "x.bam", "-m", "10K"]);
    assert!(!ok && err.contains("at least 1M"), "{err}");

    for r in records.chunks(2) {
        let (name, start) = r[0][0].rsplit_once('_').unwrap();
        let start: u64 = start.parse().unwrap();
        assert_eq!(r[0][2], name, "mate 1 on its contig");
        assert_eq!(r[0][3].parse::<u64>().unwrap(), start + 1);
        assert_eq!(r[1][3].parse::<u64>().unwrap(), start + 301);
        assert_eq!(r[0][8], "400");
        assert_eq!(r[1][8], "-400");
        assert_eq!(r[0][1], "99", "paired, proper, mate reverse, first");
        assert_eq!(r[1][1], "147");
    }
}

#[test]
fn bad_input_names_file_and_record_and_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // An empty contig in the reference.
    std::fs::write(d.join("bad.fa"), b">one\nACGTACGT\n>empty\n>three\nACGT\n").unwrap();
    let out = index(&d.join("bad.fa"), &d.join("bad"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.fa: record 2: contig 'empty' has no sequence"),
        "{err}"
    );
    assert!(!d.join("bad.ahx").exists());

    // A good index, then reads whose third record is malformed.
    let seq = random_bases(30_000, 11);
    let mut fa = b">chr\n".to_vec();
    fa.extend_from_slice(&seq);
    fa.push(b'\n');
    std::fs::write(d.join("ref.fa"), &fa).unwrap();
    let ok = index(&d.join("ref.fa"), &d.join("ref"));
    assert!(ok.status.success());
    let mut fq = Vec::new();
    for i in 0..2 {
        let s = String::from_utf8_lossy(&seq[i * 100..i * 100 + 100]).into_owned();
        writeln!(fq, "@r{i}\n{s}\n+\n{}", "I".repeat(100)).unwrap();
    }
    fq.extend_from_slice(b"@r2\nACGT\n+\nIII\n");
    std::fs::write(d.join("bad.fq"), &fq).unwrap();
    let out = align(
        &d.join("ref"),
        &[&d.join("bad.fq")],
        &[],
        Some(&d.join("out.sam")),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.fq: record 3: 3 quality values for 4 bases"),
        "{err}"
    );
    assert!(!d.join("out.sam").exists(), "no output that claims success");
    assert!(!d.join("out.sam.partial").exists());

    // Pair files of different lengths.
    let mut fq2 = fq.clone();
    fq2.truncate(fq.len() - 16);
    std::fs::write(d.join("a.fq"), &fq2).unwrap();
    let one: Vec<u8> = fq
        .split(|&b| b == b'\n')
        .take(4)
        .flat_map(|l| [l, b"\n"].concat())
        .collect();
    std::fs::write(d.join("b.fq"), &one).unwrap();
    let out = align(
        &d.join("ref"),
        &[&d.join("a.fq"), &d.join("b.fq")],
        &[],
        Some(&d.join("pairs.sam")),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("b.fq ends after 1 reads"), "{err}");
    assert!(!d.join("pairs.sam").exists());

    // A missing index says how to build one.
    let out = align(&d.join("nope"), &[&d.join("a.fq")], &[], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope.ahx"), "{err}");
}

/// Pairs of 2x100 at about 20x from each of two haplotypes of `seq`.
fn diploid_reads(hap1: &[u8], hap2: &[u8], d: &Path) {
    let (mut f1, mut f2) = (Vec::new(), Vec::new());
    let mut n = 0;
    for hap in [hap1, hap2] {
        for i in 0..hap.len() * 10 / 200 {
            let start = (i * 7919 + n * 13) % (hap.len() - 360);
            let a = &hap[start..start + 100];
            let b = revcomp_reference(&hap[start + 250..start + 350]);
            let q = "F".repeat(100);
            writeln!(f1, "@p{n}/1\n{}\n+\n{q}", String::from_utf8_lossy(a)).unwrap();
            writeln!(f2, "@p{n}/2\n{}\n+\n{q}", String::from_utf8_lossy(&b)).unwrap();
            n += 1;
        }
    }
    std::fs::write(d.join("r1.fq"), f1).unwrap();
    std::fs::write(d.join("r2.fq"), f2).unwrap();
}

fn gunzip(path: &Path) -> String {
    use std::io::Read;
    let mut s = String::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut s)
        .unwrap();
    s
}

#[test]
fn germline_flow_and_call_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let seq = random_bases(30_000, 11);
    let mut fa = b">chrT test\n".to_vec();
    for line in seq.chunks(60) {
        fa.extend_from_slice(line);
        fa.push(b'\n');
    }
    std::fs::write(d.join("ref.fa"), &fa).unwrap();
    assert!(index(&d.join("ref.fa"), &d.join("ref")).status.success());
    // hap1: SNVs at 5000 and 20000 (het); both: a 3-base deletion at
    // 12000 (hom).
    let flip = |b: u8| if b == b'A' { b'C' } else { b'A' };
    let mut hap1 = seq.clone();
    hap1[5000] = flip(seq[5000]);
    hap1[20000] = flip(seq[20000]);
    hap1.drain(12001..12004);
    let mut hap2 = seq.clone();
    hap2.drain(12001..12004);
    diploid_reads(&hap1, &hap2, d);

    let out = Command::new(bin())
        .args(["genomics", "germline"])
        .arg(d.join("ref"))
        .arg(d.join("r1.fq"))
        .arg(d.join("r2.fq"))
        .args(["-t", "2", "-R", "@RG\\tID:g\\tSM:NA7\\tLB:l1", "-o"])
        .arg(d.join("out"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for f in [
        "sample.bam",
        "sample.bam.bai",
        "sample.vcf.gz",
        "sample.vcf.gz.tbi",
        "sample.qc.tsv",
    ] {
        assert!(d.join("out").join(f).exists(), "{f} missing: {err}");
    }
    let qc = std::fs::read_to_string(d.join("out/sample.qc.tsv")).unwrap();
    for key in [
        "reads\t",
        "mapped_pct\t",
        "duplicates_pct\t",
        "insert_mean\t",
        "mean_depth\t",
        "ts_tv\t",
        "het_hom\t",
    ] {
        assert!(qc.contains(key), "{key} missing from {qc}");
    }
    let vcf = gunzip(&d.join("out/sample.vcf.gz"));
    assert!(vcf.contains("\tFORMAT\tNA7\n"), "{vcf}");
    let body: Vec<&str> = vcf.lines().filter(|l| !l.starts_with('#')).collect();
    let site = |pos: usize| {
        body.iter()
            .find(|l| l.split('\t').nth(1) == Some(&pos.to_string()))
    };
    assert!(site(5001).is_some_and(|l| l.contains("\t0/1:")), "{body:?}");
    assert!(
        site(20001).is_some_and(|l| l.contains("\t0/1:")),
        "{body:?}"
    );
    let del = body.iter().find(|l| {
        let f: Vec<&str> = l.split('\t').collect();
        f[3].len() == 4 && f[4].len() == 1
    });
    assert!(del.is_some_and(|l| l.contains("\t1/1:")), "{body:?}");
    assert_eq!(body.len(), 3, "{body:?}");

    // The caller alone, on a region of the flow's BAM.
    let call = |region: &str, out: &Path| {
        Command::new(bin())
            .args(["genomics", "call"])
            .arg(d.join("ref.fa"))
            .arg(d.join("out/sample.bam"))
            .args(["-r", region, "-t", "2", "-o"])
            .arg(out)
            .output()
            .unwrap()
    };
    let o = call("chrT:1-15000", &d.join("part.vcf.gz"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let part = gunzip(&d.join("part.vcf.gz"));
    assert_eq!(part.lines().filter(|l| !l.starts_with('#')).count(), 2);
    let o = call("chrT:29000-31000", &d.join("bad.vcf.gz"));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("chrT:29000-31000") && e.contains("30000 bases long"),
        "{e}"
    );
    assert!(!d.join("bad.vcf.gz").exists());
}
