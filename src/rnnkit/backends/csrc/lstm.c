/* The LSTM's per-step pointwise work on the CPU, forward and backward, in one pass.
 *
 * The time loops (loop.c) call these after (forward) or before (backward) each step's
 * recurrent product (product.c):
 *
 *   forward, step t:   p = (h_{t-1} . m) W_hh^T
 *                      lstm_forward_step(t, p): a_t = LN_ih(x_t W_ih^T) + b where the input
 *                      norm is on (x_t W_ih^T in xpre), a_t += LN(p) (or p), the activations,
 *                      c', LN_c, tanh, h', zoneout/length settling, h_t . m for step t+1
 *   backward, step t:  lstm_backward_step(t, q): dh_t from q (the last product, or the
 *                      final state's gradient), the gate gradients dG_t, the carried dc,
 *                      LN backward, and each row's sums of the bias and norm gradients
 *                      q = dG_t W_hh  (dh_{t-1} before the mask)
 *
 * Gate order i, f, g, o (torch.nn's).
 */
#include "common.h"

/* out = gain (x - m) s + bias over a row of n, then tanh where squash, keeping m and
 * s = rstd in *mean and *rstd (each case a loop of its own: no load from a NULL bias). */
static inline __attribute__((always_inline)) void norm_row(
    const real *restrict x, int64_t n, double eps, const real *restrict gain,
    const real *restrict bias, real *mean, real *rstd, real *restrict out, const int squash) {
    real m, s;
    ln_stats(x, n, eps, &m, &s);
    *mean = m;
    *rstd = s;
    if (bias) {
#pragma omp simd
        for (int64_t j = 0; j < n; j++) {
            real v = gain[j] * (x[j] - m) * s + bias[j];
            out[j] = squash ? tanh_r(v) : v;
        }
    } else {
#pragma omp simd
        for (int64_t j = 0; j < n; j++) {
            real v = gain[j] * (x[j] - m) * s;
            out[j] = squash ? tanh_r(v) : v;
        }
    }
}

void lstm_forward_step(const run_t *r, int64_t t, const real *prod, int64_t rows) {
    const int64_t B = r->B, H = r->H, G = 4 * H;
    real *a = r->acts + t * B * G;
    const real *hp = t ? r->hbuf + (t - 1) * B * H : r->h0;
    const real *cp = t ? r->cbuf + (t - 1) * B * H : r->c0;
    real *cn = r->cnew ? r->cnew + t * r->st_cn : r->cbuf + t * B * H;
    real *tc = r->tc + t * r->st_tc;
    real *h = r->hbuf + t * B * H, *c = r->cbuf + t * B * H;
    const int settle_h = SETTLE_H(r);
    PARALLEL_ROWS(r)
    for (int64_t b = 0; b < B; b++) {
        if (b >= rows) { /* past its end: only a prefix of rows is still running */
            pass_forward(r, t, b, G, h, hp, c, cp, cn);
            continue;
        }
        real *restrict ab = a + b * G;
        if (r->xpre) /* a = LN_ih(x W_ih^T) + b */
            norm_row(r->xpre + (t * B + b) * G, G, r->eps, r->ln_ih, r->bias,
                     r->xmean + t * r->st_stat + b, r->xrstd + t * r->st_stat + b, ab, 0);
        if (prod) add_product(r, t, b, G, ab, prod + b * G);
        real *restrict gi = ab, *restrict gf = ab + H, *restrict gg = ab + 2 * H,
                       *restrict go = ab + 3 * H;
        real *restrict cnb = cn + b * H, *restrict tcb = tc + b * H;
        const real *restrict cpb = cp + b * H;
#pragma omp simd
        for (int64_t j = 0; j < H; j++) {
            gi[j] = sigm(gi[j]);
            gf[j] = sigm(gf[j]);
            gg[j] = tanh_r(gg[j]);
            go[j] = sigm(go[j]);
            cnb[j] = gf[j] * cpb[j] + gi[j] * gg[j];  /* c' = f c + i g */
        }
        if (r->ln_c_w) {
            norm_row(cnb, H, r->eps, r->ln_c_w, r->ln_c_b, r->cmean + t * r->st_stat + b,
                     r->crstd + t * r->st_stat + b, tcb, 1);
        } else {
#pragma omp simd
            for (int64_t j = 0; j < H; j++) tcb[j] = tanh_r(cnb[j]);
        }
        real *restrict hb = h + b * H;
#pragma omp simd
        for (int64_t j = 0; j < H; j++) hb[j] = go[j] * tcb[j];  /* h' = o tanh(LN_c(c')) */
        if (settle_h) settle_state(r, t, b, hb, hp + b * H);
        if (r->cnew) {
            real ws;
            const real *w = weight_row(r->wc, r->wc_cols, r->wc_s, t, B, b, &ws);
            settle_row(c + b * H, cnb, cpb, w, ws, H);
        }
        mask_state(r, b, hb);
    }
}

