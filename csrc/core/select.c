/*
 * select.c: radix selection over float bit patterns, the one selection primitive of the core.
 *
 * Every truncation filter needs a threshold that is defined by a walk over the candidates in
 * descending order ("the k-th largest", "the value at which the running probability mass reaches
 * p", "the score at which typical mass reaches m"). Sorting V = 128,256 logits per row to find one
 * threshold is O(V log V) with data-dependent branches; a radix select finds it in three
 * histogram passes, of which only the first reads the whole list.
 *
 * Keys. A float maps to a uint32 whose unsigned order is the float order: negative floats have all
 * bits flipped, non-negative ones get the sign bit set. -0.0 is first turned into +0.0 (x + 0.0f)
 * so the two zeros, equal as values, share one key. -inf maps to 0x007fffff; NaN never occurs (the
 * loaders reject it). A caller that needs an ascending walk (typical sampling walks its scores
 * upwards) passes invert = 1 and the keys are complemented.
 *
 * Passes. Digits of 11, 11 and 10 bits (key bits 31..21, 20..10, 9..0): 2048-bin histograms of
 * uint32 counts and double weights (24 KiB, L1/L2 resident). Pass 1 histograms every element and
 * walks the bins from the top until the cumulative count (or weight) reaches the target; the
 * elements of that bin are then gathered (key and weight) into scratch, and passes 2 and 3 read
 * only the gathered bucket. The full list is therefore read twice (histogram, gather). Once a
 * bucket holds at most FDI_SMALL (64) elements, or the whole list does, the bucket is finished by
 * an insertion sort instead: clearing 24 KiB of bins would cost more than sorting 64 keys, and the
 * fused sampler runs its later filters on short candidate lists.
 *
 * The cut. The result is the first key T of the descending walk whose inclusive cumulative measure
 * reaches the target (count: >= k; weight: >= target), with the count and weight strictly above T
 * and the count and weight equal to T. Only non-empty bins can be the cut. In weight mode a walk
 * that never reaches the target (rounding: the target equals the total) ends at the last
 * non-empty bin, i.e. the smallest key present. Weights are summed in double in a fixed order
 * (bin order, element order within a pass), so results are bitwise reproducible.
 *
 * Linear bins (fdi_linear_cut), the weight-mode cut of top-p and typical on long lists (>= 2048):
 * pass 1 above spends 11 bits on sign and exponent, so a flat row of 128k logits lands in a few
 * dozen bins and the crossing bucket holds tens of thousands of elements. Instead the walk key is
 * mapped to a distance d >= 0 (max - z for the descending walk of z, the score itself for the
 * ascending walk of typical), and d to bin min(2047, (int)(d * 128)), monotone in the walk, so the
 * bin masses find the crossing bin exactly; only that bin (a few hundred elements on a flat row)
 * is gathered and finished by the radix passes. Elements beyond a caller's hint of where the
 * crossing cannot lie are kept out of the bins unless the walk gets there (see fdi_linear_cut).
 * Same result contract as fdi_radix_cut, which remains the path for short lists, zero targets and
 * walks that rounding keeps below the target.
 *
 * Also here: the row primitives every filter shares. fdi_exp / fdi_weights / fdi_max call the
 * dispatched copies of isa.c (a branch-free polynomial expf, never libm's expf per element; sums
 * in a fixed lane and block order, so every ISA gives the same bits).
 *
 * Block-max delegate filter (fdi_block_candidates): for "the k largest" the k-th largest of the
 * 64-element block maxima is a lower bound t of the k-th largest element; only blocks whose
 * maximum is >= t are read again, and their elements >= t form an exact candidate list (ties
 * kept). Used by top-k (dense and fused) when k <= number of blocks and t is finite; on a random
 * 128k row and k = 50 it reads ~50 of 2004 blocks instead of histogramming the row twice.
 */
#include "internal.h"

#include <string.h>

#define FDI_BINS 2048
#define FDI_SMALL 64
#define FDI_LCOPIES 4
#define FDI_LSTRIDE (FDI_LBINS + 64) /* a histogram copy: the bins, then 64 junk slots */
#define FDI_LMIN 2048     /* shorter lists go straight to the radix select */

typedef struct {
    uint32_t key;
    int64_t n_above, n_eq;
    double w_above;
    int found;
} fdi_cut;

