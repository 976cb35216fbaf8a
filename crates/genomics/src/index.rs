//! The minimizer index of a reference.
//!
//! A (w, k) minimizer is, in every window of `w` consecutive k-mers, the
//! k-mer with the smallest hash, over both strands (a k-mer and its reverse
//! complement share one canonical form; the strand is kept). Two sequences
//! that share a stretch of `w + k - 1` bases share a minimizer, so a read's
//! minimizers, looked up in the reference's, give its candidate places.
//! K-mers that span an N are skipped.
//!
//! The index holds the reference itself (for extension and for output) and
//! a table from minimizer hash to positions, with a directory on the hash's
//! top bits so that a lookup is one bucket and a short search. It is saved
//! to one file (`PREFIX.ahx`), little-endian, with a magic and a version.

use crate::fasta::{Contig, Reference};
use crate::{GenomicsError, Result};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

const MAGIC: &[u8; 8] = b"AHGIDX01";

/// Largest reference the index addresses (positions are 31-bit, plus the
/// strand bit).
pub const MAX_BASES: u64 = 1 << 31;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// K-mer length, 8..=28.
    pub k: u32,
    /// Window, in k-mers, 1..=255.
    pub w: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params { k: 19, w: 10 }
    }
}

/// One minimizer: its hash, the position of its k-mer's last base, and
/// whether the canonical k-mer is the reverse complement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Minimizer {
    pub hash: u64,
    pub pos: u32,
    pub reverse: bool,
}

/// Thomas Wang's invertible 64-bit integer hash, restricted to `mask`: it
/// spreads k-mers evenly so that minimizers are not biased to poly-A.
#[inline]
pub fn hash64(key: u64, mask: u64) -> u64 {
    let mut key = (!key).wrapping_add(key << 21) & mask;
    key ^= key >> 24;
    key = (key.wrapping_add(key << 3).wrapping_add(key << 8)) & mask;
    key ^= key >> 14;
    key = (key.wrapping_add(key << 2).wrapping_add(key << 4)) & mask;
    key ^= key >> 28;
    key = key.wrapping_add(key << 31) & mask;
    key
}

/// The minimizers of `seq` (nucleotide codes), in order, appended to `out`.
pub fn sketch(seq: &[u8], p: Params, out: &mut Vec<Minimizer>) {
    // The window's k-mers sit in a ring indexed by the position of their
    // last base, masked: no wrap to test, and a window is found by the
    // positions themselves. It holds the hashes alone (u64::MAX marks a
    // symmetric k-mer), which the window's minimum scans, and the strands
    // apart. This runs for every base of every read.
    const RING: usize = 256;
    const _: () = assert!(RING > 255, "the ring holds the widest window");
    let k = p.k as usize;
    let w = p.w as usize;
    let shift = 2 * (p.k - 1);
    let mask = (1u64 << (2 * p.k)) - 1;
    let mut hashes = [u64::MAX; RING];
    let mut strands = [false; RING];
    let at = |i: usize| i & (RING - 1);
    let mut fwd = 0u64;
    let mut rev = 0u64;
    // Bases since the last N.
    let mut len = 0usize;
    // Position of the current minimum's last base, and its hash.
    let (mut min_at, mut min_hash) = (0usize, u64::MAX);
    // The last minimizer written (hash, position); none yet.
    let mut last_out = (u64::MAX, 0u32);
    for (i, &c) in seq.iter().enumerate() {
        if c >= 4 {
            len = 0;
            continue;
        }
        fwd = ((fwd << 2) | c as u64) & mask;
        rev = (rev >> 2) | ((3 - c as u64) << shift);
        len += 1;
        if len < k {
            continue;
        }
        let reverse = rev < fwd;
        let hash = if fwd != rev {
            hash64(if reverse { rev } else { fwd }, mask)
        } else {
            u64::MAX
        };
        hashes[at(i)] = hash;
        strands[at(i)] = reverse;
        // K-mers since the last N: a window needs `w` of them.
        let kmers = len + 1 - k;
        if kmers < w {
            continue;
        }
        let oldest = i + 1 - w;
        if kmers == w || min_at < oldest {
            // First full window, or the minimum just left it: scan, oldest
            // first, so the leftmost of equal hashes wins.
            (min_at, min_hash) = (oldest, hashes[at(oldest)]);
            for j in oldest + 1..=i {
                let h = hashes[at(j)];
                if h < min_hash {
                    (min_at, min_hash) = (j, h);
                }
            }
        } else if hash < min_hash {
            (min_at, min_hash) = (i, hash);
        } else {
            // The window before had the same minimum: written then (or
            // none at all).
            continue;
        }
        let pos = min_at as u32;
        if min_hash != u64::MAX && last_out != (min_hash, pos) {
            out.push(Minimizer {
                hash: min_hash,
                pos,
                reverse: strands[at(min_at)],
            });
            last_out = (min_hash, pos);
        }
    }
}

