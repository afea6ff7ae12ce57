/* The recurrent product of one step on the CPU, (B, K) x (K, N) for the B rows of a
 * batch, called by the time loops (loop.c) at every step.
 *
 * A library's general routine spends a good part of so small a call deciding, allocating
 * and waking threads. Here the right operand (W_hh) is packed once per loop (rnnkit_pack)
 * into column panels of NR columns, (K, NR) each, contiguous, zero-padded past the last
 * column; each thread takes the same panels at every step (a static schedule), so its
 * share of W_hh stays in its own cache across the loop; an MR x NR block of the result
 * is accumulated in vector registers over the whole of K before it is stored once.
 * GCC's vector types keep it one source for float and double and for AVX-512 (64-byte
 * vectors), AVX2 and other SIMD units (32-byte vectors, split by the compiler where
 * narrower). A call of a few steps (generation) reads W_hh as it is instead
 * (rnnkit_product_rows), since laying it out would cost more than its products. The
 * products over all steps stay with torch (oneDNN), which runs those larger shapes as
 * fast.
 *
 * The time loops' product also fetches, spread over its blocks, what the step's
 * pointwise pass will touch (a prefetch_t): the pass is bound by memory, the product by
 * arithmetic, so the fetches overlap the product's work instead of stalling the pass.
 * Each thread fetches the rows it will take in the pass, into its own core's cache.
 */
#include "common.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__AVX512F__)
#define VBYTES 64
#define MR 8 /* 2 MR accumulators + 2 loads + 1 broadcast within 32 vector registers */
#else
#define VBYTES 32
#define MR 6 /* within 16 */
#endif
#define VL (VBYTES / (int)sizeof(real))
#define NR (2 * VL)
typedef real vec __attribute__((vector_size(VBYTES)));

static inline vec vload(const real *p) {
    vec v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void vstore(real *p, vec v) { memcpy(p, &v, sizeof v); }

/* The columns in a panel, and the panels of n columns. */
int64_t rnnkit_panel_width(void) { return NR; }
static inline int64_t panels(int64_t n) { return (n + NR - 1) / NR; }
static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Pack the right operand of x @ w^T (transpose = 1: w is (N, K)) or of x @ w (transpose
 * = 0: w is (K, N)) into out, panels(N) * K * NR values, the threads sharing the panels. */
void rnnkit_pack(const real *w, int64_t K, int64_t N, int64_t transpose, real *out,
                 int64_t threads) {
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && N * K >= 65536)
    for (int64_t p = 0; p < panels(N); p++) {
        real *o = out + p * K * NR;
        const int64_t cols = min64(N - p * NR, NR);
        if (cols < NR) memset(o, 0, K * NR * sizeof(real));
        if (transpose) /* column c of the panel is row p NR + c of w: read it in order */
            for (int64_t c = 0; c < cols; c++) {
                const real *row = w + (p * NR + c) * K;
                for (int64_t k = 0; k < K; k++) o[k * NR + c] = row[k];
            }
        else
            for (int64_t k = 0; k < K; k++) memcpy(o + k * NR, w + k * N + p * NR, cols * sizeof(real));
    }
}

/* K is walked in chunks of KC, with a few prefetches after each. */
#define KC 64

typedef struct {
    const prefetch_t *pf;
    int64_t s, per, lo, hi;
    const char *p, *end;
} cursor_t;

/* Point at the first line of stream s on (skipping empty ones). */
static inline void cursor_range(cursor_t *c) {
    for (; c->s < c->pf->n; c->s++) {
        const int64_t rb = c->pf->row_bytes[c->s];
        c->p = c->pf->base[c->s] + c->lo * rb;
        c->end = c->pf->base[c->s] + c->hi * rb;
        if (c->p < c->end) return;
    }
}

/* Thread id of nt: its rows of the pass, and its lines spread over its chunks of work. */
static void cursor_init(cursor_t *c, const prefetch_t *pf, int64_t id, int64_t nt,
                        int64_t chunks) {
    c->pf = pf;
    c->s = 0;
    c->lo = c->hi = 0;
    if (pf->team == nt)
        static_share(pf->B, nt, id, &c->lo, &c->hi);
    else if (id == 0)
        c->hi = pf->B;
    c->hi = c->hi < pf->rows ? c->hi : pf->rows;
    c->lo = c->lo < c->hi ? c->lo : c->hi;
    int64_t lines = 0;
    for (int64_t s = 0; s < pf->n; s++) lines += ((c->hi - c->lo) * pf->row_bytes[s] + 63) / 64;
    c->per = chunks > 0 ? (lines + chunks - 1) / chunks : lines;
    cursor_range(c);
}

static inline void cursor_step(cursor_t *c) {
    for (int64_t i = 0; i < c->per && c->s < c->pf->n; i++) {
        if (c->pf->write[c->s])
            __builtin_prefetch(c->p, 1, 2);
        else
            __builtin_prefetch(c->p, 0, 2);
        c->p += 64;
        if (c->p >= c->end) {
            c->s++;
            cursor_range(c);
        }
    }
}