/* Radix scratch (each part 64-byte aligned): uint32 gkey[n], float gw[n] (the gathered bucket),
 * uint32 hist count[2048], double hist weight[2048], double linear hist[4][2048 + 64]. */
size_t fdi_radix_workspace(int64_t n)
{
    size_t un = n > 0 ? (size_t)n : 1;
    return 2 * fdi_align64(un * 4) + fdi_align64(FDI_BINS * 4) + fdi_align64(FDI_BINS * 8) +
           fdi_align64(FDI_LCOPIES * FDI_LSTRIDE * 8);
}

/* The filters' scratch: float w[n] and float s[n] (per-element weights and scores), then the
 * radix scratch. */
size_t fdi_workspace(int64_t n)
{
    size_t un = n > 0 ? (size_t)n : 1;
    return 2 * fdi_align64(un * 4) + fdi_radix_workspace(n);
}

/* Max by the dispatched argmax kernel (isa.c), without locating it; max is exact, so every copy
 * gives the same value (a zero maximum is +0). Callers pass rows without NaN or +inf. */
float fdi_max(const float *v, int64_t n)
{
    float m = -INFINITY;
    (void)fdi_ops()->argmax(v, n, &m, NULL);
    return m;
}

/* sum w * d over the elements with w > 0 (a -inf d has w = 0 and adds nothing, not NaN), in
 * double with 32 interleaved lanes combined by halves: deterministic, and not bound by the latency
 * of one chain of dependent additions. isa.c's dot_shift_pos gives these bits on every path (the
 * tests check it). */
#define FDI_DLANES 32
double fdi_dot_pos(const float *w, const float *d, int64_t n)
{
    double acc[FDI_DLANES] = {0};
    int64_t i = 0;
    for (; i + FDI_DLANES <= n; i += FDI_DLANES) {
        for (int j = 0; j < FDI_DLANES; j++) {
            acc[j] += fdi_dsel(w[i + j] > 0.0f, (double)w[i + j] * (double)d[i + j], 0.0);
        }
    }
    for (; i < n; i++) {
        acc[0] += fdi_dsel(w[i] > 0.0f, (double)w[i] * (double)d[i], 0.0);
    }
    for (int h = FDI_DLANES / 2; h >= 1; h /= 2) {
        for (int j = 0; j < h; j++) {
            acc[j] += acc[j + h];
        }
    }
    return acc[0];
}

/* out[i] = exp(x[i] - shift); out may be x. The dispatched copy (isa.c) of select.c's exp. */
void fdi_exp(const float *x, int64_t n, float shift, float *out)
{
    fdi_ops()->exp(x, n, shift, out);
}

/* w = exp(v - max) and its sum in exp_sum's fixed order (isa.c). */
double fdi_weights(const float *v, int64_t n, float max, float *w)
{
    if (max == -INFINITY) {
        for (int64_t i = 0; i < n; i++) {
            w[i] = 0.0f;
        }
        return 0.0;
    }
    return fdi_ops()->exp_sum(v, n, max, w);
}

/* Sorts m (key, weight) pairs by descending key (stable) and finds the cut among them, starting
 * from n_above / w_above. Keys with equal value are adjacent afterwards, so groups are runs. */
static void cut_small(uint32_t *key, float *w, int64_t m, int weighted, double target,
                      int64_t n_above, double w_above, fdi_cut *out)
{
    for (int64_t i = 1; i < m; i++) {
        uint32_t k = key[i];
        float x = weighted ? w[i] : 0.0f;
        int64_t j = i;
        while (j > 0 && key[j - 1] < k) {
            key[j] = key[j - 1];
            if (weighted) {
                w[j] = w[j - 1];
            }
            j--;
        }
        key[j] = k;
        if (weighted) {
            w[j] = x;
        }
    }
    int64_t cn = n_above;
    double cw = w_above;
    int64_t i = 0;
    while (i < m) {
        int64_t g = i;
        double gw = 0.0;
        while (g < m && key[g] == key[i]) {
            if (weighted) {
                gw += (double)w[g];
            }
            g++;
        }
        int64_t gn = g - i;
        int last = g >= m;
        int hit = weighted ? (cw + gw >= target) : ((double)(cn + gn) >= target);
        if (hit || last) {
            out->key = key[i];
            out->n_above = cn;
            out->w_above = cw;
            out->n_eq = gn;
            out->found = hit;
            return;
        }
        cn += gn;
        cw += gw;
        i = g;
    }
}

