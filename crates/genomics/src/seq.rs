//! Nucleotide codes: A=0, C=1, G=2, T=3, N=4. Lower case is read as upper
//! case (soft-masked repeats); U as T; every IUPAC ambiguity code (R Y S W K
//! M B D H V N) as N, which matches nothing.

pub const A: u8 = 0;
pub const C: u8 = 1;
pub const G: u8 = 2;
pub const T: u8 = 3;
pub const N: u8 = 4;
/// Not a nucleotide letter at all.
pub const INVALID: u8 = 255;

const fn table() -> [u8; 256] {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = match (i as u8).to_ascii_uppercase() {
            b'A' => A,
            b'C' => C,
            b'G' => G,
            b'T' | b'U' => T,
            b'N' | b'R' | b'Y' | b'S' | b'W' | b'K' | b'M' | b'B' | b'D' | b'H' | b'V' => N,
            _ => INVALID,
        };
        i += 1;
    }
    t
}

/// Code of an ASCII letter; [`INVALID`] for anything that is not one.
pub static CODE: [u8; 256] = table();

/// Letter of a code.
pub const LETTER: [u8; 5] = *b"ACGTN";

/// The complement of a code (N stays N).
#[inline]
pub fn complement(c: u8) -> u8 {
    if c < 4 {
        3 - c
    } else {
        N
    }
}

/// Reverse complement of codes, into `out`.
pub fn revcomp_into(codes: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend(codes.iter().rev().map(|&c| complement(c)));
}

/// For every offset of `q` along `window`, how many of its positions hold
/// the same code there (`window.len() - q.len() + 1` counts, into `out`).
/// Sixteen positions at a time into byte lanes (a vector compare and
/// subtract), both sides padded with codes that match nothing, the lanes
/// summed every 255 blocks before they can overflow. A mate rescue runs it
/// over its whole window.
pub fn matches_along(q: &[u8], window: &[u8], out: &mut Vec<u32>) {
    const LANES: usize = 16;
    out.clear();
    if q.is_empty() || window.len() < q.len() {
        return;
    }
    let span = q.len().div_ceil(LANES) * LANES;
    let mut qp = vec![0xff; span];
    qp[..q.len()].copy_from_slice(q);
    let mut wp = Vec::with_capacity(window.len() + LANES);
    wp.extend_from_slice(window);
    wp.resize(window.len() + LANES, 0xfe);
    let (qc, _) = qp.as_chunks::<LANES>();
    let count = |qs: &[[u8; LANES]], ws: &[[u8; LANES]]| {
        let mut lanes = [0u8; LANES];
        for (x, y) in qs.iter().zip(ws) {
            for k in 0..LANES {
                lanes[k] += u8::from(x[k] == y[k]);
            }
        }
        lanes.iter().map(|&v| v as u32).sum::<u32>()
    };
    let offsets = 0..=window.len() - q.len();
    if qc.len() <= 255 {
        // A read of up to 4080 bases: one sum of the lanes per offset.
        out.extend(offsets.map(|o| count(qc, wp[o..o + span].as_chunks().0)));
    } else {
        out.extend(offsets.map(|o| {
            let (wc, _) = wp[o..o + span].as_chunks::<LANES>();
            qc.chunks(255)
                .zip(wc.chunks(255))
                .map(|(qs, ws)| count(qs, ws))
                .sum::<u32>()
        }));
    }
}

/// The top bit of each byte of a word.
pub const TOP_BITS: u64 = 0x8080_8080_8080_8080;

/// The top bit of each byte of `v` that is not zero, and no other bit:
/// eight codes compared at once (a byte's low seven bits, plus 0x7f,
/// carry into its top bit and never past it, unless they are all zero).
#[inline]
pub fn nonzero_bytes(v: u64) -> u64 {
    const LOW7: u64 = !TOP_BITS;
    (((v & LOW7) + LOW7) | v) & TOP_BITS
}