/// A reference and the table of its minimizers.
pub struct Index {
    pub params: Params,
    pub reference: Reference,
    dir_bits: u32,
    /// Bucket `b` of the directory covers `keys[dir[b]..dir[b + 1]]`.
    dir: Vec<u32>,
    /// Distinct minimizer hashes, sorted.
    keys: Vec<u64>,
    /// `positions[starts[i]..starts[i + 1]]` belong to `keys[i]`.
    starts: Vec<u32>,
    /// Global position of the k-mer's last base, shifted left by one, with
    /// the strand in bit 0.
    positions: Vec<u32>,
}

impl Index {
    /// Build the index of `reference`; `progress` gets (stage, done, total).
    pub fn build(
        reference: Reference,
        params: Params,
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<Index> {
        if !(8..=28).contains(&params.k) || !(1..=255).contains(&params.w) {
            return Err(GenomicsError::Invalid(format!(
                "index parameters k={} w={} out of range (k 8..=28, w 1..=255)",
                params.k, params.w
            )));
        }
        let total = reference.seq.len() as u64;
        if total >= MAX_BASES {
            return Err(GenomicsError::Invalid(format!(
                "the reference has {total} bases; this index addresses at most {MAX_BASES}"
            )));
        }
        let mut all: Vec<(u64, u32)> =
            Vec::with_capacity(total as usize * 2 / (params.w as usize + 1) + 16);
        let mut mins = Vec::new();
        for c in &reference.contigs {
            let s = &reference.seq[c.offset as usize..(c.offset + c.len) as usize];
            mins.clear();
            sketch(s, params, &mut mins);
            all.extend(
                mins.iter()
                    .map(|m| (m.hash, ((c.offset as u32 + m.pos) << 1) | m.reverse as u32)),
            );
            progress("minimizers", c.offset + c.len, total);
        }
        progress("sorting", 0, all.len() as u64);
        all.sort_unstable();
        progress("sorting", all.len() as u64, all.len() as u64);
        let mut keys = Vec::new();
        let mut starts = Vec::new();
        let mut positions = Vec::with_capacity(all.len());
        for (i, &(h, p)) in all.iter().enumerate() {
            if i == 0 || all[i - 1].0 != h {
                keys.push(h);
                starts.push(positions.len() as u32);
            }
            positions.push(p);
        }
        starts.push(positions.len() as u32);
        drop(all);
        // About two keys per bucket.
        let dir_bits =
            (usize::BITS - keys.len().max(1).leading_zeros()).clamp(1, 2 * params.k - 1) - 1;
        let dir = directory(&keys, params.k, dir_bits);
        Ok(Index {
            params,
            reference,
            dir_bits,
            dir,
            keys,
            starts,
            positions,
        })
    }

    /// Positions of a minimizer hash: `(global_pos << 1) | reverse`.
    #[inline]
    pub fn get(&self, hash: u64) -> &[u32] {
        let b = (hash >> (2 * self.params.k - self.dir_bits)) as usize;
        let (lo, hi) = (self.dir[b] as usize, self.dir[b + 1] as usize);
        match self.keys[lo..hi].binary_search(&hash) {
            Ok(i) => {
                let i = lo + i;
                &self.positions[self.starts[i] as usize..self.starts[i + 1] as usize]
            }
            Err(_) => &[],
        }
    }

    /// Distinct minimizers and their total occurrences.
    pub fn stats(&self) -> (usize, usize) {
        (self.keys.len(), self.positions.len())
    }

    /// The occurrence count at the given quantile of distinct minimizers
    /// (e.g. 0.9998): lookups above it are repeats to skip.
    pub fn occurrence_quantile(&self, q: f64) -> usize {
        let mut counts: Vec<u32> = self.starts.windows(2).map(|w| w[1] - w[0]).collect();
        if counts.is_empty() {
            return 0;
        }
        let i = ((counts.len() as f64 * q) as usize).min(counts.len() - 1);
        let (_, v, _) = counts.select_nth_unstable(i);
        *v as usize
    }

    /// Write the index to `path` (through a temporary file, renamed at the
    /// end, so a failure leaves no file that looks complete).
    pub fn save(&self, path: &Path) -> Result<()> {
        let err = |source| GenomicsError::Io {
            path: path.to_path_buf(),
            source,
        };
        let tmp = path.with_extension("ahx.tmp");
        let f = std::fs::File::create(&tmp).map_err(err)?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        let written = self.write_to(&mut w).and_then(|_| w.flush());
        drop(w);
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(err(e));
        }
        std::fs::rename(&tmp, path).map_err(err)
    }

