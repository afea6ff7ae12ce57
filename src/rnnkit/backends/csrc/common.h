/* What every cell's kernels share: the real type, exp and tanh, layer norm, settling.
 *
 * G is the gates' width: 4H (LSTM), 3H (GRU), H (RNN). Every array is row-major and
 * contiguous; a per-step buffer whose step stride is 0 is one scratch block reused at
 * every step (nothing is kept for backward). Rows of the batch are independent: with
 * OpenMP (the runtime torch itself loaded) they are shared between torch's threads.
 * Compiled twice, with REAL float and double. The float build computes exp and tanh
 * with polynomial approximations (Cephes' expf and tanhf, a few ulp) that the compiler
 * vectorises; the double build calls libm. NaN propagates through both.
 */
#ifndef RNNKIT_COMMON_H
#define RNNKIT_COMMON_H
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Below this many state values a step is too short to share between threads: over
 * thresholds of 256-4096 and batches of 2-16 rows at H = 128-512 (one layer, T = 50),
 * sharing from 2048 on was 15-25% faster than from 4096 at B H = 2048, and below 2048
 * it gained nothing or lost up to 28%. With the recurrent layer norm a row's pass does
 * several times the work, and sharing from 1024 on paid (two layers, T = 100: the LSTM
 * 9% faster at B = 8, H = 128, 2.4% at B = 4, H = 256, the GRU 4.5% and 2%), but not
 * over two rows (B = 2, H = 512: 1-4% slower). */
#define PARALLEL_MIN 2048
#define PARALLEL_MIN_ROWS 4

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

/* One run of one layer and direction, for every cell (a cell ignores what it does not
 * use); the layout is mirrored by a ctypes Structure in _cpu_kernels.py. */
typedef struct {
    real *acts;          /* (T, B, G): x side + biases in; activations i, f, g, o out */
    real *pre;           /* (T, B, G) the recurrent product kept for LN_hh's backward */
    real *ln_hh;         /* (G) its gain, or NULL */
    real *rmean, *rrstd; /* (T, B) its statistics */
    real *h0, *c0;       /* (B, H) */
    real *hbuf, *cbuf;   /* (T, B, H) the settled states */
    real *cnew;          /* (T, B, H) c' before settling, or NULL when c' is the state */
    real *tc;            /* (T, B, H) tanh(LN_c(c')) */
    real *ln_c_w, *ln_c_b, *cmean, *crstd; /* cell norm: gain, bias (or NULL); (T, B) */
    real *wh, *wc;       /* settle weights (T, B, cols), or NULL (then the scalar) */
    real *drop, *hm;     /* recurrent dropout mask (B, H) and h_t . m (B, H), or NULL */
    real *dy;            /* (T, B, H) gradient from the outputs, or NULL */
    real *dgates;        /* (T, B, G) dL/d(gate pre-activations) */
    real *dtc;           /* (T, B, H) dL/d(LN_c output), kept for the cell norm's gain */
                         /* (a scratch (B, H), step stride 0, without the cell norm) */
    real *dpre;          /* (T, B, G) dL/d pre (through LN_hh), or NULL */
    real *b_hh;          /* GRU: (3H) the recurrent bias, apart from the input side's */
    real *hn;            /* GRU: (T, B, H) h_n, the n share of the recurrent product */
    real *dn;            /* GRU: (T, B, H) dL/d(input-side n pre-activation) */
    real *gp, *dc;       /* (B, H): the settle share to h_{t-1}, the carried dL/dc */
    real *xpre;          /* LSTM: (T, B, G) x W_ih^T, normalised step by step, or NULL */
    real *ln_ih, *bias;  /* (G) the input norm's gain; the input share's bias, or NULL */
    real *xmean, *xrstd; /* (T, B) the input norm's statistics */
    real *dxpre;         /* (T, B, G) dL/d(x W_ih^T) through the input norm */
    real *sum_b, *sum_hh, *sum_ih; /* (B, G) or NULL: per row, summed over the steps, */
    real *sum_cw, *sum_cb; /* the gradients of the bias, the gains, the cell norm's (B, H) */
    int64_t T, B, H, wh_cols, wc_cols, st_cn, st_tc, st_pre, st_stat, st_dtc;
    int64_t st_d;        /* dgates' step stride: B G, or 0 for one scratch (B, G) */
    int64_t threads;     /* OpenMP threads over the batch rows (torch's own count) */
    int64_t relu;        /* RNN: 1 for ReLU, 0 for tanh */
    double wh_s, wc_s, eps;
} run_t;

