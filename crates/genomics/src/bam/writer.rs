//! Writing a coordinate-sorted BAM with its index, all or nothing: both
//! files are written beside their destinations under `.partial` names and
//! renamed only when complete, so a failure leaves the old files (or none)
//! and never a BAM without its index or an index of another BAM.

use super::reader::Header;
use super::record::{Record, FLAG_UNMAPPED};
use crate::bai::{Builder, Kind};
use crate::bgzf;
use crate::io::with_suffix;
use crate::{GenomicsError, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub struct SortedWriter {
    path: PathBuf,
    partial: PathBuf,
    out: bgzf::Writer<BufWriter<File>>,
    index: Builder,
    pub records: u64,
}

fn partial_of(p: &Path) -> PathBuf {
    with_suffix(p, ".partial")
}

/// The index file beside `bam` (`x.bam.bai` or `x.bam.csi`).
pub fn index_path(bam: &Path, kind: Kind) -> PathBuf {
    with_suffix(bam, &format!(".{}", kind.extension()))
}

impl SortedWriter {
    /// Start `path` with `header` (whose `SO` is set to coordinate).
    pub fn create(path: &Path, header: &Header, level: u32, threads: usize) -> Result<Self> {
        let header = header.with_sort_order("coordinate");
        let kind = Kind::for_lengths(header.refs.iter().map(|r| r.1));
        let index = Builder::new(kind, header.refs.len());
        Self::create_with(path, &header.to_bam(), index, level, threads)
    }

    /// Start any coordinate-sorted BGZF file: `head` is written first,
    /// then what [`Self::write_indexed`] is given, indexed by `index`
    /// (a VCF and its tabix index, for one).
    pub fn create_with(
        path: &Path,
        head: &[u8],
        index: Builder,
        level: u32,
        threads: usize,
    ) -> Result<Self> {
        let io_err = |source| GenomicsError::Io {
            path: path.to_path_buf(),
            source,
        };
        let partial = partial_of(path);
        let file = File::create(&partial).map_err(io_err)?;
        let mut out = bgzf::Writer::new(BufWriter::with_capacity(1 << 20, file), level, threads);
        if let Err(e) = out.write_all(head) {
            let _ = std::fs::remove_file(&partial);
            return Err(io_err(e));
        }
        Ok(SortedWriter {
            path: path.to_path_buf(),
            partial,
            out,
            index,
            records: 0,
        })
    }

    /// Write one entry on reference `ref_id` covering `[beg, end)`, made
    /// of `parts`, in coordinate order.
    pub fn write_indexed(
        &mut self,
        ref_id: i32,
        beg: i64,
        end: i64,
        parts: &[&[u8]],
    ) -> Result<()> {
        self.write_parts(ref_id, beg, end, false, parts)
    }

    /// Write `parts` as one indexed entry (`unmapped` counts it so in
    /// the index's statistics).
    fn write_parts(
        &mut self,
        ref_id: i32,
        beg: i64,
        end: i64,
        unmapped: bool,
        parts: &[&[u8]],
    ) -> Result<()> {
        let start = self.out.spot();
        for p in parts {
            self.out.write_all(p).map_err(|source| GenomicsError::Io {
                path: self.path.clone(),
                source,
            })?;
        }
        let stop = self.out.spot();
        self.records += 1;
        self.index
            .add(ref_id, beg, end, unmapped, start, stop)
            .map_err(|message| GenomicsError::Format {
                path: self.path.clone(),
                record: self.records,
                message,
            })
    }

    /// Write one record (bytes without the length prefix), in coordinate
    /// order.
    pub fn write(&mut self, rec: &Record) -> Result<()> {
        self.write_flagged(rec, rec.flag())
    }

    /// Write one record with its flag replaced by `flag`.
    pub fn write_flagged(&mut self, rec: &Record, flag: u16) -> Result<()> {
        let b = rec.bytes();
        let mut fixed = [0u8; 4 + 32];
        fixed[..4].copy_from_slice(&(b.len() as u32).to_le_bytes());
        fixed[4..].copy_from_slice(&b[..32]);
        fixed[4 + 14..4 + 16].copy_from_slice(&flag.to_le_bytes());
        self.write_parts(
            rec.ref_id(),
            rec.pos() as i64,
            rec.end(),
            rec.flag() & FLAG_UNMAPPED != 0,
            &[&fixed, &b[32..]],
        )
    }

    /// Finish the BAM and its index and move both into place. Returns the
    /// index's path. On an error, neither is left behind.
    pub fn finish(self) -> Result<PathBuf> {
        let io_err = |p: &Path| {
            let p = p.to_path_buf();
            move |source| GenomicsError::Io { path: p, source }
        };
        let index = with_suffix(&self.path, &format!(".{}", self.index.extension()));
        let index_partial = partial_of(&index);
        let result = (|| {
            let (file, blocks) = self.out.finish().map_err(io_err(&self.path))?;
            file.into_inner()
                .map_err(|e| e.into_error())
                .and_then(|f| f.sync_all())
                .map_err(io_err(&self.path))?;
            let mut w = BufWriter::new(File::create(&index_partial).map_err(io_err(&index))?);
            self.index.write(&blocks, &mut w).map_err(io_err(&index))?;
            drop(w);
            std::fs::rename(&self.partial, &self.path).map_err(io_err(&self.path))?;
            std::fs::rename(&index_partial, &index).map_err(io_err(&index))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&self.partial);
            let _ = std::fs::remove_file(&index_partial);
        }
        result.map(|_| index)
    }

    /// Give up: remove what was written.
    pub fn abandon(self) {
        let _ = std::fs::remove_file(&self.partial);
    }

    /// After writing, whose outcome is `written`: finish (returning the
    /// index's path) if it went well, else abandon and pass its error on.
    pub fn complete(self, written: Result<()>) -> Result<PathBuf> {
        match written {
            Ok(()) => self.finish(),
            Err(e) => {
                self.abandon();
                Err(e)
            }
        }
    }
}
