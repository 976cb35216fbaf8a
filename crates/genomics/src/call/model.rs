//! The caller's method, on one stretch of one contig: pure logic, no IO.
//!
//! 1. **Candidates.** A pileup of the reads' alignments counts, at every
//!    position, the bases of good quality and the insertions and
//!    deletions the CIGARs hold, left-aligned so that the same indel,
//!    placed differently by different reads in a repeat, is counted once.
//!    Soft clips of 10 bases or more are read for the indel they hide
//!    (an insertion then the reference, or the reference further on),
//!    which finds the long insertions an aligner clips instead of
//!    gapping. An allele seen in at least two reads, and in a fair share
//!    of them, is a candidate.
//! 2. **Regions.** Each candidate is given a window: its own bases, the
//!    whole tandem repeat an indel sits in, and flanks. Overlapping
//!    windows merge into one region, whose candidates are genotyped
//!    together, so that nearby SNVs and indels and clustered variants
//!    are judged as haplotypes rather than one position at a time (the
//!    mismatches a misplaced gap leaves near an indel are explained by
//!    the indel, not called as SNVs).
//! 3. **Haplotypes.** Every compatible subset of a region's strongest
//!    candidates (at most [`MAX_CANDIDATES`]) makes one haplotype.
//! 4. **Read likelihoods.** Each read is scored against each haplotype:
//!    where a region holds SNVs only, from the bases the read aligns to
//!    their positions; where it holds an indel, by aligning the read's
//!    bases over the region (soft clips included) to the haplotype, with
//!    base qualities for mismatches and affine gap penalties (a Viterbi
//!    pair-HMM), so that the read's own CIGAR, which may have put the
//!    gap in the wrong place or clipped it away, does not decide. How
//!    much any read can favour one haplotype over another is capped by
//!    its mapping quality: reads of MAPQ 0 carry no weight. Base
//!    qualities are first scaled by how often the stretch's reads
//!    actually mismatch the reference away from every candidate.
//! 5. **Genotypes.** The diploid genotype is the pair of haplotypes with
//!    the highest posterior (priors: heterozygosity 1e-3 for SNVs and
//!    1.25e-4 for indels, half of that for homozygous). The variants of
//!    that pair are reported; per site, reads are marginalised over the
//!    haplotypes that carry each allele, which gives PL, GQ, AD and QUAL.
//! 6. **Records.** A called haplotype is written as primitive records
//!    (SNVs and indels, as VCF normalisation expects), from a global
//!    alignment to the reference: fewest and cheapest events; on ties,
//!    indels in homopolymers first, then substitutions before gaps;
//!    indels left-aligned as far as their neighbours allow (see
//!    `decompose`). Where the truth of a clustered variant is written
//!    otherwise, only the description differs, not the sequence.
//! 7. **gVCF.** Between the records, positions are grouped into
//!    reference blocks by their confidence of being homozygous
//!    reference, for joint genotyping ([`super::joint`]).

use std::collections::HashMap;

/// The most candidates genotyped together in a region (2^6 haplotypes).
pub const MAX_CANDIDATES: usize = 6;
/// Bases of flank on each side of a candidate's window.
const FLANK: i64 = 12;
/// A region grows no longer than this.
const MAX_REGION: i64 = 300;
/// How far from a stretch its reads must reach: the pileup that finds
/// candidates covers this much on each side, so that a region starting
/// in the stretch sees all of its candidates.
pub const REACH: i64 = MAX_REGION * 2;
/// Reads reaching further than this on the reference from where they
/// start may be missed by a region they overlap (clips included).
const MAX_READ_SPAN: i64 = 5000;
/// Base qualities are capped here (and floored at 1).
const MAX_BASEQ: u8 = 40;
/// Gap open and extend, as natural logs of probabilities (GATK's 45 and
/// 10 on the Phred scale).
const GAP_OPEN: f32 = -10.36;
const GAP_EXTEND: f32 = -2.30;
pub(crate) const THETA_SNV: f64 = 1e-3;
const THETA_INDEL: f64 = 1.25e-4;

/// One aligned read, as the caller needs it.
#[derive(Debug, Clone)]
pub struct Read {
    /// 0-based leftmost aligned position.
    pub pos: i64,
    /// 0-based, exclusive.
    pub end: i64,
    /// (length, op code `MIDNSHP=X` = 0..8).
    pub cigar: Vec<(u32, u8)>,
    /// Nucleotide codes, 0..4 (4: N).
    pub seq: Vec<u8>,
    /// Phred qualities.
    pub qual: Vec<u8>,
    pub mapq: u8,
}

/// Replace `ref[pos .. pos + del]` by `ins`: an SNV (del 1, one base), a
/// deletion (ins empty) or an insertion (del 0). Indels are left-aligned.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Var {
    pub pos: i64,
    pub del: u32,
    pub ins: Vec<u8>,
}

impl Var {
    pub fn end(&self) -> i64 {
        self.pos + self.del as i64
    }

    pub fn is_snv(&self) -> bool {
        self.del == 1 && self.ins.len() == 1
    }

    fn len_change(&self) -> i64 {
        (self.ins.len() as i64 - self.del as i64).abs()
    }

    /// Whether the two cannot sit on one haplotype.
    fn conflicts(&self, o: &Var) -> bool {
        let (a_ins, b_ins) = (self.del == 0, o.del == 0);
        match (a_ins, b_ins) {
            (true, true) => self.pos == o.pos,
            (true, false) => !o.is_snv() && o.pos <= self.pos && self.pos < o.end(),
            (false, true) => !self.is_snv() && self.pos <= o.pos && o.pos < self.end(),
            (false, false) => self.pos < o.end() && o.pos < self.end(),
        }
    }

    /// The VCF record's reference span: an indel takes the base before it.
    fn vcf_span(&self) -> (i64, i64) {
        if self.is_snv() {
            (self.pos, self.end())
        } else {
            (self.pos - 1, self.end())
        }
    }
}

/// A called site, ready for VCF: alleles as nucleotide codes.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    /// 0-based position of the reference allele.
    pub pos: i64,
    /// Reference allele, then the alternates.
    pub alleles: Vec<Vec<u8>>,
    pub qual: f64,
    /// Indexes into `alleles`, smaller first.
    pub gt: (usize, usize),
    pub gq: u32,
    pub dp: u32,
    pub ad: Vec<u32>,
    pub pl: Vec<u32>,
    /// gVCF: the last allele is `<NON_REF>` (any other), left empty in
    /// `alleles`.
    pub non_ref: bool,
}

/// Settings of the method.
#[derive(Debug, Clone)]
pub struct Params {
    /// Bases below this quality are not counted as candidate evidence.
    pub min_baseq: u8,
    /// Reads below this mapping quality are left out.
    pub min_mapq: u8,
    /// Sites below this QUAL are not reported.
    pub min_qual: f64,
    /// Also give reference blocks (gVCF).
    pub gvcf: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            min_baseq: 10,
            min_mapq: 0,
            min_qual: 10.0,
            gvcf: false,
        }
    }
}

/// Left-align a deletion of `len` bases at `pos`.
fn left_align_del(r: &[u8], mut pos: i64, len: i64) -> i64 {
    while pos > 1 && r[pos as usize - 1] == r[(pos + len) as usize - 1] && r[pos as usize - 1] < 4 {
        pos -= 1;
    }
    pos
}

