/* The LSTM's per-step pointwise work on the CPU, forward and backward, in one pass.
 *
 * The fused backend (fused.py, _fused_lstm.py) calls these between its matrix products,
 * which stay with torch:
 *
 *   forward, step t:   [torch] p = (h_{t-1} . m) W_hh^T
 *                      lstm_forward_step(t, p): a_t += LN(p) (or p), the four activations,
 *                      c', LN_c, tanh, h', zoneout/length settling, h_t . m for step t+1
 *   backward, step t:  lstm_backward_step(t, q): dh_t from q (the last product, or the
 *                      final state's gradient), the gate gradients dG_t, the carried dc,
 *                      LN backward
 *                      [torch] q = dG_t W_hh  (dh_{t-1} before the mask)
 *
 * Gate order i, f, g, o (torch.nn's). Every array is row-major and contiguous; a
 * per-step buffer whose step stride is 0 is one scratch row block reused at every step
 * (nothing is kept for backward). Rows of the batch are independent: with OpenMP
 * (the runtime torch itself loaded) they are shared between torch's threads.
 * Compiled twice, with REAL float and double. The
 * float build computes exp and tanh with polynomial approximations (Cephes' expf and
 * tanhf, a few ulp) that the compiler vectorises; the double build calls libm.
 * NaN propagates through both.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Below this many state values a step is too short to share between threads. */
#define PARALLEL_MIN 4096

#ifdef RNNKIT_DOUBLE
typedef double real;
static inline real sigm(real x) { return 1.0 / (1.0 + exp(-x)); }
static inline real tanh_r(real x) { return tanh(x); }
#else
typedef float real;

static inline float exp_f(float x) {
    x = x > 88.3762626647949f ? 88.3762626647949f : x;  /* a NaN fails both tests */
    x = x < -87.3365447504f ? -87.3365447504f : x;
    float n = floorf(x * 1.44269504088896341f + 0.5f);  /* x = n ln2 + r */
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;  /* 2^n */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float sigm(float x) { return 1.0f / (1.0f + exp_f(-x)); }

static inline float tanh_r(float x) {
    float ax = fabsf(x), z = x * x;
    float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z
                    + 1.33314422036e-1f) * z - 3.33332819422e-1f) * z * x + x;
    float big = copysignf(1.0f - 2.0f / (exp_f(2.0f * ax) + 1.0f), x);
    return ax < 0.625f ? small : big;
}
#endif

/* One run of one layer and direction; the layout is mirrored by a ctypes Structure. */
typedef struct {
    real *acts;          /* (T, B, 4H): x side + biases in; activations i, f, g, o out */
    real *pre;           /* (T, B, 4H) the recurrent product kept for LN_hh's backward */
    real *ln_hh;         /* (4H) its gain, or NULL */
    real *rmean, *rrstd; /* (T, B) its statistics */
    real *h0, *c0;       /* (B, H) */
    real *hbuf, *cbuf;   /* (T, B, H) the settled states */
    real *cnew;          /* (T, B, H) c' before settling, or NULL when c' is the state */
    real *tc;            /* (T, B, H) tanh(LN_c(c')) */
    real *ln_c_w, *ln_c_b, *cmean, *crstd; /* cell norm: gain, bias (or NULL); (T, B) */
    real *wh, *wc;       /* settle weights (T, B, cols), or NULL (then the scalar) */
    real *drop, *hm;     /* recurrent dropout mask (B, H) and h_t . m (B, H), or NULL */
    real *dy;            /* (T, B, H) gradient from the outputs, or NULL */
    real *dgates;        /* (T, B, 4H) dL/d(gate pre-activations) */
    real *dtc;           /* (T, B, H) dL/d(LN_c output), kept for the cell norm's gain */
    real *dpre;          /* (T, B, 4H) dL/d pre (through LN_hh), or NULL */
    real *gp, *dc;       /* (B, H): the settle share to h_{t-1}, the carried dL/dc */
    int64_t T, B, H, wh_cols, wc_cols, st_cn, st_tc, st_pre, st_stat;
    int64_t threads;     /* OpenMP threads over the batch rows (torch's own count) */
    double wh_s, wc_s, eps;
} lstm_run;

/* y = gain (x - mean) rstd over one row of n, into the statistics at *mean, *rstd. */
static void ln_stats(const real *x, int64_t n, double eps, real *mean, real *rstd) {
    double s = 0.0, v = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < n; j++) s += x[j];
    double m = s / n;
#pragma omp simd reduction(+ : v)
    for (int64_t j = 0; j < n; j++) v += (x[j] - m) * (x[j] - m);
    *mean = (real)m;
    *rstd = (real)(1.0 / sqrt(v / n + eps));
}