/* Walks the bins from the top. Returns the cut bin and moves *cn / *cw to the totals above it;
 * *hit says whether the target was reached (else the last non-empty bin is returned). */
static int walk_bins(const uint32_t *hc, const double *hw, int nbins, int weighted, double target,
                     int64_t *cn, double *cw, int *hit)
{
    int last = -1;
    int64_t n = *cn;
    double wsum = *cw;
    int64_t n_last = n;
    double w_last = wsum;
    for (int b = nbins - 1; b >= 0; b--) {
        if (hc[b] == 0) {
            continue;
        }
        double bw = weighted ? hw[b] : 0.0;
        int reached = weighted ? (wsum + bw >= target) : ((double)(n + hc[b]) >= target);
        if (reached) {
            *cn = n;
            *cw = wsum;
            *hit = 1;
            return b;
        }
        last = b;
        n_last = n;
        w_last = wsum;
        n += hc[b];
        wsum += bw;
    }
    *hit = 0;
    *cn = n_last;
    *cw = w_last;
    return last;
}

static void histogram(const uint32_t *k, const float *w, int64_t m, int shift, uint32_t mask,
                      uint32_t *hc, double *hw)
{
    memset(hc, 0, FDI_BINS * sizeof *hc);
    if (w) {
        memset(hw, 0, FDI_BINS * sizeof *hw);
        for (int64_t i = 0; i < m; i++) {
            uint32_t d = (k[i] >> shift) & mask;
            hc[d]++;
            hw[d] += (double)w[i];
        }
    }
    else {
        for (int64_t i = 0; i < m; i++) {
            hc[(k[i] >> shift) & mask]++;
        }
    }
}

/* Passes 2 and 3 of the radix select on a gathered bucket of m keys (with weights when weighted)
 * whose top 11 bits are b1, starting from the count cn and weight cw above the bucket. */
static void finish_bucket(uint32_t *gk, float *gw, int64_t m, int weighted, double target,
                          int64_t cn, double cw, uint32_t b1, uint32_t *hc, double *hw, fdi_cut *c)
{
    if (m <= FDI_SMALL) {
        cut_small(gk, gw, m, weighted, target, cn, cw, c);
        return;
    }
    int hit = 0;
    /* pass 2: the bucket, digit = key bits 20..10 */
    histogram(gk, weighted ? gw : NULL, m, 10, 0x7ffu, hc, hw);
    uint32_t b2 = (uint32_t)walk_bins(hc, hw, FDI_BINS, weighted, target, &cn, &cw, &hit);
    uint32_t prefix = (b1 << 11) | b2;
    int64_t m2 = 0;
    for (int64_t i = 0; i < m; i++) {
        if ((gk[i] >> 10) == prefix) {
            gk[m2] = gk[i];
            gw[m2] = gw[i];
            m2++;
        }
    }
    if (m2 <= FDI_SMALL) {
        cut_small(gk, gw, m2, weighted, target, cn, cw, c);
        return;
    }

    /* pass 3: the sub-bucket, digit = key bits 9..0 */
    histogram(gk, weighted ? gw : NULL, m2, 0, 0x3ffu, hc, hw);
    uint32_t b3 = (uint32_t)walk_bins(hc, hw, 1024, weighted, target, &cn, &cw, &hit);
    c->key = (prefix << 10) | b3;
    c->n_above = cn;
    c->w_above = cw;
    c->n_eq = hc[b3];
    c->found = hit;
}

/* Count mode (w == NULL): the first key T of the descending walk with count(key >= T) >= target.
 * Weight mode: the first key with weight(key >= T) >= target, else the smallest key present
 * (*found = 0). Returns T (n > 0), with the count and weight strictly above it and the count at it.
 */
