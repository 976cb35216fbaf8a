//! BAM: records encoded as the SAM/BAM specification lays them out
//! (little-endian fields, 4-bit bases, typed tags) and compressed into
//! BGZF ([`crate::bgzf`]); [`record`] reads them in place, [`reader`]
//! reads SAM or BAM files, [`writer`] writes sorted, indexed BAM.

use crate::dp::Op;
use std::io::Write;

pub mod reader;
pub mod record;
pub mod writer;

/// A BGZF writer over `w` (one thread, zlib's default level); call
/// `finish` on it at the end.
pub type BgzfWriter<W> = crate::bgzf::Writer<W>;

pub fn bgzf<W: Write>(w: W) -> BgzfWriter<W> {
    crate::bgzf::Writer::new(w, 6, 1)
}

/// The binary header: magic, the SAM header text, the references.
pub fn header(text: &[u8], contigs: &[(&str, u64)]) -> Vec<u8> {
    let mut h = b"BAM\x01".to_vec();
    h.extend_from_slice(&(text.len() as i32).to_le_bytes());
    h.extend_from_slice(text);
    h.extend_from_slice(&(contigs.len() as i32).to_le_bytes());
    for (name, len) in contigs {
        h.extend_from_slice(&(name.len() as i32 + 1).to_le_bytes());
        h.extend_from_slice(name.as_bytes());
        h.push(0);
        h.extend_from_slice(&(*len as i32).to_le_bytes());
    }
    h
}

/// What one record holds; `seq` as nucleotide codes and `qual` as Phred+33
/// letters, both as read (reversed here when `reverse`).
pub struct Fields<'a> {
    pub name: &'a [u8],
    pub flag: u16,
    pub ref_id: Option<usize>,
    /// 0-based.
    pub pos: Option<u64>,
    /// 0-based, exclusive: for the bin.
    pub end: Option<u64>,
    pub mapq: u8,
    pub cigar: &'a [(Op, u32)],
    pub next_ref: Option<usize>,
    pub next_pos: Option<u64>,
    pub tlen: i64,
    pub seq: &'a [u8],
    pub qual: &'a [u8],
    pub reverse: bool,
    /// NM, MD, AS, XS.
    pub tags: Option<(u32, &'a str, i32, i32)>,
    pub rg: Option<&'a str>,
    /// The `SA` tag's value.
    pub sa: Option<&'a str>,
    /// The `MC` tag's value: the mate's CIGAR.
    pub mc: Option<&'a str>,
    /// The `XA` tag's value: alternative placements.
    pub xa: Option<&'a str>,
}

/// The bin of a 0-based, end-exclusive interval (SAM specification 5.3).
pub fn reg2bin(beg: i64, end: i64) -> u16 {
    let end = end - 1;
    let b = if beg >> 14 == end >> 14 {
        ((1 << 15) - 1) / 7 + (beg >> 14)
    } else if beg >> 17 == end >> 17 {
        ((1 << 12) - 1) / 7 + (beg >> 17)
    } else if beg >> 20 == end >> 20 {
        ((1 << 9) - 1) / 7 + (beg >> 20)
    } else if beg >> 23 == end >> 23 {
        ((1 << 6) - 1) / 7 + (beg >> 23)
    } else if beg >> 26 == end >> 26 {
        1 + (beg >> 26)
    } else {
        0
    };
    b as u16
}

/// 4-bit codes of A C G T N in BAM's `=ACMGRSVTWYHKDBN`.
const NIBBLE: [u8; 5] = [1, 2, 4, 8, 15];

pub fn record(buf: &mut Vec<u8>, f: &Fields) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    let i32le = |buf: &mut Vec<u8>, v: i64| buf.extend_from_slice(&(v as i32).to_le_bytes());
    i32le(buf, f.ref_id.map_or(-1, |r| r as i64));
    i32le(buf, f.pos.map_or(-1, |p| p as i64));
    buf.push((f.name.len() + 1).min(255) as u8);
    buf.push(f.mapq);
    let bin = match (f.pos, f.end) {
        (Some(p), Some(e)) => reg2bin(p as i64, (e as i64).max(p as i64 + 1)),
        _ => 4680,
    };
    buf.extend_from_slice(&bin.to_le_bytes());
    buf.extend_from_slice(&(f.cigar.len() as u16).to_le_bytes());
    buf.extend_from_slice(&f.flag.to_le_bytes());
    buf.extend_from_slice(&(f.seq.len() as u32).to_le_bytes());
    i32le(buf, f.next_ref.map_or(-1, |r| r as i64));
    i32le(buf, f.next_pos.map_or(-1, |p| p as i64));
    i32le(buf, f.tlen);
    buf.extend_from_slice(&f.name[..f.name.len().min(254)]);
    buf.push(0);
    for &(op, n) in f.cigar {
        let code = match op {
            Op::Match => 0,
            Op::Ins => 1,
            Op::Del => 2,
            Op::SoftClip => 4,
        };
        buf.extend_from_slice(&((n << 4) | code).to_le_bytes());
    }
    let base = |i: usize| -> u8 {
        if f.reverse {
            let c = f.seq[f.seq.len() - 1 - i];
            NIBBLE[crate::seq::complement(c) as usize]
        } else {
            NIBBLE[f.seq[i].min(4) as usize]
        }
    };
    let n = f.seq.len();
    for i in (0..n).step_by(2) {
        let hi = base(i) << 4;
        let lo = if i + 1 < n { base(i + 1) } else { 0 };
        buf.push(hi | lo);
    }
    if f.reverse {
        buf.extend(f.qual.iter().rev().map(|q| q.saturating_sub(33)));
    } else {
        buf.extend(f.qual.iter().map(|q| q.saturating_sub(33)));
    }
    if let Some((nm, md, score, sub)) = f.tags {
        buf.extend_from_slice(b"NMi");
        buf.extend_from_slice(&(nm as i32).to_le_bytes());
        buf.extend_from_slice(b"MDZ");
        buf.extend_from_slice(md.as_bytes());
        buf.push(0);
        buf.extend_from_slice(b"ASi");
        buf.extend_from_slice(&score.to_le_bytes());
        buf.extend_from_slice(b"XSi");
        buf.extend_from_slice(&sub.to_le_bytes());
    }
    for (tag, value) in [(b"RG", f.rg), (b"SA", f.sa), (b"MC", f.mc), (b"XA", f.xa)] {
        if let Some(v) = value {
            buf.extend_from_slice(tag);
            buf.push(b'Z');
            buf.extend_from_slice(v.as_bytes());
            buf.push(0);
        }
    }
    let size = (buf.len() - start - 4) as u32;
    buf[start..start + 4].copy_from_slice(&size.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_follow_the_specification() {
        assert_eq!(reg2bin(0, 1), 4681);
        assert_eq!(reg2bin(16383, 16384), 4681);
        assert_eq!(reg2bin(16383, 16385), 585);
        assert_eq!(reg2bin(0, 1 << 29), 0);
    }
}
