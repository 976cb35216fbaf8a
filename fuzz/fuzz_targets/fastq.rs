//! FASTQ reads, plain and gzip: `FastqReader::next_into` over
//! `io::from_reader` on any bytes, record by record until the end or the
//! first error. The first byte chooses gzip as in the `fasta` target.
#![no_main]

use accelhub_genomics::fastq::{FastqReader, Read};
use accelhub_genomics::io;
use libfuzzer_sys::fuzz_target;
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
    let Ok(input) = io::from_reader(Path::new("fuzz.fq"), Box::new(std::io::Cursor::new(bytes)))
    else {
        return;
    };
    let mut reader = FastqReader::from_input(input);
    let mut r = Read::default();
    let mut n = 0u64;
    while let Ok(true) = reader.next_into(&mut r) {
        n += 1;
        assert_eq!(reader.records(), n);
        // A read: a name without '/1' '/2' or blanks, as many qualities
        // as bases, bases as codes 0..=4, qualities Phred+33 letters.
        assert!(!r.name.is_empty());
        assert!(!r.name.iter().any(|b| b.is_ascii_whitespace()));
        assert_eq!(r.seq.len(), r.qual.len());
        assert!(r.seq.iter().all(|&b| b <= 4));
        assert!(r.qual.iter().all(|q| (b'!'..=b'~').contains(q)));
    }
});
