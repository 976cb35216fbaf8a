//! The short-read aligner: minimizer seeds, diagonal clustering, ungapped
//! extension with a banded affine-gap fallback, paired-end pairing with an
//! insert-size model estimated from the data, mate rescue, and SAM output.

use crate::dp::{banded, best_stretch, nm_score, soft_clips, ungapped, Alignment, Op, Scoring};
use crate::fastq::{FastqReader, PairReader, Read};
use crate::index::{hash64, sketch, Index, Minimizer};
use crate::seq::{
    count_equal, differences, equal_bytes, matches_along, odd_bytes, revcomp_into, word_at, LETTER,
};
use crate::{GenomicsError, Result};
use std::io::Write;

mod pair;
mod sam;
use pair::*;
use sam::*;

#[derive(Debug, Clone)]
pub struct AlignOptions {
    pub threads: usize,
    /// A whole `@RG` header line (tabs as `\t` are accepted).
    pub read_group: Option<String>,
    pub scoring: Scoring,
    /// Skip minimizers with more occurrences (0: the index's 99.98th
    /// percentile, at least 20).
    pub max_occ: usize,
    /// Half-width of the band of diagonals for gapped extension.
    pub band: usize,
    /// Read pairs per batch (memory is bounded by one batch per thread).
    pub batch: usize,
    /// The command line, for the @PG header.
    pub command_line: String,
    /// SAM text, or BAM records (to be BGZF-compressed by the caller, see
    /// [`crate::bam`]).
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Sam,
    Bam,
}

impl Default for AlignOptions {
    fn default() -> Self {
        AlignOptions {
            threads: 1,
            read_group: None,
            scoring: Scoring::default(),
            max_occ: 500,
            band: 12,
            batch: 10_000,
            command_line: String::new(),
            format: Format::Sam,
        }
    }
}

/// One placement of a read.
#[derive(Debug, Clone)]
pub struct Hit {
    pub contig: usize,
    /// 0-based leftmost reference position, on the contig.
    pub pos: u64,
    pub reverse: bool,
    pub cigar: Vec<(Op, u32)>,
    /// The best score of a stretch of the alignment, with no clipping
    /// penalty, as bwa's `AS`: a read with a mismatch near its end aligns
    /// end to end (clipping costs more), yet scores as if clipped there.
    /// It ranks placements and pairs, and MAPQ reads it, as bwa's does.
    pub score: i32,
    pub nm: u32,
    ref_len: u64,
    /// Seed hits of the cluster it was extended from (0: found by mate
    /// rescue).
    seeds: u32,
}

impl Hit {
    fn end(&self) -> u64 {
        self.pos + self.ref_len
    }

    /// The part of the read this hit aligns, in the read's own (forward)
    /// coordinates: `[start, end)`.
    fn read_span(&self, len: usize) -> (usize, usize) {
        let (lead, trail) = soft_clips(&self.cigar);
        if self.reverse {
            (trail, len.saturating_sub(lead))
        } else {
            (lead, len.saturating_sub(trail))
        }
    }

    fn same_place(&self, o: &Hit) -> bool {
        self.contig == o.contig && self.pos == o.pos && self.reverse == o.reverse
    }

    /// The place as one number, for breaking ties.
    fn place(&self) -> u64 {
        ((self.contig as u64) << 40) ^ (self.pos << 1) ^ self.reverse as u64
    }
}

/// The seed of a read's tie-breaking: a hash of its name, so that equally
/// good placements are chosen uniformly at random over reads, yet the same
/// read gets the same choice in every run and with any thread count.
fn name_seed(name: &[u8]) -> u64 {
    // FNV-1a.
    name.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The rank of a place among equals, for a read with tie seed `seed`.
fn tie(seed: u64, place: u64) -> u64 {
    hash64(seed ^ place.wrapping_mul(0x9e37_79b9_7f4a_7c15), u64::MAX)
}

/// The rank of a cluster among equally strong ones. Its place counts in
/// 2 kb buckets first, so that the two mates of a fragment in a repeat
/// order its copies alike and look at the same ones.
fn cluster_tie(seed: u64, diag: i64, reverse: bool) -> u64 {
    let at = (diag + DIAG_BIAS) as u64;
    (tie(seed, at >> 11) & !0xffff) | (tie(seed, at << 1 | reverse as u64) & 0xffff)
}

/// Sort hits best first, equals in the read's random order.
fn rank(hits: &mut [Hit], seed: u64) {
    if hits.len() > 1 {
        hits.sort_by_cached_key(|h| (std::cmp::Reverse(h.score), tie(seed, h.place())));
    }
}

/// Whether two hits explain mostly different parts of a read: their
/// overlap is under half of the shorter one (then they are parts of a
/// chimeric read, not alternatives to each other).
fn disjoint(a: (usize, usize), b: (usize, usize)) -> bool {
    let overlap = a.1.min(b.1).saturating_sub(a.0.max(b.0));
    let shorter = (a.1 - a.0).min(b.1 - b.0);
    overlap * 2 < shorter
}

/// The shortest part of a read given its own (supplementary) record.
const MIN_SPLIT: usize = 30;
/// The least a read's other part must add (and its best part leave
/// clipped) for the two to be joined across an indel
/// ([`Aligner::join_parts`]): shorter clips are sequencing errors at an
/// end far more often, and the realignment costs a wide band.
const MIN_JOIN_PART: usize = 20;
/// The longest indel two parts of a read are joined across.
const MAX_JOIN: i64 = 60;
/// Three mismatches within this many bases call for a gapped search
/// ([`crowded_inside`]) ...
const CROWDED_SPAN: usize = 12;
/// ... over this many diagonals each side.
const PAIRED_INDEL_BAND: i64 = 4;

/// A supplementary alignment: another part of a chimeric read, with its
/// own MAPQ.
struct Split<'h> {
    hit: &'h Hit,
    mapq: u8,
}

