//! `accelhub genomics`: build a reference index and align reads, locally.

use accelhub_genomics::align::{AlignOptions, Aligner, Format};
use accelhub_genomics::call::Params as CallParams;
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
        /// Write the BAM sorted by coordinate, with its index, without an
        /// unsorted file between (as `genomics sort` would).
        #[arg(long)]
        sort: bool,
        /// Sort and mark duplicates (as `genomics sort --markdup`).
        #[arg(long)]
        markdup: bool,
        /// With --sort: memory for records before runs spill to disk.
        #[arg(short = 'm', long, default_value = "768M", value_parser = parse_size)]
        memory: usize,
    },
    /// Sort alignments (SAM or BAM) by coordinate into an indexed BAM,
    /// within bounded memory.
    Sort {
        input: PathBuf,
        /// Output BAM; its index is written beside it (.bai, or .csi for
        /// references over 512 Mb).
        #[arg(short, long)]
        output: PathBuf,
        /// Threads (compression).
        #[arg(short = 't', long, default_value_t = 1)]
        threads: usize,
        /// Memory for records before sorted runs spill to temporary files
        /// (bytes; K, M, G suffixes).
        #[arg(short = 'm', long, default_value = "768M", value_parser = parse_size)]
        memory: usize,
        /// Directory for temporary files (default: the output's).
        #[arg(short = 'T', long)]
        tmp_dir: Option<PathBuf>,
        /// Compression level, 0-9.
        #[arg(short = 'l', long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(0..=9))]
        level: u32,
        /// Also mark duplicates, as `genomics markdup` would on the sorted
        /// file, without writing it twice.
        #[arg(long)]
        markdup: bool,
        /// With --markdup: print its statistics to standard error.
        #[arg(short = 's')]
        stats: bool,
    },
    /// Mark duplicate reads (flag 0x400) in a coordinate-sorted BAM, as
    /// samtools markdup does, per library; writes an indexed BAM.
    Markdup {
        input: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        #[arg(short = 't', long, default_value_t = 1)]
        threads: usize,
        /// Remove duplicates instead of flagging them.
        #[arg(short = 'r')]
        remove: bool,
        /// Also flag the secondary, supplementary and unmapped records of
        /// duplicates.
        #[arg(short = 'S')]
        supplementary: bool,
        /// Print statistics (samtools markdup -s's report) to standard error.
        #[arg(short = 's')]
        stats: bool,
        /// Compression level, 0-9.
        #[arg(short = 'l', long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(0..=9))]
        level: u32,
    },
    /// The whole germline flow in one process: align, sort, mark
    /// duplicates, call. Writes DIR/sample.bam (+ .bai), DIR/sample.vcf.gz
    /// (+ .tbi) and DIR/sample.qc.tsv.
    Germline {
        /// Index prefix (from `genomics index`); its reference is the
        /// caller's too.
        prefix: PathBuf,
        r1: PathBuf,
        r2: Option<PathBuf>,
        /// Output directory (made if missing).
        #[arg(short, long)]
        output: PathBuf,
        #[arg(short = 't', long, default_value_t = 1)]
        threads: usize,
        /// Read group header line, e.g. '@RG\tID:x\tSM:x\tLB:lib1'.
        #[arg(short = 'R', long = "read-group")]
        read_group: Option<String>,
        /// Regions to call: chr, chr:beg-end; may be repeated.
        #[arg(short = 'r', long = "region")]
        regions: Vec<String>,
        /// Regions to call from a BED file.
        #[arg(long = "regions-file")]
        bed: Option<PathBuf>,
        /// Memory for records before sorted runs spill to disk.
        #[arg(short = 'm', long, default_value = "768M", value_parser = parse_size)]
        memory: usize,
    },
    /// Call germline SNVs and indels (diploid) from a coordinate-sorted
    /// BAM; writes a bgzipped VCF 4.2 and its tabix index.
    Call {
        /// The reference the reads were aligned to (FASTA, plain or gzip).
        reference: PathBuf,
        /// Coordinate-sorted BAM (or SAM).
        input: PathBuf,
        /// Output VCF (.vcf.gz); its index (.tbi, or .csi for contigs over
        /// 512 Mb) is written beside it.
        #[arg(short, long)]
        output: PathBuf,
        /// Regions to call: chr, chr:beg-end (1-based, inclusive); may be
        /// repeated.
        #[arg(short = 'r', long = "region")]
        regions: Vec<String>,
        /// Regions to call from a BED file.
        #[arg(short = 'R', long = "regions-file")]
        bed: Option<PathBuf>,
        #[arg(short = 't', long, default_value_t = 1)]
        threads: usize,
        /// Sites below this QUAL are not written.
        #[arg(short = 'q', long, default_value_t = CallParams::default().min_qual)]
        min_qual: f64,
        /// Reads below this mapping quality are left out.
        #[arg(long, default_value_t = CallParams::default().min_mapq)]
        min_mapq: u8,
        /// The sample's name (default: the BAM's @RG SM, else its file name).
        #[arg(short = 's', long)]
        sample: Option<String>,
        /// Write a gVCF: reference blocks between the variants, and a
        /// <NON_REF> allele, for `genomics joint`.
        #[arg(long)]
        gvcf: bool,
    },
    /// Genotype samples jointly: merge gVCFs (from `genomics call
    /// --gvcf`) into one multi-sample VCF.
    Joint {
        /// The samples' gVCFs.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Output VCF (.vcf.gz), indexed.
        #[arg(short, long)]
        output: PathBuf,
    },
}

