//! The built-in IPs this device class offers, as packages the platform
//! publishes at start-up (as the operator) and verifies like any other:
//! `genomics/index`, `genomics/align`, and the flow after alignment,
//! `genomics/sort`, `genomics/markdup`, `genomics/call` and
//! `genomics/germline` (all of it in one job).
//!
//! Their test vectors are generated here, deterministically. For index and
//! align: a small two-contig reference (with an N run, IUPAC codes and
//! soft-masked lower case), read pairs simulated from it with mismatches,
//! and a pair that matches nowhere. For the rest: a diploid sample of one
//! contig with planted variants (a het and a hom SNV, a het deletion), read
//! at about 20x, some pairs duplicated. The expected outputs (and the
//! intermediate files the later stages take as input) are committed files
//! in `vectors/`, so a change in any stage's output shows up as a failed
//! verification (and in this crate's tests) until the IPs' version is
//! bumped and the vectors regenerated (`ACCELHUB_BLESS=1 cargo test -p
//! accelhub-native`).

use accelhub_domain::Limits;
use accelhub_genomics::index::{Index, Params};
use accelhub_genomics::{fasta, io as gio};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::Path;

/// The version both built-in IPs are published at; bump it with any change
/// to their outputs.
pub const VERSION: &str = "1.2.0";

/// Expected alignments of the test vectors (see the module docs).
pub const ALIGN_PAIRS_SAM: &[u8] = include_bytes!("../vectors/align-pairs.sam");
pub const ALIGN_SINGLE_SAM: &[u8] = include_bytes!("../vectors/align-single.sam");

/// The germline sample's vectors, each stage's output the next one's
/// input: aligned (unsorted SAM), sorted BAM, duplicates marked, calls
/// (`genomics/call` on the marked BAM) and the whole flow's calls.
pub const GERM_ALIGNED_SAM: &[u8] = include_bytes!("../vectors/germ-aligned.sam");
pub const GERM_SORTED_BAM: &[u8] = include_bytes!("../vectors/germ-sorted.bam");
pub const GERM_MARKED_BAM: &[u8] = include_bytes!("../vectors/germ-marked.bam");
pub const GERM_CALLS_VCF: &[u8] = include_bytes!("../vectors/germ-calls.vcf.gz");
pub const GERM_FLOW_VCF: &[u8] = include_bytes!("../vectors/germ-flow.vcf.gz");

/// Where the germline sample's variants are (0-based, on `chrG`): a het
/// SNV, a hom SNV, and a het deletion of 3 bases after this position.
pub const GERM_HET_SNV: usize = 1_000;
pub const GERM_HOM_SNV: usize = 2_000;
pub const GERM_HET_DEL: usize = 3_000;
/// Pairs read, and how many of them are duplicated once more.
pub const GERM_PAIRS: usize = 360;
pub const GERM_DUPLICATES: usize = 12;

/// A package: its files by path, `ip.toml` among them.
pub type Files = BTreeMap<String, Bytes>;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const BASES: &[u8; 4] = b"ACGT";

fn complement(b: u8) -> u8 {
    match b {
        b'A' => b'T',
        b'C' => b'G',
        b'G' => b'C',
        b'T' => b'A',
        _ => b'N',
    }
}

/// The test data: reference FASTA, R1 and R2 FASTQ.
pub struct TestData {
    pub reference: Vec<u8>,
    pub r1: Vec<u8>,
    pub r2: Vec<u8>,
}