/// A read's placements, best first, and what MAPQ needs.
#[derive(Debug, Clone, Default)]
struct Mapped {
    hits: Vec<Hit>,
    /// Best score at another locus (0 if none).
    sub: i32,
    /// Other loci scoring as well as the best.
    n_equal: u32,
    /// Fraction of the read's minimizers too frequent to look up: the read
    /// lies (partly) in a repeat whose copies were not all examined.
    repeat: f32,
    /// The seed clusters this read's own search did not extend (strongest
    /// first, at most [`MAX_KEPT`]): pairing looks at them, since a
    /// fragment in a repeat is placed by its two mates together.
    rest: Vec<Cluster>,
}

/// A cluster of seed hits on one diagonal band: how many, which strand,
/// and the diagonal (reference position of the read's first base, on the
/// read's strand there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cluster {
    count: u32,
    reverse: bool,
    diag: i64,
    /// Rank among equally strong clusters ([`cluster_tie`]).
    tie: u64,
}

/// Insert-size bounds for proper pairs.
#[derive(Debug, Clone, Copy)]
pub struct InsertModel {
    pub mean: f64,
    pub sd: f64,
    pub lo: u64,
    pub hi: u64,
}

impl Default for InsertModel {
    fn default() -> Self {
        InsertModel {
            mean: 400.0,
            sd: 100.0,
            lo: 1,
            hi: 1000,
        }
    }
}

/// Counts of what was aligned.
#[derive(Debug, Clone, Default)]
pub struct AlignStats {
    pub reads: u64,
    pub mapped: u64,
    pub proper_pairs: u64,
    pub insert: Option<InsertModel>,
}

pub struct Aligner<'a> {
    idx: &'a Index,
    opts: AlignOptions,
    max_occ: usize,
}

struct Scratch {
    mins: Vec<Minimizer>,
    hits: Vec<u64>,
    rc: Vec<u8>,
    /// Room for [`sort_keys`].
    tmp: Vec<u64>,
    counts: Vec<Digits>,
    clusters: Vec<Cluster>,
}

/// Bits of a seed hit's key: the diagonal (plus [`DIAG_BIAS`]) below
/// [`STRAND_BIT`], the strand above.
const STRAND_BIT: u32 = 42;
const DIAG_MASK: u64 = (1 << STRAND_BIT) - 1;

/// Sort seed-hit keys (below 2^43): a repeat's read has thousands, where
/// a radix sort beats a comparison sort. The keys are sorted as offsets
/// from their least diagonal, with the strand just above the largest
/// offset: hits on one chromosome take three passes of up to 11 bits, a
/// repeat's copies close together fewer. One read of the keys counts the
/// digits of every pass; `counts` is room for the counts.
fn sort_keys(v: &mut Vec<u64>, tmp: &mut Vec<u64>, counts: &mut Vec<Digits>) {
    if v.len() < 256 {
        v.sort_unstable();
        return;
    }
    let (lo, hi) = v.iter().fold((u64::MAX, 0), |(lo, hi), &k| {
        (lo.min(k & DIAG_MASK), hi.max(k & DIAG_MASK))
    });
    let strand_at = u64::BITS - (hi - lo).leading_zeros();
    let bits = strand_at + 1;
    let passes = bits.div_ceil(MAX_DIGIT) as usize;
    let digit_bits = bits.div_ceil(passes as u32);
    let radix = 1usize << digit_bits;
    // A digit masked to the table's size too: the compiler then knows
    // every count is in bounds.
    let digit_mask = (radix - 1) & (MAX_RADIX - 1);
    if counts.len() < passes {
        counts.resize(passes, [0; MAX_RADIX]);
    }
    for c in &mut counts[..passes] {
        c[..radix].fill(0);
    }
    // The passes' count as a constant, so that the per-key loop unrolls.
    fn count<const P: usize>(
        v: &mut [u64],
        counts: &mut [Digits],
        bits: u32,
        mask: usize,
        to_offset: impl Fn(u64) -> u64,
    ) {
        let Some(counts) = counts.get_mut(..P) else {
            return;
        };
        for k in v.iter_mut() {
            *k = to_offset(*k);
            for (pass, c) in counts.iter_mut().enumerate() {
                c[(*k >> (pass as u32 * bits)) as usize & mask] += 1;
            }
        }
    }
    let to_offset = |k: u64| ((k >> STRAND_BIT) << strand_at) | ((k & DIAG_MASK) - lo);
    match passes {
        1 => count::<1>(v, counts, digit_bits, digit_mask, to_offset),
        2 => count::<2>(v, counts, digit_bits, digit_mask, to_offset),
        3 => count::<3>(v, counts, digit_bits, digit_mask, to_offset),
        _ => count::<4>(v, counts, digit_bits, digit_mask, to_offset),
    }
    // Room for the keys: grown, never cleared (every pass writes every
    // slot it reads), so the vectors may be longer than the keys.
    let n = v.len();
    if tmp.len() < n {
        tmp.resize(n, 0);
    }
    for (pass, c) in counts[..passes].iter_mut().enumerate() {
        let (src, dst) = (&v[..n], &mut tmp[..n]);
        let shift = pass as u32 * digit_bits;
        let mut at = 0;
        for c in c[..radix].iter_mut() {
            let n = *c;
            *c = at;
            at += n;
        }
        for &k in src {
            let d = (k >> shift) as usize & digit_mask;
            dst[c[d] as usize] = k;
            c[d] += 1;
        }
        std::mem::swap(v, tmp);
    }
    v.truncate(n);
    let offset = (1u64 << strand_at) - 1;
    for k in v.iter_mut() {
        *k = ((*k >> strand_at) << STRAND_BIT) | ((*k & offset) + lo);
    }
}

/// The widest digit of [`sort_keys`], and its table of counts.
const MAX_DIGIT: u32 = 11;
const MAX_RADIX: usize = 1 << MAX_DIGIT;
type Digits = [u32; MAX_RADIX];

