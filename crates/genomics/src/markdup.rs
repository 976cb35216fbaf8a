//! Duplicate marking on a coordinate-sorted BAM, as `samtools markdup`
//! decides it, per library.
//!
//! A read pair's signature, seen from each of its reads, is the
//! reference and unclipped 5' end of the read and of its mate (from `MC`),
//! their orientation, and whether the read is the leftmost of the two.
//! Reads with the same signature are copies of one fragment: the one
//! whose pair has the highest sum of base qualities of at least 15 stays,
//! ties going to the smaller name, and the others get flag 0x400. A read
//! without a mapped mate is compared on its own 5' end and strand; it is
//! a duplicate if a read of a pair starts there, or if another such read
//! with more quality does (the first one met wins ties).
//!
//! Unlike samtools, this needs no `samtools fixmate` first: the mate's
//! quality comes from a first pass over the file, which also checks the
//! order. So memory grows with the reads (about 80 bytes each, names
//! included), not with a window; a 30x human genome wants a sharded run.

use crate::bam::reader::{Header, Reader};
use crate::bam::record::*;
use crate::bam::writer::SortedWriter;
use crate::{GenomicsError, Result};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::path::Path;

/// How to mark.
#[derive(Debug, Clone)]
pub struct MarkdupOptions {
    pub threads: usize,
    pub level: u32,
    /// Drop duplicates instead of flagging them (`-r`).
    pub remove: bool,
    /// Also flag secondary, supplementary and unmapped records of
    /// duplicates (`-S`).
    pub supplementary: bool,
}

/// Counts, named as `samtools markdup -s` names them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MarkdupStats {
    pub read: u64,
    pub written: u64,
    pub excluded: u64,
    pub examined: u64,
    pub paired: u64,
    pub single: u64,
    /// Reads of pairs marked.
    pub duplicate_pair: u64,
    pub duplicate_single: u64,
    pub duplicate_non_primary: u64,
    pub library_size: u64,
}

impl MarkdupStats {
    /// Reads flagged as duplicates, paired and single (primary records).
    pub fn duplicates(&self) -> u64 {
        self.duplicate_pair + self.duplicate_single
    }

    /// Of the reads examined, the share of duplicates, in percent.
    pub fn duplicate_pct(&self) -> f64 {
        100.0 * self.duplicates() as f64 / self.examined.max(1) as f64
    }

    /// One line: how many of the examined reads are duplicates.
    pub fn summary(&self) -> String {
        format!(
            "{} of {} examined reads are duplicates ({:.2}%)",
            self.duplicates(),
            self.examined,
            self.duplicate_pct()
        )
    }

    /// The report `-s` prints.
    pub fn report(&self) -> String {
        format!(
            "READ: {}\nWRITTEN: {}\nEXCLUDED: {}\nEXAMINED: {}\nPAIRED: {}\nSINGLE: {}\n\
             DUPLICATE PAIR: {}\nDUPLICATE SINGLE: {}\nDUPLICATE NON PRIMARY: {}\n\
             DUPLICATE PRIMARY TOTAL: {}\nDUPLICATE TOTAL: {}\nESTIMATED_LIBRARY_SIZE: {}\n",
            self.read,
            self.written,
            self.excluded,
            self.examined,
            self.paired,
            self.single,
            self.duplicate_pair,
            self.duplicate_single,
            self.duplicate_non_primary,
            self.duplicates(),
            self.duplicate_pair + self.duplicate_single + self.duplicate_non_primary,
            self.library_size
        )
    }
}

/// Where a read without a mapped mate starts (BAM positions are 32-bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct SingleKey {
    lib: u32,
    reference: i32,
    coord: i32,
    reverse: bool,
}

/// A pair's signature from one read's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct PairKey {
    lib: u32,
    reference: i32,
    coord: i32,
    other_ref: i32,
    other_coord: i32,
    leftmost: bool,
    orientation: Orientation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Orientation {
    FF,
    RR,
    FR,
    RF,
}