/* What a step's pointwise pass will read and write, for the product before it to fetch
 * into cache while it computes (the product is bound by arithmetic, the pass by memory):
 * streams of one step's block of B rows, row_bytes each, the first `rows` of them, shared
 * among `team` threads as the pass shares them. */
#define PREFETCH_STREAMS 16
typedef struct {
    const char *base[PREFETCH_STREAMS];
    int64_t row_bytes[PREFETCH_STREAMS];
    int write[PREFETCH_STREAMS];
    int64_t n, rows, B, team;
} prefetch_t;

static inline void prefetch_add(prefetch_t *pf, const void *base, int64_t row_bytes, int write) {
    if (!base || pf->n == PREFETCH_STREAMS) return;
    pf->base[pf->n] = (const char *)base;
    pf->row_bytes[pf->n] = row_bytes;
    pf->write[pf->n++] = write;
}

/* The rows [*lo, *hi) of B that thread id of n takes in an OpenMP static schedule. */
static inline void static_share(int64_t B, int64_t n, int64_t id, int64_t *lo, int64_t *hi) {
    int64_t q = B / n, r = B % n;
    *lo = id * q + (id < r ? id : r);
    *hi = *lo + q + (id < r);
}

/* Sums over a row in vector registers (GCC's vector types: 64 bytes, split by the compiler
 * where the unit is narrower), four apart so that the additions do not wait on one
 * another. */
#define RVB 64
typedef real rvec __attribute__((vector_size(RVB)));
#define RVL (RVB / (int)sizeof(real))

static inline rvec rv_load(const real *p) {
    rvec v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline real rv_total(rvec v) {
    real s = 0;
    for (int k = 0; k < RVL; k++) s += v[k];
    return s;
}

/* mean and rstd = 1 / sqrt(var + eps) of one row of n. */
static inline void ln_stats(const real *restrict x, int64_t n, double eps, real *mean, real *rstd) {
    rvec a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    int64_t j = 0;
    for (; j + 4 * RVL <= n; j += 4 * RVL) {
        a0 += rv_load(x + j);
        a1 += rv_load(x + j + RVL);
        a2 += rv_load(x + j + 2 * RVL);
        a3 += rv_load(x + j + 3 * RVL);
    }
    for (; j + RVL <= n; j += RVL) a0 += rv_load(x + j);
    real s = rv_total((a0 + a1) + (a2 + a3));
    for (; j < n; j++) s += x[j];
    const real m = s / n;
    const rvec mv = (rvec){0} + m;
    a0 = a1 = a2 = a3 = (rvec){0};
    for (j = 0; j + 4 * RVL <= n; j += 4 * RVL) {
        rvec d0 = rv_load(x + j) - mv, d1 = rv_load(x + j + RVL) - mv,
             d2 = rv_load(x + j + 2 * RVL) - mv, d3 = rv_load(x + j + 3 * RVL) - mv;
        a0 += d0 * d0;
        a1 += d1 * d1;
        a2 += d2 * d2;
        a3 += d3 * d3;
    }
    for (; j + RVL <= n; j += RVL) {
        rvec d = rv_load(x + j) - mv;
        a0 += d * d;
    }
    real v = rv_total((a0 + a1) + (a2 + a3));
    for (; j < n; j++) v += (x[j] - m) * (x[j] - m);
    *mean = m;
    *rstd = (real)(1.0 / sqrt((double)v / n + eps));
}

/* out = dx of y = gain * xhat, xhat = (x - mean) rstd, given d = dL/dy, over one row;
 * and, where the pointers are not NULL, sum_gain += d xhat and sum_bias += d (the row's
 * share of the gain's and the bias's gradients). */
static inline void ln_backward_row(const real *restrict d, const real *restrict x,
                                   const real *restrict gain, int64_t n, real mean, real rstd,
                                   real *restrict out, real *restrict sum_gain,
                                   real *restrict sum_bias) {
    rvec a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0};
    const rvec mv = (rvec){0} + mean;
    int64_t j = 0;
    for (; j + 2 * RVL <= n; j += 2 * RVL) {
        rvec g0 = rv_load(d + j) * rv_load(gain + j),
             g1 = rv_load(d + j + RVL) * rv_load(gain + j + RVL);
        a0 += g0;
        a1 += g1;
        b0 += g0 * (rv_load(x + j) - mv);
        b1 += g1 * (rv_load(x + j + RVL) - mv);
    }
    real sa = rv_total(a0 + a1), sb = rv_total(b0 + b1);
    for (; j < n; j++) {
        real gd = d[j] * gain[j];
        sa += gd;
        sb += gd * (x[j] - mean);
    }
    real ma = sa / n, mb = sb * rstd / n;
    if (sum_gain) {
#pragma omp simd
        for (j = 0; j < n; j++) {
            real xhat = (x[j] - mean) * rstd;
            sum_gain[j] += d[j] * xhat;
            out[j] = rstd * (d[j] * gain[j] - ma - xhat * mb);
        }
    } else {
#pragma omp simd
        for (j = 0; j < n; j++) out[j] = rstd * (d[j] * gain[j] - ma - (x[j] - mean) * rstd * mb);
    }
    if (sum_bias) {
#pragma omp simd
        for (j = 0; j < n; j++) sum_bias[j] += d[j];
    }
}

