//! Kernels `genomics/index` (reference FASTA → index), `genomics/align`
//! (reads FASTQ + index → BAM or SAM), and the flow after it:
//! `genomics/sort`, `genomics/markdup`, `genomics/call` and
//! `genomics/germline` (all of it in one call), over the genomics library.

use crate::stream::Guarded;
use crate::{KernelCall, KernelError};
use accelhub_device::ObjectArg;
use accelhub_genomics::align::{AlignOptions, Aligner, Format};
use accelhub_genomics::fastq::{FastqReader, PairReader};
use accelhub_genomics::index::{Index, Params as IndexParams};
use accelhub_genomics::{fasta, io as gio, GenomicsError};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Format a library error for the caller: it names the input and record.
fn input_error(e: GenomicsError) -> KernelError {
    KernelError::Input(e.to_string())
}

fn log(kc: &mut KernelCall, line: impl AsRef<str>) {
    let _ = writeln!(kc.log, "{}", line.as_ref());
}

fn take_input(kc: &mut KernelCall) -> Guarded {
    std::mem::replace(
        &mut kc.input,
        Guarded::taken(kc.control.clone(), kc.deadline),
    )
}

fn param_u32(kc: &KernelCall, name: &str, default: u32) -> Result<u32, KernelError> {
    match kc.params.get(name) {
        None | Some(serde_json::Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                KernelError::Input(format!(
                    "parameter '{name}' must be a non-negative integer, got {v}"
                ))
            }),
    }
}

fn param_str<'a>(kc: &'a KernelCall, name: &str) -> Result<Option<&'a str>, KernelError> {
    match kc.params.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(KernelError::Input(format!(
            "parameter '{name}' must be a string, got {v}"
        ))),
    }
}

/// `genomics/index`: the input is a reference FASTA (plain or gzip); the
/// output is the index file `accelhub genomics index` writes. Parameters
/// `k` and `w` as there. Progress counts reference bases read.
pub(crate) fn index(kc: &mut KernelCall) -> Result<(), KernelError> {
    let params = IndexParams {
        k: param_u32(kc, "k", IndexParams::default().k)?,
        w: param_u32(kc, "w", IndexParams::default().w)?,
    };
    let started = Instant::now();
    kc.control.unit.set("bases");
    let name = kc.input_name.clone();
    let mut input =
        gio::from_reader(Path::new(&name), Box::new(take_input(kc))).map_err(input_error)?;
    let control = kc.control.clone();
    let reference = fasta::parse(&mut input, &mut |n| {
        control.items.store(n, Ordering::Relaxed)
    })
    .map_err(input_error)?;
    let idx = Index::build(reference, params, &mut |_, _, _| {}).map_err(input_error)?;
    idx.write_to(&mut kc.output)
        .map_err(|e| KernelError::Device(format!("writing the index: {e}")))?;
    let (keys, occ) = idx.stats();
    let line = format!(
        "indexed {} contigs, {} bases: {keys} minimizers, {occ} positions (k={} w={}, {:.2} s)",
        idx.reference.contigs.len(),
        idx.reference.seq.len(),
        params.k,
        params.w,
        started.elapsed().as_secs_f64()
    );
    log(kc, line);
    Ok(())
}

/// Reads an object through, hashing what it reads, so the bytes can be
/// checked against the SHA-256 the resident cache keys them by.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

fn open_object(kc: &KernelCall, o: &ObjectArg) -> Result<Guarded, KernelError> {
    let stream = kc
        .runtime
        .block_on((o.open)())
        .map_err(|e| KernelError::Device(format!("cannot open object '{}': {e}", o.key)))?;
    Ok(Guarded::object(
        stream,
        &kc.runtime,
        kc.control.clone(),
        kc.deadline,
    ))
}

