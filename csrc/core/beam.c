/*
 * beam.c: the beam-search step, log_softmax + beam score + top-k over each group of beams.
 *
 * For every group of group_size consecutive rows (the beams of one sequence) the k best of
 *   s(r, t) = lp(r, t) + beam_scores[r]            (a float32 addition)
 * over all (row, token) pairs of the group, best first, ties to the lower flat index r * V + t.
 * lp is log_softmax(z)[r, t] bit for bit as fd_softmax computes it (normalize != 0) or the logit
 * itself read as float32 (normalize == 0). This is Hugging Face's beam step: log_softmax, add
 * beam_scores[:, None], view as (batch, num_beams * V), topk(2 * num_beams).
 *
 * Why not a sort, or log_softmax then a selection. The group holds num_beams * V values (400k for
 * 8 beams of GPT-2) and only k (2 * num_beams) are wanted. Writing the log-probabilities out and
 * selecting from them reads and writes every value twice more than needed. Here each row is read
 * once for its block maxima (64-element blocks, the dispatched block_max kernel, which also
 * rejects NaN / +inf) and once for the exp sum (dispatched exp_sum; normalize only), and then only
 * the blocks that can still contribute are read a third time:
 *
 *   The k best so far are kept in a binary heap whose root is the worst of them (a bounded
 *   priority queue, as heapq.nlargest). Elements are visited in increasing flat index, so a new
 *   element with the root's score loses the tie (its index is larger): it enters exactly when
 *   s > root score. For a fixed row s is monotone non-decreasing in the logit z (every step,
 *   z - m, the double subtraction of log Z, the rounding to float and the addition of the beam
 *   score, is a correctly rounded monotone operation), so s(block max) is the largest s of the
 *   block, and a block with s(block max) <= root score is skipped without reading it. The test is
 *   exact, not a bound with a margin: it evaluates the same float expression on the block's own
 *   maximum. A whole row is skipped (after its check pass; its exp sum is never computed) when
 *   its largest possible s cannot beat the root: with normalize, lp <= 0 (log Z >= 0 because the
 *   row maximum has weight exactly 1), so s <= beam_scores[r], and more tightly lp <= -log Zlo
 *   with Zlo the exp sum of the block maxima alone (1/64 of the exps; row_bound below); without
 *   normalize, s <= s(row max).
 *   The threshold is carried across the rows of a group, so after the first rows most blocks of
 *   a typical row, and rows of low beam score as a whole, are skipped: for random logits
 *   the heap takes O(k log(N / k)) insertions and about k blocks per row are read again.
 *
 * Costs: per row one block-max pass and, with normalize, one exp pass (the same two passes as
 * log_softmax, without its write), then O(log k) per heap insertion. k may be as large as the whole
 * group (then this is a heap sort, O(N log N)). Nothing is allocated: the heap and a float32 row
 * (the converted row for float16 / bfloat16 / float64 input) live in the workspace.
 *
 * Errors, checked row by row in order: beam_scores[r] NaN or +inf (FD_EINVAL, err->row = r; -inf
 * is allowed and makes every s of the row -inf), then the row's logits (FD_ENAN / FD_EPOSINF with
 * err->index), then, with normalize, a row with no finite logit (FD_ENOFINITE, as log_softmax).
 * Groups before the failing one have been written.
 */
#include "internal.h"

#include <math.h>
#include <string.h>

/* the k best so far: scores and flat indices; root (0) is the worst */
typedef struct {
    float *s;
    int64_t *i;
    int64_t n;
} heap;

static inline int worse(float sa, int64_t ia, float sb, int64_t ib)
{
    return sa < sb || (sa == sb && ia > ib);
}

static void sift_down(heap *h, int64_t pos, int64_t n, float s, int64_t idx)
{
    for (;;) {
        int64_t c = 2 * pos + 1;
        if (c >= n) {
            break;
        }
        if (c + 1 < n && worse(h->s[c + 1], h->i[c + 1], h->s[c], h->i[c])) {
            c++;
        }
        if (!worse(h->s[c], h->i[c], s, idx)) {
            break;
        }
        h->s[pos] = h->s[c];
        h->i[pos] = h->i[c];
        pos = c;
    }
    h->s[pos] = s;
    h->i[pos] = idx;
}

static void push(heap *h, float s, int64_t idx)
{
    int64_t pos = h->n++;
    while (pos > 0) {
        int64_t p = (pos - 1) / 2;
        if (!worse(s, idx, h->s[p], h->i[p])) {
            break;
        }
        h->s[pos] = h->s[p];
        h->i[pos] = h->i[p];
        pos = p;
    }
    h->s[pos] = s;
    h->i[pos] = idx;
}

/* Heap sort in place: the worst goes to the end each time, so the array ends best first. */
static void sort_best_first(heap *h)
{
    for (int64_t end = h->n - 1; end > 0; end--) {
        float s = h->s[end];
        int64_t idx = h->i[end];
        h->s[end] = h->s[0];
        h->i[end] = h->i[0];
        sift_down(h, 0, end, s, idx);
    }
}

/* lp(z) of a row with maximum m and log Z lz: fd_softmax's log-mode expression, operation for
 * operation (+ 0.0: a zero log-probability is +0) */
static inline float log_prob(float z, float m, double lz)
{
    return (float)(((double)(z - m) - lz) + 0.0);
}