/* dx of y = gain * xhat, xhat = (x - mean) rstd, over one row: in place over dy. */
static void ln_backward_row(real *restrict d, const real *restrict x, const real *restrict gain,
                            int64_t n, real mean, real rstd, real *restrict out) {
    double a = 0.0, b = 0.0;
#pragma omp simd reduction(+ : a, b)
    for (int64_t j = 0; j < n; j++) {
        real gd = d[j] * gain[j];
        a += gd;
        b += gd * (x[j] - mean) * rstd;
    }
    real ma = (real)(a / n), mb = (real)(b / n);
#pragma omp simd
    for (int64_t j = 0; j < n; j++)
        out[j] = rstd * (d[j] * gain[j] - ma - (x[j] - mean) * rstd * mb);
}

/* The settle weight of row b at step t: a pointer to H values, or NULL and *ws. */
static const real *weight_row(const real *w, int64_t cols, double scalar, int64_t t, int64_t B,
                              int64_t b, real *ws) {
    *ws = (real)scalar;
    if (!w) return NULL;
    const real *row = w + (t * B + b) * cols;
    if (cols != 1) return row;
    *ws = row[0];
    return NULL;
}

/* out = new + w (prev - new): zoneout and the length mask (out may be new). */
static void settle_row(real *out, const real *nw, const real *restrict prev,
                       const real *restrict w, real ws, int64_t n) {
    if (w) {
#pragma omp simd
        for (int64_t j = 0; j < n; j++) out[j] = nw[j] + w[j] * (prev[j] - nw[j]);
    } else {
#pragma omp simd
        for (int64_t j = 0; j < n; j++) out[j] = nw[j] + ws * (prev[j] - nw[j]);
    }
}

void lstm_forward_step(const lstm_run *r, int64_t t, const real *prod) {
    const int64_t B = r->B, H = r->H, G = 4 * H;
    real *a = r->acts + t * B * G;
    const real *hp = t ? r->hbuf + (t - 1) * B * H : r->h0;
    const real *cp = t ? r->cbuf + (t - 1) * B * H : r->c0;
    real *cn = r->cnew ? r->cnew + t * r->st_cn : r->cbuf + t * B * H;
    real *tc = r->tc + t * r->st_tc;
    real *h = r->hbuf + t * B * H, *c = r->cbuf + t * B * H;
    const int settle_h = r->wh || r->wh_s != 0.0;
#pragma omp parallel for num_threads(r->threads) if (r->threads > 1 && B * H >= PARALLEL_MIN)
    for (int64_t b = 0; b < B; b++) {
        real *restrict ab = a + b * G;
        const real *restrict pb = prod ? prod + b * G : NULL;
        if (pb && r->ln_hh) { /* a += LN(product), the product kept for backward */
            const real *restrict gain = r->ln_hh;
            real m, s;
            ln_stats(pb, G, r->eps, &m, &s);
            r->rmean[t * r->st_stat + b] = m;
            r->rrstd[t * r->st_stat + b] = s;
            real *kept = r->pre ? r->pre + t * r->st_pre + b * G : NULL;
            if (kept && kept != pb) memcpy(kept, pb, G * sizeof(real));
#pragma omp simd
            for (int64_t j = 0; j < G; j++) ab[j] += gain[j] * (pb[j] - m) * s;
        } else if (pb) {
#pragma omp simd
            for (int64_t j = 0; j < G; j++) ab[j] += pb[j];
        }
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
            const real *restrict gain = r->ln_c_w, *restrict bias = r->ln_c_b;
            real m, s;
            ln_stats(cnb, H, r->eps, &m, &s);
            r->cmean[t * r->st_stat + b] = m;
            r->crstd[t * r->st_stat + b] = s;
            if (bias) {
#pragma omp simd
                for (int64_t j = 0; j < H; j++) tcb[j] = tanh_r(gain[j] * (cnb[j] - m) * s + bias[j]);
            } else {
#pragma omp simd
                for (int64_t j = 0; j < H; j++) tcb[j] = tanh_r(gain[j] * (cnb[j] - m) * s);
            }
        } else {
#pragma omp simd
            for (int64_t j = 0; j < H; j++) tcb[j] = tanh_r(cnb[j]);
        }
        real *restrict hb = h + b * H;
#pragma omp simd
        for (int64_t j = 0; j < H; j++) hb[j] = go[j] * tcb[j];  /* h' = o tanh(LN_c(c')) */
        real ws;
        const real *w;
        if (settle_h) {
            w = weight_row(r->wh, r->wh_cols, r->wh_s, t, B, b, &ws);
            settle_row(hb, hb, hp + b * H, w, ws, H);
        }
        if (r->cnew) {
            w = weight_row(r->wc, r->wc_cols, r->wc_s, t, B, b, &ws);
            settle_row(c + b * H, cnb, cpb, w, ws, H);
        }
        if (r->drop) {
            real *restrict hm = r->hm + b * H;
            const real *restrict m = r->drop + b * H;
#pragma omp simd
            for (int64_t j = 0; j < H; j++) hm[j] = hb[j] * m[j];
        }
    }
}

