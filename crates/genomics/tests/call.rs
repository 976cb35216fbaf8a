//! The germline caller on a synthetic diploid genome with a known truth:
//! reads simulated from two haplotypes (SNVs, indels in and out of
//! repeats, long insertions and deletions, clustered variants, het and
//! hom), aligned by our aligner, sorted, then called. Also: the output
//! does not depend on the thread count, bcftools and tabix read it, reads
//! of MAPQ 0 make no call, and bad input is refused by name without
//! leaving output.
#![allow(clippy::unwrap_used)] // a test: a panic is a failure

use accelhub_genomics::align::{AlignOptions, Aligner};
use accelhub_genomics::call::{call_file, CallOptions};
use accelhub_genomics::fasta::{Contig, Reference};
use accelhub_genomics::fastq::PairReader;
use accelhub_genomics::index::{Index, Params};
use accelhub_genomics::seq::{complement, encode_into, LETTER};
use accelhub_genomics::sort::{SortOptions, StreamSink};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::Rng;

fn letters(codes: &[u8]) -> String {
    codes.iter().map(|&c| LETTER[c as usize] as char).collect()
}

fn codes(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(s.as_bytes(), &mut out).unwrap();
    out
}

/// A planted variant, VCF-style: 0-based position of REF, alleles as
/// letters, and which haplotypes carry it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Truth {
    contig: usize,
    pos: usize,
    refa: String,
    alt: String,
    haps: (bool, bool),
}

impl Truth {
    fn gt(&self) -> &'static str {
        match self.haps {
            (true, true) => "1/1",
            _ => "0/1",
        }
    }
}

/// Two contigs of random sequence with a homopolymer and a dinucleotide
/// repeat planted in each; variants every ~400 bases of every kind.
fn genome_and_truth() -> (Reference, Vec<Truth>) {
    let mut rng = Rng(2024);
    let lens = [36_000usize, 9_000];
    let mut seq = Vec::new();
    let mut contigs = Vec::new();
    for (i, &len) in lens.iter().enumerate() {
        let mut s: Vec<u8> = (0..len).map(|_| rng.below(4) as u8).collect();
        // Repeats at fixed places: A x 12 at 3000, CA x 8 at 6000.
        s[3000..3012].fill(0);
        for k in 0..8 {
            s[6000 + 2 * k] = 1;
            s[6001 + 2 * k] = 0;
        }
        contigs.push(Contig {
            name: format!("chr{}", i + 1),
            offset: seq.len() as u64,
            len: len as u64,
        });
        seq.extend(s);
    }
    let r = Reference { contigs, seq };
    let mut truth = Vec::new();
    for (ci, c) in r.contigs.iter().enumerate() {
        let s = &r.seq[c.offset as usize..(c.offset + c.len) as usize];
        let mut pos = 400;
        let mut k = 0;
        while pos + 500 < s.len() {
            let haps = match k % 3 {
                0 => (true, false),
                1 => (false, true),
                _ => (true, true),
            };
            let at = |p: usize| letters(&s[p..p + 1]);
            let mut add = |p: usize, refa: String, alt: String| {
                truth.push(Truth {
                    contig: ci,
                    pos: p,
                    refa,
                    alt,
                    haps,
                })
            };
            match k % 7 {
                0..=2 => {
                    let alt = LETTER[((s[pos] + 1 + (k % 3) as u8) % 4) as usize] as char;
                    add(pos, at(pos), alt.to_string());
                }
                3 => {
                    // A deletion of 1-6 bases (anchor base first).
                    let l = 1 + k % 6;
                    add(pos, letters(&s[pos..pos + 1 + l]), at(pos));
                }
                4 => {
                    let ins: String = (0..1 + k % 5)
                        .map(|j| "ACGT".as_bytes()[(j * 7 + k) % 4] as char)
                        .collect();
                    add(pos, at(pos), format!("{}{ins}", at(pos)));
                }
                5 => {
                    // A cluster: an SNV, then a 2-base deletion 5 bases on.
                    let alt = LETTER[((s[pos] + 2) % 4) as usize] as char;
                    add(pos, at(pos), alt.to_string());
                    add(pos + 5, letters(&s[pos + 5..pos + 8]), at(pos + 5));
                }
                _ => {
                    // Long: a 25-base insertion or a 30-base deletion.
                    if k % 2 == 0 {
                        let ins: String = (0..25)
                            .map(|j| "ACGT".as_bytes()[(j * 3 + k) % 4] as char)
                            .collect();
                        add(pos, at(pos), format!("{}{ins}", at(pos)));
                    } else {
                        add(pos, letters(&s[pos..pos + 31]), at(pos));
                    }
                }
            }
            k += 1;
            pos += 380 + rng.below(60) as usize;
            // Keep the planted repeats clear; they get their own variants.
            if (2900..3100).contains(&pos) || (5900..6100).contains(&pos) {
                pos += 250;
            }
        }
        // Indels in the repeats: one A less in the homopolymer (hom), one
        // CA more in the dinucleotide repeat (het), written left-aligned.
        truth.push(Truth {
            contig: ci,
            pos: 2999,
            refa: letters(&s[2999..3001]),
            alt: letters(&s[2999..3000]),
            haps: (true, true),
        });
        truth.push(Truth {
            contig: ci,
            pos: 5999,
            refa: letters(&s[5999..6000]),
            alt: format!("{}CA", letters(&s[5999..6000])),
            haps: (false, true),
        });
    }
    truth.sort();
    for t in &mut truth {
        let c = &r.contigs[t.contig];
        normalise(&r.seq[c.offset as usize..(c.offset + c.len) as usize], t);
    }
    truth.sort();
    for w in truth.windows(2) {
        assert!(
            w[0].contig != w[1].contig || w[0].pos + w[0].refa.len() < w[1].pos,
            "overlapping truth {w:?}"
        );
    }
    (r, truth)
}

