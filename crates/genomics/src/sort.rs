//! Sorting alignments by coordinate within a memory bound.
//!
//! Records are kept as their BAM bytes in one buffer with a 16-byte
//! entry each (sort key, where the bytes are). When the buffer and its
//! entries pass the bound, they are sorted and written to a temporary
//! run; at the end the runs (and what is still in memory) are merged.
//! The order is samtools': reference (unplaced records last), position,
//! forward strand before reverse, and otherwise the input order, so the
//! same input always gives the same file.

use crate::bam::reader::Header;
use crate::bam::record::{Record, FLAG_REVERSE};
use crate::bam::writer::SortedWriter;
use crate::markdup::{DupFinder, MarkdupOptions, MarkdupStats};
use crate::{GenomicsError, Result};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// How to sort.
#[derive(Debug, Clone)]
pub struct SortOptions {
    /// Bytes of records (and their entries) held before a run is spilled.
    pub memory: usize,
    /// Where runs go (a fresh directory is made inside, and removed).
    pub tmp_dir: PathBuf,
    /// Compression threads.
    pub threads: usize,
    /// Deflate level of the output.
    pub level: u32,
}

/// Bytes of bookkeeping per record held.
const ENTRY: usize = 16;

/// The coordinate sort key of a record: reference (with none last),
/// position, strand.
pub fn key_of(r: &Record) -> u64 {
    let tid = if r.ref_id() < 0 {
        0x7fff_ffff
    } else {
        r.ref_id() as u64
    };
    let pos = (r.pos() as i64 + 1).max(0) as u64;
    (tid << 33) | (pos << 1) | (r.flag() & FLAG_REVERSE != 0) as u64
}

#[derive(Clone, Copy)]
struct Span {
    key: u64,
    at: u64,
    end: u64,
    id: u64,
}

#[derive(Clone, Copy)]
struct Entry {
    key: u64,
    /// Where the record starts in the buffer (after its length).
    at: u64,
}

/// Collects records, spilling sorted runs past the memory bound.
pub struct Sorter {
    opts: SortOptions,
    buf: Vec<u8>,
    entries: Vec<Entry>,
    runs: Vec<PathBuf>,
    dir: Option<tempfile::TempDir>,
    pub records: u64,
}

impl Sorter {
    pub fn new(opts: SortOptions) -> Self {
        Sorter {
            opts,
            buf: Vec::new(),
            entries: Vec::new(),
            runs: Vec::new(),
            dir: None,
            records: 0,
        }
    }

    /// Runs written to disk so far.
    pub fn spilled(&self) -> usize {
        self.runs.len()
    }

    /// Add one record (its bytes, without the length prefix; checked).
    pub fn push(&mut self, rec: &Record) -> Result<()> {
        let b = rec.bytes();
        if self.buf.capacity() == 0 {
            // Room for a whole run at once: pages are only taken as they
            // fill, and the buffer is never copied to grow.
            self.buf.reserve(self.opts.memory);
        }
        self.entries.push(Entry {
            key: key_of(rec),
            at: self.buf.len() as u64,
        });
        self.buf.extend_from_slice(b);
        self.records += 1;
        if self.buf.len() + self.entries.len() * ENTRY >= self.opts.memory {
            self.spill()?;
        }
        Ok(())
    }

    /// Sort what is held: (key, start, end, id) of each record, where the
    /// id is its number in the input.
    fn sorted(&mut self) -> Vec<Span> {
        let base = self.records - self.entries.len() as u64;
        let mut spans: Vec<Span> = (0..self.entries.len())
            .map(|i| {
                let end = self
                    .entries
                    .get(i + 1)
                    .map_or(self.buf.len() as u64, |e| e.at);
                Span {
                    key: self.entries[i].key,
                    at: self.entries[i].at,
                    end,
                    id: base + i as u64,
                }
            })
            .collect();
        // Ids grow with input order, so (key, id) is a stable order.
        spans.sort_unstable_by_key(|s| (s.key, s.id));
        spans
    }

