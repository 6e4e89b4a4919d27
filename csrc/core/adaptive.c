/*
 * adaptive.c: the stateless adaptive samplers -- adaptive temperature (Velickovic et al. 2024,
 * "Softmax is not enough", arXiv 2410.01104), dynamic temperature (llama.cpp
 * `llama_sampler_temp_ext`, arXiv 2309.02772), XTC and DRY (llama.cpp `llama_sampler_xtc`,
 * `llama_sampler_dry`).
 *
 * "Stateless": each kernel is a pure function of the row, its parameters and (XTC) the row's
 * (seed, position). Nothing is carried from one call to the next, so nothing can leak between rows,
 * sequences or threads; the history DRY reads is passed in.
 *
 * Temperatures. Both temperature kernels need only the entropy of the row, H = log Z - sum(w d) / Z
 * with d = z - max and w = exp(d) (the exp-sum and dot kernels of isa.c, as fd_entropy), so a row
 * costs three linear passes (load, exp-sum, scale) and no sort. The scaled logit is computed in
 * float32 (z * beta, z / T; float64 rows in double) and rounded once to the storage dtype. A row
 * whose scaled maximum would overflow the storage dtype (so that a finite row would turn into
 * +-inf) becomes the one-hot of its first maximum, as fd_sample treats a temperature so small that
 * max / T overflows: the maximum keeps its value, every other token becomes -inf.
 *   adaptive: beta = max(poly(H), 1) if H > 0.5 else 1, poly(H) = -0.037 H^4 + 0.481 H^3 - 2.3 H^2
 *     + 4.917 H - 1.791 (Horner, double); logits * beta. The paper's snippet evaluates H with
 *     log(p + 1e-9); we use the exact H (the difference is below 1e-8 nats per token).
 *   dynamic (llama.cpp temp-ext, rule for rule): delta <= 0 is plain temperature T. Otherwise, over
 *     the N candidates that are still finite (llama.cpp: the entries left in its candidate array),
 *     N <= 1 leaves the row unchanged; T_min = max(0, T - delta), T_max = T + delta,
 *     T' = T_min + (T_max - T_min) * (H / ln N)^exponent (H / ln N clamped to [0, 1]: rounding can
 *     step outside, and a negative base would make the power NaN, one above 1 a huge exponent
 *     overflow it); T' == 0 is greedy (llama.cpp's temp <= 0: the one-hot of the first
 *     maximum, keeping its logit), else z / T'.
 *
 * XTC ("exclude top choices"). With probability p (the row's uniform u <= p, llama.cpp's
 * `chance > probability` skip), every token whose probability is >= threshold is removed except
 * the least likely of them; nothing happens when p <= 0, threshold > 0.5, fewer than two candidates
 * are finite, fewer than two tokens reach the threshold, or the removal would leave fewer than
 * min_keep candidates. Probabilities are w / Z with float32 weights and a double sum (the softmax
 * of the finite candidates; -inf tokens are already removed and never count); p >= threshold is
 * evaluated as w >= threshold * Z. "Least likely" is the smallest logit; on ties the lowest id is
 * the one kept. After the exp-sum, the dispatched gather of isa.c lists the top choices (few: at
 * most 1 / threshold) with their logits; the choice kept and the writes use that list; no sort.
 * The uniform is Philox keyed by
 * (seed, position, FD_DRAW_XTC): fd_sample's pick uses draw 0 at the same (seed, position), and
 * FD_DRAW_XTC is a tag far from the small draw indices, so the coin and the pick are independent.
 *
 * DRY ("don't repeat yourself", Koboldcpp PR 982, ported into llama.cpp). For the last
 * L = min(len, penalty_last_n) tokens of the history (-1: the whole history):
 *   1. rep_limit: walking back from the end, the first position where a sequence breaker ends
 *      (its head at distance i from the end, its tail matching the tokens after it; the longest
 *      such breaker there) caps the repeat length at i - (breaker length - 1); no penalty at all
 *      when that cap is < allowed_length.
 *   2. The Z-algorithm over the reversed window gives, for every earlier position j, the length of
 *      the longest common suffix of h[..j] and the whole window (capped at rep_limit): O(L).
 *   3. Each j with a length >= allowed_length makes h[j + 1] a token that would extend a repeat;
 *      a token keeps the longest such length.
 *   4. Every such token that is not a single-token breaker gets z -= m * b^(len - allowed_length),
 *      the exponent capped at (int)(88.7228391f / logf(b)) when b > 1.000001 (llama.cpp's float
 *      overflow guard). For float32/16/bfloat16 rows the arithmetic is llama.cpp's: multiplier and
 *      base rounded to float, the penalty (float)(m * pow(b, e)) in double, the subtraction in
 *      float; float64 rows use double throughout.
 * Nothing happens when the multiplier is 0 or penalty_last_n is 0 or L <= allowed_length. The
 * breakers are token-id sequences (llama.cpp tokenizes strings, keeping every tokenization that
 * overlaps the string; callers pass the id sequences they want). They are indexed once per call
 * by head token (a V-entry list head table plus one link per breaker), the per-token maxima live
 * in a V-entry table that each row resets at O(L) cost (as penalty.c), so a row costs
 * O(L + breaker matching), never O(V) after the one memset per call.
 */