const DIAG_BIAS: i64 = 1 << 40;
/// When a candidate gets the banded gapped extension after its ungapped one.
/// Each case carries the least score at which the hit would matter (to
/// MAPQ, XA or pairing, see [`floor_under`]): a candidate that cannot reach
/// it even with its shifted ends realigned keeps its ungapped score.
#[derive(Clone, Copy)]
enum Gapped {
    Always(i32),
    IfClipped(i32),
    Never,
}

/// The least score that matters beside a best hit scoring `best`: within
/// 20 points (MAPQ is 60 past that gap at these lengths, and a pair
/// beats an unpaired placement by at most 17) or 80% of it (an XA
/// alternative).
fn floor_under(best: i32) -> i32 {
    best - (best / 5).max(20)
}

/// No floor: every hit matters.
const ANY: i32 = i32::MIN;

/// Most candidate loci extended per read: enough to see the copies of a
/// segmental duplication, so that MAPQ knows the read is not unique.
const MAX_CANDIDATES: usize = 16;
/// Most unextended clusters kept per read for pairing: a read whose only
/// usable seed lies in a repeat has one cluster per copy, and its mate's
/// seeds tell which copy it is.
const MAX_KEPT: usize = 256;
/// MAPQ per point of score between the best pair and the next best
/// explanation, as BWA-MEM's. (Lower values for pairs whose mates are
/// ambiguous alone made up for copies of a repeat the search had missed;
/// with pairs found from both mates' seeds they cost 0.1 point of reads
/// at MAPQ >= 20 and saved no error.)
const PAIR_Q: f64 = 6.02;

impl<'a> Aligner<'a> {
    pub fn new(idx: &'a Index, opts: AlignOptions) -> Self {
        let max_occ = if opts.max_occ == 0 {
            idx.occurrence_quantile(0.9998).max(20)
        } else {
            opts.max_occ
        };
        Aligner { idx, opts, max_occ }
    }

    /// The seed occurrence cutoff in use.
    pub fn max_occ(&self) -> usize {
        self.max_occ
    }

    /// The header in the output format.
    pub fn header_bytes(&self) -> Vec<u8> {
        match self.opts.format {
            Format::Sam => self.header(),
            Format::Bam => {
                let contigs: Vec<(&str, u64)> = self
                    .idx
                    .reference
                    .contigs
                    .iter()
                    .map(|c| (c.name.as_str(), c.len))
                    .collect();
                crate::bam::header(&self.header(), &contigs)
            }
        }
    }

    /// The SAM header.
    pub fn header(&self) -> Vec<u8> {
        let mut h = Vec::new();
        let _ = writeln!(h, "@HD\tVN:1.6\tSO:unsorted");
        for c in &self.idx.reference.contigs {
            let _ = writeln!(h, "@SQ\tSN:{}\tLN:{}", c.name, c.len);
        }
        if let Some(rg) = &self.opts.read_group {
            let _ = writeln!(h, "{}", rg.replace("\\t", "\t"));
        }
        let _ = writeln!(
            h,
            "@PG\tID:accelhub\tPN:accelhub\tVN:{}\tCL:{}",
            env!("CARGO_PKG_VERSION"),
            self.opts.command_line.replace(['\t', '\n'], " ")
        );
        h
    }

    fn read_group_id(&self) -> Option<String> {
        let rg = self.opts.read_group.as_ref()?.replace("\\t", "\t");
        rg.split('\t')
            .find_map(|f| f.strip_prefix("ID:"))
            .map(str::to_string)
    }

    /// Check a read group line before any work.
    pub fn check_read_group(rg: &str) -> Result<()> {
        let rg = rg.replace("\\t", "\t");
        if !rg.starts_with("@RG\t") || !rg.split('\t').any(|f| f.starts_with("ID:")) {
            return Err(GenomicsError::Invalid(format!(
                "the read group must look like '@RG\\tID:name\\tSM:sample', got '{rg}'"
            )));
        }
        Ok(())
    }