uint32_t fdi_radix_cut(const float *v, const float *w, int64_t n, int invert, double target,
                       void *ws, int64_t *n_above, double *w_above, int64_t *n_eq, int *found)
{
    size_t un = n > 0 ? (size_t)n : 1;
    char *p = (char *)ws;
    uint32_t *gk = (uint32_t *)p;
    float *gw = (float *)(p + fdi_align64(un * 4));
    uint32_t *hc = (uint32_t *)(p + 2 * fdi_align64(un * 4));
    double *hw = (double *)(p + 2 * fdi_align64(un * 4) + fdi_align64(FDI_BINS * 4));
    uint32_t flip = invert ? 0xffffffffu : 0u;
    int weighted = w != NULL;
    fdi_cut c;
    memset(&c, 0, sizeof c);

    if (n <= FDI_SMALL) {
        for (int64_t i = 0; i < n; i++) {
            gk[i] = fdi_key(v[i]) ^ flip;
            gw[i] = weighted ? w[i] : 0.0f;
        }
        cut_small(gk, gw, n, weighted, target, 0, 0.0, &c);
        goto done;
    }

    /* pass 1: every element, digit = key bits 31..21 (keys computed on the fly, not stored) */
    memset(hc, 0, FDI_BINS * sizeof *hc);
    if (weighted) {
        memset(hw, 0, FDI_BINS * sizeof *hw);
        for (int64_t i = 0; i < n; i++) {
            uint32_t d = (fdi_key(v[i]) ^ flip) >> 21;
            hc[d]++;
            hw[d] += (double)w[i];
        }
    }
    else {
        for (int64_t i = 0; i < n; i++) {
            hc[(fdi_key(v[i]) ^ flip) >> 21]++;
        }
    }
    int64_t cn = 0;
    double cw = 0.0;
    int hit = 0;
    uint32_t b1 = (uint32_t)walk_bins(hc, hw, FDI_BINS, weighted, target, &cn, &cw, &hit);

    /* gather the bucket: the only other pass over the whole list */
    int64_t m = 0;
    int64_t i0 = 0;
    for (; i0 + 16 <= n; i0 += 16) { /* blocks without a bucket member are skipped */
        uint32_t any = 0;
        for (int k = 0; k < 16; k++) {
            any |= (uint32_t)(((fdi_key(v[i0 + k]) ^ flip) >> 21) == b1);
        }
        if (!any) {
            continue;
        }
        for (int k = 0; k < 16; k++) {
            uint32_t key = fdi_key(v[i0 + k]) ^ flip;
            gk[m] = key;
            gw[m] = weighted ? w[i0 + k] : 0.0f;
            m += (key >> 21) == b1;
        }
    }
    for (; i0 < n; i0++) {
        uint32_t key = fdi_key(v[i0]) ^ flip;
        gk[m] = key;
        gw[m] = weighted ? w[i0] : 0.0f;
        m += (key >> 21) == b1;
    }
    finish_bucket(gk, gw, m, weighted, target, cn, cw, b1, hc, hw, &c);

done:
    *n_above = c.n_above;
    if (w_above) {
        *w_above = c.w_above;
    }
    *n_eq = c.n_eq;
    if (found) {
        *found = c.found;
    }
    return c.key;
}

/* Weight-mode radix cut over stored keys gk[0..m) (any top digits), starting from cn / cw. */
static void finish_any(uint32_t *gk, float *gw, int64_t m, double target, int64_t cn, double cw,
                       uint32_t *hc, double *hw, fdi_cut *c)
{
    if (m <= FDI_SMALL) {
        cut_small(gk, gw, m, 1, target, cn, cw, c);
        return;
    }
    int hit = 0;
    histogram(gk, gw, m, 21, 0x7ffu, hc, hw);
    uint32_t b1 = (uint32_t)walk_bins(hc, hw, FDI_BINS, 1, target, &cn, &cw, &hit);
    int64_t m1 = 0;
    for (int64_t i = 0; i < m; i++) {
        if ((gk[i] >> 21) == b1) {
            gk[m1] = gk[i];
            gw[m1] = gw[i];
            m1++;
        }
    }
    finish_bucket(gk, gw, m1, 1, target, cn, cw, b1, hc, hw, c);
}

/* Adds w[i] to bin bin[i] of copy i % 4 of the interleaved histogram lh (copies FDI_LSTRIDE
 * apart, each in element order). */
static void lhist(const uint32_t *bin, const float *w, int64_t n, double *lh)
{
    double *h0 = lh, *h1 = lh + FDI_LSTRIDE, *h2 = lh + 2 * FDI_LSTRIDE, *h3 = lh + 3 * FDI_LSTRIDE;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        h0[bin[i]] += (double)w[i];
        h1[bin[i + 1]] += (double)w[i + 1];
        h2[bin[i + 2]] += (double)w[i + 2];
        h3[bin[i + 3]] += (double)w[i + 3];
    }
    for (; i < n; i++) {
        lh[(i & 3) * FDI_LSTRIDE + bin[i]] += (double)w[i];
    }
}