/* The gates i, f, g's gradients into db, and dc <- dL/dc_{t-1}, from dcs = dL/d(c'
 * through the norm) and the carried dc, with the settle weight w (or ws where NULL). */
static inline __attribute__((always_inline)) void cell_gradients(
    real *restrict db, real *restrict dc, const real *dcs, const real *restrict gi,
    const real *restrict gf, const real *restrict gg, const real *restrict cpb,
    const real *restrict w, real ws, int64_t H) {
#pragma omp simd
    for (int64_t j = 0; j < H; j++) {
        real wc = w ? w[j] : ws;
        real dcn = dcs[j] + dc[j] * (1 - wc);
        real i = gi[j], f = gf[j], gv = gg[j];
        db[j] = dcn * gv * i * (1 - i);
        db[H + j] = dcn * cpb[j] * f * (1 - f);
        db[2 * H + j] = dcn * i * (1 - gv * gv);
        dc[j] = dcn * f + dc[j] * wc;
    }
}

void lstm_backward_step(const run_t *r, int64_t t, int64_t first, real *q, int64_t rows) {
    const int64_t B = r->B, H = r->H, G = 4 * H;
    const real *a = r->acts + t * B * G;
    const real *cp = t ? r->cbuf + (t - 1) * B * H : r->c0;
    const real *tc = r->tc + t * r->st_tc;
    real *d = r->dgates + t * r->st_d, *dtc = r->dtc + t * r->st_dtc;
    const int settle_h = SETTLE_H(r), settle_c = r->wc || r->wc_s != 0.0;
    PARALLEL_ROWS(r)
    for (int64_t b = 0; b < B; b++) {
        if (b >= rows) {
            pass_backward(r, t, b, first, q + b * H, G);
            continue;
        }
        const real *restrict gi = a + b * G, *restrict gf = gi + H, *restrict gg = gi + 2 * H,
                             *restrict go = gi + 3 * H;
        const real *restrict tcb = tc + b * H, *restrict cpb = cp + b * H;
        real *restrict db = d + b * G, *restrict dtb = dtc + b * H;
        real *restrict g = q + b * H, *restrict dc = r->dc + b * H;
        /* 1) g = dL/dh_t, 2) split between h' (kept in g) and h_{t-1} (gp) */
        carried_gradient(r, t, b, first, settle_h, g);
        if (settle_h) split_gradient(r, t, b, g);
        /* 3) the output gate, and dL/d(LN_c output) */
#pragma omp simd
        for (int64_t j = 0; j < H; j++) {
            real o = go[j], tv = tcb[j];
            db[3 * H + j] = g[j] * tv * o * (1 - o);
            dtb[j] = g[j] * o * (1 - tv * tv);
        }
        /* 4) dL/dc' through the cell norm, parked in the forget slot; without the norm it
         * is dtb itself (read in place: a copy's narrow stores stalled the wide loads
         * that read it back, three quarters of this pass) */
        const real *dcs = dtb;
        if (r->ln_c_w) {
            dcs = db + H;
            const real *cnb = (r->cnew ? r->cnew + t * r->st_cn : r->cbuf + t * B * H) + b * H;
            ln_backward_row(dtb, cnb, r->ln_c_w, H, r->cmean[t * r->st_stat + b],
                            r->crstd[t * r->st_stat + b], db + H,
                            r->sum_cw ? r->sum_cw + b * H : NULL,
                            r->sum_cb ? r->sum_cb + b * H : NULL);
        }
        /* 5) the carried dc's share of c', the gates i, f, g, and dc for step t-1 */
        real ws = 0;
        const real *w = settle_c ? weight_row(r->wc, r->wc_cols, r->wc_s, t, B, b, &ws) : NULL;
        if (w) /* two calls, so that neither loop holds a load from a NULL w */
            cell_gradients(db, dc, dcs, gi, gf, gg, cpb, w, ws, H);
        else
            cell_gradients(db, dc, dcs, gi, gf, gg, cpb, NULL, ws, H);
        product_gradient(r, t, b, G, db);
        /* 6) the input norm's backward, and the bias's share (db itself) */
        real *restrict sb = r->sum_b ? r->sum_b + b * G : NULL;
        if (r->xpre) {
            ln_backward_row(db, r->xpre + (t * B + b) * G, r->ln_ih, G, r->xmean[t * r->st_stat + b],
                            r->xrstd[t * r->st_stat + b], r->dxpre + (t * B + b) * G,
                            r->sum_ih ? r->sum_ih + b * G : NULL, sb);
        } else if (sb) {
#pragma omp simd
            for (int64_t j = 0; j < G; j++) sb[j] += db[j];
        }
    }
}