/// Left-align an indel, as VCF normalisation does.
fn normalise(s: &[u8], t: &mut Truth) {
    if t.refa.len() == t.alt.len() {
        return;
    }
    let (mut refa, mut alt) = (codes(&t.refa), codes(&t.alt));
    while t.pos > 0 && refa.last() == alt.last() {
        refa.pop();
        alt.pop();
        t.pos -= 1;
        refa.insert(0, s[t.pos]);
        alt.insert(0, s[t.pos]);
    }
    t.refa = letters(&refa);
    t.alt = letters(&alt);
}

/// Haplotype `h` (0 or 1) of contig `ci`.
fn haplotype(r: &Reference, truth: &[Truth], ci: usize, h: usize) -> Vec<u8> {
    let c = &r.contigs[ci];
    let s = &r.seq[c.offset as usize..(c.offset + c.len) as usize];
    let mut out = Vec::new();
    let mut at = 0;
    for t in truth.iter().filter(|t| t.contig == ci) {
        let carried = if h == 0 { t.haps.0 } else { t.haps.1 };
        if !carried {
            continue;
        }
        out.extend_from_slice(&s[at..t.pos]);
        out.extend(codes(&t.alt));
        at = t.pos + t.refa.len();
    }
    out.extend_from_slice(&s[at..]);
    out
}

/// 2x150 pairs at `depth` from both haplotypes, with 0.2% substitutions.
fn simulate(r: &Reference, truth: &[Truth], depth: usize, dir: &Path) {
    let mut rng = Rng(99);
    let (mut f1, mut f2) = (String::new(), String::new());
    let mut n = 0;
    for ci in 0..r.contigs.len() {
        for h in 0..2 {
            let hap = haplotype(r, truth, ci, h);
            let pairs = hap.len() * depth / 2 / 300;
            for _ in 0..pairs {
                let insert = 320 + rng.below(80) as usize;
                let start = rng.below((hap.len() - insert) as u64) as usize;
                let mut a = hap[start..start + 150].to_vec();
                let mut b: Vec<u8> = hap[start + insert - 150..start + insert]
                    .iter()
                    .rev()
                    .map(|&c| complement(c))
                    .collect();
                for read in [&mut a, &mut b] {
                    for base in read.iter_mut() {
                        if rng.below(500) == 0 {
                            *base = (*base + 1 + rng.below(3) as u8) % 4;
                        }
                    }
                }
                if rng.below(2) == 0 {
                    std::mem::swap(&mut a, &mut b);
                }
                let q = "?".repeat(150);
                writeln!(f1, "@r{n}/1\n{}\n+\n{q}", letters(&a)).unwrap();
                writeln!(f2, "@r{n}/2\n{}\n+\n{q}", letters(&b)).unwrap();
                n += 1;
            }
        }
    }
    std::fs::write(dir.join("r1.fq"), f1).unwrap();
    std::fs::write(dir.join("r2.fq"), f2).unwrap();
}

