// Black-Scholes pricing of a batch of European options (OpenCL C 1.2).
//
// Input: records of 5 little-endian floats (S, K, r, sigma, T); output: 2
// floats per record (call, put). One work item prices one option. The same
// formulas, in the same float arithmetic, as the wasm implementation
// (src/main.rs); results agree closely but not bit for bit, since exp() and
// log() round differently on each device (about 3e-5 relative to
// max(1, price) at most).
//
//   d1   = (ln(S/K) + (r + sigma^2/2) T) / (sigma sqrt(T))
//   d2   = d1 - sigma sqrt(T)
//   call = S N(d1) - K e^(-rT) N(d2)
//   put  = K e^(-rT) (1 - N(d2)) - S (1 - N(d1))
//
// Records that cannot be priced do not fail the call (a kernel cannot):
// sigma sqrt(T) == 0 gives the discounted intrinsic value (the formula's
// limit); S <= 0, K <= 0, sigma < 0, T < 0 or a NaN/infinite field gives
// NaN, NaN. These checks rely on IEEE semantics, which is why ip.toml does
// not build with -cl-fast-relaxed-math / -cl-finite-math-only.
//
// ip.toml launches one work item per record rounded UP to the work-group
// size (64), so work items past the last record must do nothing.

// Abramowitz-Stegun 26.2.17 coefficients, as in NVIDIA's BlackScholes sample.
#define A1 0.31938153f
#define A2 -0.356563782f
#define A3 1.781477937f
#define A4 -1.821255978f
#define A5 1.330274429f
#define RSQRT2PI 0.39894228040143267793994605993438f  // 1 / sqrt(2 pi)

// Cumulative normal distribution N(d); absolute error below 7.5e-8.
inline float cnd(float d) {
    const float k = 1.0f / (1.0f + 0.2316419f * fabs(d));
    const float tail =
        RSQRT2PI * exp(-0.5f * d * d) * (k * (A1 + k * (A2 + k * (A3 + k * (A4 + k * A5)))));
    return d > 0.0f ? 1.0f - tail : tail;
}

__kernel void black_scholes(__global const float *input,  // 5 floats per option
                            __global float *output,       // 2 floats per option
                            uint options)                 // input bytes / 20
{
    const size_t i = get_global_id(0);
    if (i >= options) return;  // padding of the last work-group

    const float S = input[5 * i];
    const float K = input[5 * i + 1];
    const float r = input[5 * i + 2];
    const float sigma = input[5 * i + 3];
    const float T = input[5 * i + 4];

    float call, put;
    const bool valid = isfinite(S) && isfinite(K) && isfinite(r) && isfinite(sigma) &&
                       isfinite(T) && S > 0.0f && K > 0.0f && sigma >= 0.0f && T >= 0.0f;
    if (!valid) {
        call = put = NAN;
    } else {
        const float discounted_k = K * exp(-r * T);
        const float vol = sigma * sqrt(T);
        if (vol == 0.0f) {
            // No uncertainty left: the forward payoff, discounted.
            call = fmax(S - discounted_k, 0.0f);
            put = fmax(discounted_k - S, 0.0f);
        } else {
            const float d1 = (log(S / K) + (r + 0.5f * sigma * sigma) * T) / vol;
            const float d2 = d1 - vol;
            const float n1 = cnd(d1), n2 = cnd(d2);
            call = S * n1 - discounted_k * n2;
            put = discounted_k * (1.0f - n2) - S * (1.0f - n1);
        }
    }
    output[2 * i] = call;
    output[2 * i + 1] = put;
}
