/*
 * softmax.c: softmax / log-softmax with temperature, entropy and varentropy, argmax.
 *
 * The two-pass max-shifted softmax: pass 1 finds the row maximum m, pass 2 computes the weights
 * w = exp((z - m) / T) in float32 into scratch and their sum Z in double, pass 3 writes w / Z (or
 * (z - m) / T - log Z). Shifting by m before dividing by T keeps every exponent <= 0, so no
 * temperature, however small, overflows, and the largest weight is exactly 1, so Z >= 1 and the
 * division never loses the distribution to underflow. A one-pass "online" softmax would rescale
 * the running sum at every new maximum, which costs more than re-reading one row (a 128k-float
 * row is 512 KiB, L2 resident) and makes the sum depend on the data order in a second way.
 *
 * Entropy uses H = log Z - sum(w d) / Z (d = z - m), the weights and Z from the exp-sum kernel
 * and sum(w d) from the dot kernel (both isa.c; a float32 row is read in place), and varentropy a
 * further pass sum w (d - log Z + H)^2 / Z rather than E[log^2 p] - H^2, which cancels
 * catastrophically for peaked rows. -inf logits have w = 0 and are skipped (0 * -inf would be
 * NaN).
 *
 * Passes (float32 input, read in place unless out overlaps it partially): (1) the dispatched
 * argmax kernel (isa.c) gives m, the first maximum and the NaN / +inf check in one read;
 * (2) T != 1 only: (x - m) / T in double, rounded to float, into scratch; (3) exp and its sum
 * (isa.c's fixed block order), the weights written straight into a float32 output row; (4) w / Z
 * in place, or for log-softmax (x - m) - log Z. Passes 2 and 4 multiply by the reciprocal and
 * divide only where rounding could differ (isa.c), so the bits are those of the division. Other
 * dtypes are converted into scratch first. Every pass has AVX2 and AVX-512 copies that give the
 * same bits as the portable one.
 *
 * Temperature 0 is exact greedy: the one-hot of the first maximum (log: 0 / -inf). A zero
 * log-probability is written as +0. argmax needs no workspace: float32 rows go through isa.c's
 * argmax kernel (vertical maxima over 2048-element chunks with the NaN / +inf check folded in, one
 * horizontal reduction per chunk, then only the winning chunk is scanned for the first maximum);
 * other dtypes are converted in 512-element chunks on the stack through fd_load_row, so NaN and
 * +inf are reported with the same codes and indices as every other kernel.
 */
#include "internal.h"

#include <string.h>

#define FD_ARGMAX_CHUNK 512

/* two float rows: the shifted logits and their exp */
size_t fd_softmax_workspace(int64_t n_cols)
{
    return 2 * fdi_align64((n_cols > 0 ? (size_t)n_cols : 1) * 4);
}

static void put(const fd_rows *out, int64_t r, int64_t c, double x)
{
    if (out->dtype == FD_F32) {
        ((float *)out->data)[r * out->row_stride + c] = (float)x;
    }
    else {
        ((double *)out->data)[r * out->row_stride + c] = x;
    }
}

/* Whether out's row r overlaps in's row r other than exactly (then the row is read through a
 * copy, as before this fast path existed). */
static int partial_overlap(const fd_rows *in, const fd_rows *out, int64_t r)
{
    size_t oes = out->dtype == FD_F64 ? 8 : 4;
    const char *a = (const char *)in->data + (size_t)(r * in->row_stride) * 4;
    const char *b = (const char *)out->data + (size_t)(r * out->row_stride) * oes;
    size_t la = (size_t)in->n_cols * 4, lb = (size_t)in->n_cols * oes;
    if (a == b && oes == 4) {
        return 0;
    }
    return a < b + lb && b < a + la;
}

fd_status fd_softmax(const fd_rows *in, const fd_rows *out, fd_param temperature, int want_log,
                     void *ws, fd_errinfo *err)
{
    if (err) {
        err->row = -1;
        err->index = -1;
    }
    if (!fdi_valid_rows(in) || !fdi_valid_rows(out) || out->n_rows != in->n_rows ||
        out->n_cols != in->n_cols) {
        return FD_ESHAPE;
    }
    if (out->dtype != FD_F32 && out->dtype != FD_F64) {
        return FD_EINVAL;
    }
    const fdi_isa_ops *ops = fdi_ops();
    int64_t n = in->n_cols;
    float *w = (float *)ws;
    float *e2 = (float *)((char *)ws + fdi_align64((size_t)(n > 0 ? n : 1) * 4));
    for (int64_t r = 0; r < in->n_rows; r++) {
        double t = FD_PARAM_AT(temperature, r);
        if (!(t >= 0.0 && t < INFINITY)) {
            if (err) {
                err->row = r;
            }
            return FD_EINVAL;
        }
        if (n == 0) {
            continue;
        }
        /* x: the float32 row, read in place when it is float32 (one pass: max, first max, and
         * the NaN / +inf check), else converted into w */
        const float *x;
        float m;
        int64_t am;
        if (in->dtype == FD_F32 && !partial_overlap(in, out, r)) {
            x = (const float *)in->data + r * in->row_stride;
            if (fdi_argmax_check(x, n, &m, &am)) {
                return fd_load_row(in, r, w, err); /* the first offending element */
            }
        }
        else {
            fd_status st = fd_load_row(in, r, w, err);
            if (st != FD_OK) {
                return st;
            }
            x = w;
            (void)fdi_argmax_check(x, n, &m, &am);
        }
        if (m == -INFINITY) {
            if (err) {
                err->row = r;
            }
            return FD_ENOFINITE;
        }
        if (t == 0.0) {
            double on = want_log ? 0.0 : 1.0, off = want_log ? -INFINITY : 0.0;
            for (int64_t c = 0; c < n; c++) {
                put(out, r, c, c == am ? on : off);
            }
            continue;
        }
        /* src - shift: the scaled shifted logits (all <= 0) */
        const float *src = x;
        float shift = m;
        if (t != 1.0) {
            ops->shift_div(x, n, m, t, w);
            src = w;
            shift = 0.0f;
        }
        if (want_log) {
            /* + 0.0: a zero log-probability is +0 whatever the sign of the zero maximum */
            double lz = log(ops->exp_sum(src, n, shift, NULL));
            if (out->dtype == FD_F32) {
                ops->log_shift(src, n, shift, lz, (float *)out->data + r * out->row_stride);
            }
            else {
                double *o = (double *)out->data + r * out->row_stride;
                for (int64_t c = 0; c < n; c++) {
                    o[c] = ((double)(src[c] - shift) - lz) + 0.0;
                }
            }
            continue;
        }
        if (out->dtype == FD_F32) {
            /* the weights go straight into the output row, then are divided in place */
            float *o = (float *)out->data + r * out->row_stride;
            double z = ops->exp_sum(src, n, shift, o);
            ops->div_f32(o, n, z, o);
        }
        else {
            double *o = (double *)out->data + r * out->row_stride;
            double z = ops->exp_sum(src, n, shift, e2);
            for (int64_t c = 0; c < n; c++) {
                o[c] = (double)e2[c] / z;
            }
        }
    }
    return FD_OK;
}

