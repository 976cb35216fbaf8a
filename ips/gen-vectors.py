#!/usr/bin/env python3
"""Regenerate the test vectors of the example IPs sha256, convolve and
blackscholes (ips/NAME/tests/*.in, *.out), deterministically.

    python3 ips/gen-vectors.py

Python 3 standard library only. Inputs come from a fixed xorshift generator
(not `random`, whose algorithms may change between Python versions);
expected outputs come from independent reference implementations here:
hashlib for SHA-256, a direct transcription of the convolution, and the
exact Black-Scholes formula in double precision (math.erf), stored as f32.
"""

import hashlib
import math
import struct
from pathlib import Path

IPS = Path(__file__).resolve().parent


def write(ip, name, data):
    path = IPS / ip / "tests" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    assert len(data) < 64 * 1024, f"{path}: keep test vectors small"
    path.write_bytes(data)
    print(f"{path.relative_to(IPS)}: {len(data)} bytes")


class XorShift32:
    """Marsaglia's xorshift32: a tiny generator with a fixed sequence."""

    def __init__(self, seed):
        self.state = seed & 0xFFFFFFFF or 1

    def next(self):
        x = self.state
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.state = x
        return x

    def uniform(self, lo, hi):
        return lo + (hi - lo) * (self.next() / 2**32)


# --- sha256 ---------------------------------------------------------------

def sha256_chunks(data, chunk=1024):
    return b"".join(hashlib.sha256(data[i:i + chunk]).digest()
                    for i in range(0, len(data), chunk))


def gen_sha256():
    rng = XorShift32(0x5A256)
    vectors = {
        "empty": b"",
        "abc": b"abc",
        # 4 whole chunks and a 904-byte tail.
        "5000": bytes(rng.next() & 0xFF for _ in range(5000)),
        # 2 whole chunks and a 56-byte tail: its padding needs a second block.
        "2104": bytes(rng.next() & 0xFF for _ in range(2104)),
    }
    for name, data in vectors.items():
        write("sha256", f"{name}.in", data)
        write("sha256", f"{name}.out", sha256_chunks(data))


# --- convolve -------------------------------------------------------------

FILTERS = {
    # name: (code, weights row-major, divisor, rounding)
    "blur": (0, [1, 2, 1, 2, 4, 2, 1, 2, 1], 16, 8),
    "sharpen": (1, [0, -1, 0, -1, 5, -1, 0, -1, 0], 1, 0),
    "edges": (2, [-1, -1, -1, -1, 8, -1, -1, -1, -1], 1, 0),
}


def convolve(img, width, height, filt):
    _, weights, divisor, rounding = FILTERS[filt]
    out = bytearray(width * height)
    for y in range(height):
        for x in range(width):
            total = 0
            for dy in (-1, 0, 1):
                yy = min(max(y + dy, 0), height - 1)  # clamp-to-edge
                for dx in (-1, 0, 1):
                    xx = min(max(x + dx, 0), width - 1)
                    total += weights[(dy + 1) * 3 + dx + 1] * img[yy * width + xx]
            v = (total + rounding) // divisor  # total >= 0 whenever divisor > 1
            out[y * width + x] = min(max(v, 0), 255)
    return bytes(out)


def synthetic_image(width, height, seed):
    """A diagonal gradient with a bright rectangle, a dark disc and noise:
    smooth areas, hard edges and saturation for every filter."""
    rng = XorShift32(seed)
    img = bytearray()
    for y in range(height):
        for x in range(width):
            v = 20 + 180 * x // max(width - 1, 1) + 40 * y // max(height - 1, 1)
            if width // 8 <= x < width // 3 and height // 6 <= y < height // 2:
                v = 235
            cx, cy, r = width * 2 // 3, height * 2 // 3, min(width, height) // 4
            if (x - cx) ** 2 + (y - cy) ** 2 <= r * r:
                v = 15
            v += rng.next() % 25 - 12
            img.append(min(max(v, 0), 255))
    return bytes(img)


