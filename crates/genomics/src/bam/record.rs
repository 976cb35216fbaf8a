//! A BAM record as its bytes (the block without its length prefix), read
//! in place: sorting and duplicate marking move records without decoding
//! them, and read only the few fields they need.

use std::collections::HashMap;

/// Offsets of the fixed fields (SAM specification 4.2).
const FIXED: usize = 32;

pub const FLAG_PAIRED: u16 = 0x1;
pub const FLAG_UNMAPPED: u16 = 0x4;
pub const FLAG_MATE_UNMAPPED: u16 = 0x8;
pub const FLAG_REVERSE: u16 = 0x10;
pub const FLAG_MATE_REVERSE: u16 = 0x20;
pub const FLAG_READ1: u16 = 0x40;
pub const FLAG_SECONDARY: u16 = 0x100;
pub const FLAG_QC_FAIL: u16 = 0x200;
pub const FLAG_DUPLICATE: u16 = 0x400;
pub const FLAG_SUPPLEMENTARY: u16 = 0x800;

/// A borrowed record, checked by [`Record::new`] so that every accessor
/// stays in bounds.
#[derive(Clone, Copy)]
pub struct Record<'a> {
    b: &'a [u8],
    cigar_at: usize,
    seq_at: usize,
    qual_at: usize,
    tags_at: usize,
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

impl<'a> Record<'a> {
    /// Check the lengths the record declares against its bytes.
    pub fn new(b: &'a [u8]) -> Result<Self, String> {
        if b.len() < FIXED {
            return Err(format!("a record of {} bytes is too short", b.len()));
        }
        let name_len = b[8] as usize;
        let n_cigar = u16_at(b, 12) as usize;
        let l_seq = i32_at(b, 16);
        if name_len == 0 || l_seq < 0 {
            return Err("the record's name or sequence length is invalid".into());
        }
        let cigar_at = FIXED + name_len;
        let seq_at = cigar_at + 4 * n_cigar;
        let qual_at = seq_at + (l_seq as usize).div_ceil(2);
        let tags_at = qual_at + l_seq as usize;
        if tags_at > b.len() || b[cigar_at - 1] != 0 {
            return Err("the record's fields run past its end".into());
        }
        Ok(Record {
            b,
            cigar_at,
            seq_at,
            qual_at,
            tags_at,
        })
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.b
    }

    /// Reference index; -1 for none.
    pub fn ref_id(&self) -> i32 {
        i32_at(self.b, 0)
    }

    /// 0-based position; -1 for none.
    pub fn pos(&self) -> i32 {
        i32_at(self.b, 4)
    }

    pub fn mapq(&self) -> u8 {
        self.b[9]
    }

    pub fn flag(&self) -> u16 {
        u16_at(self.b, 14)
    }

    pub fn mate_ref_id(&self) -> i32 {
        i32_at(self.b, 20)
    }

    pub fn mate_pos(&self) -> i32 {
        i32_at(self.b, 24)
    }

