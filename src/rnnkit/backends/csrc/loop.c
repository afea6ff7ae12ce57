/* The fused backend's time loops on the CPU, with the recurrent product in C.
 *
 *   forward, step t:   p = (h_{t-1} . m) W_hh^T            (rnnkit_product)
 *                      <cell>_forward_step(t, p)            (the pointwise work)
 *   backward, step t:  <cell>_backward_step(t, q)           (dG_t, and dL/dpre_t under LN_hh)
 *                      q = dG_t W_hh                        (dh_{t-1} before the mask)
 *
 * One call runs every step of one layer and direction, so a step costs no Python and no
 * dispatch, only the product and the kernel. The product is a small one, (B, P) x (P, G)
 * for B rows of a batch: a library's general routine spends a good part of such a call
 * deciding, allocating and waking threads. Here the weight is packed once per call into
 * column panels of NR columns, (K, NR) each, contiguous, zero-padded past the last column;
 * each thread takes the same panels at every step (a static schedule), so its share of
 * W_hh stays in its own cache across the loop, and an MR x NR block of the result is
 * accumulated in vector registers over the whole of K before it is stored once. GCC's
 * vector types keep it one source for float and double and for AVX-512 (64-byte vectors),
 * AVX2 and other SIMD units (32-byte vectors, split by the compiler where narrower).
 */
#include "common.h"

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

/* Pack the right operand of x @ w^T (transpose = 1: w is (N, K)) or of x @ w (transpose
 * = 0: w is (K, N)) into out, panels(N) * K * NR values. */
void rnnkit_pack(const real *w, int64_t K, int64_t N, int64_t transpose, real *out) {
    for (int64_t p = 0; p < panels(N); p++)
        for (int64_t k = 0; k < K; k++) {
            real *o = out + (p * K + k) * NR;
            for (int64_t c = 0; c < NR; c++) {
                int64_t n = p * NR + c;
                o[c] = n >= N ? 0 : transpose ? w[n * K + k] : w[k * N + n];
            }
        }
}

/* C[0:mr, 0:cols] = A[0:mr, :] B_panel, over all of K; cols <= NR. */
__attribute__((optimize("fp-contract=fast"))) static inline __attribute__((always_inline)) void
block(const real *A, int64_t lda, const real *b, int64_t K, real *C, int64_t ldc, const int mr,
      int64_t cols) {
    vec c0[MR], c1[MR];
    for (int i = 0; i < mr; i++) c0[i] = c1[i] = (vec){0};
    for (int64_t k = 0; k < K; k++) {
        vec b0 = vload(b + k * NR), b1 = vload(b + k * NR + VL);
        for (int i = 0; i < mr; i++) {
            real a = A[i * lda + k];
            c0[i] += a * b0;
            c1[i] += a * b1;
        }
    }
    if (cols == NR) {
        for (int i = 0; i < mr; i++) {
            vstore(C + i * ldc, c0[i]);
            vstore(C + i * ldc + VL, c1[i]);
        }
        return;
    }
    real tmp[NR];
    for (int i = 0; i < mr; i++) {
        vstore(tmp, c0[i]);
        vstore(tmp + VL, c1[i]);
        memcpy(C + i * ldc, tmp, cols * sizeof(real));
    }
}

/* C (M, N) = A (M, K) B, B packed by rnnkit_pack; rows of A and C lda and ldc apart.
 * (fp-contract here too: GCC drops an inlined function's own optimize attribute.) */
__attribute__((optimize("fp-contract=fast"))) void rnnkit_product(const real *A, int64_t lda, int64_t M, int64_t K, const real *packed, int64_t N,
                    real *C, int64_t ldc, int64_t threads) {
    const int64_t P = panels(N);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && P > 1 && M * N * K >= 65536)
    for (int64_t p = 0; p < P; p++) {
        const real *b = packed + p * K * NR;
        const int64_t cols = N - p * NR < NR ? N - p * NR : NR;
        real *c = C + p * NR;
        int64_t i = 0;
        for (; i + MR <= M; i += MR) block(A + i * lda, lda, b, K, c + i * ldc, ldc, MR, cols);
        switch (M - i) { /* the last rows, with the block's size known to the compiler */
#define REST(m) case m: block(A + i * lda, lda, b, K, c + i * ldc, ldc, m, cols); break;
            REST(1) REST(2) REST(3) REST(4) REST(5)
#if MR > 6
            REST(6) REST(7)
#endif
#undef REST
            default: break;
        }
    }
}