#include "internal.h"

#include <float.h>
#include <string.h>

static void set_err(fd_errinfo *err, int64_t row, int64_t index)
{
    if (err) {
        err->row = row;
        err->index = index;
    }
}

static size_t row_bytes(int64_t n)
{
    return fdi_align64((size_t)(n > 0 ? n : 1) * sizeof(float));
}

/* four rows of 4-byte entries: the converted row, its weights, XTC's list of top choices (ids and
 * logits) */
size_t fd_adaptive_workspace(int64_t n_cols)
{
    return 4 * row_bytes(n_cols);
}


/* Whether v, computed in the row's arithmetic and rounded to dtype t, is +-inf. */
static int overflows(fd_dtype t, double v)
{
    switch (t) {
    case FD_F64:
        return isinf(v);
    case FD_F32:
        return isinf((float)v);
    case FD_F16:
        return isinf(fd_half_to_float(fd_float_to_half((float)v)));
    case FD_BF16:
        return isinf(fd_bf16_to_float(fd_float_to_bf16((float)v)));
    }
    return 1;
}

static int same_view(const fd_rows *a, const fd_rows *b)
{
    return a->data == b->data && a->row_stride == b->row_stride && a->dtype == b->dtype;
}

static size_t esz(fd_dtype t)
{
    return t == FD_F64 ? 8 : t == FD_F32 ? 4 : 2;
}

static void *row_ptr(const fd_rows *x, int64_t r)
{
    return (char *)x->data + (size_t)(r * x->row_stride) * esz(x->dtype);
}

static fd_status check_pair(const fd_rows *in, const fd_rows *out)
{
    if (!in || !out || !fdi_valid_rows(in) || !fdi_valid_rows(out) || in->n_rows != out->n_rows ||
        in->n_cols != out->n_cols) {
        return FD_ESHAPE;
    }
    return in->dtype == out->dtype ? FD_OK : FD_EINVAL;
}

/* Row r as float32: *x is the row itself for float32 input (read in place: every writer below
 * writes element c after its last read of element c, so out may alias in), else the row converted
 * into buf; NaN / +inf are reported as fd_load_row does. *m and *am: the maximum and its first
 * index (-inf and -1 for a row without a finite value). */
static fd_status load(const fd_rows *in, int64_t r, float *buf, const float **x, float *m,
                      int64_t *am, fd_errinfo *err)
{
    fd_status st = FD_OK;
    if (in->dtype == FD_F32) {
        *x = row_ptr(in, r);
        if (fdi_ops()->argmax(*x, in->n_cols, m, am)) {
            st = fd_load_row(in, r, buf, err); /* the first offending element */
        }
    }
    else {
        *x = buf;
        if ((st = fd_load_row(in, r, buf, err)) == FD_OK) {
            (void)fdi_argmax_check(buf, in->n_cols, m, am);
        }
    }
    if (st != FD_OK && err) {
        err->row = r;
    }
    return st;
}

