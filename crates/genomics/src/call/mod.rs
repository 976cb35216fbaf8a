//! The germline variant caller: a coordinate-sorted BAM and its reference
//! in, a bgzipped, tabix-indexed VCF 4.2 out (GT:GQ:DP:AD:PL).
//!
//! [`model`] holds the method, on one stretch of one contig, as pure
//! logic. This module is the shell around it: it checks the inputs
//! (reference against the BAM's header, sort order, regions), streams the
//! records once, cuts each contig into blocks of [`BLOCK`] bases with the
//! reads that reach them, calls the blocks on worker threads and writes
//! their sites in order. A block is called from its own reads only, so
//! the output does not depend on the number of threads. The VCF and its
//! index are written under `.partial` names and renamed when complete: an
//! error leaves no output behind.

pub mod joint;
pub mod model;

use crate::bai::{Builder, Kind};
use crate::bam::reader::Reader;
use crate::bam::record::{Record, FLAG_DUPLICATE, FLAG_QC_FAIL, FLAG_SECONDARY, FLAG_UNMAPPED};
use crate::bam::writer::SortedWriter;
use crate::{GenomicsError, Result};
pub use model::{Params, Read, Site};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

/// Bases of a contig called per block (one unit of work for a thread).
pub const BLOCK: i64 = 200_000;
/// Most reads kept starting at one position (a pileup deeper than this
/// is a collapsed repeat or an artefact; the rest are left out, which
/// bounds memory).
const MAX_STARTS_AT_ONE_POS: u32 = 500;

/// How to call.
#[derive(Debug, Clone)]
pub struct CallOptions {
    pub threads: usize,
    pub params: Params,
    /// `chr`, `chr:beg-end` (1-based, inclusive); empty: everything.
    pub regions: Vec<String>,
    /// A BED file of regions (0-based, end-exclusive), added to `regions`.
    pub bed: Option<PathBuf>,
    /// The sample's name in the VCF; default: the first `@RG SM`, else
    /// the BAM's file name.
    pub sample: Option<String>,
    /// BGZF compression level of the VCF.
    pub level: u32,
}

impl Default for CallOptions {
    fn default() -> Self {
        CallOptions {
            threads: 1,
            params: Params::default(),
            regions: Vec::new(),
            bed: None,
            sample: None,
            level: 6,
        }
    }
}

/// What a call run did: the figures of a QC summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallStats {
    /// Records read from the BAM.
    pub records: u64,
    /// Reads used (mapped, primary or supplementary, not duplicates).
    pub reads_used: u64,
    /// Bases of the contigs (or regions) called.
    pub bases_called: u64,
    /// Aligned read bases inside them (for the mean depth).
    pub aligned_bases: u64,
    pub snvs: u64,
    pub indels: u64,
    pub het: u64,
    pub hom_alt: u64,
    pub transitions: u64,
    pub transversions: u64,
}

impl CallStats {
    pub fn mean_depth(&self) -> f64 {
        self.aligned_bases as f64 / self.bases_called.max(1) as f64
    }

    pub fn ts_tv(&self) -> f64 {
        self.transitions as f64 / self.transversions.max(1) as f64
    }

    pub fn het_hom(&self) -> f64 {
        self.het as f64 / self.hom_alt.max(1) as f64
    }
}

/// A region of one contig: its index in the BAM's header, 0-based,
/// end-exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    pub contig: usize,
    pub beg: i64,
    pub end: i64,
}

