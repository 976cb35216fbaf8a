//! Banded affine-gap alignment of a read against a reference window, with
//! soft clipping, and ungapped alignment for the common case of a read with
//! a few mismatches and no indel.

/// Scoring, on BWA-MEM's scale so that AS and MAPQ read the same.
#[derive(Debug, Clone, Copy)]
pub struct Scoring {
    pub matched: i32,
    pub mismatch: i32,
    pub gap_open: i32,
    pub gap_extend: i32,
    /// Penalty for clipping one end of a read.
    pub clip: i32,
}

impl Default for Scoring {
    fn default() -> Self {
        Scoring {
            matched: 1,
            mismatch: 4,
            gap_open: 6,
            gap_extend: 1,
            clip: 5,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Match,
    Ins,
    Del,
    SoftClip,
}

/// An alignment of a whole read: where it starts on the reference, its
/// operations (run-length), and its score.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alignment {
    /// Offset of the first aligned reference base within the window.
    pub ref_start: usize,
    pub cigar: Vec<(Op, u32)>,
    pub score: i32,
}

/// The soft clips at the start and the end of a CIGAR.
pub fn soft_clips(cigar: &[(Op, u32)]) -> (usize, usize) {
    let clip = |c: Option<&(Op, u32)>| match c {
        Some((Op::SoftClip, n)) => *n as usize,
        _ => 0,
    };
    (clip(cigar.first()), clip(cigar.last()))
}

impl Alignment {
    pub fn ref_len(&self) -> usize {
        self.cigar
            .iter()
            .filter(|(op, _)| matches!(op, Op::Match | Op::Del))
            .map(|&(_, n)| n as usize)
            .sum()
    }
}

#[inline]
pub(crate) fn sub(s: &Scoring, a: u8, b: u8) -> i32 {
    if a > 3 || b > 3 {
        -1
    } else if a == b {
        s.matched
    } else {
        -s.mismatch
    }
}

fn push(cigar: &mut Vec<(Op, u32)>, op: Op, n: u32) {
    if n == 0 {
        return;
    }
    match cigar.last_mut() {
        Some((o, m)) if *o == op => *m += n,
        _ => cigar.push((op, n)),
    }
}

/// Ungapped alignment of `read` against `refw` (same length), clipping an
/// end when that scores better. Also returns the mismatch count.
pub fn ungapped(s: &Scoring, read: &[u8], refw: &[u8]) -> (Alignment, u32) {
    clip_or_not(s, read.len().min(refw.len()), kadane(s, read, refw))
}

/// The ungapped alignment of `l` bases whose scores `k` summed: the best
/// stretch, clipped, where that beats the whole under the clipping
/// penalty; and the mismatch count.
fn clip_or_not(s: &Scoring, l: usize, k: Kadane) -> (Alignment, u32) {
    let Kadane {
        full,
        mism,
        best,
        best_s,
        best_e,
        ..
    } = k;
    let clips = |st: usize, en: usize| (st > 0) as i32 + (en < l) as i32;
    let local = best - s.clip * clips(best_s, best_e);
    let (st, en, score) = if local > full && best > 0 {
        (best_s, best_e, best)
    } else {
        (0, l, full)
    };
    let mut cigar = Vec::new();
    push(&mut cigar, Op::SoftClip, st as u32);
    push(&mut cigar, Op::Match, (en - st) as u32);
    push(&mut cigar, Op::SoftClip, (l - en) as u32);
    (
        Alignment {
            ref_start: st,
            cigar,
            score,
        },
        mism,
    )
}

/// The best score of a stretch of `read` on `refw` (same length), with no
/// gap and no clipping penalty.
pub fn best_stretch(s: &Scoring, read: &[u8], refw: &[u8]) -> i32 {
    kadane(s, read, refw).best.max(0)
}

/// The scores of `read` on `refw`: whole, and the best stretch.
fn kadane(s: &Scoring, read: &[u8], refw: &[u8]) -> Kadane {
    let mut k = Kadane::default();
    k.along(s, read, refw, 0);
    k
}

/// NM and the best score of a stretch of an alignment (no clipping
/// penalty): `q` on the alignment's strand, `r` the reference span it
/// aligns to. Every candidate gets them, so the matched stretches go by
/// blocks of bases, as [`ungapped`]'s.
pub fn nm_score(q: &[u8], r: &[u8], cigar: &[(Op, u32)], s: &Scoring) -> (u32, i32) {
    let (mut qi, mut ri, mut gaps) = (0usize, 0usize, 0u32);
    let mut k = Kadane::default();
    for &(op, n) in cigar {
        let n = n as usize;
        match op {
            Op::SoftClip => qi += n,
            Op::Ins | Op::Del => {
                k.add(qi, qi, -(s.gap_open + s.gap_extend * n as i32));
                gaps += n as u32;
                if op == Op::Ins {
                    qi += n;
                } else {
                    ri += n;
                }
            }
            Op::Match => {
                k.along(s, &q[qi..qi + n], &r[ri..ri + n], qi);
                qi += n;
                ri += n;
            }
        }
    }
    (k.mism + gaps, k.best.max(0))
}

/// The best-scoring segment of a sequence of scores, one score at a time
/// or a run of equal positive ones at once.
struct Kadane {
    full: i32,
    mism: u32,
    cur: i32,
    cur_s: usize,
    best: i32,
    best_s: usize,
    best_e: usize,
}

impl Default for Kadane {
    fn default() -> Self {
        Kadane {
            full: 0,
            mism: 0,
            cur: 0,
            cur_s: 0,
            best: i32::MIN,
            best_s: 0,
            best_e: 0,
        }
    }
}

impl Kadane {
    /// Add the scores of `read` on `refw` (same length), at positions from
    /// `base`. Runs of matches go at once: eight bases are one word, whose
    /// bytes that do not match (or hold an N, code 4) are found by bit
    /// arithmetic and visited alone, so a read with a few mismatches costs
    /// about as many steps.
    fn along(&mut self, s: &Scoring, read: &[u8], refw: &[u8], base: usize) {
        debug_assert_eq!(read.len(), refw.len());
        let l = read.len().min(refw.len());
        // Start of the run of matches not yet added.
        let mut run = 0usize;
        let mut odd = |k: &mut Kadane, i: usize| {
            let x = sub(s, read[i], refw[i]);
            if x != s.matched {
                k.matches(base + run, base + i, s.matched);
                k.step(base + i, x);
                run = i + 1;
            }
        };
        let (rc, _) = read[..l].as_chunks::<8>();
        let (fc, _) = refw[..l].as_chunks::<8>();
        for (n, (x, y)) in rc.iter().zip(fc).enumerate() {
            let mut differ = crate::seq::odd_bytes(u64::from_le_bytes(*x), u64::from_le_bytes(*y));
            while differ != 0 {
                odd(self, n * 8 + differ.trailing_zeros() as usize / 8);
                differ &= differ - 1;
            }
        }
        for i in rc.len() * 8..l {
            odd(self, i);
        }
        self.matches(base + run, base + l, s.matched);
    }

