//! Reverse complement of nucleotide sequences, as an Accelhub IP.
//!
//! Input: FASTA (records start with `>`), or plain text with one sequence
//! per line. Output: the reverse complement of every record, in the same
//! format; FASTA sequences are wrapped at `width` columns (parameter,
//! default 60; 0 = one line). IUPAC codes are complemented (R↔Y, K↔M, B↔V,
//! D↔H; S, W, N unchanged), `U` is read as RNA and complemented to `A`,
//! case is kept. Any other character is an error naming its line.
//!
//! Named output `stats` (declared in `ip.toml`): the records and bases
//! read, as JSON, written to `/outputs/stats` where the platform offers it
//! (jobs do; a sync call has the main output only).

use std::io::{self, BufWriter, Read, Write};
use std::process::ExitCode;

fn complement(b: u8) -> Option<u8> {
    let c = match b.to_ascii_uppercase() {
        b'A' => b'T',
        b'T' | b'U' => b'A',
        b'C' => b'G',
        b'G' => b'C',
        b'R' => b'Y',
        b'Y' => b'R',
        b'K' => b'M',
        b'M' => b'K',
        b'B' => b'V',
        b'V' => b'B',
        b'D' => b'H',
        b'H' => b'D',
        b'S' => b'S',
        b'W' => b'W',
        b'N' => b'N',
        b'-' => b'-',
        _ => return None,
    };
    Some(if b.is_ascii_lowercase() { c.to_ascii_lowercase() } else { c })
}

/// `"width": N` from the parameters object, without a JSON library.
fn width_param() -> Result<usize, String> {
    let params = std::env::var("ACCELHUB_PARAMS").unwrap_or_default();
    let Some(at) = params.find("\"width\"") else {
        return Ok(60);
    };
    let rest = params[at + 7..].trim_start();
    let rest = rest.strip_prefix(':').ok_or("malformed parameters")?.trim_start();
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits
        .parse()
        .map_err(|_| format!("parameter width must be a non-negative integer, got {rest:.10}"))
}

fn emit_revcomp(seq: &[u8], line_of: &[usize], width: usize, out: &mut impl Write) -> Result<(), String> {
    let mut rc = Vec::with_capacity(seq.len());
    for (i, &b) in seq.iter().enumerate().rev() {
        match complement(b) {
            Some(c) => rc.push(c),
            None => {
                return Err(format!(
                    "line {}: '{}' is not a nucleotide code",
                    line_of[i],
                    (b as char).escape_default()
                ))
            }
        }
    }
    let w = if width == 0 { rc.len().max(1) } else { width };
    for chunk in rc.chunks(w) {
        out.write_all(chunk).map_err(|e| e.to_string())?;
        out.write_all(b"\n").map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn run() -> Result<(), String> {
    let width = width_param()?;
    let mut input = Vec::new();
    io::stdin().read_to_end(&mut input).map_err(|e| e.to_string())?;
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let fasta = input.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'>');
    let mut seq = Vec::new();
    let mut line_of = Vec::new();
    let mut records = 0usize;
    for (n, raw) in input.split(|&b| b == b'\n').enumerate() {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if fasta {
            if line.first() == Some(&b'>') {
                if records > 0 {
                    emit_revcomp(&seq, &line_of, width, &mut out)?;
                }
                seq.clear();
                line_of.clear();
                records += 1;
                out.write_all(line).map_err(|e| e.to_string())?;
                out.write_all(b"\n").map_err(|e| e.to_string())?;
            } else {
                for &b in line.iter().filter(|b| !b.is_ascii_whitespace()) {
                    seq.push(b);
                    line_of.push(n + 1);
                }
            }
        } else if !line.is_empty() {
            let line_no = vec![n + 1; line.len()];
            emit_revcomp(line, &line_no, 0, &mut out)?;
            records += 1;
        }
    }
    if fasta && records > 0 {
        emit_revcomp(&seq, &line_of, width, &mut out)?;
    }
    out.flush().map_err(|e| e.to_string())?;
    if std::path::Path::new("/outputs").is_dir() {
        let bases = input
            .split(|&b| b == b'\n')
            .filter(|l| !(fasta && l.first() == Some(&b'>')))
            .flatten()
            .filter(|b| !b.is_ascii_whitespace())
            .count();
        std::fs::write(
            "/outputs/stats",
            format!("{{\"records\":{records},\"bases\":{bases}}}\n"),
        )
        .map_err(|e| format!("writing /outputs/stats: {e}"))?;
    }
    eprintln!("revcomp: {records} sequence(s)");
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("revcomp: {e}");
            ExitCode::from(2)
        }
    }
}