pub fn test_data() -> TestData {
    let mut rng = Rng(0x05EE_D0FA_CCE1_u64);
    let mut contigs: Vec<(&str, Vec<u8>)> = Vec::new();
    for (name, len) in [("chrA", 15_000usize), ("chrB", 9_000)] {
        let seq: Vec<u8> = (0..len).map(|_| BASES[rng.below(4) as usize]).collect();
        contigs.push((name, seq));
    }
    // Reads are simulated from the clean sequence; the FASTA then gets an
    // N run, IUPAC codes and lower case, which the index must take in.
    let mut r1 = Vec::new();
    let mut r2 = Vec::new();
    let len = 100usize;
    for i in 0..48 {
        let (_, seq) = &contigs[i % 2];
        let frag = 250 + rng.below(100) as usize;
        let start = rng.below((seq.len() - frag) as u64) as usize;
        let mut a: Vec<u8> = seq[start..start + len].to_vec();
        let mut b: Vec<u8> = seq[start + frag - len..start + frag]
            .iter()
            .rev()
            .map(|&c| complement(c))
            .collect();
        for read in [&mut a, &mut b] {
            for _ in 0..rng.below(3) {
                let p = rng.below(len as u64) as usize;
                read[p] = BASES[(BASES.iter().position(|&c| c == read[p]).unwrap_or(0)
                    + 1
                    + rng.below(3) as usize)
                    % 4];
            }
        }
        // Every fourth pair comes with R1 on the reverse strand.
        if i % 4 == 3 {
            std::mem::swap(&mut a, &mut b);
        }
        fastq(&mut r1, &format!("p{i}/1"), &a);
        fastq(&mut r2, &format!("p{i}/2"), &b);
    }
    let noise: Vec<u8> = (0..2 * len).map(|_| BASES[rng.below(4) as usize]).collect();
    fastq(&mut r1, "unplaced/1", &noise[..len]);
    fastq(&mut r2, "unplaced/2", &noise[len..]);

    let (_, a) = &mut contigs[0];
    a[7_000..7_040].fill(b'N');
    a[3_000] = b'R';
    a[3_001] = b'Y';
    a[11_000..11_200].make_ascii_lowercase();
    let mut reference = Vec::new();
    for (name, seq) in &contigs {
        reference.extend_from_slice(format!(">{name} test contig\n").as_bytes());
        for line in seq.chunks(60) {
            reference.extend_from_slice(line);
            reference.push(b'\n');
        }
    }
    TestData { reference, r1, r2 }
}

/// The germline sample: a one-contig reference (`chrG`, 4 kb) and pairs of
/// 100 bp reads from its two haplotypes (see [`GERM_HET_SNV`] and the
/// rest), one base in 400 miscalled, the first [`GERM_DUPLICATES`] pairs
/// read twice.
pub fn germline_data() -> TestData {
    let mut rng = Rng(0x0006_E271_14E5_u64);
    let reference: Vec<u8> = (0..4_000).map(|_| BASES[rng.below(4) as usize]).collect();
    let other = |b: u8| BASES[(BASES.iter().position(|&c| c == b).unwrap_or(0) + 2) % 4];
    let mut hap_a = reference.clone();
    hap_a[GERM_HET_SNV] = other(reference[GERM_HET_SNV]);
    hap_a[GERM_HOM_SNV] = other(reference[GERM_HOM_SNV]);
    let mut hap_b = reference.clone();
    hap_b[GERM_HOM_SNV] = other(reference[GERM_HOM_SNV]);
    hap_b.drain(GERM_HET_DEL + 1..GERM_HET_DEL + 4);
    let (mut r1, mut r2) = (Vec::new(), Vec::new());
    let len = 100usize;
    let mut pairs = Vec::new();
    for i in 0..GERM_PAIRS {
        let hap = if i % 2 == 0 { &hap_a } else { &hap_b };
        let frag = 250 + rng.below(80) as usize;
        let start = rng.below((hap.len() - frag) as u64) as usize;
        let mut a: Vec<u8> = hap[start..start + len].to_vec();
        let mut b: Vec<u8> = hap[start + frag - len..start + frag]
            .iter()
            .rev()
            .map(|&c| complement(c))
            .collect();
        for read in [&mut a, &mut b] {
            for base in read.iter_mut() {
                if rng.below(400) == 0 {
                    let k = BASES.iter().position(|&c| c == *base).unwrap_or(0);
                    *base = BASES[(k + 1 + rng.below(3) as usize) % 4];
                }
            }
        }
        if i % 2 == 1 {
            std::mem::swap(&mut a, &mut b);
        }
        pairs.push((format!("g{i}"), a, b));
    }
    for i in 0..GERM_DUPLICATES {
        let (name, a, b) = pairs[i].clone();
        pairs.push((format!("{name}dup"), a, b));
    }
    for (name, a, b) in &pairs {
        fastq(&mut r1, &format!("{name}/1"), a);
        fastq(&mut r2, &format!("{name}/2"), b);
    }
    let mut fasta = b">chrG germline test contig\n".to_vec();
    for line in reference.chunks(60) {
        fasta.extend_from_slice(line);
        fasta.push(b'\n');
    }
    TestData {
        reference: fasta,
        r1,
        r2,
    }
}