/// The index object, resident if a previous call loaded it.
fn resident_index(kc: &mut KernelCall, o: &ObjectArg) -> Result<Arc<Index>, KernelError> {
    let started = Instant::now();
    let resident = kc.resident.clone();
    let (idx, hit) = resident.get_or_load(&o.sha256, || {
        let mut r = Hashing {
            inner: std::io::BufReader::with_capacity(1 << 20, open_object(kc, o)?),
            hash: Sha256::new(),
        };
        let idx = Index::read_from(&mut r, Path::new(&o.key), o.size).map_err(|e| match e {
            GenomicsError::Invalid(m) => KernelError::Input(format!(
                "parameter 'index': {m} (build one with genomics/index)"
            )),
            other => input_error(other),
        })?;
        // Trailing bytes are part of the object, and of its hash.
        std::io::copy(&mut r, &mut std::io::sink())
            .map_err(|e| KernelError::Device(format!("reading object '{}': {e}", o.key)))?;
        let got = hex::encode(r.hash.finalize());
        if !got.eq_ignore_ascii_case(&o.sha256) {
            return Err(KernelError::Device(format!(
                "object '{}' changed while it was read (SHA-256 {got}, expected {})",
                o.key, o.sha256
            )));
        }
        Ok(idx)
    })?;
    let line = if hit {
        format!("index '{}': resident (sha256 {:.12})", o.key, o.sha256)
    } else {
        format!(
            "index '{}': loaded in {:.0} ms (sha256 {:.12}, {} bytes)",
            o.key,
            started.elapsed().as_secs_f64() * 1e3,
            o.sha256,
            o.size
        )
    };
    log(kc, line);
    Ok(idx)
}

/// `genomics/align`: the input is FASTQ (plain or gzip), R1 of a pair when
/// the object `reads2` is given; the object `index` is an index from
/// `genomics/index`. Parameters: `format` (`bam`, the default, or `sam`),
/// `read_group` (a whole `@RG` line), `max_occ`. Progress counts reads.
pub(crate) fn align(kc: &mut KernelCall) -> Result<(), KernelError> {
    let format = match param_str(kc, "format")? {
        None | Some("bam") => Format::Bam,
        Some("sam") => Format::Sam,
        Some(other) => {
            return Err(KernelError::Input(format!(
                "parameter 'format' must be \"bam\" or \"sam\", got \"{other}\""
            )))
        }
    };
    let read_group = param_str(kc, "read_group")?.map(str::to_string);
    if let Some(rg) = &read_group {
        Aligner::check_read_group(rg)
            .map_err(|e| KernelError::Input(format!("parameter 'read_group': {e}")))?;
    }
    let max_occ = param_u32(kc, "max_occ", AlignOptions::default().max_occ as u32)? as usize;
    let Some(index_obj) = kc.objects.get("index").cloned() else {
        return Err(KernelError::Input(
            "the object input 'index' is missing: pass the key of an index built by genomics/index"
                .into(),
        ));
    };
    let mate = kc.objects.get("reads2").cloned();
    let started = Instant::now();
    let idx = resident_index(kc, &index_obj)?;

    kc.control.unit.set("reads");
    let name = kc.input_name.clone();
    let r1 = FastqReader::from_input(
        gio::from_reader(Path::new(&name), Box::new(take_input(kc))).map_err(input_error)?,
    );
    let opts = AlignOptions {
        threads: kc.threads,
        read_group,
        max_occ,
        format,
        command_line: "accelhub genomics/align".into(),
        ..Default::default()
    };
    let aligner = Aligner::new(&idx, opts);
    let r2 = match &mate {
        Some(o) => {
            let stream = open_object(kc, o)?;
            let input =
                gio::from_reader(Path::new(&o.key), Box::new(stream)).map_err(input_error)?;
            Some(FastqReader::from_input(input))
        }
        None => None,
    };
    let control = kc.control.clone();
    let mut progress = |n: u64| control.items.store(n, Ordering::Relaxed);
    let run = |sink: &mut dyn Write| match r2 {
        Some(r2) => aligner.align_pairs(PairReader::new(r1, r2), sink, &mut progress),
        None => aligner.align_single(r1, sink, &mut progress),
    };
    let out = &mut kc.output;
    let written = |e: std::io::Error| KernelError::Device(format!("writing the output: {e}"));
    let stats = match format {
        Format::Sam => run(out).map_err(input_error)?,
        Format::Bam => {
            let mut w = accelhub_genomics::bam::bgzf(&mut *out);
            let stats = run(&mut w).map_err(input_error)?;
            w.finish().map_err(written)?;
            stats
        }
    };
    out.flush().map_err(written)?;
    let insert = stats
        .insert
        .map(|m| format!(", insert {:.0} ± {:.0}", m.mean, m.sd))
        .unwrap_or_default();
    let line = format!(
        "aligned {} reads: {} mapped ({:.2}%), {} in proper pairs{insert} ({:.2} s, {} threads)",
        stats.reads,
        stats.mapped,
        100.0 * stats.mapped as f64 / stats.reads.max(1) as f64,
        stats.proper_pairs,
        started.elapsed().as_secs_f64(),
        kc.threads
    );
    log(kc, line);
    Ok(())
}

