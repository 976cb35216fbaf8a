//! Opening inputs: plain text or gzip (including bgzip's concatenated
//! members), detected from the first bytes, not from the file name.

use crate::{GenomicsError, Result};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// A buffered reader over a file's decompressed bytes.
pub struct Input {
    pub path: PathBuf,
    pub reader: Box<dyn BufRead + Send>,
}

/// Open `path`, decompressing it if it is gzip.
pub fn open(path: &Path) -> Result<Input> {
    let file = File::open(path).map_err(|source| GenomicsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    from_reader(path, Box::new(file))
}

/// Read from any byte source (a stream from an object store, memory),
/// decompressing it if it is gzip. `name` stands for the source in errors.
pub fn from_reader(name: &Path, source: Box<dyn Read + Send>) -> Result<Input> {
    let path = name;
    let err = |source| read_error(path, source);
    let mut buffered = BufReader::with_capacity(1 << 16, source);
    let head = buffered.fill_buf().map_err(err)?;
    let gzip = head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b;
    let reader: Box<dyn BufRead + Send> = if gzip {
        Box::new(BufReader::with_capacity(
            1 << 16,
            flate2::bufread::MultiGzDecoder::new(buffered),
        ))
    } else {
        Box::new(buffered)
    };
    Ok(Input {
        path: path.to_path_buf(),
        reader,
    })
}

/// Describe a read error: a damaged gzip stream says so.
pub(crate) fn read_error(path: &Path, e: std::io::Error) -> GenomicsError {
    let source = match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            std::io::Error::new(e.kind(), "the file ends early (a truncated gzip stream?)")
        }
        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData => {
            std::io::Error::new(e.kind(), format!("corrupt compressed data: {e}"))
        }
        _ => e,
    };
    GenomicsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Read one line (without its `\n` or `\r\n`) into `buf`; false at the end.
pub(crate) fn read_line(input: &mut Input, buf: &mut Vec<u8>) -> Result<bool> {
    buf.clear();
    let n = input
        .reader
        .read_until(b'\n', buf)
        .map_err(|e| read_error(&input.path, e))?;
    if n == 0 {
        return Ok(false);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    Ok(true)
}

/// Everything left in `input` (for small files and tests).
pub fn read_all(input: &mut Input) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    input
        .reader
        .read_to_end(&mut v)
        .map_err(|e| read_error(&input.path, e))?;
    Ok(v)
}

/// `path` with `suffix` appended to its file name (`x.bam` and `.bai`:
/// `x.bam.bai`): the name of a file that goes beside it.
pub fn with_suffix(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    std::path::PathBuf::from(s)
}
