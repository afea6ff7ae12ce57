/* The Elman RNN's per-step pointwise work on the CPU, forward and backward (see lstm.c
 * for how the fused backend calls them between its products).
 *
 *   h' = phi(a + LN((h . m) W_hh^T)),  phi = tanh or ReLU
 */
#include "common.h"

void rnn_forward_step(const run_t *r, int64_t t, const real *prod, int64_t rows) {
    const int64_t B = r->B, H = r->H;
    real *a = r->acts + t * B * H;
    const real *hp = t ? r->hbuf + (t - 1) * B * H : r->h0;
    real *h = r->hbuf + t * B * H;
    const int settle_h = SETTLE_H(r);
    PARALLEL_ROWS(r)
    for (int64_t b = 0; b < B; b++) {
        if (b >= rows) {
            pass_forward(r, t, b, H, h, hp, NULL, NULL, NULL);
            continue;
        }
        real *restrict ab = a + b * H;
        add_product(r, t, b, H, ab, prod + b * H);
        if (r->relu) {
#pragma omp simd
            for (int64_t j = 0; j < H; j++) ab[j] = ab[j] > 0 ? ab[j] : 0;
        } else {
#pragma omp simd
            for (int64_t j = 0; j < H; j++) ab[j] = tanh_r(ab[j]);
        }
        real *hb = h + b * H;
        if (settle_h) { /* h = h' + w (h_{t-1} - h'), h' staying in acts */
            real ws;
            const real *w = weight_row(r->wh, r->wh_cols, r->wh_s, t, B, b, &ws);
            settle_row(hb, ab, hp + b * H, w, ws, H);
        }
        mask_state(r, b, hb);
    }
}

void rnn_backward_step(const run_t *r, int64_t t, int64_t first, real *q, int64_t rows) {
    const int64_t B = r->B, H = r->H;
    const real *a = r->acts + t * B * H;
    real *d = r->dgates + t * B * H;
    const int settle_h = SETTLE_H(r);
    PARALLEL_ROWS(r)
    for (int64_t b = 0; b < B; b++) {
        if (b >= rows) {
            pass_backward(r, t, b, first, q + b * H, H);
            continue;
        }
        const real *restrict ab = a + b * H;
        real *restrict db = d + b * H, *restrict g = q + b * H;
        carried_gradient(r, t, b, first, settle_h, g);
        if (settle_h) split_gradient(r, t, b, g);
        if (r->relu) {
#pragma omp simd
            for (int64_t j = 0; j < H; j++) db[j] = ab[j] > 0 ? g[j] : 0;
        } else {
#pragma omp simd
            for (int64_t j = 0; j < H; j++) db[j] = g[j] * (1 - ab[j] * ab[j]);
        }
        product_gradient(r, t, b, H, db);
    }
}
