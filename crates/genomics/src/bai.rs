//! Coordinate indexes of a sorted BAM: BAI, and CSI where a reference is
//! longer than BAI's 2^29 bases (SAM specification, section 5).
//!
//! Both sort records into the same binning scheme (bins of 2^14 bases up
//! to one bin for the whole reference, each level 8 times wider), list
//! for each bin the chunks of the file that hold its records, and add a
//! pseudo-bin with the reference's mapped and unmapped counts. BAI adds a
//! linear index of the first record per 16 kb window; CSI has none, and
//! stores that offset with each bin instead, which lets its depth grow
//! with the longest reference.
//!
//! The builder takes records as they are written, with their [`Spot`]s
//! in the BGZF output, and needs the finished file's block offsets only
//! when it writes the index.

use crate::bgzf::{Finished, Spot};
use std::collections::BTreeMap;
use std::io::{self, Write};

const MIN_SHIFT: u32 = 14;
const BAI_DEPTH: u32 = 5;
/// The longest reference a BAI can index.
pub const BAI_MAX: u64 = 1 << 29;

/// Which index file to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bai,
    Csi { depth: u32 },
}

impl Kind {
    /// BAI when every reference fits, CSI deep enough for the longest.
    pub fn for_lengths(lens: impl Iterator<Item = u64>) -> Kind {
        let longest = lens.max().unwrap_or(0);
        if longest <= BAI_MAX {
            return Kind::Bai;
        }
        let mut depth = 0;
        while (1u64 << (MIN_SHIFT + 3 * depth)) < longest {
            depth += 1;
        }
        Kind::Csi { depth }
    }

    fn depth(self) -> u32 {
        match self {
            Kind::Bai => BAI_DEPTH,
            Kind::Csi { depth } => depth,
        }
    }

    /// The index file's name beside `bam`.
    pub fn extension(self) -> &'static str {
        match self {
            Kind::Bai => "bai",
            Kind::Csi { .. } => "csi",
        }
    }
}

/// The bin of 0-based, end-exclusive `[beg, end)` in a scheme of `depth`
/// levels below the root.
pub fn bin_of(beg: i64, end: i64, depth: u32) -> u32 {
    let end = end.max(beg + 1) - 1;
    let mut shift = MIN_SHIFT;
    let mut first = ((1u64 << (3 * depth)) - 1) / 7;
    for level in (1..=depth).rev() {
        if beg >> shift == end >> shift {
            return (first + (beg >> shift) as u64) as u32;
        }
        shift += 3;
        first -= 1 << (3 * (level - 1));
    }
    0
}

/// The pseudo-bin holding a reference's counts.
fn pseudo_bin(depth: u32) -> u32 {
    (((1u64 << (3 * (depth + 1))) - 1) / 7 + 1) as u32
}

#[derive(Default)]
struct RefIndex {
    bins: BTreeMap<u32, Vec<(Spot, Spot)>>,
    linear: Vec<Option<Spot>>,
    first: Option<Spot>,
    last: Option<Spot>,
    mapped: u64,
    unmapped: u64,
}

/// Collects a sorted BAM's records into an index.
pub struct Builder {
    kind: Kind,
    /// Tabix's configuration (format, columns, meta character, skip) and
    /// sequence names, for an index of a bgzipped text file.
    tabix: Option<Vec<u8>>,
    refs: Vec<RefIndex>,
    no_coordinate: u64,
    last: Option<(i32, i64)>,
}

impl Builder {
    pub fn new(kind: Kind, n_refs: usize) -> Self {
        Builder {
            kind,
            tabix: None,
            refs: (0..n_refs).map(|_| RefIndex::default()).collect(),
            no_coordinate: 0,
            last: None,
        }
    }

    /// An index of a bgzipped VCF (tabix's TBI, or CSI with tabix's
    /// configuration) whose contigs are `names`, in order.
    pub fn for_vcf(kind: Kind, names: &[String]) -> Self {
        let mut b = Builder::new(kind, names.len());
        let mut conf = Vec::new();
        // Format 2 (VCF), sequence column 1, begin column 2, no end
        // column, '#' starts meta lines, no lines skipped.
        for v in [2i32, 1, 2, 0, b'#' as i32, 0] {
            conf.extend_from_slice(&v.to_le_bytes());
        }
        let mut nm = Vec::new();
        for n in names {
            nm.extend_from_slice(n.as_bytes());
            nm.push(0);
        }
        conf.extend_from_slice(&(nm.len() as i32).to_le_bytes());
        conf.extend_from_slice(&nm);
        b.tabix = Some(conf);
        b
    }

