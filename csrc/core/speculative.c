/*
 * speculative.c: verification of drafted tokens for speculative decoding (Leviathan, Kalman and
 * Matias 2023, arXiv 2211.17192, Algorithm 1; Chen et al. 2023, arXiv 2302.01318).
 *
 * A draft proposes up to gamma tokens d_1 .. d_n for a row; the target scored the prefix and the
 * drafts in one call, giving its processed logits at the n + 1 positions. Per row, in order:
 *
 *   sampling:  accept d_i while u_i * q_i(d_i) < p_i(d_i)  (that is u_i < p/q with u_i uniform in
 *              [0, 1): probability min(1, p/q) exactly); at the first rejection the next token is
 *              drawn from normalize(max(0, p_i - q_i)) (from p_i when that residual is all zero);
 *              after n acceptances the bonus token is drawn from p_{n+1}.
 *   greedy:    accept d_i while d_i is the first maximum of the target row i; the next token is
 *              the first maximum of the first row not matched (row n + 1 after full acceptance).
 *
 * p and q are the distributions the fused sampler draws from when given these logits with
 * temperature 1 and no filter (sample.c's pick): float32 weights w = exp(z - max) by the dispatched
 * vectorised exp, normalised by their blocked double sum. A draft token drawn by fd_sample from the
 * draft's processed logits is therefore drawn from exactly the q used here -- the condition for
 * the output to be distributed as plain sampling from the target (transformers #32867 and #47932
 * were violations of it). With no draft logits the drafts are deterministic: q is the one-hot of
 * d_i, the test is u_i < p_i(d_i), and the residual is p_i with d_i removed.
 *
 * Randomness: u_i = fd_uniform(seed, position + i - 1, FD_DRAW_SPEC_ACCEPT) for the test of d_i,
 * and fd_uniform(seed, position + j, FD_DRAW_SPEC_NEXT) for the token drawn at draft index j
 * (residual or bonus): each a pure function of the row's seed and the absolute position of the
 * token it decides, so rows are independent of their batch. Each position is decided once (an
 * accepted draft, or the residual/bonus token), so reusing its stream in a later step for a
 * position left undecided is sound.
 */
#include "internal.h"

#include <string.h>

typedef struct {
    float *v;    /* the row read as float32 */
    float *wp;   /* target weights */
    float *wq;   /* draft weights */
    double *r;   /* residual weights */
    double *bs;  /* block sums */
} spec_ws;

static spec_ws layout(void *ws, int64_t n)
{
    size_t un = n > 0 ? (size_t)n : 1;
    uintptr_t p = ((uintptr_t)ws + 63) & ~(uintptr_t)63;
    spec_ws L;
    L.v = (float *)p;
    p += fdi_align64(un * sizeof(float));
    L.wp = (float *)p;
    p += fdi_align64(un * sizeof(float));
    L.wq = (float *)p;
    p += fdi_align64(un * sizeof(float));
    L.r = (double *)p;
    p += fdi_align64(un * sizeof(double));
    L.bs = (double *)p;
    return L;
}

size_t fd_spec_verify_workspace(int64_t n_cols)
{
    size_t un = n_cols > 0 ? (size_t)n_cols : 1;
    return 64 + 3 * fdi_align64(un * sizeof(float)) + fdi_align64(un * sizeof(double)) +
           fdi_align64((size_t)fdi_n_blocks(n_cols > 0 ? n_cols : 1) * sizeof(double));
}

static void set_err(fd_errinfo *err, int64_t row, int64_t index)
{
    if (err) {
        err->row = row;
        err->index = index;
    }
}

/* Row `row` of x as float32 in L->v, checked: NaN / +inf set *st to their status. */
static const float *load(const fd_rows *x, int64_t row, spec_ws *L, fd_status *st)
{
    fd_errinfo e = {-1, -1};
    *st = fd_load_row(x, row, L->v, &e);
    return L->v;
}

/* The first maximum of a finite-checked float32 row; -1 when every value is -inf. */
static int64_t first_max(const float *v, int64_t n)
{
    int64_t am = -1;
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        if (v[i] > m) {
            m = v[i];
            am = i;
        }
    }
    return am;
}

/* Inverse CDF over double weights r[0..n) (>= 0) with the blocked summation order of sample.c:
 * the first i whose running sum exceeds u * total. Returns -1 when the total is 0. */
static int64_t pick_double(const double *r, int64_t n, double u, double *bs)
{
    int64_t nb = fdi_n_blocks(n);
    double total = 0.0;
    for (int64_t b = 0; b < nb; b++) {
        int64_t i1 = (b + 1) * FDI_BLOCK < n ? (b + 1) * FDI_BLOCK : n;
        double acc = 0.0;
        for (int64_t i = b * FDI_BLOCK; i < i1; i++) {
            acc += r[i];
        }
        bs[b] = acc;
        total += acc;
    }
    if (!(total > 0.0)) {
        return -1;
    }
    double target = u * total, run = 0.0;
    for (int64_t b = 0; b < nb; b++) {
        if (run + bs[b] > target) {
            int64_t i1 = (b + 1) * FDI_BLOCK < n ? (b + 1) * FDI_BLOCK : n;
            double s = 0.0;
            for (int64_t i = b * FDI_BLOCK; i < i1; i++) {
                s += r[i];
                if (run + s > target) {
                    return i;
                }
            }
            return i1 - 1;
        }
        run += bs[b];
    }
    int64_t i = n - 1;
    while (i > 0 && !(r[i] > 0.0)) {
        i--;
    }
    return i;
}

