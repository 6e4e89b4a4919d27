/*
 * entropix.c: the entropy / varentropy sampling policy of xjdr-alt/entropix (torch_sampler.py,
 * `sample` and `adaptive_sample`), on logits alone.
 *
 * Per row: H and V, the entropy and varentropy of softmax(row) in bits (entropix's units: nats
 * from fd_entropy divided by ln 2 and ln^2 2; entropix uses ln 2 ~ 0.69314718056, we the exact
 * value), pick a branch by thresholds tested in entropix's order (fd.h lists them), then draw with
 * the fused sampler (fd_sample, HF order) under the branch's parameters. Entropix's branch
 * formulas also read attention statistics (attention entropy / varentropy, agreement, interaction
 * strength); with logits only those terms are zero, which leaves exactly the factors of fd.h
 * (e.g. HELV's temperature factor 1.3 + 0.2 * attn_entropy becomes 1.3). The middle ground is
 * entropix's adaptive_sample with the same zeros: temperature T (1 + 0.3 (H + V)), min-p
 * clamp(0.03 (1 - 0.5 (H + V)), 0.01, 0.5), n draws, and the draw with the best score wins; the
 * score there is the draw's raw log-probability plus a term shared by all draws, so the highest
 * raw logit wins (the first draw on ties).
 *
 * Why fd_sample rather than entropix's _sample: entropix's top-p cumulates the probabilities in
 * ascending order and its min-p mask is computed but never applied, so its filters are not top-p
 * and min-p; we keep the parameters and the quadrant logic and draw from the filters as this
 * library (and HF) define them.
 *
 * Randomness: draw j of a row uses fd_uniform(seed, position, j), so a row's token depends on its
 * own logits, seed, position and last token only.
 *
 * Workspace: fd_softmax_workspace(V) for the entropy, then fd_sample_workspace(V), 64-aligned.
 */
#include "internal.h"

#include <string.h>

#define FD_LN2 0.693147180559945309417232121458176568

_Static_assert(sizeof(fd_entropix_params) == FD_ENTROPIX_NPARAMS * sizeof(double),
               "fd_entropix_params is read as an array of doubles");

size_t fd_entropix_workspace(int64_t n_cols)
{
    return 64 + fdi_align64(fd_softmax_workspace(n_cols)) + fd_sample_workspace(n_cols);
}

static void set_err(fd_errinfo *err, int64_t row, int64_t index)
{
    if (err) {
        err->row = row;
        err->index = index;
    }
}

static int finite(double x)
{
    return x > -INFINITY && x < INFINITY;
}

static int valid_params(const fd_entropix_params *p)
{
    const double *f = &p->temperature;
    for (int i = 0; i < FD_ENTROPIX_NPARAMS; i++) {
        if (!finite(f[i])) {
            return 0;
        }
    }
    return p->temperature >= 0.0 && p->top_k >= 0.0 && p->top_k == floor(p->top_k) &&
           p->top_p >= 0.0 && p->top_p <= 1.0 && p->min_p >= 0.0 && p->min_p <= 1.0 &&
           p->helv_t_factor >= 0.0 && p->helv_t_max >= 0.0 && p->lehv_t_factor >= 0.0 &&
           p->lehv_t_max >= 0.0 && p->lehv_k_factor >= 0.0 && p->lehv_k_min >= 0.0 &&
           p->lehv_k_min == floor(p->lehv_k_min) && p->hehv_t_factor >= 0.0 &&
           p->hehv_t_min >= 0.0 && p->hehv_p_min >= 0.0 && p->hehv_p_min <= 1.0 && p->a_t >= 0.0 &&
           p->a_min_p >= 0.0 && p->a_min_p <= 1.0 && p->n_samples >= 1.0 && p->n_samples <= 64.0 &&
           p->n_samples == floor(p->n_samples) && p->clarify_token == floor(p->clarify_token);
}

/* Element (row, col) of x as float32 (the row is known to be free of NaN / +inf). */
static float elem(const fd_rows *x, int64_t row, int64_t col)
{
    int64_t i = row * x->row_stride + col;
    switch (x->dtype) {
    case FD_F32:
        return ((const float *)x->data)[i];
    case FD_F64:
        return (float)((const double *)x->data)[i];
    case FD_F16:
        return fd_half_to_float(((const uint16_t *)x->data)[i]);
    default:
        return fd_bf16_to_float(((const uint16_t *)x->data)[i]);
    }
}