/* Row r of in copied to out (same dtype), bit for bit. */
static void copy_row(const fd_rows *in, const fd_rows *out, int64_t r)
{
    if (same_view(in, out)) {
        return;
    }
    memmove(row_ptr(out, r), row_ptr(in, r), (size_t)in->n_cols * esz(in->dtype));
}

/* The one-hot of the first maximum am: its value copied, every other token -inf. */
static void one_hot(const fd_rows *in, const fd_rows *out, int64_t r, int64_t am)
{
    for (int64_t c = 0; c < in->n_cols; c++) {
        if (c == am) {
            fd_copy_elem(in, out, r, c);
        }
        else {
            fd_store(out, r, c, -INFINITY);
        }
    }
}

/* out = in * s (mul) or in / s, in the row's arithmetic (see the file comment). -inf stays -inf
 * (also for a temperature so large that it is +inf in float32, where -inf / inf would be NaN and
 * every finite logit becomes 0). */
static void scale_row(const fd_rows *in, const fd_rows *out, int64_t r, const float *x, double s,
                      int mul)
{
    int64_t n = in->n_cols;
    if (in->dtype == FD_F64) {
        const double *z = row_ptr(in, r);
        double *o = row_ptr(out, r);
        for (int64_t c = 0; c < n; c++) {
            double v = mul ? z[c] * s : z[c] / s;
            o[c] = fdi_dsel(z[c] == -INFINITY, z[c], v);
        }
        return;
    }
    float sf = (float)s;
    if (in->dtype == FD_F32) {
        float *o = row_ptr(out, r); /* element c written after its read: o may alias x */
        for (int64_t c = 0; c < n; c++) {
            float v = mul ? x[c] * sf : x[c] / sf;
            o[c] = fdi_fsel(x[c] == -INFINITY, x[c], v);
        }
        return;
    }
    uint16_t *o = row_ptr(out, r);
    int half = in->dtype == FD_F16;
    for (int64_t c = 0; c < n; c++) {
        float v = x[c] == -INFINITY ? x[c] : mul ? x[c] * sf : x[c] / sf;
        o[c] = half ? fd_float_to_half(v) : fd_float_to_bf16(v);
    }
}

/* The scaled maximum in the row's arithmetic (float64 rows: the largest double, which the
 * float32 decisions may not single out: values beyond the float32 range saturate there). */
static double scaled(const fd_rows *in, int64_t r, int64_t am, float m, double s, int mul)
{
    if (in->dtype == FD_F64) {
        const double *d = row_ptr(in, r);
        double z = fdi_load_elem(in, r, am);
        for (int64_t c = 0; c < in->n_cols; c++) {
            z = d[c] > z ? d[c] : z;
        }
        return mul ? z * s : z / s;
    }
    float sf = (float)s;
    return mul ? m * sf : m / sf;
}

/* Entropy (nats) of softmax(x) over the finite entries; e receives the float32 weights, *z their
 * sum. */
static double row_entropy(const float *x, int64_t n, float m, float *e, double *z)
{
    const fdi_isa_ops *ops = fdi_ops();
    *z = ops->exp_sum(x, n, m, e);
    double s1 = ops->dot_shift_pos(e, x, n, m);
    return log(*z) - s1 / *z;
}

double fd_adaptive_beta(double h)
{
    if (!(h > 0.5)) {
        return 1.0;
    }
    double p = (((-0.037 * h + 0.481) * h - 2.3) * h + 4.917) * h - 1.791;
    return p > 1.0 ? p : 1.0;
}