    /// The name, without its terminating NUL.
    pub fn name(&self) -> &'a [u8] {
        &self.b[FIXED..self.cigar_at - 1]
    }

    /// CIGAR operations as (length, op code `MIDNSHP=X` = 0..8).
    pub fn cigar(&self) -> impl Iterator<Item = (u32, u8)> + Clone + 'a {
        self.b[self.cigar_at..self.seq_at].chunks_exact(4).map(|c| {
            let v = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            (v >> 4, (v & 0xf) as u8)
        })
    }

    /// Base qualities (Phred, not +33); 0xff throughout when absent.
    pub fn qual(&self) -> &'a [u8] {
        &self.b[self.qual_at..self.tags_at]
    }

    /// Length of the sequence.
    pub fn len(&self) -> usize {
        self.tags_at - self.qual_at
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The packed 4-bit bases.
    pub fn packed_seq(&self) -> &'a [u8] {
        &self.b[self.seq_at..self.qual_at]
    }

    /// Reference bases the alignment spans (M, D, N, =, X); 0 when it has
    /// no CIGAR.
    pub fn ref_span(&self) -> i64 {
        ref_span(self.cigar())
    }

    /// 0-based end, exclusive, of the reference the record covers; a
    /// record without a span covers its one position, as samtools counts.
    pub fn end(&self) -> i64 {
        self.pos() as i64 + self.ref_span().max(1)
    }

    /// Clips (soft and hard) at the start and the end of the read.
    pub fn clips(&self) -> (i64, i64) {
        clips(self.cigar())
    }

    /// The value of a string tag (`Z`), if present and well formed.
    pub fn tag_str(&self, tag: &[u8; 2]) -> Option<&'a [u8]> {
        match self.tag(tag)? {
            (b'Z', v) => Some(v),
            _ => None,
        }
    }

    /// A tag's type and value bytes (a string without its NUL).
    pub fn tag(&self, tag: &[u8; 2]) -> Option<(u8, &'a [u8])> {
        let mut t = &self.b[self.tags_at..];
        while t.len() >= 3 {
            let ty = t[2];
            let size = tag_size(ty, &t[3..])?;
            if t.len() < 3 + size {
                return None;
            }
            if &t[..2] == tag {
                let v = &t[3..3 + size];
                return Some(match ty {
                    b'Z' | b'H' => (ty, &v[..v.len().saturating_sub(1)]),
                    _ => (ty, v),
                });
            }
            t = &t[3 + size..];
        }
        None
    }
}

/// Reference bases a CIGAR spans.
pub fn ref_span(cigar: impl Iterator<Item = (u32, u8)>) -> i64 {
    cigar
        .filter(|&(_, op)| matches!(op, 0 | 2 | 3 | 7 | 8))
        .map(|(n, _)| n as i64)
        .sum()
}

/// Soft and hard clips at each end of a CIGAR.
pub fn clips(cigar: impl Iterator<Item = (u32, u8)>) -> (i64, i64) {
    let (mut start, mut end, mut aligned) = (0i64, 0i64, false);
    for (n, op) in cigar {
        if matches!(op, 4 | 5) {
            if aligned {
                end += n as i64;
            } else {
                start += n as i64;
            }
        } else {
            aligned = true;
            end = 0;
        }
    }
    (start, end)
}

/// Size of a tag value of type `ty` whose bytes start `v`.
fn tag_size(ty: u8, v: &[u8]) -> Option<usize> {
    Some(match ty {
        b'A' | b'c' | b'C' => 1,
        b's' | b'S' => 2,
        b'i' | b'I' | b'f' => 4,
        b'Z' | b'H' => v.iter().position(|&c| c == 0)? + 1,
        b'B' => {
            let sub = *v.first()?;
            let n = u32::from_le_bytes(v.get(1..5)?.try_into().ok()?) as usize;
            5 + n.checked_mul(tag_size(sub, &[])?)?
        }
        _ => return None,
    })
}

/// The CIGAR op code of a SAM letter.
fn op_code(c: u8) -> Option<u32> {
    Some(match c {
        b'M' => 0,
        b'I' => 1,
        b'D' => 2,
        b'N' => 3,
        b'S' => 4,
        b'H' => 5,
        b'P' => 6,
        b'=' => 7,
        b'X' => 8,
        _ => return None,
    })
}

/// Parse a CIGAR string into (length, op code) pairs.
pub fn parse_cigar(s: &[u8]) -> Result<Vec<(u32, u8)>, String> {
    let mut ops = Vec::new();
    if s == b"*" {
        return Ok(ops);
    }
    let mut n: u32 = 0;
    let mut digits = false;
    for &c in s {
        if c.is_ascii_digit() {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add((c - b'0') as u32))
                .filter(|&n| n < 1 << 28)
                .ok_or("a CIGAR operation is too long")?;
            digits = true;
        } else {
            let code =
                op_code(c).ok_or_else(|| format!("'{}' is not a CIGAR operation", c as char))?;
            if !digits {
                return Err("a CIGAR operation has no length".into());
            }
            ops.push((n, code as u8));
            n = 0;
            digits = false;
        }
    }
    if digits {
        return Err("the CIGAR ends with a number".into());
    }
    Ok(ops)
}

