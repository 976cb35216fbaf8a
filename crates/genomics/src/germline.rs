//! The whole germline flow in one process: align → sort (marking
//! duplicates on the way) → call. Alignments pass to the sorter in memory
//! (spilling sorted runs to disk past its budget), never as SAM text; the
//! sorted BAM is then read once by the caller. `accelhub genomics
//! germline` and the built-in IP `genomics/germline` both run this.

use crate::align::{AlignOptions, AlignStats, Aligner, Format};
use crate::call::{CallOptions, CallStats};
use crate::fastq::{FastqReader, PairReader};
use crate::index::Index;
use crate::markdup::{MarkdupOptions, MarkdupStats};
use crate::sort::{SortOptions, StreamSink};
use crate::Result;
use std::path::Path;

/// Where the flow is, for progress: the stage and its count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage<'a> {
    /// Reads aligned so far.
    Aligned(u64),
    /// Records sorted and written so far.
    Sorted(u64),
    /// Calling on this contig, at this position.
    Calling(&'a str, u64),
}

/// What the flow did, stage by stage.
#[derive(Debug, Clone)]
pub struct Report {
    pub align: AlignStats,
    /// The aligner's seed occurrence cutoff.
    pub max_occ: usize,
    pub markdup: Option<MarkdupStats>,
    pub call: CallStats,
}

/// The flow's options. `align.format` is ignored (the BAM is the flow's).
#[derive(Debug, Clone)]
pub struct Options {
    pub align: AlignOptions,
    pub sort: SortOptions,
    pub call: CallOptions,
}

/// Align `reads` (R1, with its mates from R2 if given) to `idx`, write the sorted,
/// duplicate-marked BAM to `bam` (its index beside it) and the calls to
/// `vcf` (bgzipped, its .tbi beside it). `reference` names the reference
/// in messages and the VCF header.
pub fn run(
    idx: &Index,
    reference: &Path,
    reads: (FastqReader, Option<FastqReader>),
    bam: &Path,
    vcf: &Path,
    opts: &Options,
    progress: &mut dyn FnMut(Stage),
) -> Result<Report> {
    let threads = opts.sort.threads.max(1);
    let aligner = Aligner::new(
        idx,
        AlignOptions {
            format: Format::Bam,
            ..opts.align.clone()
        },
    );
    let md = MarkdupOptions {
        threads,
        level: opts.sort.level,
        remove: false,
        supplementary: false,
    };
    let mut sink = StreamSink::new(&opts.sort, Some(&md));
    let mut aligned = |n| progress(Stage::Aligned(n));
    let (r1, r2) = reads;
    let align = match r2 {
        Some(r2) => aligner.align_pairs(PairReader::new(r1, r2), &mut sink, &mut aligned)?,
        None => aligner.align_single(r1, &mut sink, &mut aligned)?,
    };
    progress(Stage::Sorted(0));
    let sorted = sink.finish(bam, &mut |n| progress(Stage::Sorted(n)))?;
    progress(Stage::Sorted(sorted.records));
    let reader = crate::bam::reader::Reader::open(bam, threads)?;
    let call = crate::call::call_with(
        &idx.reference,
        reference,
        reader,
        vcf,
        &opts.call,
        &opts.align.command_line,
        &mut |contig, pos| progress(Stage::Calling(contig, pos)),
    )?;
    Ok(Report {
        align,
        max_occ: aligner.max_occ(),
        markdup: sorted.markdup,
        call,
    })
}

impl Report {
    /// The QC summary, as `key<TAB>value` lines: reads, mapped %, proper
    /// pairs %, duplicates %, insert size, bases called and their mean
    /// depth, SNVs, indels, Ts/Tv, het/hom.
    pub fn qc(&self) -> String {
        let pct = |a: u64, b: u64| 100.0 * a as f64 / b.max(1) as f64;
        let (align, call) = (&self.align, &self.call);
        let mut out = String::new();
        let mut row = |k: &str, v: String| out.push_str(&format!("{k}\t{v}\n"));
        row("reads", align.reads.to_string());
        row(
            "mapped_pct",
            format!("{:.2}", pct(align.mapped, align.reads)),
        );
        row(
            "proper_pairs_pct",
            format!("{:.2}", pct(align.proper_pairs, align.reads)),
        );
        if let Some(d) = &self.markdup {
            row("duplicates_pct", format!("{:.2}", d.duplicate_pct()));
        }
        if let Some(m) = align.insert {
            row("insert_mean", format!("{:.1}", m.mean));
            row("insert_sd", format!("{:.1}", m.sd));
        }
        row("called_bases", call.bases_called.to_string());
        row("mean_depth", format!("{:.2}", call.mean_depth()));
        row("snvs", call.snvs.to_string());
        row("indels", call.indels.to_string());
        row("ts_tv", format!("{:.3}", call.ts_tv()));
        row("het_hom", format!("{:.3}", call.het_hom()));
        out
    }
}
