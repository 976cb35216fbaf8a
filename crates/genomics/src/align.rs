//! The short-read aligner: minimizer seeds, diagonal clustering, ungapped
//! extension with a banded affine-gap fallback, paired-end pairing with an
//! insert-size model estimated from the data, mate rescue, and SAM output.

use crate::dp::{banded, ungapped, Alignment, Op, Scoring};
use crate::fastq::{FastqReader, PairReader, Read};
use crate::index::{sketch, Index, Minimizer};
use crate::seq::{revcomp_into, LETTER};
use crate::{GenomicsError, Result};
use std::io::Write;

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
            batch: 20_000,
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
    pub score: i32,
    pub nm: u32,
    pub md: String,
    ref_len: u64,
}

impl Hit {
    fn end(&self) -> u64 {
        self.pos + self.ref_len
    }

    /// The part of the read this hit aligns, in the read's own (forward)
    /// coordinates: `[start, end)`.
    fn read_span(&self, len: usize) -> (usize, usize) {
        let clip = |c: Option<&(Op, u32)>| match c {
            Some((Op::SoftClip, n)) => *n as usize,
            _ => 0,
        };
        let (lead, trail) = (clip(self.cigar.first()), clip(self.cigar.last()));
        if self.reverse {
            (trail, len.saturating_sub(lead))
        } else {
            (lead, len.saturating_sub(trail))
        }
    }

    fn same_place(&self, o: &Hit) -> bool {
        self.contig == o.contig && self.pos == o.pos && self.reverse == o.reverse
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
}

const DIAG_BIAS: i64 = 1 << 40;
/// When a candidate gets the banded gapped extension after its ungapped one.
#[derive(Clone, Copy)]
enum Gapped {
    Always,
    IfClipped,
    Never,
}

/// Most candidate loci extended per read: enough to see the copies of a
/// segmental duplication, so that MAPQ knows the read is not unique.
const MAX_CANDIDATES: usize = 16;
/// MAPQ per point of score between the best pair and the next best
/// explanation (BWA uses 6.02 for one read).
const PAIR_Q: f64 = 6.02;
/// The same when neither mate is unique on its own: the pair is then all
/// the evidence, and a paralog one mismatch away is common.
const PAIR_Q_BOTH_AMBIGUOUS: f64 = 3.6;
/// The same when one mate is ambiguous alone: the pair then rests on the
/// other mate's margin, often a single base in a segmental duplication.
const PAIR_Q_ONE_AMBIGUOUS: f64 = 5.4;

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