void lstm_backward_step(const lstm_run *r, int64_t t, int64_t first, real *q) {
    const int64_t B = r->B, H = r->H, G = 4 * H;
    const real *a = r->acts + t * B * G;
    const real *cp = t ? r->cbuf + (t - 1) * B * H : r->c0;
    const real *tc = r->tc + t * r->st_tc;
    real *d = r->dgates + t * B * G, *dtc = r->dtc + t * B * H;
    const int settle_h = r->wh || r->wh_s != 0.0, settle_c = r->wc || r->wc_s != 0.0;
#pragma omp parallel for num_threads(r->threads) if (r->threads > 1 && B * H >= PARALLEL_MIN)
    for (int64_t b = 0; b < B; b++) {
        const real *restrict gi = a + b * G, *restrict gf = gi + H, *restrict gg = gi + 2 * H,
                             *restrict go = gi + 3 * H;
        const real *restrict tcb = tc + b * H, *restrict cpb = cp + b * H;
        real *restrict db = d + b * G, *restrict dtb = dtc + b * H;
        real *restrict g = q + b * H, *restrict gp = r->gp + b * H, *restrict dc = r->dc + b * H;
        /* 1) g = dL/dh_t: the last product (masked), the settle share, the output's */
        if (!first && r->drop) {
            const real *restrict m = r->drop + b * H;
#pragma omp simd
            for (int64_t j = 0; j < H; j++) g[j] *= m[j];
        }
        if (!first && settle_h) {
#pragma omp simd
            for (int64_t j = 0; j < H; j++) g[j] += gp[j];
        }
        if (r->dy) {
            const real *restrict dy = r->dy + (t * B + b) * H;
#pragma omp simd
            for (int64_t j = 0; j < H; j++) g[j] += dy[j];
        }
        /* 2) split g between h' (kept in g) and h_{t-1} (gp) */
        if (settle_h) {
            real ws;
            const real *restrict w = weight_row(r->wh, r->wh_cols, r->wh_s, t, B, b, &ws);
            if (w) {
#pragma omp simd
                for (int64_t j = 0; j < H; j++) { gp[j] = g[j] * w[j]; g[j] -= gp[j]; }
            } else {
#pragma omp simd
                for (int64_t j = 0; j < H; j++) { gp[j] = g[j] * ws; g[j] -= gp[j]; }
            }
        }
        /* 3) the output gate, and dL/d(LN_c output) */
#pragma omp simd
        for (int64_t j = 0; j < H; j++) {
            real o = go[j], tv = tcb[j];
            db[3 * H + j] = g[j] * tv * o * (1 - o);
            dtb[j] = g[j] * o * (1 - tv * tv);
        }
        /* 4) dL/dc' (through the cell norm), parked in the forget slot */
        if (r->ln_c_w) {
            const real *cnb = (r->cnew ? r->cnew + t * r->st_cn : r->cbuf + t * B * H) + b * H;
            ln_backward_row(dtb, cnb, r->ln_c_w, H, r->cmean[t * r->st_stat + b],
                            r->crstd[t * r->st_stat + b], db + H);
        } else {
            memcpy(db + H, dtb, H * sizeof(real));
        }
        /* 5) the carried dc's share of c', the gates i, f, g, and dc for step t-1 */
        real ws = 0;
        const real *restrict w = settle_c ? weight_row(r->wc, r->wc_cols, r->wc_s, t, B, b, &ws)
                                          : NULL;
#pragma omp simd
        for (int64_t j = 0; j < H; j++) {
            real wc = w ? w[j] : ws;
            real dcn = db[H + j] + dc[j] * (1 - wc);
            real i = gi[j], f = gf[j], gv = gg[j];
            db[j] = dcn * gv * i * (1 - i);
            db[H + j] = dcn * cpb[j] * f * (1 - f);
            db[2 * H + j] = dcn * i * (1 - gv * gv);
            dc[j] = dcn * f + dc[j] * wc;
        }
        if (r->dpre) {
            const real *pb = r->pre + t * r->st_pre + b * G;
            ln_backward_row(db, pb, r->ln_hh, G, r->rmean[t * r->st_stat + b],
                            r->rrstd[t * r->st_stat + b], r->dpre + t * B * G + b * G);
        }
    }
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