// ---- The flow after alignment: sort, markdup, call, and all of it --------
//
// These kernels drive the genomics library's file-based stages. Their input
// stream is first written to a work directory (sorting and duplicate
// marking read it more than once); what they write there becomes the main
// output (moved into the call's capped writer, or copied where it cannot
// be moved) and the named outputs
// (moved into the directory the call offers, when it offers one: jobs do,
// verification's in-memory calls do not). The work directory goes when the
// call ends, whatever the outcome.

fn param_bool(kc: &KernelCall, name: &str, default: bool) -> Result<bool, KernelError> {
    match kc.params.get(name) {
        None | Some(serde_json::Value::Null) => Ok(default),
        Some(serde_json::Value::Bool(b)) => Ok(*b),
        Some(v) => Err(KernelError::Input(format!(
            "parameter '{name}' must be true or false, got {v}"
        ))),
    }
}

fn param_f64(kc: &KernelCall, name: &str, default: f64) -> Result<f64, KernelError> {
    match kc.params.get(name) {
        None | Some(serde_json::Value::Null) => Ok(default),
        Some(v) => v.as_f64().filter(|x| x.is_finite()).ok_or_else(|| {
            KernelError::Input(format!("parameter '{name}' must be a number, got {v}"))
        }),
    }
}

/// `region`: one region (`chr`, `chr:beg-end`) or a list of them.
fn param_regions(kc: &KernelCall) -> Result<Vec<String>, KernelError> {
    let bad = |v: &serde_json::Value| {
        KernelError::Input(format!(
            "parameter 'region' must be a region (\"chr:beg-end\") or a list of them, got {v}"
        ))
    };
    match kc.params.get("region") {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::String(s)) => Ok(vec![s.clone()]),
        Some(serde_json::Value::Array(a)) if a.len() <= 10_000 => a
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| bad(v)))
            .collect(),
        Some(v) => Err(bad(v)),
    }
}

/// Sorting's memory budget: `memory_mb` (default 768), at most 64 GiB.
fn sort_options(
    kc: &KernelCall,
    dir: &Path,
) -> Result<accelhub_genomics::sort::SortOptions, KernelError> {
    let mb = param_u32(kc, "memory_mb", 768)?.clamp(16, 64 << 10) as usize;
    Ok(accelhub_genomics::sort::SortOptions {
        memory: mb << 20,
        tmp_dir: dir.to_path_buf(),
        threads: kc.threads,
        level: 6,
    })
}

fn device_error(what: &str) -> impl Fn(std::io::Error) -> KernelError + '_ {
    move |e| {
        if accelhub_device::output::is_disk_full(&e) {
            KernelError::Full(format!("{what}: {e}"))
        } else {
            KernelError::Device(format!("{what}: {e}"))
        }
    }
}

/// A directory for the call's files: inside the named outputs' directory
/// (so that moving a file there is a rename), else a temporary one.
fn work_dir(kc: &KernelCall) -> Result<tempfile::TempDir, KernelError> {
    let b = tempfile::Builder::new().prefix("work-").tempdir_in(
        kc.named
            .as_ref()
            .map_or_else(std::env::temp_dir, |n| n.path().to_path_buf()),
    );
    b.map_err(device_error("cannot make a work directory"))
}