fd_status fd_spec_verify(const fd_rows *target, const fd_rows *draft, const int64_t *tokens,
                         int64_t tokens_stride, int64_t gamma, const int64_t *n_draft,
                         const uint8_t *greedy, const uint64_t *seed, int64_t seed_stride,
                         const int64_t *position, int64_t position_stride, int64_t *n_accepted,
                         int64_t *next_token, void *ws, fd_errinfo *err)
{
    set_err(err, -1, -1);
    if (!target || !fdi_valid_rows(target) || (draft && !fdi_valid_rows(draft)) || gamma < 0 ||
        gamma == INT64_MAX || target->n_rows < 0 || target->n_cols < 0 ||
        target->n_cols > INT32_MAX || target->n_rows % (gamma + 1) != 0 ||
        (target->n_rows > 1 && target->row_stride < target->n_cols) ||
        (target->n_rows > 0 && target->n_cols > 0 && !target->data)) {
        return FD_ESHAPE;
    }
    const int64_t B = target->n_rows / (gamma + 1), V = target->n_cols;
    if (draft && (draft->n_rows != B * gamma || draft->n_cols != V ||
                  (draft->n_rows > 1 && draft->row_stride < draft->n_cols) ||
                  (draft->n_rows > 0 && V > 0 && !draft->data))) {
        return FD_ESHAPE;
    }
    if (B > 0 && (!n_accepted || !next_token || (gamma > 0 && !tokens))) {
        return FD_ESHAPE;
    }
    spec_ws L = layout(ws, V);
    for (int64_t b = 0; b < B; b++) {
        int64_t n = n_draft ? n_draft[b] : gamma;
        if (n < 0 || n > gamma) {
            set_err(err, b, -1);
            return FD_EINVAL;
        }
        const int64_t *d = tokens ? tokens + b * tokens_stride : NULL;
        for (int64_t i = 0; i < n; i++) {
            if (d[i] < 0 || d[i] >= V) {
                set_err(err, b, i);
                return FD_ERANGE;
            }
        }
        if (V == 0) {
            set_err(err, b, 0);
            return FD_ENOFINITE;
        }
        const int g = greedy ? greedy[b] != 0 : 0;
        fd_status st;
        int64_t acc = 0, next = -1;
        if (g) {
            for (int64_t i = 0; i <= n; i++) {
                const float *x = load(target, b * (gamma + 1) + i, &L, &st);
                if (st != FD_OK) {
                    set_err(err, b, i);
                    return st;
                }
                int64_t am = first_max(x, V);
                if (am < 0) {
                    set_err(err, b, i);
                    return FD_ENOFINITE;
                }
                if (i == n || d[i] != am) {
                    acc = i;
                    next = am;
                    break;
                }
            }
        }
        else {
            if (!seed || !position) {
                set_err(err, b, -1);
                return FD_EINVAL;
            }
            const uint64_t s = seed[b * seed_stride];
            const uint64_t pos = (uint64_t)position[b * position_stride];
            double totp = 0.0, totq = 1.0;
            int64_t i = 0;
            for (; i <= n; i++) {
                const float *x = load(target, b * (gamma + 1) + i, &L, &st);
                if (st != FD_OK) {
                    set_err(err, b, i);
                    return st;
                }
                if (first_max(x, V) < 0) {
                    set_err(err, b, i);
                    return FD_ENOFINITE;
                }
                if (i == n) {
                    /* every draft accepted: the bonus token from p_{n+1} */
                    double u = fd_uniform(s, pos + (uint64_t)i, FD_DRAW_SPEC_NEXT);
                    next = fdi_pick(x, V, u, L.wp, L.bs, &totp);
                    acc = n;
                    break;
                }
                (void)fdi_pick(x, V, 0.0, L.wp, L.bs, &totp);
                const double pd = (double)L.wp[d[i]] / totp;
                double qd = 1.0;
                if (draft) {
                    const float *y = load(draft, b * gamma + i, &L, &st);
                    if (st != FD_OK) {
                        set_err(err, b, gamma + 1 + i);
                        return st;
                    }
                    if (first_max(y, V) < 0) {
                        set_err(err, b, gamma + 1 + i);
                        return FD_ENOFINITE;
                    }
                    (void)fdi_pick(y, V, 0.0, L.wq, L.bs, &totq);
                    qd = (double)L.wq[d[i]] / totq;
                    if (!(qd > 0.0)) {
                        /* the draft's own distribution gives its token probability 0: the
                         * token was not drawn from these logits */
                        set_err(err, b, gamma + 1 + i);
                        return FD_EINVAL;
                    }
                }
                double u = fd_uniform(s, pos + (uint64_t)i, FD_DRAW_SPEC_ACCEPT);
                if (u * qd < pd) {
                    continue; /* accepted */
                }
                /* rejected: the residual normalize(max(0, p - q)) */
                acc = i;
                for (int64_t j = 0; j < V; j++) {
                    double pj = (double)L.wp[j] / totp;
                    double qj = draft ? (double)L.wq[j] / totq : (j == d[i] ? 1.0 : 0.0);
                    L.r[j] = pj > qj ? pj - qj : 0.0;
                }
                double u2 = fd_uniform(s, pos + (uint64_t)i, FD_DRAW_SPEC_NEXT);
                next = pick_double(L.r, V, u2, L.bs);
                if (next < 0) {
                    /* max(0, p - q) sums to 0 (p == q up to rounding): draw from p */
                    next = fdi_pick(x, V, u2, L.wp, L.bs, &totp);
                }
                break;
            }
        }
        n_accepted[b] = acc;
        next_token[b] = next;
    }
    return FD_OK;
}