fd_status fd_entropy(const fd_rows *in, double *entropy, double *varentropy, void *ws,
                     fd_errinfo *err)
{
    if (err) {
        err->row = -1;
        err->index = -1;
    }
    if (!fdi_valid_rows(in)) {
        return FD_ESHAPE;
    }
    const fdi_isa_ops *ops = fdi_ops();
    int64_t n = in->n_cols;
    float *w = (float *)ws;
    float *e = (float *)((char *)ws + fdi_align64((size_t)(n > 0 ? n : 1) * 4));
    for (int64_t r = 0; r < in->n_rows; r++) {
        /* x: the float32 row, read in place when it is float32, else converted into w */
        const float *x = w;
        float m = -INFINITY;
        if (in->dtype == FD_F32) {
            x = (const float *)in->data + r * in->row_stride;
            if (ops->argmax(x, n, &m, NULL)) {
                return fd_load_row(in, r, w, err); /* the first offending element */
            }
        }
        else {
            fd_status st = fd_load_row(in, r, w, err);
            if (st != FD_OK) {
                return st;
            }
            m = fdi_max(w, n);
        }
        if (m == -INFINITY) {
            if (err) {
                err->row = r;
            }
            return FD_ENOFINITE;
        }
        /* e = exp(d), d = x - m in float32; Z = sum e, S1 = sum e d over e > 0 */
        double z = ops->exp_sum(x, n, m, e);
        double s1 = ops->dot_shift_pos(e, x, n, m);
        double lz = log(z);
        double h = lz - s1 / z;
        if (entropy) {
            entropy[r] = h;
        }
        if (varentropy) {
            double acc = 0.0;
            for (int64_t c = 0; c < n; c++) {
                double q = (double)(x[c] - m) - lz + h;
                acc += e[c] > 0.0f ? (double)e[c] * q * q : 0.0;
            }
            varentropy[r] = acc / z;
        }
    }
    return FD_OK;
}

static size_t elem_size(fd_dtype t) { return t == FD_F64 ? 8 : t == FD_F32 ? 4 : 2; }

fd_status fd_argmax(const fd_rows *in, int64_t *out, fd_errinfo *err)
{
    if (err) {
        err->row = -1;
        err->index = -1;
    }
    if (!fdi_valid_rows(in)) {
        return FD_ESHAPE;
    }
    float buf[FD_ARGMAX_CHUNK];
    size_t es = elem_size(in->dtype);
    for (int64_t r = 0; r < in->n_rows; r++) {
        if (in->dtype == FD_F32) {
            const float *x = (const float *)in->data + r * in->row_stride;
            float m;
            int64_t am;
            if (fdi_argmax_check(x, in->n_cols, &m, &am)) {
                int64_t i = 0;
                while (x[i] < INFINITY || x[i] == -INFINITY) {
                    i++;
                }
                if (err) {
                    err->row = r;
                    err->index = i;
                }
                return x[i] != x[i] ? FD_ENAN : FD_EPOSINF;
            }
            if (am < 0) {
                if (err) {
                    err->row = r;
                }
                return FD_ENOFINITE;
            }
            out[r] = am;
            continue;
        }
        float best = -INFINITY;
        int64_t bi = -1;
        const char *row = (const char *)in->data + (size_t)(r * in->row_stride) * es;
        for (int64_t off = 0; off < in->n_cols; off += FD_ARGMAX_CHUNK) {
            int64_t len = in->n_cols - off < FD_ARGMAX_CHUNK ? in->n_cols - off : FD_ARGMAX_CHUNK;
            fd_rows view = {(void *)(row + (size_t)off * es), in->dtype, 1, len, len};
            fd_status st = fd_load_row(&view, 0, buf, err);
            if (st != FD_OK) {
                if (err) {
                    err->row = r;
                    err->index += off;
                }
                return st;
            }
            float m = fdi_max(buf, len);
            if (m > best) {
                int64_t i = 0;
                while (buf[i] != m) {
                    i++;
                }
                best = m;
                bi = off + i;
            }
        }
        if (bi < 0) {
            if (err) {
                err->row = r;
            }
            return FD_ENOFINITE;
        }
        out[r] = bi;
    }
    return FD_OK;
}
