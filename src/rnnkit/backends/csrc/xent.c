/* Softmax cross-entropy over the rows of a logits matrix (N, V): a language model's
 * output layer, where V is the vocabulary and most of a training step's memory traffic.
 *
 * Forward, per row n with target t_n: lse_n = log sum_j exp(x_nj), loss_n = lse_n - x_nt.
 * Backward: dx_nj = s_n (exp(x_nj - lse_n) - [j = t_n]), s_n the row's incoming gradient.
 * Rows whose target is `ignore` have loss 0 and gradient 0. Each row is read twice
 * (its maximum, then the sum) while it sits in cache, and the gradient is written once:
 * torch's log_softmax + nll_loss and their backward make six passes over (N, V) and a
 * zero fill. lse and loss are double, whatever the logits' type.
 *
 * The float build also takes bf16 logits (autocast), converting each row into a float
 * scratch row (`scratch`: one row of V floats per thread) and the gradient back with
 * round-to-nearest-even.
 */
#include "common.h"
#ifdef _OPENMP
#include <omp.h>
#define THREAD() omp_get_thread_num()
#else
#define THREAD() 0
#endif

#ifdef RNNKIT_DOUBLE
static inline real exp_r(real x) { return exp(x); }
#else
static inline real exp_r(real x) { return exp_f(x); }
#endif

#define XENT_PARALLEL _Pragma("omp parallel for num_threads(threads) if (threads > 1 && N > 1)")

/* lse of one row: maximum, then sum of exp(x - max) (in real lanes, summed in double). */
static double row_lse(const real *restrict x, int64_t V) {
    real m = x[0];
#pragma omp simd reduction(max : m)
    for (int64_t j = 1; j < V; j++) m = x[j] > m ? x[j] : m;
    if (!(m == m) || m == (real)INFINITY || m == -(real)INFINITY) return (double)m;
    real s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < V; j++) s += exp_r(x[j] - m);
    return (double)m + log((double)s);
}

/* dx = s (exp(x - lse) - onehot(t)) for one row. */
static void row_grad(const real *x, real *dx, int64_t V, int64_t t, double lse,
                     double s) {
    const real l = (real)lse, sr = (real)s;
#pragma omp simd
    for (int64_t j = 0; j < V; j++) dx[j] = sr * exp_r(x[j] - l);
    dx[t] -= sr;
}

void xent_forward(const real *logits, const int64_t *targets, int64_t N, int64_t V,
                  int64_t ignore, double *loss, double *lse, int64_t threads) {
    XENT_PARALLEL
    for (int64_t n = 0; n < N; n++) {
        const real *x = logits + n * V;
        lse[n] = row_lse(x, V);
        loss[n] = targets[n] == ignore ? 0.0 : lse[n] - (double)x[targets[n]];
    }
}

/* scale: the incoming gradient of each row (stride 1) or of all rows (stride 0). */
void xent_backward(const real *logits, const int64_t *targets, const double *lse,
                   const double *scale, int64_t scale_stride, int64_t N, int64_t V,
                   int64_t ignore, real *grad, int64_t threads) {
    XENT_PARALLEL
    for (int64_t n = 0; n < N; n++) {
        real *dx = grad + n * V;
        if (targets[n] == ignore) {
            memset(dx, 0, (size_t)V * sizeof(real));
            continue;
        }
        row_grad(logits + n * V, dx, V, targets[n], lse[n], scale[n * scale_stride]);
    }
}

#ifndef RNNKIT_DOUBLE
static inline void bf16_to_float(const uint16_t *restrict in, float *restrict out, int64_t V) {
#pragma omp simd
    for (int64_t j = 0; j < V; j++) {
        uint32_t bits = (uint32_t)in[j] << 16;
        memcpy(out + j, &bits, sizeof bits);
    }
}

static inline void float_to_bf16(const float *restrict in, uint16_t *restrict out, int64_t V) {
#pragma omp simd
    for (int64_t j = 0; j < V; j++) {
        uint32_t bits;
        memcpy(&bits, in + j, sizeof bits);
        uint32_t nan = (bits & 0x7fffffffu) > 0x7f800000u;
        uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
        out[j] = (uint16_t)(nan ? (bits >> 16) | 0x40u : rounded);
    }
}

void xent_forward_bf16(const uint16_t *logits, const int64_t *targets, int64_t N, int64_t V,
                       int64_t ignore, double *loss, double *lse, float *scratch,
                       int64_t threads) {
    XENT_PARALLEL
    for (int64_t n = 0; n < N; n++) {
        float *x = scratch + THREAD() * V;
        bf16_to_float(logits + n * V, x, V);
        lse[n] = row_lse(x, V);
        loss[n] = targets[n] == ignore ? 0.0 : lse[n] - (double)x[targets[n]];
    }
}

void xent_backward_bf16(const uint16_t *logits, const int64_t *targets, const double *lse,
                        const double *scale, int64_t scale_stride, int64_t N, int64_t V,
                        int64_t ignore, uint16_t *grad, float *scratch, int64_t threads) {
    XENT_PARALLEL
    for (int64_t n = 0; n < N; n++) {
        if (targets[n] == ignore) {
            memset(grad + n * V, 0, (size_t)V * sizeof(uint16_t));
            continue;
        }
        float *x = scratch + THREAD() * V;
        bf16_to_float(logits + n * V, x, V);
        row_grad(x, x, V, targets[n], lse[n], scale[n * scale_stride]);
        float_to_bf16(x, grad + n * V, V);
    }
}
#endif