/// An examined record (80 bytes).
struct Seen {
    /// Coordinate sort key and id: the order decisions are taken in.
    order: (u64, u64),
    name_hash: u64,
    name: (u32, u8),
    own: u32,
    single: SingleKey,
    pair: Option<PairKey>,
}

/// Sum of base qualities of at least 15, the score samtools and Picard use.
fn quality_score(q: &[u8]) -> u32 {
    q.iter()
        .filter(|&&q| (15..0xff).contains(&q))
        .map(|&q| q as u32)
        .sum()
}

/// A fast 64-bit hash of a read name (FNV-1a over 8-byte words, mixed).
fn name_hash(name: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ name.len() as u64;
    for c in name.chunks(8) {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(0x100_0000_01b3);
        h ^= h >> 29;
    }
    h.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (h >> 32)
}

/// Unclipped 5' ends: (start, end) of the read with its clips, 0-based,
/// end exclusive (kept to 32 bits, as BAM positions are).
fn unclipped(pos: i32, cigar: impl Iterator<Item = (u32, u8)> + Clone) -> (i32, i32) {
    let (front, back) = clips(cigar.clone());
    let clamp = |v: i64| v.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
    (
        clamp(pos as i64 - front),
        clamp(pos as i64 + ref_span(cigar) + back),
    )
}

/// The pair signature from `rec`'s side (`samtools markdup`'s template
/// mode).
fn pair_key(rec: &Record, lib: u32, mate_cigar: &[(u32, u8)]) -> PairKey {
    let (this_start, this_end) = unclipped(rec.pos(), rec.cigar());
    let (other_start, other_end) = unclipped(rec.mate_pos(), mate_cigar.iter().copied());
    let flag = rec.flag();
    let rev = flag & FLAG_REVERSE != 0;
    let mate_rev = flag & FLAG_MATE_REVERSE != 0;
    let read1 = flag & FLAG_READ1 != 0;
    let (this_ref, other_ref) = (rec.ref_id(), rec.mate_ref_id());
    let leftmost = if this_ref != other_ref {
        this_ref < other_ref
    } else {
        match (rev, mate_rev) {
            (false, false) => this_start <= other_start,
            (true, true) => this_end <= other_end,
            (true, false) => this_end <= other_start,
            (false, true) => this_start <= other_end,
        }
    };
    let (mut coord, mut other) = (this_start, other_start);
    let orientation = if rev == mate_rev {
        // Same strand: the pair reads as FF or RR by which read leads.
        if leftmost {
            other = other_end;
        } else {
            coord = this_end;
        }
        let forward_lead = rev != read1;
        if forward_lead == leftmost {
            Orientation::FF
        } else {
            Orientation::RR
        }
    } else if !rev {
        other = other_end;
        if leftmost {
            Orientation::FR
        } else {
            Orientation::RF
        }
    } else {
        coord = this_end;
        if leftmost {
            Orientation::RF
        } else {
            Orientation::FR
        }
    };
    PairKey {
        lib,
        reference: this_ref,
        coord,
        other_ref,
        other_coord: other,
        leftmost,
        orientation,
    }
}

fn format_error(path: &Path, record: u64, message: impl Into<String>) -> GenomicsError {
    GenomicsError::Format {
        path: path.to_path_buf(),
        record,
        message: message.into(),
    }
}

/// Collects what duplicate marking needs from each record, in any order;
/// [`DupFinder::resolve`] then decides in coordinate order, as samtools
/// would on the sorted file. Records are named by an id the caller
/// chooses (their number in the input).
pub struct DupFinder {
    libraries: HashMap<Vec<u8>, u32>,
    seen: Vec<Seen>,
    names: Vec<u8>,
    /// (name hash, quality) of primary records not examined (an
    /// unmapped mate, a failed one): their mates' pairs count them.
    others: Vec<(u64, u32)>,
    stats: MarkdupStats,
}