fn write_fasta(r: &Reference, path: &Path) {
    let mut out = String::new();
    for c in &r.contigs {
        writeln!(out, ">{} synthetic", c.name).unwrap();
        let s = &r.seq[c.offset as usize..(c.offset + c.len) as usize];
        for line in s.chunks(70) {
            writeln!(out, "{}", letters(line)).unwrap();
        }
    }
    std::fs::write(path, out).unwrap();
}

struct Case {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    fasta: PathBuf,
    bam: PathBuf,
    truth: Vec<Truth>,
    names: Vec<String>,
}

/// The genome, its reads aligned and sorted into `sample.bam`.
fn case() -> Case {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let (r, truth) = genome_and_truth();
    simulate(&r, &truth, 30, &dir);
    let fasta = dir.join("ref.fa");
    write_fasta(&r, &fasta);
    let names = r.contigs.iter().map(|c| c.name.clone()).collect();
    let idx = Index::build(r, Params::default(), &mut |_, _, _| {}).unwrap();
    let al = Aligner::new(
        &idx,
        AlignOptions {
            threads: 2,
            read_group: Some("@RG\\tID:x\\tSM:NA0001".into()),
            format: accelhub_genomics::align::Format::Bam,
            ..Default::default()
        },
    );
    let opts = SortOptions {
        memory: 64 << 20,
        tmp_dir: dir.clone(),
        threads: 2,
        level: 6,
    };
    let mut sink = StreamSink::new(&opts, None);
    let reads = PairReader::open(&dir.join("r1.fq"), &dir.join("r2.fq")).unwrap();
    al.align_pairs(reads, &mut sink, &mut |_| {}).unwrap();
    let bam = dir.join("sample.bam");
    sink.finish(&bam, &mut |_| {}).unwrap();
    Case {
        _dir: tmp,
        dir,
        fasta,
        bam,
        truth,
        names,
    }
}

fn gunzip(path: &Path) -> String {
    let mut s = String::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut s)
        .unwrap();
    s
}

/// (contig, 0-based pos, REF, ALT) -> (GT, QUAL) of every call.
fn calls(vcf: &str, names: &[String]) -> BTreeMap<(usize, usize, String, String), (String, f64)> {
    let mut out = BTreeMap::new();
    for l in vcf.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = l.split('\t').collect();
        let contig = names.iter().position(|n| n == f[0]).unwrap();
        let gt = f[9].split(':').next().unwrap();
        let alleles: Vec<&str> = gt.split('/').collect();
        for (i, alt) in f[4].split(',').enumerate() {
            let n = alleles
                .iter()
                .filter(|a| **a == (i + 1).to_string())
                .count();
            let g = match n {
                2 => "1/1",
                1 => "0/1",
                _ => continue,
            };
            out.insert(
                (
                    contig,
                    f[1].parse::<usize>().unwrap() - 1,
                    f[3].to_string(),
                    alt.to_string(),
                ),
                (g.to_string(), f[5].parse().unwrap()),
            );
        }
    }
    out
}

fn run_call(
    c: &Case,
    out: &Path,
    opts: &CallOptions,
) -> accelhub_genomics::Result<accelhub_genomics::call::CallStats> {
    call_file(&c.fasta, &c.bam, out, opts, "test", &mut |_, _| {})
}