def gen_convolve():
    img = synthetic_image(64, 48, 0xC0417)
    write("convolve", "image-64x48.in", img)
    for filt in FILTERS:
        write("convolve", f"{filt}-64x48.out", convolve(img, 64, 48, filt))
    # Sizes that are not multiples of the 16x16 work-group.
    img = synthetic_image(37, 5, 0x37005)
    write("convolve", "image-37x5.in", img)
    write("convolve", "edges-37x5.out", convolve(img, 37, 5, "edges"))
    img = synthetic_image(9, 1, 0x9001)
    write("convolve", "image-9x1.in", img)
    write("convolve", "blur-9x1.out", convolve(img, 9, 1, "blur"))


# --- blackscholes ---------------------------------------------------------

def f32(v):
    """v rounded to the nearest f32, as the IP reads it."""
    return struct.unpack("<f", struct.pack("<f", v))[0]


def norm_cdf(x):
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def black_scholes(s, k, r, sigma, t):
    """Exact (double precision) call and put prices, with the IP's rules for
    limits and invalid records."""
    fields = (s, k, r, sigma, t)
    if not all(math.isfinite(v) for v in fields) or s <= 0 or k <= 0 or sigma < 0 or t < 0:
        return math.nan, math.nan
    dk = k * math.exp(-r * t)
    vol = sigma * math.sqrt(t)
    if vol == 0:
        return max(s - dk, 0.0), max(dk - s, 0.0)
    d1 = (math.log(s / k) + (r + 0.5 * sigma * sigma) * t) / vol
    d2 = d1 - vol
    call = s * norm_cdf(d1) - dk * norm_cdf(d2)
    put = dk * norm_cdf(-d2) - s * norm_cdf(-d1)
    return call, put


def options_vector(options):
    data, prices = b"", b""
    for o in options:
        o = tuple(f32(v) for v in o)  # price what the IP will read
        data += struct.pack("<5f", *o)
        prices += struct.pack("<2f", *black_scholes(*o))
    return data, prices


REFERENCE = (100.0, 105.0, 0.05, 0.2, 1.0)  # call 8.021352, put 7.900442


def gen_blackscholes():
    call, put = black_scholes(*(f32(v) for v in REFERENCE))
    assert abs(call - 8.021352) < 1e-5 and abs(put - 7.900442) < 1e-5, (call, put)

    data, prices = options_vector([REFERENCE])
    write("blackscholes", "reference.in", data)
    write("blackscholes", "reference.out", prices)

    rng = XorShift32(0xB5)
    options = [REFERENCE]
    for _ in range(200):
        s = rng.uniform(10.0, 150.0)
        k = s * rng.uniform(0.6, 1.4)
        r = rng.uniform(0.0, 0.1)
        sigma = rng.uniform(0.05, 0.8)
        t = rng.uniform(0.05, 5.0)
        options.append((s, k, r, sigma, t))
    data, prices = options_vector(options)
    write("blackscholes", "batch.in", data)
    write("blackscholes", "batch.out", prices)

    inf, nan = math.inf, math.nan
    edge = [
        (100.0, 90.0, 0.05, 0.0, 1.0),     # no volatility: discounted intrinsic
        (100.0, 110.0, 0.05, 0.0, 1.0),    # no volatility, out of the money
        (100.0, 105.0, 0.05, 0.3, 0.0),    # at expiry
        (100.0, 100.0, 0.0, 0.3, 0.0),     # at expiry, at the money
        (100.0, 10.0, 0.05, 0.2, 1.0),     # deep in the money
        (10.0, 100.0, 0.05, 0.2, 1.0),     # deep out of the money
        (100.0, 100.0, -0.01, 0.3, 2.0),   # negative rate
        (50.0, 55.0, 0.03, 2.5, 10.0),     # huge volatility, long expiry
        (0.0, 100.0, 0.05, 0.2, 1.0),      # invalid: S <= 0
        (100.0, -5.0, 0.05, 0.2, 1.0),     # invalid: K <= 0
        (100.0, 100.0, 0.05, -0.2, 1.0),   # invalid: sigma < 0
        (100.0, 100.0, 0.05, 0.2, -1.0),   # invalid: T < 0
        (100.0, 100.0, nan, 0.2, 1.0),     # invalid: NaN
        (inf, 100.0, 0.05, 0.2, 1.0),      # invalid: infinite
    ]
    data, prices = options_vector(edge)
    write("blackscholes", "edge.in", data)
    write("blackscholes", "edge.out", prices)


if __name__ == "__main__":
    gen_sha256()
    gen_convolve()
    gen_blackscholes()