/// Write the call's input to `dir`, under its own name's extension (SAM
/// and BAM are told apart by their bytes, but messages name the file).
fn spool_input(kc: &mut KernelCall, dir: &Path) -> Result<std::path::PathBuf, KernelError> {
    let name = Path::new(&kc.input_name)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty() && !n.starts_with('.'))
        .unwrap_or_else(|| "input".into());
    let path = dir.join(name);
    let mut input = take_input(kc);
    let mut file = std::fs::File::create(&path).map_err(device_error("spooling the input"))?;
    std::io::copy(&mut input, &mut file).map_err(|e| {
        if e.kind() == std::io::ErrorKind::Other || e.kind() == std::io::ErrorKind::InvalidData {
            KernelError::Input(format!("reading input '{}': {e}", kc.input_name))
        } else {
            KernelError::Device(format!("spooling the input: {e}"))
        }
    })?;
    Ok(path)
}

/// `path` as the main output (moved into place where it can be).
fn put_main(kc: &mut KernelCall, path: &Path) -> Result<(), KernelError> {
    kc.output
        .put_file(path)
        .map_err(device_error("writing the output"))
}

/// `path` as the named output `name`, where the call offers named outputs.
fn put_named(kc: &KernelCall, name: &str, path: &Path) -> Result<(), KernelError> {
    if let Some(n) = &kc.named {
        std::fs::rename(path, n.path().join(name)).map_err(device_error("keeping an output"))?;
    }
    Ok(())
}

/// The index written beside `path`: the first of `suffixes` there (a BAI or
/// TBI, or a CSI for contigs over 512 Mb).
fn index_beside(path: &Path, suffixes: &[&str]) -> std::path::PathBuf {
    let all: Vec<_> = suffixes
        .iter()
        .map(|s| accelhub_genomics::io::with_suffix(path, s))
        .collect();
    all.iter().find(|p| p.exists()).unwrap_or(&all[0]).clone()
}

/// A library error from a stage working in `dir`, for the caller: a full
/// disk is the node's (507); anything else is the input's, named as the
/// caller named it (the work directory's path left out).
fn work_error(dir: &Path) -> impl Fn(GenomicsError) -> KernelError + '_ {
    move |e| match e {
        GenomicsError::Io { source, .. } if accelhub_device::output::is_disk_full(&source) => {
            KernelError::Full(format!("the node's disk is full: {source}"))
        }
        e => KernelError::Input(
            e.to_string()
                .replace(&format!("{}/", dir.display()), "")
                .replace(&dir.display().to_string(), "."),
        ),
    }
}

/// Progress by stage: the unit names the stage; the count restarts.
fn staged(control: &accelhub_device::CallControl, unit: &str, n: u64) {
    control.unit.set(unit);
    control.items.store(n, Ordering::Relaxed);
}

/// The call's last log line: what it did, in how long.
fn log_done(kc: &mut KernelCall, what: &str, started: Instant) {
    log(
        kc,
        format!(
            "{what} ({:.2} s, {} threads)",
            started.elapsed().as_secs_f64(),
            kc.threads
        ),
    );
}

/// `genomics/sort`: the input is SAM or BAM; the output a coordinate-sorted
/// BAM, with named output `bai` (its index). Parameters: `markdup` (mark
/// duplicates on the way, default false), `memory_mb` (records held before
/// sorted runs spill to disk, default 768). Progress: records read, then
/// records written.
pub(crate) fn sort(kc: &mut KernelCall) -> Result<(), KernelError> {
    let started = Instant::now();
    let markdup = param_bool(kc, "markdup", false)?;
    let dir = work_dir(kc)?;
    let opts = sort_options(kc, dir.path())?;
    let input = spool_input(kc, dir.path())?;
    let out = dir.path().join("sorted.bam");
    let md = markdup.then_some(accelhub_genomics::markdup::MarkdupOptions {
        threads: kc.threads,
        level: 6,
        remove: false,
        supplementary: false,
    });
    let control = kc.control.clone();
    staged(&control, "records read", 0);
    let stats = accelhub_genomics::sort::sort_file(
        &input,
        &out,
        &opts,
        md.as_ref(),
        "accelhub genomics/sort",
        &mut |stage, n| staged(&control, &format!("records {stage}"), n),
    )
    .map_err(work_error(dir.path()))?;
    staged(&control, "records written", stats.records);
    put_main(kc, &out)?;
    put_named(kc, "bai", &stats.index)?;
    if let Some(md) = &stats.markdup {
        log(kc, md.report().trim_end());
    }
    let what = format!(
        "sorted {} records ({} runs spilled)",
        stats.records, stats.runs
    );
    log_done(kc, &what, started);
    Ok(())
}

