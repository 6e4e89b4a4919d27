/*
 * floor.c: the calibration floors of the benchmark suite (benchmarks/), not a decoding kernel.
 *
 * A kernel's time means little on its own: the suite reports it as a multiple of the least work
 * any implementation of that kernel must do on the same rows, measured in the same run on the
 * same machine. Two floors:
 *   read     one pass over the row that looks at every element (the dispatched argmax kernel of
 *            isa.c: maximum, first index and the NaN / +inf check). Every kernel reads its row at
 *            least once, so this bounds top-k, min-p, the penalties' row check and argmax.
 *   exp_sum  the read pass, then w = exp(x - max) and its sum without storing w (isa.c's
 *            exp-sum kernel): the two passes any exact softmax needs (the maximum must be known
 *            before the first exponential, or the sum rescaled at every new maximum). This bounds
 *            softmax, log-softmax, top-p, typical and the fused sampler, which need the exact
 *            normaliser.
 * Both use the same dispatched ISA copies as the kernels (FASTDECODE_ISA applies), so a multiple
 * of the floor measures the kernel's extra passes, not the instruction set. Rows of another dtype
 * are converted into the workspace first (as every kernel does), so the conversion is part of
 * the floor.
 */
#include "internal.h"

size_t fd_floor_workspace(int64_t n_cols)
{
    return fdi_align64((n_cols > 0 ? (size_t)n_cols : 1) * 4);
}

fd_status fd_floor(const fd_rows *in, int kind, double *out, void *ws, fd_errinfo *err)
{
    if (err) {
        err->row = -1;
        err->index = -1;
    }
    if (!fdi_valid_rows(in)) {
        return FD_ESHAPE;
    }
    if (kind != FD_FLOOR_READ && kind != FD_FLOOR_EXP_SUM) {
        return FD_EINVAL;
    }
    const fdi_isa_ops *ops = fdi_ops();
    int64_t n = in->n_cols;
    float *w = (float *)ws;
    for (int64_t r = 0; r < in->n_rows; r++) {
        if (n == 0) {
            out[r] = kind == FD_FLOOR_READ ? -INFINITY : 0.0;
            continue;
        }
        const float *x = w;
        if (in->dtype == FD_F32) {
            x = (const float *)in->data + r * in->row_stride;
        }
        else {
            fd_status st = fd_load_row(in, r, w, err);
            if (st != FD_OK) {
                return st;
            }
        }
        float m;
        int64_t am;
        if (fdi_argmax_check(x, n, &m, &am)) {
            return fd_load_row(in, r, w, err); /* names the first NaN / +inf */
        }
        if (kind == FD_FLOOR_READ) {
            out[r] = m;
        }
        else {
            out[r] = m == -INFINITY ? 0.0 : ops->exp_sum(x, n, m, NULL);
        }
    }
    return FD_OK;
}