impl DupFinder {
    pub fn new(header: &Header) -> Self {
        DupFinder {
            libraries: library_ids(header),
            seen: Vec::new(),
            names: Vec::new(),
            others: Vec::new(),
            stats: MarkdupStats::default(),
        }
    }

    /// Take in record `id`; the error says what the record lacks.
    pub fn add(&mut self, id: u64, rec: &Record) -> std::result::Result<(), String> {
        self.stats.read += 1;
        let flag = rec.flag();
        let hash = name_hash(rec.name());
        let own = quality_score(rec.qual());
        if flag & (FLAG_SECONDARY | FLAG_SUPPLEMENTARY | FLAG_UNMAPPED | FLAG_QC_FAIL) != 0 {
            if flag & (FLAG_SECONDARY | FLAG_SUPPLEMENTARY) == 0 {
                self.others.push((hash, own));
            }
            self.stats.excluded += 1;
            return Ok(());
        }
        self.stats.examined += 1;
        let lib = rec
            .tag_str(b"RG")
            .and_then(|rg| self.libraries.get(rg).copied())
            .unwrap_or(0);
        let (start, end) = unclipped(rec.pos(), rec.cigar());
        let reverse = flag & FLAG_REVERSE != 0;
        let single = SingleKey {
            lib,
            reference: rec.ref_id(),
            coord: if reverse { end } else { start },
            reverse,
        };
        let pair = if flag & FLAG_PAIRED != 0 && flag & FLAG_MATE_UNMAPPED == 0 {
            self.stats.paired += 1;
            let mc = rec.tag_str(b"MC").ok_or(
                "a paired read has no MC tag (its mate's CIGAR); align with accelhub or run samtools fixmate -m first",
            )?;
            let mc = parse_cigar(mc).map_err(|m| format!("MC: {m}"))?;
            Some(pair_key(rec, lib, &mc))
        } else {
            self.stats.single += 1;
            None
        };
        let name = rec.name();
        self.seen.push(Seen {
            order: (crate::sort::key_of(rec), id),
            name: (self.names.len() as u32, name.len() as u8),
            name_hash: hash,
            own,
            single,
            pair,
        });
        self.names.extend_from_slice(name);
        Ok(())
    }