fd_status fd_adaptive_temperature(const fd_rows *in, const fd_rows *out, double *beta_out,
                                  void *ws, fd_errinfo *err)
{
    set_err(err, -1, -1);
    fd_status st = check_pair(in, out);
    if (st != FD_OK) {
        return st;
    }
    int64_t n = in->n_cols;
    float *buf = ws;
    float *e = (float *)((char *)ws + row_bytes(n));
    const float *x;
    for (int64_t r = 0; r < in->n_rows; r++) {
        if (n == 0) {
            continue;
        }
        float m;
        int64_t am;
        if ((st = load(in, r, buf, &x, &m, &am, err)) != FD_OK) {
            return st;
        }
        if (am < 0) {
            set_err(err, r, -1);
            return FD_ENOFINITE;
        }
        double z;
        double beta = fd_adaptive_beta(row_entropy(x, n, m, e, &z));
        if (beta_out) {
            beta_out[r] = beta;
        }
        if (beta == 1.0) {
            copy_row(in, out, r);
        }
        else if (overflows(out->dtype, scaled(in, r, am, m, beta, 1))) {
            one_hot(in, out, r, am);
        }
        else {
            scale_row(in, out, r, x, beta, 1);
        }
    }
    return FD_OK;
}

fd_status fd_dynamic_temperature(const fd_rows *in, const fd_rows *out, fd_param temperature,
                                 fd_param delta, fd_param exponent, double *temp_out, void *ws,
                                 fd_errinfo *err)
{
    set_err(err, -1, -1);
    fd_status st = check_pair(in, out);
    if (st != FD_OK) {
        return st;
    }
    int64_t n = in->n_cols;
    float *buf = ws;
    float *e = (float *)((char *)ws + row_bytes(n));
    const float *x;
    for (int64_t r = 0; r < in->n_rows; r++) {
        double t = FD_PARAM_AT(temperature, r);
        double d = FD_PARAM_AT(delta, r);
        double ex = FD_PARAM_AT(exponent, r);
        if (!(t >= 0 && t < INFINITY) || !(d >= 0 && d < INFINITY) ||
            !(ex >= 0 && ex < INFINITY)) {
            set_err(err, r, -1);
            return FD_EINVAL;
        }
        if (n == 0) {
            continue;
        }
        float m;
        int64_t am;
        if ((st = load(in, r, buf, &x, &m, &am, err)) != FD_OK) {
            return st;
        }
        double tt = t;
        if (d > 0) {
            int64_t nf = 0;
            for (int64_t c = 0; c < n; c++) {
                nf += x[c] > -INFINITY;
            }
            if (nf <= 1) {
                if (temp_out) {
                    temp_out[r] = NAN; /* llama.cpp applies no temperature at all */
                }
                copy_row(in, out, r);
                continue;
            }
            double z;
            double h = row_entropy(x, n, m, e, &z) / log((double)nf);
            h = h > 0 ? (h < 1 ? h : 1.0) : 0.0; /* [0, 1]: rounding can step outside */
            double lo = t - d > 0 ? t - d : 0.0, hi = t + d;
            double w = pow(h, ex);
            /* w == 0: T' = T_min (T + delta may overflow to +inf, and inf * 0 would be NaN) */
            tt = w == 0 ? lo : lo + (hi - lo) * w;
        }
        if (temp_out) {
            temp_out[r] = tt;
        }
        if (am < 0) {
            copy_row(in, out, r);
        }
        else if (tt == 0 || (in->dtype != FD_F64 && (float)tt == 0.0f) ||
                 overflows(out->dtype, scaled(in, r, am, m, tt, 0))) {
            one_hot(in, out, r, am);
        }
        else {
            scale_row(in, out, r, x, tt, 0);
        }
    }
    return FD_OK;
}

