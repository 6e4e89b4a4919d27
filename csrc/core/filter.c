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
 * Passes over n candidates (the fused sampler's lists):
 *   top-k        radix count select, compaction (the sampler shortens the list by block maxima
 *                first: select.c).
 *   top-p        max, exp weights (stored) + their double sum, linear-bin weight select (bins,
 *                histogram, gather of the crossing bin: select.c), compaction. The tie group at
 *                the crossing value is resolved by walking it in id order with the running mass;
 *                min_keep beyond that is a count select.
 *   min-p        max, one counting pass of (z - max) < ln p (logit space: no exp), compaction.
 *   typical      max, exp weights, float32 log-probs and entropy (as torch computes them, so that
 *                near-ties of the score s = |-log p - H| fall the same way as in Hugging Face),
 *                scores, linear-bin weight select over the scores (ascending walk), compaction.
 *   epsilon/eta  max, exp + sum in one pass (eta: then the entropy's dot product), one pass
 *                comparing float32 probabilities (exp(z - max) * (1 / Z), torch's formula) against
 *                the float32 threshold.
 *   top-n-sigma  max, mean and population variance in double over finite logits (tns_x0: summed
 *                in 32 vectorised lanes and used only where a rigorous error bound shows that the
 *                element-order sums would decide every element alike; else the element-order
 *                sums), compaction.
 * The dense driver fd_filter makes the same decisions on the whole row without a candidate list:
 * the float32 row is read in place (other dtypes are converted into scratch), one block-max pass
 * gives the maximum and the NaN / +inf check, the filter's threshold is found as above, and the
 * output row is written in one pass straight from the input by the rule of fdi_keep (internal.h):
 * a threshold on the walk key, a split tie group as a range of ids, and epsilon / eta's "or among
 * the min_keep largest". Rules computed in mixed precision ((double)(z - max) < ln p,
 * w * (1 / Z) < eps, (double)z >= thr) become one float comparison through the smallest float
 * that passes (first_true: a bisection over the float keys, exact because each rule is monotone).
 * The k-th largest (top-k, min_keep) comes from the block-max candidates of select.c. The decision
 * step (fdi_decide) is shared with the fused sampler, which decides its first filter on a row
 * without -inf the same way and gathers only the survivors (sample.c).
 * The min_keep rules of Hugging Face differ per warper and are kept exactly: top-p, min-p and
 * typical keep the first min_keep of their walk (ties by id), epsilon and eta keep every token
 * >= the min_keep-th largest logit (ties kept).
 *
 * Sums are double in a fixed order; probabilities are float32, as in the Hugging Face warpers.
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
    uint32_t T = fdi_linear_cut(v, L.w, n, 0, max, target, fdi_top_p_dlim(n, z, target), L.radix,
                                &na, &wa, &ne);
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
    int64_t kept = n; /* min_keep 1: the maximum always passes, no count needed */
    if (min_keep > 1) {
        kept = 0;
        for (int64_t i = 0; i < n; i++) {
            kept += !((double)(v[i] - max) < lp);
        }
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

/* Hints for fdi_linear_cut (only its speed depends on them). Top-p: an element at distance
 * d = max - z weighs about exp(-d), so beyond d = log(2n / (Z - target)) even all n elements weigh
 * less than half the mass Z - target that the cut leaves out, and the walk crosses before. Typical:
 * a score s > h means -log p = s + h, a weight Z exp(-s - h), so the same bound holds beyond
 * log(2n Z / (Z - target)) - h (and beyond h). */
float fdi_top_p_dlim(int64_t n, double z, double target)
{
    double rest = z - target;
    if (!(rest > 0.0)) {
        return INFINITY;
    }
    return (float)log(2.0 * (double)n / rest);
}

float fdi_typical_dlim(int64_t n, double z, double target, float h)
{
    double rest = z - target;
    if (!(rest > 0.0)) {
        return INFINITY;
    }
    double d = log(2.0 * (double)n * z / rest) - (double)h;
    return (float)(d > (double)h ? d : (double)h);
}

/* The weights w = exp(z - max) (returns their sum Z) and the scores s = |-log p - H|, computed
 * as torch does: normalized = (z - max) - log(sum), p = exp(normalized), H = -nansum(normalized
 * * p), all float32 (the sum here is double, then rounded). */
static double typical_scores(const float *v, int64_t n, float max, fws L, float *hp)
{
    double z = fdi_weights(v, n, max, L.w);
    float lse = (float)log(z);
    for (int64_t i = 0; i < n; i++) {
        L.s[i] = v[i] - max; /* normalized = L.s - lse, formed inside the next two kernels */
    }
    float *pr = (float *)L.radix; /* free until the select */
    fdi_exp(L.s, n, lse, pr);
    double hsum = fdi_ops()->dot_shift_pos(pr, L.s, n, lse);
    float h = (float)(-hsum);
    for (int64_t i = 0; i < n; i++) {
        L.s[i] = fabsf(-(L.s[i] - lse) - h);
    }
    *hp = h;
    return z;
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
    float h = 0.0f;
    double z = typical_scores(v, n, max, L, &h);
    int64_t na = 0, ne = 0;
    double target = mass * z;
    uint32_t T = fdi_linear_cut(L.s, L.w, n, 1, 0.0f, target, fdi_typical_dlim(n, z, target, h),
                                L.radix, &na, NULL, &ne);
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

/* H = log Z - sum(w d) / Z with w = exp(d), d = z - max (-inf terms skipped), and
 * eta = min(eps, sqrt(eps) exp(-H)) in float32 (torch: epsilon is a float32 tensor). The weights
 * go to w and Z to *z: one exp + sum pass and one dot pass, the same bits as exp, sum and dot
 * in turn. */
static float eta_threshold(const float *v, int64_t n, float max, double eps, float *w, double *z)
{
    const fdi_isa_ops *ops = fdi_ops();
    *z = ops->exp_sum(v, n, max, w);
    double s1 = ops->dot_shift_pos(w, v, n, max);
    double h = log(*z) - s1 / *z;
    float epsf = (float)eps;
    float cand = sqrtf(epsf) * expf((float)-h);
    return epsf < cand ? epsf : cand;
}

/* Epsilon and eta: remove p < threshold unless z >= the min_keep-th largest; the threshold is
 * (float)eps, or eta's entropy-scaled one. */
static int64_t prob_cutoff(float *v, int32_t *id, int64_t n, double eps, int64_t min_keep,
                           void *ws, int eta)
{
    if (n <= 0 || eps <= 0.0) {
        return n;
    }
    float max = fdi_max(v, n);
    if (max == -INFINITY) {
        return n;
    }
    fws L = layout(ws, n);
    double z = 0.0;
    float thr;
    if (eta) {
        thr = eta_threshold(v, n, max, eps, L.w, &z);
    }
    else {
        z = fdi_weights(v, n, max, L.w);
        thr = (float)eps;
    }
    float zk = kth_largest(v, n, min_keep < n ? min_keep : n, max, L.radix);
    return keep_prob_or_top(v, id, L.w, n, z, thr, zk);
}

int64_t fdi_epsilon(float *v, int32_t *id, int64_t n, double eps, int64_t min_keep, void *ws)
{
    return prob_cutoff(v, id, n, eps, min_keep, ws, 0);
}

int64_t fdi_eta(float *v, int32_t *id, int64_t n, double eps, int64_t min_keep, void *ws)
{
    return prob_cutoff(v, id, n, eps, min_keep, ws, 1);
}

/* Rounds a double to the nearest float below / above it. */
static float float_down(double d)
{
    float f = (float)d;
    return (double)f > d ? nextafterf(f, -INFINITY) : f;
}
static float float_up(double d)
{
    float f = (float)d;
    return (double)f < d ? nextafterf(f, INFINITY) : f;
}

/* The smallest float y with pred(y) (pred monotone in y, equal on -0 and +0), searched over the
 * keys between lo (pred false) and hi (pred true): 32 steps at most. It turns a rule evaluated
 * in float or double arithmetic ((z - max) < ln p, w * (1 / Z) < eps, z >= thr in double) into
 * one float comparison with the same outcome for every value. */
typedef int (*fpred)(float y, const void *ctx);
static float first_true(float lo, float hi, fpred pred, const void *ctx)
{
    uint32_t a = fdi_key(lo), b = fdi_key(hi);
    while (b - a > 1) {
        uint32_t m = a + (b - a) / 2;
        if (pred(fdi_key_value(m, 0), ctx)) {
            b = m;
        }
        else {
            a = m;
        }
    }
    return fdi_key_value(b, 0);
}

static int ge_double(float y, const void *ctx) { return (double)y >= *(const double *)ctx; }

/* The top-n-sigma threshold as it was always computed: sums in element order, one chain each. */
static double tns_thr_sequential(const float *v, int64_t n, float max, double nsig)
{
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
    return (double)max - nsig * sqrt(ss / (double)cnt);
}

/* The float x0 such that z >= x0 <=> (double)z >= thr for every element z of v, thr being the
 * threshold of tns_thr_sequential. The sequential sums are one chain of dependent double
 * additions each (~4 cycles per element); here the same quantities are summed in 8 lanes
 * (vectorised) and the result is only used where it provably decides every element the same
 * way. Error bound (Higham, recursive / any-tree summation, u = 2^-53, gamma_k = k u / (1 - k u)):
 * both means lie within E = 2.2 u sum|z| of the exact mean; both sums of squares within
 * gamma_{n+2} of sum (z - m)^2 = S0 + n (m - mean)^2 for their own m, so they differ by at most
 * 2.1 gamma S + 1.1 n E^2; that bounds the two sigmas' difference (|sqrt a - sqrt b| <=
 * min(sqrt|a - b|, |a - b| / sqrt b), plus the roundings of the division and the root), then
 * n * sigma's and thr's (their roundings added). With delta twice that bound, the two thresholds
 * differ by less than delta, so when no element lies in [thr - delta, thr + delta] (one counting
 * pass, on floats rounded outwards) both classify every element alike and x0 is the upper float
 * bound. Otherwise (an element within ~1e-10 relative of the threshold: rare) the sequential
 * sums are computed. */
static float tns_x0(const float *v, int64_t n, float max, double nsig)
{
    const fdi_isa_ops *ops = fdi_ops();
    double sum = 0.0, asum = 0.0;
    int64_t cnt = 0;
    ops->moments(v, n, &sum, &asum, &cnt);
    double N = (double)cnt;
    double mean = sum / N;
    double ss = ops->sq_dev(v, n, mean);
    double sig = sqrt(ss / N);
    double thr = (double)max - nsig * sig;
    const double u = 0x1p-53;
    double g = 1.01 * (N + 4.0) * u;
    double em = 2.2 * u * 1.01 * asum;
    double dss = 2.1 * g * ss + 1.1 * N * em * em + N * 0x1p-1070;
    double var = ss / N, dvar = dss / N;
    double dsig = sqrt(dvar);
    if (var > 0.0 && dvar / sqrt(var) < dsig) {
        dsig = dvar / sqrt(var);
    }
    dsig += 4.2 * u * (sig + dsig);
    double dprod = nsig * dsig + 2.1 * u * nsig * (sig + dsig);
    double delta = 2.0 * (dprod + 2.1 * u * (fabs(thr) + dprod)) + 0x1p-1000;
    if (g < 0.01 && isfinite(thr) && isfinite(delta)) {
        float lo = float_down(thr - delta), hi = float_up(thr + delta);
        if (ops->count_in(v, n, lo, hi) == 0) {
            return hi;
        }
    }
    double t = tns_thr_sequential(v, n, max, nsig);
    if (ge_double(-INFINITY, &t)) {
        return -INFINITY;
    }
    if (!ge_double(INFINITY, &t)) {
        /* thr NaN (n = +inf times sigma = 0): no z passes the band, and the kept set is the
         * min_keep floor alone, at least the maximum (every filter keeps min_keep >= 1) */
        return max;
    }
    return first_true(-INFINITY, INFINITY, ge_double, &t);
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
    float x0 = tns_x0(v, n, max, nsig);
    if (min_keep > 1) {
        /* Both kept sets are upper sets of the values, so when the sigma band holds fewer than
         * min_keep tokens their union is the top-k set (ties with the k-th value included). */
        int64_t in_band = fdi_ops()->count_in(v, n, x0, INFINITY);
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
        j += x >= x0;
    }
    return j;
}

/* ---------------------------------------------------------------------------------------------
 * Dense driver.
 * --------------------------------------------------------------------------------------------- */

/* v[V] (the converted row, or the candidate list), id[V], bm[ceil(V / 64)] (block maxima),
 * then the filters' scratch (w, s, radix) */
size_t fd_filter_workspace(int64_t n_cols)
{
    size_t un = n_cols > 0 ? (size_t)n_cols : 1;
    return 2 * fdi_align64(un * 4) + fdi_align64((size_t)fdi_n_blocks((int64_t)un) * 4) +
           fdi_workspace(n_cols);
}

static int valid_dtype(fd_dtype t)
{
    return t == FD_F32 || t == FD_F64 || t == FD_F16 || t == FD_BF16;
}

/* Writes row r of out from in: column c keeps its value when fdi_keep_at(k, c), else becomes
 * `fill` (all = 1: every column kept). One pass, on the bit patterns; each in element is read
 * before the same out element is written, so out may be in. Float32 rows go through the
 * dispatched kernel (isa.c). */
#define WRITE_KEEP(T, f)                                                                         \
    do {                                                                                         \
        const T *s = (const T *)in->data + r * in->row_stride;                                   \
        T *d = (T *)out->data + r * out->row_stride;                                             \
        if (all) {                                                                               \
            if (d != s) {                                                                        \
                memmove(d, s, (size_t)V * sizeof(T));                                            \
            }                                                                                    \
            break;                                                                               \
        }                                                                                        \
        for (int64_t c = 0; c < V; c++) {                                                        \
            T keep = (T)0 - (T)fdi_keep_at(k, c);                                                \
            d[c] = (s[c] & keep) | (f & ~keep);                                                  \
        }                                                                                        \
    } while (0)

static void write_keep(const fd_rows *in, const fd_rows *out, int64_t r, const fdi_keep *k,
                       int all, double fill)
{
    int64_t V = in->n_cols;
    switch (in->dtype) {
    case FD_F32: {
        float ff = (float)fill;
        uint32_t f;
        memcpy(&f, &ff, sizeof f);
        const uint32_t *s = (const uint32_t *)in->data + r * in->row_stride;
        uint32_t *d = (uint32_t *)out->data + r * out->row_stride;
        if (all) {
            if (d != s) {
                memmove(d, s, (size_t)V * 4);
            }
            break;
        }
        fdi_ops()->keep_f32(k, s, d, V, f);
        break;
    }
    case FD_F64: {
        uint64_t f;
        memcpy(&f, &fill, sizeof f);
        WRITE_KEEP(uint64_t, f);
        break;
    }
    case FD_F16:
    case FD_BF16: {
        uint16_t f = in->dtype == FD_F16 ? fd_float_to_half((float)fill)
                                         : fd_float_to_bf16((float)fill);
        WRITE_KEEP(uint16_t, f);
        break;
    }
    }
}
#undef WRITE_KEEP

/* ---------------------------------------------------------------------------------------------
 * Dense decisions: each filter's kept set on the whole row x (ids = positions), as the rule of
 * fdi_keep, by the same computations as the list filter above on the list (x, 0..V-1). They
 * return 1 for "keep every column".
 * --------------------------------------------------------------------------------------------- */

typedef struct {
    const float *x; /* the float32 row */
    int64_t V;
    const float *bm; /* its block maxima */
    float max;
    fws L;
    float *cv; /* V floats and V ids of candidate-list scratch */
    int32_t *cid;
} drow;

/* keep a >= t (every tie) */
static void rule_ge(fdi_keep *k, const float *a, float t, int64_t V)
{
    k->a = a;
    k->t = t;
    k->neg = 0;
    k->lo = 0;
    k->hi = (int32_t)V;
    k->b = a;
    k->tb = NAN; /* b >= NaN never holds */
}

/* One past the position of the m-th element of a equal to t (0 if m <= 0, n if fewer). */
static int32_t nth_equal_end(const float *a, int64_t n, float t, int64_t m)
{
    if (m <= 0) {
        return 0;
    }
    for (int64_t i = 0; i < n; i++) {
        m -= a[i] == t;
        if (m == 0) {
            return (int32_t)(i + 1);
        }
    }
    return (int32_t)n;
}

/* The count cut of the descending walk of x at k (1 <= k <= V): value, count above and count
 * equal. From the block-max candidates when they apply (they hold every element >= the k-th
 * largest, so the counts above any of their values are the row's), else the whole row. */
static float kth_cut(const drow *R, int64_t k, int64_t *na, int64_t *ne)
{
    int64_t c = fdi_block_candidates(R->x, R->V, R->bm, k, 0.0f, R->cv, R->cid, R->L.radix);
    uint32_t T = fdi_radix_cut(c >= 0 ? R->cv : R->x, NULL, c >= 0 ? c : R->V, 0, (double)k,
                               R->L.radix, na, NULL, ne, NULL);
    return fdi_key_value(T, 0);
}

/* keep_prefix on the row: the first L of the descending walk, ties by ascending id (or by
 * descending id when ties_high) */
static int dense_prefix(const drow *R, int64_t Lk, int ties_high, fdi_keep *k)
{
    if (Lk >= R->V) {
        return 1;
    }
    int64_t na = 0, ne = 0;
    float tv = kth_cut(R, Lk, &na, &ne);
    rule_ge(k, R->x, tv, R->V);
    if (ties_high) {
        k->lo = nth_equal_end(R->x, R->V, tv, ne - (Lk - na));
    }
    else {
        k->hi = nth_equal_end(R->x, R->V, tv, Lk - na);
    }
    return 0;
}

static int dense_top_k(const drow *R, double p, int64_t keep, fdi_keep *k)
{
    if (p == 0.0) {
        return 1;
    }
    int64_t kk = p < (double)R->V ? (int64_t)p : R->V;
    kk = kk > keep ? kk : keep;
    if (kk >= R->V) {
        return 1;
    }
    int64_t na = 0, ne = 0;
    rule_ge(k, R->x, kth_cut(R, kk, &na, &ne), R->V);
    return 0;
}

static int dense_top_p(const drow *R, double p, int64_t min_keep, fdi_keep *k)
{
    int64_t V = R->V;
    if (V <= 0 || p >= 1.0) {
        return 1;
    }
    float max = R->max;
    double z = fdi_weights(R->x, V, max, R->L.w);
    double target = p * z;
    int64_t na = 0, ne = 0;
    double wa = 0.0;
    uint32_t T = fdi_linear_cut(R->x, R->L.w, V, 0, max, target, fdi_top_p_dlim(V, z, target),
                                R->L.radix, &na, &wa, &ne);
    float vt = fdi_key_value(T, 0);
    float wtf = 0.0f;
    if (max != -INFINITY) {
        fdi_exp(&vt, 1, max, &wtf);
    }
    double wt = (double)wtf;
    int64_t take = 0;
    double cum = wa;
    while (take < ne && cum < target) {
        take++;
        cum += wt;
    }
    if (na + take >= min_keep) {
        rule_ge(k, R->x, vt, V);
        if (take < ne) { /* the highest ids of the tie group (fdi_top_p) */
            k->lo = nth_equal_end(R->x, V, vt, ne - take);
        }
        return 0;
    }
    return dense_prefix(R, min_keep, 1, k);
}

typedef struct {
    float max;
    double lp;
} minp_ctx;
static int minp_keep(float y, const void *ctx)
{
    const minp_ctx *c = (const minp_ctx *)ctx;
    return !((double)(y - c->max) < c->lp);
}

static int dense_min_p(const drow *R, double p, int64_t min_keep, fdi_keep *k)
{
    if (R->V <= 0 || p <= 0.0 || R->max == -INFINITY) {
        return 1;
    }
    minp_ctx c = {R->max, log(p)};
    float x0 = first_true(-INFINITY, R->max, minp_keep, &c); /* keep <=> x >= x0 */
    if (min_keep > 1 && fdi_ops()->count_in(R->x, R->V, x0, INFINITY) < min_keep) {
        return dense_prefix(R, min_keep, 0, k);
    }
    rule_ge(k, R->x, x0, R->V);
    return 0;
}

static int dense_typical(const drow *R, double mass, int64_t min_keep, fdi_keep *k)
{
    int64_t V = R->V;
    /* mass 1 keeps everything, as top_p(1) does (HF's class rejects 1; the walk below would
     * reach the whole mass early and drop tokens whose probability underflows) */
    if (V <= 0 || R->max == -INFINITY || mass >= 1.0) {
        return 1;
    }
    fws L = R->L;
    float h = 0.0f;
    double z = typical_scores(R->x, V, R->max, L, &h);
    int64_t na = 0, ne = 0;
    double target = mass * z;
    uint32_t T = fdi_linear_cut(L.s, L.w, V, 1, 0.0f, target, fdi_typical_dlim(V, z, target, h),
                                L.radix, &na, NULL, &ne);
    int64_t take = ne;
    if (na + ne < min_keep) { /* keep_prefix on the ascending walk of the scores */
        if (min_keep >= V) {
            return 1;
        }
        T = fdi_radix_cut(L.s, NULL, V, 1, (double)min_keep, L.radix, &na, NULL, &ne, NULL);
        take = min_keep - na;
    }
    /* keep s < ts, and s == ts up to the take-th of the tie group (s >= 0: no signed zeros) */
    float ts = fdi_key_value(T, 1);
    k->a = L.s;
    k->neg = 0x80000000u;
    k->t = -ts;
    k->lo = 0;
    k->hi = take >= ne ? (int32_t)V : nth_equal_end(L.s, V, ts, take);
    k->b = R->x;
    k->tb = NAN;
    return 0;
}

typedef struct {
    float inv, thr;
} prob_ctx;
static int prob_keep(float w, const void *ctx)
{
    const prob_ctx *c = (const prob_ctx *)ctx;
    return !(w * c->inv < c->thr);
}

/* keep_prob_or_top on the row: !(w * (1 / Z) < thr) (as w >= w0) or x >= the min_keep-th
 * largest */
static int dense_prob(const drow *R, double z, float thr, int64_t min_keep, fdi_keep *k)
{
    int64_t V = R->V;
    prob_ctx c = {(float)(1.0 / z), thr};
    float w0 = first_true(0.0f, INFINITY, prob_keep, &c);
    int64_t mk = min_keep < V ? min_keep : V;
    float zk = R->max;
    if (mk > 1) {
        int64_t na = 0, ne = 0;
        zk = kth_cut(R, mk, &na, &ne);
    }
    rule_ge(k, R->L.w, w0, V);
    k->b = R->x;
    k->tb = zk;
    return 0;
}

static int dense_epsilon(const drow *R, double eps, int64_t min_keep, fdi_keep *k)
{
    if (R->V <= 0 || eps <= 0.0 || R->max == -INFINITY) {
        return 1;
    }
    double z = fdi_weights(R->x, R->V, R->max, R->L.w);
    return dense_prob(R, z, (float)eps, min_keep, k);
}

static int dense_eta(const drow *R, double eps, int64_t min_keep, fdi_keep *k)
{
    if (R->V <= 0 || eps <= 0.0 || R->max == -INFINITY) {
        return 1;
    }
    double z = 0.0;
    float eta = eta_threshold(R->x, R->V, R->max, eps, R->L.w, &z);
    return dense_prob(R, z, eta, min_keep, k);
}

static int dense_top_n_sigma(const drow *R, double nsig, int64_t min_keep, fdi_keep *k)
{
    if (R->V <= 0 || !(nsig > 0.0) || R->max == -INFINITY) {
        return 1;
    }
    float x0 = tns_x0(R->x, R->V, R->max, nsig);
    if (min_keep > 1 && fdi_ops()->count_in(R->x, R->V, x0, INFINITY) < min_keep) {
        return dense_top_k(R, (double)min_keep, min_keep, k);
    }
    rule_ge(k, R->x, x0, R->V);
    return 0;
}

/* The kept set of filter `kind` on the row x (ids = positions; bm its block maxima, max its
 * maximum), as the keep rule *k; returns 1 for "keep every column". p and min_keep are already
 * validated (min_keep >= 1, clipped to V). fws is the filters' scratch (fdi_workspace(V)); cv / cid
 * are V floats and V ids of candidate scratch (cv NULL: the scores row s of fws, free when x is
 * not there). The rule may read fws (the weights or scores), which stays valid until fws is
 * reused. *weights (may be NULL) is set when fws starts with the float32 weights exp(x - max) of
 * every column (top-p, typical, epsilon, eta): the fused sampler's pick reuses them. */
int fdi_decide(fd_filter_kind kind, const float *x, int64_t V, const float *bm, float max,
               double p, int64_t min_keep, void *fws_, float *cv, int32_t *cid, fdi_keep *k,
               int *weights)
{
    drow R = {x, V, bm, max, layout(fws_, V), cv, cid};
    if (!cv) { /* the candidate values go to the (then unused) s row */
        R.cv = R.L.s;
    }
    int all = 1, w = 0;
    switch (kind) {
    case FD_FILTER_TOP_K:
        all = dense_top_k(&R, p, min_keep, k);
        break;
    case FD_FILTER_TOP_P:
        all = dense_top_p(&R, p, min_keep, k);
        w = !(p >= 1.0);
        break;
    case FD_FILTER_MIN_P:
        all = dense_min_p(&R, p, min_keep, k);
        break;
    case FD_FILTER_TYPICAL:
        all = dense_typical(&R, p, min_keep, k);
        w = !(p >= 1.0);
        break;
    case FD_FILTER_EPSILON:
        all = dense_epsilon(&R, p, min_keep, k);
        w = !(p <= 0.0);
        break;
    case FD_FILTER_ETA:
        all = dense_eta(&R, p, min_keep, k);
        w = !(p <= 0.0);
        break;
    case FD_FILTER_TOP_N_SIGMA:
        all = dense_top_n_sigma(&R, p, min_keep, k);
        break;
    }
    if (weights) {
        *weights = w && V > 0 && max != -INFINITY;
    }
    return all;
}

/* Whether out's row r overlaps in's row r other than exactly (then the decisions are made on a
 * converted copy of the row). */
static int partial_overlap(const fd_rows *in, const fd_rows *out, int64_t r)
{
    const char *a = (const char *)in->data + (size_t)(r * in->row_stride) * 4;
    const char *b = (const char *)out->data + (size_t)(r * out->row_stride) * 4;
    size_t l = (size_t)in->n_cols * 4;
    return a != b && a < b + l && b < a + l;
}

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
    if (!fdi_valid_rows(in) || !fdi_valid_rows(out) || out->dtype != in->dtype ||
        out->n_rows != in->n_rows || out->n_cols != in->n_cols || in->n_cols > INT32_MAX) {
        return FD_ESHAPE;
    }
    int64_t V = in->n_cols;
    size_t a = fdi_align64((V > 0 ? (size_t)V : 1) * 4);
    float *v = (float *)ws;
    int32_t *id = (int32_t *)((char *)ws + a);
    float *bm = (float *)((char *)ws + 2 * a);
    void *fws_ = (char *)bm + fdi_align64((size_t)fdi_n_blocks(V > 0 ? V : 1) * 4);
    const fdi_isa_ops *ops = fdi_ops();

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
        /* x: the float32 row, read in place when stored as float32 (the block maxima pass is
         * also the NaN / +inf check), else converted into v */
        const float *x = v;
        int failed = 0;
        if (in->dtype == FD_F32 && !partial_overlap(in, out, r)) {
            x = (const float *)in->data + r * in->row_stride;
            failed = ops->block_max(x, V, bm);
        }
        if (x == v || failed) {
            fd_status st = fd_load_row(in, r, v, err);
            if (st != FD_OK) {
                if (err) {
                    err->row = r;
                }
                return st;
            }
            x = v;
            (void)ops->block_max(x, V, bm);
        }
        float max = -INFINITY;
        for (int64_t b = 0; b < fdi_n_blocks(V); b++) {
            max = bm[b] > max ? bm[b] : max;
        }
        int64_t keep = mk < (double)V ? (int64_t)mk : V;
        if (keep < 1) {
            keep = 1;
        }
        fdi_keep k;
        int all = fdi_decide(kind, x, V, bm, max, p, keep, fws_, x == v ? NULL : v, id, &k, NULL);
        write_keep(in, out, r, &k, all, filter_value);
    }
    return FD_OK;
}