    fn map(&self, seq: &[u8], s: &mut Scratch) -> Mapped {
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
            for &p in occ {
                let rpos = (p >> 1) as i64;
                let same = (p & 1 == 1) == m.reverse;
                let diag = if same {
                    rpos - m.pos as i64
                } else {
                    rpos - (l as i64 + k - 2 - m.pos as i64)
                };
                let strand = (!same) as u64;
                s.hits.push((strand << 63) | (diag + DIAG_BIAS) as u64);
            }
        }
        s.hits.sort_unstable();
        // Clusters of nearby diagonals on one strand: (count, strand, mode diag).
        let band = self.opts.band as i64;
        let mut clusters: Vec<(u32, bool, i64)> = Vec::new();
        let mut i = 0;
        while i < s.hits.len() {
            let strand = s.hits[i] >> 63;
            let first = (s.hits[i] & !(1 << 63)) as i64 - DIAG_BIAS;
            let (mut count, mut mode, mut mode_n, mut run_d, mut run_n) =
                (0u32, first, 0u32, first, 0u32);
            while i < s.hits.len() {
                let st = s.hits[i] >> 63;
                let d = (s.hits[i] & !(1 << 63)) as i64 - DIAG_BIAS;
                if st != strand || d - first > band {
                    break;
                }
                if d == run_d {
                    run_n += 1;
                } else {
                    run_d = d;
                    run_n = 1;
                }
                if run_n > mode_n {
                    mode_n = run_n;
                    mode = run_d;
                }
                count += 1;
                i += 1;
            }
            clusters.push((count, strand == 1, mode));
        }
        clusters.sort_unstable_by_key(|c| std::cmp::Reverse(c.0));
        let top = clusters.first().map(|c| c.0).unwrap_or(0);
        let mut out = Mapped {
            repeat: skipped as f32 / s.mins.len().max(1) as f32,
            ..Default::default()
        };
        let mut seen: Vec<(bool, u64)> = Vec::new();
        // The reverse complement once, for every reverse-strand candidate.
        revcomp_into(seq, &mut s.rc);
        for (n, &(count, reverse, diag)) in clusters.iter().take(MAX_CANDIDATES).enumerate() {
            if count * 4 < top && out.hits.len() >= 2 {
                break;
            }
            // Gapped extension for the best candidate; other strong ones
            // get it when their ungapped alignment had to clip (the mark
            // of an indel); a weak one only needs an ungapped score, as
            // the sub-optimal for MAPQ.
            let gapped = if n == 0 {
                Gapped::Always
            } else if count * 2 >= top {
                Gapped::IfClipped
            } else {
                Gapped::Never
            };
            let q: &[u8] = if reverse { &s.rc } else { seq };
            if let Some(h) = self.extend(q, diag, reverse, gapped) {
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
        out.hits.sort_by_key(|h| std::cmp::Reverse(h.score));
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
            if clusters.len() > out.hits.len() && out.sub == 0 {
                out.sub = self.idx.params.k as i32;
            }
        }
        out
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
        if diag >= cs && diag + l <= ce {
            let (a, mism) = ungapped(sc, q, &r.seq[diag as usize..(diag + l) as usize]);
            let clipped = a.cigar.len() > 1;
            let done = match gapped {
                Gapped::Always => mism <= 2,
                Gapped::IfClipped => mism <= 2 || !clipped,
                Gapped::Never => true,
            };
            best = Some((a, diag));
            if done {
                return self.finish(q, best, ci, reverse);
            }
        }
        let band = self.opts.band as i64;
        let ws = (diag - band).max(cs);
        let we = (diag + l + band).min(ce);
        if we > ws {
            let off = (diag - ws) as isize;
            if let Some(a) = banded(
                sc,
                q,
                &r.seq[ws as usize..we as usize],
                off - band as isize,
                off + band as isize,
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
        let (nm, md) = nm_md(q, &r.seq[g as usize..(g + ref_len) as usize], &a.cigar);
        Some(Hit {
            contig: ci,
            pos: g - c.offset,
            reverse,
            cigar: a.cigar,
            score: a.score,
            nm,
            md,
            ref_len,
        })
    }

    /// Look for a mate near its partner: the window where a proper pair
    /// puts it, on the opposite strand.
    fn rescue(
        &self,
        mate_seq: &[u8],
        partner: &Hit,
        ins: &InsertModel,
        s: &mut Scratch,
    ) -> Option<Hit> {
        let r = &self.idx.reference;
        let c = &r.contigs[partner.contig];
        let l = mate_seq.len() as i64;
        let (lo, hi) = (ins.lo as i64, ins.hi as i64);
        // Partner forward: mate reverse, its end in [pos + lo, pos + hi].
        // Partner reverse: mate forward, its start in [end - hi, end - lo].
        let (ws, we, reverse) = if !partner.reverse {
            let p = partner.pos as i64;
            (p + lo - l, p + hi, true)
        } else {
            let e = partner.end() as i64;
            (e - hi, e - lo + l, false)
        };
        let ws = ws.max(0).min(c.len as i64);
        let we = we.max(0).min(c.len as i64);
        if we - ws < l {
            return None;
        }
        let q: Vec<u8> = if reverse {
            revcomp_into(mate_seq, &mut s.rc);
            s.rc.clone()
        } else {
            mate_seq.to_vec()
        };
        // Seeds inside the window only, repetitive ones included (the
        // window makes them specific): each minimizer's positions are
        // sorted, so the window is two binary searches.
        let (gs, ge) = (c.offset as i64 + ws, c.offset as i64 + we);
        s.mins.clear();
        sketch(&q, self.idx.params, &mut s.mins);
        s.hits.clear();
        for m in &s.mins {
            let occ = self.idx.get(m.hash);
            let from = occ.partition_point(|&p| ((p >> 1) as i64) < gs);
            let to = occ.partition_point(|&p| ((p >> 1) as i64) < ge);
            for &p in &occ[from..to] {
                if (p & 1 == 1) != m.reverse {
                    continue;
                }
                let diag = (p >> 1) as i64 - m.pos as i64;
                s.hits.push((diag + DIAG_BIAS) as u64);
            }
        }
        s.hits.sort_unstable();
        // The densest run of diagonals within the band.
        let band = self.opts.band as i64;
        let (mut best_n, mut best_d, mut j) = (0usize, 0i64, 0usize);
        for i in 0..s.hits.len() {
            while s.hits[i] - s.hits[j] > band as u64 {
                j += 1;
            }
            if i + 1 - j > best_n {
                best_n = i + 1 - j;
                best_d = s.hits[j] as i64 - DIAG_BIAS;
            }
        }
        if best_n == 0 {
            return None;
        }
        self.extend(&q, best_d, reverse, Gapped::Always)
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
                    let m = self.map(&r.seq, s);
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
                        .map(|r| self.map(&r.seq, s))
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

    #[allow(clippy::too_many_arguments)]
    fn write_pair(
        &self,
        buf: &mut Vec<u8>,
        r1: &Read,
        r2: &Read,
        m1: &Mapped,
        m2: &Mapped,
        ins: &InsertModel,
        s: &mut Scratch,
        rg: Option<&str>,
    ) -> (u64, u64) {
        let sc = &self.opts.scoring;
        let mut h1: Vec<Hit> = m1.hits.clone();
        let mut h2: Vec<Hit> = m2.hits.clone();
        let near = |a: &Hit, b: &Hit| {
            a.contig == b.contig
                && a.reverse != b.reverse
                && insert_of(a, b).is_some_and(|t| t >= ins.lo && t <= ins.hi)
        };
        // Rescue a mate missing near one of its partner's good placements:
        // it finds mates whose own seeds missed their locus, and the
        // second-best pair that keeps a repeat's MAPQ honest.
        let good = |hs: &[Hit]| -> Vec<Hit> {
            let top = hs.first().map(|h| h.score).unwrap_or(0);
            hs.iter()
                .take(8)
                .filter(|h| h.score + 20 >= top)
                .cloned()
                .collect()
        };
        let (g1, g2) = (good(&h1), good(&h2));
        for a in &g1 {
            if !h2.iter().any(|b| near(a, b)) {
                if let Some(b) = self.rescue(&r2.seq, a, ins, s) {
                    h2.push(b);
                }
            }
        }
        for b in &g2 {
            if !h1.iter().any(|a| near(a, b)) {
                if let Some(a) = self.rescue(&r1.seq, b, ins, s) {
                    h1.push(a);
                }
            }
        }
        dedupe(&mut h1);
        dedupe(&mut h2);
        h1.sort_by_key(|h| std::cmp::Reverse(h.score));
        h2.sort_by_key(|h| std::cmp::Reverse(h.score));
        // Best proper combination against the best unpaired one.
        const UNPAIRED: i32 = 17;
        let mut best_pair: Option<(i32, usize, usize)> = None;
        let mut second_pair = 0i32;
        let mut scores: Vec<i32> = Vec::new();
        for (i, a) in h1.iter().enumerate() {
            for (j, b) in h2.iter().enumerate() {
                if !near(a, b) {
                    continue;
                }
                let t = insert_of(a, b).unwrap_or(0) as f64;
                let z = (t - ins.mean) / ins.sd.max(1.0);
                let pen = (z * z * 0.5 * 0.72).min(UNPAIRED as f64) as i32;
                let score = a.score + b.score - pen;
                scores.push(score);
                match best_pair {
                    Some((bs, _, _)) if score <= bs => second_pair = second_pair.max(score),
                    _ => {
                        if let Some((bs, _, _)) = best_pair {
                            second_pair = second_pair.max(bs);
                        }
                        best_pair = Some((score, i, j));
                    }
                }
            }
        }
        // Other pairs about as good as the runner-up (within one
        // mismatch): each is one more place the fragment may come from.
        let one_mismatch = sc.matched + sc.mismatch;
        let n_sub = if scores.len() > 1 {
            scores
                .iter()
                .filter(|&&x| x >= second_pair - one_mismatch)
                .count()
                - 1
        } else {
            0
        };
        let unpaired = h1.first().map(|h| h.score).unwrap_or(0)
            + h2.first().map(|h| h.score).unwrap_or(0)
            - UNPAIRED;
        let q1 = mapq_of(m1, r1.seq.len(), sc);
        let q2 = mapq_of(m2, r2.seq.len(), sc);
        let (a, b, proper, q1, q2) = match best_pair {
            Some((score, i, j)) if score >= unpaired => {
                let pair_sub = second_pair.max(unpaired);
                // The pair's own evidence: the score gap to the next best
                // explanation of both reads, without the single-read
                // length scaling.
                let per_point = match (q1 < 5, q2 < 5) {
                    (true, true) => PAIR_Q_BOTH_AMBIGUOUS,
                    (true, false) | (false, true) => PAIR_Q_ONE_AMBIGUOUS,
                    (false, false) => PAIR_Q,
                };
                let mut raw =
                    per_point * (score - pair_sub).max(0) as f64 / sc.matched as f64 + 0.499;
                if n_sub > 0 {
                    raw -= 4.343 * ((n_sub + 1) as f64).ln() + 0.499;
                }
                let raw = raw.clamp(0.0, 60.0) as u8;
                let pq = scale_repeat(raw, m1.repeat.max(m2.repeat));
                // Pairing lifts a mate's MAPQ, unless another placement
                // of that mate as good as the chosen one would pair with
                // the same partner just as well (a tandem repeat).
                let ambiguous = |hs: &[Hit], k: usize, partner: &Hit| {
                    hs.iter()
                        .enumerate()
                        .any(|(x, h)| x != k && h.score >= hs[k].score && near(h, partner))
                };
                let boost = |own: u8, hs: &[Hit], k: usize, partner: &Hit| -> u8 {
                    if ambiguous(hs, k, partner) {
                        0
                    } else if k == 0 {
                        own.max(pq.min(own.saturating_add(40)))
                    } else {
                        pq.min(own.saturating_add(40)).min(60)
                    }
                };
                let (qa, qb) = (boost(q1, &h1, i, &h2[j]), boost(q2, &h2, j, &h1[i]));
                (Some(&h1[i]), Some(&h2[j]), true, qa, qb)
            }
            _ => (h1.first(), h2.first(), false, q1, q2),
        };
        let flag_base = 0x1 | if proper { 0x2 } else { 0 };
        for (read, hit, q, first, mate, m, hits) in [
            (r1, a, q1, true, b, m1, &h1),
            (r2, b, q2, false, a, m2, &h2),
        ] {
            let rec = Rec {
                read,
                hit,
                mapq: q,
                flag: flag_base | if first { 0x40 } else { 0x80 },
                mate,
                tlen: tlen_of(hit, mate),
                sub: m.sub,
                rg,
                sa: None,
            };
            self.write_with_split(buf, rec, hits, m.repeat);
        }
        (
            a.is_some() as u64 + b.is_some() as u64,
            if proper { 2 } else { 0 },
        )
    }

    /// The supplementary alignment of a chimeric read: the best hit of a
    /// part of the read (at least [`MIN_SPLIT`] bases) that the primary
    /// leaves clipped, and its MAPQ against the other hits of that part.
    fn split_of<'h>(
        &self,
        hits: &'h [Hit],
        primary: &Hit,
        len: usize,
        repeat: f32,
    ) -> Option<Split<'h>> {
        let p = primary.read_span(len);
        if p.0 < MIN_SPLIT && len - p.1 < MIN_SPLIT {
            return None;
        }
        let part = |h: &Hit| {
            let s = h.read_span(len);
            (s.1 - s.0 >= MIN_SPLIT && disjoint(p, s)).then_some(s)
        };
        let (best, span) = hits
            .iter()
            .filter(|h| !h.same_place(primary) && h.score >= MIN_SPLIT as i32)
            .filter_map(|h| part(h).map(|s| (h, s)))
            .max_by_key(|(h, _)| h.score)?;
        let rivals = hits
            .iter()
            .filter(|h| !h.same_place(best) && !h.same_place(primary))
            .filter(|h| !disjoint(span, h.read_span(len)));
        let sub = rivals.clone().map(|h| h.score).max().unwrap_or(0);
        let n_equal = rivals.filter(|h| h.score >= best.score).count() as u32;
        let q = mapq(
            best.score,
            sub,
            span.1 - span.0,
            n_equal,
            &self.opts.scoring,
        );
        Some(Split {
            hit: best,
            mapq: scale_repeat(q, repeat),
        })
    }

    /// Write a read's primary record and, for a chimeric read, its
    /// supplementary one, each naming the other in `SA`.
    fn write_with_split(&self, buf: &mut Vec<u8>, primary: Rec, hits: &[Hit], repeat: f32) {
        let split = primary.hit.and_then(|p| {
            self.split_of(hits, p, primary.read.seq.len(), repeat)
                .map(|s| (p, s))
        });
        let Some((p, split)) = split else {
            write_record(buf, self, &primary);
            return;
        };
        let to_split = self.sa_tag(split.hit, split.mapq);
        let to_primary = self.sa_tag(p, primary.mapq);
        write_record(
            buf,
            self,
            &Rec {
                sa: Some(&to_split),
                ..primary
            },
        );
        write_record(
            buf,
            self,
            &Rec {
                hit: Some(split.hit),
                mapq: split.mapq,
                flag: primary.flag | 0x800,
                tlen: tlen_of(Some(split.hit), primary.mate),
                sub: 0,
                sa: Some(&to_primary),
                ..primary
            },
        );
    }

    /// `SA` tag text of one alignment (`rname,pos,strand,CIGAR,mapQ,NM;`).
    fn sa_tag(&self, h: &Hit, mapq: u8) -> String {
        let mut t = format!(
            "{},{},{},",
            self.idx.reference.contigs[h.contig].name,
            h.pos + 1,
            if h.reverse { '-' } else { '+' }
        );
        push_cigar(&mut t, &h.cigar);
        let _ = std::fmt::Write::write_fmt(&mut t, format_args!(",{mapq},{};", h.nm));
        t
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
                            rc: Vec::new(),
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

fn write_out(out: &mut dyn Write, buf: &[u8]) -> Result<()> {
    out.write_all(buf).map_err(|e| GenomicsError::Io {
        path: "output".into(),
        source: e,
    })
}

/// TLEN of a record: the signed span from the leftmost to the rightmost
/// end of the two mates, positive for the leftmost one.
fn tlen_of(x: Option<&Hit>, y: Option<&Hit>) -> i64 {
    match (x, y) {
        (Some(x), Some(y)) if x.contig == y.contig => {
            let left = x.pos.min(y.pos) as i64;
            let right = x.end().max(y.end()) as i64;
            let t = right - left;
            if x.pos < y.pos || (x.pos == y.pos && !x.reverse) {
                t
            } else {
                -t
            }
        }
        _ => 0,
    }
}

/// Fragment length of two placements in forward-reverse orientation.
fn insert_of(a: &Hit, b: &Hit) -> Option<u64> {
    let (f, r) = if !a.reverse && b.reverse {
        (a, b)
    } else if a.reverse && !b.reverse {
        (b, a)
    } else {
        return None;
    };
    (r.end() > f.pos).then(|| r.end() - f.pos)
}

fn estimate_insert(mapped: &[Mapped], sc: &Scoring, reads: &[Read]) -> Option<InsertModel> {
    let mut ts: Vec<u64> = Vec::new();
    for (i, pair) in mapped.chunks_exact(2).enumerate() {
        let (a, b) = (&pair[0], &pair[1]);
        let (Some(x), Some(y)) = (a.hits.first(), b.hits.first()) else {
            continue;
        };
        if mapq_of(a, reads[2 * i].seq.len(), sc) < 30
            || mapq_of(b, reads[2 * i + 1].seq.len(), sc) < 30
        {
            continue;
        }
        if x.contig != y.contig {
            continue;
        }
        if let Some(t) = insert_of(x, y) {
            ts.push(t);
        }
    }
    if ts.len() < 50 {
        return None;
    }
    ts.sort_unstable();
    let med = ts[ts.len() / 2] as f64;
    let mut dev: Vec<f64> = ts.iter().map(|&t| (t as f64 - med).abs()).collect();
    dev.sort_by(|a, b| a.total_cmp(b));
    let sd = (dev[dev.len() / 2] * 1.4826).max(1.0);
    Some(InsertModel {
        mean: med,
        sd,
        lo: (med - 4.0 * sd).max(1.0) as u64,
        hi: (med + 4.0 * sd) as u64,
    })
}

/// Mapping quality on BWA-MEM's 0-60 scale, from the best score, the best
/// score elsewhere, and how many places tie.
fn mapq(best: i32, sub: i32, len: usize, n_equal: u32, sc: &Scoring) -> u8 {
    if best <= 0 || sub >= best {
        return 0;
    }
    let len = len.max(1) as f64;
    let a = sc.matched as f64;
    let identity = (1.0 - (len * a - best as f64) / (a + sc.mismatch as f64) / len).clamp(0.0, 1.0);
    let scale = if len < 50.0 {
        1.0
    } else {
        50f64.ln() / len.ln()
    };
    let tmp = scale * identity * identity;
    let mut q = 6.02 * (best - sub) as f64 / a * tmp * tmp + 0.499;
    if n_equal > 0 {
        q -= 4.343 * ((n_equal + 1) as f64).ln() + 0.499;
    }
    q.clamp(0.0, 60.0) as u8
}

fn mapq_of(m: &Mapped, len: usize, sc: &Scoring) -> u8 {
    match m.hits.first() {
        Some(b) => scale_repeat(mapq(b.score, m.sub, len, m.n_equal, sc), m.repeat),
        None => 0,
    }
}

/// Lower a MAPQ by the share of the read that is too repetitive to have
/// been searched: its unexamined copies could be where it belongs.
fn scale_repeat(q: u8, repeat: f32) -> u8 {
    // Up to half the read repetitive, its unique half decides; beyond,
    // confidence falls to nothing for a read that is all repeat.
    (q as f32 * (2.0 * (1.0 - repeat)).clamp(0.0, 1.0)).round() as u8
}

/// NM and MD of an alignment (`q` on the alignment's strand; `r` the
/// aligned reference span).
fn nm_md(q: &[u8], r: &[u8], cigar: &[(Op, u32)]) -> (u32, String) {
    let (mut qi, mut ri, mut nm, mut run) = (0usize, 0usize, 0u32, 0u32);
    let mut md = String::new();
    for &(op, n) in cigar {
        let n = n as usize;
        match op {
            Op::SoftClip => qi += n,
            Op::Ins => {
                qi += n;
                nm += n as u32;
            }
            Op::Del => {
                md.push_str(&run.to_string());
                run = 0;
                md.push('^');
                for &c in &r[ri..ri + n] {
                    md.push(LETTER[c as usize] as char);
                }
                ri += n;
                nm += n as u32;
            }
            Op::Match => {
                for k in 0..n {
                    let (a, b) = (q[qi + k], r[ri + k]);
                    if a == b && a < 4 {
                        run += 1;
                    } else {
                        md.push_str(&run.to_string());
                        run = 0;
                        md.push(LETTER[b as usize] as char);
                        nm += 1;
                    }
                }
                qi += n;
                ri += n;
            }
        }
    }
    md.push_str(&run.to_string());
    (nm, md)
}

/// One SAM/BAM record to write.
struct Rec<'a> {
    read: &'a Read,
    hit: Option<&'a Hit>,
    mapq: u8,
    flag: u16,
    mate: Option<&'a Hit>,
    tlen: i64,
    sub: i32,
    rg: Option<&'a str>,
    /// The `SA` tag's value: the read's other parts (or its primary).
    sa: Option<&'a str>,
}

fn write_record(buf: &mut Vec<u8>, al: &Aligner, rec: &Rec) {
    let Rec {
        read: r,
        hit,
        mapq: q,
        mut flag,
        mate,
        tlen,
        sub,
        rg,
        sa,
    } = *rec;
    let contigs = &al.idx.reference.contigs;
    let paired = flag & 0x1 != 0;
    if hit.is_none() {
        flag |= 0x4;
    }
    if paired && mate.is_none() {
        flag |= 0x8;
    }
    if hit.is_some_and(|h| h.reverse) {
        flag |= 0x10;
    }
    if paired && mate.is_some_and(|m| m.reverse) {
        flag |= 0x20;
    }
    if hit.is_none() || mate.is_none() {
        flag &= !0x2;
    }
    // An unmapped read with a mapped mate sits at its mate's place.
    let place = hit.or(mate);
    let reverse = hit.is_some_and(|h| h.reverse);
    if al.opts.format == Format::Bam {
        let (next_ref, next_pos) = match (paired, mate) {
            (true, Some(m)) => (Some(m.contig), Some(m.pos)),
            (true, None) if hit.is_some() => (place.map(|p| p.contig), place.map(|p| p.pos)),
            _ => (None, None),
        };
        let tags = hit.map(|h| (h.nm, h.md.as_str(), h.score, sub));
        crate::bam::record(
            buf,
            &crate::bam::Fields {
                name: &r.name,
                flag,
                ref_id: place.map(|p| p.contig),
                pos: place.map(|p| p.pos),
                end: place.map(|p| if hit.is_some() { p.end() } else { p.pos + 1 }),
                mapq: if hit.is_some() { q } else { 0 },
                cigar: hit.map(|h| h.cigar.as_slice()).unwrap_or(&[]),
                next_ref,
                next_pos,
                tlen: if hit.is_some() { tlen } else { 0 },
                seq: &r.seq,
                qual: &r.qual,
                reverse,
                tags,
                rg,
                sa,
            },
        );
        return;
    }
    buf.extend_from_slice(&r.name);
    let (rname, pos) = match place {
        Some(h) => (contigs[h.contig].name.as_str(), h.pos + 1),
        None => ("*", 0),
    };
    let _ = write!(
        buf,
        "\t{flag}\t{rname}\t{pos}\t{}\t",
        if hit.is_some() { q } else { 0 }
    );
    match hit {
        Some(h) => {
            let mut c = String::new();
            push_cigar(&mut c, &h.cigar);
            buf.extend_from_slice(c.as_bytes());
        }
        None => buf.push(b'*'),
    }
    match (paired, mate) {
        (true, Some(m)) => {
            let same = place.is_some_and(|p| p.contig == m.contig);
            let rnext = if same {
                "="
            } else {
                contigs[m.contig].name.as_str()
            };
            let _ = write!(
                buf,
                "\t{rnext}\t{}\t{}\t",
                m.pos + 1,
                if hit.is_some() { tlen } else { 0 }
            );
        }
        (true, None) if hit.is_some() => {
            let _ = write!(buf, "\t=\t{pos}\t0\t");
        }
        _ => buf.extend_from_slice(b"\t*\t0\t0\t"),
    }
    if reverse {
        buf.extend(
            r.seq
                .iter()
                .rev()
                .map(|&c| LETTER[crate::seq::complement(c) as usize]),
        );
        buf.push(b'\t');
        buf.extend(r.qual.iter().rev());
    } else {
        buf.extend(r.seq.iter().map(|&c| LETTER[c as usize]));
        buf.push(b'\t');
        buf.extend_from_slice(&r.qual);
    }
    if let Some(h) = hit {
        let _ = write!(
            buf,
            "\tNM:i:{}\tMD:Z:{}\tAS:i:{}\tXS:i:{}",
            h.nm, h.md, h.score, sub
        );
    }
    if let Some(id) = rg {
        let _ = write!(buf, "\tRG:Z:{id}");
    }
    if let Some(sa) = sa {
        let _ = write!(buf, "\tSA:Z:{sa}");
    }
    buf.push(b'\n');
}

fn push_cigar(out: &mut String, cigar: &[(Op, u32)]) {
    for &(op, n) in cigar {
        let c = match op {
            Op::Match => 'M',
            Op::Ins => 'I',
            Op::Del => 'D',
            Op::SoftClip => 'S',
        };
        let _ = std::fmt::Write::write_fmt(out, format_args!("{n}{c}"));
    }
}
