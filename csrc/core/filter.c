/*
 * filter.c: the truncation filters (top-k, top-p, min-p, typical, epsilon, eta, top-n-sigma) on
 * candidate lists, and the dense driver fd_filter.
 *
 * Every filter keeps a set that is a prefix of some walk over the candidates (descending logit,
 * or ascending typical score), closed under ties or cut inside a tie group by id. So each one is
 * "find the threshold key, then compact once": the threshold comes from the radix select of
 * select.c (count mode for "the k-th", weight mode for "where the mass reaches p"), never from a
 * sort. A candidate list is (value, id) pairs with ids strictly increasing, so "ties: lower id
 * first" is simply list order, and a stable compaction keeps the ids sorted for the next filter.
 *
 * Passes over n candidates, V = n for the dense driver:
 *   top-k        dense driver: block maxima (one vectorised pass) and the block-max candidate
 *                filter of select.c, then the radix count select on the short list; the radix
 *                select on the whole list when the block filter does not apply (k > V / 64).
 *   top-p        max, exp weights (stored) + their double sum, linear-bin weight select (bins,
 *                histogram, gather of the crossing bin: select.c), compaction. The tie group at
 *                the crossing value is resolved by walking it in id order with the running mass;
 *                min_keep beyond that is a count select.
 *   min-p        max, one counting pass of (z - max) < ln p (logit space: no exp), compaction.
 *   typical      max, exp weights, float32 log-probs and entropy (as torch computes them, so that
 *                near-ties of the score s = |-log p - H| fall the same way as in Hugging Face),
 *                scores, linear-bin weight select over the scores (ascending walk), compaction.
 *   epsilon/eta  max, exp sum (eta: also the entropy), one pass comparing float32 probabilities
 *                (exp(z - max) * (1 / Z), torch's formula) against the float32 threshold.
 *   top-n-sigma  max, mean and population variance in double over finite logits, compaction.
 * The dense driver writes each row from the kept ids: runs between them when few are kept, else a
 * byte mask and one branch-free select pass (random run lengths defeat the branch predictor).
 * The min_keep rules of Hugging Face differ per warper and are kept exactly: top-p, min-p and
 * typical keep the first min_keep of their walk (ties by id), epsilon and eta keep every token
 * >= the min_keep-th largest logit (ties kept).
 *
 * Sums are double in element order; probabilities are float32, as in the Hugging Face warpers.
 */
#include "internal.h"

#include <string.h>

typedef struct {
    float *w;    /* per-candidate weights exp(z - max) */
    float *s;    /* per-candidate scores (typical) */
    void *radix; /* the radix select's scratch */
} fws;

static fws layout(void *ws, int64_t n)
{
    size_t a = fdi_align64((n > 0 ? (size_t)n : 1) * 4);
    fws L;
    L.w = (float *)ws;
    L.s = (float *)((char *)ws + a);
    L.radix = (char *)ws + 2 * a;
    return L;
}

/* Keeps the first L candidates of the descending walk of src (ascending when invert); equal keys
 * are walked by ascending id, or by descending id when ties_high (top-p's order, see fdi_top_p). */
static int64_t keep_prefix(float *v, int32_t *id, const float *src, int64_t n, int invert,
                           int64_t L, int ties_high, void *radix)
{
    if (L >= n) {
        return n;
    }
    if (L <= 0) {
        return 0;
    }
    int64_t na = 0, ne = 0;
    uint32_t T = fdi_radix_cut(src, NULL, n, invert, (double)L, radix, &na, NULL, &ne, NULL);
    if (ties_high) {
        return fdi_compact_tail(v, id, src, n, invert, T, ne - (L - na));
    }
    return fdi_compact(v, id, src, n, invert, T, L - na);
}

/* The k-th largest value of v (1 <= k <= n). */
static float kth_largest(const float *v, int64_t n, int64_t k, float max, void *radix)
{
    if (k <= 1) {
        return max;
    }
    int64_t na = 0, ne = 0;
    uint32_t T = fdi_radix_cut(v, NULL, n, 0, (double)k, radix, &na, NULL, &ne, NULL);
    return fdi_key_value(T, 0);
}