/* An upper bound of the row's largest lp, (float)-log Z, from the block maxima alone: they are nb
 * of the row's own terms of Z, so their sum shrunk by 1e-6 is below the Z that the full exp sum
 * computes (each exp-sum pass of isa.c -- float32 sums of 8-term lanes, added into double
 * accumulators -- is within about 2e-7 relative of the exact sum of its float terms, and the
 * bound needs less than 5e-7 in all), and -log of it, rounded to float, is >= the max's lp. */
static float row_bound(const fdi_isa_ops *ops, const float *bm, int64_t nb, float m)
{
    double zlo = ops->exp_sum(bm, nb, m, NULL) * (1.0 - 1e-6);
    return (float)((0.0 - log(zlo)) + 0.0);
}

size_t fd_beam_step_workspace(int64_t n_cols, int64_t k)
{
    size_t un = n_cols > 0 ? (size_t)n_cols : 1;
    size_t uk = k > 0 ? (size_t)k : 1;
    return fdi_align64(un * 4) + fdi_align64((size_t)fdi_n_blocks((int64_t)un) * 4) +
           fdi_align64(uk * 4) + fdi_align64(uk * 8);
}

/* Offers the elements of x[i0 .. i1) (row base `base` of the flat index) to the heap. */
static void scan(heap *h, int64_t k, const float *x, int64_t i0, int64_t i1, int64_t base,
                 int normalize, float m, double lz, float b)
{
    int64_t c = i0;
    for (; c < i1 && h->n < k; c++) {
        float lp = normalize ? log_prob(x[c], m, lz) : x[c];
        push(h, lp + b, base + c);
    }
    float thr = h->s[0];
    for (; c < i1; c++) {
        float lp = normalize ? log_prob(x[c], m, lz) : x[c];
        float s = lp + b;
        if (s > thr) {
            sift_down(h, 0, k, s, base + c);
            thr = h->s[0];
        }
    }
}

fd_status fd_beam_step(const fd_rows *in, const float *beam_scores, int64_t group_size, int64_t k,
                       int normalize, float *out_scores, int64_t *out_rows, int64_t *out_tokens,
                       void *ws, fd_errinfo *err)
{
    if (err) {
        err->row = -1;
        err->index = -1;
    }
    if (!fdi_valid_rows(in) || group_size < 1 || in->n_rows % group_size != 0) {
        return FD_ESHAPE;
    }
    int64_t V = in->n_cols;
    if (k < 1 || V == 0 || (k - 1) / V >= group_size) { /* k > group_size * V, no overflow */
        return FD_EINVAL;
    }
    const fdi_isa_ops *ops = fdi_ops();
    int64_t nb = fdi_n_blocks(V);
    char *p = (char *)ws;
    float *row = (float *)p;
    p += fdi_align64((size_t)V * 4);
    float *bm = (float *)p;
    p += fdi_align64((size_t)nb * 4);
    heap h;
    h.s = (float *)p;
    p += fdi_align64((size_t)k * 4);
    h.i = (int64_t *)p;
    int64_t n_groups = in->n_rows / group_size;
    for (int64_t g = 0; g < n_groups; g++) {
        h.n = 0;
        for (int64_t r = g * group_size; r < (g + 1) * group_size; r++) {
            float b = beam_scores[r];
            if (b != b || b == INFINITY) {
                if (err) {
                    err->row = r;
                }
                return FD_EINVAL;
            }
            /* x: the float32 row, read in place when it is float32, else converted */
            const float *x;
            if (in->dtype == FD_F32) {
                x = (const float *)in->data + r * in->row_stride;
                if (ops->block_max(x, V, bm)) {
                    return fd_load_row(in, r, row, err); /* the first offending element */
                }
            }
            else {
                fd_status st = fd_load_row(in, r, row, err);
                if (st != FD_OK) {
                    return st;
                }
                x = row;
                (void)ops->block_max(x, V, bm);
            }
            float m = -INFINITY;
            for (int64_t j = 0; j < nb; j++) {
                m = bm[j] > m ? bm[j] : m;
            }
            if (normalize && m == -INFINITY) {
                if (err) {
                    err->row = r;
                }
                return FD_ENOFINITE;
            }
            /* the row's largest s cannot beat the k-th best: skip it (file comment) */
            if (h.n == k && !((normalize ? b : m + b) > h.s[0])) {
                continue;
            }
            if (h.n == k && normalize && nb > 1 && !(row_bound(ops, bm, nb, m) + b > h.s[0])) {
                continue;
            }
            double lz = normalize ? log(ops->exp_sum(x, V, m, NULL)) : 0.0;
            int64_t base = (r - g * group_size) * V;
            for (int64_t j = 0; j < nb; j++) {
                if (h.n == k) {
                    float top = normalize ? log_prob(bm[j], m, lz) : bm[j];
                    if (!(top + b > h.s[0])) {
                        continue;
                    }
                }
                int64_t i0 = j * FDI_BLOCK, i1 = i0 + FDI_BLOCK < V ? i0 + FDI_BLOCK : V;
                scan(&h, k, x, i0, i1, base, normalize, m, lz, b);
            }
        }
        sort_best_first(&h);
        for (int64_t j = 0; j < k; j++) {
            out_scores[g * k + j] = h.s[j];
            out_rows[g * k + j] = g * group_size + h.i[j] / V;
            out_tokens[g * k + j] = h.i[j] % V;
        }
    }
    return FD_OK;
}