/// Parse `chr`, `chr:beg` or `chr:beg-end` (1-based, inclusive; commas
/// allowed) against the contigs `refs`.
pub fn parse_region(s: &str, refs: &[(String, u64)]) -> Result<Span> {
    let bad = |why: String| GenomicsError::Invalid(format!("region '{s}': {why}"));
    let find = |name: &str| refs.iter().position(|(n, _)| n == name);
    // A contig whose own name holds a colon is taken whole.
    let (name, range) = match find(s) {
        Some(_) => (s, None),
        None => match s.rsplit_once(':') {
            Some((n, r)) => (n, Some(r)),
            None => (s, None),
        },
    };
    let contig = find(name).ok_or_else(|| {
        bad(format!(
            "the reference has no contig '{name}' (it has {})",
            refs.iter()
                .take(5)
                .map(|r| r.0.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let len = refs[contig].1 as i64;
    let (beg, end) = match range {
        None => (0, len),
        Some(r) => {
            let num = |t: &str| -> Result<i64> {
                t.replace(',', "")
                    .parse::<i64>()
                    .map_err(|_| bad(format!("'{t}' is not a position")))
            };
            let (b, e) = match r.split_once('-') {
                Some((b, e)) => (num(b)?, if e.is_empty() { len } else { num(e)? }),
                None => (num(r)?, len),
            };
            if b < 1 || e < b {
                return Err(bad(
                    "positions are 1-based and the end is not before the start".into(),
                ));
            }
            (b - 1, e)
        }
    };
    if beg >= len || end > len {
        return Err(bad(format!(
            "it lies outside {name}, which is {len} bases long"
        )));
    }
    Ok(Span { contig, beg, end })
}

/// Regions from a BED file (tab- or space-separated; `#`, `track` and
/// `browser` lines skipped).
pub fn read_bed(path: &Path, refs: &[(String, u64)]) -> Result<Vec<Span>> {
    let text = std::fs::read_to_string(path).map_err(|source| GenomicsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with("track") || l.starts_with("browser")
        {
            continue;
        }
        let err = |message: String| GenomicsError::Format {
            path: path.to_path_buf(),
            record: i as u64 + 1,
            message,
        };
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 3 {
            return Err(err("a BED line needs a contig, a start and an end".into()));
        }
        let contig = refs
            .iter()
            .position(|(n, _)| n == f[0])
            .ok_or_else(|| err(format!("the reference has no contig '{}'", f[0])))?;
        let (Ok(beg), Ok(end)) = (f[1].parse::<i64>(), f[2].parse::<i64>()) else {
            return Err(err(format!("'{}' '{}' are not positions", f[1], f[2])));
        };
        let len = refs[contig].1 as i64;
        if beg < 0 || end < beg || end > len {
            return Err(err(format!(
                "{}:{beg}-{end} lies outside {}, which is {len} bases long",
                f[0], f[0]
            )));
        }
        if end > beg {
            out.push(Span { contig, beg, end });
        }
    }
    Ok(out)
}

/// Sort and merge overlapping spans.
fn merge(mut spans: Vec<Span>) -> Vec<Span> {
    spans.sort();
    let mut out: Vec<Span> = Vec::new();
    for s in spans {
        match out.last_mut() {
            Some(l) if l.contig == s.contig && s.beg <= l.end => l.end = l.end.max(s.end),
            _ => out.push(s),
        }
    }
    out
}

/// Check the BAM's contigs against the reference's; returns, for each
/// BAM contig, its index among the reference's.
fn match_contigs(
    bam: &Path,
    refs: &[(String, u64)],
    fasta: &Path,
    reference: &crate::fasta::Reference,
) -> Result<Vec<usize>> {
    refs.iter()
        .map(|(name, len)| {
            let i = reference
                .contigs
                .iter()
                .position(|c| &c.name == name)
                .ok_or_else(|| {
                    GenomicsError::Invalid(format!(
                        "{}: the BAM's contig '{name}' is not in the reference {}: the reads were aligned to another reference",
                        bam.display(),
                        fasta.display()
                    ))
                })?;
            let rl = reference.contigs[i].len;
            if rl != *len {
                return Err(GenomicsError::Invalid(format!(
                    "{}: contig '{name}' is {len} bases in the BAM's header but {rl} in the reference {}: the reads were aligned to another reference",
                    bam.display(),
                    fasta.display()
                )));
            }
            Ok(i)
        })
        .collect()
}

/// Decode a record into what the caller needs; None if its CIGAR does
/// not describe its bases (no sequence stored, or lengths that disagree),
/// which leaves nothing to call from.
fn decode(rec: &Record) -> Option<Read> {
    const CODE: [u8; 16] = [4, 0, 1, 4, 2, 4, 4, 4, 3, 4, 4, 4, 4, 4, 4, 4];
    let n = rec.len();
    let query: u64 = rec
        .cigar()
        .filter(|&(_, op)| matches!(op, 0 | 1 | 4 | 7 | 8))
        .map(|(l, _)| l as u64)
        .sum();
    if n == 0 || query != n as u64 || rec.qual().len() != n {
        return None;
    }
    let packed = rec.packed_seq();
    let seq = (0..n)
        .map(|i| {
            let b = packed[i / 2];
            CODE[(if i % 2 == 0 { b >> 4 } else { b & 15 }) as usize]
        })
        .collect();
    Some(Read {
        pos: rec.pos() as i64,
        end: rec.end(),
        cigar: rec.cigar().collect(),
        seq,
        qual: rec
            .qual()
            .iter()
            .map(|&q| if q == 0xff { 30 } else { q })
            .collect(),
        mapq: rec.mapq(),
    })
}

/// One unit of work: call `ranges` of `contig` from `reads`.
struct Job {
    seq: u64,
    contig: usize,
    ranges: Vec<(i64, i64)>,
    reads: Vec<Read>,
}

/// A block ready to call: (contig, ranges to call, reads).
type Ready = (usize, Vec<(i64, i64)>, Vec<Read>);

/// Cuts a contig's reads into blocks.
struct Blocks {
    contig: usize,
    len: i64,
    /// The next block starts here.
    beg: i64,
    pending: VecDeque<Read>,
    /// Spans of this contig to call.
    spans: Vec<(i64, i64)>,
    last_start: (i64, u32),
    /// The first span a read from here on may still reach.
    next_span: usize,
    /// Every block of the spans is called, reads or not (a gVCF covers
    /// them whole, with blocks of depth 0 where there are no reads).
    every: bool,
}

impl Blocks {
    fn new(contig: usize, len: i64, spans: Vec<(i64, i64)>, every: bool) -> Self {
        let beg = spans.first().map_or(len, |s| s.0 / BLOCK * BLOCK);
        Blocks {
            contig,
            len,
            beg,
            pending: VecDeque::new(),
            spans,
            last_start: (-1, 0),
            next_span: 0,
            every,
        }
    }

    /// Whether read `r` reaches a span, and if so how many of its aligned
    /// bases lie inside the spans. Reads come in position order, so the
    /// spans behind them are passed once, not searched again per read.
    fn reaches(&mut self, r: &Read) -> Option<u64> {
        let reach = model::REACH;
        while self.next_span < self.spans.len() && self.spans[self.next_span].1 + reach <= r.pos {
            self.next_span += 1;
        }
        let mut wanted = false;
        let mut inside = 0;
        for &(b, e) in self.spans[self.next_span..]
            .iter()
            .take_while(|s| s.0 - reach < r.end)
        {
            wanted |= r.end > b - reach && r.pos < e + reach;
            inside += (r.end.min(e) - r.pos.max(b)).max(0) as u64;
        }
        wanted.then_some(inside)
    }

    /// Take a read that [`Self::reaches`] a span; returns the blocks it
    /// completes.
    fn push(&mut self, read: Read, out: &mut Vec<Ready>) {
        if self.last_start.0 == read.pos {
            self.last_start.1 += 1;
            if self.last_start.1 > MAX_STARTS_AT_ONE_POS {
                return;
            }
        } else {
            self.last_start = (read.pos, 1);
        }
        while read.pos >= self.beg + BLOCK + model::REACH {
            self.emit(out);
            if !self.every && self.pending.is_empty() && read.pos - model::REACH > self.beg {
                self.beg = self.beg.max((read.pos - model::REACH) / BLOCK * BLOCK);
            }
        }
        self.pending.push_back(read);
    }

    fn emit(&mut self, out: &mut Vec<Ready>) {
        let (bs, be) = (self.beg, (self.beg + BLOCK).min(self.len));
        let first = self.spans.partition_point(|s| s.1 <= bs);
        let ranges: Vec<(i64, i64)> = self.spans[first..]
            .iter()
            .take_while(|s| s.0 < be)
            .filter_map(|&(b, e)| {
                let (b, e) = (b.max(bs), e.min(be));
                (b < e).then_some((b, e))
            })
            .collect();
        let mut block = Vec::new();
        let mut keep = VecDeque::new();
        for r in self.pending.drain(..) {
            if r.pos >= be + model::REACH {
                keep.push_back(r);
            } else if r.end <= be - model::REACH {
                block.push(r);
            } else {
                block.push(r.clone());
                keep.push_back(r);
            }
        }
        self.pending = keep;
        if !ranges.is_empty() && (self.every || !block.is_empty()) {
            out.push((self.contig, ranges, block));
        }
        self.beg = be;
    }

    /// The contig's end: the remaining blocks.
    fn finish(&mut self, out: &mut Vec<Ready>) {
        let last = self.spans.last().map_or(0, |s| s.1);
        while self.beg < last && (self.every || !self.pending.is_empty()) {
            self.emit(out);
        }
    }
}

/// The lines every VCF written here starts with: the format, PASS, the
/// tool and its command line, the contigs.
pub(crate) fn vcf_preamble(tool: &str, command_line: &str, refs: &[(String, u64)]) -> String {
    let mut h = String::from("##fileformat=VCFv4.2\n");
    h.push_str("##FILTER=<ID=PASS,Description=\"All filters passed\">\n");
    h.push_str(&format!(
        "##source=accelhub genomics {tool} {}\n##accelhubCommand={}\n",
        env!("CARGO_PKG_VERSION"),
        command_line.replace('\n', " "),
    ));
    for (n, l) in refs {
        h.push_str(&format!("##contig=<ID={n},length={l}>\n"));
    }
    h
}

/// FORMAT lines of GT, GQ, AD and PL (what DP counts differs by file).
pub(crate) const GENOTYPE_FORMATS: &str = concat!(
    "##FORMAT=<ID=GT,Number=1,Type=String,Description=\"Genotype\">\n",
    "##FORMAT=<ID=GQ,Number=1,Type=Integer,Description=\"Genotype quality (Phred)\">\n",
    "##FORMAT=<ID=AD,Number=R,Type=Integer,Description=\"Reads that favour each allele\">\n",
    "##FORMAT=<ID=PL,Number=G,Type=Integer,Description=\"Phred-scaled genotype likelihoods\">\n",
);

/// The VCF header.
fn vcf_header(
    refs: &[(String, u64)],
    fasta: &Path,
    sample: &str,
    command_line: &str,
    gvcf: bool,
) -> String {
    let mut h = vcf_preamble("call", command_line, refs);
    h.push_str(&format!("##reference=file://{}\n", fasta.display()));
    h.push_str(concat!(
        "##FILTER=<ID=LowQual,Description=\"QUAL below 20\">\n",
        "##INFO=<ID=DP,Number=1,Type=Integer,Description=\"Reads scored at the site\">\n",
        "##FORMAT=<ID=DP,Number=1,Type=Integer,Description=\"Reads scored at the site\">\n",
    ));
    h.push_str(GENOTYPE_FORMATS);
    if gvcf {
        h.push_str(concat!(
            "##ALT=<ID=NON_REF,Description=\"Any allele other than those listed\">\n",
            "##INFO=<ID=END,Number=1,Type=Integer,Description=\"Last position of a reference block\">\n",
            "##FORMAT=<ID=MIN_DP,Number=1,Type=Integer,Description=\"Least depth in a reference block\">\n",
        ));
    }
    h.push_str(&format!(
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t{sample}\n"
    ));
    h
}

/// One VCF line.
pub fn vcf_line(contig: &str, s: &Site, out: &mut Vec<u8>) {
    use crate::seq::LETTER;
    use std::io::Write;
    out.clear();
    let letters = |a: &[u8]| -> String {
        a.iter()
            .map(|&c| LETTER[c.min(4) as usize] as char)
            .collect()
    };
    let n = s.alleles.len();
    let alts: Vec<String> = s.alleles[1..]
        .iter()
        .enumerate()
        .map(|(i, a)| {
            if s.non_ref && i + 2 == n {
                "<NON_REF>".to_string()
            } else {
                letters(a)
            }
        })
        .collect();
    let join = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    let _ = writeln!(
        out,
        "{contig}\t{}\t.\t{}\t{}\t{:.2}\t{}\tDP={}\tGT:GQ:DP:AD:PL\t{}/{}:{}:{}:{}:{}",
        s.pos + 1,
        letters(&s.alleles[0]),
        alts.join(","),
        s.qual,
        if s.qual >= 20.0 { "PASS" } else { "LowQual" },
        s.dp,
        s.gt.0,
        s.gt.1,
        s.gq,
        s.dp,
        join(&s.ad),
        join(&s.pl),
    );
}

/// One gVCF reference block line.
pub fn block_line(contig: &str, b: &model::Block, r: &[u8], out: &mut Vec<u8>) {
    use std::io::Write;
    out.clear();
    let base = r
        .get(b.pos as usize)
        .map_or('N', |&c| crate::seq::LETTER[c.min(4) as usize] as char);
    let _ = writeln!(
        out,
        "{contig}\t{}\t.\t{base}\t<NON_REF>\t.\t.\tEND={}\tGT:DP:GQ:MIN_DP:PL\t0/0:{}:{}:{}:{},{},{}",
        b.pos + 1,
        b.end,
        b.min_dp,
        b.gq,
        b.min_dp,
        b.pl[0],
        b.pl[1],
        b.pl[2],
    );
}

fn is_transition(a: u8, b: u8) -> bool {
    // A<->G (0, 2) and C<->T (1, 3).
    a ^ b == 2
}

/// Call variants in `bam` against `fasta`, writing `out` (bgzipped VCF)
/// and its index (`.tbi`, or `.csi` for contigs over 512 Mb).
/// `progress` hears (contig, position) as blocks are read.
pub fn call_file(
    fasta: &Path,
    bam: &Path,
    out: &Path,
    opts: &CallOptions,
    command_line: &str,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<CallStats> {
    let reader = Reader::open(bam, opts.threads)?;
    let reference = crate::fasta::read_reference(fasta, &mut |_| {})?;
    // Build the reference's .fai, as samtools and bcftools do when it is
    // missing, for the tools that read the VCF with it. The caller reads
    // the reference whole and needs none: where it cannot be written (a
    // read-only directory, a gzip file), calling goes on.
    if !crate::io::with_suffix(fasta, ".fai").exists() {
        let _ = crate::fasta::write_fai(fasta);
    }
    call_with(&reference, fasta, reader, out, opts, command_line, progress)
}

/// [`call_file`] with the reference already in memory (`fasta` names it
/// in the header and in errors) and the BAM open.
pub fn call_with(
    reference: &crate::fasta::Reference,
    fasta: &Path,
    mut reader: Reader,
    out: &Path,
    opts: &CallOptions,
    command_line: &str,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<CallStats> {
    let bam = reader.path().to_path_buf();
    let bam = bam.as_path();
    let header = reader.header.clone();
    if let Some(order) = header.sort_order() {
        if order != "coordinate" {
            return Err(GenomicsError::Format {
                path: bam.to_path_buf(),
                record: 0,
                message: format!(
                    "the header says the records are sorted by {order}, not by coordinate: sort them with `accelhub genomics sort`"
                ),
            });
        }
    }
    let to_ref = match_contigs(bam, &header.refs, fasta, reference)?;
    let mut spans = Vec::new();
    for r in &opts.regions {
        spans.push(parse_region(r, &header.refs)?);
    }
    if let Some(bed) = &opts.bed {
        spans.extend(read_bed(bed, &header.refs)?);
    }
    if opts.regions.is_empty() && opts.bed.is_none() {
        spans.extend(header.refs.iter().enumerate().map(|(i, (_, l))| Span {
            contig: i,
            beg: 0,
            end: *l as i64,
        }));
    }
    let spans = merge(spans);
    let sample = opts.sample.clone().unwrap_or_else(|| {
        header.sample().unwrap_or_else(|| {
            bam.file_stem()
                .map(|s| s.to_string_lossy().trim_end_matches(".bam").to_string())
                .unwrap_or_else(|| "sample".into())
        })
    });
    let head = vcf_header(&header.refs, fasta, &sample, command_line, opts.params.gvcf);
    let kind = Kind::for_lengths(header.refs.iter().map(|r| r.1));
    let names: Vec<String> = header.refs.iter().map(|r| r.0.clone()).collect();
    let mut writer = SortedWriter::create_with(
        out,
        head.as_bytes(),
        Builder::for_vcf(kind, &names),
        opts.level,
        1,
    )?;
    let mut stats = CallStats {
        bases_called: spans.iter().map(|s| (s.end - s.beg) as u64).sum(),
        ..CallStats::default()
    };
    let result = run(
        &mut reader,
        reference,
        &to_ref,
        &spans,
        opts,
        &mut writer,
        &mut stats,
        progress,
    );
    writer.complete(result)?;
    Ok(stats)
}

#[allow(clippy::too_many_arguments)]
fn run(
    reader: &mut Reader,
    reference: &crate::fasta::Reference,
    to_ref: &[usize],
    spans: &[Span],
    opts: &CallOptions,
    writer: &mut SortedWriter,
    stats: &mut CallStats,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<()> {
    let refs = reader.header.refs.clone();
    let path = reader.path().to_path_buf();
    let threads = opts.threads.max(1);
    let (job_tx, job_rx) = mpsc::sync_channel::<Job>(threads * 2);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (res_tx, res_rx) = mpsc::channel::<(u64, usize, model::Stretch)>();
    let contig_seq = |c: usize| -> &[u8] {
        let rc = &reference.contigs[to_ref[c]];
        &reference.seq[rc.offset as usize..(rc.offset + rc.len) as usize]
    };
    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..threads {
            let rx = Arc::clone(&job_rx);
            let tx = res_tx.clone();
            let params = opts.params.clone();
            let contig_seq = &contig_seq;
            scope.spawn(move || loop {
                let job = {
                    let Ok(guard) = rx.lock() else { return };
                    match guard.recv() {
                        Ok(j) => j,
                        Err(_) => return,
                    }
                };
                let r = contig_seq(job.contig);
                let mut done = model::Stretch::default();
                for &(b, e) in &job.ranges {
                    let s = model::call_stretch(r, &job.reads, b, e, &params);
                    done.sites.extend(s.sites);
                    done.blocks.extend(s.blocks);
                }
                if tx.send((job.seq, job.contig, done)).is_err() {
                    return;
                }
            });
        }
        drop(res_tx);
        let mut sent = 0u64;
        let mut written = 0u64;
        let mut ready: BTreeMap<u64, (usize, model::Stretch)> = BTreeMap::new();
        let mut line = Vec::new();
        // Where the last record written ends, per contig: a block that
        // overlaps it (a site reaching into the next stretch) is cut.
        let mut written_to = (usize::MAX, 0i64);
        let mut write_ready = |ready: &mut BTreeMap<u64, (usize, model::Stretch)>,
                               written: &mut u64,
                               stats: &mut CallStats|
         -> Result<()> {
            while let Some((contig, done)) = ready.remove(written) {
                let r = contig_seq(contig);
                if written_to.0 != contig {
                    written_to = (contig, 0);
                }
                let mut blocks = done.blocks.into_iter().peekable();
                let mut sites = done.sites.into_iter().peekable();
                loop {
                    let site_first = match (sites.peek(), blocks.peek()) {
                        (Some(s), Some(b)) => s.pos <= b.pos,
                        (Some(_), None) => true,
                        (None, Some(_)) => false,
                        (None, None) => break,
                    };
                    if site_first {
                        let Some(s) = sites.next() else { break };
                        vcf_line(&refs[contig].0, &s, &mut line);
                        let end = s.pos + s.alleles[0].len() as i64;
                        writer.write_indexed(contig as i32, s.pos, end, &[&line])?;
                        written_to.1 = written_to.1.max(end);
                        count(&s, stats);
                    } else {
                        let Some(mut b) = blocks.next() else { break };
                        b.pos = b.pos.max(written_to.1);
                        if b.pos >= b.end {
                            continue;
                        }
                        block_line(&refs[contig].0, &b, r, &mut line);
                        writer.write_indexed(contig as i32, b.pos, b.end, &[&line])?;
                        written_to.1 = written_to.1.max(b.end);
                    }
                }
                *written += 1;
            }
            Ok(())
        };
        let send = |blocks: &mut Vec<Ready>, sent: &mut u64| -> Result<()> {
            for (contig, ranges, reads) in blocks.drain(..) {
                let job = Job {
                    seq: *sent,
                    contig,
                    ranges,
                    reads,
                };
                *sent += 1;
                if job_tx.send(job).is_err() {
                    return Err(GenomicsError::Invalid("a calling thread stopped".into()));
                }
            }
            Ok(())
        };
        let mut blocks_out = Vec::new();
        let mut current: Option<Blocks> = None;
        let gvcf = opts.params.gvcf;
        let mut next_contig = 0usize;
        let blocks_of = |c: usize| {
            let mine: Vec<(i64, i64)> = spans
                .iter()
                .filter(|s| s.contig == c)
                .map(|s| (s.beg, s.end))
                .collect();
            Blocks::new(c, refs[c].1 as i64, mine, gvcf)
        };
        let mut buf = Vec::new();
        let mut last = (-1i32, -1i64);
        let mut last_report = 0i64;
        let result = (|| -> Result<()> {
            while reader.next_into(&mut buf)? {
                let n = reader.records;
                let rec = Record::new(&buf).map_err(|message| GenomicsError::Format {
                    path: path.clone(),
                    record: n,
                    message,
                })?;
                stats.records += 1;
                let (rid, pos) = (rec.ref_id(), rec.pos() as i64);
                if rid < 0 {
                    break;
                }
                if (rid, pos) < last {
                    let name = |i: i32| refs.get(i as usize).map_or("?", |r| r.0.as_str());
                    return Err(GenomicsError::Format {
                        path: path.clone(),
                        record: n,
                        message: format!(
                            "'{}' at {}:{} comes after a record at {}:{}: the BAM is not sorted by coordinate (sort it with `accelhub genomics sort`)",
                            String::from_utf8_lossy(rec.name()),
                            name(rid),
                            pos + 1,
                            name(last.0),
                            last.1 + 1
                        ),
                    });
                }
                last = (rid, pos);
                if rec.flag() & (FLAG_UNMAPPED | FLAG_SECONDARY | FLAG_QC_FAIL | FLAG_DUPLICATE)
                    != 0
                {
                    continue;
                }
                let contig = rid as usize;
                let new_contig = current.as_ref().map(|b| b.contig) != Some(contig);
                if new_contig {
                    if let Some(mut b) = current.take() {
                        b.finish(&mut blocks_out);
                    }
                    // A gVCF covers the contigs no read is on, too.
                    if gvcf {
                        for c in next_contig..contig {
                            blocks_of(c).finish(&mut blocks_out);
                        }
                    }
                    next_contig = contig + 1;
                    current = Some(blocks_of(contig));
                }
                if new_contig || pos - last_report >= 1_000_000 || pos < last_report {
                    last_report = pos;
                    progress(&refs[contig].0, pos as u64);
                }
                let Some(blocks) = current.as_mut() else {
                    continue;
                };
                let Some(read) = decode(&rec) else { continue };
                let Some(inside) = blocks.reaches(&read) else {
                    continue;
                };
                stats.reads_used += 1;
                stats.aligned_bases += inside;
                blocks.push(read, &mut blocks_out);
                if !blocks_out.is_empty() {
                    send(&mut blocks_out, &mut sent)?;
                    while let Ok((seq, c, sites)) = res_rx.try_recv() {
                        ready.insert(seq, (c, sites));
                    }
                    write_ready(&mut ready, &mut written, stats)?;
                }
            }
            if let Some(mut b) = current.take() {
                b.finish(&mut blocks_out);
            }
            if gvcf {
                for c in next_contig..refs.len() {
                    blocks_of(c).finish(&mut blocks_out);
                }
            }
            send(&mut blocks_out, &mut sent)
        })();
        drop(job_tx);
        for (seq, c, sites) in res_rx.iter() {
            ready.insert(seq, (c, sites));
            if result.is_ok() {
                write_ready(&mut ready, &mut written, stats)?;
            }
        }
        result?;
        write_ready(&mut ready, &mut written, stats)?;
        if written != sent {
            return Err(GenomicsError::Invalid("a calling thread stopped".into()));
        }
        Ok(())
    })
}

fn count(s: &Site, stats: &mut CallStats) {
    let alts = [s.gt.0, s.gt.1];
    for (i, a) in s.alleles.iter().enumerate().skip(1) {
        if !alts.contains(&i) {
            continue;
        }
        if a.len() == 1 && s.alleles[0].len() == 1 {
            stats.snvs += 1;
            if is_transition(a[0], s.alleles[0][0]) {
                stats.transitions += 1;
            } else {
                stats.transversions += 1;
            }
        } else {
            stats.indels += 1;
        }
    }
    if s.gt.0 == s.gt.1 {
        stats.hom_alt += 1;
    } else {
        stats.het += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs() -> Vec<(String, u64)> {
        vec![("chr1".into(), 1000), ("HLA:A*01".into(), 50)]
    }

    #[test]
    fn regions_parse_and_are_checked() {
        let r = refs();
        assert_eq!(
            parse_region("chr1:11-20", &r).unwrap(),
            Span {
                contig: 0,
                beg: 10,
                end: 20
            }
        );
        assert_eq!(parse_region("chr1", &r).unwrap().end, 1000);
        assert_eq!(parse_region("chr1:1,000", &r).unwrap().beg, 999);
        assert_eq!(parse_region("HLA:A*01", &r).unwrap().contig, 1);
        for bad in [
            "chr2:1-10",
            "chr1:0-10",
            "chr1:20-10",
            "chr1:900-1001",
            "chr1:x-3",
        ] {
            let e = parse_region(bad, &r).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
        assert!(parse_region("chr1:900-1001", &r)
            .unwrap_err()
            .to_string()
            .contains("1000 bases long"));
    }

    #[test]
    fn overlapping_regions_merge() {
        let s = |c, b, e| Span {
            contig: c,
            beg: b,
            end: e,
        };
        assert_eq!(
            merge(vec![s(0, 50, 60), s(0, 10, 20), s(0, 15, 30), s(1, 0, 5)]),
            vec![s(0, 10, 30), s(0, 50, 60), s(1, 0, 5)]
        );
    }
}
