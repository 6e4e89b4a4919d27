/*
 * contrastive.c: the contrastive-decoding score (expert vs amateur) and classifier-free guidance.
 *
 * Contrastive decoding (Li et al. 2022, arXiv 2210.15097) scores token x, given an expert row z_e
 * and an amateur row z_a, only on the expert's plausibility head
 *     V_head = {x : p_e(x) >= alpha * max p_e}
 * with either
 *     log_softmax(z_e)(x) - log_softmax(z_a / tau)(x)          (Li et al. 2022), or
 *     (1 + beta) * z_e(x) - beta * z_a(x) / tau                 (O'Brien & Lewis 2023)
 * and filter_value (-inf) elsewhere. The head is the min-p mask of the expert, decided in logit
 * space exactly as filter.c's min-p decides it: x is in the head when z_e(x) is finite and
 * !((double)(z_e(x) - max z_e) < log(alpha)), the subtraction in float32. No exp over the
 * vocabulary is needed for the mask, the maximum is always in it (the head is never empty), and
 * alpha = 0 (log 0 = -inf) keeps every token the expert gives a finite logit. A token the expert
 * rules out (-inf) is never in the head, whatever alpha.
 *
 * Why not exponentiate the mask: p >= alpha * max p rounds differently from the logit-space test
 * for probabilities near underflow, and the logit test is what llama.cpp and our min-p use, so
 * min_p(z_e, alpha) and this kernel's head are the same set, bit for bit.
 *
 * Arithmetic. Rows are loaded as float32 (fd_load_row: NaN / +inf rejected) when the output is
 * float32; the log-normaliser of each row is log of isa.c's exp sum (float32 weights summed in
 * double, the order fixed), and the score is evaluated in double from the float32 values and
 * rounded once to float32. With a float64 output every step is double: float64 inputs are read
 * as they are (other dtypes widened exactly), exp and log are libm's double functions summed in
 * index order. Either way the passes are: max of each row (the argmax kernel), one exp sum per
 * row for Li (none for O'Brien), one pass that evaluates the head and the score. That pass is
 * branch-free so that it vectorises: it computes every column's score and selects score or fill,
 * only noting a problem (below); a second pass locates the first problem column when there is one.
 *
 * A head token whose amateur logit is -inf would score +inf (the amateur rules out what the
 * expert finds plausible): no finite answer exists, so it is an error (FD_EINVAL with the
 * amateur column), rather than a +inf that every later kernel would reject without saying why.
 *
 * Classifier-free guidance (fd_guidance) is the Hugging Face arithmetic:
 *     normalize = 1: c = log_softmax(cond), u = log_softmax(uncond),
 *                    out = g * (c - u) + u, and out = c when g == 1
 *                    (UnbatchedClassifierFreeGuidanceLogitsProcessor, which HF's generate uses
 *                    for `guidance_scale` with `negative_prompt_ids`);
 *     normalize = 0: out = u + (c - u) * g on the raw logits (ClassifierFreeGuidanceLogitsProcessor).
 * In float32 each operation is rounded to float32 as torch rounds it (g is rounded to float32
 * first, as torch does with a Python scalar). Where torch would produce NaN or an infinity from
 * -inf inputs (-inf - -inf, 0 * -inf, +inf + -inf), the token is excluded: a token that either
 * distribution rules out (-inf) gets -inf (except the g == 1 shortcut above, which is c). A
 * finite result that overflows (an absurd g) is FD_EINVAL.
 *
 * Errors name the input through err->index: a column of the first input (expert / cond) is
 * reported as itself, a column of the second (amateur / uncond) as n_cols + column, so the binding
 * can say which argument is at fault without rescanning. Every check of a row happens before the
 * row is written; earlier rows may have been written.
 */
#include "internal.h"

#include <string.h>

/* four rows of doubles (the float32 path uses four float rows of the same slots) */
size_t fd_contrastive_workspace(int64_t n_cols)
{
    return 4 * fdi_align64((n_cols > 0 ? (size_t)n_cols : 1) * 8);
}

size_t fd_guidance_workspace(int64_t n_cols) { return fd_contrastive_workspace(n_cols); }

static void set_err(fd_errinfo *err, int64_t row, int64_t index)
{
    if (err) {
        err->row = row;
        err->index = index;
    }
}

/* Row r of x as float32 into dst; errors are reported with index + shift. */
static fd_status load_f32(const fd_rows *x, int64_t r, float *dst, int64_t shift, fd_errinfo *err)
{
    fd_status st = fd_load_row(x, r, dst, err);
    if (st != FD_OK) {
        set_err(err, r, (err ? err->index : 0) + shift);
    }
    return st;
}