#[test]
fn calls_the_planted_variants_with_their_genotypes() {
    let c = case();
    let out = c.dir.join("calls.vcf.gz");
    let stats = run_call(
        &c,
        &out,
        &CallOptions {
            threads: 2,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(c.dir.join("calls.vcf.gz.tbi").exists());
    let text = gunzip(&out);
    assert!(text.starts_with("##fileformat=VCFv4.2\n"));
    assert!(
        text.contains("\tFORMAT\tNA0001\n"),
        "the sample is named from @RG SM"
    );
    assert!(text.contains("##contig=<ID=chr2,length=9000>"));
    let got = calls(&text, &c.names);
    let want: BTreeMap<_, _> = c
        .truth
        .iter()
        .map(|t| {
            (
                (t.contig, t.pos, t.refa.clone(), t.alt.clone()),
                t.gt().to_string(),
            )
        })
        .collect();
    let found: Vec<_> = want.keys().filter(|k| got.contains_key(*k)).collect();
    let missed: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let false_calls: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let wrong_gt: Vec<_> = found.iter().filter(|k| got[**k].0 != want[**k]).collect();
    println!(
        "{} planted, {} found; missed {missed:?}; false {false_calls:?}; wrong GT {wrong_gt:?}",
        want.len(),
        found.len()
    );
    assert!(want.len() > 100);
    assert!(missed.len() * 50 <= want.len(), "missed {missed:?}");
    assert!(
        false_calls.len() * 50 <= want.len(),
        "false calls {false_calls:?}"
    );
    assert!(
        wrong_gt.len() * 50 <= found.len(),
        "wrong genotypes {wrong_gt:?}"
    );
    // Every long indel, and the indels in the two repeats, are found.
    for t in &c.truth {
        let long = t.refa.len().max(t.alt.len()) > 20;
        let in_repeat = t.pos == 2999 || t.pos == 5999;
        if long || in_repeat {
            assert!(
                got.contains_key(&(t.contig, t.pos, t.refa.clone(), t.alt.clone())),
                "missed {t:?}"
            );
        }
    }
    assert_eq!(stats.snvs + stats.indels, got.len() as u64);
    assert!(
        stats.mean_depth() > 25.0 && stats.mean_depth() < 35.0,
        "{}",
        stats.mean_depth()
    );
    // Per-site fields are consistent: AD has one count per allele, PL one
    // per genotype, GQ at most 99.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = l.split('\t').collect();
        assert_eq!(f[8], "GT:GQ:DP:AD:PL");
        let v: Vec<&str> = f[9].split(':').collect();
        let n = f[4].split(',').count() + 1;
        assert_eq!(v[3].split(',').count(), n, "{l}");
        assert_eq!(v[4].split(',').count(), n * (n + 1) / 2, "{l}");
        assert!(v[1].parse::<u32>().unwrap() <= 99);
    }

    // The same calls on 1 and 3 threads, and for a region, its part.
    let one = c.dir.join("one.vcf.gz");
    run_call(
        &c,
        &one,
        &CallOptions {
            threads: 1,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(gunzip(&one), text, "the thread count changed the output");
    let part = c.dir.join("part.vcf.gz");
    let opts = CallOptions {
        threads: 3,
        regions: vec!["chr1:10,001-20000".into()],
        ..Default::default()
    };
    run_call(&c, &part, &opts).unwrap();
    let part_calls = calls(&gunzip(&part), &c.names);
    let inside: Vec<_> = got
        .keys()
        .filter(|k| k.0 == 0 && k.1 >= 10_100 && k.1 < 19_900)
        .collect();
    assert!(!part_calls.is_empty());
    assert!(part_calls
        .keys()
        .all(|k| k.0 == 0 && k.1 >= 9_990 && k.1 < 20_010));
    for k in inside {
        assert!(
            part_calls.contains_key(k),
            "{k:?} lost when calling the region"
        );
    }

    // bcftools and tabix read the file and its index.
    if Command::new("bcftools").arg("--version").output().is_ok() {
        let n = |args: &[&str]| -> usize {
            let o = Command::new("bcftools").args(args).output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            String::from_utf8_lossy(&o.stdout).lines().count()
        };
        let path = out.to_str().unwrap();
        let total = text.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(n(&["view", "-H", path]), total);
        let in_chr2 = text.lines().filter(|l| l.starts_with("chr2\t")).count();
        assert_eq!(
            n(&["view", "-H", path, "chr2"]),
            in_chr2,
            "a region query through the index"
        );
        let o = Command::new("bcftools")
            .args(["index", "-n", path])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), total.to_string());
    } else {
        eprintln!("bcftools not installed: skipping its checks");
    }

    // As a gVCF: the same variants (each with <NON_REF>), and reference
    // blocks in between that neither overlap them nor each other.
    let g = c.dir.join("calls.g.vcf.gz");
    let mut opts = CallOptions {
        threads: 2,
        ..Default::default()
    };
    opts.params.gvcf = true;
    run_call(&c, &g, &opts).unwrap();
    let gtext = gunzip(&g);
    assert!(gtext.contains("##ALT=<ID=NON_REF"));
    let mut last = (String::new(), 0usize);
    let mut variants = String::new();
    let mut blocks = 0;
    for l in gtext.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = l.split('\t').collect();
        let pos: usize = f[1].parse().unwrap();
        let end = match f[7].strip_prefix("END=") {
            Some(e) => {
                blocks += 1;
                assert_eq!(f[4], "<NON_REF>");
                assert!(f[9].starts_with("0/0:"), "{l}");
                e.parse().unwrap()
            }
            None => {
                assert!(f[4].ends_with(",<NON_REF>"), "{l}");
                variants.push_str(&format!(
                    "{}\t{}\t{}\t{}\n",
                    f[0],
                    f[1],
                    f[3],
                    f[4].trim_end_matches(",<NON_REF>")
                ));
                pos + f[3].len() - 1
            }
        };
        if last.0 == f[0] {
            assert!(pos > last.1, "{l} overlaps the record before");
        }
        last = (f[0].to_string(), end);
    }
    let plain: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            format!("{}\t{}\t{}\t{}\n", f[0], f[1], f[3], f[4])
        })
        .collect();
    assert_eq!(variants, plain);
    assert!(blocks > 100, "{blocks} blocks");
}