/* The weight-mode cut of fdi_radix_cut (same result contract, weights required), found through
 * linear bins of a distance key instead of the float-bit digits of pass 1. The key of the walk is
 * v (descending, invert = 0: distance d = base - v with base = max v) or the non-negative score v
 * (ascending, invert = 1: d = v). d is monotone in the walk order and the bin monotone in d, so
 * every bin holds a contiguous stretch of the walk: the bin masses (4 interleaved histogram copies,
 * element i in copy i % 4, so that a row whose elements crowd into one bin is not one chain of
 * dependent additions; copies added ((h0 + h1) + (h2 + h3)), bins in walk order) locate the bin
 * holding the crossing exactly, and only that bin is gathered and finished by the radix passes
 * (starting from the mass above it). With 128 bins per unit of d, a flat 128k row leaves a few
 * hundred elements in the crossing bin, where the float-bit digits of a narrow value range left
 * tens of thousands for pass 2. Short lists, target <= 0 (the first element of the walk: the bin
 * walk cannot tell an empty bin from a zero-mass one) and a walk that rounding keeps below the
 * target go to fdi_radix_cut.
 *
 * The far tail. The walk stops at the crossing and never reads a bin beyond it, so the caller
 * passes a distance dlim beyond which it expects the crossing not to lie (top-p: where even n
 * elements could not hold half the mass left out; a hint only, any value -- NaN, inf -- gives the
 * same result). An element whose bin is K = bin(dlim) + 1 or beyond is added to one of 64 junk
 * slots after its copy's bins (slot i % 64) instead of its bin; a walk that reaches K without
 * crossing adds the far elements to their bins in a second pass (same copies, same element order:
 * the bins' sums are bit for bit those of a single pass), stores the true bins again and goes on.
 * The bin masses that the walk reads, the crossing bin, the mass and the count above it are
 * therefore always those of the full histogram (a junk slot is above every bin < K, so the count
 * and gather of a crossing bin < K are unchanged). On a peaked row 80% of the elements sit in the
 * last bin, where their additions formed one chain of dependent adds per copy; the junk slots
 * spread them over 64 independent ones. The bin pass and the count-and-gather pass are the
 * dispatched lbins / bin_gather kernels of isa.c (compares and data movement: every ISA gives the
 * same bins). */
uint32_t fdi_linear_cut(const float *v, const float *w, int64_t n, int invert, float base,
                        double target, float dlim, void *ws, int64_t *n_above, double *w_above,
                        int64_t *n_eq)
{
    if (n < FDI_LMIN || !(target > 0.0) || (!invert && base == -INFINITY)) {
        return fdi_radix_cut(v, w, n, invert, target, ws, n_above, w_above, n_eq, NULL);
    }
    size_t un = (size_t)n;
    char *p = (char *)ws;
    uint32_t *gk = (uint32_t *)p;
    float *gw = (float *)(p + fdi_align64(un * 4));
    uint32_t *hc = (uint32_t *)(p + 2 * fdi_align64(un * 4));
    double *hw = (double *)(p + 2 * fdi_align64(un * 4) + fdi_align64(FDI_BINS * 4));
    double *lh = (double *)((char *)hw + fdi_align64(FDI_BINS * 8));
    uint32_t flip = invert ? 0xffffffffu : 0u;

    /* the bins below K = bin(dlim) + 1 (the far ones to junk slots), into gk (the gather below
     * overwrites them in place: it writes position m <= i after reading position i) */
    uint32_t *bin = gk;
    uint32_t K = FDI_LBINS;
    if (dlim >= 0.0f) { /* false for NaN */
        K = fdi_lbin(dlim) + 1;
    }
    const fdi_isa_ops *ops = fdi_ops();
    ops->lbins(v, n, invert, base, 0, K, bin);
    memset(lh, 0, FDI_LCOPIES * FDI_LSTRIDE * sizeof *lh);
    lhist(bin, w, n, lh);
    double *h0 = lh, *h1 = lh + FDI_LSTRIDE, *h2 = lh + 2 * FDI_LSTRIDE, *h3 = lh + 3 * FDI_LSTRIDE;
    double cw = 0.0;
    int64_t bc = -1;
    for (int64_t b = 0; b < FDI_LBINS; b++) {
        if (b == (int64_t)K) { /* the walk goes on beyond the hint: the far bins, then all bins */
            ops->lbins(v, n, invert, base, K, FDI_LBINS, bin);
            lhist(bin, w, n, lh);
            ops->lbins(v, n, invert, base, 0, FDI_LBINS, bin);
        }
        double bw = (h0[b] + h1[b]) + (h2[b] + h3[b]);
        if (cw + bw >= target) {
            bc = b;
            break;
        }
        cw += bw;
    }
    if (bc < 0) {
        return fdi_radix_cut(v, w, n, invert, target, ws, n_above, w_above, n_eq, NULL);
    }

    /* gather the crossing bin (keys and weights) and count the elements before it */
    int64_t m = 0;
    int64_t cn = ops->bin_gather(bin, n, (uint32_t)bc, v, w, flip, gk, gw, &m);
    fdi_cut c;
    memset(&c, 0, sizeof c);
    finish_any(gk, gw, m, target, cn, cw, hc, hw, &c);
    *n_above = c.n_above;
    if (w_above) {
        *w_above = c.w_above;
    }
    *n_eq = c.n_eq;
    return c.key;
}

