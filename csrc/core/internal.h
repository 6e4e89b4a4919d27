/*
 * Internal helpers shared by the core's translation units (not part of the public API).
 *
 * Candidate lists: the fused sampler and the dense filters work on a list of n (value, id) pairs,
 * ids strictly increasing. Each fdi_* filter compacts the list in place, stably (kept pairs keep
 * their relative order), and returns the new length. Values are float32 and may be -inf (weight 0);
 * never NaN or +inf (fd_load_row rejects those). Filters never sort the whole list: thresholds are
 * found by radix selection over the float bit patterns, or for the mass-based cuts on long lists
 * by linear bins of a distance key finished by the radix passes (select.c).
 *
 * Every fdi_* filter needs at most fdi_workspace(n) bytes of scratch, 64-byte aligned by the caller.
 * The dense fd_filter makes the same decisions on a whole row and writes it through one keep rule
 * (fdi_keep below) instead of compacting a list.
 */
#ifndef FASTDECODE_INTERNAL_H
#define FASTDECODE_INTERNAL_H

#include "fastdecode/fd.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

size_t fdi_workspace(int64_t n);

/* Whether x is a usable row view (dtype.c): sizes >= 0, data present when there are elements, a
 * known dtype, rows that do not overlap (row_stride >= n_cols when n_rows > 1). */
int fdi_valid_rows(const fd_rows *x);

/* Max of v[0..n) (-inf if n == 0 or all -inf; a zero maximum as +0). */
float fdi_max(const float *v, int64_t n);
/* Max and first index of the max (-1: all -inf); nonzero if x holds NaN or +inf. */
int fdi_argmax_check(const float *x, int64_t n, float *max, int64_t *arg);
/* Top-k candidates of x by its 64-element block maxima bm (select.c); -1 if not applicable. */
int64_t fdi_block_candidates(const float *x, int64_t n, const float *bm, int64_t k, float t_div,
                             float *v, int32_t *id, void *radix);

/* Selection primitives (select.c). Keys: a float maps to a uint32 whose unsigned order is the
 * float order (invert = 1 complements them for ascending walks). A cut is the first key of the
 * descending walk whose cumulative count (w == NULL) or weight reaches target; the count and
 * weight strictly above it and the count equal to it are returned. fdi_linear_cut finds the same
 * cut through linear bins of the distance from `base` (whatever its hint dlim). fdi_compact keeps
 * keys > T plus the first take_eq keys == T (list order); fdi_compact_tail keeps keys > T plus all
 * but the first skip_eq keys == T. Both compact stably in place, reading the keys from src. */
size_t fdi_radix_workspace(int64_t n);
double fdi_weights(const float *v, int64_t n, float max, float *w);
double fdi_dot_pos(const float *w, const float *d, int64_t n);
void fdi_exp(const float *x, int64_t n, float shift, float *out);
uint32_t fdi_radix_cut(const float *v, const float *w, int64_t n, int invert, double target,
                       void *ws, int64_t *n_above, double *w_above, int64_t *n_eq, int *found);
uint32_t fdi_linear_cut(const float *v, const float *w, int64_t n, int invert, float base,
                        double target, float dlim, void *ws, int64_t *n_above, double *w_above,
                        int64_t *n_eq);
/* fdi_linear_cut's hints dlim (the distance beyond which the crossing is not expected; the cut
 * does not depend on it): for a top-p walk of weights summing to z, and for a typical walk of
 * entropy h (filter.c). */
float fdi_top_p_dlim(int64_t n, double z, double target);
float fdi_typical_dlim(int64_t n, double z, double target, float h);
float fdi_key_value(uint32_t key, int invert);
int64_t fdi_compact(float *v, int32_t *id, const float *src, int64_t n, int invert, uint32_t T,
                    int64_t take_eq);
int64_t fdi_compact_tail(float *v, int32_t *id, const float *src, int64_t n, int invert, uint32_t T,
                         int64_t skip_eq);

/* Filters (semantics: fd.h, filter.c section). min_keep >= 1. */
int64_t fdi_top_k(float *v, int32_t *id, int64_t n, int64_t k, void *ws);
int64_t fdi_top_p(float *v, int32_t *id, int64_t n, double p, int64_t min_keep, void *ws);
int64_t fdi_min_p(float *v, int32_t *id, int64_t n, double p, int64_t min_keep, void *ws);
int64_t fdi_typical(float *v, int32_t *id, int64_t n, double mass, int64_t min_keep, void *ws);
int64_t fdi_epsilon(float *v, int32_t *id, int64_t n, double eps, int64_t min_keep, void *ws);
int64_t fdi_eta(float *v, int32_t *id, int64_t n, double eps, int64_t min_keep, void *ws);
int64_t fdi_top_n_sigma(float *v, int32_t *id, int64_t n, double nsig, int64_t min_keep,
                        void *ws);