/* The settle weight of row b at step t: a pointer to H values, or NULL and *ws. */
static inline const real *weight_row(const real *w, int64_t cols, double scalar, int64_t t, int64_t B,
                              int64_t b, real *ws) {
    *ws = (real)scalar;
    if (!w) return NULL;
    const real *row = w + (t * B + b) * cols;
    if (cols != 1) return row;
    *ws = row[0];
    return NULL;
}

/* out = new + w (prev - new): zoneout and the length mask (out may be new). */
static inline void settle_row(real *out, const real *nw, const real *restrict prev,
                       const real *restrict w, real ws, int64_t n) {
    if (w) {
#pragma omp simd
        for (int64_t j = 0; j < n; j++) out[j] = nw[j] + w[j] * (prev[j] - nw[j]);
    } else {
#pragma omp simd
        for (int64_t j = 0; j < n; j++) out[j] = nw[j] + ws * (prev[j] - nw[j]);
    }
}


/* q <- q m (the recurrent product's share, masked) + gp (the settle share) + dy_t:
 * dL/dh_t at step t of a backward loop; at its first step q is the final state's own. */
static inline void carried_gradient(const run_t *r, int64_t t, int64_t b, int first, int settle,
                                    real *restrict g) {
    const int64_t B = r->B, H = r->H;
    const real *restrict gp = r->gp + b * H;
    if (!first && r->drop) {
        const real *restrict m = r->drop + b * H;
#pragma omp simd
        for (int64_t j = 0; j < H; j++) g[j] *= m[j];
    }
    if (!first && settle) {
#pragma omp simd
        for (int64_t j = 0; j < H; j++) g[j] += gp[j];
    }
    if (r->dy) {
        const real *restrict dy = r->dy + (t * B + b) * H;
#pragma omp simd
        for (int64_t j = 0; j < H; j++) g[j] += dy[j];
    }
}

/* Split g between the new state (kept in g) and h_{t-1} (written to gp): g w to gp. */
static inline void split_gradient(const run_t *r, int64_t t, int64_t b, real *restrict g) {
    real ws;
    real *restrict gp = r->gp + b * r->H;
    const real *restrict w = weight_row(r->wh, r->wh_cols, r->wh_s, t, r->B, b, &ws);
    if (w) {
#pragma omp simd
        for (int64_t j = 0; j < r->H; j++) { gp[j] = g[j] * w[j]; g[j] -= gp[j]; }
    } else {
#pragma omp simd
        for (int64_t j = 0; j < r->H; j++) { gp[j] = g[j] * ws; g[j] -= gp[j]; }
    }
}

/* a += LN(p) (the product p kept for backward) or a += p, over one row of n gates. */
static inline void add_product(const run_t *r, int64_t t, int64_t b, int64_t n,
                               real *restrict a, const real *restrict p) {
    if (r->ln_hh) {
        const real *restrict gain = r->ln_hh;
        real m, s;
        ln_stats(p, n, r->eps, &m, &s);
        r->rmean[t * r->st_stat + b] = m;
        r->rrstd[t * r->st_stat + b] = s;
        real *kept = r->pre ? r->pre + t * r->st_pre + b * n : NULL;
        if (kept && kept != p) memcpy(kept, p, n * sizeof(real));
#pragma omp simd
        for (int64_t j = 0; j < n; j++) a[j] += gain[j] * (p[j] - m) * s;
    } else {
#pragma omp simd
        for (int64_t j = 0; j < n; j++) a[j] += p[j];
    }
}