    /// The index file's extension: `bai`, `csi` or `tbi`.
    pub fn extension(&self) -> &'static str {
        match (self.kind, &self.tabix) {
            (Kind::Bai, Some(_)) => "tbi",
            (kind, _) => kind.extension(),
        }
    }

    /// Add a record on reference `ref_id` (-1: none) covering `[beg, end)`,
    /// written from `start` to `stop`. Records must come in coordinate
    /// order; the error says which one did not.
    pub fn add(
        &mut self,
        ref_id: i32,
        beg: i64,
        end: i64,
        unmapped: bool,
        start: Spot,
        stop: Spot,
    ) -> Result<(), String> {
        if ref_id < 0 || beg < 0 {
            self.no_coordinate += 1;
            self.last = Some((i32::MAX, 0));
            return Ok(());
        }
        if let Some(last) = self.last {
            if (ref_id, beg) < last {
                return Err("the records are not sorted by coordinate".into());
            }
        }
        self.last = Some((ref_id, beg));
        let r = self
            .refs
            .get_mut(ref_id as usize)
            .ok_or("a record names a reference the header lacks")?;
        let bin = bin_of(beg, end, self.kind.depth());
        let chunks = r.bins.entry(bin).or_default();
        match chunks.last_mut() {
            Some(c) if c.1 == start => c.1 = stop,
            _ => chunks.push((start, stop)),
        }
        let (w0, w1) = (
            (beg >> MIN_SHIFT) as usize,
            ((end.max(beg + 1) - 1) >> MIN_SHIFT) as usize,
        );
        if r.linear.len() <= w1 {
            r.linear.resize(w1 + 1, None);
        }
        for w in &mut r.linear[w0..=w1] {
            w.get_or_insert(start);
        }
        r.first.get_or_insert(start);
        r.last = Some(stop);
        if unmapped {
            r.unmapped += 1;
        } else {
            r.mapped += 1;
        }
        Ok(())
    }

    /// Write the index, with `file`'s block offsets, to `out`.
    pub fn write(&self, file: &Finished, out: &mut impl Write) -> io::Result<()> {
        let v = |s: Spot| {
            file.virtual_of(s)
                .ok_or_else(|| io::Error::other("an index entry points past the file"))
        };
        let mut b = Vec::new();
        let depth = self.kind.depth();
        let n_refs = (self.refs.len() as i32).to_le_bytes();
        match (self.kind, &self.tabix) {
            (Kind::Bai, None) => {
                b.extend_from_slice(b"BAI\x01");
                b.extend_from_slice(&n_refs);
            }
            (Kind::Bai, Some(conf)) => {
                b.extend_from_slice(b"TBI\x01");
                b.extend_from_slice(&n_refs);
                b.extend_from_slice(conf);
            }
            (Kind::Csi { depth }, conf) => {
                b.extend_from_slice(b"CSI\x01");
                b.extend_from_slice(&(MIN_SHIFT as i32).to_le_bytes());
                b.extend_from_slice(&(depth as i32).to_le_bytes());
                let conf = conf.as_deref().unwrap_or_default();
                b.extend_from_slice(&(conf.len() as i32).to_le_bytes());
                b.extend_from_slice(conf);
                b.extend_from_slice(&n_refs);
            }
        }
        for r in &self.refs {
            let has_pseudo = r.first.is_some();
            b.extend_from_slice(&((r.bins.len() + has_pseudo as usize) as i32).to_le_bytes());
            for (&bin, chunks) in &r.bins {
                b.extend_from_slice(&bin.to_le_bytes());
                if let Kind::Csi { .. } = self.kind {
                    b.extend_from_slice(&v(chunks[0].0)?.to_le_bytes());
                }
                b.extend_from_slice(&(chunks.len() as i32).to_le_bytes());
                for &(s, e) in chunks {
                    b.extend_from_slice(&v(s)?.to_le_bytes());
                    b.extend_from_slice(&v(e)?.to_le_bytes());
                }
            }
            if let (Some(first), Some(last)) = (r.first, r.last) {
                b.extend_from_slice(&pseudo_bin(depth).to_le_bytes());
                if let Kind::Csi { .. } = self.kind {
                    b.extend_from_slice(&0u64.to_le_bytes());
                }
                b.extend_from_slice(&2i32.to_le_bytes());
                b.extend_from_slice(&v(first)?.to_le_bytes());
                b.extend_from_slice(&v(last)?.to_le_bytes());
                b.extend_from_slice(&r.mapped.to_le_bytes());
                b.extend_from_slice(&r.unmapped.to_le_bytes());
            }
            if self.kind == Kind::Bai {
                b.extend_from_slice(&(r.linear.len() as i32).to_le_bytes());
                // A window no record starts in points at the next one that
                // does: reading from there misses nothing.
                let mut next = r.last.map(v).transpose()?.unwrap_or(0);
                let mut linear = Vec::with_capacity(r.linear.len());
                for w in r.linear.iter().rev() {
                    if let Some(s) = w {
                        next = v(*s)?;
                    }
                    linear.push(next);
                }
                for off in linear.iter().rev() {
                    b.extend_from_slice(&off.to_le_bytes());
                }
            }
        }
        b.extend_from_slice(&self.no_coordinate.to_le_bytes());
        match (self.kind, &self.tabix) {
            (Kind::Bai, None) => out.write_all(&b)?,
            _ => {
                let mut w = crate::bgzf::Writer::new(&mut *out, 6, 1);
                w.write_all(&b)?;
                w.finish()?;
            }
        }
        out.flush()
    }
}

/// A BAI or CSI read back, for region queries.
pub struct Index {
    min_shift: u32,
    depth: u32,
    refs: Vec<ReadRef>,
}

