//! BAM output (the readers have their own target, `alignments`): this
//! target fuzzes the writer with arbitrary
//! record fields, within the domain the aligner can produce (bases as codes
//! 0..=4, as many qualities as bases, Phred+33 qualities, names and tag
//! strings without NUL, positions and references within BAM's i32, CIGAR
//! lengths under 2^28), through `bam::header`, `bam::record` and the BGZF
//! writer. It checks that the BGZF blocks are well formed (sizes, CRC,
//! the end-of-file marker), that they decompress to exactly the bytes
//! written, and that each record decodes back to its fields with a
//! consistent block size and the bin that the specification's `reg2bin`
//! gives.
#![no_main]

use accelhub_genomics::bam::{self, Fields};
use accelhub_genomics::dp::Op;
use arbitrary::{Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use std::io::{Read, Write};

#[derive(Debug)]
struct Rec {
    name: Vec<u8>,
    flag: u16,
    ref_id: Option<usize>,
    pos: Option<u64>,
    span: u64,
    mapq: u8,
    cigar: Vec<(Op, u32)>,
    next_ref: Option<usize>,
    next_pos: Option<u64>,
    tlen: i64,
    seq: Vec<u8>,
    qual: Vec<u8>,
    reverse: bool,
    tags: Option<(u32, String, i32, i32)>,
    rg: Option<String>,
    sa: Option<String>,
    mc: Option<String>,
    xa: Option<String>,
}

fn text(u: &mut Unstructured) -> Result<String> {
    Ok(String::arbitrary(u)?.replace('\0', ""))
}

/// Positions: mostly small, sometimes anywhere in BAM's range.
fn position(u: &mut Unstructured) -> Result<u64> {
    Ok(if u.ratio(3, 4)? {
        u.int_in_range(0..=1u64 << 20)?
    } else {
        u.int_in_range(0..=i32::MAX as u64 - 1)?
    })
}

impl<'a> Arbitrary<'a> for Rec {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let name: Vec<u8> = Vec::<u8>::arbitrary(u)?
            .into_iter()
            .filter(|&b| b != 0)
            .collect();
        let seq: Vec<u8> = Vec::<u8>::arbitrary(u)?.iter().map(|b| b % 5).collect();
        let mut qual = Vec::with_capacity(seq.len());
        for _ in 0..seq.len() {
            qual.push(u.int_in_range(b'!'..=b'~')?);
        }
        let mut cigar = Vec::new();
        for _ in 0..u.arbitrary_len::<(u8, u32)>()? {
            let op = [Op::Match, Op::Ins, Op::Del, Op::SoftClip][u.choose_index(4)?];
            cigar.push((op, u.int_in_range(0..=(1 << 28) - 1)?));
        }
        let pos = if u.arbitrary()? {
            Some(position(u)?)
        } else {
            None
        };
        Ok(Rec {
            name,
            flag: u.arbitrary()?,
            ref_id: if u.arbitrary()? {
                Some(u.int_in_range(0..=i32::MAX as usize)?)
            } else {
                None
            },
            pos,
            span: u.int_in_range(0..=1 << 16)?,
            mapq: u.arbitrary()?,
            cigar,
            next_ref: if u.arbitrary()? {
                Some(u.int_in_range(0..=i32::MAX as usize)?)
            } else {
                None
            },
            next_pos: if u.arbitrary()? {
                Some(position(u)?)
            } else {
                None
            },
            tlen: u.int_in_range(i32::MIN as i64..=i32::MAX as i64)?,
            seq,
            qual,
            reverse: u.arbitrary()?,
            tags: if u.arbitrary()? {
                Some((u.arbitrary()?, text(u)?, u.arbitrary()?, u.arbitrary()?))
            } else {
                None
            },
            rg: if u.arbitrary()? { Some(text(u)?) } else { None },
            sa: if u.arbitrary()? { Some(text(u)?) } else { None },
            mc: if u.arbitrary()? { Some(text(u)?) } else { None },
            xa: if u.arbitrary()? { Some(text(u)?) } else { None },
        })
    }
}

#[derive(Debug, Arbitrary)]
struct Input {
    header_text: Vec<u8>,
    contigs: Vec<(String, u32)>,
    records: Vec<Rec>,
}

