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
fn sub(s: &Scoring, a: u8, b: u8) -> i32 {
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
    debug_assert_eq!(read.len(), refw.len());
    let l = read.len();
    // Best-scoring segment (Kadane), then compare with the full length
    // under the clipping penalty.
    let mut full = 0i32;
    let mut mism = 0u32;
    let (mut best, mut best_s, mut best_e) = (i32::MIN, 0usize, 0usize);
    let (mut cur, mut cur_s) = (0i32, 0usize);
    for i in 0..l {
        let x = sub(s, read[i], refw[i]);
        if x < 0 {
            mism += 1;
        }
        full += x;
        if cur <= 0 {
            cur = x;
            cur_s = i;
        } else {
            cur += x;
        }
        if cur > best {
            best = cur;
            best_s = cur_s;
            best_e = i + 1;
        }
    }
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

/// DP matrices, kept per thread between calls: every cell a call reads is
/// written by that call first, so they are never cleared.
#[derive(Default)]
struct Matrices {
    h: Vec<i32>,
    e: Vec<i32>,
    f: Vec<i32>,
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
    // Row-major over the band: cell (i, d) is read row i (1-based),
    // column j = i + lo + d (1-based reference column).
    let (go, ge) = (s.gap_open + s.gap_extend, s.gap_extend);
    let cells = (n + 1) * w;
    for v in [&mut mx.h, &mut mx.e, &mut mx.f] {
        if v.len() < cells {
            v.resize(cells, NEG);
        }
    }
    if mx.tb.len() < cells {
        mx.tb.resize(cells, 0);
    }
    let (h, e, f) = (&mut mx.h[..cells], &mut mx.e[..cells], &mut mx.f[..cells]);
    // H: best score ending at the cell; E: ending in a gap in the read
    // (deletion), from the left; F: in a gap in the reference (insertion),
    // from above.
    // Traceback: bits 0-1 source of H (0 start, 1 diag, 2 E, 3 F);
    // bit 2: E extended; bit 3: F extended.
    let tb = &mut mx.tb[..cells];
    let col = |i: usize, d: usize| i as isize + lo + d as isize;
    // Row 0: free start anywhere on the reference.
    for d in 0..w {
        h[d] = if (0..=m as isize).contains(&col(0, d)) {
            0
        } else {
            NEG
        };
        e[d] = NEG;
        f[d] = NEG;
    }
    let mut best = (NEG, 0usize, 0usize); // score, i, d: local end
    for i in 1..=n {
        let row = i * w;
        let prow = (i - 1) * w;
        // A read row may also start the alignment (its start clipped).
        let start_here = -s.clip;
        for d in 0..w {
            let j = col(i, d);
            if j < 1 || j > m as isize {
                h[row + d] = NEG;
                e[row + d] = NEG;
                f[row + d] = NEG;
                continue;
            }
            let jj = j as usize;
            // Diagonal predecessor (i-1, j-1) is band index d in the row above.
            let hdiag = h[prow + d];
            let diag_from = if i == 1 { 0 } else { hdiag.max(start_here) };
            let diag = diag_from + sub(s, read[i - 1], refw[jj - 1]);
            // E: from (i, j-1), band index d-1 in this row.
            let (ev, eext) = if d > 0 {
                let open = h[row + d - 1] - go;
                let ext = e[row + d - 1] - ge;
                if ext > open {
                    (ext, true)
                } else {
                    (open, false)
                }
            } else {
                (NEG, false)
            };
            // F: from (i-1, j), band index d+1 in the row above.
            let (fv, fext) = if d + 1 < w {
                let open = h[prow + d + 1] - go;
                let ext = f[prow + d + 1] - ge;
                if ext > open {
                    (ext, true)
                } else {
                    (open, false)
                }
            } else {
                (NEG, false)
            };
            e[row + d] = ev;
            f[row + d] = fv;
            let (mut hv, mut src) = (diag, 1u8);
            if ev > hv {
                hv = ev;
                src = 2;
            }
            if fv > hv {
                hv = fv;
                src = 3;
            }
            // Where the diagonal came from the clipped start, not the
            // cell above-left, record it as a start.
            if src == 1 && i > 1 && start_here > hdiag {
                src = 0;
            }
            h[row + d] = hv;
            tb[row + d] = src | ((eext as u8) << 2) | ((fext as u8) << 3);
            // End here: the rest of the read is clipped unless i == n.
            let end_score = if i == n { hv } else { hv - s.clip };
            if end_score > best.0 {
                best = (end_score, i, d);
            }
        }
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
