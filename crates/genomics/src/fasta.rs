//! FASTA references: one or many contigs, plain or gzip. Names are the
//! first word of the header line. N and the IUPAC ambiguity codes become N.

use crate::io::{open, read_line, Input};
use crate::seq::{CODE, INVALID};
use crate::{GenomicsError, Result};
use std::collections::HashSet;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contig {
    pub name: String,
    /// Where the contig starts in [`Reference::seq`].
    pub offset: u64,
    pub len: u64,
}

/// A reference: its contigs, concatenated as nucleotide codes.
#[derive(Debug, Clone, Default)]
pub struct Reference {
    pub contigs: Vec<Contig>,
    pub seq: Vec<u8>,
}

impl Reference {
    /// The contig holding global position `pos`, by binary search.
    pub fn contig_at(&self, pos: u64) -> Option<usize> {
        let i = self.contigs.partition_point(|c| c.offset <= pos);
        let i = i.checked_sub(1)?;
        (pos < self.contigs[i].offset + self.contigs[i].len).then_some(i)
    }
}

/// Read a whole reference; `progress` gets the bases read so far.
pub fn read_reference(path: &Path, progress: &mut dyn FnMut(u64)) -> Result<Reference> {
    let mut input = open(path)?;
    parse(&mut input, progress)
}

/// Read a whole reference from an opened input (see
/// [`crate::io::from_reader`]).
pub fn parse(input: &mut Input, progress: &mut dyn FnMut(u64)) -> Result<Reference> {
    let mut r = Reference::default();
    let mut names = HashSet::new();
    let mut line = Vec::new();
    let mut line_no = 0u64;
    let mut last_report = 0u64;
    let fmt = |input: &Input, record: u64, message: String| GenomicsError::Format {
        path: input.path.clone(),
        record,
        message,
    };
    while read_line(input, &mut line)? {
        line_no += 1;
        if let Some(header) = line.strip_prefix(b">") {
            close_contig(input, &mut r)?;
            let record = r.contigs.len() as u64 + 1;
            let name = header
                .split(|b| b.is_ascii_whitespace())
                .next()
                .unwrap_or_default();
            if name.is_empty() {
                return Err(fmt(
                    input,
                    record,
                    format!("line {line_no}: the header has no name"),
                ));
            }
            let name = String::from_utf8_lossy(name).into_owned();
            if !names.insert(name.clone()) {
                return Err(fmt(
                    input,
                    record,
                    format!("line {line_no}: a second contig named '{name}'"),
                ));
            }
            r.contigs.push(Contig {
                name,
                offset: r.seq.len() as u64,
                len: 0,
            });
            continue;
        }
        if r.contigs.is_empty() {
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            return Err(fmt(
                input,
                1,
                format!("line {line_no}: expected a '>' header line before any sequence"),
            ));
        }
        for (col, &b) in line.iter().enumerate() {
            let c = CODE[b as usize];
            if c == INVALID {
                if b.is_ascii_whitespace() {
                    continue;
                }
                let contig = r.contigs.last().map(|c| c.name.as_str()).unwrap_or("");
                return Err(fmt(
                    input,
                    r.contigs.len() as u64,
                    format!(
                        "contig '{contig}', line {line_no}, column {}: {:?} is not a nucleotide letter",
                        col + 1,
                        b as char
                    ),
                ));
            }
            r.seq.push(c);
        }
        let n = r.seq.len() as u64;
        if n - last_report >= 1 << 20 {
            progress(n);
            last_report = n;
        }
    }
    close_contig(input, &mut r)?;
    if r.contigs.is_empty() {
        return Err(GenomicsError::Invalid(format!(
            "{}: no sequences (a FASTA file starts with a '>' header line)",
            input.path.display()
        )));
    }
    progress(r.seq.len() as u64);
    Ok(r)
}

fn close_contig(input: &Input, r: &mut Reference) -> Result<()> {
    let end = r.seq.len() as u64;
    let n = r.contigs.len() as u64;
    if let Some(c) = r.contigs.last_mut() {
        c.len = end - c.offset;
        if c.len == 0 {
            return Err(GenomicsError::Format {
                path: input.path.clone(),
                record: n,
                message: format!("contig '{}' has no sequence", c.name),
            });
        }
    }
    Ok(())
}
