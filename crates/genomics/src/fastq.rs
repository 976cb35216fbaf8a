//! FASTQ reads, streamed: single files or pairs read in step. Every error
//! names the file and the 1-based record number.

use crate::io::{open, read_line, Input};
use crate::seq::encode_into;
use crate::{GenomicsError, Result};
use std::path::Path;

/// One read. `seq` holds nucleotide codes, `qual` the Phred+33 letters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Read {
    /// The name: the header's first word, without a trailing `/1` or `/2`.
    pub name: Vec<u8>,
    pub seq: Vec<u8>,
    pub qual: Vec<u8>,
}

pub struct FastqReader {
    input: Input,
    record: u64,
    line: Vec<u8>,
}

impl FastqReader {
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self::from_input(open(path)?))
    }

    /// Read records from an opened input (see [`crate::io::from_reader`]).
    pub fn from_input(input: Input) -> Self {
        FastqReader {
            input,
            record: 0,
            line: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.input.path
    }

    /// Records read so far.
    pub fn records(&self) -> u64 {
        self.record
    }

    fn error(&self, message: impl Into<String>) -> GenomicsError {
        GenomicsError::Format {
            path: self.input.path.clone(),
            record: self.record,
            message: message.into(),
        }
    }

    /// Read the next record into `r`; false at the end of the file.
    pub fn next_into(&mut self, r: &mut Read) -> Result<bool> {
        // Header, skipping blank lines between records.
        loop {
            if !read_line(&mut self.input, &mut self.line)? {
                return Ok(false);
            }
            if !self.line.is_empty() {
                break;
            }
        }
        self.record += 1;
        let Some(header) = self.line.strip_prefix(b"@") else {
            return Err(self.error(format!(
                "expected a header line starting with '@', found {:?}",
                preview(&self.line)
            )));
        };
        let mut name = header
            .split(|b| b.is_ascii_whitespace())
            .next()
            .unwrap_or_default();
        if name.ends_with(b"/1") || name.ends_with(b"/2") {
            name = &name[..name.len() - 2];
        }
        if name.is_empty() {
            return Err(self.error("the header has no read name"));
        }
        r.name.clear();
        r.name.extend_from_slice(name);

        if !read_line(&mut self.input, &mut self.line)? {
            return Err(self.error("the file ends after the record's header"));
        }
        if let Err(i) = encode_into(&self.line, &mut r.seq) {
            return Err(self.error(format!(
                "base {} of the sequence is {:?}, not a nucleotide letter",
                i + 1,
                self.line[i] as char
            )));
        }

        if !read_line(&mut self.input, &mut self.line)? {
            return Err(self.error("the file ends after the record's sequence"));
        }
        if !self.line.starts_with(b"+") {
            return Err(self.error(format!(
                "expected the '+' separator line, found {:?}",
                preview(&self.line)
            )));
        }
        if !read_line(&mut self.input, &mut self.line)? {
            return Err(self.error("the file ends before the record's quality line"));
        }
        if self.line.len() != r.seq.len() {
            return Err(self.error(format!(
                "{} quality values for {} bases",
                self.line.len(),
                r.seq.len()
            )));
        }
        if let Some(i) = self.line.iter().position(|&q| !(b'!'..=b'~').contains(&q)) {
            return Err(self.error(format!(
                "quality value {} is {:?}, outside '!'..'~'",
                i + 1,
                self.line[i] as char
            )));
        }
        r.qual.clear();
        r.qual.extend_from_slice(&self.line);
        Ok(true)
    }
}

fn preview(line: &[u8]) -> String {
    let s = String::from_utf8_lossy(&line[..line.len().min(40)]).into_owned();
    if line.len() > 40 {
        s + "…"
    } else {
        s
    }
}

/// Two FASTQ files read in step: same number of reads, same names.
pub struct PairReader {
    pub r1: FastqReader,
    pub r2: FastqReader,
}

impl PairReader {
    pub fn open(p1: &Path, p2: &Path) -> Result<Self> {
        Ok(PairReader {
            r1: FastqReader::open(p1)?,
            r2: FastqReader::open(p2)?,
        })
    }

    pub fn new(r1: FastqReader, r2: FastqReader) -> Self {
        PairReader { r1, r2 }
    }

    /// Read the next pair; false when both files end together.
    pub fn next_into(&mut self, a: &mut Read, b: &mut Read) -> Result<bool> {
        let more1 = self.r1.next_into(a)?;
        let more2 = self.r2.next_into(b)?;
        match (more1, more2) {
            (false, false) => Ok(false),
            (true, true) => {
                if a.name != b.name {
                    return Err(self.r2.error(format!(
                        "read name '{}' does not match '{}', record {} of {}",
                        String::from_utf8_lossy(&b.name),
                        String::from_utf8_lossy(&a.name),
                        self.r1.records(),
                        self.r1.path().display()
                    )));
                }
                Ok(true)
            }
            (true, false) | (false, true) => {
                let (longer, shorter) = if more1 {
                    (&self.r1, &self.r2)
                } else {
                    (&self.r2, &self.r1)
                };
                Err(GenomicsError::Invalid(format!(
                    "the pair files differ in length: {} ends after {} reads, {} has more",
                    shorter.path().display(),
                    shorter.records(),
                    longer.path().display()
                )))
            }
        }
    }
}