int64_t fdi_top_k(float *v, int32_t *id, int64_t n, int64_t k, void *ws)
{
    if (k <= 0 || k >= n) {
        return n;
    }
    fws L = layout(ws, n);
    int64_t na = 0, ne = 0;
    uint32_t T = fdi_radix_cut(v, NULL, n, 0, (double)k, L.radix, &na, NULL, &ne, NULL);
    return fdi_compact(v, id, v, n, 0, T, INT64_MAX);
}

int64_t fdi_top_p(float *v, int32_t *id, int64_t n, double p, int64_t min_keep, void *ws)
{
    if (n <= 0 || p >= 1.0) {
        return n;
    }
    if (min_keep < 1) {
        min_keep = 1;
    }
    fws L = layout(ws, n);
    float max = fdi_max(v, n);
    double z = fdi_weights(v, n, max, L.w);
    double target = p * z;
    int64_t na = 0, ne = 0;
    double wa = 0.0;
    uint32_t T = fdi_linear_cut(v, L.w, n, 0, max, target, L.radix, &na, &wa, &ne);
    /* Walk the tie group at T: a token is kept while the mass before it is < p. Equal logits are
     * walked by DESCENDING id: HF sorts ascending and removes a prefix of that order, and
     * torch.sort is stable on short rows (it is not beyond 16 elements, where HF's choice inside a
     * tie group is arbitrary), so HF keeps the higher ids of a split tie group. */
    float vt = fdi_key_value(T, 0);
    float wtf = 0.0f;
    if (max != -INFINITY) {
        fdi_exp(&vt, 1, max, &wtf); /* the very weight the group's elements carry */
    }
    double wt = (double)wtf;
    int64_t take = 0;
    double cum = wa;
    while (take < ne && cum < target) {
        take++;
        cum += wt;
    }
    if (na + take >= min_keep) {
        if (take == ne) { /* the whole tie group (the usual case: one element): fast compaction */
            return fdi_compact(v, id, v, n, 0, T, INT64_MAX);
        }
        return fdi_compact_tail(v, id, v, n, 0, T, ne - take);
    }
    return keep_prefix(v, id, v, n, 0, min_keep, 1, L.radix);
}

int64_t fdi_min_p(float *v, int32_t *id, int64_t n, double p, int64_t min_keep, void *ws)
{
    if (n <= 0 || p <= 0.0) {
        return n;
    }
    float max = fdi_max(v, n);
    if (max == -INFINITY) {
        return n;
    }
    double lp = log(p);
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) {
        kept += !((double)(v[i] - max) < lp);
    }
    if (kept < min_keep) {
        fws L = layout(ws, n);
        return keep_prefix(v, id, v, n, 0, min_keep, 0, L.radix);
    }
    int64_t j = 0;
    for (int64_t i = 0; i < n; i++) {
        float x = v[i];
        int32_t d = id[i];
        v[j] = x;
        id[j] = d;
        j += !((double)(x - max) < lp);
    }
    return j;
}

int64_t fdi_typical(float *v, int32_t *id, int64_t n, double mass, int64_t min_keep, void *ws)
{
    if (n <= 0) {
        return n;
    }
    fws L = layout(ws, n);
    float max = fdi_max(v, n);
    if (max == -INFINITY) {
        return n;
    }
    double z = fdi_weights(v, n, max, L.w);
    /* torch: normalized = (z - max) - log(sum), p = exp(normalized), H = -nansum(normalized * p),
     * all float32 (the sum here is double, then rounded) */
    float lse = (float)log(z);
    for (int64_t i = 0; i < n; i++) {
        L.s[i] = (v[i] - max) - lse;
    }
    float *pr = (float *)L.radix; /* free until the select below */
    fdi_exp(L.s, n, 0.0f, pr);
    double hsum = fdi_dot_pos(pr, L.s, n);
    float h = (float)(-hsum);
    for (int64_t i = 0; i < n; i++) {
        L.s[i] = fabsf(-L.s[i] - h);
    }
    int64_t na = 0, ne = 0;
    uint32_t T = fdi_linear_cut(L.s, L.w, n, 1, 0.0f, mass * z, L.radix, &na, NULL, &ne);
    if (na + ne >= min_keep) {
        return fdi_compact(v, id, L.s, n, 1, T, INT64_MAX);
    }
    return keep_prefix(v, id, L.s, n, 1, min_keep, 0, L.radix);
}

