//! `accelhub genomics`: build a reference index and align reads, locally.

use accelhub_genomics::align::{AlignOptions, Aligner, Format};
use accelhub_genomics::fasta::read_reference;
use accelhub_genomics::fastq::{FastqReader, PairReader};
use accelhub_genomics::index::{Index, Params};
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum GenomicsCmd {
    /// Build the index of a reference (FASTA, plain or gzip, many contigs).
    Index {
        reference: PathBuf,
        /// Output prefix: writes PREFIX.ahx.
        #[arg(short, long)]
        output: PathBuf,
        /// K-mer length.
        #[arg(short, default_value_t = 19)]
        k: u32,
        /// Minimizer window, in k-mers.
        #[arg(short, default_value_t = 10)]
        w: u32,
    },
    /// Align single- or paired-end reads (FASTQ, plain or gzip) to SAM or BAM.
    Align {
        /// The index prefix given to `genomics index`.
        prefix: PathBuf,
        r1: PathBuf,
        r2: Option<PathBuf>,
        /// Worker threads.
        #[arg(short = 't', long, default_value_t = 1)]
        threads: usize,
        /// Read group header line, e.g. '@RG\tID:s1\tSM:sample'.
        #[arg(short = 'R')]
        read_group: Option<String>,
        /// Output file, SAM (.sam) or BAM (.bam); SAM on standard output if
        /// absent.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Skip seeds with more occurrences than this (0: the index's
        /// 99.98th percentile).
        #[arg(long, default_value_t = AlignOptions::default().max_occ)]
        max_occ: usize,
    },
}

/// Where alignments go: plain (SAM) or BGZF-compressed (BAM).
enum Sink {
    Plain(Box<dyn Write>),
    Bgzf(accelhub_genomics::bam::BgzfWriter<Box<dyn Write>>),
}

fn index_path(prefix: &Path) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".ahx");
    PathBuf::from(s)
}

fn bar(len: u64, template: &str) -> ProgressBar {
    let b = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        b.set_style(style);
    }
    b
}

pub fn run(cmd: GenomicsCmd) -> Result<()> {
    match cmd {
        GenomicsCmd::Index {
            reference,
            output,
            k,
            w,
        } => {
            let started = std::time::Instant::now();
            let b = bar(0, "{spinner} {msg} {human_pos} bases");
            b.set_message("reading");
            let r = read_reference(&reference, &mut |n| b.set_position(n))?;
            b.finish_and_clear();
            let b = bar(r.seq.len() as u64, "{msg:12} [{bar:40}] {percent}%");
            let idx = Index::build(r, Params { k, w }, &mut |stage, done, total| {
                b.set_message(stage.to_string());
                b.set_length(total.max(1));
                b.set_position(done);
            })?;
            b.finish_and_clear();
            let path = index_path(&output);
            idx.save(&path)?;
            let (keys, occ) = idx.stats();
            eprintln!(
                "indexed {} contigs, {} bases: {keys} minimizers, {occ} positions -> {} ({:.1} s)",
                idx.reference.contigs.len(),
                idx.reference.seq.len(),
                path.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        GenomicsCmd::Align {
            prefix,
            r1,
            r2,
            threads,
            read_group,
            output,
            max_occ,
        } => {
            if let Some(rg) = &read_group {
                Aligner::check_read_group(rg)?;
            }
            let format = match output.as_ref().and_then(|o| o.extension()) {
                Some(e) if e == "bam" => Format::Bam,
                Some(e) if e == "sam" => Format::Sam,
                None if output.is_none() => Format::Sam,
                _ => bail!("the output must end in .sam or .bam"),
            };
            let started = std::time::Instant::now();
            let path = index_path(&prefix);
            let idx = Index::load(&path)
                .with_context(|| format!("loading the index {}", path.display()))?;
            let opts = AlignOptions {
                threads: threads.max(1),
                read_group,
                max_occ,
                format,
                command_line: std::env::args().collect::<Vec<_>>().join(" "),
                ..Default::default()
            };
            let aligner = Aligner::new(&idx, opts);
            let b = bar(0, "{spinner} aligned {human_pos} reads ({per_sec})");
            // Write next to the destination and rename at the end, so a
            // failure leaves no output that looks complete.
            let tmp = output.as_ref().map(|o| {
                let mut s = o.as_os_str().to_owned();
                s.push(".partial");
                PathBuf::from(s)
            });
            let result = (|| -> Result<_> {
                let file: Box<dyn Write> = match &tmp {
                    Some(t) => Box::new(std::io::BufWriter::with_capacity(
                        1 << 20,
                        std::fs::File::create(t)
                            .with_context(|| format!("creating {}", t.display()))?,
                    )),
                    None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
                };
                let mut sink = match format {
                    Format::Sam => Sink::Plain(file),
                    Format::Bam => Sink::Bgzf(accelhub_genomics::bam::bgzf(file)),
                };
                let out: &mut dyn Write = match &mut sink {
                    Sink::Plain(w) => w,
                    Sink::Bgzf(w) => w,
                };
                let stats = match &r2 {
                    Some(r2) => aligner
                        .align_pairs(PairReader::open(&r1, r2)?, out, &mut |n| b.set_position(n))?,
                    None => aligner
                        .align_single(FastqReader::open(&r1)?, out, &mut |n| b.set_position(n))?,
                };
                match sink {
                    Sink::Plain(mut w) => w.flush(),
                    Sink::Bgzf(w) => w.finish().and_then(|mut w| w.flush()),
                }
                .context("writing the alignments")?;
                Ok(stats)
            })();
            b.finish_and_clear();
            let stats = match result {
                Ok(s) => s,
                Err(e) => {
                    if let Some(t) = &tmp {
                        let _ = std::fs::remove_file(t);
                    }
                    return Err(e);
                }
            };
            if let (Some(t), Some(o)) = (&tmp, &output) {
                std::fs::rename(t, o).with_context(|| format!("renaming to {}", o.display()))?;
            }
            let insert = stats
                .insert
                .map(|m| format!(", insert {:.0} ± {:.0}", m.mean, m.sd))
                .unwrap_or_default();
            eprintln!(
                "aligned {} reads: {} mapped ({:.2}%), {} in proper pairs{insert}, seeds over {} occurrences skipped ({:.1} s)",
                stats.reads,
                stats.mapped,
                100.0 * stats.mapped as f64 / stats.reads.max(1) as f64,
                stats.proper_pairs,
                aligner.max_occ(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
    }
}