fn fastq(out: &mut Vec<u8>, name: &str, seq: &[u8]) {
    out.extend_from_slice(format!("@{name}\n").as_bytes());
    out.extend_from_slice(seq);
    out.extend_from_slice(b"\n+\n");
    out.extend(
        seq.iter()
            .enumerate()
            .map(|(i, _)| if i % 37 == 36 { b'#' } else { b'I' }),
    );
    out.push(b'\n');
}

/// The index of the test reference, as `genomics/index` writes it.
pub fn test_index(reference: &[u8]) -> Vec<u8> {
    let mut input = gio::from_reader(
        Path::new("ref.fa"),
        Box::new(std::io::Cursor::new(reference.to_vec())),
    )
    .and_then(|mut i| fasta::parse(&mut i, &mut |_| {}))
    .and_then(|r| Index::build(r, Params::default(), &mut |_, _, _| {}));
    let mut out = Vec::new();
    if let Ok(idx) = &mut input {
        // Writing to memory cannot fail.
        let _ = idx.write_to(&mut out);
    }
    out
}

fn limits_toml(max: &Limits) -> String {
    format!(
        "[limits]\ntimeout_ms = {}\nmemory_mb = {}\noutput_mb = {}\n",
        max.timeout_ms,
        max.memory_bytes >> 20,
        max.output_bytes >> 20
    )
}

fn kernel(name: &str) -> Bytes {
    Bytes::from(format!("kernel = \"{name}\"\nabi = 1\n"))
}

/// The built-in packages, with the operator's maxima as their limits (a
/// genome takes longer than a sync call).
pub fn packages(max: &Limits) -> Vec<Files> {
    let data = test_data();
    let index = Bytes::from(test_index(&data.reference));
    let limits = limits_toml(max);

    let mut ix = Files::new();
    ix.insert(
        "ip.toml".into(),
        Bytes::from(format!(
            r#"name = "genomics/index"
version = "{VERSION}"
summary = "Index a reference genome (FASTA, plain or gzip, many contigs) for genomics/align"
description = "README.md"
tags = ["genomics", "index", "reference"]

[[implementation]]
device = "cpu"
artifact = "kernel.toml"

[[test]]
name = "two-contigs"
input = "tests/ref.fa"
expect = "tests/ref.ahx"

[pricing]
per_call = 0.05

{limits}"#
        )),
    );
    ix.insert(
        "README.md".into(),
        Bytes::from_static(INDEX_README.as_bytes()),
    );
    ix.insert("kernel.toml".into(), kernel("genomics/index"));
    ix.insert("tests/ref.fa".into(), Bytes::from(data.reference.clone()));
    ix.insert("tests/ref.ahx".into(), index.clone());

    let mut al = Files::new();
    al.insert(
        "ip.toml".into(),
        Bytes::from(format!(
            r#"name = "genomics/align"
version = "{VERSION}"
summary = "Align Illumina short reads (FASTQ, single or paired) to a reference: BAM or SAM"
description = "README.md"
tags = ["genomics", "alignment", "bam"]

[[implementation]]
device = "cpu"
artifact = "kernel.toml"

[[object]]
name = "index"
summary = "an index built by genomics/index"

[[object]]
name = "reads2"
required = false
summary = "the second reads of a pair (FASTQ, plain or gzip)"

[[test]]
name = "paired-end"
input = "tests/r1.fq"
expect = "tests/pairs.sam"
params = {{ format = "sam" }}
objects = {{ index = "tests/ref.ahx", reads2 = "tests/r2.fq" }}

[[test]]
name = "single-end"
input = "tests/r1.fq"
expect = "tests/single.sam"
params = {{ format = "sam" }}
objects = {{ index = "tests/ref.ahx" }}

[pricing]
per_call = 0.01

{limits}"#
        )),
    );
    al.insert(
        "README.md".into(),
        Bytes::from_static(ALIGN_README.as_bytes()),
    );
    al.insert("kernel.toml".into(), kernel("genomics/align"));
    al.insert("tests/r1.fq".into(), Bytes::from(data.r1));
    al.insert("tests/r2.fq".into(), Bytes::from(data.r2));
    al.insert("tests/ref.ahx".into(), index);
    al.insert(
        "tests/pairs.sam".into(),
        Bytes::from_static(ALIGN_PAIRS_SAM),
    );
    al.insert(
        "tests/single.sam".into(),
        Bytes::from_static(ALIGN_SINGLE_SAM),
    );
    let mut all = vec![ix, al];
    all.extend(flow_packages(&limits));
    all
}

