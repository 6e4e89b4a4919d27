/*
 * sample.c: the fused sampler -- temperature, the truncation filters and the pick in one pass
 * over each row, on a candidate list instead of a dense logits row.
 *
 * Why fused: the unfused chain writes and re-reads a V-wide row per filter (and a softmax per
 * mass-based filter). Here a row is loaded once into float32, -inf entries are dropped while the
 * (value, id) candidate list is built, and each enabled filter (filter.c, fdi_*) compacts that list
 * in place, so later filters -- and the pick -- run on the survivors only (after top-k, a handful).
 * Every filter is the same code the dense fd_filter uses, with min_keep = 1, so fused == unfused
 * is a matter of calling the same functions in the same order on the same float32 values.
 *
 * Order. FD_ORDER_HF: temperature, top-n-sigma, top-k, top-p, min-p, typical, epsilon, eta.
 * FD_ORDER_LLAMA: top-n-sigma, top-k, typical, top-p, min-p, epsilon, eta, temperature; there the
 * filters see unscaled logits. Temperature is z / (float)T in float32, as torch divides a float32
 * tensor by a Python float. A disabled filter is skipped (top_k 0, top_p >= 1, min_p 0,
 * typical >= 1, epsilon 0, eta 0, top_n_sigma <= 0 or +inf).
 *
 * Top-k first (top-n-sigma off, top-k on: the common LM configuration). The row is not copied
 * into a candidate list at all: one vectorised pass gives the 64-element block maxima (isa.c),
 * and the block-max filter of select.c gathers, straight from the caller's float32 row, the
 * elements that can be in the top k (HF order: already divided by T) -- about k blocks are read
 * again. The chain then runs on that short list and keeps exactly what it keeps on the full list
 * (the argument is at fdi_block_candidates), so the result is the same. Otherwise (top-k off, k
 * larger than the number of blocks, fewer than k blocks with a finite value) the candidate list is
 * the finite logits, as before. The block maxima also give the maximum and the first argmax.
 *
 * Any other first filter on a row without -inf (one vectorised count decides): the candidate list
 * would be the whole (scaled) row y with ids 0..V-1, so the first filter is decided on y itself
 * by the dense driver's machinery (fdi_decide, filter.c: the same computations as the list
 * filter on that list, turned into the keep rule of internal.h), and only the survivors are
 * gathered into the list (isa.c's gather_keep: vcompressps on AVX-512; blocks whose maximum is
 * below a logit threshold are skipped, so a peaked row is barely read again). The rest of the
 * chain then runs on that list. When that filter is the only one and computed the weights
 * exp(y - max) (top-p, typical, epsilon, eta; not with llama order and T != 1), the pick reuses
 * them, gathered with the survivors, instead of a second exp pass -- valid because the list keeps
 * the row maximum (top-p, epsilon and eta always do with min_keep 1; typical is checked). The
 * list, its order and blocking are exactly the old path's, so tokens and log-probabilities are
 * bit for bit the same. A row with -inf logits builds the list of finite logits, as before (the
 * dense sums over the row would see the removed elements in other lanes).
 *
 * Temperature 0 is exact greedy: the first maximum of the raw row, no filters, logprob 0. A
 * temperature so small that max / T overflows float32 is the same limit and is treated the same
 * way (the alternative, +inf logits, has no distribution).
 *
 * The pick is inverse-CDF sampling over the survivors in ascending id order: float32 weights
 * w = exp(z - max) from the vectorised exp of isa.c (the filters' weights; libm's double exp per
 * token cost ten times the rest of an unfiltered draw), summed in double in a fixed blocked order
 * (sequential within each 64-weight block, then block sums in order: see pick_index), and the
 * first candidate whose running sum exceeds u * W wins; if rounding leaves none, the last
 * candidate of nonzero weight. With no filter enabled there is no candidate list: the pick reads
 * the (scaled) row itself, where -inf weighs 0 and is never chosen. One uniform per row, u = fd_uniform(seed, position, 0) (Philox, rng.c) or the
 * caller's explicit u, so a row's token depends only on its own logits, parameters, seed and
 * position -- never on the batch around it. Inverse CDF (rather than Gumbel-max over all V) needs
 * one random number per row and makes explicit-uniform tests hand-checkable.
 *
 * Workspace: float v[V], int32 id[V], double w[V], float bm[ceil(V / 64)], then fdi_workspace(V),
 * each 64-byte aligned (64 bytes of slack let the caller's pointer have any alignment). For a
 * non-float32 row v holds the converted row and the block-max candidates go to w. On the direct
 * path v holds the scaled row (HF order, T != 1), gathered in place, and w is the dense
 * decision's candidate scratch. The pick keeps its float32 weights in w and its block sums in the
 * filter scratch (free by then).
 */