/* C[0:mr, 0:cols] = A[0:mr, :] b over K, A's rows lda apart; cols <= NR. A constant mr
 * at the call site makes a kernel of each. */
__attribute__((optimize("fp-contract=fast"))) static inline __attribute__((always_inline)) void
block(const real *A, int64_t lda, const real *b, int64_t K, real *C, int64_t ldc, const int mr,
      int64_t cols, cursor_t *cur) {
    vec c0[MR], c1[MR];
    for (int i = 0; i < mr; i++) c0[i] = c1[i] = (vec){0};
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
        const int64_t k1 = k0 + KC < K ? k0 + KC : K;
        for (int64_t k = k0; k < k1; k++) {
            vec b0 = vload(b + k * NR), b1 = vload(b + k * NR + VL);
            for (int i = 0; i < mr; i++) {
                real a = A[i * lda + k];
                c0[i] += a * b0;
                c1[i] += a * b1;
            }
        }
        if (cur) cursor_step(cur);
    }
    if (cols == NR) {
        for (int i = 0; i < mr; i++) {
            vstore(C + i * ldc, c0[i]);
            vstore(C + i * ldc + VL, c1[i]);
        }
        return;
    }
    real tmp[NR]; /* a last panel of fewer columns */
    for (int i = 0; i < mr; i++) {
        vstore(tmp, c0[i]);
        vstore(tmp + VL, c1[i]);
        memcpy(C + i * ldc, tmp, cols * sizeof(real));
    }
}

/* C (M, N) = A (M, K) B, B packed by rnnkit_pack; rows of A and C lda and ldc apart;
 * fetching pf's lines meanwhile (or not: NULL), and C's own before each block when
 * cold_c (C is a buffer not touched lately).
 * (fp-contract here too: GCC drops an inlined function's own optimize attribute.) */
__attribute__((optimize("fp-contract=fast"))) void rnnkit_product_fetching(
    const real *A, int64_t lda, int64_t M, int64_t K, const real *packed, int64_t N, real *C,
    int64_t ldc, int64_t threads, const prefetch_t *pf, int cold_c) {
    const int64_t P = panels(N);
#pragma omp parallel num_threads(threads) if (threads > 1 && P > 1 && M * N * K >= 65536)
    {
        int64_t id = 0, nt = 1;
#ifdef _OPENMP
        id = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        cursor_t cursor, *cur = NULL;
        if (pf && pf->n) {
            int64_t p0, p1;
            static_share(P, nt, id, &p0, &p1);
            cursor_init(&cursor, pf, id, nt, (p1 - p0) * ((M + MR - 1) / MR) * ((K + KC - 1) / KC));
            cur = &cursor;
        }
#pragma omp for schedule(static)
        for (int64_t p = 0; p < P; p++) {
            const real *b = packed + p * K * NR;
            const int64_t cols = min64(N - p * NR, NR);
            real *c = C + p * NR;
            if (cold_c)
                for (int64_t i = 0; i < M; i++)
                    for (int64_t l = 0; l < NR * (int64_t)sizeof(real); l += 64)
                        __builtin_prefetch((const char *)(c + i * ldc) + l, 1, 2);
            int64_t i = 0;
            for (; i + MR <= M; i += MR)
                block(A + i * lda, lda, b, K, c + i * ldc, ldc, MR, cols, cur);
            switch (M - i) { /* the last rows, with the block's size known to the compiler */
#define REST(m) \
    case m: block(A + i * lda, lda, b, K, c + i * ldc, ldc, m, cols, cur); break;
                REST(1) REST(2) REST(3) REST(4) REST(5)
#if MR > 6
                REST(6) REST(7)
#endif
#undef REST
                default: break;
            }
        }
    }
}

/* C (M, N) = A (M, K) B, B packed by rnnkit_pack; rows of A and C lda and ldc apart. */
void rnnkit_product(const real *A, int64_t lda, int64_t M, int64_t K, const real *packed,
                    int64_t N, real *C, int64_t ldc, int64_t threads) {
    rnnkit_product_fetching(A, lda, M, K, packed, N, C, ldc, threads, NULL, 0);
}

/* C (M, N) = A (M, K) W^T with W (N, K) as it is, unpacked: for a call of a step or a few
 * (generation, a few rows), where laying W out would cost more than the products. Each
 * output is a dot product along K; the threads share the rows of W. */
__attribute__((optimize("fp-contract=fast"))) void rnnkit_product_rows(
    const real *A, int64_t lda, int64_t M, int64_t K, const real *W, int64_t N, real *C,
    int64_t ldc, int64_t threads) {
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && M * N * K >= 65536)
    for (int64_t n = 0; n < N; n++) {
        const real *restrict w = W + n * K;
        for (int64_t i = 0; i < M; i++) {
            const real *restrict a = A + i * lda;
            real s = 0;
#pragma omp simd reduction(+ : s)
            for (int64_t k = 0; k < K; k++) s += a[k] * w[k];
            C[i * ldc + n] = s;
        }
    }
}