/* Row r of x as double into dst (float64 read as is, other dtypes widened exactly through a float32
 * load into tmp); NaN / +inf rejected with index + shift. */
static fd_status load_f64(const fd_rows *x, int64_t r, double *dst, float *tmp, int64_t shift,
                          fd_errinfo *err)
{
    int64_t n = x->n_cols;
    if (x->dtype == FD_F64) {
        const double *s = (const double *)x->data + r * x->row_stride;
        for (int64_t i = 0; i < n; i++) {
            double v = s[i];
            if (v != v || v == INFINITY) {
                set_err(err, r, i + shift);
                return v != v ? FD_ENAN : FD_EPOSINF;
            }
            dst[i] = v;
        }
        return FD_OK;
    }
    fd_status st = load_f32(x, r, tmp, shift, err);
    if (st != FD_OK) {
        return st;
    }
    for (int64_t i = n - 1; i >= 0; i--) { /* tmp may alias dst's storage: widen back to front */
        dst[i] = (double)tmp[i];
    }
    return FD_OK;
}

static double dmax(const double *v, int64_t n)
{
    double m = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        m = v[i] > m ? v[i] : m;
    }
    return m + 0.0;
}

/* log sum exp(v - m) in index order, v <= m, m finite */
static double dlse(const double *v, int64_t n, double m)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) {
        s += exp(v[i] - m);
    }
    return log(s);
}

/* v rounded to float32 to nearest (beyond FLT_MAX + half an ulp: infinity): the IEC 60559
 * conversion C11 Annex F specifies for every double, which GCC and clang implement on every
 * target we build for (cvtsd2ss / fcvt), so it vectorises. */
static inline float to_f32(double v) { return (float)v; }

static void put(const fd_rows *out, int64_t r, int64_t c, double v)
{
    if (out->dtype == FD_F64) {
        ((double *)out->data)[r * out->row_stride + c] = v;
    }
    else {
        ((float *)out->data)[r * out->row_stride + c] = to_f32(v);
    }
}

static int check_pair(const fd_rows *a, const fd_rows *b, const fd_rows *out)
{
    return fdi_valid_rows(a) && fdi_valid_rows(b) && fdi_valid_rows(out) &&
           a->n_rows == b->n_rows && a->n_cols == b->n_cols && out->n_rows == a->n_rows &&
           out->n_cols == a->n_cols;
}