fd_status fd_xtc(const fd_rows *in, const fd_rows *out, fd_param probability, fd_param threshold,
                 fd_param min_keep, const fd_rng_args *rng, double filter_value, void *ws,
                 fd_errinfo *err)
{
    set_err(err, -1, -1);
    fd_status st = check_pair(in, out);
    if (st != FD_OK) {
        return st;
    }
    if (filter_value != filter_value || filter_value == INFINITY || !rng) {
        return FD_EINVAL;
    }
    int64_t n = in->n_cols;
    float *buf = ws;
    float *e = (float *)((char *)ws + row_bytes(n));
    int32_t *top = (int32_t *)((char *)ws + 2 * row_bytes(n));
    float *tv = (float *)((char *)ws + 3 * row_bytes(n));
    const float *x;
    const fdi_isa_ops *ops = fdi_ops();
    for (int64_t r = 0; r < in->n_rows; r++) {
        double p = FD_PARAM_AT(probability, r);
        double th = FD_PARAM_AT(threshold, r);
        double mk = FD_PARAM_AT(min_keep, r);
        if (!(p >= 0 && p <= 1) || !(th >= 0 && th <= 1) || !(mk >= 1 && mk < INFINITY)) {
            set_err(err, r, -1);
            return FD_EINVAL;
        }
        double u;
        if (rng->uniform) {
            u = rng->uniform[r * rng->uniform_stride];
            if (!(u >= 0.0 && u < 1.0)) {
                set_err(err, r, -1);
                return FD_EINVAL;
            }
        }
        else if (rng->seed && rng->position) {
            u = fd_uniform(rng->seed[r * rng->seed_stride],
                           (uint64_t)rng->position[r * rng->position_stride], FD_DRAW_XTC);
        }
        else {
            set_err(err, r, -1);
            return FD_EINVAL;
        }
        if (n == 0) {
            continue;
        }
        float m;
        int64_t am;
        if ((st = load(in, r, buf, &x, &m, &am, err)) != FD_OK) {
            return st;
        }
        copy_row(in, out, r);
        if (p <= 0 || th > 0.5 || u > p || am < 0) {
            continue;
        }
        /* p = w / Z >= threshold, evaluated as w >= threshold * Z (no division per token) */
        double tz = th * ops->exp_sum(x, n, m, e);
        /* the same test on floats: w >= tz  <=>  w >= tf, tf the smallest float >= tz */
        float tf = (float)tz;
        if ((double)tf < tz) {
            tf = nextafterf(tf, INFINITY);
        }
        /* the top choices in id order, by the dispatched gather (isa.c): w >= tf; with tf == 0
         * every finite token (x > -inf; a -inf token has w == 0 too) */
        fdi_keep k = {e, tf, 0, 0, (int32_t)n, e, INFINITY};
        if (tf == 0.0f) {
            k.a = x;
            k.t = -INFINITY;
            k.hi = 0;
        }
        int64_t above = ops->gather_keep(&k, 0, x, NULL, 0, n, tv, top, NULL);
        if (above < 2) {
            continue;
        }
        if (mk > 1) { /* (min_keep 1 always holds: the top choices are finite) */
            int64_t nf = 0;
            for (int64_t c = 0; c < n; c++) {
                nf += x[c] > -INFINITY;
            }
            if ((double)(nf - (above - 1)) < mk) {
                continue;
            }
        }
        /* the least likely top choice: the smallest logit among them, the lowest id on ties */
        int64_t kj = 0;
        for (int64_t j = 1; j < above; j++) {
            kj = tv[j] < tv[kj] ? j : kj;
        }
        int64_t keep = top[kj];
        for (int64_t j = 0; j < above; j++) {
            if (top[j] != keep) {
                fd_store(out, r, top[j], filter_value);
            }
        }
    }
    return FD_OK;
}

/* ---------------------------------------------------------------------------------------------
 * DRY
 * --------------------------------------------------------------------------------------------- */

size_t fd_dry_workspace(int64_t n_cols, int64_t hist_cols, int64_t n_breakers)
{
    size_t v = (size_t)(n_cols > 0 ? n_cols : 1);
    size_t t = (size_t)(hist_cols > 0 ? hist_cols : 1);
    size_t b = (size_t)(n_breakers > 0 ? n_breakers : 1);
    return 2 * fdi_align64(v * 4) + fdi_align64(b * 4) + 2 * fdi_align64(t * 4);
}

typedef struct {
    const int64_t *flat, *offsets;
    const int32_t *head, *next;
} breakers;

/* Whether token tok is a breaker on its own (a breaker of length 1). */
static int single_breaker(const breakers *bk, int64_t tok)
{
    for (int32_t b = bk->head[tok]; b >= 0; b = bk->next[b]) {
        if (bk->offsets[b + 1] - bk->offsets[b] == 1) {
            return 1;
        }
    }
    return 0;
}

