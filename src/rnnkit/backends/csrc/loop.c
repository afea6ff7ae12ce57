/* The fused backend's time loops on the CPU, with the recurrent product in C.
 *
 *   forward, step t:   p = (h_{t-1} . m) W_hh^T            (rnnkit_product, product.c)
 *                      <cell>_forward_step(t, p)            (the pointwise work)
 *   backward, step t:  <cell>_backward_step(t, q)           (dG_t, and dL/dpre_t under LN_hh)
 *                      q = dG_t W_hh                        (dh_{t-1} before the mask)
 *
 * One call runs every step of one layer and direction, so a step costs no Python and no
 * dispatch, only the product and the kernel. W_hh is packed once per call (rnnkit_pack),
 * but for a call of a few steps (generation), which reads it as it is.
 */
#include "common.h"

void rnnkit_product(const real *A, int64_t lda, int64_t M, int64_t K, const real *packed,
                    int64_t N, real *C, int64_t ldc, int64_t threads);
void rnnkit_product_rows(const real *A, int64_t lda, int64_t M, int64_t K, const real *W,
                         int64_t N, real *C, int64_t ldc, int64_t threads);

typedef void (*forward_step_t)(const run_t *, int64_t, const real *, int64_t);
typedef void (*backward_step_t)(const run_t *, int64_t, int64_t, real *, int64_t);

/* Every step of a forward: rows[t] rows still running at step t (a prefix of the batch);
 * w_hh packed transposed (K = H, N = G), or as it is, (G, H), when raw (a short call);
 * p a (B, G) scratch for the product, unless the layer norm keeps it for backward
 * (r->pre), where the product is written in place. */
static void forward_loop(const run_t *r, forward_step_t step, int64_t G, const real *w_hh,
                         int64_t raw, const int64_t *rows, real *p) {
    const int64_t B = r->B, H = r->H;
    for (int64_t t = 0; t < r->T; t++) {
        const real *left = r->hm ? r->hm : t ? r->hbuf + (t - 1) * B * H : r->h0;
        real *out = r->pre && r->st_pre ? r->pre + t * r->st_pre : p;
        if (raw)
            rnnkit_product_rows(left, H, rows[t], H, w_hh, G, out, G, r->threads);
        else
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

void lstm_forward(const run_t *r, const real *w, int64_t raw, const int64_t *rows, real *p) {
    forward_loop(r, lstm_forward_step, 4 * r->H, w, raw, rows, p);
}
void lstm_backward(const run_t *r, const real *w, const int64_t *rows, const real *dg, real *q) {
    backward_loop(r, lstm_backward_step, 4 * r->H, w, rows, dg, q);
}
void gru_forward(const run_t *r, const real *w, int64_t raw, const int64_t *rows, real *p) {
    forward_loop(r, gru_forward_step, 3 * r->H, w, raw, rows, p);
}
void gru_backward(const run_t *r, const real *w, const int64_t *rows, const real *dg, real *q) {
    backward_loop(r, gru_backward_step, 3 * r->H, w, rows, dg, q);
}
void rnn_forward(const run_t *r, const real *w, int64_t raw, const int64_t *rows, real *p) {
    forward_loop(r, rnn_forward_step, r->H, w, raw, rows, p);
}
void rnn_backward(const run_t *r, const real *w, const int64_t *rows, const real *dg, real *q) {
    backward_loop(r, rnn_backward_step, r->H, w, rows, dg, q);
}
