// SHA-256 of every 1024-byte chunk of the input (OpenCL C 1.2).
//
// One work item hashes one chunk: work item i reads input bytes
// [1024 * i, min(1024 * (i + 1), len)) and writes the 32-byte digest to
// output bytes [32 * i, 32 * i + 32). The last chunk may be shorter than
// 1024 bytes. The output is the same, byte for byte, as the wasm
// implementation's (src/main.rs) and as Python's hashlib.sha256 of each chunk.
//
// ip.toml launches ceil(len / 1024) work items rounded UP to the work-group
// size (64), so work items past the last chunk must do nothing: every work
// item checks its id against the chunk count computed from `len`.

#define CHUNK 1024

// Round constants (FIPS 180-4, 4.2.2).
__constant uint K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

// rotate() in OpenCL rotates LEFT; SHA-256 is written with right rotations.
#define ROTR(x, n) rotate((uint)(x), (uint)(32 - (n)))

// Byte j of the padded message (FIPS 180-4, 5.1.1) of a chunk of n bytes
// that starts at `msg`: the message, then 0x80, then zeros; the 64-bit
// big-endian bit length fills the last 8 bytes of the last block, which is
// handled by the caller.
inline uint padded_byte(__global const uchar *msg, uint n, uint j) {
    if (j < n) return msg[j];
    return j == n ? 0x80u : 0u;
}

__kernel void sha256_chunks(__global const uchar *input,
                            __global uchar *output,
                            ulong len)          // input size in bytes
{
    const ulong chunk = get_global_id(0);
    const ulong chunks = (len + CHUNK - 1) / CHUNK;
    if (chunk >= chunks) return;  // padding work item of the last group

    const ulong start = chunk * CHUNK;
    const uint n = (uint)min((ulong)CHUNK, len - start);  // bytes in this chunk
    __global const uchar *msg = input + start;

    // Blocks of 64 bytes after padding: 1 byte 0x80 and 8 bytes of length
    // must fit after the message.
    const uint blocks = (n + 9 + 63) / 64;
    const uint bits = n * 8;  // n <= 1024, so the length fits 32 bits

    uint h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

    for (uint b = 0; b < blocks; b++) {
        // Message schedule: 16 big-endian words of the block, extended to 64.
        uint w[64];
        const uint base = b * 64;
        for (uint i = 0; i < 16; i++) {
            const uint j = base + 4 * i;
            uint word;
            if (j + 4 <= n) {
                // The common case: a word wholly inside the message.
                word = ((uint)msg[j] << 24) | ((uint)msg[j + 1] << 16) |
                       ((uint)msg[j + 2] << 8) | (uint)msg[j + 3];
            } else {
                word = (padded_byte(msg, n, j) << 24) | (padded_byte(msg, n, j + 1) << 16) |
                       (padded_byte(msg, n, j + 2) << 8) | padded_byte(msg, n, j + 3);
            }
            w[i] = word;
        }
        if (b == blocks - 1) {
            // The last block ends with the 64-bit big-endian bit length;
            // its high word is 0 for chunks of at most 1024 bytes.
            w[14] = 0;
            w[15] = bits;
        }
        for (uint i = 16; i < 64; i++) {
            const uint s0 = ROTR(w[i - 15], 7) ^ ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3);
            const uint s1 = ROTR(w[i - 2], 17) ^ ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }

        // Compression (FIPS 180-4, 6.2.2). uint arithmetic wraps mod 2^32.
        uint a = h[0], bb = h[1], c = h[2], d = h[3];
        uint e = h[4], f = h[5], g = h[6], hh = h[7];
        for (uint i = 0; i < 64; i++) {
            const uint S1 = ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25);
            const uint ch = (e & f) ^ (~e & g);
            const uint t1 = hh + S1 + ch + K[i] + w[i];
            const uint S0 = ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22);
            const uint maj = (a & bb) ^ (a & c) ^ (bb & c);
            const uint t2 = S0 + maj;
            hh = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = bb;
            bb = a;
            a = t1 + t2;
        }
        h[0] += a;
        h[1] += bb;
        h[2] += c;
        h[3] += d;
        h[4] += e;
        h[5] += f;
        h[6] += g;
        h[7] += hh;
    }

    // The digest: the 8 state words, big-endian.
    __global uchar *digest = output + chunk * 32;
    for (uint i = 0; i < 8; i++) {
        digest[4 * i] = (uchar)(h[i] >> 24);
        digest[4 * i + 1] = (uchar)(h[i] >> 16);
        digest[4 * i + 2] = (uchar)(h[i] >> 8);
        digest[4 * i + 3] = (uchar)h[i];
    }
}
