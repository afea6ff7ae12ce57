/* Random {0, 1} keep masks (rnnkit.layers.dropout.keep_mask) on the CPU.
 *
 * Word w of a mask is SplitMix64's output for the counter w + 1 under the key `seed`
 * (Steele, Lea & Flood 2014: mix(seed + (w + 1) * gamma), with Stafford's "Mix13"
 * finaliser), and is cut into four 16-bit lanes, entries 4w to 4w + 3, as the word lies
 * in memory. An entry is 1 where its lane, read as a signed 16-bit number, is below
 * `threshold`, from -32768 (nothing kept) to 32767 (all but one lane value in 65536; the
 * caller fills a mask of p = 1 itself). The words depend on the counter alone, so the
 * loops vectorise and threads need not meet; the torch expression in dropout.py gives
 * the same bits where the kernels are not built. torch's own generator took ~7 ns a
 * 64-bit draw here; this writes a mask at ~0.1-0.3 ns an entry, bound by the writes:
 * 0.13 ms for a (100, 32, 256) zoneout mask, 0.03 ms for (100, 8, 128).
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

/* Words are made a chunk at a time into a buffer, then compared lane by lane: two loops
 * the compiler vectorises (64-bit multiplies, then 16-bit compares), where a word's four
 * lanes compared in one loop became scalar code with a branch per entry, mispredicted at
 * random (1.7 ns an entry). Lanes are read from the words as they lie in memory, as the
 * torch expression's view reads them. */
#define CHUNK 256

void rnnkit_keep_mask(uint64_t seed, int64_t count, int64_t threshold, real *out,
                      int64_t threads) {
    const int64_t words = (count + 3) / 4, chunks = (words + CHUNK - 1) / CHUNK;
    const int16_t t = (int16_t)threshold;
    (void)threads;
#pragma omp parallel for num_threads(threads) if (threads > 1 && chunks > 64)
    for (int64_t c = 0; c < chunks; c++) {
        uint64_t z[CHUNK];
        int16_t lanes[4 * CHUNK];
        const int64_t w0 = c * CHUNK, n = words - w0 < CHUNK ? words - w0 : CHUNK;
#pragma omp simd
        for (int64_t w = 0; w < n; w++) z[w] = mix(seed + (uint64_t)(w0 + w + 1) * GAMMA);
        memcpy(lanes, z, sizeof z);
        real *o = out + 4 * w0;
        const int64_t m = count - 4 * w0 < 4 * n ? count - 4 * w0 : 4 * n;
#pragma omp simd
        for (int64_t i = 0; i < m; i++) o[i] = (real)(lanes[i] < t);
    }
}