    /// Position `i` scores `x`.
    fn step(&mut self, i: usize, x: i32) {
        if x < 0 {
            self.mism += 1;
        }
        self.add(i, i + 1, x);
    }

    /// Positions `from..to` each score `a` (> 0): as many steps, since the
    /// running sum only grows along them.
    fn matches(&mut self, from: usize, to: usize, a: i32) {
        if to > from {
            self.add(from, to, (to - from) as i32 * a);
        }
    }

    /// Positions `from..to` score `v` together, and the running sum may
    /// only change sign at their start.
    fn add(&mut self, from: usize, to: usize, v: i32) {
        self.full += v;
        if self.cur <= 0 {
            self.cur = v;
            self.cur_s = from;
        } else {
            self.cur += v;
        }
        if self.cur > self.best {
            self.best = self.cur;
            self.best_s = self.cur_s;
            self.best_e = to;
        }
    }
}

const NEG: i32 = i32::MIN / 4;

/// Affine-gap alignment of `read` inside `refw` (free start and end on the
/// reference), restricted to the band of diagonals `[lo, hi]` (reference
/// column minus read row), with each read end either aligned or
/// soft-clipped at `clip` cost. Returns None when no cell scores above 0.
pub fn banded(s: &Scoring, read: &[u8], refw: &[u8], lo: isize, hi: isize) -> Option<Alignment> {
    thread_local! {
        static MATRICES: std::cell::RefCell<Matrices> = std::cell::RefCell::new(Matrices::default());
    }
    MATRICES.with(|m| banded_in(&mut m.borrow_mut(), s, read, refw, lo, hi))
}

/// DP rows and the traceback matrix, kept per thread between calls:
/// every cell a call reads is written by that call first, so they are
/// never cleared.
#[derive(Default)]
struct Matrices {
    /// H and F of the row above and of this row (band index + 1 spare),
    /// side by side: a cell reads both of the cell above at once.
    hf: [Vec<[i32; 2]>; 2],
    tb: Vec<u8>,
}

fn banded_in(
    mx: &mut Matrices,
    s: &Scoring,
    read: &[u8],
    refw: &[u8],
    lo: isize,
    hi: isize,
) -> Option<Alignment> {
    let n = read.len();
    let m = refw.len();
    if n == 0 || m == 0 || hi < lo {
        return None;
    }
    let w = (hi - lo + 1) as usize;
    // Cell (i, d) is read row i (1-based) and reference column
    // j = i + lo + d (1-based). Only two rows of scores are kept; the
    // traceback keeps every cell.
    let (go, ge) = (s.gap_open + s.gap_extend, s.gap_extend);
    let cells = (n + 1) * w;
    for v in mx.hf.iter_mut() {
        if v.len() < w + 1 {
            v.resize(w + 1, [NEG; 2]);
        }
    }
    if mx.tb.len() < cells {
        mx.tb.resize(cells, 0);
    }
    let tb = &mut mx.tb[..cells];
    let [hf0, hf1] = &mut mx.hf;
    let (mut above, mut here) = (&mut hf0[..w + 1], &mut hf1[..w + 1]);
    let col = |i: usize, d: usize| i as isize + lo + d as isize;
    // The valid band indexes of row i: 1 <= j <= m (row 0: 0 <= j <= m).
    let span = |i: usize, first: isize| {
        let a = (first - i as isize - lo).max(0) as usize;
        let b = (m as isize - i as isize - lo).min(w as isize - 1);
        (a, b)
    };
    // Row 0: free start anywhere on the reference.
    above.fill([NEG; 2]);
    let (a0, b0) = span(0, 0);
    if (a0 as isize) <= b0 {
        above[a0..=b0 as usize].fill([0, NEG]);
    }
    // H: best score ending at the cell; E: ending in a gap in the read
    // (deletion), from the left; F: in a gap in the reference (insertion),
    // from above. Traceback: bits 0-1 source of H (0 start, 1 diag, 2 E,
    // 3 F); bit 2: E extended; bit 3: F extended.
    // The best local end: score, row i, band index d.
    let mut best = (NEG, 0usize, 0usize);
    // A read row may also start the alignment (its start clipped).
    let start_here = -s.clip;
    for i in 1..=n {
        let row = &mut tb[i * w..(i + 1) * w];
        // The read base's score against each reference code.
        let rb = read[i - 1];
        let prof: [i32; 5] = std::array::from_fn(|c| sub(s, rb, c as u8));
        here.fill([NEG; 2]);
        let (a, b) = span(i, 1);
        if (a as isize) <= b {
            let b = b as usize;
            let refs = &refw[(col(i, a) - 1) as usize..col(i, b) as usize];
            // H and E of the cell to the left.
            let (mut hl, mut el) = (NEG, NEG);
            // H of the cell up and left: the previous cell's up.
            let mut hdiag = above[a][0];
            // The row's cells as zipped slices: no index to check per cell.
            let cells = refs
                .iter()
                .zip(&above[a + 1..=b + 1])
                .zip(here[a..=b].iter_mut().zip(row[a..=b].iter_mut()));
            for ((&rc, &[hup, fup]), (hf, t)) in cells {
                // Row 0 holds 0 wherever row 1 may start, above the
                // clipping cost, so row 1 needs no case of its own.
                let from_start = start_here > hdiag;
                let diag = hdiag.max(start_here) + prof[(rc as usize).min(4)];
                let (eo, ex) = (hl - go, el - ge);
                let (fo, fx) = (hup - go, fup - ge);
                let (ev, fv) = (eo.max(ex), fo.max(fx));
                let hv = diag.max(ev).max(fv);
                let src = if fv > diag.max(ev) {
                    3
                } else if ev > diag {
                    2
                } else {
                    u8::from(!from_start)
                };
                *hf = [hv, fv];
                *t = src | (u8::from(ex > eo) << 2) | (u8::from(fx > fo) << 3);
                hl = hv;
                el = ev;
                hdiag = hup;
            }
            // End in this row: the rest of the read is clipped unless it is
            // the last. The row's best first, the cell only when it wins.
            let end_cost = if i == n { 0 } else { s.clip };
            let row_best = here[a..=b].iter().map(|c| c[0]).max().unwrap_or(NEG);
            if row_best - end_cost > best.0 {
                if let Some(d) = (a..=b).find(|&d| here[d][0] == row_best) {
                    best = (row_best - end_cost, i, d);
                }
            }
        }
        std::mem::swap(&mut above, &mut here);
    }
    if best.0 <= 0 {
        return None;
    }
    let (score, end_i, end_d) = best;
    // Traceback.
    let mut ops: Vec<(Op, u32)> = Vec::new();
    // Built from the end backwards, then reversed.
    push(&mut ops, Op::SoftClip, (n - end_i) as u32);
    let (mut i, mut d) = (end_i, end_d);
    let mut state = 0u8; // 0 H, 2 E, 3 F
    loop {
        if i == 0 {
            break;
        }
        let t = tb[i * w + d];
        match state {
            2 => {
                push(&mut ops, Op::Del, 1);
                let ext = t & 4 != 0;
                d -= 1;
                state = if ext { 2 } else { 0 };
                continue;
            }
            3 => {
                push(&mut ops, Op::Ins, 1);
                let ext = t & 8 != 0;
                i -= 1;
                d += 1;
                state = if ext { 3 } else { 0 };
                continue;
            }
            _ => {}
        }
        match t & 3 {
            1 => {
                push(&mut ops, Op::Match, 1);
                i -= 1;
            }
            0 => {
                // Start of the alignment at this read row.
                push(&mut ops, Op::Match, 1);
                i -= 1;
                push(&mut ops, Op::SoftClip, i as u32);
                i = 0;
            }
            2 => state = 2,
            _ => state = 3,
        }
    }
    ops.reverse();
    let mut a = Alignment {
        ref_start: 0,
        cigar: ops,
        score,
    };
    // The start is the end's column (1-based: the last aligned base) less
    // the reference the alignment spans.
    a.ref_start = col(end_i, end_d) as usize - a.ref_len();
    // Paths start on a diagonal, so only a trailing deletion can be
    // dropped here, which leaves the start as it is.
    normalise_ends(&mut a.cigar);
    Some(a)
}

/// Insertions or deletions at the very ends of an alignment become clips
/// (or disappear): SAM readers expect an alignment to start and end with a
/// match.
fn normalise_ends(c: &mut Vec<(Op, u32)>) {
    loop {
        let first_real = c.iter().position(|(o, _)| *o != Op::SoftClip);
        match first_real.map(|k| c[k]) {
            Some((Op::Ins, n)) => {
                let k = first_real.unwrap_or(0);
                c.remove(k);
                if k > 0 {
                    c[k - 1].1 += n;
                } else {
                    c.insert(0, (Op::SoftClip, n));
                }
            }
            Some((Op::Del, _)) => {
                c.remove(first_real.unwrap_or(0));
            }
            _ => break,
        }
    }
    loop {
        let last_real = c.iter().rposition(|(o, _)| *o != Op::SoftClip);
        match last_real.map(|k| c[k]) {
            Some((Op::Ins, n)) => {
                let k = last_real.unwrap_or(0);
                c.remove(k);
                if k < c.len() {
                    c[k].1 += n;
                } else {
                    c.push((Op::SoftClip, n));
                }
            }
            Some((Op::Del, _)) => {
                c.remove(last_real.unwrap_or(0));
            }
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str) -> Vec<u8> {
        s.bytes().map(|b| crate::seq::CODE[b as usize]).collect()
    }

    fn cig(a: &Alignment) -> String {
        a.cigar
            .iter()
            .map(|(o, n)| {
                format!(
                    "{n}{}",
                    match o {
                        Op::Match => 'M',
                        Op::Ins => 'I',
                        Op::Del => 'D',
                        Op::SoftClip => 'S',
                    }
                )
            })
            .collect()
    }

    #[test]
    fn ungapped_clips_a_bad_end() {
        let s = Scoring::default();
        let r = enc("ACGTACGTACGTACGTACGTAAAA");
        let f = enc("ACGTACGTACGTACGTACGTCCCC");
        let (a, mism) = ungapped(&s, &r, &f);
        assert_eq!(mism, 4);
        assert_eq!(cig(&a), "20M4S");
        assert_eq!(a.score, 20);
        let (a, _) = ungapped(&s, &enc("ACGTTCGTAC"), &enc("ACGTACGTAC"));
        assert_eq!(cig(&a), "10M");
        assert_eq!(a.score, 5);
    }

    /// The per-base Kadane `ungapped` stands for.
    fn ungapped_plain(s: &Scoring, read: &[u8], refw: &[u8]) -> (Alignment, u32) {
        let mut k = Kadane::default();
        for i in 0..read.len() {
            k.step(i, sub(s, read[i], refw[i]));
        }
        clip_or_not(s, read.len(), k)
    }

    #[test]
    fn ungapped_by_blocks_is_ungapped_by_bases() {
        let s = Scoring::default();
        let mut rnd = crate::draws(0x9e37_79b9_7f4a_7c15u64);
        for round in 0..3000 {
            let len = 1 + rnd(180) as usize;
            let f: Vec<u8> = (0..len).map(|_| rnd(4) as u8).collect();
            // From identical to random, with Ns on either side.
            let rate = [0, 2, 10, 40, 100][round % 5];
            let r: Vec<u8> = f
                .iter()
                .map(|&c| match rnd(100) {
                    v if v < rate => rnd(5) as u8,
                    98 => 4,
                    _ => c,
                })
                .collect();
            let mut f = f;
            if rnd(10) == 0 {
                let i = rnd(len as u64) as usize;
                f[i] = 4;
            }
            assert_eq!(
                ungapped(&s, &r, &f),
                ungapped_plain(&s, &r, &f),
                "round {round}"
            );
        }
    }

    /// The per-base path scoring `nm_score` stands for.
    fn nm_score_plain(q: &[u8], r: &[u8], cigar: &[(Op, u32)], s: &Scoring) -> (u32, i32) {
        let (mut qi, mut ri, mut nm) = (0usize, 0usize, 0u32);
        let (mut cur, mut best) = (0i32, 0i32);
        let mut step = |x: i32| {
            cur = (cur + x).max(0);
            best = best.max(cur);
        };
        for &(op, n) in cigar {
            let n = n as usize;
            match op {
                Op::SoftClip => qi += n,
                Op::Ins | Op::Del => {
                    step(-(s.gap_open + s.gap_extend * n as i32));
                    nm += n as u32;
                    if op == Op::Ins {
                        qi += n;
                    } else {
                        ri += n;
                    }
                }
                Op::Match => {
                    for (&a, &b) in q[qi..qi + n].iter().zip(&r[ri..ri + n]) {
                        let x = sub(s, a, b);
                        step(x);
                        nm += u32::from(x < 0);
                    }
                    qi += n;
                    ri += n;
                }
            }
        }
        (nm, best)
    }

    #[test]
    fn nm_score_by_blocks_is_nm_score_by_bases() {
        let s = Scoring::default();
        let mut rnd = crate::draws(0x2545_f491_4f6c_dd1du64);
        for round in 0..3000 {
            // A random path: clips, matched runs (long and short), indels.
            let mut cigar = Vec::new();
            if rnd(3) == 0 {
                cigar.push((Op::SoftClip, 1 + rnd(20) as u32));
            }
            for _ in 0..1 + rnd(4) {
                if !cigar.is_empty() && rnd(3) == 0 {
                    let op = if rnd(2) == 0 { Op::Ins } else { Op::Del };
                    cigar.push((op, 1 + rnd(6) as u32));
                }
                cigar.push((Op::Match, 1 + rnd(70) as u32));
            }
            if rnd(3) == 0 {
                cigar.push((Op::SoftClip, 1 + rnd(20) as u32));
            }
            let count = |want: &[Op]| -> usize {
                cigar
                    .iter()
                    .filter(|(o, _)| want.contains(o))
                    .map(|&(_, n)| n as usize)
                    .sum()
            };
            let (ql, rl) = (
                count(&[Op::SoftClip, Op::Match, Op::Ins]),
                count(&[Op::Match, Op::Del]),
            );
            let rate = [0, 2, 10, 40, 100][round % 5];
            let r: Vec<u8> = (0..rl).map(|_| rnd(4) as u8).collect();
            // The read: the reference's bases where they align, with
            // changes and Ns; anything elsewhere.
            let q: Vec<u8> = (0..ql)
                .map(|i| match rnd(100) {
                    v if v < rate => rnd(5) as u8,
                    98 => 4,
                    _ => r[i.min(rl - 1)],
                })
                .collect();
            assert_eq!(
                nm_score(&q, &r, &cigar, &s),
                nm_score_plain(&q, &r, &cigar, &s),
                "round {round} {cigar:?}"
            );
        }
    }

    #[test]
    fn banded_finds_deletions_and_insertions() {
        let s = Scoring::default();
        let refw = enc("TTTTTACGTAGCTAGCTAGGATCGATCGGATCGATTTACGGATCAGTTTTT");
        // The read lacks the "GA" after the core's first 14 bases.
        let read = enc("ACGTAGCTAGCTAGTCGATCGGATCGATTTACGGATCAG");
        let a = banded(&s, &read, &refw, -10, 20).unwrap();
        assert_eq!(cig(&a), "14M2D25M");
        assert_eq!(a.ref_start, 5);
        assert_eq!(a.score, 39 - (6 + 2));
        let read = enc("ACGTAGCTAGCTAGGAGGATCGATCGGATCGATTTACGGATCAG");
        let a = banded(&s, &read, &refw, -10, 20).unwrap();
        assert_eq!(a.ref_start, 5);
        assert!(cig(&a).contains("3I"), "{}", cig(&a));
    }
}