/// `genomics/markdup`: the input is a coordinate-sorted BAM (or SAM); the
/// output the BAM with duplicates flagged (0x400) as `samtools markdup`
/// flags them, with named outputs `bai` and `stats` (samtools markdup -s's
/// report). Parameters: `remove` (drop duplicates instead), `supplementary`
/// (flag the supplementary, secondary and unmapped records of duplicates).
pub(crate) fn markdup(kc: &mut KernelCall) -> Result<(), KernelError> {
    let started = Instant::now();
    let opts = accelhub_genomics::markdup::MarkdupOptions {
        threads: kc.threads,
        level: 6,
        remove: param_bool(kc, "remove", false)?,
        supplementary: param_bool(kc, "supplementary", false)?,
    };
    let dir = work_dir(kc)?;
    let input = spool_input(kc, dir.path())?;
    let out = dir.path().join("marked.bam");
    let control = kc.control.clone();
    staged(&control, "records read", 0);
    let stats = accelhub_genomics::markdup::markdup_file(
        &input,
        &out,
        &opts,
        "accelhub genomics/markdup",
        &mut |stage, n| staged(&control, &format!("records {stage}"), n),
    )
    .map_err(work_error(dir.path()))?;
    put_main(kc, &out)?;
    put_named(kc, "bai", &index_beside(&out, &[".bai", ".csi"]))?;
    let report = dir.path().join("stats.txt");
    std::fs::write(&report, stats.report()).map_err(device_error("writing the statistics"))?;
    put_named(kc, "stats", &report)?;
    log_done(kc, &stats.summary(), started);
    Ok(())
}

/// Calling's options from the parameters: `region`, `gvcf`, `min_qual`,
/// `min_mapq`, `sample`.
fn call_options(kc: &KernelCall) -> Result<accelhub_genomics::call::CallOptions, KernelError> {
    let d = accelhub_genomics::call::Params::default();
    Ok(accelhub_genomics::call::CallOptions {
        threads: kc.threads,
        params: accelhub_genomics::call::Params {
            min_qual: param_f64(kc, "min_qual", d.min_qual)?,
            min_mapq: param_u32(kc, "min_mapq", u32::from(d.min_mapq))?.min(255) as u8,
            gvcf: param_bool(kc, "gvcf", d.gvcf)?,
            ..d
        },
        regions: param_regions(kc)?,
        sample: param_str(kc, "sample")?.map(str::to_string),
        ..Default::default()
    })
}

fn required_index(kc: &KernelCall, kernel: &str) -> Result<ObjectArg, KernelError> {
    kc.objects.get("index").cloned().ok_or_else(|| {
        KernelError::Input(format!(
            "the object input 'index' is missing: {kernel} reads the reference from an index built by genomics/index"
        ))
    })
}

/// `genomics/call`: the input is a coordinate-sorted BAM; the object
/// `index` (from `genomics/index`) gives the reference. The output is the
/// calls, bgzipped VCF 4.2, with named output `tbi`. Parameters: `region`
/// (one or a list), `gvcf`, `min_qual`, `min_mapq`, `sample`. Progress:
/// position on the contig being called.
pub(crate) fn call(kc: &mut KernelCall) -> Result<(), KernelError> {
    let started = Instant::now();
    let opts = call_options(kc)?;
    let index_obj = required_index(kc, "genomics/call")?;
    let idx = resident_index(kc, &index_obj)?;
    let dir = work_dir(kc)?;
    let input = spool_input(kc, dir.path())?;
    let out = dir.path().join("calls.vcf.gz");
    let reader = accelhub_genomics::bam::reader::Reader::open(&input, kc.threads)
        .map_err(work_error(dir.path()))?;
    let control = kc.control.clone();
    let stats = accelhub_genomics::call::call_with(
        &idx.reference,
        Path::new(&index_obj.key),
        reader,
        &out,
        &opts,
        "accelhub genomics/call",
        &mut |contig, pos| staged(&control, &format!("bp called on {contig}"), pos),
    )
    .map_err(work_error(dir.path()))?;
    put_main(kc, &out)?;
    put_named(kc, "tbi", &index_beside(&out, &[".tbi", ".csi"]))?;
    let what = format!(
        "called {} SNVs and {} indels over {} bases (mean depth {:.1})",
        stats.snvs,
        stats.indels,
        stats.bases_called,
        stats.mean_depth()
    );
    log_done(kc, &what, started);
    Ok(())
}

