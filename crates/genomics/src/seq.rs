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

/// Encode letters; the position of the first byte that is not a nucleotide
/// letter is the error.
pub fn encode_into(letters: &[u8], out: &mut Vec<u8>) -> Result<(), usize> {
    out.clear();
    out.reserve(letters.len());
    for (i, &b) in letters.iter().enumerate() {
        let c = CODE[b as usize];
        if c == INVALID {
            return Err(i);
        }
        out.push(c);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
