/*
 * mirostat.c: mirostat v1 and v2 (Basu, Ramakrishnan, Bhattacharya and Lee, "Mirostat: a neural
 * text decoding algorithm that directly controls perplexity", ICLR 2021), with the semantics of
 * llama.cpp's llama_sampler_mirostat / llama_sampler_mirostat_v2 (src/llama-sampling.cpp) and a
 * state that belongs to one row.
 *
 * State. Each row carries its own mu (the surprise budget, in bits), read from and written back to
 * mu[r]. Nothing else survives a call, so a row's tokens and mu trace depend only on its own
 * logits, parameters, seed and position: never on the batch it shares or the row order (llama.cpp
 * #3537 was one mu shared by every sequence of a server slot).
 *
 * One step of a row, on z = x / T (float32 division, as the fused sampler; T = 0 is exact greedy:
 * the first maximum, observed surprise 0):
 *   v2  keep the tokens whose surprise -log2 p is <= mu, at least the first maximum. With
 *       d = z - max (in double) and Z = sum exp(d) over the row, -log2 p <= mu is
 *       d >= log Z - mu ln 2: a threshold in logit space, so there is no sort; Z comes from the
 *       vectorised exp-sum of isa.c (float32 weights, double sums), one pass over the row.
 *   v1  s_hat = sum t_i b_i / sum t_i^2 over the top min(m, n) finite logits sorted descending,
 *       t_i = ln((i + 2) / (i + 1)), b_i = ln(p_i / p_{i+1}) = z_(i) - z_(i+1) (no softmax is
 *       needed); eps = s_hat - 1; k = (eps 2^mu / (1 - V^-eps))^(1 / s_hat) with V the vocabulary
 *       size (llama.cpp's n_vocab), all in double (llama.cpp: float). The top m, and then the top
 *       k, come from select.c's block-max delegate (64-element block maxima bound the k-th
 *       largest, so only about k blocks are read again) and its radix selection; only the m
 *       values are sorted. Degenerate cases, where
 *       llama.cpp's float code produces NaN / inf: fewer than two finite logits or m = 1 -> k = 1;
 *       eps = 0 -> the limit eps / (1 - V^-eps) = 1 / ln V; s_hat = 0 (the top m tied) -> k = n
 *       if 2^mu > V - 1, else 1. k is floor(k) clipped to [1, n] (n the finite logits); the
 *       top-k cut keeps every token tied with the k-th value (fd.h's TOP_K rule; llama.cpp keeps
 *       exactly k, its choice inside a tie being unspecified).
 *   Both: the survivors, ascending ids, get double weights w = exp(d) (libm; the list is short:
 *       v2 keeps p >= 2^-mu, at most 2^mu tokens), the pick is the inverse CDF of fd_sample
 *       (the first id whose sequential running sum exceeds u * W; if rounding leaves none, the
 *       last nonzero weight) with u = fd_uniform(seed, position, 0) or the caller's explicit u,
 *       and
 *           log p = d_pick - log W,   surprise = -log p / ln 2,   mu <- mu - eta (surprise - tau).
 *       llama.cpp computes the observed surprise from the renormalised probability too.
 * Every double operation above is a single libm call or IEEE operation in a fixed order, so a
 * plain NumPy/`math` loop reproduces tokens and mu bit for bit given the same kept set; only the
 * v2 threshold uses the float32 exp-sum, so a token within float32 rounding of it may go either
 * way (python/fastdecode/_reference.py says how the tests bracket that).
 *
 * Workspace: float x[V] (the scaled row), float v[V] + int32 id[V] (the candidate list), float
 * sv[V] + int32 sid[V] (v1's top-m list), double w[V], float bm[ceil(V / 64)] (block maxima),
 * then fdi_workspace(V); 64-byte aligned.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define FD_LN2 0.693147180559945309417232121458176568

typedef struct {
    float *x, *v, *sv, *bm;
    int32_t *id, *sid;
    double *w;
    void *fws, *radix;
} mws;

static mws layout(void *ws, int64_t n)
{
    size_t un = n > 0 ? (size_t)n : 1;
    uintptr_t p = ((uintptr_t)ws + 63) & ~(uintptr_t)63;
    mws L;
    L.x = (float *)p;
    p += fdi_align64(un * sizeof(float));
    L.v = (float *)p;
    p += fdi_align64(un * sizeof(float));
    L.id = (int32_t *)p;
    p += fdi_align64(un * sizeof(int32_t));
    L.sv = (float *)p;
    p += fdi_align64(un * sizeof(float));
    L.sid = (int32_t *)p;
    p += fdi_align64(un * sizeof(int32_t));
    L.w = (double *)p;
    p += fdi_align64(un * sizeof(double));
    L.bm = (float *)p;
    p += fdi_align64((size_t)fdi_n_blocks(n > 0 ? n : 1) * sizeof(float));
    L.fws = (void *)p;
    L.radix = (char *)p + 2 * fdi_align64(un * 4); /* filter.c's layout: w, s, then radix */
    return L;
}