#include "internal.h"

#include <string.h>

typedef struct {
    float *v;
    int32_t *id;
    double *w;
    float *bm;
    void *fws;
    void *radix;
} sws;

static sws layout(void *ws, int64_t n)
{
    size_t un = n > 0 ? (size_t)n : 1;
    uintptr_t p = ((uintptr_t)ws + 63) & ~(uintptr_t)63;
    sws L;
    L.v = (float *)p;
    p += fdi_align64(un * sizeof(float));
    L.id = (int32_t *)p;
    p += fdi_align64(un * sizeof(int32_t));
    L.w = (double *)p;
    p += fdi_align64(un * sizeof(double));
    L.bm = (float *)p;
    p += fdi_align64((size_t)fdi_n_blocks(n > 0 ? n : 1) * sizeof(float));
    L.fws = (void *)p;
    L.radix = (char *)p + 2 * fdi_align64(un * 4); /* filter.c's layout: w, s, then radix */
    return L;
}

size_t fd_sample_workspace(int64_t n_cols)
{
    size_t un = n_cols > 0 ? (size_t)n_cols : 1;
    return 64 + fdi_align64(un * sizeof(float)) + fdi_align64(un * sizeof(int32_t)) +
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

static int in_unit(double x)
{
    return x >= 0.0 && x <= 1.0;
}

typedef struct {
    double temperature, top_k, top_p, min_p, typical_p, epsilon, eta, top_n_sigma;
} row_params;

static int read_params(const fd_sample_params *P, int64_t r, row_params *q)
{
    q->temperature = FD_PARAM_AT(P->temperature, r);
    q->top_k = FD_PARAM_AT(P->top_k, r);
    q->top_p = FD_PARAM_AT(P->top_p, r);
    q->min_p = FD_PARAM_AT(P->min_p, r);
    q->typical_p = FD_PARAM_AT(P->typical_p, r);
    q->epsilon = FD_PARAM_AT(P->epsilon, r);
    q->eta = FD_PARAM_AT(P->eta, r);
    q->top_n_sigma = FD_PARAM_AT(P->top_n_sigma, r);
    return q->temperature >= 0.0 && q->top_k >= 0.0 && q->top_k == floor(q->top_k) &&
           in_unit(q->top_p) && in_unit(q->min_p) && in_unit(q->typical_p) && in_unit(q->epsilon) &&
           in_unit(q->eta) && q->top_n_sigma == q->top_n_sigma;
}

static void scale(float *v, int64_t n, float t)
{
    for (int64_t i = 0; i < n; i++) {
        v[i] = v[i] / t;
    }
}

/* Whether no filter of the chain is enabled (then the chain is the identity). */
static int no_filter(const row_params *q)
{
    return !(q->top_n_sigma > 0 && q->top_n_sigma < INFINITY) && q->top_k == 0.0 &&
           q->top_p >= 1.0 && q->min_p == 0.0 && q->typical_p >= 1.0 && q->epsilon == 0.0 &&
           q->eta == 0.0;
}

/* One filter step; `which` follows fd_filter_kind. Returns the new candidate count. */
static int64_t apply_filter(int which, const row_params *q, float *v, int32_t *id, int64_t n,
                            void *fws)
{
    switch (which) {
    case FD_FILTER_TOP_N_SIGMA:
        if (q->top_n_sigma > 0 && q->top_n_sigma < INFINITY) {
            return fdi_top_n_sigma(v, id, n, q->top_n_sigma, 1, fws);
        }
        return n;
    case FD_FILTER_TOP_K:
        if (q->top_k > 0 && q->top_k < (double)n) {
            return fdi_top_k(v, id, n, (int64_t)q->top_k, fws);
        }
        return n;
    case FD_FILTER_TOP_P:
        return q->top_p < 1.0 ? fdi_top_p(v, id, n, q->top_p, 1, fws) : n;
    case FD_FILTER_MIN_P:
        return q->min_p > 0.0 ? fdi_min_p(v, id, n, q->min_p, 1, fws) : n;
    case FD_FILTER_TYPICAL:
        return q->typical_p < 1.0 ? fdi_typical(v, id, n, q->typical_p, 1, fws) : n;
    case FD_FILTER_EPSILON:
        return q->epsilon > 0.0 ? fdi_epsilon(v, id, n, q->epsilon, 1, fws) : n;
    case FD_FILTER_ETA:
        return q->eta > 0.0 ? fdi_eta(v, id, n, q->eta, 1, fws) : n;
    }
    return n;
}

/* The inverse-CDF pick over v[0..n) (finite, n >= 1): float32 weights w = exp(v - max) by the
 * dispatched vectorised exp (the filters' weights), sums in double in a fixed order -- S_b the
 * sequential sum of the 64-weight block b, the total the sequential sum of the S_b. The pick is
 * the first i with B(i) + s(i) > u * total, where B(i) is the sum of the blocks before i's and
 * s(i) the sequential sum of its block up to i: the crossing block is the first whose B + S_b
 * exceeds the target, and since s at the block's end is S_b bit for bit, the scan inside it
 * always finds the token. If rounding lets no block cross (u * total == total), the last token
 * of nonzero weight. Eight blocks are summed at a time (eight independent addition chains). */
static int64_t pick_weights(const float *w, int64_t n, double u, double *bs, double *total_out)
{
    int64_t nb = fdi_n_blocks(n), b = 0;
    for (; (b + 8) * FDI_BLOCK <= n; b += 8) {
        double acc[8] = {0};
        const float *p = w + b * FDI_BLOCK;
        for (int j = 0; j < FDI_BLOCK; j++) {
            for (int l = 0; l < 8; l++) {
                acc[l] += (double)p[l * FDI_BLOCK + j];
            }
        }
        for (int l = 0; l < 8; l++) {
            bs[b + l] = acc[l];
        }
    }
    for (; b < nb; b++) {
        int64_t i1 = (b + 1) * FDI_BLOCK < n ? (b + 1) * FDI_BLOCK : n;
        double acc = 0.0;
        for (int64_t i = b * FDI_BLOCK; i < i1; i++) {
            acc += (double)w[i];
        }
        bs[b] = acc;
    }
    double total = 0.0;
    for (b = 0; b < nb; b++) {
        total += bs[b];
    }
    *total_out = total;
    double target = u * total, run = 0.0;
    for (b = 0; b < nb; b++) {
        if (run + bs[b] > target) {
            int64_t i1 = (b + 1) * FDI_BLOCK < n ? (b + 1) * FDI_BLOCK : n;
            double s = 0.0;
            for (int64_t i = b * FDI_BLOCK; i < i1; i++) {
                s += (double)w[i];
                if (run + s > target) {
                    return i;
                }
            }
            return i1 - 1; /* not reached: s == bs[b] at the block's end */
        }
        run += bs[b];
    }
    int64_t i = n - 1;
    while (i > 0 && !(w[i] > 0.0f)) {
        i--;
    }
    return i;
}

static int64_t pick_index(const float *v, int64_t n, double u, float *w, double *bs,
                          double *total_out)
{
    fdi_exp(v, n, fdi_max(v, n), w);
    return pick_weights(w, n, u, bs, total_out);
}

/* Whether chain step `which` may change the list (top-k: whenever k > 0), and its parameter. */
static int enabled(int which, const row_params *q)
{
    switch (which) {
    case FD_FILTER_TOP_N_SIGMA:
        return q->top_n_sigma > 0 && q->top_n_sigma < INFINITY;
    case FD_FILTER_TOP_K:
        return q->top_k > 0;
    case FD_FILTER_TOP_P:
        return q->top_p < 1.0;
    case FD_FILTER_MIN_P:
        return q->min_p > 0.0;
    case FD_FILTER_TYPICAL:
        return q->typical_p < 1.0;
    case FD_FILTER_EPSILON:
        return q->epsilon > 0.0;
    case FD_FILTER_ETA:
        return q->eta > 0.0;
    }
    return 0;
}

static double param_of(int which, const row_params *q)
{
    switch (which) {
    case FD_FILTER_TOP_N_SIGMA:
        return q->top_n_sigma;
    case FD_FILTER_TOP_K:
        return q->top_k;
    case FD_FILTER_TOP_P:
        return q->top_p;
    case FD_FILTER_MIN_P:
        return q->min_p;
    case FD_FILTER_TYPICAL:
        return q->typical_p;
    case FD_FILTER_EPSILON:
        return q->epsilon;
    case FD_FILTER_ETA:
        return q->eta;
    }
    return 0.0;
}

/* The candidate list of the columns of y kept by rule k (all: every column), ids ascending, into
 * (v, id) -- v may be y: position j <= c is written after y[c] and the rule at c are read -- with
 * their weights w (when wv != NULL) into wv, by the dispatched gather (isa.c: the rule as one
 * compare mask and vcompressps on AVX-512). A rule that only keeps y >= min(t, tb) (a and b both
 * y) skips the blocks whose maximum bm is below both: for a peaked row most of the row. */
static int64_t gather(const float *y, int64_t V, int all, const fdi_keep *k, const float *bm,
                      const float *w, float *v, int32_t *id, float *wv)
{
    const fdi_isa_ops *ops = fdi_ops();
    if (all) { /* the kernel reads the rule's rows even then: a valid rule that keeps all */
        fdi_keep every = {y, -INFINITY, 0, 0, 0, y, NAN};
        return ops->gather_keep(&every, 1, y, w, 0, V, v, id, wv);
    }
    if (!(k->a == y && k->b == y && k->neg == 0)) {
        return ops->gather_keep(k, all, y, w, 0, V, v, id, wv);
    }
    int64_t j = 0, nb = fdi_n_blocks(V);
    for (int64_t b = 0; b < nb;) {
        if (!(bm[b] >= k->t) && !(bm[b] >= k->tb)) {
            b++;
            continue;
        }
        int64_t e = b + 1; /* a run of blocks that may keep something */
        while (e < nb && (bm[e] >= k->t || bm[e] >= k->tb)) {
            e++;
        }
        int64_t i0 = b * FDI_BLOCK, i1 = e * FDI_BLOCK < V ? e * FDI_BLOCK : V;
        j += ops->gather_keep(k, 0, y, w, i0, i1 - i0, v + j, id + j, wv ? wv + j : NULL);
        b = e;
    }
    return j;
}

static const int hf_chain[] = {FD_FILTER_TOP_N_SIGMA, FD_FILTER_TOP_K,   FD_FILTER_TOP_P,
                               FD_FILTER_MIN_P,       FD_FILTER_TYPICAL, FD_FILTER_EPSILON,
                               FD_FILTER_ETA};
static const int llama_chain[] = {FD_FILTER_TOP_N_SIGMA, FD_FILTER_TOP_K, FD_FILTER_TYPICAL,
                                  FD_FILTER_TOP_P,       FD_FILTER_MIN_P, FD_FILTER_EPSILON,
                                  FD_FILTER_ETA};

fd_status fd_sample(const fd_rows *in, const fd_sample_params *params, const fd_rng_args *rng,
                    int64_t *tokens, double *logprob, void *ws, fd_errinfo *err)
{
    set_err(err, -1, -1);
    if (!in || !params || !tokens || in->n_rows < 0 || in->n_cols < 0 || in->n_cols > INT32_MAX ||
        (in->n_rows > 1 && in->row_stride < in->n_cols) ||
        (in->n_rows > 0 && in->n_cols > 0 && !in->data)) {
        return FD_ESHAPE;
    }
    if (in->dtype != FD_F32 && in->dtype != FD_F64 && in->dtype != FD_F16 && in->dtype != FD_BF16) {
        return FD_EINVAL;
    }
    if (params->order != FD_ORDER_HF && params->order != FD_ORDER_LLAMA) {
        return FD_EINVAL;
    }
    const int64_t V = in->n_cols;
    sws L = layout(ws, V);
    const int *chain = params->order == FD_ORDER_HF ? hf_chain : llama_chain;
    const int chain_len = (int)(sizeof hf_chain / sizeof hf_chain[0]);
    const fdi_isa_ops *ops = fdi_ops();

    for (int64_t r = 0; r < in->n_rows; r++) {
        row_params q;
        if (!read_params(params, r, &q)) {
            set_err(err, r, -1);
            return FD_EINVAL;
        }
        if (V == 0) {
            set_err(err, r, -1);
            return FD_ENOFINITE;
        }
        /* x: the float32 row, read in place when stored as float32. One pass gives the block
         * maxima, the maximum and the NaN / +inf check. */
        const float *x;
        if (in->dtype == FD_F32) {
            x = (const float *)in->data + r * in->row_stride;
            if (ops->block_max(x, V, L.bm)) {
                return fd_load_row(in, r, L.v, err); /* reports the first offending element */
            }
        }
        else {
            fd_status st = fd_load_row(in, r, L.v, err);
            if (st != FD_OK) {
                return st;
            }
            x = L.v;
            (void)ops->block_max(x, V, L.bm);
        }
        const int64_t nb = fdi_n_blocks(V);
        int64_t bmax = 0;
        for (int64_t b = 1; b < nb; b++) {
            bmax = L.bm[b] > L.bm[bmax] ? b : bmax;
        }
        if (L.bm[bmax] == -INFINITY) {
            set_err(err, r, -1);
            return FD_ENOFINITE;
        }
        int64_t am = bmax * FDI_BLOCK;
        while (x[am] != L.bm[bmax]) {
            am++;
        }
        float t = (float)q.temperature;
        if (q.temperature == 0.0 || t == 0.0f || isinf(x[am] / t)) {
            tokens[r] = am;
            if (logprob) {
                logprob[r] = 0.0;
            }
            continue;
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

        int hf_scale = params->order == FD_ORDER_HF && t != 1.0f;
        int64_t n = -1;
        if (no_filter(&q)) {
            /* no candidate list: the pick reads the (scaled) row itself, -inf weighing 0 */
            const float *pv = x;
            if (t != 1.0f) {
                for (int64_t i = 0; i < V; i++) {
                    L.v[i] = x[i] / t;
                }
                pv = L.v;
            }
            double total = 0.0;
            int64_t pick = pick_index(pv, V, u, (float *)L.w, (double *)L.fws, &total);
            tokens[r] = pick;
            if (logprob) {
                logprob[r] = log((double)((float *)L.w)[pick] / total);
            }
            continue;
        }
        int reuse = 0; /* (float *)L.w holds the pick's weights */
        int first = 0; /* chain steps before this one are done */
        if (!(q.top_n_sigma > 0 && q.top_n_sigma < INFINITY) && q.top_k > 0) {
            /* top-k comes first: the block-max filter gathers a short list straight from the
             * row (HF order: already divided by T), on which the chain gives the same result */
            int64_t k = q.top_k < (double)V ? (int64_t)q.top_k : V;
            float *cv = x == L.v ? (float *)L.w : L.v; /* not the row being read */
            n = fdi_block_candidates(x, V, L.bm, k, hf_scale ? t : 0.0f, cv, L.id, L.radix);
            if (n >= 0 && cv != L.v) {
                memcpy(L.v, cv, (size_t)n * sizeof(float));
            }
        }
        else if (ops->count_in(x, V, -INFINITY, -INFINITY) == 0) {
            /* every logit finite: the candidate list would be the whole (scaled) row y, ids
             * 0..V-1, so the first filter decides on y itself through the dense driver's rule
             * (filter.c, the same computations as on that list) and only the survivors are
             * gathered */
            const float *y = x;
            float ymax = L.bm[bmax];
            if (hf_scale) {
                for (int64_t i = 0; i < V; i++) {
                    L.v[i] = x[i] / t;
                }
                y = L.v;
                (void)ops->block_max(y, V, L.bm);
                ymax = fdi_max(y, V);
            }
            while (!enabled(chain[first], &q)) {
                first++;
            }
            int f0 = chain[first++], more = 0, has_w = 0;
            for (int s = first; s < chain_len; s++) {
                more |= enabled(chain[s], &q);
            }
            fdi_keep k;
            int all = fdi_decide((fd_filter_kind)f0, y, V, L.bm, ymax, param_of(f0, &q), 1, L.fws,
                                 (float *)L.w, L.id, &k, &has_w);
            /* the pick may reuse the filter's weights exp(y - ymax) when nothing changes the
             * list or its values afterwards (and the list keeps the maximum: checked below) */
            reuse = has_w && !more && !(params->order == FD_ORDER_LLAMA && t != 1.0f);
            n = gather(y, V, all, &k, L.bm, (const float *)L.fws, L.v, L.id,
                       reuse ? (float *)L.w : NULL);
            /* top-p, epsilon and eta always keep the maximum (min_keep 1); typical may not */
            reuse = reuse && (f0 != FD_FILTER_TYPICAL || fdi_max(L.v, n) == ymax);
        }
        if (n < 0) {
            /* candidates: the finite logits, ids ascending */
            n = 0;
            for (int64_t i = 0; i < V; i++) {
                float xi = x[i];
                L.v[n] = xi;
                L.id[n] = (int32_t)i;
                n += xi != -INFINITY;
            }
            if (hf_scale) {
                scale(L.v, n, t);
            }
        }
        for (int s = first; s < chain_len; s++) {
            n = apply_filter(chain[s], &q, L.v, L.id, n, L.fws);
        }
        if (params->order == FD_ORDER_LLAMA && t != 1.0f) {
            scale(L.v, n, t);
        }

        /* the pick: inverse CDF in ascending id order */
        double total = 0.0;
        int64_t pick = reuse ? pick_weights((float *)L.w, n, u, (double *)L.fws, &total)
                             : pick_index(L.v, n, u, (float *)L.w, (double *)L.fws, &total);
        tokens[r] = L.id[pick];
        if (logprob) {
            logprob[r] = log((double)((float *)L.w)[pick] / total);
        }
    }
    return FD_OK;
}

/* sample.c's pick for other modules (speculative.c): the same weights, sums and crossing rule as
 * fd_sample's no-filter path on a float32 row, so a distribution it samples from is exactly the one
 * another kernel evaluates. */
int64_t fdi_pick(const float *v, int64_t n, double u, float *w, double *bs, double *total)
{
    return pick_index(v, n, u, w, bs, total);
}