/* Step 1: the repeat-length cap from the last breaker in the window h[0..L). */
static int64_t rep_limit(const breakers *bk, const int64_t *h, int64_t L)
{
    for (int64_t i = 0; i < L; i++) {
        int64_t tok = h[L - 1 - i];
        int64_t longest = -1;
        for (int32_t b = bk->head[tok]; b >= 0; b = bk->next[b]) {
            const int64_t *tail = bk->flat + bk->offsets[b] + 1;
            int64_t sl = bk->offsets[b + 1] - bk->offsets[b] - 1;
            if (sl > longest && sl <= i) {
                int64_t o = 0;
                while (o < sl && tail[o] == h[L - 1 - (i - o - 1)]) {
                    o++;
                }
                if (o == sl) {
                    longest = sl;
                }
            }
        }
        if (longest >= 0) {
            return i - longest;
        }
    }
    return L;
}

/* Step 2: rep[j] = min(longest common suffix of h[..j] and h[..L-1], cap), j < L - 1; rep[L-1] = 0.
 * The Z-algorithm on the reversed window (rat(i) = h[L - 1 - i]). */
static void repeat_counts(const int64_t *h, int64_t L, int64_t cap, int32_t *rep)
{
    const int64_t last = L - 1;
#define RAT(i) h[last - (i)]
    memset(rep, 0, (size_t)L * sizeof *rep);
    int64_t lt = 0, rt = 0;
    for (int64_t k = 1; k < L; k++) {
        if (k > rt) {
            int64_t n = 0;
            while (n + k < L && RAT(n) == RAT(n + k)) {
                n++;
            }
            rep[last - k] = (int32_t)(n < cap ? n : cap);
            if (n > 0) {
                lt = k;
                rt = k + n - 1;
            }
        }
        else {
            int64_t p = k - lt;
            int64_t right = rt - k + 1;
            if (rep[last - p] < right) {
                int64_t n = rep[last - p];
                rep[last - k] = (int32_t)(n < cap ? n : cap);
            }
            else {
                int64_t i = rt + 1;
                while (i < L && RAT(i) == RAT(i - k)) {
                    i++;
                }
                int64_t n = i - k;
                rep[last - k] = (int32_t)(n < cap ? n : cap);
                lt = k;
                rt = i - 1;
            }
        }
    }
#undef RAT
}