    /// Decide, in coordinate order (input order among equals). Groups
    /// are found by sorting, not hashing: a few index arrays beside the
    /// records, where hash tables would take several times their size.
    pub fn resolve(mut self, opts: &MarkdupOptions) -> Marks {
        let seen = &mut self.seen;
        if !seen.windows(2).all(|w| w[0].order <= w[1].order) {
            seen.sort_unstable_by_key(|s| s.order);
        }
        let seen = &self.seen;
        let names = &self.names;
        let name_of = |i: u32| {
            let s = &seen[i as usize];
            &names[s.name.0 as usize..s.name.0 as usize + s.name.1 as usize]
        };
        let n = seen.len();
        // A pair's score: the quality of all its primary reads.
        let mut score = vec![0u32; n];
        {
            let mut by_name: Vec<(u64, u32, u32)> = seen
                .iter()
                .enumerate()
                .map(|(i, s)| (s.name_hash, s.own, i as u32))
                .chain(self.others.iter().map(|&(h, q)| (h, q, u32::MAX)))
                .collect();
            by_name.sort_unstable_by_key(|e| e.0);
            for group in by_name.chunk_by(|a, b| a.0 == b.0) {
                let total: u32 = group.iter().map(|e| e.1).sum();
                for e in group.iter().filter(|e| e.2 != u32::MAX) {
                    let s = &seen[e.2 as usize];
                    score[e.2 as usize] = if s.pair.is_some() { total } else { s.own };
                }
            }
        }
        let stats = &mut self.stats;
        let mut dup = vec![false; n];
        // Pairs: per signature, the highest score stays, then the smaller
        // name, then the first met.
        let mut idx: Vec<u32> = (0..n as u32)
            .filter(|&i| seen[i as usize].pair.is_some())
            .collect();
        idx.sort_unstable_by_key(|&i| (seen[i as usize].pair, i));
        for group in idx.chunk_by(|&a, &b| seen[a as usize].pair == seen[b as usize].pair) {
            let Some(&first) = group.first() else {
                continue;
            };
            let mut best = first;
            for &i in &group[1..] {
                let (a, b) = (score[i as usize], score[best as usize]);
                if a > b || (a == b && name_of(i) < name_of(best)) {
                    best = i;
                }
            }
            for &i in group.iter().filter(|&&i| i != best) {
                dup[i as usize] = true;
            }
            stats.duplicate_pair += group.len() as u64 - 1;
        }
        // Singles: a duplicate where a pair's read starts; otherwise the
        // most quality stays, the first met among equals.
        idx.clear();
        idx.extend(0..n as u32);
        idx.sort_unstable_by_key(|&i| (seen[i as usize].single, i));
        for group in idx.chunk_by(|&a, &b| seen[a as usize].single == seen[b as usize].single) {
            let paired = group.iter().any(|&i| seen[i as usize].pair.is_some());
            let mut alone = group
                .iter()
                .copied()
                .filter(|&i| seen[i as usize].pair.is_none());
            let keep = if paired {
                None
            } else {
                alone.clone().reduce(|best, i| {
                    if seen[i as usize].own > seen[best as usize].own {
                        i
                    } else {
                        best
                    }
                })
            };
            for i in alone.by_ref().filter(|&i| Some(i) != keep) {
                dup[i as usize] = true;
                stats.duplicate_single += 1;
            }
        }
        drop(idx);
        stats.library_size = library_size(stats.paired, stats.duplicate_pair);
        let last = seen.iter().map(|s| s.order.1).max().map_or(0, |m| m + 1);
        let mut dups = Bits::new(last);
        let mut examined = Bits::new(last);
        for (s, &d) in seen.iter().zip(&dup) {
            examined.set(s.order.1);
            if d {
                dups.set(s.order.1);
            }
        }
        let names: HashSet<u64> = if opts.supplementary {
            seen.iter()
                .zip(&dup)
                .filter(|(_, &d)| d)
                .map(|(s, _)| s.name_hash)
                .collect()
        } else {
            HashSet::default()
        };
        Marks {
            dups,
            examined,
            names,
            remove: opts.remove,
            supplementary: opts.supplementary,
            stats: self.stats,
        }
    }
}

