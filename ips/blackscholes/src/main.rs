//! Black-Scholes pricing of a batch of European options, as an Accelhub IP.
//!
//! Input: records of 20 bytes, 5 little-endian `f32` each: spot price `S`,
//! strike `K`, risk-free rate `r` (continuously compounded, per year),
//! volatility `sigma` (per year) and time to expiry `T` (years). Output:
//! 8 bytes per record, 2 little-endian `f32`: the call price and the put
//! price. No parameters.
//!
//! ```text
//! d1   = (ln(S/K) + (r + sigma^2/2) T) / (sigma sqrt(T))
//! d2   = d1 - sigma sqrt(T)
//! call = S N(d1) - K e^(-rT) N(d2)
//! put  = K e^(-rT) (1 - N(d2)) - S (1 - N(d1))
//! ```
//!
//! `N` is the cumulative normal distribution, approximated by the
//! Abramowitz-Stegun polynomial 26.2.17 as in NVIDIA's BlackScholes sample
//! (absolute error below 7.5e-8). Arithmetic is `f32`, as in the OpenCL
//! implementation (`blackscholes.cl`). The two agree closely but not bit
//! for bit (each device's `exp` and `ln` round differently): within about
//! 3e-5 of each other, and 2.5e-5 of the exact prices, relative to
//! max(1, price).
//!
//! Records are priced independently and never fail the call:
//! - `sigma * sqrt(T) == 0` (no volatility or at expiry): the price is the
//!   discounted intrinsic value, `call = max(S - K e^(-rT), 0)`,
//!   `put = max(K e^(-rT) - S, 0)`, the limit of the formula;
//! - an invalid record (`S <= 0`, `K <= 0`, `sigma < 0`, `T < 0`, or any
//!   field NaN or infinite) prices as NaN, NaN.
//!
//! An input that is not a whole number of records fails the call. The input
//! is streamed, a block of records at a time.

use std::io::{self, BufWriter, ErrorKind, Read, Write};
use std::process::ExitCode;

/// Bytes per input record: 5 `f32`.
const RECORD: usize = 20;
/// Records read per block.
const BLOCK: usize = 4096;

/// The cumulative normal distribution N(d), by the Abramowitz-Stegun
/// polynomial (26.2.17), exactly as in `blackscholes.cl`. The constants
/// are written as published; the compiler rounds them to `f32`.
#[allow(clippy::excessive_precision)]
fn cnd(d: f32) -> f32 {
    const A1: f32 = 0.319_381_53;
    const A2: f32 = -0.356_563_782;
    const A3: f32 = 1.781_477_937;
    const A4: f32 = -1.821_255_978;
    const A5: f32 = 1.330_274_429;
    const RSQRT2PI: f32 = 0.398_942_280_401_432_7; // 1 / sqrt(2 pi)
    let k = 1.0 / (1.0 + 0.231_641_9 * d.abs());
    let tail =
        RSQRT2PI * (-0.5 * d * d).exp() * (k * (A1 + k * (A2 + k * (A3 + k * (A4 + k * A5)))));
    if d > 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// (call, put) of one option.
fn price(s: f32, k: f32, r: f32, sigma: f32, t: f32) -> (f32, f32) {
    let valid = [s, k, r, sigma, t].iter().all(|v| v.is_finite())
        && s > 0.0
        && k > 0.0
        && sigma >= 0.0
        && t >= 0.0;
    if !valid {
        return (f32::NAN, f32::NAN);
    }
    let discounted_k = k * (-r * t).exp();
    let vol = sigma * t.sqrt();
    if vol == 0.0 {
        // No uncertainty left: the forward payoff, discounted.
        return ((s - discounted_k).max(0.0), (discounted_k - s).max(0.0));
    }
    let d1 = ((s / k).ln() + (r + 0.5 * sigma * sigma) * t) / vol;
    let d2 = d1 - vol;
    let (n1, n2) = (cnd(d1), cnd(d2));
    let call = s * n1 - discounted_k * n2;
    let put = discounted_k * (1.0 - n2) - s * (1.0 - n1);
    (call, put)
}

/// Read until `buf` is full or the input ends; the number of bytes read.
fn fill(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn run() -> Result<(), String> {
    let mut input = io::stdin().lock();
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let mut block = vec![0u8; RECORD * BLOCK];
    let mut prices = Vec::with_capacity(8 * BLOCK);
    let mut total = 0u64;
    loop {
        let n = fill(&mut input, &mut block).map_err(|e| format!("reading the input: {e}"))?;
        let whole = n / RECORD * RECORD;
        prices.clear();
        for rec in block[..whole].chunks_exact(RECORD) {
            let f = |i: usize| {
                f32::from_le_bytes([rec[4 * i], rec[4 * i + 1], rec[4 * i + 2], rec[4 * i + 3]])
            };
            let (call, put) = price(f(0), f(1), f(2), f(3), f(4));
            prices.extend_from_slice(&call.to_le_bytes());
            prices.extend_from_slice(&put.to_le_bytes());
        }
        out.write_all(&prices)
            .map_err(|e| format!("writing the output: {e}"))?;
        total += n as u64;
        if n < block.len() {
            // The input has ended; a partial record is an error.
            if whole < n {
                return Err(format!(
                    "the input is {total} bytes, not a whole number of 20-byte records \
                     (5 little-endian f32 each: S, K, r, sigma, T); {} byte(s) left over",
                    n - whole
                ));
            }
            break;
        }
    }
    out.flush()
        .map_err(|e| format!("writing the output: {e}"))?;
    eprintln!("blackscholes: {} option(s) priced", total / RECORD as u64);
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("blackscholes: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::price;

    #[test]
    fn reference_option() {
        let (call, put) = price(100.0, 105.0, 0.05, 0.2, 1.0);
        assert!((call - 8.021352).abs() < 1e-4, "call {call}");
        assert!((put - 7.900442).abs() < 1e-4, "put {put}");
    }

    #[test]
    fn limits_and_invalid_records() {
        assert_eq!(price(100.0, 105.0, 0.0, 0.2, 0.0), (0.0, 5.0));
        let (call, put) = price(100.0, 90.0, 0.05, 0.0, 1.0);
        assert!((call - (100.0 - 90.0 * (-0.05f32).exp())).abs() < 1e-4 && put == 0.0);
        for bad in [
            [0.0, 1.0, 0.0, 0.2, 1.0],
            [1.0, -1.0, 0.0, 0.2, 1.0],
            [1.0, 1.0, 0.0, -0.2, 1.0],
            [1.0, 1.0, 0.0, 0.2, -1.0],
            [1.0, 1.0, f32::NAN, 0.2, 1.0],
            [f32::INFINITY, 1.0, 0.0, 0.2, 1.0],
        ] {
            let (c, p) = price(bad[0], bad[1], bad[2], bad[3], bad[4]);
            assert!(c.is_nan() && p.is_nan(), "{bad:?}");
        }
    }
}