/* Run-time ISA dispatch (isa.c): the row kernels, one copy per instruction set, all giving
 * bitwise-identical results. fdi_ops() returns the table of the level chosen on first use (the best
 * the CPU supports, or FASTDECODE_ISA = portable | avx2 | avx512); fdi_set_isa forces a level
 * (clamped to what the CPU supports; -1 = best) and returns the level in effect -- for tests. */
enum { FDI_ISA_PORTABLE = 0, FDI_ISA_AVX2 = 1, FDI_ISA_AVX512 = 2 };
/* The keep rule of a dense filter write (fd_filter): column c is kept when
 *   a'[c] > t, or a'[c] == t and lo <= c < hi, or b[c] >= tb,
 * where a' = a, or -a when neg = 0x80000000 (an ascending walk: t is then given negated too).
 * Every filter's kept set has this shape: a threshold on the walk key, a split tie group (a range
 * of ids), and for epsilon / eta the "or among the min_keep largest logits" term (tb = +inf:
 * none). a and b may be the source row itself. */
typedef struct {
    const float *a;
    float t;
    uint32_t neg;
    int32_t lo, hi;
    const float *b;
    float tb;
} fdi_keep;
static inline int fdi_keep_at(const fdi_keep *k, int64_t c)
{
    uint32_t ua;
    float av;
    memcpy(&ua, &k->a[c], sizeof ua);
    ua ^= k->neg;
    memcpy(&av, &ua, sizeof av);
    int32_t ci = (int32_t)c;
    return (av > k->t) | ((av == k->t) & (ci >= k->lo) & (ci < k->hi)) | (k->b[c] >= k->tb);
}
/* The dense decision of filter `kind` on a whole row as a keep rule (filter.c, fd_filter's core;
 * also the fused sampler's first filter). */
int fdi_decide(fd_filter_kind kind, const float *x, int64_t V, const float *bm, float max,
               double p, int64_t min_keep, void *fws, float *cv, int32_t *cid, fdi_keep *k,
               int *weights);
typedef struct {
    const char *name;
    /* bm[b] = max of x[64b .. min(64b + 64, n)) (a zero maximum as +0); nonzero if x holds NaN or
     * +inf */
    int (*block_max)(const float *x, int64_t n, float *bm);
    /* sum of exp(x - shift) (float32 blocks of 8 terms per lane, 16 lanes summed in double: the
     * order is isa.c's exp_sum_portable); out (may be NULL, or x) receives the float32 weights */
    double (*exp_sum)(const float *x, int64_t n, float shift, float *out);
    void (*exp)(const float *x, int64_t n, float shift, float *out);
    /* out[i] = (float)((double)e[i] / z) */
    void (*div_f32)(const float *e, int64_t n, double z, float *out);
    /* out[i] = (float)((double)(x[i] - m) / t) */
    void (*shift_div)(const float *x, int64_t n, float m, double t, float *out);
    /* dst[c] = fdi_keep_at(k, c) ? src[c] : fill on float32 bit patterns (dst may be src) */
    void (*keep_f32)(const fdi_keep *k, const uint32_t *src, uint32_t *dst, int64_t n,
                     uint32_t fill);
    /* the number of x[i] with lo <= x[i] <= hi */
    int64_t (*count_in)(const float *x, int64_t n, float lo, float hi);
    /* over the finite x: sum x and sum |x| in double (32 lanes, a fixed order), and the count */
    void (*moments)(const float *x, int64_t n, double *sum, double *asum, int64_t *cnt);
    /* over the finite x: sum ((double)x - mean)^2 (32 lanes) */
    double (*sq_dev)(const float *x, int64_t n, double mean);
    /* sum of (double)w * (double)(x - shift) over w > 0 (32 lanes): fdi_dot_pos(w, x - shift)
     * bit for bit */
    double (*dot_shift_pos)(const float *w, const float *x, int64_t n, float shift);
    /* the columns c of [i0, i0 + n) kept by rule k (all: every one; k is read even then), in order: y[c] to v[j], c to
     * id[j] and (wv != NULL) w[c] to wv[j], j counting from 0 (y, w and the rule's rows are
     * indexed by the column c); returns the count. v may be y + i0, and up to 16 elements past
     * the count may be written below v + n (the AVX-512 copy stores whole vectors): with
     * v <= y + i0, nothing unread is overwritten. Exact compares and data movement only. */
    int64_t (*gather_keep)(const fdi_keep *k, int all, const float *y, const float *w,
                           int64_t i0, int64_t n, float *v, int32_t *id, float *wv);
    /* fdi_linear_cut's bins (select.c) of v[0..n): of d = v (invert) or base - v, fdi_lbin(d)
     * where that lies in [lo, hi), else the junk slot FDI_LBINS + i % 64 */
    void (*lbins)(const float *v, int64_t n, int invert, float base, uint32_t lo, uint32_t hi,
                  uint32_t *bin);
    /* returns the count of bin[i] < B; the elements with bin[i] == B, in order, to gk
     * (fdi_key(v[i]) ^ flip) and gw (w[i]), *m their count. gk may be bin (position m <= i is
     * written after position i is read). Compares and data movement only. */
    int64_t (*bin_gather)(const uint32_t *bin, int64_t n, uint32_t B, const float *v,
                          const float *w, uint32_t flip, uint32_t *gk, float *gw, int64_t *m);
    /* the maximum of x[0..n) (a zero maximum as +0; -inf if n == 0 or all -inf) to *max and,
     * when arg != NULL, the first index holding it to *arg (-1 when the maximum is -inf);
     * nonzero if x holds NaN or +inf (then *arg is not written, and *max is +inf or, with a
     * NaN, unspecified) */
    int (*argmax)(const float *x, int64_t n, float *max, int64_t *arg);
    /* out[i] = (float)(((double)(x[i] - shift) - lz) + 0.0), log_softmax's write (out may be x) */
    void (*log_shift)(const float *x, int64_t n, float shift, double lz, float *out);
} fdi_isa_ops;
const fdi_isa_ops *fdi_ops(void);
int fdi_isa(void);
int fdi_set_isa(int level);
/* the scalar exp every copy reproduces */
float fdi_expf1(float x);

