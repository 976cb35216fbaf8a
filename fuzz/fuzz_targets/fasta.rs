//! FASTA references, plain and gzip: `fasta::parse` over
//! `io::from_reader` on any bytes. If the first byte is odd, the rest is
//! gzip-compressed here first, so that mutations of the text also reach
//! the parser through the decompressor; otherwise the bytes go as they are
//! (gzip is then detected from its magic, exercising corrupt streams).
#![no_main]

use accelhub_genomics::{fasta, io};
use libfuzzer_sys::fuzz_target;
use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

fn input_bytes(data: &[u8]) -> Option<Vec<u8>> {
    let (&mode, rest) = data.split_first()?;
    if mode & 1 == 1 {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(rest).ok()?;
        gz.finish().ok()
    } else {
        Some(rest.to_vec())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(bytes) = input_bytes(data) else {
        return;
    };
    let Ok(mut input) =
        io::from_reader(Path::new("fuzz.fa"), Box::new(std::io::Cursor::new(bytes)))
    else {
        return;
    };
    let mut last = 0u64;
    let Ok(r) = fasta::parse(&mut input, &mut |n| {
        assert!(n >= last, "progress went backwards");
        last = n;
    }) else {
        return;
    };
    // A parsed reference: contigs back to back, none empty, names unique
    // and non-empty, every base a code 0..=4.
    assert!(!r.contigs.is_empty());
    let mut offset = 0;
    let mut names = HashSet::new();
    for (i, c) in r.contigs.iter().enumerate() {
        assert_eq!(c.offset, offset);
        assert!(c.len > 0);
        assert!(!c.name.is_empty());
        assert!(names.insert(c.name.as_str()), "duplicate contig name");
        assert_eq!(r.contig_at(c.offset), Some(i));
        assert_eq!(r.contig_at(c.offset + c.len - 1), Some(i));
        offset += c.len;
    }
    assert_eq!(offset, r.seq.len() as u64);
    assert_eq!(r.contig_at(offset), None);
    assert!(r.seq.iter().all(|&b| b <= 4));
});
