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

/// Write the samtools-style index (`.fai`) of a plain FASTA file beside
/// it, as samtools faidx would, for the tools that read the reference by
/// region. Returns its path, or None where no `.fai` can describe the
/// file: gzip-compressed, or lines of uneven length within a contig.
pub fn write_fai(path: &Path) -> Result<Option<std::path::PathBuf>> {
    use std::io::{BufRead, Read, Write};
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| GenomicsError::Io { path: p, source }
    };
    let mut f = std::io::BufReader::new(std::fs::File::open(path).map_err(io_err(path))?);
    let mut magic = [0u8; 2];
    let got = f.read(&mut magic).map_err(io_err(path))?;
    if got == 2 && magic == [0x1f, 0x8b] {
        return Ok(None);
    }
    let mut f = std::io::BufReader::new(std::fs::File::open(path).map_err(io_err(path))?);
    // (name, length, offset, bases per line, bytes per line)
    let mut rows: Vec<(String, u64, u64, u64, u64)> = Vec::new();
    let mut at = 0u64;
    let mut line = Vec::new();
    // The current contig's line shape: (bases, bytes) of its first line,
    // and whether a shorter (last) line has been seen.
    let mut shape: Option<(u64, u64)> = None;
    let mut ended = false;
    loop {
        line.clear();
        let n = f.read_until(b'\n', &mut line).map_err(io_err(path))? as u64;
        if n == 0 {
            break;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if let Some(h) = text.strip_prefix(b">") {
            let name = h
                .split(|b| b.is_ascii_whitespace())
                .next()
                .unwrap_or_default();
            rows.push((String::from_utf8_lossy(name).into_owned(), 0, at + n, 0, 0));
            shape = None;
            ended = false;
        } else if let Some(row) = rows.last_mut() {
            let bases = text.len() as u64;
            if bases > 0 {
                match shape {
                    None => {
                        shape = Some((bases, n));
                        row.3 = bases;
                        row.4 = n;
                    }
                    Some((b, _)) if ended || bases > b => return Ok(None),
                    Some((b, _)) => ended = bases < b,
                }
                row.1 += bases;
            }
        }
        at += n;
    }
    let fai = crate::io::with_suffix(path, ".fai");
    let partial = crate::io::with_suffix(&fai, ".partial");
    let mut out = String::new();
    for (name, len, off, bases, bytes) in rows {
        out.push_str(&format!("{name}\t{len}\t{off}\t{bases}\t{bytes}\n"));
    }
    let written = std::fs::File::create(&partial)
        .and_then(|mut w| w.write_all(out.as_bytes()))
        .and_then(|_| std::fs::rename(&partial, &fai));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(io_err(&fai)(e));
    }
    Ok(Some(fai))
}
