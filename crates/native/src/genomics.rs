//! Kernels `genomics/index` (reference FASTA → index) and `genomics/align`
//! (reads FASTQ + index → BAM or SAM), over the aligner library.

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
    let _ = kc.control.unit.set("bases");
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

    let _ = kc.control.unit.set("reads");
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
