//! The built-in IPs this device class offers, as packages the platform
//! publishes at start-up (as the operator) and verifies like any other:
//! `genomics/index` and `genomics/align`.
//!
//! Their test vectors are generated here, deterministically: a small
//! two-contig reference (with an N run, IUPAC codes and soft-masked lower
//! case), read pairs simulated from it with mismatches, and a pair that
//! matches nowhere. The expected alignments are committed files in
//! `vectors/`, so a change in the aligner's output shows up as a failed
//! verification (and in this crate's tests) until the IP's version is
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
pub const VERSION: &str = "1.1.0";

/// Expected alignments of the test vectors (see the module docs).
pub const ALIGN_PAIRS_SAM: &[u8] = include_bytes!("../vectors/align-pairs.sam");
pub const ALIGN_SINGLE_SAM: &[u8] = include_bytes!("../vectors/align-single.sam");

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
    vec![ix, al]
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