    /// The index file's bytes, in order, to any writer.
    pub fn write_to(&self, w: &mut dyn Write) -> std::io::Result<()> {
        w.write_all(MAGIC)?;
        for v in [self.params.k, self.params.w, self.dir_bits] {
            w.write_all(&v.to_le_bytes())?;
        }
        w.write_all(&(self.reference.contigs.len() as u64).to_le_bytes())?;
        for c in &self.reference.contigs {
            w.write_all(&(c.name.len() as u64).to_le_bytes())?;
            w.write_all(c.name.as_bytes())?;
            w.write_all(&c.offset.to_le_bytes())?;
            w.write_all(&c.len.to_le_bytes())?;
        }
        w.write_all(&(self.reference.seq.len() as u64).to_le_bytes())?;
        w.write_all(&self.reference.seq)?;
        write_u64s(w, &self.keys)?;
        write_u32s(w, &self.starts)?;
        write_u32s(w, &self.positions)?;
        write_u32s(w, &self.dir)
    }

    pub fn load(path: &Path) -> Result<Index> {
        let f = std::fs::File::open(path).map_err(|source| GenomicsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let size = f.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
        Self::read_from(&mut BufReader::with_capacity(1 << 20, f), path, size)
    }

    /// Read an index from any byte source of `size` bytes (`u64::MAX` if
    /// unknown); `name` stands for it in errors. Every table is checked, so
    /// a corrupt source is an error, never a panic later. With the size
    /// known, each table is allocated once at its length: grown by
    /// doubling, they took 40% more memory than the index.
    pub fn read_from(mut r: &mut dyn Read, name: &Path, size: u64) -> Result<Index> {
        let path = name;
        let bad = |what: &str| GenomicsError::Invalid(format!("{}: {what}", path.display()));
        let io = |e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                bad("the index file is truncated; build it again with `accelhub genomics index`")
            } else {
                GenomicsError::Io {
                    path: path.to_path_buf(),
                    source: e,
                }
            }
        };
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic).map_err(io)?;
        if &magic != MAGIC {
            return Err(bad(
                "not an Accelhub genomics index (or one of another version); build it with `accelhub genomics index`",
            ));
        }
        let k = read_u32(&mut r).map_err(io)?;
        let w = read_u32(&mut r).map_err(io)?;
        let dir_bits = read_u32(&mut r).map_err(io)?;
        if !(8..=28).contains(&k) || dir_bits >= 2 * k {
            return Err(bad("corrupt index header"));
        }
        let n = read_u64(&mut r).map_err(io)?;
        let mut contigs = Vec::new();
        for _ in 0..n {
            let len = read_u64(&mut r).map_err(io)?;
            if len > 1 << 16 {
                return Err(bad("corrupt contig name"));
            }
            let mut name = vec![0u8; len as usize];
            r.read_exact(&mut name).map_err(io)?;
            contigs.push(Contig {
                name: String::from_utf8_lossy(&name).into_owned(),
                offset: read_u64(&mut r).map_err(io)?,
                len: read_u64(&mut r).map_err(io)?,
            });
        }
        let seq_len = read_u64(&mut r).map_err(io)?;
        if seq_len >= MAX_BASES {
            return Err(bad("corrupt sequence length"));
        }
        let mut seq = vec![0u8; seq_len as usize];
        r.read_exact(&mut seq).map_err(io)?;
        // What the tables may take: the source less what came before.
        let mut left = size.saturating_sub(seq_len);
        let keys = read_u64s(&mut r, &mut left).map_err(io)?;
        let starts = read_u32s(&mut r, &mut left).map_err(io)?;
        let positions = read_u32s(&mut r, &mut left).map_err(io)?;
        let dir = read_u32s(&mut r, &mut left).map_err(io)?;
        // Lookups slice by these tables, so every offset must be in order
        // and in range: a corrupt file is an error, not a panic later.
        // Not stopping at the first fault: a loop the compiler runs many
        // values at a time, over tables of millions.
        let ascending = |v: &[u32]| {
            let next = v.get(1..).unwrap_or(&[]);
            v.iter().zip(next).fold(true, |ok, (a, b)| ok & (a <= b))
        };
        let consistent = starts.len() == keys.len() + 1
            && starts.last().copied() == Some(positions.len() as u32)
            && ascending(&starts)
            && dir.len() == (1usize << dir_bits) + 1
            && dir.last().copied() == Some(keys.len() as u32)
            && ascending(&dir)
            && contigs.iter().all(|c| c.offset + c.len <= seq_len);
        if !consistent {
            return Err(bad("the index's tables do not fit together (corrupt file)"));
        }
        Ok(Index {
            params: Params { k, w },
            reference: Reference { contigs, seq },
            dir_bits,
            dir,
            keys,
            starts,
            positions,
        })
    }
}