/// The top bit of each byte where the words `a` and `b` hold equal codes.
#[inline]
pub fn equal_bytes(a: u64, b: u64) -> u64 {
    !nonzero_bytes(a ^ b) & TOP_BITS
}

/// Of eight read and eight reference codes (a word each, little-endian),
/// the bytes that are not a match: they differ, or the read's is an N
/// (4, or anything above 3). The answer has the top bit of each such byte
/// set, and no other bit.
#[inline]
pub fn odd_bytes(read: u64, refw: u64) -> u64 {
    nonzero_bytes((read ^ refw) | (read & 0xfcfc_fcfc_fcfc_fcfc))
}

/// Eight codes of `s` from `at` as a little-endian word, `pad` in the
/// bytes past its end.
#[inline]
pub fn word_at(s: &[u8], at: usize, pad: u8) -> u64 {
    let part = s.get(at..).unwrap_or(&[]);
    if let Some(w) = part.first_chunk::<8>() {
        return u64::from_le_bytes(*w);
    }
    // The last few, a byte at a time (a copy of unknown length would be
    // a call).
    let mut b = [pad; 8];
    for (x, &c) in b.iter_mut().zip(part) {
        *x = c;
    }
    u64::from_le_bytes(b)
}

/// Equal codes at the same positions of `a` and `b` (the shorter's
/// length), eight at a time.
pub fn count_equal(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    (0..n)
        .step_by(8)
        .map(|at| {
            // Pads that never match each other.
            let eq = equal_bytes(word_at(&a[..n], at, 0), word_at(&b[..n], at, 0xff));
            // One bit per byte at most: a multiply sums them into the top byte.
            ((eq >> 7).wrapping_mul(0x0101_0101_0101_0101) >> 56) as usize
        })
        .sum()
}

/// The positions where `a` and `b` differ (the shorter's length): how
/// many, the first and the last (0 and 0 if none).
pub fn differences(a: &[u8], b: &[u8]) -> (usize, usize, usize) {
    let n = a.len().min(b.len());
    let (mut count, mut first, mut last) = (0, usize::MAX, 0);
    for at in (0..n).step_by(8) {
        let diff = nonzero_bytes(word_at(&a[..n], at, 0) ^ word_at(&b[..n], at, 0));
        if diff != 0 {
            count += ((diff >> 7).wrapping_mul(0x0101_0101_0101_0101) >> 56) as usize;
            first = first.min(at + diff.trailing_zeros() as usize / 8);
            last = at + (63 - diff.leading_zeros() as usize) / 8;
        }
    }
    (count, if count == 0 { 0 } else { first }, last)
}