/// A SAM of 40 reads over one SNV, half of them carrying it, all with
/// mapping quality `mapq`.
fn snv_sam(mapq: u8, dir: &Path) -> (PathBuf, PathBuf) {
    sample_sam(dir, &format!("mq{mapq}"), mapq, 1420, &[(1500, 1, 2)])
}

/// A sample's SAM over the random 3 kb reference `g` (written as g.fa):
/// 40 reads of 100 bases from `from` on, two bases apart; every k-th read
/// carries the base `ref + shift` at each (pos, shift, k) of `snvs`.
fn sample_sam(
    dir: &Path,
    name: &str,
    mapq: u8,
    from: usize,
    snvs: &[(usize, u8, usize)],
) -> (PathBuf, PathBuf) {
    let mut rng = Rng(5);
    let r: Vec<u8> = (0..3000).map(|_| rng.below(4) as u8).collect();
    let mut fa = String::from(">g\n");
    fa.push_str(&letters(&r));
    fa.push('\n');
    let fasta = dir.join("g.fa");
    std::fs::write(&fasta, fa).unwrap();
    let mut sam = format!("@HD\tVN:1.6\tSO:coordinate\n@SQ\tSN:g\tLN:3000\n@RG\tID:1\tSM:{name}\n");
    for i in 0..40 {
        let pos = from + i * 2;
        let mut s = r[pos..pos + 100].to_vec();
        for &(at, shift, k) in snvs {
            if i % k == 0 && (pos..pos + 100).contains(&at) {
                s[at - pos] = (r[at] + shift) % 4;
            }
        }
        writeln!(
            sam,
            "q{i}\t0\tg\t{}\t{mapq}\t100M\t*\t0\t0\t{}\t{}\tRG:Z:1",
            pos + 1,
            letters(&s),
            "I".repeat(100)
        )
        .unwrap();
    }
    let path = dir.join(format!("{name}.sam"));
    std::fs::write(&path, sam).unwrap();
    (fasta, path)
}

