//! Reading alignments, SAM or BAM (told apart by content, not by name),
//! as BAM record bytes. Errors name the file and the record.

use super::record::{from_sam, Record};
use crate::{GenomicsError, Result};
use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

/// A header: its SAM text and the references, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Header {
    pub text: Vec<u8>,
    pub refs: Vec<(String, u64)>,
}

impl Header {
    /// The binary BAM header.
    pub fn to_bam(&self) -> Vec<u8> {
        let contigs: Vec<(&str, u64)> = self.refs.iter().map(|(n, l)| (n.as_str(), *l)).collect();
        super::header(&self.text, &contigs)
    }

    /// The text with `@HD SO:` set to `order` (an `@HD` line is added if
    /// there is none).
    pub fn with_sort_order(&self, order: &str) -> Header {
        let text = String::from_utf8_lossy(&self.text);
        let mut out = String::new();
        let mut found = false;
        for line in text.lines() {
            if line.starts_with("@HD\t") || line == "@HD" {
                found = true;
                let fields: Vec<&str> = line
                    .split('\t')
                    .filter(|f| {
                        !f.starts_with("SO:") && !f.starts_with("GO:") && !f.starts_with("SS:")
                    })
                    .collect();
                out.push_str(&fields.join("\t"));
                out.push_str("\tSO:");
                out.push_str(order);
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        if !found {
            out = format!("@HD\tVN:1.6\tSO:{order}\n{out}");
        }
        Header {
            text: out.into_bytes(),
            refs: self.refs.clone(),
        }
    }

    /// The value of `@HD SO:`.
    pub fn sort_order(&self) -> Option<String> {
        let text = std::str::from_utf8(&self.text).ok()?;
        let hd = text.lines().find(|l| l.starts_with("@HD\t"))?;
        hd.split('\t')
            .find_map(|f| f.strip_prefix("SO:"))
            .map(str::to_string)
    }

    /// Append a `@PG` line.
    pub fn add_program(&mut self, id: &str, command_line: &str) {
        let mut id = id.to_string();
        let text = String::from_utf8_lossy(&self.text).into_owned();
        let mut n = 1;
        while text
            .lines()
            .any(|l| l.starts_with("@PG\t") && l.split('\t').any(|f| f == format!("ID:{id}")))
        {
            id = format!("{}.{n}", id.split('.').next().unwrap_or(&id));
            n += 1;
        }
        let line = format!(
            "@PG\tID:{id}\tPN:accelhub\tVN:{}\tCL:{}\n",
            env!("CARGO_PKG_VERSION"),
            command_line.replace(['\t', '\n'], " ")
        );
        self.text.extend_from_slice(line.as_bytes());
    }

    /// The `@RG` lines, each as a lookup of its fields by tag (`b"ID:"`).
    fn read_groups(&self) -> impl Iterator<Item = impl Fn(&[u8]) -> Option<Vec<u8>> + '_> + '_ {
        self.text
            .split(|&c| c == b'\n')
            .filter(|line| line.starts_with(b"@RG\t"))
            .map(|line| {
                move |tag: &[u8]| {
                    line.split(|&c| c == b'\t')
                        .find(|f| f.starts_with(tag))
                        .map(|f| f[tag.len()..].to_vec())
                }
            })
    }

    /// Library (`LB`) of each read group (`ID`); a group without `LB` is
    /// its own library.
    pub fn libraries(&self) -> HashMap<Vec<u8>, Vec<u8>> {
        let mut out = HashMap::new();
        for field in self.read_groups() {
            if let Some(id) = field(b"ID:") {
                let lb = field(b"LB:").unwrap_or_else(|| id.clone());
                out.insert(id, lb);
            }
        }
        out
    }

    /// The sample (`SM`) of the first read group that names one.
    pub fn sample(&self) -> Option<String> {
        self.read_groups()
            .find_map(|field| field(b"SM:"))
            .map(|s| String::from_utf8_lossy(&s).into_owned())
    }
}

enum Source {
    Bam,
    Sam {
        refs: HashMap<Vec<u8>, i32>,
        line: Vec<u8>,
    },
}

/// Alignments from a SAM or BAM file (or stream).
pub struct Reader {
    path: PathBuf,
    input: Box<dyn BufRead + Send>,
    source: Source,
    pub header: Header,
    /// Records read so far.
    pub records: u64,
}

fn format_error(path: &Path, record: u64, message: impl Into<String>) -> GenomicsError {
    GenomicsError::Format {
        path: path.to_path_buf(),
        record,
        message: message.into(),
    }
}

impl Reader {
    /// Open a SAM or BAM file (BGZF is decompressed on `threads`
    /// threads). A BAM without its end-of-file block is refused before
    /// anything is read.
    pub fn open(path: &Path, threads: usize) -> Result<Reader> {
        let io_err = |source| GenomicsError::Io {
            path: path.to_path_buf(),
            source,
        };
        let bgzf_complete = crate::bgzf::check_eof(path).map_err(io_err)?;
        let input: Box<dyn BufRead + Send> = if is_bgzf(path).map_err(io_err)? {
            let f = std::fs::File::open(path).map_err(io_err)?;
            Box::new(crate::bgzf::Reader::new(
                std::io::BufReader::with_capacity(1 << 20, f),
                threads,
            ))
        } else {
            crate::io::open(path)?.reader
        };
        let mut r = Reader::from_input(path, input)?;
        if matches!(r.source, Source::Bam) && !bgzf_complete {
            return Err(format_error(
                path,
                0,
                "the BAM is truncated: it lacks the BGZF end-of-file block",
            ));
        }
        r.path = path.to_path_buf();
        Ok(r)
    }

    /// Read from a decompressed stream; `name` stands for it in errors.
    pub fn from_input(name: &Path, mut input: Box<dyn BufRead + Send>) -> Result<Reader> {
        let path = name.to_path_buf();
        let err = |e| crate::io::read_error(&path, e);
        let head = input.fill_buf().map_err(err)?;
        if head.starts_with(b"BAM\x01") {
            let header = read_bam_header(&path, &mut input)?;
            return Ok(Reader {
                path,
                input,
                source: Source::Bam,
                header,
                records: 0,
            });
        }
        if head.len() >= 4 && head[..4].contains(&0) {
            return Err(format_error(&path, 0, "this is neither SAM nor BAM"));
        }
        // SAM: the header lines, then the first record.
        let mut text = Vec::new();
        let mut line = Vec::new();
        loop {
            line.clear();
            if input.read_until(b'\n', &mut line).map_err(err)? == 0 {
                break;
            }
            if line.first() != Some(&b'@') {
                break;
            }
            text.extend_from_slice(&line);
        }
        let mut refs = Vec::new();
        for l in text
            .split(|&c| c == b'\n')
            .filter(|l| l.starts_with(b"@SQ\t"))
        {
            let l = String::from_utf8_lossy(l);
            let field = |t: &str| {
                l.split('\t')
                    .find_map(|f| f.strip_prefix(t).map(str::to_string))
            };
            let (Some(name), Some(len)) = (
                field("SN:"),
                field("LN:").and_then(|v| v.trim().parse().ok()),
            ) else {
                return Err(format_error(
                    &path,
                    0,
                    format!("the header line '{}' needs SN and LN", l.trim()),
                ));
            };
            refs.push((name, len));
        }
        let ids = refs
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.as_bytes().to_vec(), i as i32))
            .collect();
        Ok(Reader {
            path,
            input,
            source: Source::Sam { refs: ids, line },
            header: Header { text, refs },
            records: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next record's bytes into `buf` (cleared first); false at the end.
    pub fn next_into(&mut self, buf: &mut Vec<u8>) -> Result<bool> {
        buf.clear();
        let n = self.records + 1;
        let path = &self.path;
        match &mut self.source {
            Source::Bam => {
                let mut len = [0u8; 4];
                match crate::bgzf::read_full(&mut self.input, &mut len) {
                    Ok(0) => return Ok(false),
                    Ok(4) => {}
                    Ok(_) => return Err(format_error(path, n, "the file ends inside a record")),
                    Err(e) => return Err(crate::io::read_error(path, e)),
                }
                let len = u32::from_le_bytes(len) as usize;
                if !(32..1 << 28).contains(&len) {
                    return Err(format_error(
                        path,
                        n,
                        format!("a record claims {len} bytes"),
                    ));
                }
                buf.resize(len, 0);
                self.input.read_exact(buf).map_err(|e| match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => {
                        format_error(path, n, "the file ends inside a record")
                    }
                    _ => crate::io::read_error(path, e),
                })?;
                Record::new(buf).map_err(|m| format_error(path, n, m))?;
            }
            Source::Sam { refs, line } => {
                loop {
                    if line.is_empty() {
                        let got = self
                            .input
                            .read_until(b'\n', line)
                            .map_err(|e| crate::io::read_error(path, e))?;
                        if got == 0 {
                            return Ok(false);
                        }
                    }
                    while matches!(line.last(), Some(b'\n' | b'\r')) {
                        line.pop();
                    }
                    if !line.is_empty() {
                        break;
                    }
                }
                from_sam(line, refs, buf).map_err(|m| format_error(path, n, m))?;
                line.clear();
            }
        }
        self.records = n;
        Ok(true)
    }
}

/// A sorted, indexed BAM read region by region.
pub struct IndexedReader {
    path: PathBuf,
    bgzf: crate::bgzf::Reader<std::io::BufReader<std::fs::File>>,
    index: crate::bai::Index,
    pub header: Header,
    region: (i32, i64, i64),
    records: u64,
}

impl IndexedReader {
    /// Open `bam` and its index (`.bai` or `.csi` beside it).
    pub fn open(bam: &Path) -> Result<IndexedReader> {
        let io_err = |p: &Path| {
            let p = p.to_path_buf();
            move |source| GenomicsError::Io { path: p, source }
        };
        let index_path = ["bai", "csi"]
            .iter()
            .map(|e| {
                let mut s = bam.as_os_str().to_owned();
                s.push(".");
                s.push(e);
                PathBuf::from(s)
            })
            .find(|p| p.exists())
            .ok_or_else(|| {
                format_error(
                    bam,
                    0,
                    "the BAM has no index beside it (.bai or .csi): sort it with accelhub genomics sort, or run samtools index",
                )
            })?;
        let index = crate::bai::Index::read(&index_path).map_err(io_err(&index_path))?;
        if !crate::bgzf::check_eof(bam).map_err(io_err(bam))? {
            return Err(format_error(
                bam,
                0,
                "the BAM is truncated: it lacks the BGZF end-of-file block",
            ));
        }
        let f = std::fs::File::open(bam).map_err(io_err(bam))?;
        let mut bgzf = crate::bgzf::Reader::new(std::io::BufReader::with_capacity(1 << 16, f), 1);
        let header = read_bam_header(bam, &mut bgzf)?;
        Ok(IndexedReader {
            path: bam.to_path_buf(),
            bgzf,
            index,
            header,
            region: (-1, 0, 0),
            records: 0,
        })
    }

    /// Read the records overlapping `[beg, end)` (0-based) of reference
    /// `ref_id` with [`IndexedReader::next_into`].
    pub fn fetch(&mut self, ref_id: usize, beg: i64, end: i64) -> Result<()> {
        if ref_id >= self.header.refs.len() {
            return Err(GenomicsError::Invalid(format!(
                "{}: no reference number {ref_id}",
                self.path.display()
            )));
        }
        self.region = (ref_id as i32, beg, end);
        match self.index.start_of(ref_id, beg, end) {
            Some(v) => self
                .bgzf
                .seek_virtual(v)
                .map_err(|e| crate::io::read_error(&self.path, e))?,
            None => self.region = (-1, 0, 0),
        }
        Ok(())
    }

    /// The next record of the region into `buf`; false past its end.
    pub fn next_into(&mut self, buf: &mut Vec<u8>) -> Result<bool> {
        let (ref_id, beg, end) = self.region;
        if ref_id < 0 {
            return Ok(false);
        }
        loop {
            buf.clear();
            let mut len = [0u8; 4];
            let n = self.records + 1;
            match crate::bgzf::read_full(&mut self.bgzf, &mut len) {
                Ok(0) => return Ok(false),
                Ok(4) => {}
                Ok(_) => return Err(format_error(&self.path, n, "the file ends inside a record")),
                Err(e) => return Err(crate::io::read_error(&self.path, e)),
            }
            let len = u32::from_le_bytes(len) as usize;
            if !(32..1 << 28).contains(&len) {
                return Err(format_error(
                    &self.path,
                    n,
                    format!("a record claims {len} bytes"),
                ));
            }
            buf.resize(len, 0);
            self.bgzf
                .read_exact(buf)
                .map_err(|e| crate::io::read_error(&self.path, e))?;
            self.records = n;
            let r = Record::new(buf).map_err(|m| format_error(&self.path, n, m))?;
            if r.ref_id() != ref_id || r.pos() as i64 >= end {
                self.region = (-1, 0, 0);
                return Ok(false);
            }
            if r.end() > beg {
                return Ok(true);
            }
        }
    }
}

/// Whether the file starts with a BGZF block header.
fn is_bgzf(path: &Path) -> std::io::Result<bool> {
    let mut head = [0u8; 18];
    let n = crate::bgzf::read_full(&mut std::fs::File::open(path)?, &mut head)?;
    Ok(n == 18 && head[..4] == [0x1f, 0x8b, 0x08, 0x04] && head[12..14] == *b"BC")
}

/// Read a BAM header (after BGZF decompression) from `input`.
pub(crate) fn read_bam_header(path: &Path, input: &mut impl Read) -> Result<Header> {
    let err = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            format_error(path, 0, "the file ends inside the header")
        }
        _ => crate::io::read_error(path, e),
    };
    let mut four = [0u8; 4];
    input.read_exact(&mut four).map_err(err)?;
    let i32_of = |input: &mut dyn Read| -> Result<usize> {
        let mut b = [0u8; 4];
        input.read_exact(&mut b).map_err(err)?;
        let v = i32::from_le_bytes(b);
        usize::try_from(v)
            .ok()
            .filter(|&v| v < 1 << 30)
            .ok_or_else(|| format_error(path, 0, "the header declares an invalid length"))
    };
    let l_text = i32_of(input)?;
    let mut text = vec![0u8; l_text];
    input.read_exact(&mut text).map_err(err)?;
    while text.last() == Some(&0) {
        text.pop();
    }
    let n_ref = i32_of(input)?;
    let mut refs = Vec::with_capacity(n_ref.min(1 << 16));
    for _ in 0..n_ref {
        let l_name = i32_of(input)?;
        let mut name = vec![0u8; l_name];
        input.read_exact(&mut name).map_err(err)?;
        while name.last() == Some(&0) {
            name.pop();
        }
        let len = i32_of(input)? as u64;
        refs.push((String::from_utf8_lossy(&name).into_owned(), len));
    }
    Ok(Header { text, refs })
}