size_t fd_mirostat_workspace(int64_t n_cols)
{
    size_t un = n_cols > 0 ? (size_t)n_cols : 1;
    return 64 + 3 * fdi_align64(un * sizeof(float)) + 2 * fdi_align64(un * sizeof(int32_t)) +
           fdi_align64(un * sizeof(double)) +
           fdi_align64((size_t)fdi_n_blocks(n_cols > 0 ? n_cols : 1) * sizeof(float)) +
           fdi_workspace(n_cols > 0 ? n_cols : 1);
}

static void set_err(fd_errinfo *err, int64_t row, int64_t index)
{
    if (err) {
        err->row = row;
        err->index = index;
    }
}

static int desc_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* The k largest of the finite logits of the scaled row x (ties with the k-th kept) into (v, id),
 * ascending ids; 1 <= k. The block-max delegate of select.c gathers a short
 * candidate list (exact: every element >= a lower bound of the k-th largest), else the whole
 * finite row is the list. Returns the count. */
static int64_t top_k_list(const float *x, int64_t V, int64_t k, float *v, int32_t *id, const mws *L)
{
    int64_t n = fdi_block_candidates(x, V, L->bm, k, 0.0f, v, id, L->radix);
    if (n < 0) {
        n = 0;
        for (int64_t i = 0; i < V; i++) {
            float xi = x[i];
            v[n] = xi;
            id[n] = (int32_t)i;
            n += xi != -INFINITY;
        }
    }
    return fdi_top_k(v, id, n, k, L->fws);
}

/* v1's k from the top min(m, n_fin) logits of x (scaled, block maxima in L->bm). */
static int64_t mirostat1_k(const float *x, int64_t V, int64_t n_fin, int64_t m, double mu,
                           const mws *L)
{
    int64_t mm = m < n_fin ? m : n_fin;
    if (mm < 2) {
        return 1;
    }
    int64_t t = top_k_list(x, V, mm, L->sv, L->sid, L); /* mm largest, ties: t >= mm */
    qsort(L->sv, (size_t)t, sizeof(float), desc_float);
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i + 1 < mm; i++) {
        double ti = log((double)(i + 2) / (double)(i + 1));
        double bi = (double)L->sv[i] - (double)L->sv[i + 1];
        num += ti * bi;
        den += ti * ti;
    }
    double s_hat = num / den;
    double kd;
    if (s_hat == 0.0) {
        kd = pow(2.0, mu) > (double)(V - 1) ? INFINITY : 0.0;
    }
    else {
        double eps = s_hat - 1.0;
        double base = eps == 0.0 ? pow(2.0, mu) / log((double)V)
                                 : eps * pow(2.0, mu) / (1.0 - pow((double)V, -eps));
        kd = pow(base, 1.0 / s_hat);
    }
    if (!(kd >= 1.0)) {
        return 1;
    }
    if (kd >= (double)n_fin) {
        return n_fin;
    }
    return (int64_t)kd;
}