    fn spill(&mut self) -> Result<()> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let dir = match &self.dir {
            Some(d) => d.path().to_path_buf(),
            None => {
                let d = tempfile::Builder::new()
                    .prefix(".accelhub-sort-")
                    .tempdir_in(&self.opts.tmp_dir)
                    .map_err(|source| GenomicsError::Io {
                        path: self.opts.tmp_dir.clone(),
                        source,
                    })?;
                let p = d.path().to_path_buf();
                self.dir = Some(d);
                p
            }
        };
        let path = dir.join(format!("run{}", self.runs.len()));
        let io_err = |source| GenomicsError::Io {
            path: path.clone(),
            source,
        };
        let spans = self.sorted();
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&path).map_err(io_err)?);
        for s in &spans {
            let b = &self.buf[s.at as usize..s.end as usize];
            w.write_all(&(b.len() as u32).to_le_bytes())
                .map_err(io_err)?;
            w.write_all(&s.id.to_le_bytes()).map_err(io_err)?;
            w.write_all(b).map_err(io_err)?;
        }
        w.flush().map_err(io_err)?;
        self.runs.push(path);
        self.buf.clear();
        self.entries.clear();
        Ok(())
    }

    /// Write everything, sorted, to `out` (which indexes it), each record
    /// with the flag `flag` gives it from its id (None: left out);
    /// `progress` hears the records written so far.
    pub fn finish(
        mut self,
        out: &mut SortedWriter,
        flag: &mut dyn FnMut(u64, &Record) -> Option<u16>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        let spans = self.sorted();
        let mut written = 0u64;
        let mut emit = |id: u64, b: &[u8], out: &mut SortedWriter| -> Result<()> {
            let rec = Record::new(b).map_err(GenomicsError::Invalid)?;
            if let Some(f) = flag(id, &rec) {
                out.write_flagged(&rec, f)?;
            }
            written += 1;
            if written.is_multiple_of(100_000) {
                progress(written);
            }
            Ok(())
        };
        if self.runs.is_empty() {
            for s in &spans {
                emit(s.id, &self.buf[s.at as usize..s.end as usize], out)?;
            }
            return Ok(());
        }
        // Merge the runs with what is in memory, by (key, id): ids are
        // unique, so the order is the input's among equal keys.
        let mut runs = Vec::with_capacity(self.runs.len());
        for p in &self.runs {
            let f = File::open(p).map_err(|source| GenomicsError::Io {
                path: p.clone(),
                source,
            })?;
            runs.push(Run {
                reader: BufReader::with_capacity(1 << 18, f),
                buf: Vec::new(),
                id: 0,
                path: p.clone(),
            });
        }
        let mem = runs.len();
        let mut mem_next = 0usize;
        let mut heap = BinaryHeap::new();
        for (i, run) in runs.iter_mut().enumerate() {
            if let Some(k) = run.next()? {
                heap.push(Reverse((k, i)));
            }
        }
        if let Some(s) = spans.first() {
            heap.push(Reverse(((s.key, s.id), mem)));
        }
        while let Some(Reverse((_, src))) = heap.pop() {
            if src == mem {
                let s = spans[mem_next];
                emit(s.id, &self.buf[s.at as usize..s.end as usize], out)?;
                mem_next += 1;
                if let Some(s) = spans.get(mem_next) {
                    heap.push(Reverse(((s.key, s.id), mem)));
                }
            } else {
                let run = &mut runs[src];
                emit(run.id, &run.buf, out)?;
                if let Some(k) = run.next()? {
                    heap.push(Reverse((k, src)));
                }
            }
        }
        // The runs go with the directory.
        drop(runs);
        self.dir.take();
        Ok(())
    }
}

/// A spilled run being merged.
struct Run {
    reader: BufReader<File>,
    buf: Vec<u8>,
    id: u64,
    path: PathBuf,
}

impl Run {
    /// Read the next record; its (key, id), or None at the end.
    fn next(&mut self) -> Result<Option<(u64, u64)>> {
        let err = |source| GenomicsError::Io {
            path: self.path.clone(),
            source,
        };
        let mut head = [0u8; 12];
        match self.reader.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(source) => return Err(err(source)),
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        self.id = u64::from_le_bytes([
            head[4], head[5], head[6], head[7], head[8], head[9], head[10], head[11],
        ]);
        self.buf.resize(len, 0);
        self.reader.read_exact(&mut self.buf).map_err(err)?;
        let rec = Record::new(&self.buf).map_err(GenomicsError::Invalid)?;
        Ok(Some((key_of(&rec), self.id)))
    }
}

/// What a sort did.
#[derive(Debug, Clone, Default)]
pub struct SortStats {
    pub records: u64,
    pub runs: usize,
    pub index: PathBuf,
    /// With duplicate marking, its counts.
    pub markdup: Option<MarkdupStats>,
}

/// Records on their way to a sorted BAM: held (and spilled) by a
/// [`Sorter`], and seen by a [`DupFinder`] when duplicates are marked.
pub struct Collector {
    header: Header,
    opts: SortOptions,
    sorter: Sorter,
    markdup: Option<(MarkdupOptions, DupFinder)>,
}

impl Collector {
    pub fn new(header: Header, opts: &SortOptions, markdup: Option<&MarkdupOptions>) -> Self {
        Collector {
            markdup: markdup.map(|o| (o.clone(), DupFinder::new(&header))),
            header,
            opts: opts.clone(),
            sorter: Sorter::new(opts.clone()),
        }
    }