/* What step t's passes touch beyond the last step's state, for the product before them
 * to fetch (product.c): forward, the input share, the settle weights and the step's
 * outputs; backward, the activations, the norms' inputs and the gradients written. */
void lstm_forward_plan(const run_t *r, int64_t t, prefetch_t *pf) {
    const int64_t B = r->B, H = r->H, G = 4 * H, R = sizeof(real);
    if (r->xpre) prefetch_add(pf, r->xpre + t * B * G, G * R, 0);
    prefetch_add(pf, r->acts + t * B * G, G * R, 1);
    if (r->wh && r->wh_cols > 1) prefetch_add(pf, r->wh + t * B * r->wh_cols, r->wh_cols * R, 0);
    if (r->wc && r->wc_cols > 1) prefetch_add(pf, r->wc + t * B * r->wc_cols, r->wc_cols * R, 0);
    prefetch_add(pf, r->hbuf + t * B * H, H * R, 1);
    prefetch_add(pf, r->cbuf + t * B * H, H * R, 1);
    if (r->cnew && r->st_cn) prefetch_add(pf, r->cnew + t * r->st_cn, H * R, 1);
    if (r->st_tc) prefetch_add(pf, r->tc + t * r->st_tc, H * R, 1);
}

void lstm_backward_plan(const run_t *r, int64_t t, prefetch_t *pf) {
    const int64_t B = r->B, H = r->H, G = 4 * H, R = sizeof(real);
    prefetch_add(pf, r->acts + t * B * G, G * R, 0);
    prefetch_add(pf, r->tc + t * r->st_tc, H * R, 0);
    if (t) prefetch_add(pf, r->cbuf + (t - 1) * B * H, H * R, 0);
    if (r->ln_c_w)
        prefetch_add(pf, r->cnew ? r->cnew + t * r->st_cn : r->cbuf + t * B * H, H * R, 0);
    if (r->dpre) {
        prefetch_add(pf, r->pre + t * r->st_pre, G * R, 0);
        prefetch_add(pf, r->dpre + t * B * G, G * R, 1);
    }
    if (r->xpre) {
        prefetch_add(pf, r->xpre + t * B * G, G * R, 0);
        prefetch_add(pf, r->dxpre + t * B * G, G * R, 1);
    }
    if (r->st_d) prefetch_add(pf, r->dgates + t * r->st_d, G * R, 1);
    if (r->wh && r->wh_cols > 1) prefetch_add(pf, r->wh + t * B * r->wh_cols, r->wh_cols * R, 0);
    if (r->wc && r->wc_cols > 1) prefetch_add(pf, r->wc + t * B * r->wc_cols, r->wc_cols * R, 0);
    if (r->dy) prefetch_add(pf, r->dy + t * B * H, H * R, 0);
}

/* The activations as the kernels compute them, for tests: kind 0 sigmoid, 1 tanh. */
void rnnkit_activation(real *x, int64_t n, int64_t kind) {
    if (kind == 0) {
#pragma omp simd
        for (int64_t j = 0; j < n; j++) x[j] = sigm(x[j]);
    } else {
#pragma omp simd
        for (int64_t j = 0; j < n; j++) x[j] = tanh_r(x[j]);
    }
}

/* sizeof(run_t): checked against the ctypes mirror before any kernel runs. */
int64_t rnnkit_run_size(void) { return (int64_t)sizeof(run_t); }