/// Left-align an insertion of `ins` before `pos`.
fn left_align_ins(r: &[u8], mut pos: i64, ins: &mut [u8]) -> i64 {
    while pos > 1 && Some(&r[pos as usize - 1]) == ins.last() && r[pos as usize - 1] < 4 {
        ins.rotate_right(1);
        pos -= 1;
    }
    pos
}

/// Where the tandem repeat an indel sits in ends (the indel is
/// left-aligned, so the repeat runs to the right).
fn repeat_end(r: &[u8], v: &Var) -> i64 {
    let n = r.len() as i64;
    if v.del == 0 {
        let unit = &v.ins;
        let mut i = v.pos;
        while i < n && r[i as usize] == unit[((i - v.pos) as usize) % unit.len()] {
            i += 1;
        }
        i
    } else {
        let l = v.del as i64;
        let mut i = v.end();
        while i < n && r[i as usize] == r[(i - l) as usize] {
            i += 1;
        }
        i
    }
}

/// Pileup counts over `[lo, hi)`.
struct Pileup {
    lo: i64,
    /// Bases of good quality per position: A C G T.
    bases: Vec<[u32; 4]>,
    /// Reads covering each position (aligned or deleted).
    cover: Vec<u32>,
    /// The error rates the counted bases' qualities claim, summed.
    claimed: Vec<f32>,
    indels: HashMap<Var, u32>,
    /// Soft clips of at least [`MIN_CLIP`] bases: where the alignment
    /// stops, on which side the clip is, and its bases.
    clips: Vec<(i64, bool, Vec<u8>)>,
}

/// Error rate of each Phred quality.
static PHRED_ERR: std::sync::LazyLock<[f32; 94]> =
    std::sync::LazyLock::new(|| std::array::from_fn(|q| 10f32.powf(-(q as f32) / 10.0)));

/// Soft clips this long are read for the indel they may hide.
const MIN_CLIP: usize = 10;
/// Bases of reference a clip must match exactly beside the indel.
const MIN_FLANK: usize = 8;
/// The longest deletion looked for in a clip.
const MAX_CLIP_DEL: usize = 60;

/// Whether a clip's bases `clip` are the reference's `r`: all of them
/// (`whole`), or the [`MIN_FLANK`] beside the indel (at the start when
/// `near_start`, else at the end), for a clip that runs on into a nearby
/// SNV or indel.
fn clip_matches(clip: &[u8], r: &[u8], near_start: bool, whole: bool) -> bool {
    let l = clip.len();
    if l != r.len() || l < MIN_FLANK {
        return false;
    }
    if whole {
        return clip == r;
    }
    let flank = if near_start {
        0..MIN_FLANK
    } else {
        l - MIN_FLANK..l
    };
    clip[flank.clone()] == r[flank]
}

/// The indel a soft clip hides, if its bases are an insertion followed
/// (or, on the left, preceded) by the reference, or the reference
/// further on (a deletion). The shortest such indel whose clip matches the
/// reference whole is taken; failing that, the shortest whose clip
/// matches it beside the indel (see [`clip_matches`]).
fn from_clip(r: &[u8], pos: i64, right: bool, clip: &[u8]) -> Option<Var> {
    let n = r.len();
    let l = clip.len();
    if pos < 1 || pos as usize > n || l < MIN_CLIP {
        return None;
    }
    let p = pos as usize;
    for whole in [true, false] {
        let fits = |c: &[u8], r: &[u8], near_start| clip_matches(c, r, near_start, whole);
        if right {
            // clip = insertion, then ref[p..].
            for k in 1..=l - MIN_FLANK {
                if p + l - k <= n && fits(&clip[k..], &r[p..p + l - k], true) {
                    return Some(Var {
                        pos,
                        del: 0,
                        ins: clip[..k].to_vec(),
                    });
                }
            }
            // clip = ref[p + d..]: d bases deleted.
            for d in 1..=MAX_CLIP_DEL {
                if p + d + l <= n && fits(clip, &r[p + d..p + d + l], true) {
                    return Some(Var {
                        pos,
                        del: d as u32,
                        ins: Vec::new(),
                    });
                }
            }
        } else {
            // clip = ref[..p] (j bases), then the insertion.
            for j in (MIN_FLANK..l).rev() {
                if j <= p && fits(&clip[..j], &r[p - j..p], false) {
                    return Some(Var {
                        pos,
                        del: 0,
                        ins: clip[j..].to_vec(),
                    });
                }
            }
            for d in 1..=MAX_CLIP_DEL {
                if p >= d + l && fits(clip, &r[p - d - l..p - d], false) {
                    return Some(Var {
                        pos: pos - d as i64,
                        del: d as u32,
                        ins: Vec::new(),
                    });
                }
            }
        }
    }
    None
}

impl Pileup {
    fn build(r: &[u8], reads: &[Read], lo: i64, hi: i64, p: &Params) -> Pileup {
        let n = (hi - lo).max(0) as usize;
        let mut pile = Pileup {
            lo,
            bases: vec![[0; 4]; n],
            cover: vec![0; n],
            claimed: vec![0.0; n],
            indels: HashMap::new(),
            clips: Vec::new(),
        };
        for read in reads {
            if read.mapq < p.min_mapq {
                continue;
            }
            let (cl, cr) = clips(read);
            if cl as usize >= MIN_CLIP && read.pos > lo && read.pos < hi {
                pile.clips
                    .push((read.pos, false, read.seq[..cl as usize].to_vec()));
            }
            if cr as usize >= MIN_CLIP && read.end > lo && read.end < hi {
                let n = read.seq.len();
                pile.clips
                    .push((read.end, true, read.seq[n - cr as usize..].to_vec()));
            }
            let (mut rp, mut qp) = (read.pos, 0usize);
            for &(len, op) in &read.cigar {
                let len = len as usize;
                match op {
                    0 | 7 | 8 => {
                        for k in 0..len {
                            let at = rp + k as i64;
                            if at >= lo && at < hi {
                                let i = (at - lo) as usize;
                                pile.cover[i] += 1;
                                let b = read.seq[qp + k];
                                let q = read.qual[qp + k];
                                if b < 4 && q >= p.min_baseq {
                                    pile.bases[i][b as usize] += 1;
                                    pile.claimed[i] += PHRED_ERR[q.min(MAX_BASEQ) as usize];
                                }
                            }
                        }
                        rp += len as i64;
                        qp += len;
                    }
                    1 => {
                        if rp > lo && rp < hi && read.seq[qp..qp + len].iter().all(|&b| b < 4) {
                            let mut ins = read.seq[qp..qp + len].to_vec();
                            let pos = left_align_ins(r, rp, &mut ins);
                            *pile.indels.entry(Var { pos, del: 0, ins }).or_default() += 1;
                        }
                        qp += len;
                    }
                    2 => {
                        if rp > lo && rp < hi && rp + len as i64 <= r.len() as i64 {
                            let pos = left_align_del(r, rp, len as i64);
                            let v = Var {
                                pos,
                                del: len as u32,
                                ins: Vec::new(),
                            };
                            *pile.indels.entry(v).or_default() += 1;
                        }
                        for k in 0..len as i64 {
                            let at = rp + k;
                            if at >= lo && at < hi {
                                pile.cover[(at - lo) as usize] += 1;
                            }
                        }
                        rp += len as i64;
                    }
                    3 => rp += len as i64,
                    4 => qp += len,
                    _ => {}
                }
            }
        }
        pile
    }

