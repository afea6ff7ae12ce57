/* Random {0, 1} keep masks (rnnkit.layers.dropout.keep_mask) on the CPU.
 *
 * Word w of a mask is SplitMix64's output for the counter w + 1 under the key `seed`
 * (Steele, Lea & Flood 2014: mix(seed + (w + 1) * gamma), with Stafford's "Mix13"
 * finaliser), and is cut into four 16-bit lanes, lane k its bits 16k to 16k + 15. Entry
 * 4w + k is 1 where that lane, read as a signed 16-bit number, is below `threshold`
 * (-32768 keeps nothing, 32768 everything). The words depend on the counter alone, so
 * the loop vectorises and its threads need not meet; the torch expression in dropout.py
 * gives the same bits where the kernels are not built. torch's own generator takes
 * ~7 ns a 64-bit draw here; this ~0.6 ns, both threads together (~0.15 ns a mask entry).
 */
#include "common.h"

#define GAMMA 0x9E3779B97F4A7C15ull
#define MIX1 0xBF58476D1CE4E5B9ull
#define MIX2 0x94D049BB133111EBull

static inline uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * MIX1;
    z = (z ^ (z >> 27)) * MIX2;
    return z ^ (z >> 31);
}

static inline real kept(uint64_t word, int k, int64_t threshold) {
    return (real)((int16_t)(uint16_t)(word >> (16 * k)) < threshold);
}

void rnnkit_keep_mask(uint64_t seed, int64_t count, int64_t threshold, real *out,
                      int64_t threads) {
    const int64_t words = count / 4;
    (void)threads;
#pragma omp parallel for simd num_threads(threads) if (threads > 1 && words > 65536)
    for (int64_t w = 0; w < words; w++) {
        const uint64_t z = mix(seed + (uint64_t)(w + 1) * GAMMA);
        for (int k = 0; k < 4; k++) out[4 * w + k] = kept(z, k, threshold);
    }
    if (count > 4 * words) { /* the last word's first lanes */
        const uint64_t z = mix(seed + (uint64_t)(words + 1) * GAMMA);
        for (int k = 0; k < count - 4 * words; k++) out[4 * words + k] = kept(z, k, threshold);
    }
}
