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

/// Encode letters; the position of the first byte that is not a nucleotide
/// letter is the error.
pub fn encode_into(letters: &[u8], out: &mut Vec<u8>) -> Result<(), usize> {
    // Translate all, then look for a bad one: two loops without a branch
    // per byte.
    out.clear();
    out.extend(letters.iter().map(|&b| CODE[b as usize]));
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