    /// How the base qualities compare with the errors the reads make:
    /// mismatches against the reference, away from every candidate,
    /// over the error rates their qualities claim. Sequencers' qualities
    /// are often off (those of simulated reads all the more); scaling
    /// them by what this stretch shows is a base-quality recalibration
    /// in one number.
    fn error_scale(&self, r: &[u8], cands: &[(Var, u32)]) -> f32 {
        let mut near = vec![false; self.bases.len()];
        for (v, _) in cands {
            let (b, e) = (v.pos - 5 - self.lo, v.end() + 5 - self.lo);
            for i in b.max(0)..e.min(near.len() as i64) {
                near[i as usize] = true;
            }
        }
        let (mut wrong, mut claimed) = (0f64, 0f64);
        for (i, counts) in self.bases.iter().enumerate() {
            let rb = r[(self.lo + i as i64) as usize];
            if near[i] || rb > 3 {
                continue;
            }
            let total: u32 = counts.iter().sum();
            wrong += (total - counts[rb as usize]) as f64;
            claimed += self.claimed[i] as f64;
        }
        ((wrong + 1.0) / (claimed + 1.0)).clamp(0.05, 4.0) as f32
    }

    /// Reference blocks over `[beg, end)`, around `sites`: each position's
    /// confidence that it is homozygous reference, against a het or hom
    /// of any other allele, from its bases; runs of one GQ band merge.
    fn ref_blocks(&self, r: &[u8], beg: i64, end: i64, sites: &[Site], scale: f32) -> Vec<Block> {
        let mut covered = vec![false; (end - beg).max(0) as usize];
        for s in sites {
            let (b, e) = (s.pos.max(beg), (s.pos + s.alleles[0].len() as i64).min(end));
            for p in b..e {
                covered[(p - beg) as usize] = true;
            }
        }
        let phred = |x: f64| (10.0 * x / std::f64::consts::LN_10).max(0.0);
        let mut out: Vec<Block> = Vec::new();
        let mut last_band = usize::MAX;
        for pos in beg..end {
            if covered[(pos - beg) as usize] {
                last_band = usize::MAX;
                continue;
            }
            let i = pos - self.lo;
            let (n, m, claimed) =
                if i >= 0 && (i as usize) < self.bases.len() && r[pos as usize] < 4 {
                    let c = &self.bases[i as usize];
                    let n: u32 = c.iter().sum();
                    (n, n - c[r[pos as usize] as usize], self.claimed[i as usize])
                } else {
                    (0, 0, 0.0)
                };
            let e = if n > 0 {
                ((claimed / n as f32) * scale).clamp(1e-5, 0.5) as f64
            } else {
                0.01
            };
            let (n, m) = (n as f64, m as f64);
            let l00 = (n - m) * (1.0 - e).ln() + m * (e / 3.0).ln();
            let l01 = n * 0.5f64.ln();
            let l11 = (n - m) * (e / 3.0).ln() + m * (1.0 - e).ln();
            let pl01 = phred(l00 - l01).min(9999.0).round() as u32;
            let pl11 = phred(l00 - l11).min(9999.0).round() as u32;
            let gq = pl01.min(pl11).min(99);
            // Positions without reads make blocks of their own: "no
            // call", where others are "reference, with this confidence".
            let band = if n == 0.0 {
                GQ_BANDS.len()
            } else {
                GQ_BANDS
                    .iter()
                    .position(|&b| gq <= b)
                    .unwrap_or(GQ_BANDS.len() - 1)
            };
            match out.last_mut() {
                Some(b) if band == last_band && b.end == pos => {
                    b.end = pos + 1;
                    b.min_dp = b.min_dp.min(n as u32);
                    b.gq = b.gq.min(gq);
                    b.pl[1] = b.pl[1].min(pl01);
                    b.pl[2] = b.pl[2].min(pl11);
                }
                _ => out.push(Block {
                    pos,
                    end: pos + 1,
                    min_dp: n as u32,
                    gq,
                    pl: [0, pl01, pl11],
                }),
            }
            last_band = band;
        }
        out
    }

    fn cover_at(&self, pos: i64) -> u32 {
        let i = pos - self.lo;
        if i >= 0 && (i as usize) < self.cover.len() {
            self.cover[i as usize]
        } else {
            0
        }
    }

