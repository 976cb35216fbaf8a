//! Genomics for Accelhub: the short-read aligner's building blocks.
//!
//! - [`io`]: opening plain or gzip-compressed inputs, naming the file in
//!   every error.
//! - [`seq`]: nucleotide codes (A C G T, and N for N and every IUPAC
//!   ambiguity code) and reverse complements.
//! - [`fasta`]: references (many contigs), with errors naming the file and
//!   the record.
//! - [`fastq`]: streaming reads, single or paired, with the same errors,
//!   and pair checks (same count, same names).
//! - [`index`]: the minimizer index of a reference, built once and saved.
//! - [`bgzf`], [`bam`], [`bai`]: BGZF with threads, BAM records read and
//!   written as bytes, BAI/CSI indexes.
//! - [`sort`], [`markdup`]: coordinate sort in bounded memory, duplicate
//!   marking as samtools does it.
//! - [`call`]: the germline variant caller, BAM to bgzipped, indexed VCF.
//!
//! No module knows about tenants, billing or HTTP.

pub mod align;
pub mod bai;
pub mod bam;
pub mod bgzf;
pub mod call;
pub mod dp;
pub mod fasta;
pub mod fastq;
pub mod germline;
pub mod index;
pub mod io;
pub mod markdup;
pub mod seq;
pub mod sort;

/// Deterministic draws for the unit tests: each call with `n` returns a
/// number in `0..n`.
#[cfg(test)]
pub(crate) fn draws(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut x = seed;
    move |n| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    }
}

use std::path::PathBuf;

/// What went wrong, with the file (and the record, for format errors) it
/// went wrong in.
#[derive(Debug, thiserror::Error)]
pub enum GenomicsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: record {record}: {message}")]
    Format {
        path: PathBuf,
        /// 1-based number of the record (FASTA entry or FASTQ read).
        record: u64,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = GenomicsError> = std::result::Result<T, E>;
