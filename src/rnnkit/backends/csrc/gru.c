/* The GRU's per-step pointwise work on the CPU, forward and backward (see lstm.c for how
 * the fused backend calls them between its products).
 *
 * Gate order r, z, n (torch.nn's). The recurrent share p = LN((h . m) W_hh^T) + b_hh
 * stays apart from the input share a (which holds b_ih): its n part h_n is multiplied
 * by r, and is kept for backward.
 *
 *   r = s(a_r + p_r), z = s(a_z + p_z), n = tanh(a_n + r h_n), h' = (1 - z) n + z h
 */
#include "common.h"

/* a[0:2H] += LN(p) + b over r and z; hn = LN(p) + b over n (LN: gain (p - m) s, or p). */
static inline __attribute__((always_inline)) void recurrent_share(
    real *restrict a, real *restrict hn, const real *restrict p, const real *restrict gain,
    const real *restrict bias, real m, real s, int64_t H) {
#pragma omp simd
    for (int64_t j = 0; j < 2 * H; j++)
        a[j] += (gain ? gain[j] * (p[j] - m) * s : p[j]) + (bias ? bias[j] : 0);
#pragma omp simd
    for (int64_t j = 2 * H; j < 3 * H; j++)
        hn[j - 2 * H] = (gain ? gain[j] * (p[j] - m) * s : p[j]) + (bias ? bias[j] : 0);
}

void gru_forward_step(const run_t *r, int64_t t, const real *prod, int64_t rows) {
    const int64_t B = r->B, H = r->H, G = 3 * H;
    real *a = r->acts + t * B * G;
    const real *hp = t ? r->hbuf + (t - 1) * B * H : r->h0;
    real *h = r->hbuf + t * B * H, *hn = r->hn + t * r->st_tc;
    const int settle_h = SETTLE_H(r);
    PARALLEL_ROWS(r)
    for (int64_t b = 0; b < B; b++) {
        if (b >= rows) {
            pass_forward(r, t, b, G, h, hp, NULL, NULL, NULL);
            continue;
        }
        real *restrict ab = a + b * G, *restrict hnb = hn + b * H;
        const real *restrict p = prod + b * G, *restrict bias = r->b_hh;
        real m = 0, s = 1;
        if (r->ln_hh) { /* the product kept, its statistics for backward */
            ln_stats(p, G, r->eps, &m, &s);
            r->rmean[t * r->st_stat + b] = m;
            r->rrstd[t * r->st_stat + b] = s;
            real *kept = r->pre ? r->pre + t * r->st_pre + b * G : NULL;
            if (kept && kept != p) memcpy(kept, p, G * sizeof(real));
        }
        const real *gain = r->ln_hh;
        /* r and z into the input share, n kept apart as h_n; each case a call of its own,
         * so that no loop holds a load from a NULL gain or bias */
        if (gain && bias) recurrent_share(ab, hnb, p, gain, bias, m, s, H);
        else if (gain) recurrent_share(ab, hnb, p, gain, NULL, m, s, H);
        else if (bias) recurrent_share(ab, hnb, p, NULL, bias, m, s, H);
        else recurrent_share(ab, hnb, p, NULL, NULL, m, s, H);
        real *restrict gr = ab, *restrict gz = ab + H, *restrict gn = ab + 2 * H;
        real *restrict hb = h + b * H;
        const real *restrict hpb = hp + b * H;
#pragma omp simd
        for (int64_t j = 0; j < H; j++) {
            gr[j] = sigm(gr[j]);
            gz[j] = sigm(gz[j]);
            gn[j] = tanh_r(gn[j] + gr[j] * hnb[j]);
            hb[j] = gn[j] + gz[j] * (hpb[j] - gn[j]);
        }
        if (settle_h) settle_state(r, t, b, hb, hpb);
        mask_state(r, b, hb);
    }
}

/* dL/d(recurrent share) into dgates (its n slot: dL/dh_n), dL/d(input n) into dn, and
 * the direct share to h_{t-1} (g z, plus zoneout's) into gp. */
void gru_backward_step(const run_t *r, int64_t t, int64_t first, real *q, int64_t rows) {
    const int64_t B = r->B, H = r->H, G = 3 * H;
    const real *a = r->acts + t * B * G;
    const real *hp = t ? r->hbuf + (t - 1) * B * H : r->h0;
    const real *hn = r->hn + t * B * H;
    real *d = r->dgates + t * B * G, *dn = r->dn + t * B * H;
    const int settle_h = SETTLE_H(r);
    PARALLEL_ROWS(r)
    for (int64_t b = 0; b < B; b++) {
        if (b >= rows) {
            pass_backward(r, t, b, first, q + b * H, G);
            continue;
        }
        const real *restrict gr = a + b * G, *restrict gz = gr + H, *restrict gn = gr + 2 * H;
        const real *restrict hnb = hn + b * H, *restrict hpb = hp + b * H;
        real *restrict db = d + b * G, *restrict dnb = dn + b * H;
        real *restrict g = q + b * H, *restrict gp = r->gp + b * H;
        carried_gradient(r, t, b, first, 1, g);  /* gp always carries g z */
        if (settle_h) split_gradient(r, t, b, g);
        else memset(gp, 0, H * sizeof(real));
#pragma omp simd
        for (int64_t j = 0; j < H; j++) {
            real rv = gr[j], z = gz[j], n = gn[j];
            real dnv = g[j] * (1 - z) * (1 - n * n);
            db[j] = dnv * hnb[j] * rv * (1 - rv);
            db[H + j] = g[j] * (hpb[j] - n) * z * (1 - z);
            db[2 * H + j] = dnv * rv;
            dnb[j] = dnv;
            gp[j] += g[j] * z;
        }
        product_gradient(r, t, b, G, db);
    }
}