#[test]
fn gvcfs_of_several_samples_genotype_jointly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut opts = CallOptions::default();
    opts.params.gvcf = true;
    let mut gvcfs = Vec::new();
    // a: het G-ish at 1500; b: reference there; c: hom of another base
    // at 1500 and het at 1520; e: no reads at 1500.
    for (name, from, snvs) in [
        ("a", 1420, vec![(1500, 1, 2)]),
        ("b", 1420, vec![]),
        ("c", 1420, vec![(1500, 2, 1), (1520, 1, 2)]),
        ("e", 2400, vec![]),
    ] {
        let (fasta, sam) = sample_sam(d, name, 60, from, &snvs);
        let out = d.join(format!("{name}.g.vcf.gz"));
        call_file(&fasta, &sam, &out, &opts, "t", &mut |_, _| {}).unwrap();
        gvcfs.push(out);
    }
    // Each gVCF covers the contig whole, without gaps or overlaps, even
    // where a sample has no reads (e: only 2400-2578).
    for g in &gvcfs {
        let mut next = 1usize;
        for l in gunzip(g).lines().filter(|l| !l.starts_with('#')) {
            let f: Vec<&str> = l.split('\t').collect();
            let pos: usize = f[1].parse().unwrap();
            assert_eq!(pos, next, "{}: {l}", g.display());
            next = match f[7].strip_prefix("END=") {
                Some(e) => e.parse::<usize>().unwrap() + 1,
                None => pos + f[3].len(),
            };
        }
        assert_eq!(next, 3001, "{} stops short", g.display());
    }
    let out = d.join("joint.vcf.gz");
    let stats = accelhub_genomics::call::joint::joint_files(&gvcfs, &out, "t").unwrap();
    assert_eq!((stats.samples, stats.sites), (4, 2));
    let text = gunzip(&out);
    assert!(text.contains("\tFORMAT\ta\tb\tc\te\n"), "{text}");
    let body: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split('\t').collect())
        .collect();
    let gt = |row: &[&str], s: usize| row[9 + s].split(':').next().unwrap().to_string();
    // 1500: alleles REF, a's, c's; a 0/1, b 0/0 (from its block, with
    // depth and confidence), c 2/2, e no call.
    let site = &body[0];
    assert_eq!(site[1], "1501");
    assert_eq!(site[4].split(',').count(), 2, "{site:?}");
    assert_eq!(
        (gt(site, 0), gt(site, 1), gt(site, 2), gt(site, 3)),
        ("0/1".into(), "0/0".into(), "2/2".into(), "./.".into())
    );
    let b: Vec<&str> = site[10].split(':').collect();
    assert!(
        b[1].parse::<u32>().unwrap() > 20 && b[2].parse::<u32>().unwrap() >= 10,
        "{b:?}"
    );
    assert_eq!(site[9 + 2].split(':').nth(4).unwrap().split(',').count(), 6);
    assert!(site[7].starts_with("AC=1,2;AN=6;"), "{}", site[7]);
    let second = &body[1];
    assert_eq!(second[1], "1521");
    assert_eq!((gt(second, 0), gt(second, 2)), ("0/0".into(), "0/1".into()));
    if Command::new("bcftools").arg("--version").output().is_ok() {
        let o = Command::new("bcftools")
            .args(["view", "-H"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success());
        assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 2);
    }

    // The same sample twice, a plain VCF, and different references are
    // refused by name.
    let e = accelhub_genomics::call::joint::joint_files(
        &[gvcfs[0].clone(), gvcfs[0].clone()],
        &d.join("x.vcf.gz"),
        "t",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("both sample 'a'"), "{e}");
    let (fasta, sam) = sample_sam(d, "p", 60, 1420, &[]);
    let plain = d.join("plain.vcf.gz");
    call_file(
        &fasta,
        &sam,
        &plain,
        &CallOptions::default(),
        "t",
        &mut |_, _| {},
    )
    .unwrap();
    let e = accelhub_genomics::call::joint::joint_files(
        &[gvcfs[0].clone(), plain],
        &d.join("x.vcf.gz"),
        "t",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("plain.vcf.gz") && e.contains("--gvcf"), "{e}");
    assert!(!d.join("x.vcf.gz").exists());
    // A gVCF of another reference, and one with a broken record, named.
    let text = gunzip(&gvcfs[1]);
    let other = d.join("other.g.vcf");
    std::fs::write(&other, text.replace("length=3000", "length=3001")).unwrap();
    let e = accelhub_genomics::call::joint::joint_files(
        &[gvcfs[0].clone(), other],
        &d.join("x.vcf.gz"),
        "t",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("other.g.vcf") && e.contains("different references"),
        "{e}"
    );
    let broken = d.join("broken.g.vcf");
    let mut lines: Vec<&str> = text.lines().collect();
    let first = lines.iter().position(|l| !l.starts_with('#')).unwrap();
    lines[first] = "g\t12";
    std::fs::write(&broken, lines.join("\n")).unwrap();
    let e = accelhub_genomics::call::joint::joint_files(
        &[gvcfs[0].clone(), broken],
        &d.join("x.vcf.gz"),
        "t",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("broken.g.vcf") && e.contains(&format!("record {}", first + 1)),
        "{e}"
    );
    assert!(!d.join("x.vcf.gz").exists());
}