/* Keeps p >= thr (float32 p = w * (1 / Z), torch's softmax formula) or z >= zk, where
 * w = exp(z - max). */
static int64_t keep_prob_or_top(float *v, int32_t *id, const float *w, int64_t n, double z,
                                float thr, float zk)
{
    float inv = (float)(1.0 / z);
    int64_t j = 0;
    for (int64_t i = 0; i < n; i++) {
        float x = v[i];
        int32_t d = id[i];
        float pr = w[i] * inv;
        v[j] = x;
        id[j] = d;
        j += (!(pr < thr)) | (x >= zk);
    }
    return j;
}

int64_t fdi_epsilon(float *v, int32_t *id, int64_t n, double eps, int64_t min_keep, void *ws)
{
    if (n <= 0 || eps <= 0.0) {
        return n;
    }
    float max = fdi_max(v, n);
    if (max == -INFINITY) {
        return n;
    }
    fws L = layout(ws, n);
    double z = fdi_weights(v, n, max, L.w);
    float zk = kth_largest(v, n, min_keep < n ? min_keep : n, max, L.radix);
    return keep_prob_or_top(v, id, L.w, n, z, (float)eps, zk);
}

int64_t fdi_eta(float *v, int32_t *id, int64_t n, double eps, int64_t min_keep, void *ws)
{
    if (n <= 0 || eps <= 0.0) {
        return n;
    }
    float max = fdi_max(v, n);
    if (max == -INFINITY) {
        return n;
    }
    fws L = layout(ws, n);
    /* H = log Z - sum(w d) / Z with w = exp(d), d = z - max; -inf terms skipped */
    for (int64_t i = 0; i < n; i++) {
        L.s[i] = v[i] - max;
    }
    fdi_exp(L.s, n, 0.0f, L.w);
    double z = fdi_sum(L.w, n);
    double s1 = fdi_dot_pos(L.w, L.s, n);
    double h = log(z) - s1 / z;
    /* torch: epsilon is a float32 tensor, so is the arithmetic */
    float epsf = (float)eps;
    float cand = sqrtf(epsf) * expf((float)-h);
    float eta = epsf < cand ? epsf : cand;
    float zk = kth_largest(v, n, min_keep < n ? min_keep : n, max, L.radix);
    return keep_prob_or_top(v, id, L.w, n, z, eta, zk);
}

int64_t fdi_top_n_sigma(float *v, int32_t *id, int64_t n, double nsig, int64_t min_keep, void *ws)
{
    if (n <= 0 || !(nsig > 0.0)) {
        return n;
    }
    float max = fdi_max(v, n);
    if (max == -INFINITY) {
        return n;
    }
    double sum = 0.0;
    int64_t cnt = 0;
    for (int64_t i = 0; i < n; i++) {
        int fin = v[i] != -INFINITY;
        sum += fin ? (double)v[i] : 0.0;
        cnt += fin;
    }
    double mean = sum / (double)cnt;
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)v[i] - mean;
        ss += v[i] != -INFINITY ? d * d : 0.0;
    }
    double thr = (double)max - nsig * sqrt(ss / (double)cnt);
    if (min_keep > 1) {
        /* Both kept sets are upper sets of the values, so when the sigma band holds fewer than
         * min_keep tokens their union is the top-k set (ties with the k-th value included). */
        int64_t in_band = 0;
        for (int64_t i = 0; i < n; i++) {
            in_band += (double)v[i] >= thr;
        }
        if (in_band < min_keep) {
            return fdi_top_k(v, id, n, min_keep, ws);
        }
    }
    int64_t j = 0;
    for (int64_t i = 0; i < n; i++) {
        float x = v[i];
        int32_t d = id[i];
        v[j] = x;
        id[j] = d;
        j += (double)x >= thr;
    }
    return j;
}