fd_status fd_contrastive(const fd_rows *expert, const fd_rows *amateur, const fd_rows *out,
                         fd_param alpha, fd_param amateur_temperature, fd_param beta, int use_beta,
                         double filter_value, void *ws, fd_errinfo *err)
{
    set_err(err, -1, -1);
    if (!check_pair(expert, amateur, out)) {
        return FD_ESHAPE;
    }
    if (out->dtype != FD_F32 && out->dtype != FD_F64) {
        return FD_EINVAL;
    }
    if (filter_value != filter_value) {
        return FD_EINVAL;
    }
    const fdi_isa_ops *ops = fdi_ops();
    int64_t n = expert->n_cols;
    size_t rb = fdi_align64((size_t)(n > 0 ? n : 1) * 8);
    int dbl = out->dtype == FD_F64;
    for (int64_t r = 0; r < expert->n_rows; r++) {
        double al = FD_PARAM_AT(alpha, r);
        double tau = FD_PARAM_AT(amateur_temperature, r);
        double be = use_beta ? FD_PARAM_AT(beta, r) : 0.0;
        if (!(al >= 0.0 && al <= 1.0) || !(tau > 0.0 && tau < INFINITY) ||
            (use_beta && !(be >= 0.0 && be < INFINITY))) {
            set_err(err, r, -1);
            return FD_EINVAL;
        }
        if (n == 0) {
            continue;
        }
        double lal = log(al); /* -inf for alpha = 0: every finite expert logit is in the head */
        if (dbl) {
            double *e = (double *)ws, *a = (double *)((char *)ws + rb);
            double *as = (double *)((char *)ws + 2 * rb); /* the amateur scaled (Li) */
            float *tmp = (float *)as;                     /* the loads' scratch before that */
            fd_status st = load_f64(expert, r, e, tmp, 0, err);
            if (st == FD_OK) {
                st = load_f64(amateur, r, a, tmp, n, err);
            }
            if (st != FD_OK) {
                return st;
            }
            double me = dmax(e, n);
            if (me == -INFINITY) {
                set_err(err, r, 0);
                return FD_ENOFINITE;
            }
            double le = 0.0, ma = 0.0, la = 0.0;
            if (!use_beta) {
                ma = dmax(a, n);
                if (ma == -INFINITY) {
                    set_err(err, r, n);
                    return FD_ENOFINITE;
                }
                le = dlse(e, n, me);
                for (int64_t c = 0; c < n; c++) {
                    as[c] = (a[c] - ma) / tau;
                }
                la = dlse(as, n, 0.0);
            }
            /* the scores go to e in place (each e[c] is read once, before it is replaced) */
            for (int64_t c = 0; c < n; c++) {
                double z = e[c];
                if (z == -INFINITY || (z - me) < lal) {
                    e[c] = filter_value;
                    continue;
                }
                if (a[c] == -INFINITY) {
                    set_err(err, r, n + c);
                    return FD_EINVAL;
                }
                double v = use_beta ? (1.0 + be) * z - be * (a[c] / tau)
                                    : ((z - me) - le) - (as[c] - la);
                if (!(v > -INFINITY && v < INFINITY)) {
                    set_err(err, r, -1); /* finite inputs, an infinite score: beta or tau extreme */
                    return FD_EINVAL;
                }
                e[c] = v;
            }
            for (int64_t c = 0; c < n; c++) {
                put(out, r, c, e[c]);
            }
            continue;
        }
        float *e = (float *)ws, *a = (float *)((char *)ws + rb), *s = (float *)((char *)ws + 2 * rb);
        float *o = (float *)((char *)ws + 3 * rb); /* the output row */
        fd_status st = load_f32(expert, r, e, 0, err);
        if (st == FD_OK) {
            st = load_f32(amateur, r, a, n, err);
        }
        if (st != FD_OK) {
            return st;
        }
        float me;
        (void)ops->argmax(e, n, &me, NULL);
        if (me == -INFINITY) {
            set_err(err, r, 0);
            return FD_ENOFINITE;
        }
        double le = 0.0, la = 0.0;
        const float *as = a; /* the amateur scaled by 1 / tau (Li), a raw copy kept in a */
        float sa = 0.0f;     /* its shift: as[c] - sa is the scaled, shifted logit */
        if (!use_beta) {
            float ma;
            (void)ops->argmax(a, n, &ma, NULL);
            if (ma == -INFINITY) {
                set_err(err, r, n);
                return FD_ENOFINITE;
            }
            le = log(ops->exp_sum(e, n, me, NULL));
            if (tau != 1.0) {
                ops->shift_div(a, n, ma, tau, s);
                as = s;
            }
            else {
                sa = ma;
            }
            la = log(ops->exp_sum(as, n, sa, NULL));
        }
        /* Branch-free (it vectorises): every column's score is computed, kept or replaced by
         * the fill; a head token with the amateur's -inf, or an infinite score, is only noted,
         * and the first such column located by a second pass (rare: an error). */
        float fv = to_f32(filter_value);
        double b1 = 1.0 + be;
        int bad = 0;
        for (int64_t c = 0; c < n; c++) {
            float z = e[c];
            int head = (z != -INFINITY) & !((double)(z - me) < lal);
            double v = use_beta ? b1 * (double)z - be * ((double)a[c] / tau)
                                : ((double)(z - me) - le) - ((double)(as[c] - sa) - la);
            float f = to_f32(v);
            bad |= head & !((f > -INFINITY) & (f < INFINITY));
            o[c] = fdi_fsel(head, f, fv);
        }
        for (int64_t c = 0; bad && c < n; c++) {
            float z = e[c];
            if (z == -INFINITY || (double)(z - me) < lal) {
                continue;
            }
            set_err(err, r, a[c] == -INFINITY ? n + c : -1);
            if (a[c] == -INFINITY || !(o[c] > -INFINITY && o[c] < INFINITY)) {
                return FD_EINVAL; /* the amateur's -inf in the head, or an overflow */
            }
        }
        set_err(err, -1, -1);
        memcpy((float *)out->data + r * out->row_stride, o, (size_t)n * sizeof(float));
    }
    return FD_OK;
}

/* o[i] = g * (c - u) + u (normalize) or u + (c - u) * g in float32, -inf where c or u is; nonzero
 * when a kept value overflowed. Inlined with a constant `normalize` so that each loop vectorises. */
static inline int guide_f32(const float *c, const float *u, float *o, int64_t n, float g,
                            int normalize)
{
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        float ci = c[i], ui = u[i];
        int excl = (ci == -INFINITY) | (ui == -INFINITY);
        float t = ci - ui;
        float v = normalize ? g * t + ui : ui + t * g;
        bad |= !excl & !((v > -INFINITY) & (v < INFINITY));
        o[i] = fdi_fsel(excl, -INFINITY, v);
    }
    return bad;
}