#[test]
fn reads_of_mapq_zero_make_no_call() {
    let dir = tempfile::tempdir().unwrap();
    for (mapq, expect) in [(60u8, 1usize), (0, 0)] {
        let (fasta, sam) = snv_sam(mapq, dir.path());
        let out = dir.path().join(format!("mq{mapq}.vcf.gz"));
        call_file(
            &fasta,
            &sam,
            &out,
            &CallOptions::default(),
            "t",
            &mut |_, _| {},
        )
        .unwrap();
        let text = gunzip(&out);
        let body: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(body.len(), expect, "MAPQ {mapq}: {body:?}");
        if expect == 1 {
            assert!(body[0].starts_with("g\t1501\t"), "{}", body[0]);
            assert!(body[0].contains("\t0/1:"), "{}", body[0]);
        }
    }
}

#[test]
fn reads_without_bases_or_past_the_contig_end_are_borne() {
    let dir = tempfile::tempdir().unwrap();
    let (fasta, sam) = snv_sam(60, dir.path());
    let mut text = std::fs::read_to_string(&sam).unwrap();
    // No stored sequence (SEQ *), and reads whose alignment, with a
    // deletion, runs past the contig's end.
    text.push_str("s1\t0\tg\t1480\t60\t50M\t*\t0\t0\t*\t*\n");
    for i in 0..4 {
        let bases = "ACGT".repeat(15);
        text.push_str(&format!(
            "e{i}\t0\tg\t{}\t60\t40M5D20M\t*\t0\t0\t{bases}\t{}\n",
            2950 + i,
            "I".repeat(60)
        ));
    }
    std::fs::write(&sam, text).unwrap();
    let out = dir.path().join("o.vcf.gz");
    match call_file(
        &fasta,
        &sam,
        &out,
        &CallOptions::default(),
        "t",
        &mut |_, _| {},
    ) {
        Ok(_) => assert!(
            gunzip(&out).contains("g\t1501\t"),
            "the SNV is still called"
        ),
        // Refusing such records by name is as good as bearing them.
        Err(e) => assert!(e.to_string().contains("mq60.sam"), "{e}"),
    }
}

/// No file at `out`, nor its partial or index.
fn nothing_left(out: &Path) {
    for suffix in ["", ".partial", ".tbi", ".tbi.partial"] {
        let mut p = out.as_os_str().to_owned();
        p.push(suffix);
        assert!(
            !Path::new(&p).exists(),
            "{} was left",
            Path::new(&p).display()
        );
    }
}