    /// Take one record; an error is about the record (a pair without
    /// `MC`) or the disk.
    pub fn add(&mut self, rec: &Record) -> Result<()> {
        if let Some((_, f)) = &mut self.markdup {
            f.add(self.sorter.records, rec)
                .map_err(GenomicsError::Invalid)?;
        }
        self.sorter.push(rec)
    }

    pub fn records(&self) -> u64 {
        self.sorter.records
    }

    /// Sort (and mark), write `output` and its index. `progress` hears
    /// the records written.
    pub fn finish(self, output: &Path, progress: &mut dyn FnMut(u64)) -> Result<SortStats> {
        let records = self.sorter.records;
        let runs = self.sorter.spilled();
        let mut marks = self.markdup.map(|(o, f)| f.resolve(&o));
        let mut out =
            SortedWriter::create(output, &self.header, self.opts.level, self.opts.threads)?;
        let mut flag = |id: u64, rec: &Record| match &mut marks {
            Some(m) => m.flag(id, rec),
            None => Some(rec.flag()),
        };
        let written = self.sorter.finish(&mut out, &mut flag, progress);
        let index = out.complete(written)?;
        Ok(SortStats {
            records,
            runs,
            index,
            markdup: marks.map(|m| m.stats),
        })
    }
}

/// Sort the alignments of `input` (SAM or BAM) into `output` (BAM), with
/// its index; with `markdup`, mark duplicates on the way, as
/// [`crate::markdup`] would on the sorted file, without writing it twice.
/// `progress` hears (stage, records).
pub fn sort_file(
    input: &Path,
    output: &Path,
    opts: &SortOptions,
    markdup: Option<&MarkdupOptions>,
    command_line: &str,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<SortStats> {
    let mut reader = crate::bam::reader::Reader::open(input, opts.threads)?;
    let mut header: Header = reader.header.clone();
    header.add_program("accelhub.sort", command_line);
    let mut c = Collector::new(header, opts, markdup);
    let mut buf = Vec::new();
    while reader.next_into(&mut buf)? {
        let n = reader.records;
        let in_record = |e: GenomicsError| match e {
            GenomicsError::Invalid(message) => GenomicsError::Format {
                path: input.to_path_buf(),
                record: n,
                message,
            },
            e => e,
        };
        let rec = Record::new(&buf)
            .map_err(GenomicsError::Invalid)
            .map_err(in_record)?;
        c.add(&rec).map_err(in_record)?;
        if n.is_multiple_of(100_000) {
            progress("read", n);
        }
    }
    c.finish(output, &mut |n| progress("written", n))
}

/// A `Write` that takes an uncompressed BAM stream (the header, then
/// records with their lengths), as the aligner writes it, into a
/// [`Collector`]: alignments go to a sorted BAM without a file between.
pub struct StreamSink {
    opts: SortOptions,
    markdup: Option<MarkdupOptions>,
    pending: Vec<u8>,
    collector: Option<Collector>,
}

impl StreamSink {
    pub fn new(opts: &SortOptions, markdup: Option<&MarkdupOptions>) -> Self {
        StreamSink {
            opts: opts.clone(),
            markdup: markdup.cloned(),
            pending: Vec::new(),
            collector: None,
        }
    }

    /// Write the sorted BAM; an error if the stream ended inside a record.
    pub fn finish(self, output: &Path, progress: &mut dyn FnMut(u64)) -> Result<SortStats> {
        let (Some(c), true) = (self.collector, self.pending.is_empty()) else {
            return Err(GenomicsError::Invalid(
                "the alignment stream ended early".into(),
            ));
        };
        c.finish(output, progress)
    }

    /// Take what `pending` holds in full: the header first, then records.
    fn drain(&mut self) -> Result<()> {
        let mut at = 0;
        if self.collector.is_none() {
            let mut cursor = std::io::Cursor::new(&self.pending[..]);
            match crate::bam::reader::read_bam_header(
                Path::new("the aligner's output"),
                &mut cursor,
            ) {
                Ok(h) => {
                    at = cursor.position() as usize;
                    self.collector = Some(Collector::new(h, &self.opts, self.markdup.as_ref()));
                }
                // Not all of it yet.
                Err(_) if self.pending.len() < 1 << 30 => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        let Some(c) = &mut self.collector else {
            return Ok(());
        };
        while self.pending.len() >= at + 4 {
            let len = u32::from_le_bytes([
                self.pending[at],
                self.pending[at + 1],
                self.pending[at + 2],
                self.pending[at + 3],
            ]) as usize;
            if self.pending.len() < at + 4 + len {
                break;
            }
            let rec =
                Record::new(&self.pending[at + 4..at + 4 + len]).map_err(GenomicsError::Invalid)?;
            c.add(&rec)?;
            at += 4 + len;
        }
        self.pending.drain(..at);
        Ok(())
    }
}

impl Write for StreamSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(data);
        self.drain().map_err(std::io::Error::other)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