    fn map(&self, seq: &[u8], seed: u64, s: &mut Scratch) -> Mapped {
        let l = seq.len();
        let k = self.idx.params.k as i64;
        s.mins.clear();
        sketch(seq, self.idx.params, &mut s.mins);
        s.hits.clear();
        let mut skipped = 0usize;
        for m in &s.mins {
            let occ = self.idx.get(m.hash);
            if occ.len() > self.max_occ {
                skipped += 1;
                continue;
            }
            // A hit on the minimizer's own strand has the read's first
            // base `pos` before it; on the other, the read runs backwards.
            let back = [
                m.pos as i64 - DIAG_BIAS,
                l as i64 + k - 2 - m.pos as i64 - DIAG_BIAS,
            ];
            let rev = m.reverse as u32;
            // Extended in one go: no capacity test per hit.
            s.hits.extend(occ.iter().map(|&p| {
                let strand = ((p & 1) ^ rev) as usize;
                ((strand as u64) << STRAND_BIT) | ((p >> 1) as i64 - back[strand]) as u64
            }));
        }
        sort_keys(&mut s.hits, &mut s.tmp, &mut s.counts);
        // Clusters of nearby diagonals on one strand: runs of keys within
        // `band` of their first. Keys of the two strands lie 2^42 apart,
        // far past any band, so one difference tells both.
        let band = self.opts.band as u64;
        // The scratch's vector: a repeat's read has thousands.
        let mut clusters = std::mem::take(&mut s.clusters);
        clusters.clear();
        let hits = &s.hits[..];
        let mut i = 0;
        while let Some(&first) = hits.get(i) {
            // The most frequent diagonal (the first of equals) and the
            // cluster's size.
            let (mut mode, mut mode_n, mut run_n) = (first, 1u32, 1u32);
            let mut j = i + 1;
            while let Some(&key) = hits.get(j) {
                if key - first > band {
                    break;
                }
                run_n = if key == hits[j - 1] { run_n + 1 } else { 1 };
                if run_n > mode_n {
                    mode_n = run_n;
                    mode = key;
                }
                j += 1;
            }
            let (reverse, diag) = (
                first >> STRAND_BIT == 1,
                (mode & DIAG_MASK) as i64 - DIAG_BIAS,
            );
            clusters.push(Cluster {
                count: (j - i) as u32,
                reverse,
                diag,
                tie: cluster_tie(seed, diag, reverse),
            });
            i = j;
        }
        // Strongest first; equals in the read's random order, so that the
        // candidate cut and ties favour no strand and no side. A read in a
        // repeat has thousands of clusters, nearly all of one seed hit:
        // only the strongest are kept, and only the candidates are sorted.
        let key = |c: &Cluster| (std::cmp::Reverse(c.count), c.tie);
        let total = clusters.len();
        let keep = 2 * MAX_CANDIDATES + MAX_KEPT;
        if total > keep {
            clusters.select_nth_unstable_by_key(keep, key);
            clusters.truncate(keep);
        }
        let first = clusters.len().min(2 * MAX_CANDIDATES);
        if clusters.len() > first {
            clusters.select_nth_unstable_by_key(first, key);
        }
        clusters[..first].sort_unstable_by_key(key);
        let top = clusters.first().map(|c| c.count).unwrap_or(0);
        let mut out = Mapped {
            repeat: skipped as f32 / s.mins.len().max(1) as f32,
            ..Default::default()
        };
        let mut seen: Vec<(bool, u64)> = Vec::new();
        // The reverse complement once, for every reverse-strand candidate.
        revcomp_into(seq, &mut s.rc);
        let mut tried = 0;
        // (score, seeds) of the best hit so far.
        let mut lead = (i32::MIN, 0u32);
        for (n, c) in clusters.iter().take(2 * MAX_CANDIDATES).enumerate() {
            let (count, reverse, diag) = (c.count, c.reverse, c.diag);
            if count * 4 < top && out.hits.len() >= 2 {
                break;
            }
            // Past the usual candidates, only clusters as strong as the
            // best hit's: in a repeat of many copies, they are what tells
            // its MAPQ that the read is not unique.
            if n >= MAX_CANDIDATES && count < lead.1 {
                break;
            }
            tried = n + 1;
            // Gapped extension for the best candidate; other strong ones
            // get it when their ungapped alignment had to clip (the mark
            // of an indel); a weak one only needs an ungapped score, as
            // the sub-optimal for MAPQ.
            let gapped = if n == 0 {
                Gapped::Always(ANY)
            } else if count * 2 >= top && n < MAX_CANDIDATES {
                Gapped::IfClipped(if lead.0 == i32::MIN {
                    ANY
                } else {
                    floor_under(lead.0)
                })
            } else {
                Gapped::Never
            };
            let q: &[u8] = if reverse { &s.rc } else { seq };
            if let Some(mut h) = self.extend(q, diag, reverse, gapped) {
                h.seeds = count;
                if h.score > lead.0 {
                    lead = (h.score, count);
                }
                let key = (
                    h.reverse,
                    self.idx.reference.contigs[h.contig].offset + h.pos,
                );
                if !seen.contains(&key) {
                    seen.push(key);
                    out.hits.push(h);
                }
            }
        }
        self.join_parts(seq, &s.rc, &mut out.hits);
        rank(&mut out.hits, seed);
        if let Some(best) = out.hits.first() {
            // Alternatives are hits of the same part of the read; a hit of
            // another part (a chimera's other half) is no competitor.
            let span = best.read_span(l);
            let alternatives = || {
                out.hits[1..]
                    .iter()
                    .filter(|h| !disjoint(span, h.read_span(l)))
            };
            out.sub = alternatives().map(|h| h.score).max().unwrap_or(0).max(0);
            out.n_equal = alternatives().filter(|h| h.score >= best.score).count() as u32;
            // Unexamined weaker clusters still say the read is not unique.
            if total > out.hits.len() && out.sub == 0 {
                out.sub = self.idx.params.k as i32;
            }
        }
        // Kept for pairing: those strong enough to have been candidates,
        // the strongest MAX_KEPT (in no order).
        out.rest = clusters[tried.min(clusters.len())..]
            .iter()
            .filter(|c| c.count * 4 >= top)
            .copied()
            .collect();
        if out.rest.len() > MAX_KEPT {
            out.rest.select_nth_unstable_by_key(MAX_KEPT, key);
            out.rest.truncate(MAX_KEPT);
        }
        s.clusters = clusters;
        out
    }