/// A byte count with an optional K, M or G suffix (powers of 1024).
fn parse_size(s: &str) -> std::result::Result<usize, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1usize << 10),
        Some((i, 'm' | 'M')) => (&t[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    let n: usize = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size (e.g. 768M, 2G)"))?;
    n.checked_mul(mult)
        .filter(|&b| b >= 1 << 20)
        .ok_or_else(|| format!("'{s}' must be at least 1M"))
}

/// Where alignments go: plain (SAM), BGZF-compressed (BAM), or to a
/// sorted BAM.
enum Sink {
    Plain(Box<dyn Write>),
    Bgzf(Box<accelhub_genomics::bam::BgzfWriter<Box<dyn Write>>>),
    Sorted(Box<accelhub_genomics::sort::StreamSink>),
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

/// The directory `p` is in (`.` for a bare name): where its temporary
/// files go.
fn dir_of(p: &Path) -> PathBuf {
    p.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// A progress callback showing the stage and its count on `b`.
fn staged(b: &ProgressBar) -> impl FnMut(&str, u64) + '_ {
    |stage, n| {
        b.set_message(stage.to_string());
        b.set_position(n);
    }
}

fn report_duplicates(s: &accelhub_genomics::markdup::MarkdupStats) {
    eprintln!("{}", s.summary());
}

/// Align `r1` (with its mates in `r2`) into `out`.
fn align_reads(
    aligner: &Aligner,
    r1: &Path,
    r2: Option<&Path>,
    out: &mut dyn Write,
    b: &ProgressBar,
) -> Result<accelhub_genomics::align::AlignStats> {
    Ok(match r2 {
        Some(r2) => {
            aligner.align_pairs(PairReader::open(r1, r2)?, out, &mut |n| b.set_position(n))?
        }
        None => aligner.align_single(FastqReader::open(r1)?, out, &mut |n| b.set_position(n))?,
    })
}

fn report_alignment(
    stats: &accelhub_genomics::align::AlignStats,
    max_occ: usize,
    started: std::time::Instant,
) {
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
        max_occ,
        started.elapsed().as_secs_f64()
    );
}

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

pub fn run(cmd: GenomicsCmd) -> Result<()> {
    match cmd {
        GenomicsCmd::Sort {
            input,
            output,
            threads,
            memory,
            tmp_dir,
            level,
            markdup,
            stats: print_stats,
        } => {
            let started = std::time::Instant::now();
            let tmp_dir = tmp_dir.unwrap_or_else(|| dir_of(&output));
            let opts = accelhub_genomics::sort::SortOptions {
                memory,
                tmp_dir,
                threads: threads.max(1),
                level,
            };
            let b = bar(0, "{spinner} {msg} {human_pos} records");
            let md = markdup.then(|| accelhub_genomics::markdup::MarkdupOptions {
                threads: threads.max(1),
                level,
                remove: false,
                supplementary: false,
            });
            let stats = accelhub_genomics::sort::sort_file(
                &input,
                &output,
                &opts,
                md.as_ref(),
                &command_line(),
                &mut staged(&b),
            )?;
            b.finish_and_clear();
            if let Some(md) = &stats.markdup {
                if print_stats {
                    eprint!("{}", md.report());
                }
                report_duplicates(md);
            }
            eprintln!(
                "sorted {} records ({} runs spilled) -> {}, {} ({:.1} s)",
                stats.records,
                stats.runs,
                output.display(),
                stats.index.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        GenomicsCmd::Markdup {
            input,
            output,
            threads,
            remove,
            supplementary,
            stats: print_stats,
            level,
        } => {
            let started = std::time::Instant::now();
            let opts = accelhub_genomics::markdup::MarkdupOptions {
                threads: threads.max(1),
                level,
                remove,
                supplementary,
            };
            let b = bar(0, "{spinner} {msg} {human_pos} records");
            let stats = accelhub_genomics::markdup::markdup_file(
                &input,
                &output,
                &opts,
                &command_line(),
                &mut staged(&b),
            )?;
            b.finish_and_clear();
            if print_stats {
                eprint!("{}", stats.report());
            }
            report_duplicates(&stats);
            eprintln!(
                "-> {} ({:.1} s)",
                output.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        GenomicsCmd::Germline {
            prefix,
            r1,
            r2,
            output,
            threads,
            read_group,
            regions,
            bed,
            memory,
        } => {
            if let Some(rg) = &read_group {
                Aligner::check_read_group(rg)?;
            }
            let started = std::time::Instant::now();
            std::fs::create_dir_all(&output)
                .with_context(|| format!("creating {}", output.display()))?;
            let bam = output.join("sample.bam");
            let vcf = output.join("sample.vcf.gz");
            let qc = output.join("sample.qc.tsv");
            let threads = threads.max(1);
            let path = index_path(&prefix);
            let idx = Index::load(&path)
                .with_context(|| format!("loading the index {}", path.display()))?;
            let opts = accelhub_genomics::germline::Options {
                align: AlignOptions {
                    threads,
                    read_group,
                    command_line: command_line(),
                    ..Default::default()
                },
                sort: accelhub_genomics::sort::SortOptions {
                    memory,
                    tmp_dir: output.clone(),
                    threads,
                    level: 6,
                },
                call: accelhub_genomics::call::CallOptions {
                    threads,
                    regions,
                    bed,
                    ..Default::default()
                },
            };
            let r2 = match r2 {
                Some(p) => Some(FastqReader::open(&p)?),
                None => None,
            };
            let b = bar(0, "{spinner} {msg}");
            let report = accelhub_genomics::germline::run(
                &idx,
                &path,
                (FastqReader::open(&r1)?, r2),
                &bam,
                &vcf,
                &opts,
                &mut |s| {
                    use accelhub_genomics::germline::Stage;
                    b.set_message(match s {
                        Stage::Aligned(n) => format!("align: {n} reads"),
                        Stage::Sorted(n) => format!("sort, mark duplicates: {n} records"),
                        Stage::Calling(c, pos) => format!("call: {c}:{:.1} Mb", pos as f64 / 1e6),
                    });
                },
            )?;
            b.finish_and_clear();
            report_alignment(&report.align, report.max_occ, started);
            if let Some(md) = &report.markdup {
                report_duplicates(md);
            }
            let summary = report.qc();
            std::fs::write(&qc, &summary).with_context(|| format!("writing {}", qc.display()))?;
            eprint!("{summary}");
            eprintln!(
                "-> {}, {}, {} ({:.1} s)",
                bam.display(),
                vcf.display(),
                qc.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        GenomicsCmd::Call {
            reference,
            input,
            output,
            regions,
            bed,
            threads,
            min_qual,
            min_mapq,
            sample,
            gvcf,
        } => {
            let started = std::time::Instant::now();
            let opts = accelhub_genomics::call::CallOptions {
                threads: threads.max(1),
                params: CallParams {
                    min_qual,
                    min_mapq,
                    gvcf,
                    ..CallParams::default()
                },
                regions,
                bed,
                sample,
                ..Default::default()
            };
            let b = bar(0, "{spinner} calling {msg}");
            let stats = accelhub_genomics::call::call_file(
                &reference,
                &input,
                &output,
                &opts,
                &command_line(),
                &mut |contig, pos| b.set_message(format!("{contig}:{:.1} Mb", pos as f64 / 1e6)),
            )?;
            b.finish_and_clear();
            eprintln!(
                "{} SNVs, {} indels (het/hom {:.2}, Ts/Tv {:.2}); {} reads, mean depth {:.1} -> {} ({:.1} s)",
                stats.snvs,
                stats.indels,
                stats.het_hom(),
                stats.ts_tv(),
                stats.reads_used,
                stats.mean_depth(),
                output.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        GenomicsCmd::Joint { inputs, output } => {
            let started = std::time::Instant::now();
            let s = accelhub_genomics::call::joint::joint_files(&inputs, &output, &command_line())?;
            eprintln!(
                "{} samples, {} sites -> {} ({:.1} s)",
                s.samples,
                s.sites,
                output.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
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
            sort,
            markdup,
            memory,
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
            let sorted = match (&output, sort || markdup) {
                (Some(o), true) if format == Format::Bam => Some(o.clone()),
                (_, true) => bail!("--sort and --markdup write an indexed BAM: give -o OUT.bam"),
                _ => None,
            };
            let sort_opts = accelhub_genomics::sort::SortOptions {
                memory,
                tmp_dir: output.as_deref().map_or_else(|| PathBuf::from("."), dir_of),
                threads: threads.max(1),
                level: 6,
            };
            let md = markdup.then(|| accelhub_genomics::markdup::MarkdupOptions {
                threads: threads.max(1),
                level: 6,
                remove: false,
                supplementary: false,
            });
            let started = std::time::Instant::now();
            let path = index_path(&prefix);
            let idx = Index::load(&path)
                .with_context(|| format!("loading the index {}", path.display()))?;
            let opts = AlignOptions {
                threads: threads.max(1),
                read_group,
                max_occ,
                format,
                command_line: command_line(),
                ..Default::default()
            };
            let aligner = Aligner::new(&idx, opts);
            let b = bar(0, "{spinner} aligned {human_pos} reads ({per_sec})");
            // Write next to the destination and rename at the end, so a
            // failure leaves no output that looks complete.
            // (A sorted BAM does the same through its writer.)
            let tmp = output.as_ref().filter(|_| sorted.is_none()).map(|o| {
                let mut s = o.as_os_str().to_owned();
                s.push(".partial");
                PathBuf::from(s)
            });
            let mut sort_stats = None;
            let result = (|| -> Result<_> {
                let mut sink = if sorted.is_some() {
                    Sink::Sorted(Box::new(accelhub_genomics::sort::StreamSink::new(
                        &sort_opts,
                        md.as_ref(),
                    )))
                } else {
                    let file: Box<dyn Write> = match &tmp {
                        Some(t) => Box::new(std::io::BufWriter::with_capacity(
                            1 << 20,
                            std::fs::File::create(t)
                                .with_context(|| format!("creating {}", t.display()))?,
                        )),
                        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
                    };
                    match format {
                        Format::Sam => Sink::Plain(file),
                        Format::Bam => Sink::Bgzf(Box::new(accelhub_genomics::bam::bgzf(file))),
                    }
                };
                let out: &mut dyn Write = match &mut sink {
                    Sink::Plain(w) => w,
                    Sink::Bgzf(w) => &mut **w,
                    Sink::Sorted(w) => &mut **w,
                };
                let stats = align_reads(&aligner, &r1, r2.as_deref(), out, &b)?;
                match sink {
                    Sink::Plain(mut w) => w.flush(),
                    Sink::Bgzf(w) => w.finish().and_then(|(mut w, _)| w.flush()),
                    Sink::Sorted(w) => {
                        let to = sorted.as_deref().unwrap_or(Path::new("out.bam"));
                        b.set_message("sorting");
                        sort_stats = Some(w.finish(to, &mut |n| b.set_position(n))?);
                        Ok(())
                    }
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
            report_alignment(&stats, aligner.max_occ(), started);
            if let Some(s) = sort_stats {
                if let Some(md) = &s.markdup {
                    report_duplicates(md);
                }
                eprintln!(
                    "sorted ({} runs spilled), indexed: {}",
                    s.runs,
                    s.index.display()
                );
            }
            Ok(())
        }
    }
}