/// The SAM specification's reg2bin (section 5.3), as written there.
#[allow(clippy::eq_op)]
fn spec_reg2bin(beg: i64, end: i64) -> i64 {
    let end = end - 1;
    if beg >> 14 == end >> 14 {
        return ((1 << 15) - 1) / 7 + (beg >> 14);
    }
    if beg >> 17 == end >> 17 {
        return ((1 << 12) - 1) / 7 + (beg >> 17);
    }
    if beg >> 20 == end >> 20 {
        return ((1 << 9) - 1) / 7 + (beg >> 20);
    }
    if beg >> 23 == end >> 23 {
        return ((1 << 6) - 1) / 7 + (beg >> 23);
    }
    if beg >> 26 == end >> 26 {
        return ((1 << 3) - 1) / 7 + (beg >> 26);
    }
    0
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        assert!(self.0.len() >= n, "record shorter than its fields");
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take(2).try_into().unwrap())
    }
    fn i32(&mut self) -> i32 {
        i32::from_le_bytes(self.take(4).try_into().unwrap())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap())
    }
    fn cstr(&mut self) -> Vec<u8> {
        let n = self.0.iter().position(|&b| b == 0).expect("NUL");
        let s = self.take(n).to_vec();
        self.take(1);
        s
    }
}

/// Check one encoded record (without its block size) against its fields.
fn check_record(body: &[u8], r: &Rec) {
    let mut c = Cursor(body);
    let opt = |v: Option<u64>| v.map_or(-1, |v| v as i64);
    assert_eq!(c.i32() as i64, opt(r.ref_id.map(|v| v as u64)));
    assert_eq!(c.i32() as i64, opt(r.pos));
    let l_read_name = c.u8() as usize;
    assert_eq!(c.u8(), r.mapq);
    let bin = c.u16();
    match r.pos {
        Some(p) => {
            let end = p + r.span.max(1);
            // Beyond 2^29 only CSI indexes; the field then holds the
            // formula truncated to 16 bits, as htslib writes it.
            assert_eq!(bin, spec_reg2bin(p as i64, end as i64) as u16, "bin");
            if end <= 1 << 29 {
                assert!(bin <= 37448, "bin out of range: {bin}");
            }
        }
        None => assert_eq!(bin, 4680),
    }
    let n_cigar = c.u16() as usize;
    assert_eq!(n_cigar, r.cigar.len(), "n_cigar_op");
    assert_eq!(c.u16(), r.flag);
    let l_seq = c.u32() as usize;
    assert_eq!(l_seq, r.seq.len());
    assert_eq!(c.i32() as i64, opt(r.next_ref.map(|v| v as u64)));
    assert_eq!(c.i32() as i64, opt(r.next_pos));
    assert_eq!(c.i32() as i64, r.tlen);
    let name = c.take(l_read_name).to_vec();
    assert_eq!(name.last(), Some(&0), "read name not NUL-terminated");
    assert_eq!(&name[..name.len() - 1], &r.name[..r.name.len().min(254)]);
    for &(op, n) in &r.cigar {
        let v = c.u32();
        let code = match op {
            Op::Match => 0,
            Op::Ins => 1,
            Op::Del => 2,
            Op::SoftClip => 4,
        };
        assert_eq!((v >> 4, v & 15), (n, code), "cigar op");
    }
    let packed = c.take(l_seq.div_ceil(2)).to_vec();
    let letters = b"=ACMGRSVTWYHKDBN";
    for i in 0..l_seq {
        let nib = if i % 2 == 0 {
            packed[i / 2] >> 4
        } else {
            packed[i / 2] & 15
        };
        let code = if r.reverse {
            let c = r.seq[l_seq - 1 - i];
            if c < 4 {
                3 - c
            } else {
                4
            }
        } else {
            r.seq[i]
        };
        assert_eq!(letters[nib as usize], b"ACGTN"[code as usize], "base {i}");
    }
    if l_seq % 2 == 1 {
        assert_eq!(packed[l_seq / 2] & 15, 0, "padding nibble");
    }
    let qual = c.take(l_seq);
    for (i, &written) in qual.iter().enumerate() {
        let q = if r.reverse {
            r.qual[l_seq - 1 - i]
        } else {
            r.qual[i]
        };
        assert_eq!(written, q - 33);
    }
    if let Some((nm, md, score, sub)) = &r.tags {
        assert_eq!(c.take(3), b"NMi");
        assert_eq!(c.u32(), *nm);
        assert_eq!(c.take(3), b"MDZ");
        assert_eq!(c.cstr(), md.as_bytes());
        assert_eq!(c.take(3), b"ASi");
        assert_eq!(c.i32(), *score);
        assert_eq!(c.take(3), b"XSi");
        assert_eq!(c.i32(), *sub);
    }
    if let Some(rg) = &r.rg {
        assert_eq!(c.take(3), b"RGZ");
        assert_eq!(c.cstr(), rg.as_bytes());
    }
    for (tag, value) in [(b"SAZ", &r.sa), (b"MCZ", &r.mc), (b"XAZ", &r.xa)] {
        if let Some(v) = value {
            assert_eq!(c.take(3), tag);
            assert_eq!(c.cstr(), v.as_bytes());
        }
    }
    assert!(c.0.is_empty(), "bytes after the record's fields");
}