    /// A read across an indel longer than the band aligns in two parts,
    /// each clipped where the other begins: on one strand and contig, a
    /// few dozen diagonals apart. They are one alignment with a gap (as
    /// bwa's wider band finds it), which a variant caller needs to see the
    /// indel at all. Realign the read over both parts' diagonals and keep
    /// the joined hit in their place when it scores better than the best.
    fn join_parts(&self, seq: &[u8], rc: &[u8], hits: &mut Vec<Hit>) {
        let l = seq.len();
        let Some(bi) = (0..hits.len()).max_by_key(|&i| hits[i].score) else {
            return;
        };
        let b = &hits[bi];
        let span = b.read_span(l);
        if span.0 < MIN_JOIN_PART && l - span.1 < MIN_JOIN_PART {
            return;
        }
        let r = &self.idx.reference;
        // The reference position of the strand's first read base.
        let diag_of = |h: &Hit| {
            let lead = soft_clips(&h.cigar).0 as i64;
            (r.contigs[h.contig].offset + h.pos) as i64 - lead
        };
        let d0 = diag_of(b);
        let partner = hits
            .iter()
            .enumerate()
            .filter(|&(i, h)| {
                let s = h.read_span(l);
                let new = s.1.saturating_sub(span.1) + span.0.saturating_sub(s.0);
                let overlap = s.1.min(span.1).saturating_sub(s.0.max(span.0));
                i != bi
                    && overlap <= MIN_JOIN_PART
                    && h.contig == b.contig
                    && h.reverse == b.reverse
                    && new >= MIN_JOIN_PART
                    && (1..=MAX_JOIN).contains(&(diag_of(h) - d0).abs())
            })
            .max_by_key(|(_, h)| h.score);
        let Some((pi, p)) = partner else {
            return;
        };
        let d1 = diag_of(p);
        let c = &r.contigs[b.contig];
        let (cs, ce) = (c.offset as i64, (c.offset + c.len) as i64);
        let (lo, hi) = (d0.min(d1) - SHIFT_SLACK, d0.max(d1) + SHIFT_SLACK);
        let ws = lo.max(cs);
        let we = (hi + l as i64).min(ce);
        if we <= ws {
            return;
        }
        let q = if b.reverse { rc } else { seq };
        let Some(a) = banded(
            &self.opts.scoring,
            q,
            &r.seq[ws as usize..we as usize],
            (lo - ws) as isize,
            (hi - ws) as isize,
        ) else {
            return;
        };
        let Some(mut joined) = self.finish(q, Some((a, ws)), b.contig, b.reverse) else {
            return;
        };
        if joined.score <= b.score {
            return;
        }
        joined.seeds = b.seeds + p.seeds;
        let (first, second) = (bi.max(pi), bi.min(pi));
        hits.swap_remove(first);
        hits.swap_remove(second);
        hits.push(joined);
    }

    /// Extend a read (already on the candidate's strand) at diagonal
    /// `diag` (the reference position of its first base).
    fn extend(&self, q: &[u8], diag: i64, reverse: bool, gapped: Gapped) -> Option<Hit> {
        let r = &self.idx.reference;
        let l = q.len() as i64;
        let anchor = diag.clamp(0, r.seq.len() as i64 - 1);
        let ci = r.contig_at(anchor as u64)?;
        let c = &r.contigs[ci];
        let (cs, ce) = (c.offset as i64, (c.offset + c.len) as i64);
        let sc = &self.opts.scoring;
        let mut best: Option<(Alignment, i64)> = None;
        let band = self.opts.band as i64;
        // The diagonals of the gapped search, around `diag`.
        let mut span = (-band, band);
        if diag >= cs && diag + l <= ce {
            let refw = &r.seq[diag as usize..(diag + l) as usize];
            let (a, mism) = ungapped(sc, q, refw);
            // An indel shifts the rest of the read off the diagonal, where
            // three bases in four mismatch: the ungapped alignment clips
            // there, or (near an end) leaves mismatches crowded there.
            // Only when that end lies on another diagonal of the band can
            // the gapped search do better; scattered mismatches and
            // sequencing errors at an end are left as they are.
            let contig = &r.seq[cs as usize..ce as usize];
            let shifted = || shifted_end(q, contig, diag - cs, &a, band);
            let long_clip = || {
                let (lead, trail) = soft_clips(&a.cigar);
                lead.max(trail) >= LONG_CLIP
            };
            let can_reach =
                |floor: i32| floor == ANY || reach(sc, q, contig, diag - cs, &a, band) >= floor;
            // The diagonals the gapped search needs: around the shifts
            // that fit the ends, or, for a long clip that fits none (two
            // indels, or errors beside one), all of the band.
            let need = match gapped {
                _ if mism <= 2 => None,
                Gapped::Always(floor) if long_clip() => shifted()
                    .or(Some((-band, band)))
                    .filter(|_| can_reach(floor)),
                Gapped::Always(floor) | Gapped::IfClipped(floor) => shifted()
                    .or_else(|| {
                        crowded_inside(q, refw).then_some((-PAIRED_INDEL_BAND, PAIRED_INDEL_BAND))
                    })
                    .filter(|_| can_reach(floor)),
                Gapped::Never => None,
            };
            best = Some((a, diag));
            let Some((lo, hi)) = need else {
                return self.finish(q, best, ci, reverse);
            };
            span = ((lo - SHIFT_SLACK).max(-band), (hi + SHIFT_SLACK).min(band));
        }
        let (lo, hi) = span;
        let ws = (diag + lo).max(cs);
        let we = (diag + l + hi).min(ce);
        if we > ws {
            let off = (diag - ws) as isize;
            if let Some(a) = banded(
                sc,
                q,
                &r.seq[ws as usize..we as usize],
                off + lo as isize,
                off + hi as isize,
            ) {
                if best
                    .as_ref()
                    .map(|(b, _)| a.score > b.score)
                    .unwrap_or(true)
                {
                    best = Some((a, ws));
                }
            }
        }
        self.finish(q, best, ci, reverse)
    }

    /// The MD tag of a hit of `seq` (the read as sequenced).
    fn md_of(&self, h: &Hit, seq: &[u8]) -> String {
        let mut rc = Vec::new();
        let q = if h.reverse {
            revcomp_into(seq, &mut rc);
            &rc[..]
        } else {
            seq
        };
        let g = (self.idx.reference.contigs[h.contig].offset + h.pos) as usize;
        md(
            q,
            &self.idx.reference.seq[g..g + h.ref_len as usize],
            &h.cigar,
        )
    }

    fn finish(
        &self,
        q: &[u8],
        best: Option<(Alignment, i64)>,
        ci: usize,
        reverse: bool,
    ) -> Option<Hit> {
        let (a, base) = best?;
        if a.score < 20 {
            return None;
        }
        let r = &self.idx.reference;
        let c = &r.contigs[ci];
        let g = base as u64 + a.ref_start as u64;
        let ref_len = a.ref_len() as u64;
        if g < c.offset || g + ref_len > c.offset + c.len {
            return None;
        }
        let (nm, local) = nm_score(
            q,
            &r.seq[g as usize..(g + ref_len) as usize],
            &a.cigar,
            &self.opts.scoring,
        );
        Some(Hit {
            contig: ci,
            pos: g - c.offset,
            reverse,
            cigar: a.cigar,
            score: local,
            nm,
            ref_len,
            seeds: 0,
        })
    }