/* ---------------------------------------------------------------------------------------------
 * Dense driver.
 * --------------------------------------------------------------------------------------------- */

size_t fd_filter_workspace(int64_t n_cols)
{
    size_t un = n_cols > 0 ? (size_t)n_cols : 1;
    return 2 * fdi_align64(un * 4) + fdi_workspace(n_cols);
}

static int valid_rows(const fd_rows *x)
{
    if (x->n_rows < 0 || x->n_cols < 0) {
        return 0;
    }
    if (x->n_rows > 0 && x->n_cols > 0 && x->data == NULL) {
        return 0;
    }
    return x->n_rows <= 1 || x->row_stride >= x->n_cols;
}

static int valid_dtype(fd_dtype t)
{
    return t == FD_F32 || t == FD_F64 || t == FD_F16 || t == FD_BF16;
}

/* Writes row r of out: kept ids (ascending) copied from in, every other column `fill`. Each in
 * element is read before the same out element is written, so out may be in. Few kept ids: one
 * ascending pass filling the runs between them. Many (a top-p or min-p of a flat row keeps tens of
 * thousands, and the run lengths are random, so the run loop mispredicts on every id): a byte
 * mask of the kept columns in `mask` (n_cols bytes of scratch), then one branch-free select pass
 * over the row on the bit patterns (vectorizes). */
#define WRITE_RUNS(T, s, d, f)                                                                   \
    do {                                                                                         \
        int64_t prev = 0;                                                                        \
        for (int64_t j = 0; j <= nk; j++) {                                                      \
            int64_t stop = j < nk ? id[j] : V;                                                   \
            for (int64_t c = prev; c < stop; c++) {                                              \
                d[c] = f;                                                                        \
            }                                                                                    \
            if (j < nk && !same) {                                                               \
                d[stop] = s[stop];                                                               \
            }                                                                                    \
            prev = stop + 1;                                                                     \
        }                                                                                        \
    } while (0)
#define WRITE_MASK(T, s, d, f)                                                                   \
    do {                                                                                         \
        memset(mask, 0, (size_t)V);                                                              \
        for (int64_t j = 0; j < nk; j++) {                                                       \
            mask[id[j]] = 1;                                                                     \
        }                                                                                        \
        for (int64_t c = 0; c < V; c++) {                                                        \
            T keep = (T)0 - (T)mask[c];                                                          \
            d[c] = (s[c] & keep) | (f & ~keep);                                                  \
        }                                                                                        \
    } while (0)

static void write_row(const fd_rows *in, const fd_rows *out, int64_t r, const int32_t *id,
                      int64_t nk, double fill, uint8_t *mask)
{
    int64_t V = in->n_cols;
    int same = in->data == out->data && in->row_stride == out->row_stride;
    int runs = nk * 64 < V;
    switch (in->dtype) {
    case FD_F32: {
        const uint32_t *s = (const uint32_t *)in->data + r * in->row_stride;
        uint32_t *d = (uint32_t *)out->data + r * out->row_stride;
        float ff = (float)fill;
        uint32_t f;
        memcpy(&f, &ff, sizeof f);
        if (runs) {
            WRITE_RUNS(uint32_t, s, d, f);
        }
        else {
            WRITE_MASK(uint32_t, s, d, f);
        }
        break;
    }
    case FD_F64: {
        const uint64_t *s = (const uint64_t *)in->data + r * in->row_stride;
        uint64_t *d = (uint64_t *)out->data + r * out->row_stride;
        uint64_t f;
        memcpy(&f, &fill, sizeof f);
        if (runs) {
            WRITE_RUNS(uint64_t, s, d, f);
        }
        else {
            WRITE_MASK(uint64_t, s, d, f);
        }
        break;
    }
    case FD_F16:
    case FD_BF16: {
        const uint16_t *s = (const uint16_t *)in->data + r * in->row_stride;
        uint16_t *d = (uint16_t *)out->data + r * out->row_stride;
        uint16_t f = in->dtype == FD_F16 ? fd_float_to_half((float)fill)
                                         : fd_float_to_bf16((float)fill);
        if (runs) {
            WRITE_RUNS(uint16_t, s, d, f);
        }
        else {
            WRITE_MASK(uint16_t, s, d, f);
        }
        break;
    }
    }
}
#undef WRITE_RUNS
#undef WRITE_MASK