/// A set of record ids.
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: u64) -> Self {
        Bits(vec![0; n.div_ceil(64) as usize])
    }
    fn set(&mut self, i: u64) {
        self.0[(i / 64) as usize] |= 1 << (i % 64);
    }
    fn get(&self, i: u64) -> bool {
        self.0
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

/// The decisions: which records are duplicates.
pub struct Marks {
    /// Examined records that are duplicates.
    dups: Bits,
    /// Every examined record.
    examined: Bits,
    /// With `-S`: name hashes of duplicates.
    names: HashSet<u64>,
    remove: bool,
    supplementary: bool,
    pub stats: MarkdupStats,
}

impl Marks {
    /// The flag record `id` is written with, or None to drop it. An
    /// examined record's duplicate flag is decided afresh; others keep
    /// theirs unless `-S` marks them with their duplicate read.
    pub fn flag(&mut self, id: u64, rec: &Record) -> Option<u16> {
        let flag = rec.flag();
        let is_dup = if self.examined.get(id) {
            self.dups.get(id)
        } else {
            let extra = self.supplementary
                && flag & (FLAG_SECONDARY | FLAG_SUPPLEMENTARY | FLAG_UNMAPPED) != 0
                && self.names.contains(&name_hash(rec.name()));
            if extra {
                self.stats.duplicate_non_primary += 1;
            }
            extra || flag & FLAG_DUPLICATE != 0
        };
        if is_dup && self.remove {
            return None;
        }
        self.stats.written += 1;
        Some(if is_dup {
            flag | FLAG_DUPLICATE
        } else {
            flag & !FLAG_DUPLICATE
        })
    }
}

/// Mark duplicates in `input` (coordinate-sorted SAM or BAM) into
/// `output` (BAM, indexed). `progress` hears (stage, records).
pub fn markdup_file(
    input: &Path,
    output: &Path,
    opts: &MarkdupOptions,
    command_line: &str,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<MarkdupStats> {
    let mut reader = Reader::open(input, opts.threads)?;
    if reader.header.sort_order().as_deref() == Some("queryname") {
        return Err(format_error(
            input,
            0,
            "the file is sorted by name; markdup needs it sorted by coordinate (accelhub genomics sort)",
        ));
    }
    let mut finder = DupFinder::new(&reader.header);
    let mut buf = Vec::new();
    let mut last = 0u64;
    while reader.next_into(&mut buf)? {
        let n = reader.records;
        let rec = Record::new(&buf).map_err(|m| format_error(input, n, m))?;
        if n.is_multiple_of(100_000) {
            progress("examined", n);
        }
        let key = crate::sort::key_of(&rec) >> 1;
        if key < last {
            return Err(format_error(
                input,
                n,
                "the records are not sorted by coordinate (accelhub genomics sort)",
            ));
        }
        last = key;
        finder
            .add(n - 1, &rec)
            .map_err(|m| format_error(input, n, m))?;
    }
    progress("examined", reader.records);
    let mut marks = finder.resolve(opts);

    // Second pass: write with the flags.
    let mut reader = Reader::open(input, opts.threads)?;
    let mut header: Header = reader.header.clone();
    header.add_program("accelhub.markdup", command_line);
    let mut out = SortedWriter::create(output, &header, opts.level, opts.threads)?;
    let result = (|| -> Result<()> {
        while reader.next_into(&mut buf)? {
            let n = reader.records;
            let rec = Record::new(&buf).map_err(|m| format_error(input, n, m))?;
            if let Some(flag) = marks.flag(n - 1, &rec) {
                out.write_flagged(&rec, flag)?;
            }
            if n.is_multiple_of(100_000) {
                progress("written", n);
            }
        }
        Ok(())
    })();
    out.complete(result)?;
    Ok(marks.stats)
}

/// A number per library, by read group id.
fn library_ids(h: &Header) -> HashMap<Vec<u8>, u32> {
    let mut ids: HashMap<Vec<u8>, u32> = HashMap::default();
    let mut out = HashMap::default();
    for (rg, lb) in h.libraries() {
        let n = ids.len() as u32 + 1;
        let id = *ids.entry(lb).or_insert(n);
        out.insert(rg, id);
    }
    out
}

/// Picard's estimate of the distinct fragments in the library, from read
/// counts of pairs examined and marked (optical duplicates not told
/// apart): solve `c / x = 1 - exp(-n / x)` for `x`.
pub fn library_size(paired_reads: u64, duplicate_reads: u64) -> u64 {
    let n = (paired_reads / 2) as f64;
    let c = ((paired_reads - duplicate_reads.min(paired_reads)) / 2) as f64;
    let dups = (duplicate_reads / 2) as f64;
    if n == 0.0 || dups == 0.0 || c == 0.0 || n <= dups {
        return 0;
    }
    let f = |x: f64| c / x - 1.0 + (-n / x).exp();
    let (mut lo, mut hi) = (1.0, 100.0);
    if f(lo * c) < 0.0 {
        return 0;
    }
    while f(hi * c) > 0.0 {
        hi *= 10.0;
    }
    for _ in 0..40 {
        let mid = (lo + hi) / 2.0;
        let v = f(mid * c);
        if v > 0.0 {
            lo = mid;
        } else if v < 0.0 {
            hi = mid;
        } else {
            break;
        }
    }
    (c * (lo + hi) / 2.0) as u64
}
