/* The fused backend's time loops on the CPU, with the recurrent product in C.
 *
 *   forward, step t:   p = (h_{t-1} . m) W_hh^T            (rnnkit_product_fetching, product.c)
 *                      <cell>_forward_step(t, p)            (the pointwise work)
 *   backward, step t:  <cell>_backward_step(t, q)           (dG_t, and dL/dpre_t under LN_hh)
 *                      q = dG_t W_hh                        (dh_{t-1} before the mask)
 *
 * One call runs every step of one layer and direction, so a step costs no Python and no
 * dispatch, only the product and the kernel. W_hh is packed once per call (rnnkit_pack),
 * but for a call of a few steps (generation), which reads it as it is.
 */
#include "common.h"

void rnnkit_product_fetching(const real *A, int64_t lda, int64_t M, int64_t K,
                             const real *packed, int64_t N, real *C, int64_t ldc,
                             int64_t threads, const prefetch_t *pf, int cold_c);
void rnnkit_product_rows(const real *A, int64_t lda, int64_t M, int64_t K, const real *W,
                         int64_t N, real *C, int64_t ldc, int64_t threads);

typedef void (*forward_step_t)(const run_t *, int64_t, const real *, int64_t);
typedef void (*backward_step_t)(const run_t *, int64_t, int64_t, real *, int64_t);
/* What step t's pointwise pass touches, forward or backward (NULL: nothing fetched). */
typedef void (*plan_t)(const run_t *, int64_t, prefetch_t *);

/* pf for step t of a pass over `rows` rows (empty where there is no plan or step). */
static const prefetch_t *planned(const run_t *r, plan_t plan, int64_t t, int64_t rows,
                                 prefetch_t *pf) {
    pf->n = 0;
    pf->rows = rows;
    pf->B = r->B;
    pf->team = ROW_TEAM(r);
    if (plan && t >= 0) plan(r, t, pf);
    return pf;
}

/* Every step of a forward: rows[t] rows still running at step t (a prefix of the batch);
 * w_hh packed transposed (K = H, N = G), or as it is, (G, H), when raw (a short call);
 * p a (B, G) scratch for the product, unless the layer norm keeps it for backward
 * (r->pre), where the product is written in place. */
static void forward_loop(const run_t *r, forward_step_t step, plan_t plan, int64_t G,
                         const real *w_hh, int64_t raw, const int64_t *rows, real *p) {
    const int64_t B = r->B, H = r->H;
    prefetch_t pf;
    for (int64_t t = 0; t < r->T; t++) {
        const real *left = r->hm ? r->hm : t ? r->hbuf + (t - 1) * B * H : r->h0;
        const int kept = r->pre && r->st_pre; /* the product is written where it is kept */
        real *out = kept ? r->pre + t * r->st_pre : p;
        if (raw)
            rnnkit_product_rows(left, H, rows[t], H, w_hh, G, out, G, r->threads);
        else
            rnnkit_product_fetching(left, H, rows[t], H, w_hh, G, out, G, r->threads,
                                    planned(r, plan, t, rows[t], &pf), kept);
        step(r, t, out, rows[t]);
    }
}

/* Every step of a backward, last to first: q (B, H) holds the final state's gradient on
 * entry and dL/dh_0 before its dropout mask on return; dg (T, B, G) is what multiplies
 * W_hh (dG, or dL/dpre under the layer norm); w_hh packed as is (K = G, N = H). */
static void backward_loop(const run_t *r, backward_step_t step, plan_t plan, int64_t G,
                          const real *w_hh, const int64_t *rows, const real *dg, real *q) {
    const int64_t B = r->B, H = r->H;
    prefetch_t pf;
    for (int64_t t = r->T - 1; t >= 0; t--) {
        const int64_t n = rows[t];
        step(r, t, t == r->T - 1, q, n);
        /* fetching for step t-1, which runs next */
        rnnkit_product_fetching(dg + t * B * G, G, n, G, w_hh, H, q, H, r->threads,
                                planned(r, plan, t - 1, t ? rows[t - 1] : 0, &pf), 0);
        if (n < B) memset(q + n * H, 0, (B - n) * H * sizeof(real));
    }
}

void lstm_forward_step(const run_t *, int64_t, const real *, int64_t);
void lstm_backward_step(const run_t *, int64_t, int64_t, real *, int64_t);
void lstm_forward_plan(const run_t *, int64_t, prefetch_t *);
void lstm_backward_plan(const run_t *, int64_t, prefetch_t *);
void gru_forward_step(const run_t *, int64_t, const real *, int64_t);
void gru_backward_step(const run_t *, int64_t, int64_t, real *, int64_t);
void rnn_forward_step(const run_t *, int64_t, const real *, int64_t);
void rnn_backward_step(const run_t *, int64_t, int64_t, real *, int64_t);

void lstm_forward(const run_t *r, const real *w, int64_t raw, const int64_t *rows, real *p) {
    forward_loop(r, lstm_forward_step, lstm_forward_plan, 4 * r->H, w, raw, rows, p);
}
void lstm_backward(const run_t *r, const real *w, const int64_t *rows, const real *dg, real *q) {
    backward_loop(r, lstm_backward_step, lstm_backward_plan, 4 * r->H, w, rows, dg, q);
}
void gru_forward(const run_t *r, const real *w, int64_t raw, const int64_t *rows, real *p) {
    forward_loop(r, gru_forward_step, NULL, 3 * r->H, w, raw, rows, p);
}
void gru_backward(const run_t *r, const real *w, const int64_t *rows, const real *dg, real *q) {
    backward_loop(r, gru_backward_step, NULL, 3 * r->H, w, rows, dg, q);
}
void rnn_forward(const run_t *r, const real *w, int64_t raw, const int64_t *rows, real *p) {
    forward_loop(r, rnn_forward_step, NULL, r->H, w, raw, rows, p);
}
void rnn_backward(const run_t *r, const real *w, const int64_t *rows, const real *dg, real *q) {
    backward_loop(r, rnn_backward_step, NULL, r->H, w, rows, dg, q);
}