static int is_count(double x) { return x == x && x >= 0.0 && x == floor(x); }

fd_status fd_filter(fd_filter_kind kind, const fd_rows *in, const fd_rows *out, fd_param param,
                    fd_param min_keep, double filter_value, void *ws, fd_errinfo *err)
{
    if (err) {
        err->row = -1;
        err->index = -1;
    }
    if (!valid_dtype(in->dtype) || kind < FD_FILTER_TOP_K || kind > FD_FILTER_TOP_N_SIGMA) {
        return FD_EINVAL;
    }
    if (!valid_rows(in) || !valid_rows(out) || out->dtype != in->dtype ||
        out->n_rows != in->n_rows || out->n_cols != in->n_cols || in->n_cols > INT32_MAX) {
        return FD_ESHAPE;
    }
    int64_t V = in->n_cols;
    size_t a = fdi_align64((V > 0 ? (size_t)V : 1) * 4);
    float *v = (float *)ws;
    int32_t *id = (int32_t *)((char *)ws + a);
    void *fws_ = (char *)ws + 2 * a;

    for (int64_t r = 0; r < in->n_rows; r++) {
        double p = FD_PARAM_AT(param, r);
        double mk = FD_PARAM_AT(min_keep, r);
        int bad = !is_count(mk) || mk < 1.0;
        switch (kind) {
        case FD_FILTER_TOP_K:
            bad |= !is_count(p);
            break;
        case FD_FILTER_TOP_N_SIGMA:
            bad |= p != p;
            break;
        default:
            bad |= !(p >= 0.0 && p <= 1.0);
            break;
        }
        if (bad) {
            if (err) {
                err->row = r;
            }
            return FD_EINVAL;
        }
        fd_status st = fd_load_row(in, r, v, err);
        if (st != FD_OK) {
            if (err) {
                err->row = r;
            }
            return st;
        }
        int64_t keep = mk < (double)V ? (int64_t)mk : V;
        if (keep < 1) {
            keep = 1;
        }
        for (int64_t i = 0; i < V; i++) {
            id[i] = (int32_t)i;
        }
        int64_t n = V;
        switch (kind) {
        case FD_FILTER_TOP_K: {
            if (p != 0.0) {
                int64_t k = p < (double)V ? (int64_t)p : V;
                k = k > keep ? k : keep;
                int64_t c = -1;
                if (k < V) {
                    /* the block-max filter (select.c) shortens the list in place first; bm lives
                     * in the filter scratch's score row, unused until fdi_top_k */
                    size_t av = fdi_align64((size_t)V * 4);
                    float *bm = (float *)((char *)fws_ + av);
                    (void)fdi_ops()->block_max(v, V, bm);
                    c = fdi_block_candidates(v, V, bm, k, 0.0f, v, id, (char *)fws_ + 2 * av);
                }
                n = fdi_top_k(v, id, c >= 0 ? c : V, k, fws_);
            }
            break;
        }
        case FD_FILTER_TOP_P:
            n = fdi_top_p(v, id, V, p, keep, fws_);
            break;
        case FD_FILTER_MIN_P:
            n = fdi_min_p(v, id, V, p, keep, fws_);
            break;
        case FD_FILTER_TYPICAL:
            n = fdi_typical(v, id, V, p, keep, fws_);
            break;
        case FD_FILTER_EPSILON:
            n = fdi_epsilon(v, id, V, p, keep, fws_);
            break;
        case FD_FILTER_ETA:
            n = fdi_eta(v, id, V, p, keep, fws_);
            break;
        case FD_FILTER_TOP_N_SIGMA:
            n = fdi_top_n_sigma(v, id, V, p, keep, fws_);
            break;
        }
        /* the filter scratch is free again: its first row holds the write mask */
        write_row(in, out, r, id, n, filter_value, (uint8_t *)fws_);
    }
    return FD_OK;
}