/// Walk the BGZF blocks: each a gzip member with the BC extra field whose
/// BSIZE is its length - 1, ending with the 28-byte end-of-file marker.
fn check_blocks(bgzf: &[u8]) {
    const EOF: [u8; 28] = [
        0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0, 0xff, 0x06, 0, 0x42, 0x43, 0x02, 0, 0x1b, 0, 0x03,
        0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    assert!(bgzf.ends_with(&EOF), "no BGZF end-of-file marker");
    let mut rest = bgzf;
    while !rest.is_empty() {
        assert!(rest.len() >= 28, "truncated block");
        assert_eq!(&rest[..4], &[0x1f, 0x8b, 0x08, 0x04]);
        assert_eq!(u16::from_le_bytes([rest[10], rest[11]]), 6, "XLEN");
        assert_eq!(&rest[12..16], b"BC\x02\x00");
        let size = u16::from_le_bytes([rest[16], rest[17]]) as usize + 1;
        assert!(size <= 65536 && size <= rest.len(), "BSIZE {size}");
        let block = &rest[..size];
        let mut d = flate2::read::DeflateDecoder::new(&block[18..size - 8]);
        let mut out = Vec::new();
        d.read_to_end(&mut out).expect("block inflates");
        let isize = u32::from_le_bytes(block[size - 4..].try_into().unwrap()) as usize;
        assert_eq!(out.len(), isize, "ISIZE");
        assert!(isize <= 65536);
        let crc = u32::from_le_bytes(block[size - 8..size - 4].try_into().unwrap());
        let mut h = flate2::Crc::new();
        h.update(&out);
        assert_eq!(h.sum(), crc, "CRC32");
        rest = &rest[size..];
    }
}

fuzz_target!(|input: Input| {
    let contigs: Vec<(&str, u64)> = input
        .contigs
        .iter()
        .map(|(n, l)| (n.as_str(), (*l as u64).min(i32::MAX as u64)))
        .collect();
    let mut raw = bam::header(&input.header_text, &contigs);
    let header_len = raw.len();
    let mut spans = Vec::new();
    for r in &input.records {
        let start = raw.len();
        bam::record(
            &mut raw,
            &Fields {
                name: &r.name,
                flag: r.flag,
                ref_id: r.ref_id,
                pos: r.pos,
                end: r.pos.map(|p| p + r.span),
                mapq: r.mapq,
                cigar: &r.cigar,
                next_ref: r.next_ref,
                next_pos: r.next_pos,
                tlen: r.tlen,
                seq: &r.seq,
                qual: &r.qual,
                reverse: r.reverse,
                tags: r.tags.as_ref().map(|(a, b, c, d)| (*a, b.as_str(), *c, *d)),
                rg: r.rg.as_deref(),
                sa: r.sa.as_deref(),
                mc: r.mc.as_deref(),
                xa: r.xa.as_deref(),
            },
        );
        spans.push(start..raw.len());
    }

    // The header's own framing.
    assert_eq!(&raw[..4], b"BAM\x01");
    let l_text = i32::from_le_bytes(raw[4..8].try_into().unwrap()) as usize;
    assert_eq!(l_text, input.header_text.len());

    for (r, span) in input.records.iter().zip(spans) {
        let rec = &raw[span];
        let size = u32::from_le_bytes(rec[..4].try_into().unwrap()) as usize;
        assert_eq!(size, rec.len() - 4, "block_size");
        check_record(&rec[4..], r);
    }
    assert!(header_len <= raw.len());

    // Through BGZF, as the aligner writes it, in uneven writes.
    let mut w = bam::bgzf(Vec::new());
    for chunk in raw.chunks(7919) {
        w.write_all(chunk).unwrap();
    }
    let (bgzf, _) = w.finish().unwrap();
    check_blocks(&bgzf);
    let mut back = Vec::new();
    flate2::read::MultiGzDecoder::new(&bgzf[..])
        .read_to_end(&mut back)
        .unwrap();
    assert_eq!(back, raw, "gzip members decode to other bytes");
    let mut back = Vec::new();
    noodles_bgzf::io::Reader::new(&bgzf[..])
        .read_to_end(&mut back)
        .unwrap();
    assert_eq!(back, raw, "the BGZF reader decodes other bytes");
});
