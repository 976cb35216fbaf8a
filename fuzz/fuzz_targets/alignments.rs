//! SAM and BAM input, as `genomics sort` and `genomics markdup` read it:
//! `bam::reader::Reader` over any bytes, plain (SAM text) or, when the
//! first byte is odd, compressed into BGZF by our writer and read back by
//! our threaded BGZF reader (so the BAM header and record parsers see any
//! bytes too). Every record it accepts must have every field in bounds,
//! its CIGAR, tags and ends readable, and duplicate marking must take it
//! and decide without panicking.
#![no_main]

use accelhub_genomics::bam::reader::{Header, Reader};
use accelhub_genomics::bam::record::Record;
use accelhub_genomics::bgzf;
use accelhub_genomics::markdup::{DupFinder, MarkdupOptions};
use libfuzzer_sys::fuzz_target;
use std::io::{BufRead, Write};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let input: Box<dyn BufRead + Send> = if mode & 1 == 1 {
        let mut w = bgzf::Writer::new(Vec::new(), 1, 1);
        if w.write_all(rest).is_err() {
            return;
        }
        let Ok((bytes, _)) = w.finish() else { return };
        Box::new(bgzf::Reader::new(std::io::Cursor::new(bytes), 1 + (mode as usize >> 1) % 3))
    } else {
        Box::new(std::io::Cursor::new(rest.to_vec()))
    };
    let Ok(mut reader) = Reader::from_input(Path::new("fuzz.bam"), input) else {
        return;
    };
    let header: Header = reader.header.clone();
    let _ = header.to_bam();
    let _ = header.with_sort_order("coordinate");
    let mut finder = DupFinder::new(&header);
    let mut buf = Vec::new();
    let mut all = Vec::new();
    let mut n = 0u64;
    while let Ok(true) = reader.next_into(&mut buf) {
        let Ok(r) = Record::new(&buf) else {
            panic!("the reader handed out a record that does not check");
        };
        let _ = (r.ref_id(), r.pos(), r.flag(), r.mapq(), r.name(), r.qual(), r.packed_seq());
        let _ = (r.end(), r.clips(), r.cigar().count(), r.tag_str(b"MC"), r.tag(b"RG"));
        let _ = finder.add(n, &r);
        all.push(buf.clone());
        n += 1;
    }
    let opts = MarkdupOptions { threads: 1, level: 1, remove: false, supplementary: true };
    let mut marks = finder.resolve(&opts);
    for (i, b) in all.iter().enumerate() {
        if let Ok(r) = Record::new(b) {
            let _ = marks.flag(i as u64, &r);
        }
    }
});