/* The float whose key (complemented when invert) is `key`: the inverse of fdi_key. */
float fdi_key_value(uint32_t key, int invert)
{
    uint32_t k = invert ? ~key : key;
    uint32_t u = (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Stable in-place compaction of (v, id) by the keys of src (src may be v): keeps an element whose
 * key is above T, and the first take_eq elements (in list order, i.e. lowest ids) whose key is T.
 * Filters usually keep a small fraction, so the common cases (take none or all of the tie group)
 * compare 16 values at a time with the float threshold equivalent to the key threshold (no key
 * computation per element) and skip blocks that keep nothing; a block that keeps something is
 * written branch-free (store always, advance by the flag). */
int64_t fdi_compact(float *v, int32_t *id, const float *src, int64_t n, int invert, uint32_t T,
                    int64_t take_eq)
{
    uint32_t flip = invert ? 0xffffffffu : 0u;
    int64_t j = 0;
    if (take_eq <= 0 || take_eq >= n) {
        if (take_eq <= 0 && T == 0xffffffffu) {
            return 0;
        }
        uint32_t thr = take_eq <= 0 ? T + 1 : T; /* keep key >= thr */
        /* as a float comparison: keys >= thr are the values >= value(thr) (ascending walk:
         * <= value(~thr)). The one key that is not a value, 0x7fffffff (-0.0, merged into +0),
         * is moved to the real key on the same side of it. */
        uint32_t k = invert ? ~thr : thr;
        if (k == 0x7fffffffu) {
            k = invert ? 0x7ffffffeu : 0x80000000u;
        }
        float tv = fdi_key_value(k, 0);
        int64_t i = 0;
        if (invert) {
            for (; i + 16 <= n; i += 16) {
                int any = 0;
                for (int q = 0; q < 16; q++) {
                    any |= src[i + q] <= tv;
                }
                if (!any) {
                    continue;
                }
                for (int q = 0; q < 16; q++) {
                    int keep = src[i + q] <= tv;
                    float x = v[i + q];
                    int32_t d = id[i + q];
                    v[j] = x;
                    id[j] = d;
                    j += keep;
                }
            }
            for (; i < n; i++) {
                int keep = src[i] <= tv;
                float x = v[i];
                int32_t d = id[i];
                v[j] = x;
                id[j] = d;
                j += keep;
            }
            return j;
        }
        for (; i + 16 <= n; i += 16) {
            int any = 0;
            for (int q = 0; q < 16; q++) {
                any |= src[i + q] >= tv;
            }
            if (!any) {
                continue;
            }
            for (int q = 0; q < 16; q++) {
                int keep = src[i + q] >= tv;
                float x = v[i + q];
                int32_t d = id[i + q];
                v[j] = x;
                id[j] = d;
                j += keep;
            }
        }
        for (; i < n; i++) {
            int keep = src[i] >= tv;
            float x = v[i];
            int32_t d = id[i];
            v[j] = x;
            id[j] = d;
            j += keep;
        }
        return j;
    }
    for (int64_t i = 0; i < n; i++) {
        uint32_t k = fdi_key(src[i]) ^ flip;
        int eq = k == T;
        int keep = (k > T) | (eq & (take_eq > 0)); /* bitwise: no data-dependent branch */
        take_eq -= eq;
        float x = v[i];
        int32_t d = id[i];
        v[j] = x;
        id[j] = d;
        j += keep;
    }
    return j;
}

/* Like fdi_compact, but of the elements whose key equals T it keeps all but the first skip_eq
 * (in list order): the highest ids of a tie group, for top-p's HF tie order (see filter.c). */
int64_t fdi_compact_tail(float *v, int32_t *id, const float *src, int64_t n, int invert, uint32_t T,
                         int64_t skip_eq)
{
    uint32_t flip = invert ? 0xffffffffu : 0u;
    int64_t j = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t k = fdi_key(src[i]) ^ flip;
        int eq = k == T;
        int keep = (k > T) | (eq & (skip_eq <= 0)); /* bitwise: no data-dependent branch */
        skip_eq -= eq;
        float x = v[i];
        int32_t d = id[i];
        v[j] = x;
        id[j] = d;
        j += keep;
    }
    return j;
}

/* The maximum of x[0..n) and the first index holding it (-1 if n == 0 or all -inf): the
 * dispatched argmax kernel (isa.c: vertical maxima over chunks, then one chunk scanned). Returns
 * nonzero if x holds NaN or +inf (then *max and *arg are meaningless). */
int fdi_argmax_check(const float *x, int64_t n, float *max, int64_t *arg)
{
    return fdi_ops()->argmax(x, n, max, arg);
}

/* The block-max delegate filter for "the k largest" (top-k without reading the row twice in
 * full). bm holds the maxima of the 64-element blocks of x. The k-th largest block maximum t is
 * a lower bound of the k-th largest element (k distinct blocks each hold an element >= t), so
 * every element of the top k -- and every element tied with the k-th -- is >= t, and lies in a
 * block whose maximum is >= t. Those blocks are read again (for a random row about k of them),
 * and their elements >= t are written to (v, id) in ascending id order: a candidate list on which
 * fdi_top_k gives exactly the set it gives on the whole row. When t_div != 0 the candidates are
 * x / t_div (float division, monotone), compared with t / t_div: the k-th largest quotient is the
 * quotient of the k-th largest element, so the list again holds every quotient that a top-k of
 * the divided row keeps, including values that became equal by rounding. Returns the candidate
 * count, or -1 when the filter does not apply (k > number of blocks, or t is -inf: fewer than k
 * blocks hold a finite value); radix is fdi_radix_cut scratch for the block count.
 */
int64_t fdi_block_candidates(const float *x, int64_t n, const float *bm, int64_t k, float t_div,
                             float *v, int32_t *id, void *radix)
{
    int64_t nb = fdi_n_blocks(n);
    if (k < 1 || k > nb) {
        return -1;
    }
    int64_t na = 0, ne = 0;
    uint32_t T = fdi_radix_cut(bm, NULL, nb, 0, (double)k, radix, &na, NULL, &ne, NULL);
    float thr = fdi_key_value(T, 0);
    if (t_div != 0.0f) {
        thr = thr / t_div;
    }
    if (thr == -INFINITY) {
        return -1;
    }
    /* Which blocks to read, 256 at a time, then each chosen block divided into v in one loop and
     * compacted in place (c never passes the block's start, so nothing unread is overwritten):
     * the divisions vectorize (they were a scalar division per element and per block, a third of
     * a top-k draw), and a float division is exact, so the values are the same. */
    int64_t c = 0;
    for (int64_t b0 = 0; b0 < nb; b0 += 256) {
        int64_t nbl = nb - b0 < 256 ? nb - b0 : 256;
        unsigned char sel[256];
        if (t_div != 0.0f) {
            for (int64_t q = 0; q < nbl; q++) {
                sel[q] = bm[b0 + q] / t_div >= thr;
            }
        }
        else {
            for (int64_t q = 0; q < nbl; q++) {
                sel[q] = bm[b0 + q] >= thr;
            }
        }
        for (int64_t q = 0; q < nbl; q++) {
            if (!sel[q]) {
                continue;
            }
            int64_t i0 = (b0 + q) * FDI_BLOCK, len = n - i0 < FDI_BLOCK ? n - i0 : FDI_BLOCK;
            float *y = v + c;
            if (t_div != 0.0f) {
                for (int64_t j = 0; j < len; j++) {
                    y[j] = x[i0 + j] / t_div;
                }
            }
            else {
                memmove(y, x + i0, (size_t)len * sizeof *y); /* v may be x */
            }
            for (int64_t j = 0; j < len; j++) {
                float yj = y[j];
                v[c] = yj;
                id[c] = (int32_t)(i0 + j);
                c += yj >= thr;
            }
        }
    }
    return c;
}