fd_status fd_dry(const fd_rows *x, const fd_ids *ids, fd_param multiplier, fd_param base,
                 fd_param allowed_length, fd_param last_n, const int64_t *flat,
                 const int64_t *offsets, int64_t n_breakers, void *ws, fd_errinfo *err)
{
    set_err(err, -1, -1);
    if (!x || !fdi_valid_rows(x) || !ids || ids->n_rows != x->n_rows || ids->n_cols < 0 ||
        (ids->n_rows > 0 && ids->n_cols > 0 && !ids->data) ||
        (ids->n_rows > 1 && ids->row_stride < ids->n_cols) || n_breakers < 0 ||
        (n_breakers > 0 && (!flat || !offsets))) {
        return FD_ESHAPE;
    }
    int64_t V = x->n_cols;
    /* the breakers, checked before any row is written */
    if (n_breakers > 0 && offsets[0] != 0) {
        return FD_ESHAPE;
    }
    for (int64_t b = 0; b < n_breakers; b++) {
        if (offsets[b + 1] <= offsets[b] || offsets[b + 1] - offsets[b] > INT32_MAX) {
            return FD_ESHAPE;
        }
        for (int64_t j = offsets[b]; j < offsets[b + 1]; j++) {
            if (flat[j] < 0 || flat[j] >= V) {
                set_err(err, -1, j);
                return FD_ERANGE;
            }
        }
    }
    if (x->n_rows == 0) {
        return FD_OK;
    }
    /* V == 0 still checks the histories (every id is out of range there), as penalty.c */
    size_t vb = fdi_align64((size_t)(V > 0 ? V : 1) * 4);
    size_t bb = fdi_align64((size_t)(n_breakers > 0 ? n_breakers : 1) * 4);
    size_t tb = fdi_align64((size_t)(ids->n_cols > 0 ? ids->n_cols : 1) * 4);
    int32_t *head = ws;
    int32_t *maxrep = (int32_t *)((char *)ws + vb);
    int32_t *next = (int32_t *)((char *)ws + 2 * vb);
    int32_t *rep = (int32_t *)((char *)ws + 2 * vb + bb);
    int32_t *touched = (int32_t *)((char *)ws + 2 * vb + bb + tb);
    memset(head, 0xFF, (size_t)V * 4);   /* -1: no breaker starts with this token */
    memset(maxrep, 0xFF, (size_t)V * 4); /* -1: not a token that extends a repeat */
    for (int64_t b = n_breakers - 1; b >= 0; b--) {
        int64_t h0 = flat[offsets[b]];
        next[b] = head[h0];
        head[h0] = (int32_t)b;
    }
    breakers bk = {flat, offsets, head, next};
    for (int64_t r = 0; r < x->n_rows; r++) {
        double mult = FD_PARAM_AT(multiplier, r);
        double b = FD_PARAM_AT(base, r);
        double A = FD_PARAM_AT(allowed_length, r);
        double ln = FD_PARAM_AT(last_n, r);
        if (!(mult >= 0 && mult < INFINITY) || !(b >= 1 && b < INFINITY) ||
            !(A >= 0 && A <= INT32_MAX && A == floor(A)) ||
            !(ln >= -1 && ln < 0x1p62 && ln == floor(ln))) {
            set_err(err, r, -1);
            return FD_EINVAL;
        }
        int64_t bgn = ids->begin ? ids->begin[r] : 0;
        int64_t end = ids->end ? ids->end[r] : ids->n_cols;
        if (bgn < 0 || end < bgn || end > ids->n_cols) {
            set_err(err, r, -1);
            return FD_ESHAPE;
        }
        const int64_t *t = ids->data ? ids->data + r * ids->row_stride : NULL;
        for (int64_t j = bgn; j < end; j++) {
            if (t[j] < 0 || t[j] >= V) {
                set_err(err, r, j);
                return FD_ERANGE;
            }
        }
        int64_t len = end - bgn, allowed = (int64_t)A;
        if (mult == 0 || ln == 0) {
            continue;
        }
        int64_t L = ln < 0 || (int64_t)ln > len ? len : (int64_t)ln;
        if (L <= allowed) {
            continue;
        }
        const int64_t *h = t + end - L;
        int64_t cap = rep_limit(&bk, h, L);
        if (cap < allowed) {
            continue;
        }
        repeat_counts(h, L, cap, rep);
        int64_t nt = 0;
        for (int64_t j = 0; j + 1 < L; j++) {
            if (rep[j] >= allowed) {
                int64_t tok = h[j + 1];
                if (maxrep[tok] < 0) {
                    touched[nt++] = (int32_t)tok;
                }
                if (maxrep[tok] < rep[j]) {
                    maxrep[tok] = rep[j];
                }
            }
        }
        float bf = (float)b, mf = (float)mult;
        int64_t max_exp = 0;
        if (bf > 1.000001f) {
            max_exp = (int64_t)(88.7228391f / logf(bf));
        }
        for (int64_t i = 0; i < nt; i++) {
            int64_t tok = touched[i];
            if (single_breaker(&bk, tok)) {
                continue;
            }
            int64_t ex = maxrep[tok] - allowed;
            if (max_exp > 0 && ex > max_exp) {
                ex = max_exp;
            }
            if (x->dtype == FD_F64) {
                fd_store(x, r, tok, fdi_load_elem(x, r, tok) - mult * pow(b, (double)ex));
            }
            else {
                float pen = (float)((double)mf * pow((double)bf, (double)ex));
                fd_store(x, r, tok, (float)fdi_load_elem(x, r, tok) - pen);
            }
        }
        for (int64_t i = 0; i < nt; i++) {
            maxrep[touched[i]] = -1;
        }
    }
    return FD_OK;
}