fd_status fd_mirostat(const fd_rows *in, const fd_mirostat_params *params, const fd_rng_args *rng,
                      double *mu, int64_t *tokens, double *logprob, int64_t *n_kept, void *ws,
                      fd_errinfo *err)
{
    set_err(err, -1, -1);
    if (!fdi_valid_rows(in) || !params || !mu || !tokens || in->n_cols > INT32_MAX) {
        return FD_ESHAPE;
    }
    if ((params->version != 1 && params->version != 2) || params->m < 1) {
        return FD_EINVAL;
    }
    const int64_t V = in->n_cols;
    const fdi_isa_ops *ops = fdi_ops();
    mws L = layout(ws, V);
    for (int64_t r = 0; r < in->n_rows; r++) {
        double tau = FD_PARAM_AT(params->tau, r), eta = FD_PARAM_AT(params->eta, r);
        double T = FD_PARAM_AT(params->temperature, r), m0 = mu[r];
        if (!(tau > 0.0 && tau < INFINITY) || !(eta >= 0.0 && eta < INFINITY) ||
            !(T >= 0.0 && T < INFINITY) || !(m0 > -INFINITY && m0 < INFINITY)) {
            set_err(err, r, -1);
            return FD_EINVAL;
        }
        if (V == 0) {
            set_err(err, r, -1);
            return FD_ENOFINITE;
        }
        fd_status st = fd_load_row(in, r, L.x, err);
        if (st != FD_OK) {
            if (err) {
                err->row = r;
            }
            return st;
        }
        float xm;
        int64_t am;
        (void)ops->argmax(L.x, V, &xm, &am);
        if (xm == -INFINITY) {
            set_err(err, r, -1);
            return FD_ENOFINITE;
        }
        double u;
        if (rng && rng->uniform) {
            u = rng->uniform[r * rng->uniform_stride];
            if (!(u >= 0.0 && u < 1.0)) {
                set_err(err, r, -1);
                return FD_EINVAL;
            }
        }
        else if (rng && rng->seed && rng->position) {
            u = fd_uniform(rng->seed[r * rng->seed_stride],
                           (uint64_t)rng->position[r * rng->position_stride], 0);
        }
        else {
            set_err(err, r, -1);
            return FD_EINVAL;
        }
        float t = (float)T;
        if (T == 0.0 || t == 0.0f || isinf(xm / t)) {
            /* exact greedy: the only token left has probability 1, surprise 0 */
            tokens[r] = am;
            if (logprob) {
                logprob[r] = 0.0;
            }
            if (n_kept) {
                n_kept[r] = 1;
            }
            mu[r] = m0 - eta * (0.0 - tau);
            continue;
        }
        if (t != 1.0f) {
            for (int64_t i = 0; i < V; i++) {
                /* -inf stays -inf also when T rounds to an infinite float (-inf / inf is NaN) */
                L.x[i] = L.x[i] == -INFINITY ? -INFINITY : L.x[i] / t;
            }
            (void)ops->argmax(L.x, V, &xm, &am); /* rounding may have made new ties */
        }
        const double zm = (double)xm;
        int64_t n = 0;
        if (params->version == 2) {
            double thr = log(ops->exp_sum(L.x, V, xm, NULL)) - m0 * FD_LN2;
            for (int64_t i = 0; i < V; i++) {
                float xi = L.x[i];
                L.v[n] = xi;
                L.id[n] = (int32_t)i;
                n += (double)xi - zm >= thr;
            }
            if (n == 0) {
                L.v[0] = xm;
                L.id[0] = (int32_t)am;
                n = 1;
            }
        }
        else {
            (void)ops->block_max(L.x, V, L.bm);
            int64_t n_fin = V - ops->count_in(L.x, V, -INFINITY, -INFINITY);
            int64_t k = mirostat1_k(L.x, V, n_fin, params->m, m0, &L);
            n = top_k_list(L.x, V, k, L.v, L.id, &L);
        }
        /* the pick: inverse CDF over the survivors in ascending id order */
        double total = 0.0;
        for (int64_t i = 0; i < n; i++) {
            L.w[i] = exp((double)L.v[i] - zm);
            total += L.w[i];
        }
        double target = u * total, run = 0.0;
        int64_t pick = -1;
        for (int64_t i = 0; i < n; i++) {
            run += L.w[i];
            if (run > target) {
                pick = i;
                break;
            }
        }
        if (pick < 0) {
            pick = n - 1;
            while (pick > 0 && !(L.w[pick] > 0.0)) {
                pick--;
            }
        }
        double lp = ((double)L.v[pick] - zm) - log(total);
        double surprise = -lp / FD_LN2;
        tokens[r] = L.id[pick];
        if (logprob) {
            logprob[r] = lp;
        }
        if (n_kept) {
            n_kept[r] = n;
        }
        mu[r] = m0 - eta * (surprise - tau);
    }
    return FD_OK;
}