/// The 4-bit code of a base letter in `=ACMGRSVTWYHKDBN`.
fn base_code(c: u8) -> u8 {
    match c.to_ascii_uppercase() {
        b'=' => 0,
        b'A' => 1,
        b'C' => 2,
        b'M' => 3,
        b'G' => 4,
        b'R' => 5,
        b'S' => 6,
        b'V' => 7,
        b'T' => 8,
        b'W' => 9,
        b'Y' => 10,
        b'H' => 11,
        b'K' => 12,
        b'D' => 13,
        b'B' => 14,
        _ => 15,
    }
}

/// Encode one SAM text line as a BAM record (without the length prefix)
/// onto `out`. `refs` maps reference names to their index in the header.
pub fn from_sam(
    line: &[u8],
    refs: &HashMap<Vec<u8>, i32>,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let mut f = line.split(|&c| c == b'\t');
    let mut next = |what: &str| {
        f.next()
            .ok_or_else(|| format!("the record has no {what} column"))
    };
    let name = next("QNAME")?;
    let flag = next("FLAG")?;
    let rname = next("RNAME")?;
    let pos = next("POS")?;
    let mapq = next("MAPQ")?;
    let cigar = next("CIGAR")?;
    let rnext = next("RNEXT")?;
    let pnext = next("PNEXT")?;
    let tlen = next("TLEN")?;
    let seq = next("SEQ")?;
    let qual = next("QUAL")?;
    let num = |v: &[u8], what: &str| -> Result<i64, String> {
        std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| format!("{what} '{}' is not a number", String::from_utf8_lossy(v)))
    };
    let ref_of = |v: &[u8]| -> Result<i32, String> {
        if v == b"*" {
            return Ok(-1);
        }
        refs.get(v).copied().ok_or_else(|| {
            format!(
                "reference '{}' is not in the header",
                String::from_utf8_lossy(v)
            )
        })
    };
    if name.is_empty() || name.len() > 254 {
        return Err("the read name must have 1 to 254 characters".into());
    }
    let flag = u16::try_from(num(flag, "FLAG")?).map_err(|_| "FLAG is out of range")?;
    let ref_id = ref_of(rname)?;
    let pos = num(pos, "POS")? - 1;
    let mapq = u8::try_from(num(mapq, "MAPQ")?).map_err(|_| "MAPQ is out of range")?;
    let cigar = parse_cigar(cigar)?;
    let mate_ref = if rnext == b"=" {
        ref_id
    } else {
        ref_of(rnext)?
    };
    let mate_pos = num(pnext, "PNEXT")? - 1;
    let tlen = num(tlen, "TLEN")?;
    if !(-1..i32::MAX as i64).contains(&pos) || !(-1..i32::MAX as i64).contains(&mate_pos) {
        return Err("a position is out of range".into());
    }
    let tlen = i32::try_from(tlen).map_err(|_| "TLEN is out of range")?;
    if cigar.len() > u16::MAX as usize {
        return Err("the CIGAR has too many operations".into());
    }
    let seq: &[u8] = if seq == b"*" { &[] } else { seq };
    if qual != b"*" && qual.len() != seq.len() {
        return Err(format!(
            "QUAL has {} characters for {} bases",
            qual.len(),
            seq.len()
        ));
    }
    let query: i64 = cigar
        .iter()
        .filter(|&&(_, op)| matches!(op, 0 | 1 | 4 | 7 | 8))
        .map(|&(n, _)| n as i64)
        .sum();
    if !seq.is_empty() && !cigar.is_empty() && query != seq.len() as i64 {
        return Err(format!(
            "the CIGAR covers {query} bases of a {}-base read",
            seq.len()
        ));
    }
    let span = ref_span(cigar.iter().copied());
    let bin = if pos < 0 {
        4680
    } else {
        super::reg2bin(pos, pos + span.max(1))
    };
    let start = out.len();
    out.extend_from_slice(&ref_id.to_le_bytes());
    out.extend_from_slice(&(pos as i32).to_le_bytes());
    out.push(name.len() as u8 + 1);
    out.push(mapq);
    out.extend_from_slice(&bin.to_le_bytes());
    out.extend_from_slice(&(cigar.len() as u16).to_le_bytes());
    out.extend_from_slice(&flag.to_le_bytes());
    out.extend_from_slice(&(seq.len() as u32).to_le_bytes());
    out.extend_from_slice(&mate_ref.to_le_bytes());
    out.extend_from_slice(&(mate_pos as i32).to_le_bytes());
    out.extend_from_slice(&tlen.to_le_bytes());
    out.extend_from_slice(name);
    out.push(0);
    for &(n, op) in &cigar {
        out.extend_from_slice(&((n << 4) | op as u32).to_le_bytes());
    }
    for pair in seq.chunks(2) {
        let hi = base_code(pair[0]) << 4;
        let lo = pair.get(1).map_or(0, |&c| base_code(c));
        out.push(hi | lo);
    }
    if qual == b"*" {
        out.extend(std::iter::repeat_n(0xff, seq.len()));
    } else {
        for &q in qual {
            if !(33..=126).contains(&q) {
                return Err("QUAL has a character outside '!' to '~'".into());
            }
            out.push(q - 33);
        }
    }
    for tag in f {
        if let Err(e) = push_tag(tag, out) {
            out.truncate(start);
            return Err(e);
        }
    }
    Ok(())
}