fn directory(keys: &[u64], k: u32, bits: u32) -> Vec<u32> {
    let shift = 2 * k - bits;
    let n = 1usize << bits;
    let mut dir = Vec::with_capacity(n + 1);
    let mut i = 0usize;
    for b in 0..=n {
        while i < keys.len() && ((keys[i] >> shift) as usize) < b {
            i += 1;
        }
        dir.push(i as u32);
    }
    dir
}

fn write_u64s(w: &mut dyn Write, v: &[u64]) -> std::io::Result<()> {
    w.write_all(&(v.len() as u64).to_le_bytes())?;
    for x in v {
        w.write_all(&x.to_le_bytes())?;
    }
    Ok(())
}

fn write_u32s(w: &mut dyn Write, v: &[u32]) -> std::io::Result<()> {
    w.write_all(&(v.len() as u64).to_le_bytes())?;
    for x in v {
        w.write_all(&x.to_le_bytes())?;
    }
    Ok(())
}

fn read_u32(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(r: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// A length-prefixed array of `N`-byte little-endian values, of at most
/// `left` bytes (then less what it took). A length past that is a
/// truncated source, told before anything is allocated; within it the
/// array is allocated once. Read in chunks.
fn read_array<T, const N: usize>(
    r: &mut impl Read,
    left: &mut u64,
    from_le: impl Fn([u8; N]) -> T,
) -> std::io::Result<Vec<T>> {
    let n = read_u64(r)?;
    let bytes = n.checked_mul(N as u64).filter(|&b| b <= *left);
    let Some(bytes) = bytes else {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    };
    *left -= bytes;
    // An unknown size bounds nothing: grow as the bytes arrive.
    let mut v = Vec::with_capacity(if *left > 1 << 40 { 0 } else { n as usize });
    // Chunks larger than the reader's buffer (1 MiB) are read past it,
    // straight from the file: no copy through it.
    let mut buf = vec![0u8; (n as usize).saturating_mul(N).min(1 << 22)];
    let mut left = n as usize;
    while left > 0 {
        let take = left.min(buf.len() / N);
        r.read_exact(&mut buf[..take * N])?;
        v.extend(buf[..take * N].chunks_exact(N).map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            from_le(a)
        }));
        left -= take;
    }
    Ok(v)
}