/// One IP of the flow after alignment: its name, its manifest's own part
/// (summary to `[[object]]`s and `[[output]]`s), its test vector (input,
/// expected output, object inputs as an inline TOML table), its price per
/// call and its README.
struct FlowIp {
    name: &'static str,
    manifest: &'static str,
    test: (&'static str, &'static str, Option<&'static str>),
    per_call: &'static str,
    readme: &'static str,
}

/// The package of `ip`, with its test files.
fn flow_package(ip: &FlowIp, limits: &str, files: &[(&str, Bytes)]) -> Files {
    let FlowIp {
        name,
        manifest,
        test: (input, expect, objects),
        per_call,
        readme,
    } = ip;
    let objects = objects
        .map(|o| format!("objects = {o}\n"))
        .unwrap_or_default();
    let mut f = Files::new();
    f.insert(
        "ip.toml".into(),
        Bytes::from(format!(
            "name = \"{name}\"\nversion = \"{VERSION}\"\n{manifest}\n\
             [[implementation]]\ndevice = \"cpu\"\nartifact = \"kernel.toml\"\n\n\
             [[test]]\nname = \"germline-sample\"\ninput = \"{input}\"\nexpect = \"{expect}\"\n{objects}\n\
             [pricing]\nper_call = {per_call}\n\n{limits}"
        )),
    );
    f.insert("README.md".into(), Bytes::from_static(readme.as_bytes()));
    f.insert("kernel.toml".into(), kernel(name));
    for (path, bytes) in files {
        f.insert(path.to_string(), bytes.clone());
    }
    f
}

/// `genomics/sort`, `genomics/markdup`, `genomics/call` and
/// `genomics/germline`, verified on the germline sample.
fn flow_packages(limits: &str) -> Vec<Files> {
    let data = germline_data();
    let index = Bytes::from(test_index(&data.reference));
    let aligned = Bytes::from_static(GERM_ALIGNED_SAM);
    let sorted = Bytes::from_static(GERM_SORTED_BAM);
    let marked = Bytes::from_static(GERM_MARKED_BAM);
    let sort = flow_package(
        &FlowIp {
            name: "genomics/sort",
            manifest: r#"summary = "Sort alignments (SAM or BAM) by coordinate into an indexed BAM, marking duplicates on the way if asked"
description = "README.md"
tags = ["genomics", "bam", "sort"]

[[output]]
name = "bam"
summary = "the sorted BAM"

[[output]]
name = "bai"
summary = "its index (BAI; CSI for contigs over 512 Mb)"
"#,
            test: ("tests/aligned.sam", "tests/sorted.bam", None),
            per_call: "0.005",
            readme: SORT_README,
        },
        limits,
        &[
            ("tests/aligned.sam", aligned),
            ("tests/sorted.bam", sorted.clone()),
        ],
    );
    let markdup = flow_package(
        &FlowIp {
            name: "genomics/markdup",
            manifest: r#"summary = "Mark PCR and optical duplicates in a coordinate-sorted BAM, as samtools markdup does"
description = "README.md"
tags = ["genomics", "bam", "duplicates"]

[[output]]
name = "bam"
summary = "the BAM, duplicates flagged 0x400"

[[output]]
name = "bai"
summary = "its index"

[[output]]
name = "stats"
summary = "duplicate statistics, as samtools markdup -s reports them"
"#,
            test: ("tests/sorted.bam", "tests/marked.bam", None),
            per_call: "0.005",
            readme: MARKDUP_README,
        },
        limits,
        &[
            ("tests/sorted.bam", sorted),
            ("tests/marked.bam", marked.clone()),
        ],
    );
    let call = flow_package(
        &FlowIp {
            name: "genomics/call",
            manifest: r#"summary = "Call germline SNVs and indels (diploid) from a sorted BAM: bgzipped, indexed VCF or gVCF"
description = "README.md"
tags = ["genomics", "vcf", "variant-calling"]

[[object]]
name = "index"
summary = "the reference's index, built by genomics/index"

[[output]]
name = "vcf"
summary = "the calls, VCF 4.2, bgzipped"

[[output]]
name = "tbi"
summary = "its tabix index"
"#,
            test: (
                "tests/marked.bam",
                "tests/calls.vcf.gz",
                Some(r#"{ index = "tests/germ.ahx" }"#),
            ),
            per_call: "0.02",
            readme: CALL_README,
        },
        limits,
        &[
            ("tests/marked.bam", marked),
            ("tests/germ.ahx", index.clone()),
            ("tests/calls.vcf.gz", Bytes::from_static(GERM_CALLS_VCF)),
        ],
    );
    let germline = flow_package(
        &FlowIp {
            name: "genomics/germline",
            manifest: r#"summary = "The whole germline flow, FASTQ to VCF: align, sort, mark duplicates, call"
description = "README.md"
tags = ["genomics", "germline", "vcf", "bam"]

[[object]]
name = "index"
summary = "the reference's index, built by genomics/index"

[[object]]
name = "reads2"
required = false
summary = "the second reads of a pair (FASTQ, plain or gzip)"

[[output]]
name = "vcf"
summary = "the calls, VCF 4.2, bgzipped"

[[output]]
name = "tbi"
summary = "their tabix index"

[[output]]
name = "bam"
summary = "the alignments, sorted, duplicates marked"

[[output]]
name = "bai"
summary = "their index"

[[output]]
name = "qc"
summary = "QC summary: reads, mapped %, duplicates %, insert size, depth, Ts/Tv, het/hom"
"#,
            test: (
                "tests/r1.fq",
                "tests/flow.vcf.gz",
                Some(r#"{ index = "tests/germ.ahx", reads2 = "tests/r2.fq" }"#),
            ),
            per_call: "0.05",
            readme: GERMLINE_README,
        },
        limits,
        &[
            ("tests/r1.fq", Bytes::from(data.r1)),
            ("tests/r2.fq", Bytes::from(data.r2)),
            ("tests/germ.ahx", index),
            ("tests/flow.vcf.gz", Bytes::from_static(GERM_FLOW_VCF)),
        ],
    );
    vec![sort, markdup, call, germline]
}

const INDEX_README: &str = r#"# genomics/index

Builds the index `genomics/align` aligns against, from a reference genome.

- **Input**: the reference, FASTA, plain or gzip (bgzip too), one or many
  contigs. N and the IUPAC ambiguity codes are read as N; lower case is
  accepted.
- **Output**: the index object (the same file as `accelhub genomics index`
  writes, `.ahx`).
- **Parameters**: `k` (k-mer length, default 19) and `w` (minimizer window,
  default 10).
- **Progress**: reference bases read.

```
accelhub object put GRCh38.fa.gz --key grch38.fa.gz
accelhub job submit genomics/index -i grch38.fa.gz
```

Runs as native code on the `cpu` device class. The index of a human
chromosome X (156 Mb) takes about 3 s on two cores.
"#;

const ALIGN_README: &str = r#"# genomics/align

Aligns Illumina short reads (50-300 bp), single- or paired-end, to a
reference indexed by `genomics/index`; BWA-MEM class accuracy, several
times its speed.

- **Input**: reads, FASTQ, plain or gzip: R1 of a pair, or single-end reads.
- **Object inputs** (parameters naming your objects):
  - `index` (required): an index object from `genomics/index`. Agents keep
    indexes resident between jobs, keyed by content, so repeated jobs on
    one reference skip loading it.
  - `reads2`: R2 of the pair.
- **Parameters**: `format` (`"bam"`, the default, or `"sam"`),
  `read_group` (a whole `@RG\tID:…\tSM:…` line), `max_occ` (skip seeds
  with more occurrences; default 500).
- **Output**: BAM (or SAM), unsorted, with @HD, @SQ, @RG and @PG; FLAG,
  MAPQ on BWA-MEM's 0-60 scale, CIGAR with soft clips, mate fields, NM, MD,
  AS (the best local score, as BWA-MEM's), XS, MC (the mate's CIGAR, for
  `samtools markdup` and Picard) and RG tags; a supplementary record (flag
  0x800, SA tags) for the other part of a chimeric read; unmapped reads
  kept. Like BWA-MEM by default, no secondary records: XS gives the best
  alternative's score, and XA lists up to 5 alternative placements
  (`chr,±pos,CIGAR,NM;`) scoring at least 80% of the primary. Equally good
  placements are chosen at random by a hash of the read's name: the same
  in every run, with any thread count.
- **Progress**: reads aligned.

```
accelhub object put r1.fq.gz --key s1_r1.fq.gz
accelhub object put r2.fq.gz --key s1_r2.fq.gz
accelhub job submit genomics/align -i s1_r1.fq.gz \
    -p index=<the genomics/index job's output key> -p reads2=s1_r2.fq.gz \
    -p 'read_group=@RG\tID:s1\tSM:s1'
```

Malformed input fails the job with the file and record number; no output
object is kept.
"#;

const SORT_README: &str = r#"# genomics/sort

Sorts alignments by coordinate, within bounded memory, into a BAM with its
index: what `samtools sort` and `samtools index` do, several times faster.

- **Input**: alignments, SAM or BAM (e.g. the output of genomics/align).
- **Parameters**: `markdup` (also mark duplicates on the way, as
  genomics/markdup would, without a second pass; default false),
  `memory_mb` (records held before sorted runs spill to disk; default 768).
- **Outputs**: `bam` (the main output) and `bai` (its index; CSI when a
  contig is over 512 Mb).
- **Progress**: records read, then records written.

```
accelhub job submit genomics/sort -i aligned.bam -p markdup=true
accelhub job output JOB --name bam -o sample.bam
accelhub job output JOB --name bai -o sample.bam.bai
```

Malformed input fails the job naming the record; no output is kept.
"#;

const MARKDUP_README: &str = r#"# genomics/markdup

Flags duplicates (0x400) as `samtools markdup` does: pairs with the same
unclipped 5' ends and orientations, per library (`@RG LB`), keeping the
best by base-quality sum; unpaired reads against pairs and each other;
supplementary records follow their read.

- **Input**: a coordinate-sorted BAM (genomics/sort's output).
- **Parameters**: `remove` (drop duplicates instead of flagging them),
  `supplementary` (also flag the secondary, supplementary and unmapped
  records of duplicates).
- **Outputs**: `bam` (main), `bai`, `stats` (samtools markdup -s's
  report: reads examined, duplicates by kind, estimated library size).
- **Progress**: records read, then written.
"#;

const CALL_README: &str = r#"# genomics/call

A diploid germline caller for SNVs and indels: candidate sites from the
pileup (and from soft clips, for long insertions), haplotypes of nearby
candidates genotyped together with a pair-HMM over the reads, base and
mapping qualities weighed (reads of MAPQ 0 alone make no call).

- **Input**: a coordinate-sorted BAM (duplicates marked).
- **Object input** `index`: the reference's index from genomics/index (the
  reference is in it: upload and index it once; agents keep it resident).
- **Parameters**: `region` (`"chr:beg-end"`, or a list), `gvcf` (reference
  blocks for joint genotyping later), `min_qual` (default 10), `min_mapq`,
  `sample` (the VCF's sample name; default the read group's SM).
- **Outputs**: `vcf` (main: VCF 4.2, bgzipped, QUAL, FILTER,
  GT:GQ:DP:AD:PL) and `tbi` (its tabix index).
- **Progress**: the position reached on the contig being called.

The BAM's contigs must be the reference's (names and lengths); an unsorted
BAM, a region outside the reference or a truncated BAM fails the job
naming the file and record.
"#;

const GERMLINE_README: &str = r#"# genomics/germline

The whole germline flow in one job: align (genomics/align) → sort and mark
duplicates in one pass (genomics/sort, genomics/markdup) → call
(genomics/call). Records pass between the stages in memory, spilling
sorted runs to disk past the memory budget; no SAM text in between.

- **Input**: reads, FASTQ (plain or gzip): R1 of a pair, or single-end.
- **Object inputs**: `index` (the reference's index from genomics/index:
  upload and index a reference once, then run any number of samples
  against it; agents keep it resident by content hash) and `reads2` (R2).
- **Parameters**: `read_group` (a whole `@RG\tID:…\tSM:…` line), `region`,
  `gvcf`, `min_qual`, `min_mapq`, `memory_mb`.
- **Outputs**: `vcf` (main), `tbi`, `bam`, `bai`, `qc` (a QC summary:
  reads, mapped %, proper pairs %, duplicates %, insert size, bases
  called, mean depth, SNVs, indels, Ts/Tv, het/hom).
- **Progress** by stage: reads aligned, records sorted, position called.

```
accelhub object put GRCh38.fa.gz --key grch38.fa.gz
accelhub job submit genomics/index -i grch38.fa.gz          # once
accelhub job submit genomics/germline -i s1_R1.fq.gz \
    -p index=<the index job's output key> -p reads2=s1_R2.fq.gz \
    -p 'read_group=@RG\tID:s1\tSM:s1\tLB:lib1'
accelhub job output JOB --name vcf -o s1.vcf.gz
accelhub job output JOB --name bam -o s1.bam
```
"#;