/* fdi_linear_cut's linear bin of a distance d >= 0 (+inf allowed): min(FDI_LBINS - 1,
 * (int)(d * FDI_LSCALE)), monotone non-decreasing in d. Written without a branch so that it
 * vectorizes (and exact: a scaling by a power of two, a compare and a truncation). */
#define FDI_LBINS 2048
#define FDI_LSCALE 128.0f /* linear bins per unit of the distance key: 2048 bins span [0, 16) */
static inline uint32_t fdi_lbin(float d)
{
    float t = d * FDI_LSCALE;
    uint32_t ut, ucap;
    const float cap = (float)(FDI_LBINS - 1);
    int c = t < cap;
    memcpy(&ut, &t, sizeof ut);
    memcpy(&ucap, &cap, sizeof ucap);
    uint32_t m = -(uint32_t)c;
    ut = (ut & m) | (ucap & ~m);
    float f;
    memcpy(&f, &ut, sizeof f);
    return (uint32_t)(int32_t)f;
}

/* A float's radix key: unsigned order = float order, -0.0 merged into +0.0 (select.c). */
static inline uint32_t fdi_key(float f)
{
    uint32_t u;
    f += 0.0f;
    memcpy(&u, &f, sizeof u);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

#define FDI_BLOCK 64
static inline int64_t fdi_n_blocks(int64_t n) { return (n + FDI_BLOCK - 1) / FDI_BLOCK; }

/* Branch-free selects (c ? a : b): GCC does not if-convert float ternaries under the default
 * -ftrapping-math, and a branch stops a loop from vectorizing. */
static inline float fdi_fsel(int c, float a, float b)
{
    uint32_t ua, ub, m = -(uint32_t)(c != 0);
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    ua = (ua & m) | (ub & ~m);
    memcpy(&a, &ua, sizeof a);
    return a;
}

static inline double fdi_dsel(int c, double a, double b)
{
    uint64_t ua, ub, m = -(uint64_t)(c != 0);
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    ua = (ua & m) | (ub & ~m);
    memcpy(&a, &ua, sizeof a);
    return a;
}

static inline size_t fdi_align64(size_t n) { return (n + 63) & ~(size_t)63; }

/* sample.c's inverse-CDF pick over a float32 row (fd_sample without filters), for speculative.c:
 * weights w = exp(v - max v), blocked double sums in bs, *total their sum. */
int64_t fdi_pick(const float *v, int64_t n, double u, float *w, double *bs, double *total);

/* dtype.c: element (r, c) of x widened exactly to double (penalty.c, adaptive.c). */
double fdi_load_elem(const fd_rows *x, int64_t r, int64_t c);

#endif