    /// Align single-end reads from `r1`, writing SAM to `out`.
    pub fn align_single(
        &self,
        mut reader: FastqReader,
        out: &mut dyn Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<AlignStats> {
        let mut stats = AlignStats::default();
        let rg = self.read_group_id();
        write_out(out, &self.header_bytes())?;
        loop {
            let mut batch = Vec::with_capacity(self.opts.batch);
            for _ in 0..self.opts.batch {
                let mut r = Read::default();
                if !reader.next_into(&mut r)? {
                    break;
                }
                batch.push(r);
            }
            if batch.is_empty() {
                break;
            }
            let chunks = self.parallel(&batch, |reads, s, buf| {
                let mut mapped = 0;
                for r in reads {
                    let m = self.map(&r.seq, name_seed(&r.name), s);
                    let q = mapq_of(&m, r.seq.len(), &self.opts.scoring);
                    if !m.hits.is_empty() {
                        mapped += 1;
                    }
                    let rec = Rec {
                        read: r,
                        hit: m.hits.first(),
                        mapq: q,
                        flag: 0,
                        mate: None,
                        tlen: 0,
                        sub: m.sub,
                        rg: rg.as_deref(),
                        sa: None,
                        xa: None,
                    };
                    self.write_with_split(buf, rec, &m.hits, m.repeat);
                }
                mapped
            });
            for (buf, mapped) in chunks {
                write_out(out, &buf)?;
                stats.mapped += mapped;
            }
            stats.reads += batch.len() as u64;
            progress(stats.reads);
        }
        Ok(stats)
    }

    /// Align read pairs, writing SAM to `out`.
    pub fn align_pairs(
        &self,
        mut reader: PairReader,
        out: &mut dyn Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<AlignStats> {
        let mut stats = AlignStats::default();
        let rg = self.read_group_id();
        write_out(out, &self.header_bytes())?;
        let mut model: Option<InsertModel> = None;
        loop {
            let mut batch = Vec::with_capacity(self.opts.batch * 2);
            for _ in 0..self.opts.batch {
                let (mut a, mut b) = (Read::default(), Read::default());
                if !reader.next_into(&mut a, &mut b)? {
                    break;
                }
                batch.push(a);
                batch.push(b);
            }
            if batch.is_empty() {
                break;
            }
            // Map every read alone, then estimate the insert size from
            // this batch's unique pairs (keeping the last estimate when a
            // batch has too few), then pair.
            let mapped: Vec<Vec<Mapped>> = self
                .parallel(&batch, |reads, s, _| {
                    reads
                        .iter()
                        .map(|r| self.map(&r.seq, name_seed(&r.name), s))
                        .collect::<Vec<_>>()
                })
                .into_iter()
                .map(|(_, m)| m)
                .collect();
            let mapped: Vec<Mapped> = mapped.into_iter().flatten().collect();
            if let Some(m) = estimate_insert(&mapped, &self.opts.scoring, &batch) {
                model = Some(m);
            }
            let ins = model.unwrap_or_default();
            let pair_ids: Vec<usize> = (0..batch.len() / 2).collect();
            let chunks = self.parallel(&pair_ids, |idx, s, buf| {
                let mut counts = (0u64, 0u64);
                for &i in idx {
                    let (m1, m2) = (&mapped[2 * i], &mapped[2 * i + 1]);
                    let (r1, r2) = (&batch[2 * i], &batch[2 * i + 1]);
                    let c = self.write_pair(buf, r1, r2, m1, m2, &ins, s, rg.as_deref());
                    counts.0 += c.0;
                    counts.1 += c.1;
                }
                counts
            });
            for (buf, (m, p)) in chunks {
                write_out(out, &buf)?;
                stats.mapped += m;
                stats.proper_pairs += p;
            }
            stats.reads += batch.len() as u64;
            progress(stats.reads);
        }
        stats.insert = model;
        Ok(stats)
    }

    /// Run `f` over `items` split across the threads, in order.
    fn parallel<T: Sync, R: Send>(
        &self,
        items: &[T],
        f: impl Fn(&[T], &mut Scratch, &mut Vec<u8>) -> R + Sync,
    ) -> Vec<(Vec<u8>, R)> {
        let threads = self.opts.threads.max(1);
        let chunk = items.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let handles: Vec<_> = items
                .chunks(chunk)
                .map(|part| {
                    let f = &f;
                    scope.spawn(move || {
                        let mut s = Scratch {
                            mins: Vec::new(),
                            hits: Vec::new(),
                            tmp: Vec::new(),
                            counts: Vec::new(),
                            rc: Vec::new(),
                            clusters: Vec::new(),
                        };
                        let mut buf = Vec::new();
                        let r = f(part, &mut s, &mut buf);
                        (buf, r)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    }
}

/// Whether three mismatches of an ungapped alignment lie within
/// [`CROWDED_SPAN`] bases, and no more than two others lie elsewhere: the
/// mark of two indels a few bases apart (a deletion and an insertion keep
/// both ends on the diagonal, so no end looks shifted). The gapped search
/// reports them as the gaps they are, as bwa's does; a caller reading
/// mismatches there calls false SNVs. A diverged copy (a paralog, with
/// mismatches all along) is no such case and is not searched again.
fn crowded_inside(q: &[u8], refw: &[u8]) -> bool {
    let mut at = [0usize; 16];
    let mut n = 0;
    for (i, (&a, &b)) in q.iter().zip(refw).enumerate() {
        if a != b && a < 4 && b < 4 {
            if n == at.len() {
                return false;
            }
            at[n] = i;
            n += 1;
        }
    }
    let at = &at[..n];
    // The most mismatches in one window of CROWDED_SPAN bases.
    let (mut most, mut lo) = (0, 0);
    for hi in 0..at.len() {
        while at[hi] - at[lo] >= CROWDED_SPAN {
            lo += 1;
        }
        most = most.max(hi - lo + 1);
    }
    most >= 3 && n - most <= 2
}

/// Whether an indel may explain an end of the ungapped alignment `a` of
/// `q` at diagonal `diag` of the contig `seq`: the end that it clips, or
/// whose outer [`CROWDED_END`] bases hold two mismatches or more, matches
/// another diagonal within `band` with at most one mismatch in eight. The
/// span of those diagonals (with `diag` itself, 0) is the answer.
fn shifted_end(q: &[u8], seq: &[u8], diag: i64, a: &Alignment, band: i64) -> Option<(i64, i64)> {
    let l = q.len();
    if diag < 0 || diag as usize + l > seq.len() {
        return Some((-band, band));
    }
    let r = &seq[diag as usize..diag as usize + l];
    let e = CROWDED_END.min(l);
    // How far in from an end mismatches crowd: the innermost of two or
    // more in its outer bases (`at(k)` is the read position `k` bases in
    // from that end). The trouble reaches the further of that and the clip.
    let crowded = |head: bool| {
        let range = if head { 0..e } else { l - e..l };
        match differences(&q[range.clone()], &r[range]) {
            (n, _, last) if n >= 2 && head => last + 1,
            (n, first, _) if n >= 2 => e - first,
            _ => 0,
        }
    };
    let (head_clip, tail_clip) = soft_clips(&a.cigar);
    let head = head_clip.max(crowded(true)).min(l);
    let tail = tail_clip.max(crowded(false)).min(l);
    let fits = |range: std::ops::Range<usize>, s: i64| {
        let start = diag + s + range.start as i64;
        if start < 0 || (start as usize + range.len()) > seq.len() {
            return false;
        }
        let w = &seq[start as usize..start as usize + range.len()];
        let mism = range.len() - count_equal(&q[range.clone()], w);
        mism * 8 <= range.len()
    };
    // The outer part of the end only: the inner bases may be the indel's
    // own, and a second indel further in would shift them again.
    let outer = |n: usize| n.saturating_sub(INDEL_SLACK).min(OUTER_END);
    let (head, tail) = (outer(head), outer(tail));
    // A clipped end back on the same diagonal also asks for it: two
    // indels that cancel out, or a burst of differences, in between.
    let shifts = |clipped: bool| (-band..=band).filter(move |&s| s != 0 || clipped);
    let mut span: Option<(i64, i64)> = None;
    for (n, range, clipped) in [
        (head, 0..head, head_clip > 0),
        (tail, l - tail..l, tail_clip > 0),
    ] {
        if n < MIN_SHIFTED {
            continue;
        }
        for s in shifts(clipped).filter(|&s| fits(range.clone(), s)) {
            let (lo, hi) = span.unwrap_or((0, 0));
            span = Some((lo.min(s), hi.max(s)));
        }
    }
    span
}

/// The most a local stretch of `q` could score with the ends of its
/// ungapped alignment `a` at `diag` of the contig `seq` realigned by one
/// indel each: an end (its outer [`CROWDED_END`] bases, or its clip if
/// longer) counts its matches with its outer part, up to the best split,
/// on the best other diagonal of the band; the middle scores what it scores
/// where it is. A gapped search that moves the ends does no better, so a
/// hit that could not matter skips it.
fn reach(sc: &Scoring, q: &[u8], seq: &[u8], diag: i64, a: &Alignment, band: i64) -> i32 {
    let l = q.len();
    let (head_clip, tail_clip) = soft_clips(&a.cigar);
    let from = head_clip.max(CROWDED_END);
    let to = l.saturating_sub(tail_clip.max(CROWDED_END));
    if diag < 0 || diag as usize + l > seq.len() || from >= to {
        return sc.matched * l as i32;
    }
    let at = diag as usize;
    // The matches of an end whose outer part (the head's start, the
    // tail's end) lies on another diagonal: those where it is, plus the
    // best gain of moving a run of its outer bases.
    let end = |range: std::ops::Range<usize>, head: bool| {
        let (qz, here) = (&q[range.clone()], &seq[at + range.start..at + range.end]);
        let stay = count_equal(qz, here) as i64;
        let words = qz.len().div_ceil(8);
        // The best running sum, from the outer base in, of +1 where the
        // base matches there but not here and -1 the other way: eight bases
        // a word, and only where the two differ.
        let gain = |s: i64| {
            let start = diag + range.start as i64 + s;
            if start < 0 || start as usize + qz.len() > seq.len() {
                return 0;
            }
            let there = &seq[start as usize..start as usize + qz.len()];
            let (mut run, mut top) = (0i64, 0i64);
            for k in 0..words {
                let at = 8 * if head { k } else { words - 1 - k };
                // Past the end all three pad alike: no difference there.
                let qw = word_at(qz, at, 0);
                let moved = equal_bytes(qw, word_at(there, at, 0));
                let mut differ = moved ^ equal_bytes(qw, word_at(here, at, 0));
                while differ != 0 {
                    let bit = if head {
                        differ.trailing_zeros()
                    } else {
                        63 - differ.leading_zeros()
                    };
                    differ ^= 1 << bit;
                    if moved >> bit & 1 == 1 {
                        run += 1;
                        top = top.max(run);
                    } else {
                        run -= 1;
                    }
                }
            }
            top
        };
        let moved = (-band..=band).map(gain).max().unwrap_or(0);
        sc.matched * (stay + moved) as i32
    };
    let r = &seq[at..at + l];
    end(0..from, true) + end(to..l, false) + best_stretch(sc, &q[from..to], &r[from..to])
}

/// Diagonals the gapped search adds on either side of those where
/// [`shifted_end`] found the ends.
const SHIFT_SLACK: i64 = 2;
/// Bases next to a suspected indel left out of [`shifted_end`]'s test.
const INDEL_SLACK: usize = 3;
/// The most of an end [`shifted_end`] compares.
const OUTER_END: usize = 16;

/// A clip this long always gets the gapped search where the answer rests
/// on it (the best candidate, a rescued mate): it is never a sequencing
/// error at the end, but two indels (the end back on its diagonal) or one
/// with errors beside it.
const LONG_CLIP: usize = 20;
/// The ends [`shifted_end`] looks at for crowded mismatches: an indel
/// further in makes the ungapped alignment clip.
const CROWDED_END: usize = 24;
/// The shortest end worth a gapped search: below it, an indel and a
/// clip explain the bases about as well.
const MIN_SHIFTED: usize = 5;

/// Drop repeated placements (same strand and start), keeping the first.
fn dedupe(hs: &mut Vec<Hit>) {
    let mut seen: Vec<(usize, u64, bool)> = Vec::new();
    hs.retain(|h| {
        let k = (h.contig, h.pos, h.reverse);
        if seen.contains(&k) {
            false
        } else {
            seen.push(k);
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pseudo-random bases: the index's own integer hash of a counter.
    fn random(n: usize, seed: u64) -> Vec<u8> {
        (0..n as u64)
            .map(|i| (hash64(seed << 32 | i, u64::MAX) >> 17) as u8 & 3)
            .collect()
    }

    #[test]
    fn the_radix_sort_sorts_as_the_comparison_sort() {
        let (mut tmp, mut counts) = (Vec::new(), Vec::new());
        for n in [0, 5, 255, 256, 1000, 5000] {
            // Diagonals over all 42 bits, over a chromosome, over a
            // tandem repeat, and all one.
            for spread in [DIAG_MASK, (1 << 27) - 1, 1023, 0] {
                let keys: Vec<u64> = (0..n as u64)
                    .map(|i| {
                        let x = hash64(i ^ (n as u64) << 40, u64::MAX);
                        // Strand bit and diagonals as the seed hits have them.
                        let diag = (DIAG_BIAS as u64 + (x >> 20)) & spread.min(DIAG_MASK);
                        (x & (1 << STRAND_BIT)) | (DIAG_BIAS as u64 + diag) & DIAG_MASK
                    })
                    .collect();
                let (mut a, mut b) = (keys.clone(), keys);
                sort_keys(&mut a, &mut tmp, &mut counts);
                b.sort_unstable();
                assert_eq!(a, b, "{n} keys, spread {spread}");
            }
        }
    }

    /// `reach` bounds what the gapped search finds when an indel moves an
    /// end: the local score of the banded alignment never exceeds it.
    #[test]
    fn the_reach_of_a_read_bounds_its_gapped_score() {
        let s = Scoring::default();
        let seq = random(4000, 7);
        let at = 1000usize;
        let mut cases = 0;
        for round in 0..2000u64 {
            let x = hash64(round, u64::MAX);
            let len = 100 + (x % 151) as usize;
            // One indel of 1-8 bases anywhere, and a few substitutions.
            let mut q = seq[at..at + len + 20].to_vec();
            let p = 5 + (x >> 8) as usize % (len - 10);
            let n = 1 + (x >> 20) as usize % 8;
            if x >> 40 & 1 == 0 {
                q.drain(p..p + n);
            } else {
                let ins = random(n, round + 1);
                q.splice(p..p, ins);
            }
            q.truncate(len);
            for k in 0..(x >> 44) % 6 {
                let i = (hash64(round << 8 | k, u64::MAX) % len as u64) as usize;
                q[i] = (q[i] + 1) % 4;
            }
            let (a, _) = ungapped(&s, &q, &seq[at..at + len]);
            let bound = reach(&s, &q, &seq, at as i64, &a, 12);
            let Some(g) = banded(&s, &q, &seq[at - 12..at + len + 12], 0, 24) else {
                continue;
            };
            let start = at - 12 + g.ref_start;
            let (_, local) = nm_score(&q, &seq[start..start + g.ref_len()], &g.cigar, &s);
            assert!(
                local <= bound,
                "round {round}: {local} > {bound} len {len} p {p} n {n} ins {} {:?} ungapped {:?}",
                x >> 40 & 1,
                g.cigar,
                a.cigar
            );
            cases += 1;
        }
        assert!(cases > 1800);
        // And it is a bound worth having: an unrelated read reaches little.
        let junk = random(150, 999);
        let (a, _) = ungapped(&s, &junk, &seq[at..at + 150]);
        assert!(reach(&s, &junk, &seq, at as i64, &a, 12) < 90);
    }

    /// Where the gapped search is worth its cost: an end shifted by an
    /// indel is, scattered substitutions and a noisy end are not.
    #[test]
    fn only_an_end_on_another_diagonal_asks_for_the_gapped_search() {
        let s = Scoring::default();
        let seq = random(1000, 99);
        let at = 400usize;
        let check = |q: &[u8]| {
            let (a, _) = ungapped(&s, q, &seq[at..at + q.len()]);
            shifted_end(q, &seq, at as i64, &a, 12)
        };
        // A 2-base deletion 20 bases before the end.
        let mut del = seq[at..at + 130].to_vec();
        del.drain(110..112);
        assert_eq!(check(&del[..128]), Some((0, 2)));
        // An inserted base 12 bases after the start: the head lies one
        // diagonal off the tail's.
        let mut ins = seq[at + 1..at + 13].to_vec();
        ins.push((seq[at + 12] + 2) % 4);
        ins.extend_from_slice(&seq[at + 13..at + 128]);
        assert_eq!(check(&ins), Some((0, 1)));
        // Substitutions, scattered or crowded at an end, shift nothing.
        let mut sub = seq[at..at + 128].to_vec();
        for p in [3, 40, 77, 120, 124] {
            sub[p] = (sub[p] + 1) % 4;
        }
        assert_eq!(check(&sub), None);
    }
}