fd_status fd_entropix(const fd_rows *in, const fd_entropix_params *params,
                      const int64_t *last_token, const fd_rng_args *rng, int64_t *tokens,
                      int64_t *branch, double *entropy, double *varentropy, double *logprob,
                      void *ws, fd_errinfo *err)
{
    static const size_t isz[4] = {4, 8, 2, 2};
    set_err(err, -1, -1);
    if (!fdi_valid_rows(in) || !params || !tokens) {
        return FD_ESHAPE;
    }
    if (!valid_params(params) ||
        (params->clarify_token >= 0.0 && params->clarify_token >= (double)in->n_cols)) {
        return FD_EINVAL;
    }
    if (!rng || rng->uniform || !rng->seed || !rng->position) {
        return FD_EINVAL;
    }
    const fd_entropix_params *P = params;
    const int64_t V = in->n_cols;
    void *ews = (void *)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
    void *sws = (char *)ews + fdi_align64(fd_softmax_workspace(V));
    for (int64_t r = 0; r < in->n_rows; r++) {
        if (V == 0) {
            set_err(err, r, -1);
            return FD_ENOFINITE;
        }
        fd_rows row = *in;
        row.data = (char *)in->data + (size_t)(r * in->row_stride) * isz[in->dtype];
        row.n_rows = 1;
        row.row_stride = V;
        double h = 0.0, v = 0.0;
        fd_status st = fd_entropy(&row, &h, &v, ews, err);
        if (st != FD_OK) {
            set_err(err, r, err ? err->index : -1);
            return st;
        }
        h /= FD_LN2;
        v /= FD_LN2 * FD_LN2;
        if (entropy) {
            entropy[r] = h;
        }
        if (varentropy) {
            varentropy[r] = v;
        }
        double t = P->temperature, k = P->top_k, p = P->top_p, mp = P->min_p;
        int64_t nd = 1;
        fd_entropix_branch b;
        if (h < P->low_entropy && v < P->low_varentropy) {
            b = FD_ENTROPIX_ARGMAX;
        }
        else if (h > P->helv_entropy && v < P->low_varentropy) {
            b = P->clarify_token >= 0.0 &&
                        !(last_token && last_token[r] == (int64_t)P->clarify_token)
                    ? FD_ENTROPIX_CLARIFY
                    : FD_ENTROPIX_HELV;
            t = fmin(P->helv_t_max, t * P->helv_t_factor);
        }
        else if (h < P->lehv_entropy && v > P->lehv_varentropy) {
            b = FD_ENTROPIX_LEHV;
            t = fmin(P->lehv_t_max, t * P->lehv_t_factor);
            if (k > 0.0) {
                k = fmax(P->lehv_k_min, floor(k * P->lehv_k_factor));
            }
        }
        else if (h > P->hehv_entropy && v > P->hehv_varentropy) {
            b = FD_ENTROPIX_HEHV;
            t = fmax(P->hehv_t_min, t * P->hehv_t_factor);
            p = fmax(P->hehv_p_min, p - P->hehv_p_delta);
        }
        else {
            b = FD_ENTROPIX_ADAPTIVE;
            t = t * (1.0 + P->a_t * (h + v));
            mp = fmin(0.5, fmax(0.01, P->a_min_p * (1.0 - P->a_m * (h + v))));
            nd = (int64_t)P->n_samples;
        }
        if (branch) {
            branch[r] = b;
        }
        if (b == FD_ENTROPIX_ARGMAX || b == FD_ENTROPIX_CLARIFY) {
            if (b == FD_ENTROPIX_ARGMAX) {
                st = fd_argmax(&row, &tokens[r], err);
                if (st != FD_OK) {
                    set_err(err, r, err ? err->index : -1);
                    return st;
                }
            }
            else {
                tokens[r] = (int64_t)P->clarify_token;
            }
            if (logprob) {
                logprob[r] = 0.0;
            }
            continue;
        }
        if (!(t < INFINITY)) {
            set_err(err, r, -1);
            return FD_EINVAL; /* T (1 + a_t (H + V)) overflowed */
        }
        const double zero = 0.0, one = 1.0;
        fd_sample_params sp = {{&t, 0},    {&k, 0},    {&p, 0},    {&mp, 0},   {&one, 0},
                               {&zero, 0}, {&zero, 0}, {&zero, 0}, FD_ORDER_HF};
        uint64_t seed = rng->seed[r * rng->seed_stride];
        uint64_t pos = (uint64_t)rng->position[r * rng->position_stride];
        int64_t best = -1;
        double best_lp = 0.0;
        float best_z = -INFINITY;
        for (int64_t j = 0; j < nd; j++) {
            double u = fd_uniform(seed, pos, (uint64_t)j);
            fd_rng_args r1 = {NULL, 0, NULL, 0, &u, 0};
            int64_t tok;
            double lp;
            st = fd_sample(&row, &sp, &r1, &tok, &lp, sws, err);
            if (st != FD_OK) {
                set_err(err, r, err ? err->index : -1);
                return st;
            }
            float z = elem(in, r, tok);
            if (best < 0 || z > best_z) {
                best = tok;
                best_z = z;
                best_lp = lp;
            }
        }
        tokens[r] = best;
        if (logprob) {
            logprob[r] = best_lp;
        }
    }
    return FD_OK;
}