    /// Candidates with their support, sorted by position (the indel
    /// counts and clips are taken: they serve nothing after).
    fn candidates(&mut self, r: &[u8]) -> Vec<(Var, u32)> {
        let mut out = Vec::new();
        for (i, counts) in self.bases.iter().enumerate() {
            let pos = self.lo + i as i64;
            let rb = r[pos as usize];
            let total: u32 = counts.iter().sum();
            for (b, &c) in counts.iter().enumerate() {
                if b as u8 != rb && c >= 2 && c * 10 >= total && rb < 4 {
                    out.push((
                        Var {
                            pos,
                            del: 1,
                            ins: vec![b as u8],
                        },
                        c,
                    ));
                }
            }
        }
        let mut indels = std::mem::take(&mut self.indels);
        for (pos, right, clip) in std::mem::take(&mut self.clips) {
            if clip.iter().any(|&b| b > 3) {
                continue;
            }
            if let Some(mut v) = from_clip(r, pos, right, &clip) {
                v.pos = if v.del == 0 {
                    left_align_ins(r, v.pos, &mut v.ins)
                } else {
                    left_align_del(r, v.pos, v.del as i64)
                };
                *indels.entry(v).or_default() += 1;
            }
        }
        for (v, c) in indels {
            let cover = self.cover_at(v.pos).max(self.cover_at(v.pos - 1));
            if c >= 2 && c * 20 >= cover {
                out.push((v, c));
            }
        }
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// A region of candidates genotyped together.
struct Region {
    /// Reference window whose reads are scored.
    beg: i64,
    end: i64,
    vars: Vec<(Var, u32)>,
}

/// Group candidates into regions by their windows.
fn regions(r: &[u8], cands: Vec<(Var, u32)>) -> Vec<Region> {
    let n = r.len() as i64;
    let mut out: Vec<Region> = Vec::new();
    for (v, c) in cands {
        let (beg, end) = if v.is_snv() {
            (v.pos - FLANK, v.end() + FLANK)
        } else {
            // The repeat's extent, up to a region's length (a satellite
            // of kilobases would make every read's alignment long).
            let rep = repeat_end(r, &v).min(v.end() + MAX_REGION);
            (v.pos - 1 - FLANK, rep.max(v.end()) + FLANK)
        };
        let (beg, end) = (beg.max(0), end.min(n));
        match out.last_mut() {
            Some(last) if beg < last.end && end - last.beg <= MAX_REGION => {
                last.end = last.end.max(end);
                last.vars.push((v, c));
            }
            _ => out.push(Region {
                beg,
                end,
                vars: vec![(v, c)],
            }),
        }
    }
    out
}

/// Sequence of `ref[beg..end]` with `vars` (sorted, compatible, within)
/// applied.
fn apply(r: &[u8], beg: i64, end: i64, vars: &[&Var], out: &mut Vec<u8>) {
    out.clear();
    let mut at = beg;
    for v in vars {
        out.extend_from_slice(&r[at as usize..v.pos as usize]);
        out.extend_from_slice(&v.ins);
        at = v.end();
    }
    out.extend_from_slice(&r[at as usize..end as usize]);
}

/// Log-probabilities of a base of quality `q` matching and not matching,
/// its error rate scaled by `scale` (see [`Pileup::error_scale`]).
fn ln_err(q: u8, scale: f32) -> (f32, f32) {
    let q = q.clamp(1, MAX_BASEQ);
    let e = (10f32.powf(-(q as f32) / 10.0) * scale).clamp(1e-5, 0.75);
    ((1.0 - e).ln(), (e / 3.0).ln())
}

/// Viterbi log-likelihood of `seg` (codes, with per-base match and
/// mismatch log-probabilities) aligned whole to `hap`: from column
/// `start` if given (the read goes on to the left of the window, whose
/// edge is there) or from anywhere, and to column `end` if given, or
/// anywhere.
fn align_ll(
    seg: &[u8],
    emit: &[(f32, f32)],
    hap: &[u8],
    start: Option<usize>,
    end: Option<usize>,
    rows: &mut Vec<[f32; 3]>,
) -> f32 {
    const NEG: f32 = -1e30;
    let m = hap.len();
    rows.clear();
    match start {
        Some(s) => {
            rows.resize(m + 1, [NEG, NEG, NEG]);
            if s <= m {
                rows[s] = [0.0, NEG, NEG];
            }
        }
        None => rows.resize(m + 1, [0.0, NEG, NEG]),
    }
    for (&b, &(hit, miss)) in seg.iter().zip(emit) {
        let mut diag = rows[0];
        rows[0] = [NEG, NEG, NEG];
        let mut left = rows[0];
        for j in 1..=m {
            let up = rows[j];
            let e = if b > 3 {
                0.0
            } else if b == hap[j - 1] {
                hit
            } else {
                miss
            };
            let mm = e + diag[0].max(diag[1]).max(diag[2]);
            let ins = (up[0] + GAP_OPEN).max(up[1] + GAP_EXTEND);
            let del = (left[0] + GAP_OPEN).max(left[2] + GAP_EXTEND);
            let cell = [mm, ins, del];
            diag = up;
            rows[j] = cell;
            left = cell;
        }
    }
    match end {
        Some(e) if e <= m => rows[e][0].max(rows[e][1]),
        Some(_) => NEG,
        None => rows.iter().map(|c| c[0].max(c[1])).fold(NEG, f32::max),
    }
}

/// Soft-clipped bases at the read's (left, right) ends.
fn clips(read: &Read) -> (i64, i64) {
    let clip = |c: Option<&(u32, u8)>| match c {
        Some(&(n, 4)) => n as i64,
        _ => 0,
    };
    (clip(read.cigar.first()), clip(read.cigar.last()))
}

/// The read's bases for a window `[beg, end)`: the query range, and
/// whether the read's alignment goes on past the window's left and right
/// edges (then the range stops at the edge); a read that ends inside the
/// window keeps its soft-clipped bases there, which may be an insertion
/// its alignment left out. None if no base falls inside.
fn segment(read: &Read, beg: i64, end: i64) -> Option<(usize, usize, bool, bool)> {
    let (cl, cr) = clips(read);
    if read.end + cr <= beg || read.pos - cl >= end {
        return None;
    }
    let (left, right) = (read.pos < beg, read.end > end);
    let (mut rp, mut qp) = (read.pos, 0usize);
    let (mut qs, mut qe) = (None, 0usize);
    for &(len, op) in &read.cigar {
        let len = len as usize;
        match op {
            0 | 7 | 8 => {
                for k in 0..len {
                    let at = rp + k as i64;
                    if at >= beg && at < end {
                        qs.get_or_insert(qp + k);
                        qe = qp + k + 1;
                    }
                }
                rp += len as i64;
                qp += len;
            }
            1 => {
                if rp > beg && rp < end {
                    qs.get_or_insert(qp);
                    qe = qp + len;
                }
                qp += len;
            }
            4 => qp += len,
            2 | 3 => rp += len as i64,
            _ => {}
        }
    }
    let qs = if left { qs? } else { 0 };
    let qe = if right { qe } else { read.seq.len() };
    (qe > qs).then_some((qs, qe, left, right))
}

/// The read's base and quality at reference `pos`, from its alignment.
fn base_at(read: &Read, pos: i64) -> Option<(u8, u8)> {
    let (mut rp, mut qp) = (read.pos, 0usize);
    for &(len, op) in &read.cigar {
        let len = len as i64;
        match op {
            0 | 7 | 8 => {
                if pos >= rp && pos < rp + len {
                    let q = qp + (pos - rp) as usize;
                    return Some((read.seq[q], read.qual[q]));
                }
                rp += len;
                qp += len as usize;
            }
            1 | 4 => qp += len as usize,
            2 | 3 => {
                if pos >= rp && pos < rp + len {
                    return None;
                }
                rp += len;
            }
            _ => {}
        }
        if rp > pos {
            return None;
        }
    }
    None
}

fn log_sum2(a: f64, b: f64) -> f64 {
    let m = a.max(b);
    m + ((a - m).exp() + (b - m).exp()).ln()
}

/// ln of the sum of exp of `xs` (f64::MIN for none).
pub(crate) fn log_sum(xs: impl IntoIterator<Item = f64>) -> f64 {
    xs.into_iter().reduce(log_sum2).unwrap_or(f64::MIN)
}

/// ln of the prior of genotype `j/k` (j <= k) at a site of
/// heterozygosity `theta`: a het `theta`, a hom alt half of it, a het of
/// two alternates `theta` squared.
pub(crate) fn ln_prior(j: usize, k: usize, theta: f64) -> f64 {
    match (j, k) {
        (0, 0) => 0.0,
        (0, _) => theta.ln(),
        _ if j == k => theta.ln() - std::f64::consts::LN_2,
        _ => 2.0 * theta.ln(),
    }
}

/// Genotype likelihoods of allele pairs (VCF order) from per-read allele
/// log-likelihoods.
fn genotype_lls(reads: &[Vec<f64>], n_alleles: usize) -> Vec<f64> {
    let mut gl = Vec::with_capacity(n_alleles * (n_alleles + 1) / 2);
    for k in 0..n_alleles {
        for j in 0..=k {
            let mut s = 0.0;
            for r in reads {
                s += log_sum2(r[j], r[k]) - std::f64::consts::LN_2;
            }
            gl.push(s);
        }
    }
    gl
}

fn phred_of_ln(p_ln: f64) -> f64 {
    -10.0 * p_ln / std::f64::consts::LN_10
}

/// Call the variants of contig `r` (nucleotide codes) whose regions start
/// in `[beg, end)`, from `reads` (sorted by position, covering the
/// regions and their windows).
pub fn call_stretch(r: &[u8], reads: &[Read], beg: i64, end: i64, p: &Params) -> Stretch {
    let n = r.len() as i64;
    let lo = (beg - REACH).max(0);
    let hi = (end + REACH).min(n);
    let mut pile = Pileup::build(r, reads, lo, hi, p);
    let mut sites = Vec::new();
    let mut scratch = Scratch {
        err: [(0.0, 0.0); 94],
        rows: Vec::new(),
        hap: Vec::new(),
        emit: Vec::new(),
    };
    let cands = pile.candidates(r);
    let scale = pile.error_scale(r, &cands);
    scratch.err = std::array::from_fn(|q| ln_err(q as u8, scale));
    for reg in regions(r, cands) {
        let first = reg.vars[0].0.pos;
        if first < beg || first >= end {
            continue;
        }
        genotype_region(r, reads, &reg, p, &mut scratch, &mut sites);
    }
    sites.sort_by_key(|s| s.pos);
    let blocks = if p.gvcf {
        pile.ref_blocks(r, beg, end, &sites, scale)
    } else {
        Vec::new()
    };
    Stretch { sites, blocks }
}

/// What a stretch gives: its sites, and with [`Params::gvcf`] the
/// reference blocks between them.
#[derive(Debug, Clone, Default)]
pub struct Stretch {
    pub sites: Vec<Site>,
    pub blocks: Vec<Block>,
}

/// A gVCF reference block: `[pos, end)` called homozygous reference,
/// with the least depth and confidence of its positions.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub pos: i64,
    pub end: i64,
    pub min_dp: u32,
    pub gq: u32,
    /// Phred likelihoods of 0/0, 0/1 and 1/1 against any other allele
    /// (the least over the block).
    pub pl: [u32; 3],
}

/// Upper bounds of the GQ bands positions are grouped by into blocks
/// (coarser than GATK's defaults: fewer, longer blocks).
const GQ_BANDS: [u32; 5] = [0, 9, 19, 39, 99];

struct Scratch {
    /// [`ln_err`] of each quality, for this stretch.
    err: [(f32, f32); 94],
    rows: Vec<[f32; 3]>,
    hap: Vec<u8>,
    emit: Vec<(f32, f32)>,
}

fn genotype_region(
    r: &[u8],
    reads: &[Read],
    reg: &Region,
    p: &Params,
    s: &mut Scratch,
    sites: &mut Vec<Site>,
) {
    // The strongest candidates, kept in position order.
    let mut vars = reg.vars.clone();
    if vars.len() > MAX_CANDIDATES {
        vars.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        vars.truncate(MAX_CANDIDATES);
        vars.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let vars: Vec<Var> = vars.into_iter().map(|v| v.0).collect();
    let nv = vars.len();
    let gapped = vars.iter().any(|v| !v.is_snv());
    // Haplotypes: compatible subsets, as bit masks.
    let masks: Vec<u32> = (0u32..1 << nv)
        .filter(|&m| {
            (0..nv).all(|i| {
                m & (1 << i) == 0
                    || (i + 1..nv).all(|j| m & (1 << j) == 0 || !vars[i].conflicts(&vars[j]))
            })
        })
        .collect();
    let nh = masks.len();
    let chosen = |m: u32| -> Vec<&Var> {
        (0..nv)
            .filter(|&i| m & (1 << i) != 0)
            .map(|i| &vars[i])
            .collect()
    };
    let max_change: i64 = vars.iter().map(Var::len_change).sum();
    let slack = 10 + max_change;
    let (hb, he) = (
        (reg.beg - slack).max(0),
        (reg.end + slack).min(r.len() as i64),
    );
    let haps: Vec<Vec<u8>> = if gapped {
        masks
            .iter()
            .map(|&m| {
                apply(r, hb, he, &chosen(m), &mut s.hap);
                s.hap.clone()
            })
            .collect()
    } else {
        Vec::new()
    };
    // Per-read log-likelihoods (natural logs) of each haplotype.
    let mut lls: Vec<Vec<f64>> = Vec::new();
    // Reads are sorted by position (not by end): start well before the
    // region, and skip those that end before it below.
    let first = reads.partition_point(|x| x.pos + MAX_READ_SPAN <= reg.beg);
    for read in &reads[first..] {
        if read.pos >= reg.end + 200 {
            break;
        }
        let (cl, cr) = clips(read);
        if read.end + cr <= reg.beg || read.pos - cl >= reg.end || read.mapq < p.min_mapq {
            continue;
        }
        let mut ll = vec![0f64; nh];
        if gapped {
            let Some((qs, qe, left, right)) = segment(read, reg.beg, reg.end) else {
                continue;
            };
            let seg = &read.seq[qs..qe];
            s.emit.clear();
            s.emit
                .extend(read.qual[qs..qe].iter().map(|&q| s.err[q.min(93) as usize]));
            // The flanks outside the region are the reference's on every
            // haplotype: a read that goes on past an edge is held there.
            let start = left.then_some((reg.beg - hb) as usize);
            for (h, hap) in haps.iter().enumerate() {
                let end = right.then(|| hap.len() - (he - reg.end) as usize);
                ll[h] = align_ll(seg, &s.emit, hap, start, end, &mut s.rows) as f64;
            }
        } else {
            let mut any = false;
            for (i, v) in vars.iter().enumerate() {
                let Some((b, q)) = base_at(read, v.pos) else {
                    continue;
                };
                if b > 3 {
                    continue;
                }
                any = true;
                let (hit, miss) = s.err[q.min(93) as usize];
                let refb = r[v.pos as usize];
                for (h, &m) in masks.iter().enumerate() {
                    let allele = if m & (1 << i) != 0 { v.ins[0] } else { refb };
                    ll[h] += if b == allele { hit } else { miss } as f64;
                }
            }
            if !any {
                continue;
            }
        }
        // Mapping quality caps how far a read can favour one haplotype.
        let best = ll.iter().cloned().fold(f64::MIN, f64::max);
        let cap = read.mapq.min(60) as f64 * std::f64::consts::LN_10 / 10.0;
        for x in &mut ll {
            *x = x.max(best - cap);
        }
        lls.push(ll);
    }
    if lls.is_empty() {
        return;
    }
    // Priors per haplotype pair from the variants they carry.
    let theta = |v: &Var| if v.is_snv() { THETA_SNV } else { THETA_INDEL };
    let mut best = (f64::MIN, 0usize, 0usize);
    for a in 0..nh {
        for b in a..nh {
            let mut prior = 0.0;
            for (i, v) in vars.iter().enumerate() {
                let c = (masks[a] >> i & 1) + (masks[b] >> i & 1);
                // Copies of the variant: none (0/0), het (0/1), hom (1/1).
                let (j, k) = if c == 2 { (1, 1) } else { (0, c as usize) };
                prior += ln_prior(j, k, theta(v));
            }
            let mut gl = prior;
            for ll in &lls {
                gl += log_sum2(ll[a], ll[b]);
            }
            if gl > best.0 {
                best = (gl, a, b);
            }
        }
    }
    let called_mask = masks[best.1] | masks[best.2];
    if called_mask == 0 {
        return;
    }
    // Clusters: called variants close together, whose alleles are taken
    // whole over the cluster and then decomposed into records.
    let mut clusters: Vec<(i64, i64)> = Vec::new();
    for (i, v) in vars.iter().enumerate() {
        if called_mask & (1 << i) == 0 {
            continue;
        }
        let (b, e) = v.vcf_span();
        match clusters.last_mut() {
            Some(last) if b <= last.1 + CLUSTER_GAP => last.1 = last.1.max(e),
            _ => clusters.push((b, e)),
        }
    }
    let mut tmp = Vec::new();
    for (sb, se) in clusters {
        // Each haplotype's allele over the cluster, if its variants lie
        // wholly inside or outside it.
        let allele_of = |m: u32, out: &mut Vec<u8>| -> bool {
            let inside: Vec<&Var> = chosen(m)
                .into_iter()
                .filter(|v| v.end() > sb && v.pos < se || v.del == 0 && v.pos > sb && v.pos <= se)
                .collect();
            if inside.iter().any(|v| v.pos < sb || v.end() > se) {
                return false;
            }
            apply(r, sb, se, &inside, out);
            true
        };
        let mut alleles: Vec<Vec<u8>> = vec![r[sb as usize..se as usize].to_vec()];
        for &h in &[best.1, best.2] {
            if allele_of(masks[h], &mut tmp) && !alleles.contains(&tmp) {
                alleles.push(tmp.clone());
            }
        }
        if alleles.len() < 2 {
            continue;
        }
        let na = alleles.len();
        let hap_allele: Vec<Option<usize>> = masks
            .iter()
            .map(|&m| {
                if allele_of(m, &mut tmp) {
                    alleles.iter().position(|a| *a == tmp)
                } else {
                    None
                }
            })
            .collect();
        // Reads, marginalised over the haplotypes of each allele.
        let per_read: Vec<Vec<f64>> = lls
            .iter()
            .filter_map(|ll| {
                let mut a = vec![f64::MIN; na];
                for (h, al) in hap_allele.iter().enumerate() {
                    if let Some(k) = *al {
                        a[k] = a[k].max(ll[h]);
                    }
                }
                a.iter().all(|&x| x > f64::MIN).then_some(a)
            })
            .collect();
        // Each alternate allele as primitive variants; records gather the
        // ones that touch the same reference bases.
        let decomposed: Vec<Vec<Var>> = alleles
            .iter()
            .map(|a| decompose(r, sb, &alleles[0], a))
            .collect();
        let decomposed = consistent(r, sb, &alleles, decomposed);
        let mut all: Vec<Var> = decomposed.iter().flatten().cloned().collect();
        all.sort();
        all.dedup();
        let mut records: Vec<(i64, i64)> = Vec::new();
        for v in &all {
            let (b, e) = v.vcf_span();
            match records.last_mut() {
                Some(last) if b < last.1 => last.1 = last.1.max(e),
                _ => records.push((b, e)),
            }
        }
        for (rb, re) in records {
            let mut rec_alleles: Vec<Vec<u8>> = vec![r[rb as usize..re as usize].to_vec()];
            let mut map = Vec::with_capacity(na);
            for vs in &decomposed {
                let inside: Vec<&Var> = vs
                    .iter()
                    .filter(|v| {
                        let (b, e) = v.vcf_span();
                        b < re && e > rb
                    })
                    .collect();
                apply(r, rb, re, &inside, &mut tmp);
                map.push(match rec_alleles.iter().position(|a| *a == tmp) {
                    Some(k) => k,
                    None => {
                        rec_alleles.push(tmp.clone());
                        rec_alleles.len() - 1
                    }
                });
            }
            let nr = rec_alleles.len();
            if nr < 2 {
                continue;
            }
            let rec_reads: Vec<Vec<f64>> = per_read
                .iter()
                .map(|a| {
                    let mut out = vec![f64::MIN; nr];
                    for (k, &x) in a.iter().enumerate() {
                        out[map[k]] = out[map[k]].max(x);
                    }
                    out
                })
                .collect();
            let (mut rec_alleles, mut rec_reads) = (rec_alleles, rec_reads);
            if p.gvcf {
                // <NON_REF>: what no listed allele explains. No read is
                // taken to support it, a little less than the worst.
                for a in &mut rec_reads {
                    let worst = a.iter().cloned().fold(f64::MAX, f64::min);
                    a.push(worst - 2.0);
                }
                rec_alleles.push(Vec::new());
            }
            if let Some(site) = genotype_site(rb, rec_alleles, &rec_reads, p) {
                sites.push(site);
            }
        }
    }
}

/// Variants of at most this many bases apart are decomposed together.
const CLUSTER_GAP: i64 = 10;

/// `alt`, an allele of reference `refs` (which starts at `beg`), as
/// primitive variants: SNVs and indels from a global alignment that
/// prefers substitutions to gaps and, where two are equally good, puts
/// the substitutions first and the gaps last. Indels are then moved
/// left through repeats, but not across another variant of the allele.
fn decompose(r: &[u8], beg: i64, refs: &[u8], alt: &[u8]) -> Vec<Var> {
    place(r, primitives(r, beg, refs, alt))
}

/// The alignment step of [`decompose`], without placing the indels.
/// `refs` is `ctx[beg..]`; the context tells how long a run of one base
/// a gap sits in. Costs (x10): a mismatch 40, a gap 70 to open and 10 per
/// base, less a bonus of one per base of the homopolymer (3 bases or more)
/// the gap opens in (at most 9): between decompositions of equal cost, the one whose indels
/// sit in longer homopolymers wins, as indels do there more often. Left
/// equal, the gaps go right (substitutions first).
fn primitives(ctx: &[u8], beg: i64, refs: &[u8], alt: &[u8]) -> Vec<Var> {
    const MISMATCH: u32 = 40;
    const OPEN: u32 = 70;
    const EXTEND: u32 = 10;
    const INF: u32 = u32::MAX / 4;
    if refs == alt {
        return Vec::new();
    }
    // Length of the run of base `b` through context position `at`
    // (counting `at` itself only if it is `b`), capped at 9; runs
    // shorter than 3 are no homopolymer and count 0.
    let run = |at: i64, b: u8| -> u32 {
        let mut n = 0;
        let mut k = at;
        while k >= 0 && (k as usize) < ctx.len() && ctx[k as usize] == b && n < 9 {
            n += 1;
            k -= 1;
        }
        let mut k = at + 1;
        while (k as usize) < ctx.len() && ctx[k as usize] == b && n < 9 {
            n += 1;
            k += 1;
        }
        if n >= 3 {
            n
        } else {
            0
        }
    };
    let (n, m) = (refs.len(), alt.len());
    let w = m + 1;
    // States: 0 match/mismatch, 1 deletion (ref base skipped), 2 insertion.
    let mut cost = vec![[INF; 3]; (n + 1) * w];
    let mut from = vec![[0u8; 3]; (n + 1) * w];
    cost[0][0] = 0;
    // The smallest of `c`, preferring the states in `order` when equal.
    let best_of = |c: [u32; 3], order: [usize; 3]| -> (u32, u8) {
        let mut best = order[0];
        for &s in &order[1..] {
            if c[s] < c[best] {
                best = s;
            }
        }
        (c[best], best as u8)
    };
    for i in 0..=n {
        for j in 0..=m {
            if i == 0 && j == 0 {
                continue;
            }
            let mut c = [INF; 3];
            let mut f = [0u8; 3];
            if i > 0 && j > 0 {
                let (v, s) = best_of(cost[(i - 1) * w + j - 1], [1, 2, 0]);
                c[0] = v + if refs[i - 1] == alt[j - 1] {
                    0
                } else {
                    MISMATCH
                };
                f[0] = s;
            }
            if i > 0 {
                let open = OPEN - run(beg + i as i64 - 1, refs[i - 1]);
                let p = cost[(i - 1) * w + j];
                let (v, s) = best_of([p[0] + open, p[1] + EXTEND, p[2] + open], [1, 0, 2]);
                c[1] = v;
                f[1] = s;
            }
            if j > 0 {
                // An insertion before ref base i: the run of its base there.
                let b = alt[j - 1];
                let before = beg + i as i64 - 1;
                let bonus = if (before >= 0 && ctx.get(before as usize) == Some(&b))
                    || ctx.get((beg + i as i64) as usize) == Some(&b)
                {
                    let at = if before >= 0 && ctx[before as usize] == b {
                        before
                    } else {
                        before + 1
                    };
                    run(at, b)
                } else {
                    0
                };
                let open = OPEN - bonus;
                let p = cost[i * w + j - 1];
                let (v, s) = best_of([p[0] + open, p[1] + open, p[2] + EXTEND], [2, 0, 1]);
                c[2] = v;
                f[2] = s;
            }
            cost[i * w + j] = c;
            from[i * w + j] = f;
        }
    }
    let (mut i, mut j) = (n, m);
    let mut state = best_of(cost[n * w + m], [1, 2, 0]).1;
    let mut ops: Vec<(u8, usize, usize)> = Vec::new();
    while i > 0 || j > 0 {
        ops.push((state, i, j));
        let prev = from[i * w + j][state as usize];
        match state {
            0 => {
                i -= 1;
                j -= 1;
            }
            1 => i -= 1,
            _ => j -= 1,
        }
        state = prev;
    }
    ops.reverse();
    let mut out: Vec<Var> = Vec::new();
    let mut k = 0;
    while k < ops.len() {
        let (st, i, j) = ops[k];
        match st {
            0 => {
                if refs[i - 1] != alt[j - 1] {
                    out.push(Var {
                        pos: beg + i as i64 - 1,
                        del: 1,
                        ins: vec![alt[j - 1]],
                    });
                }
                k += 1;
            }
            _ => {
                let mut l = k;
                while l < ops.len() && ops[l].0 == st {
                    l += 1;
                }
                if st == 1 {
                    out.push(Var {
                        pos: beg + ops[k].1 as i64 - 1,
                        del: (l - k) as u32,
                        ins: Vec::new(),
                    });
                } else {
                    let first = ops[k].2 - 1;
                    out.push(Var {
                        pos: beg + ops[k].1 as i64,
                        del: 0,
                        ins: alt[first..first + (l - k)].to_vec(),
                    });
                }
                k = l;
            }
        }
    }
    out
}

/// Place each indel as far left in its repeat as it goes without its
/// anchor base touching the variant before it (moving it right first
/// if the alignment left it there), and never into the variant after:
/// records of one allele then stay apart, and left-aligned wherever
/// that is possible.
fn place(r: &[u8], mut out: Vec<Var>) -> Vec<Var> {
    let n = r.len() as i64;
    let mut k = 0;
    while k < out.len() {
        if out[k].is_snv() {
            k += 1;
            continue;
        }
        if swap_with_snv_before(r, &mut out, k) {
            k -= 1;
            continue;
        }
        let before = if k > 0 { out[k - 1].vcf_span().1 } else { 0 };
        let after = out.get(k + 1).map_or(n, |v| v.vcf_span().0);
        let v = &mut out[k];
        if v.del == 0 {
            let mut ins = v.ins.clone();
            let mut pos = v.pos;
            while pos - 1 < before && pos < after && pos < n && r[pos as usize] == ins[0] {
                ins.rotate_left(1);
                pos += 1;
            }
            while pos - 2 >= before
                && r[pos as usize - 1] == ins[ins.len() - 1]
                && r[pos as usize - 1] < 4
            {
                ins.rotate_right(1);
                pos -= 1;
            }
            v.pos = pos;
            v.ins = ins;
        } else {
            let l = v.del as i64;
            while v.pos - 1 < before
                && v.end() < after
                && v.end() < n
                && r[v.pos as usize] == r[v.end() as usize]
            {
                v.pos += 1;
            }
            while v.pos - 2 >= before
                && r[v.pos as usize - 1] == r[(v.pos + l) as usize - 1]
                && r[v.pos as usize - 1] < 4
            {
                v.pos -= 1;
            }
        }
        k += 1;
    }
    out.retain(|v| v.pos >= 1);
    out
}

/// Where a site's two alternate alleles share a variant, describe it
/// the same way in both: an allele is rewritten as the other's variants
/// plus its own differences from that allele, when that takes no more
/// variants than its own decomposition.
fn consistent(r: &[u8], beg: i64, alleles: &[Vec<u8>], mut dec: Vec<Vec<Var>>) -> Vec<Vec<Var>> {
    if alleles.len() != 3 {
        return dec;
    }
    let raw: Vec<Vec<Var>> = alleles
        .iter()
        .map(|a| primitives(r, beg, &alleles[0], a))
        .collect();
    for (x, y) in [(1, 2), (2, 1)] {
        if let Some(v) = via(r, beg, &alleles[0], &raw[x], &alleles[x], &alleles[y]) {
            if v.len() <= dec[y].len() && v != dec[y] {
                dec[y] = v;
                break;
            }
        }
    }
    dec
}

/// Allele `b` as allele `a`'s primitive variants (`raw_a`) plus `b`'s
/// differences from `a`, mapped to reference coordinates and placed;
/// None if a difference touches bases of `a` that are not the
/// reference's.
fn via(r: &[u8], beg: i64, refs: &[u8], raw_a: &[Var], a: &[u8], b: &[u8]) -> Option<Vec<Var>> {
    // Reference position of each base of `a` (None: an inserted or
    // substituted base).
    let mut map: Vec<Option<i64>> = Vec::with_capacity(a.len() + 1);
    let mut at = beg;
    for v in raw_a {
        while at < v.pos {
            map.push(Some(at));
            at += 1;
        }
        map.extend(std::iter::repeat_n(None, v.ins.len()));
        at = v.end();
    }
    while at < beg + refs.len() as i64 {
        map.push(Some(at));
        at += 1;
    }
    map.push(Some(at));
    let mut all = raw_a.to_vec();
    for w in primitives(a, 0, a, b) {
        let q = w.pos as usize;
        let start = (*map.get(q)?)?;
        for k in 0..w.del as usize {
            if *map.get(q + k)? != Some(start + k as i64) {
                return None;
            }
        }
        if w.del == 0 && q > 0 && map[q - 1] != Some(start - 1) {
            return None;
        }
        all.push(Var { pos: start, ..w });
    }
    all.sort();
    for i in 1..all.len() {
        if all[i - 1].conflicts(&all[i]) || all[i - 1].pos == all[i].pos {
            return None;
        }
    }
    Some(place(r, all))
}

/// An SNV at p followed by an indel anchored on p (which no shift
/// through a repeat separates) is the same allele as an indel at p
/// followed by an SNV (or by nothing) after it: rewrite it so, which
/// keeps the two records apart. True if rewritten (the indel is then at
/// `k - 1`).
fn swap_with_snv_before(r: &[u8], out: &mut Vec<Var>, k: usize) -> bool {
    if k == 0 || !out[k - 1].is_snv() || out[k - 1].pos != out[k].pos - 1 {
        return false;
    }
    let n = r.len() as i64;
    let v = &out[k];
    // Shiftable right past the SNV's base: the placement step does it.
    let shiftable = if v.del == 0 {
        v.pos < n && r[v.pos as usize] == v.ins[0]
    } else {
        v.end() < n && r[v.pos as usize] == r[v.end() as usize]
    };
    if shiftable {
        return false;
    }
    let p = out[k - 1].pos;
    let y = out[k - 1].ins[0];
    let (indel, snv) = if v.del == 0 {
        // ref[..p] y S ref[p+1..] = insert (y S[..L-1]) before p, then
        // ref[p] -> S[L-1].
        let l = v.ins.len();
        let mut ins = vec![y];
        ins.extend_from_slice(&v.ins[..l - 1]);
        let last = v.ins[l - 1];
        (
            Var {
                pos: p,
                del: 0,
                ins,
            },
            (r[p as usize] != last).then(|| Var {
                pos: p,
                del: 1,
                ins: vec![last],
            }),
        )
    } else {
        // ref[..p] y ref[p+1+L..] = delete ref[p..p+L), then
        // ref[p+L] -> y.
        let l = v.del as i64;
        (
            Var {
                pos: p,
                del: l as u32,
                ins: Vec::new(),
            },
            (p + l < n && r[(p + l) as usize] != y).then(|| Var {
                pos: p + l,
                del: 1,
                ins: vec![y],
            }),
        )
    };
    out[k - 1] = indel;
    match snv {
        Some(s) => out[k] = s,
        None => {
            out.remove(k);
        }
    }
    true
}

/// Genotype one record from per-read allele log-likelihoods.
fn genotype_site(
    pos: i64,
    alleles: Vec<Vec<u8>>,
    per_read: &[Vec<f64>],
    p: &Params,
) -> Option<Site> {
    let na = alleles.len();
    let mut ad = vec![0u32; na];
    for a in per_read {
        let mut order: Vec<usize> = (0..na).collect();
        order.sort_by(|&x, &y| a[y].total_cmp(&a[x]));
        if a[order[0]] - a[order[1]] > 0.2 * std::f64::consts::LN_10 {
            ad[order[0]] += 1;
        }
    }
    let gl = genotype_lls(per_read, na);
    let listed = if p.gvcf { na - 1 } else { na };
    let is_indel = alleles[..listed]
        .iter()
        .any(|a| a.len() != alleles[0].len());
    let theta = if is_indel { THETA_INDEL } else { THETA_SNV };
    let mut post = Vec::with_capacity(gl.len());
    let mut idx = 0;
    for k in 0..na {
        for j in 0..=k {
            post.push(gl[idx] + ln_prior(j, k, theta));
            idx += 1;
        }
    }
    let total = log_sum(post.iter().copied());
    let gi = (0..post.len()).fold(0, |b, i| if post[i] > post[b] { i } else { b });
    if gi == 0 {
        return None;
    }
    let qual = phred_of_ln(post[0] - total).clamp(0.0, 9999.0);
    if qual < p.min_qual {
        return None;
    }
    let others = log_sum(
        post.iter()
            .enumerate()
            .filter(|&(i, _)| i != gi)
            .map(|(_, &x)| x),
    );
    let gq = phred_of_ln(others - total).clamp(0.0, 99.0).round() as u32;
    let gl_max = gl.iter().cloned().fold(f64::MIN, f64::max);
    let pl = gl
        .iter()
        .map(|&x| phred_of_ln(x - gl_max).round().min(u32::MAX as f64) as u32)
        .collect();
    let mut gt = (0, 0);
    let mut idx = 0;
    for k in 0..na {
        for j in 0..=k {
            if idx == gi {
                gt = (j, k);
            }
            idx += 1;
        }
    }
    Some(Site {
        pos,
        alleles,
        qual,
        gt,
        gq,
        dp: per_read.len() as u32,
        ad,
        pl,
        non_ref: p.gvcf,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        crate::seq::encode_into(s.as_bytes(), &mut out).unwrap();
        out
    }

    #[test]
    fn indels_are_left_aligned_in_repeats() {
        let r = codes("GGCACACACATT");
        // Deleting the last CA of the repeat is deleting its first.
        assert_eq!(left_align_del(&r, 8, 2), 2);
        let mut ins = codes("AC");
        // Inserting AC before base 9 is inserting CA before base 2.
        assert_eq!(left_align_ins(&r, 9, &mut ins), 2);
        assert_eq!(ins, codes("CA"));
        let v = Var {
            pos: 2,
            del: 2,
            ins: vec![],
        };
        assert_eq!(repeat_end(&r, &v), 10);
    }

    #[test]
    fn clips_give_the_indel_they_hide_even_running_into_another() {
        let r = codes("TCTTTCAGTTTTGGTATGTCTGAAGACATTTGCAGTCCA");
        // A read of ref[..15] whose last bases were clipped: after them the
        // read deletes ref[15..17] ("TA")...
        let mut clip = r[17..29].to_vec();
        assert_eq!(
            from_clip(&r, 15, true, &clip),
            Some(Var {
                pos: 15,
                del: 2,
                ins: vec![]
            })
        );
        // ...and 9 bases on has an insertion the clip runs into: the
        // deletion is still read, from the bases beside it.
        clip.insert(9, codes("A")[0]);
        clip.truncate(12);
        assert_ne!(clip[..], r[17..29]);
        assert_eq!(from_clip(&r, 15, true, &clip).map(|v| v.del), Some(2));
        // A clip of the same bases but reversed matches nowhere.
        let other: Vec<u8> = clip.iter().rev().copied().collect();
        assert_eq!(from_clip(&r, 15, true, &other), None);
        // On the left: ref[3..15] clipped before an alignment starting at 17
        // hides the same deletion.
        let left = r[3..15].to_vec();
        assert_eq!(
            from_clip(&r, 17, false, &left),
            Some(Var {
                pos: 15,
                del: 2,
                ins: vec![]
            })
        );
    }

    #[test]
    fn conflicts_follow_the_reference_bases_touched() {
        let snv = |p| Var {
            pos: p,
            del: 1,
            ins: vec![0],
        };
        let del = |p, l| Var {
            pos: p,
            del: l,
            ins: vec![],
        };
        let ins = |p| Var {
            pos: p,
            del: 0,
            ins: vec![1],
        };
        assert!(snv(5).conflicts(&del(4, 3)));
        assert!(!snv(7).conflicts(&del(4, 3)));
        assert!(ins(5).conflicts(&del(4, 3)));
        assert!(!ins(4).conflicts(&snv(4)));
        assert!(!ins(7).conflicts(&del(4, 3)));
        assert!(ins(3).conflicts(&ins(3)));
    }

    #[test]
    fn alignment_prefers_the_haplotype_the_read_came_from() {
        let hap_ref = codes("ACGTTGCAAAAAAAGTCCATG");
        let hap_del = codes("ACGTTGCAAAAAAGTCCATG");
        let read = codes("GCAAAAAAGTCC");
        let emit = vec![ln_err(30, 1.0); read.len()];
        let mut rows = Vec::new();
        let a = align_ll(&read, &emit, &hap_ref, None, None, &mut rows);
        let b = align_ll(&read, &emit, &hap_del, None, None, &mut rows);
        assert!(b > a + 5.0, "{a} {b}");
        // A read ending inside the homopolymer tells them apart not at all.
        let short = codes("ACGTTGCAAA");
        let emit = vec![ln_err(30, 1.0); short.len()];
        let a = align_ll(&short, &emit, &hap_ref, None, None, &mut rows);
        let b = align_ll(&short, &emit, &hap_del, None, None, &mut rows);
        assert!((a - b).abs() < 1e-4);
    }
}