typedef void (*forward_step_t)(const run_t *, int64_t, const real *, int64_t);
typedef void (*backward_step_t)(const run_t *, int64_t, int64_t, real *, int64_t);

/* Every step of a forward: rows[t] rows still running at step t (a prefix of the batch);
 * w_hh packed transposed (K = H, N = G); p a (B, G) scratch for the product, unless the
 * layer norm keeps it for backward (r->pre), where the product is written in place. */
static void forward_loop(const run_t *r, forward_step_t step, int64_t G, const real *w_hh,
                         const int64_t *rows, real *p) {
    const int64_t B = r->B, H = r->H;
    for (int64_t t = 0; t < r->T; t++) {
        const real *left = r->hm ? r->hm : t ? r->hbuf + (t - 1) * B * H : r->h0;
        real *out = r->pre && r->st_pre ? r->pre + t * r->st_pre : p;
        rnnkit_product(left, H, rows[t], H, w_hh, G, out, G, r->threads);
        step(r, t, out, rows[t]);
    }
}

/* Every step of a backward, last to first: q (B, H) holds the final state's gradient on
 * entry and dL/dh_0 before its dropout mask on return; dg (T, B, G) is what multiplies
 * W_hh (dG, or dL/dpre under the layer norm); w_hh packed as is (K = G, N = H). */
static void backward_loop(const run_t *r, backward_step_t step, int64_t G, const real *w_hh,
                          const int64_t *rows, const real *dg, real *q) {
    const int64_t B = r->B, H = r->H;
    for (int64_t t = r->T - 1; t >= 0; t--) {
        const int64_t n = rows[t];
        step(r, t, t == r->T - 1, q, n);
        rnnkit_product(dg + t * B * G, G, n, G, w_hh, H, q, H, r->threads);
        if (n < B) memset(q + n * H, 0, (B - n) * H * sizeof(real));
    }
}

void lstm_forward_step(const run_t *, int64_t, const real *, int64_t);
void lstm_backward_step(const run_t *, int64_t, int64_t, real *, int64_t);
void gru_forward_step(const run_t *, int64_t, const real *, int64_t);
void gru_backward_step(const run_t *, int64_t, int64_t, real *, int64_t);
void rnn_forward_step(const run_t *, int64_t, const real *, int64_t);
void rnn_backward_step(const run_t *, int64_t, int64_t, real *, int64_t);

void lstm_forward(const run_t *r, const real *w, const int64_t *rows, real *p) {
    forward_loop(r, lstm_forward_step, 4 * r->H, w, rows, p);
}
void lstm_backward(const run_t *r, const real *w, const int64_t *rows, const real *dg, real *q) {
    backward_loop(r, lstm_backward_step, 4 * r->H, w, rows, dg, q);
}
void gru_forward(const run_t *r, const real *w, const int64_t *rows, real *p) {
    forward_loop(r, gru_forward_step, 3 * r->H, w, rows, p);
}
void gru_backward(const run_t *r, const real *w, const int64_t *rows, const real *dg, real *q) {
    backward_loop(r, gru_backward_step, 3 * r->H, w, rows, dg, q);
}
void rnn_forward(const run_t *r, const real *w, const int64_t *rows, real *p) {
    forward_loop(r, rnn_forward_step, r->H, w, rows, p);
}
void rnn_backward(const run_t *r, const real *w, const int64_t *rows, const real *dg, real *q) {
    backward_loop(r, rnn_backward_step, r->H, w, rows, dg, q);
}