#[derive(Default)]
struct ReadRef {
    bins: std::collections::HashMap<u32, Vec<(u64, u64)>>,
    /// BAI's linear index: the first record of each 16 kb window.
    linear: Vec<u64>,
}

fn bad(m: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("a damaged index: {m}"))
}

/// Reads little-endian values from a byte slice, failing past its end.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn take(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.0.len() < n {
            return Err(bad("it ends early"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self) -> io::Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> io::Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    /// A count, bounded by what the rest could hold at `each` bytes apiece.
    fn count(&mut self, each: usize) -> io::Result<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(each) > self.0.len() {
            return Err(bad("a count is larger than the file"));
        }
        Ok(n)
    }
}

impl Index {
    /// Read a BAI, or a CSI (BGZF-compressed).
    pub fn read(path: &std::path::Path) -> io::Result<Index> {
        let raw = std::fs::read(path)?;
        let data = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            io::Read::read_to_end(&mut crate::bgzf::Reader::new(&raw[..], 1), &mut out)?;
            out
        } else {
            raw
        };
        let mut b = Bytes(&data);
        let magic = b.take(4)?;
        let (csi, min_shift, depth) = match magic {
            b"BAI\x01" => (false, MIN_SHIFT, BAI_DEPTH),
            b"CSI\x01" => {
                let (m, d) = (b.u32()?, b.u32()?);
                if !(8..=30).contains(&m) || d > 10 {
                    return Err(bad("its binning scheme is out of range"));
                }
                let aux = b.count(1)?;
                b.take(aux)?;
                (true, m, d)
            }
            _ => return Err(bad("neither BAI nor CSI")),
        };
        let pseudo = pseudo_bin(depth);
        let n_ref = b.count(4)?;
        let mut refs = Vec::with_capacity(n_ref);
        for _ in 0..n_ref {
            let mut r = ReadRef::default();
            for _ in 0..b.count(8)? {
                let bin = b.u32()?;
                if csi {
                    b.u64()?;
                }
                let n = b.count(16)?;
                let mut chunks = Vec::with_capacity(n);
                for _ in 0..n {
                    chunks.push((b.u64()?, b.u64()?));
                }
                if bin != pseudo {
                    r.bins.insert(bin, chunks);
                }
            }
            if !csi {
                let n = b.count(8)?;
                r.linear = (0..n).map(|_| b.u64()).collect::<io::Result<_>>()?;
            }
            refs.push(r);
        }
        Ok(Index {
            min_shift,
            depth,
            refs,
        })
    }

    /// The least virtual offset from which reading in order meets every
    /// record overlapping `[beg, end)` on `ref_id`; None if none can.
    pub fn start_of(&self, ref_id: usize, beg: i64, end: i64) -> Option<u64> {
        let r = self.refs.get(ref_id)?;
        let (beg, end) = (beg.max(0), end.max(beg.max(0) + 1));
        let min_off = if r.linear.is_empty() {
            0
        } else {
            let w = ((beg >> MIN_SHIFT) as usize).min(r.linear.len() - 1);
            r.linear[w]
        };
        let mut best: Option<u64> = None;
        for level in 0..=self.depth {
            let shift = self.min_shift + 3 * (self.depth - level);
            let first = ((1u64 << (3 * level)) - 1) / 7;
            let (lo, hi) = ((beg >> shift) as u64, ((end - 1) >> shift) as u64);
            for bin in first + lo..=first + hi {
                let Some(chunks) = r.bins.get(&(bin as u32)) else {
                    continue;
                };
                for &(s, _) in chunks.iter().filter(|c| c.1 > min_off) {
                    best = Some(best.map_or(s, |b| b.min(s)));
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_match_the_specification() {
        for (beg, end) in [
            (0, 1),
            (16383, 16385),
            (100_000, 250_000),
            (0, 1 << 29),
            (5 << 20, 9 << 20),
        ] {
            assert_eq!(
                bin_of(beg, end, BAI_DEPTH),
                crate::bam::reg2bin(beg, end) as u32,
                "{beg}..{end}"
            );
        }
        assert_eq!(pseudo_bin(BAI_DEPTH), 37450);
    }

    #[test]
    fn long_references_get_a_csi_deep_enough() {
        assert_eq!(Kind::for_lengths([1000, BAI_MAX].into_iter()), Kind::Bai);
        let k = Kind::for_lengths([BAI_MAX + 1].into_iter());
        assert_eq!(k, Kind::Csi { depth: 6 });
        // The last base of a 2^32-base reference sits in the last leaf,
        // below the pseudo-bin.
        let leaf = bin_of((1 << 32) - 1, 1 << 32, 6);
        assert_eq!(leaf as u64, 37449 + (((1u64 << 32) - 1) >> 14));
        assert!(leaf < pseudo_bin(6));
    }

    #[test]
    fn unsorted_records_are_refused() {
        let s = Spot {
            block: 0,
            offset: 0,
        };
        let mut b = Builder::new(Kind::Bai, 1);
        b.add(0, 500, 600, false, s, s).unwrap();
        assert!(b.add(0, 400, 500, false, s, s).is_err());
    }
}