fn read_u64s(r: &mut impl Read, left: &mut u64) -> std::io::Result<Vec<u64>> {
    read_array(r, left, u64::from_le_bytes)
}

fn read_u32s(r: &mut impl Read, left: &mut u64) -> std::io::Result<Vec<u32>> {
    read_array(r, left, u32::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition `sketch` implements, window by window: in every run
    /// of `w` consecutive k-mers (no N among their bases), the leftmost of
    /// the least hashes, symmetric k-mers never, each once.
    fn sketch_by_windows(seq: &[u8], p: Params) -> Vec<Minimizer> {
        let (k, w) = (p.k as usize, p.w as usize);
        let mask = (1u64 << (2 * p.k)) - 1;
        let mut out: Vec<Minimizer> = Vec::new();
        let mut kmers: Vec<Minimizer> = Vec::new();
        let flush = |kmers: &mut Vec<Minimizer>, out: &mut Vec<Minimizer>| {
            for win in kmers.windows(w) {
                let min = win.iter().min_by_key(|m| m.hash).copied();
                if let Some(m) = min.filter(|m| m.hash != u64::MAX) {
                    if out
                        .last()
                        .is_none_or(|l| (l.hash, l.pos) != (m.hash, m.pos))
                    {
                        out.push(m);
                    }
                }
            }
            kmers.clear();
        };
        let mut run = 0;
        for i in 0..seq.len() {
            if seq[i] >= 4 {
                flush(&mut kmers, &mut out);
                run = 0;
                continue;
            }
            run += 1;
            if run < k {
                continue;
            }
            let kmer = &seq[i + 1 - k..=i];
            let fwd = kmer.iter().fold(0u64, |x, &c| x << 2 | c as u64);
            let rev = kmer
                .iter()
                .rev()
                .fold(0u64, |x, &c| x << 2 | (3 - c) as u64);
            kmers.push(if fwd == rev {
                Minimizer {
                    hash: u64::MAX,
                    pos: 0,
                    reverse: false,
                }
            } else {
                Minimizer {
                    hash: hash64(fwd.min(rev), mask),
                    pos: i as u32,
                    reverse: rev < fwd,
                }
            });
        }
        flush(&mut kmers, &mut out);
        out
    }

    #[test]
    fn sketch_keeps_to_the_definition() {
        let mut rnd = crate::draws(0x853c_49e6_748f_ea9bu64);
        for (k, w) in [(19, 10), (8, 1), (8, 3), (15, 25), (28, 255)] {
            let p = Params { k, w };
            for _ in 0..20 {
                // Random bases, low-complexity stretches (equal hashes,
                // palindromes) and Ns.
                let mut seq: Vec<u8> = Vec::new();
                while seq.len() < 3000 {
                    match rnd(10) {
                        0 => seq.extend(std::iter::repeat_n(4, 1 + rnd(3) as usize)),
                        1 => seq.extend([0, 3].repeat(1 + rnd(30) as usize)),
                        2 => seq.extend(std::iter::repeat_n(rnd(4) as u8, 40)),
                        _ => seq.extend((0..50).map(|_| rnd(4) as u8)),
                    }
                }
                let mut fast = Vec::new();
                sketch(&seq, p, &mut fast);
                assert_eq!(fast, sketch_by_windows(&seq, p), "k {k} w {w}");
            }
        }
    }
}