/// `genomics/germline`: the whole flow. The input is reads, FASTQ (R1 of
/// a pair with the object `reads2`); the object `index` is the reference's
/// index. The output is the calls (bgzipped VCF), with named outputs `tbi`,
/// `bam` (sorted, duplicates marked), `bai` and `qc` (the QC summary).
/// Parameters: `read_group`, `region`, `gvcf`, `min_qual`, `min_mapq`,
/// `memory_mb`. Progress by stage: reads aligned, records sorted, position
/// called.
pub(crate) fn germline(kc: &mut KernelCall) -> Result<(), KernelError> {
    let started = Instant::now();
    let read_group = param_str(kc, "read_group")?.map(str::to_string);
    if let Some(rg) = &read_group {
        Aligner::check_read_group(rg)
            .map_err(|e| KernelError::Input(format!("parameter 'read_group': {e}")))?;
    }
    let call = call_options(kc)?;
    let index_obj = required_index(kc, "genomics/germline")?;
    let mate = kc.objects.get("reads2").cloned();
    let idx = resident_index(kc, &index_obj)?;
    let dir = work_dir(kc)?;
    let opts = accelhub_genomics::germline::Options {
        align: AlignOptions {
            threads: kc.threads,
            read_group,
            command_line: "accelhub genomics/germline".into(),
            ..Default::default()
        },
        sort: sort_options(kc, dir.path())?,
        call,
    };
    let name = kc.input_name.clone();
    let r1 = FastqReader::from_input(
        gio::from_reader(Path::new(&name), Box::new(take_input(kc)))
            .map_err(work_error(dir.path()))?,
    );
    let r2 = match &mate {
        Some(o) => {
            let stream = open_object(kc, o)?;
            let input = gio::from_reader(Path::new(&o.key), Box::new(stream))
                .map_err(work_error(dir.path()))?;
            Some(FastqReader::from_input(input))
        }
        None => None,
    };
    let (bam, vcf) = (
        dir.path().join("sample.bam"),
        dir.path().join("sample.vcf.gz"),
    );
    let control = kc.control.clone();
    let report = accelhub_genomics::germline::run(
        &idx,
        Path::new(&index_obj.key),
        (r1, r2),
        &bam,
        &vcf,
        &opts,
        &mut |s| {
            use accelhub_genomics::germline::Stage;
            match s {
                Stage::Aligned(n) => staged(&control, "reads aligned", n),
                Stage::Sorted(n) => staged(&control, "records sorted", n),
                Stage::Calling(c, pos) => staged(&control, &format!("bp called on {c}"), pos),
            }
        },
    )
    .map_err(work_error(dir.path()))?;
    put_main(kc, &vcf)?;
    put_named(kc, "tbi", &index_beside(&vcf, &[".tbi", ".csi"]))?;
    put_named(kc, "bai", &index_beside(&bam, &[".bai", ".csi"]))?;
    put_named(kc, "bam", &bam)?;
    let qc = report.qc();
    let qc_path = dir.path().join("sample.qc.tsv");
    std::fs::write(&qc_path, &qc).map_err(device_error("writing the QC summary"))?;
    put_named(kc, "qc", &qc_path)?;
    log(kc, qc.trim_end());
    log_done(kc, "germline flow done", started);
    Ok(())
}