/* dL/d(the product) through LN_hh, for the next backward product (when LN is on). */
static inline void product_gradient(const run_t *r, int64_t t, int64_t b, int64_t n,
                                    real *restrict d) {
    if (!r->dpre) return;
    ln_backward_row(d, r->pre + t * r->st_pre + b * n, r->ln_hh, n, r->rmean[t * r->st_stat + b],
                    r->rrstd[t * r->st_stat + b], r->dpre + (t * r->B + b) * n,
                    r->sum_hh ? r->sum_hh + b * n : NULL, NULL);
}

/* h_t m: the next product's left operand, under recurrent dropout. */
static inline void mask_state(const run_t *r, int64_t b, const real *restrict h) {
    if (!r->drop) return;
    real *restrict hm = r->hm + b * r->H;
    const real *restrict m = r->drop + b * r->H;
#pragma omp simd
    for (int64_t j = 0; j < r->H; j++) hm[j] = h[j] * m[j];
}

/* Zoneout and the length mask of h, in place: h = h' + w (h_{t-1} - h'). */
static inline void settle_state(const run_t *r, int64_t t, int64_t b, real *h, const real *hp) {
    real ws;
    const real *w = weight_row(r->wh, r->wh_cols, r->wh_s, t, r->B, b, &ws);
    settle_row(h, h, hp, w, ws, r->H);
}

/* A row past its sequence's end at step t, forward: the state passes through, and the
 * kept statistics and products get harmless values (their backward share is zero). */
static inline void pass_forward(const run_t *r, int64_t t, int64_t b, int64_t G, real *h,
                                const real *hp, real *c, const real *cp, real *cn) {
    const int64_t H = r->H;
    memcpy(h + b * H, hp + b * H, H * sizeof(real));
    if (c) memcpy(c + b * H, cp + b * H, H * sizeof(real));
    if (cn && cn != c) memcpy(cn + b * H, cp + b * H, H * sizeof(real));
    if (r->ln_hh) {
        r->rmean[t * r->st_stat + b] = 0;
        r->rrstd[t * r->st_stat + b] = 1;
        if (r->pre) memset(r->pre + t * r->st_pre + b * G, 0, G * sizeof(real));
    }
    /* what forward keeps of the row, so that a backward in torch, which reads every row
     * and multiplies these by a zero gradient, finds numbers there and not garbage */
    if (r->tc && r->st_tc) memset(r->tc + t * r->st_tc + b * H, 0, H * sizeof(real));
    if (r->hn && r->st_tc) memset(r->hn + t * r->st_tc + b * H, 0, H * sizeof(real));
    if (r->xpre) { /* the activations too */
        r->xmean[t * r->st_stat + b] = 0;
        r->xrstd[t * r->st_stat + b] = 1;
        memset(r->acts + (t * r->B + b) * G, 0, G * sizeof(real));
    }
    if (r->ln_c_w) {
        r->cmean[t * r->st_stat + b] = 0;
        r->crstd[t * r->st_stat + b] = 1;
    }
}

/* The same row backward: dL/dh passes to step t-1 whole, every gate gradient is zero. */
static inline void pass_backward(const run_t *r, int64_t t, int64_t b, int first, real *g,
                                 int64_t G) {
    const int64_t B = r->B, H = r->H;
    carried_gradient(r, t, b, first, 1, g);
    memcpy(r->gp + b * H, g, H * sizeof(real));
    memset(r->dgates + t * r->st_d + b * G, 0, G * sizeof(real));
    if (r->dpre) memset(r->dpre + (t * B + b) * G, 0, G * sizeof(real));
    if (r->dxpre) memset(r->dxpre + (t * B + b) * G, 0, G * sizeof(real));
    if (r->dtc) memset(r->dtc + t * r->st_dtc + b * H, 0, H * sizeof(real));
    if (r->dn) memset(r->dn + (t * B + b) * H, 0, H * sizeof(real));
}

#define SETTLE_H(r) ((r)->wh || (r)->wh_s != 0.0)
/* The threads of a step's pointwise pass (PARALLEL_ROWS): half the state values suffice
 * under the recurrent layer norm. */
#define ROW_TEAM(r)                                                                       \
    ((r)->threads > 1 && (r)->B >= PARALLEL_MIN_ROWS &&                                   \
             (r)->B * (r)->H >= (PARALLEL_MIN >> ((r)->ln_hh != NULL))                    \
         ? (r)->threads                                                                   \
         : 1)
#define PARALLEL_ROWS(r) _Pragma("omp parallel for num_threads(ROW_TEAM(r)) if (ROW_TEAM(r) > 1)")

#endif