/// Encode letters; the position of the first byte that is not a nucleotide
/// letter is the error.
pub fn encode_into(letters: &[u8], out: &mut Vec<u8>) -> Result<(), usize> {
    // Translate all, then look for a bad one: two loops without a branch
    // per byte.
    out.clear();
    out.extend(letters.iter().map(|&b| CODE[b as usize]));
    // Whether any is bad, in a loop that does not stop early (so it goes
    // many bytes at a time); where, only then.
    if !out.iter().fold(false, |bad, &c| bad | (c == INVALID)) {
        return Ok(());
    }
    match out.iter().position(|&c| c == INVALID) {
        Some(i) => Err(i),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_along_counts_as_a_plain_loop() {
        // Lengths around the block size and past 255 blocks (lane sums).
        let mut rnd = crate::draws(0x2545_f491_4f6c_dd1d);
        // N (4) among the codes.
        let mut code = || rnd(5) as u8;
        let mut out = Vec::new();
        for (len, extra) in [
            (1usize, 0usize),
            (15, 3),
            (16, 16),
            (17, 40),
            (100, 57),
            (4100, 5),
        ] {
            let w: Vec<u8> = (0..len + extra).map(|_| code()).collect();
            // The query: a stretch of the window, with changes.
            let q: Vec<u8> = w[extra / 2..extra / 2 + len]
                .iter()
                .map(|&c| if code() == 0 { (c + 1) % 5 } else { c })
                .collect();
            matches_along(&q, &w, &mut out);
            let plain: Vec<u32> = (0..=extra)
                .map(|o| q.iter().zip(&w[o..]).filter(|(a, b)| a == b).count() as u32)
                .collect();
            assert_eq!(out, plain, "length {len}");
        }
        matches_along(&[0, 1], &[0], &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn odd_bytes_marks_the_bytes_that_do_not_match() {
        let mut rnd = crate::draws(0x6a09_e667_f3bc_c909u64);
        // Codes 0-4 mostly, sometimes anything, from one draw.
        let code = |v: u64| {
            if v.is_multiple_of(8) {
                (v >> 3) as u8
            } else {
                (v >> 3) as u8 % 5
            }
        };
        for _ in 0..20000 {
            let x: [u8; 8] = std::array::from_fn(|_| code(rnd(1 << 12)));
            let y: [u8; 8] = std::array::from_fn(|j| {
                let v = rnd(1 << 13);
                if v & 1 == 0 {
                    x[j]
                } else {
                    code(v >> 1)
                }
            });
            let plain = (0..8).fold(0u64, |m, j| {
                m | (u64::from(x[j] != y[j] || x[j] > 3) << (8 * j + 7))
            });
            assert_eq!(
                odd_bytes(u64::from_le_bytes(x), u64::from_le_bytes(y)),
                plain,
                "{x:?} {y:?}"
            );
        }
    }

    #[test]
    fn word_comparisons_count_as_plain_loops() {
        let mut rnd = crate::draws(0xbb67_ae85_84ca_a73bu64);
        // Codes 0-4 mostly, now and then any byte, from one draw.
        let code = |v: u64| {
            if v.is_multiple_of(20) {
                (v >> 5) as u8
            } else {
                (v >> 5) as u8 % 5
            }
        };
        for round in 0..5000 {
            let len = rnd(40) as usize;
            let a: Vec<u8> = (0..len).map(|_| code(rnd(1 << 14))).collect();
            let b: Vec<u8> = a
                .iter()
                .map(|&c| {
                    let v = rnd(1 << 16);
                    if v.is_multiple_of(4) {
                        code(v >> 2)
                    } else {
                        c
                    }
                })
                .collect();
            let equal = a.iter().zip(&b).filter(|(x, y)| x == y).count();
            assert_eq!(count_equal(&a, &b), equal, "round {round}");
            let diff: Vec<usize> = (0..len).filter(|&i| a[i] != b[i]).collect();
            let plain = (
                diff.len(),
                diff.first().copied().unwrap_or(0),
                diff.last().copied().unwrap_or(0),
            );
            assert_eq!(differences(&a, &b), plain, "round {round}");
            // A shorter second sequence bounds both.
            let cut = len / 2;
            let equal = a.iter().zip(&b[..cut]).filter(|(x, y)| x == y).count();
            assert_eq!(count_equal(&a, &b[..cut]), equal, "round {round}");
        }
        assert_eq!(
            word_at(&[1, 2, 3], 1, 9),
            u64::from_le_bytes([2, 3, 9, 9, 9, 9, 9, 9])
        );
        assert_eq!(word_at(&[1, 2, 3], 5, 7), u64::from_le_bytes([7; 8]));
    }

    #[test]
    fn codes_and_complements() {
        let mut v = Vec::new();
        encode_into(b"ACGTacgtNRYu", &mut v).unwrap();
        assert_eq!(v, [A, C, G, T, A, C, G, T, N, N, N, T]);
        assert_eq!(encode_into(b"AC-GT", &mut v), Err(2));
        assert_eq!(encode_into(b"AC GT", &mut v), Err(2));
        let mut r = Vec::new();
        encode_into(b"AACGN", &mut v).unwrap();
        revcomp_into(&v, &mut r);
        let s: Vec<u8> = r.iter().map(|&c| LETTER[c as usize]).collect();
        assert_eq!(s, b"NCGTT");
    }
}