/// Encode a SAM tag `TG:T:value`.
fn push_tag(t: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let bad = || format!("the tag '{}' is malformed", String::from_utf8_lossy(t));
    if t.len() < 5 || t[2] != b':' || t[4] != b':' {
        return Err(bad());
    }
    let v = &t[5..];
    let text = std::str::from_utf8(v).map_err(|_| bad())?;
    out.extend_from_slice(&t[..2]);
    match t[3] {
        b'A' => {
            if v.len() != 1 {
                return Err(bad());
            }
            out.push(b'A');
            out.push(v[0]);
        }
        b'i' => {
            let n: i64 = text.parse().map_err(|_| bad())?;
            // The smallest type that holds it, as samtools writes.
            if let Ok(x) = i8::try_from(n) {
                out.push(b'c');
                out.push(x as u8);
            } else if let Ok(x) = u8::try_from(n) {
                out.push(b'C');
                out.push(x);
            } else if let Ok(x) = i16::try_from(n) {
                out.push(b's');
                out.extend_from_slice(&x.to_le_bytes());
            } else if let Ok(x) = u16::try_from(n) {
                out.push(b'S');
                out.extend_from_slice(&x.to_le_bytes());
            } else if let Ok(x) = i32::try_from(n) {
                out.push(b'i');
                out.extend_from_slice(&x.to_le_bytes());
            } else {
                let x = u32::try_from(n).map_err(|_| bad())?;
                out.push(b'I');
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        b'f' => {
            let x: f32 = text.parse().map_err(|_| bad())?;
            out.push(b'f');
            out.extend_from_slice(&x.to_le_bytes());
        }
        ty @ (b'Z' | b'H') => {
            out.push(ty);
            out.extend_from_slice(v);
            out.push(0);
        }
        b'B' => {
            let mut parts = text.split(',');
            let sub = parts
                .next()
                .and_then(|s| s.bytes().next())
                .ok_or_else(bad)?;
            let values: Vec<&str> = parts.collect();
            out.push(b'B');
            out.push(sub);
            out.extend_from_slice(&(values.len() as u32).to_le_bytes());
            for x in values {
                match sub {
                    b'c' => out.push(x.parse::<i8>().map_err(|_| bad())? as u8),
                    b'C' => out.push(x.parse::<u8>().map_err(|_| bad())?),
                    b's' => {
                        out.extend_from_slice(&x.parse::<i16>().map_err(|_| bad())?.to_le_bytes())
                    }
                    b'S' => {
                        out.extend_from_slice(&x.parse::<u16>().map_err(|_| bad())?.to_le_bytes())
                    }
                    b'i' => {
                        out.extend_from_slice(&x.parse::<i32>().map_err(|_| bad())?.to_le_bytes())
                    }
                    b'I' => {
                        out.extend_from_slice(&x.parse::<u32>().map_err(|_| bad())?.to_le_bytes())
                    }
                    b'f' => {
                        out.extend_from_slice(&x.parse::<f32>().map_err(|_| bad())?.to_le_bytes())
                    }
                    _ => return Err(bad()),
                }
            }
        }
        _ => return Err(bad()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs() -> HashMap<Vec<u8>, i32> {
        HashMap::from([(b"chr1".to_vec(), 0), (b"chr2".to_vec(), 1)])
    }

    #[test]
    fn a_sam_line_reads_back_from_its_bam_bytes() {
        let line = b"r1\t99\tchr2\t101\t60\t3S10M2D5M1I4M\t=\t301\t250\tACGTACGTACGTACGTACGTACG\tIIIIIIIIIIIIIIIIIIIIIII\tNM:i:3\tMC:Z:25M\tXS:i:-300\tAS:i:40000\tBC:B:s,1,-2";
        let mut b = Vec::new();
        from_sam(line, &refs(), &mut b).unwrap();
        let r = Record::new(&b).unwrap();
        assert_eq!(r.name(), b"r1");
        assert_eq!(
            (r.ref_id(), r.pos(), r.mate_ref_id(), r.mate_pos()),
            (1, 100, 1, 300)
        );
        assert_eq!((r.flag(), r.mapq(), r.len()), (99, 60, 23));
        assert_eq!(r.ref_span(), 21);
        assert_eq!(r.end(), 121);
        assert_eq!(r.clips(), (3, 0));
        assert_eq!(r.qual(), &[40; 23][..]);
        assert_eq!(r.tag_str(b"MC"), Some(&b"25M"[..]));
        assert_eq!(r.tag(b"XS"), Some((b's', &(-300i16).to_le_bytes()[..])));
        assert_eq!(r.tag(b"AS"), Some((b'S', &40000u16.to_le_bytes()[..])));
        assert!(r.tag(b"BC").is_some() && r.tag(b"ZZ").is_none());
        assert_eq!(r.packed_seq()[0], 0x12);
    }

    #[test]
    fn bad_sam_lines_are_refused_with_the_reason() {
        let mut b = Vec::new();
        for (line, says) in [
            (
                &b"r1\t0\tchr9\t1\t60\t4M\t*\t0\t0\tACGT\tIIII"[..],
                "not in the header",
            ),
            (
                b"r1\t0\tchr1\t1\t60\t5M\t*\t0\t0\tACGT\tIIII",
                "covers 5 bases",
            ),
            (
                b"r1\t0\tchr1\t1\t60\t4Q\t*\t0\t0\tACGT\tIIII",
                "not a CIGAR",
            ),
            (b"r1\t0\tchr1\tx\t60\t4M\t*\t0\t0\tACGT\tIIII", "POS 'x'"),
            (b"r1\t0\tchr1\t1\t60\t4M\t*\t0\t0\tACGT\tIII", "QUAL has 3"),
            (b"r1\t0\tchr1\t1\t60\t4M\t*\t0", "no TLEN"),
            (
                b"r1\t0\tchr1\t1\t60\t4M\t*\t0\t0\tACGT\tIIII\tNM:i",
                "malformed",
            ),
        ] {
            let e = from_sam(line, &refs(), &mut b).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn truncated_records_are_refused() {
        let mut b = Vec::new();
        from_sam(
            b"r1\t0\tchr1\t1\t60\t4M\t*\t0\t0\tACGT\tIIII",
            &refs(),
            &mut b,
        )
        .unwrap();
        for n in [0, 10, 35, b.len() - 1] {
            assert!(Record::new(&b[..n]).is_err(), "{n} bytes");
        }
    }
}