fd_status fd_guidance(const fd_rows *cond, const fd_rows *uncond, const fd_rows *out,
                      fd_param guidance_scale, int normalize, void *ws, fd_errinfo *err)
{
    set_err(err, -1, -1);
    if (!check_pair(cond, uncond, out)) {
        return FD_ESHAPE;
    }
    if (out->dtype != FD_F32 && out->dtype != FD_F64) {
        return FD_EINVAL;
    }
    const fdi_isa_ops *ops = fdi_ops();
    int64_t n = cond->n_cols;
    size_t rb = fdi_align64((size_t)(n > 0 ? n : 1) * 8);
    int dbl = out->dtype == FD_F64;
    for (int64_t r = 0; r < cond->n_rows; r++) {
        double g = FD_PARAM_AT(guidance_scale, r);
        if (!(g > -INFINITY && g < INFINITY)) {
            set_err(err, r, -1);
            return FD_EINVAL;
        }
        if (n == 0) {
            continue;
        }
        if (dbl) {
            double *c = (double *)ws, *u = (double *)((char *)ws + rb);
            float *tmp = (float *)((char *)ws + 2 * rb);
            fd_status st = load_f64(cond, r, c, tmp, 0, err);
            if (st == FD_OK) {
                st = load_f64(uncond, r, u, tmp, n, err);
            }
            if (st != FD_OK) {
                return st;
            }
            if (normalize) {
                double mc = dmax(c, n), mu = dmax(u, n);
                if (mc == -INFINITY || mu == -INFINITY) {
                    set_err(err, r, mc == -INFINITY ? 0 : n);
                    return FD_ENOFINITE;
                }
                double lc = dlse(c, n, mc), lu = dlse(u, n, mu);
                for (int64_t i = 0; i < n; i++) {
                    c[i] = ((c[i] - mc) - lc) + 0.0;
                    u[i] = ((u[i] - mu) - lu) + 0.0;
                }
            }
            for (int64_t i = 0; i < n; i++) {
                double v;
                if (normalize && g == 1.0) {
                    v = c[i];
                }
                else if (c[i] == -INFINITY || u[i] == -INFINITY) {
                    v = -INFINITY;
                }
                else {
                    v = normalize ? g * (c[i] - u[i]) + u[i] : u[i] + (c[i] - u[i]) * g;
                    if (!(v > -INFINITY && v < INFINITY)) {
                        set_err(err, r, i);
                        return FD_EINVAL;
                    }
                }
                c[i] = v;
            }
            for (int64_t i = 0; i < n; i++) {
                put(out, r, i, c[i]);
            }
            continue;
        }
        float *c = (float *)ws, *u = (float *)((char *)ws + rb);
        fd_status st = load_f32(cond, r, c, 0, err);
        if (st == FD_OK) {
            st = load_f32(uncond, r, u, n, err);
        }
        if (st != FD_OK) {
            return st;
        }
        if (normalize) {
            float mc, mu;
            (void)ops->argmax(c, n, &mc, NULL);
            (void)ops->argmax(u, n, &mu, NULL);
            if (mc == -INFINITY || mu == -INFINITY) {
                set_err(err, r, mc == -INFINITY ? 0 : n);
                return FD_ENOFINITE;
            }
            /* log_softmax in place, as fd_softmax writes it */
            ops->log_shift(c, n, mc, log(ops->exp_sum(c, n, mc, NULL)), c);
            ops->log_shift(u, n, mu, log(ops->exp_sum(u, n, mu, NULL)), u);
        }
        float gf = to_f32(g);
        if (!(gf > -INFINITY && gf < INFINITY)) {
            set_err(err, r, -1);
            return FD_EINVAL;
        }
        float *o = c; /* g == 1 with normalize: c itself */
        if (!(normalize && g == 1.0)) {
            /* branch-free, so that it vectorises: excluded tokens selected to -inf, an overflow
             * of the others collected in a flag and located afterwards */
            o = (float *)((char *)ws + 2 * rb);
            int bad = normalize ? guide_f32(c, u, o, n, gf, 1) : guide_f32(c, u, o, n, gf, 0);
            for (int64_t i = 0; bad && i < n; i++) {
                if (c[i] != -INFINITY && u[i] != -INFINITY && !(o[i] > -INFINITY && o[i] < INFINITY)) {
                    set_err(err, r, i);
                    return FD_EINVAL;
                }
            }
        }
        memcpy((float *)out->data + r * out->row_stride, o, (size_t)n * sizeof(float));
    }
    return FD_OK;
}