#[test]
fn bad_input_is_refused_by_name_and_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (fasta, sam) = snv_sam(60, d);
    let out = d.join("out.vcf.gz");
    let call = |fasta: &Path, input: &Path, opts: &CallOptions| {
        call_file(fasta, input, &out, opts, "t", &mut |_, _| {})
            .unwrap_err()
            .to_string()
    };
    let opts = CallOptions::default();

    // Records out of order, with no SO to warn of it.
    let text = std::fs::read_to_string(&sam).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.swap(10, 20);
    let unsorted = d.join("unsorted.sam");
    std::fs::write(
        &unsorted,
        lines.join("\n").replace("\tSO:coordinate", "") + "\n",
    )
    .unwrap();
    let e = call(&fasta, &unsorted, &opts);
    assert!(
        e.contains("unsorted.sam") && e.contains("not sorted") && e.contains("record"),
        "{e}"
    );
    nothing_left(&out);
    // A header that says so.
    let by_name = d.join("byname.sam");
    std::fs::write(&by_name, text.replace("SO:coordinate", "SO:queryname")).unwrap();
    let e = call(&fasta, &by_name, &opts);
    assert!(e.contains("byname.sam") && e.contains("queryname"), "{e}");
    nothing_left(&out);

    // A reference whose contig is shorter than the BAM's header says.
    let short = d.join("short.fa");
    let fa = std::fs::read_to_string(&fasta).unwrap();
    std::fs::write(&short, &fa[..fa.len() - 11]).unwrap();
    let e = call(&short, &sam, &opts);
    assert!(
        e.contains("'g'") && e.contains("3000") && e.contains("2990") && e.contains("short.fa"),
        "{e}"
    );
    nothing_left(&out);
    // One that lacks it.
    let other = d.join("other.fa");
    std::fs::write(&other, fa.replace(">g", ">h")).unwrap();
    let e = call(&other, &sam, &opts);
    assert!(e.contains("'g'") && e.contains("other.fa"), "{e}");
    nothing_left(&out);

    // Regions outside the reference.
    for region in ["g:2900-3100", "chrZ:1-10", "g:0-5"] {
        let o = CallOptions {
            regions: vec![region.into()],
            ..Default::default()
        };
        let e = call(&fasta, &sam, &o);
        assert!(e.contains(region), "{e}");
        nothing_left(&out);
    }

    // A truncated BAM: cut inside the last block.
    let c = case_bam_of(&sam, d);
    let bytes = std::fs::read(&c).unwrap();
    let cut = d.join("cut.bam");
    std::fs::write(&cut, &bytes[..bytes.len() - 40]).unwrap();
    let e = call(&fasta, &cut, &opts);
    assert!(e.contains("cut.bam") && e.contains("truncated"), "{e}");
    nothing_left(&out);

    // A FASTA without an index (.fai) is read whole, and its index built
    // as samtools faidx builds it.
    std::fs::remove_file(d.join("g.fa.fai")).unwrap();
    call_file(&fasta, &c, &out, &opts, "t", &mut |_, _| {}).unwrap();
    assert!(out.exists());
    let fai = std::fs::read_to_string(d.join("g.fa.fai")).unwrap();
    assert_eq!(fai, "g\t3000\t3\t3000\t3001\n");
    if Command::new("samtools").arg("--version").output().is_ok() {
        std::fs::remove_file(d.join("g.fa.fai")).unwrap();
        assert!(Command::new("samtools")
            .arg("faidx")
            .arg(&fasta)
            .status()
            .unwrap()
            .success());
        assert_eq!(std::fs::read_to_string(d.join("g.fa.fai")).unwrap(), fai);
    }
}

#[test]
fn fai_matches_samtools_on_wrapped_lines() {
    let dir = tempfile::tempdir().unwrap();
    let fa = dir.path().join("w.fa");
    let mut text = String::new();
    for (name, n) in [("one desc", 130), ("two", 60), ("three", 7)] {
        text.push_str(&format!(">{name}\n"));
        let s = "ACGT".repeat(n).chars().take(n).collect::<String>();
        for line in s.as_bytes().chunks(60) {
            text.push_str(std::str::from_utf8(line).unwrap());
            text.push('\n');
        }
    }
    std::fs::write(&fa, &text).unwrap();
    let fai = accelhub_genomics::fasta::write_fai(&fa).unwrap().unwrap();
    let ours = std::fs::read_to_string(&fai).unwrap();
    assert_eq!(
        ours,
        "one\t130\t10\t60\t61\ntwo\t60\t148\t60\t61\nthree\t7\t216\t7\t8\n"
    );
    if Command::new("samtools").arg("--version").output().is_ok() {
        std::fs::remove_file(&fai).unwrap();
        assert!(Command::new("samtools")
            .arg("faidx")
            .arg(&fa)
            .status()
            .unwrap()
            .success());
        assert_eq!(std::fs::read_to_string(&fai).unwrap(), ours);
    }
    // Uneven lines cannot be indexed.
    std::fs::write(&fa, ">x\nACG\nACGTA\n").unwrap();
    assert!(accelhub_genomics::fasta::write_fai(&fa).unwrap().is_none());
}

/// The SAM as a sorted BAM.
fn case_bam_of(sam: &Path, dir: &Path) -> PathBuf {
    let bam = dir.join("sorted.bam");
    let opts = SortOptions {
        memory: 16 << 20,
        tmp_dir: dir.to_path_buf(),
        threads: 1,
        level: 6,
    };
    accelhub_genomics::sort::sort_file(sam, &bam, &opts, None, "t", &mut |_, _| {}).unwrap();
    bam
}
