/* Tests for filter.c / select.c: llama.cpp conformance vectors, tie / -inf / min_keep / boundary
 * tables, storage dtypes, strides and aliasing, error codes, and large random rows against a
 * plain sort-based reference written here (qsort, O(n log n)). */
#include "check.h"
#include "fastdecode/fd.h"
#include "internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NINF (-INFINITY)

static void *ws_alloc(size_t bytes)
{
    size_t n = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, n ? n : 64);
    memset(p, 0xA5, n ? n : 64); /* poison: the kernels must not read scratch they did not write */
    return p;
}

static fd_param scalar(const double *v) { return (fd_param){v, 0}; }

/* Filters one float32 row with filter_value FV (distinct from -inf, so a kept -inf is visible). */
#define FV (-1000.0)
static fd_status filter1(fd_filter_kind kind, const float *x, float *out, int64_t n, double p,
                         double min_keep)
{
    fd_rows in = {(void *)x, FD_F32, 1, n, n};
    fd_rows o = {out, FD_F32, 1, n, n};
    void *ws = ws_alloc(fd_filter_workspace(n));
    fd_errinfo err;
    fd_status st = fd_filter(kind, &in, &o, scalar(&p), scalar(&min_keep), FV, ws, &err);
    free(ws);
    return st;
}

/* kept mask of a filtered row as a bit string "0110" */
static void kept_str(const float *out, int64_t n, char *s)
{
    for (int64_t i = 0; i < n; i++) {
        s[i] = out[i] == (float)FV ? '0' : '1';
    }
    s[n] = 0;
}

/* ---------------------------------------------------------------------------------------------
 * llama.cpp tests/test-sampling.cpp vectors: probabilities -> ln p logits, renormalised result.
 * --------------------------------------------------------------------------------------------- */

static void check_probs(fd_filter_kind kind, const double *probs, int n, double p,
                        const double *expected)
{
    float x[16], out[16];
    for (int i = 0; i < n; i++) {
        x[i] = (float)log(probs[i]);
    }
    CHECK(filter1(kind, x, out, n, p, 1) == FD_OK);
    double z = 0.0;
    for (int i = 0; i < n; i++) {
        z += out[i] == (float)FV ? 0.0 : exp((double)out[i]);
    }
    for (int i = 0; i < n; i++) {
        double q = out[i] == (float)FV ? 0.0 : exp((double)out[i]) / z;
        CHECK_NEAR(q, expected[i], 1e-5);
    }
}

static void test_conformance(void)
{
    const double p4[4] = {0.1, 0.2, 0.3, 0.4};
    check_probs(FD_FILTER_TOP_K, p4, 4, 3, (double[]){0, 0.222222, 0.333333, 0.444444});
    check_probs(FD_FILTER_TOP_K, p4, 4, 1, (double[]){0, 0, 0, 1});
    check_probs(FD_FILTER_TOP_K, p4, 4, 4, (double[]){0.1, 0.2, 0.3, 0.4});
    check_probs(FD_FILTER_TOP_K, p4, 4, 0, (double[]){0.1, 0.2, 0.3, 0.4});
    check_probs(FD_FILTER_TOP_P, p4, 4, 0.7, (double[]){0, 0, 0.428571, 0.571429});
    check_probs(FD_FILTER_TOP_P, p4, 4, 0.5, (double[]){0, 0, 0.428571, 0.571429});
    check_probs(FD_FILTER_TOP_P, p4, 4, 0.8, (double[]){0, 0.222222, 0.333333, 0.444444});
    check_probs(FD_FILTER_TOP_P, p4, 4, 1.0, (double[]){0.1, 0.2, 0.3, 0.4});
    check_probs(FD_FILTER_TOP_P, p4, 4, 0.0, (double[]){0, 0, 0, 1});
    check_probs(FD_FILTER_MIN_P, p4, 4, 0.51, (double[]){0, 0, 0.428571, 0.571429});
    check_probs(FD_FILTER_MIN_P, p4, 4, 0.0, (double[]){0.1, 0.2, 0.3, 0.4});
    check_probs(FD_FILTER_MIN_P, p4, 4, 1.0, (double[]){0, 0, 0, 1});
    check_probs(FD_FILTER_MIN_P, p4, 4, 0.24, (double[]){0.1, 0.2, 0.3, 0.4});
    /* typical: H = 1.3322, s(.4) = 0.416, s(.2) = 0.277: the three .2 cross .5 at the third */
    const double t4[4] = {0.4, 0.2, 0.2, 0.2};
    check_probs(FD_FILTER_TYPICAL, t4, 4, 0.5, (double[]){0, 1.0 / 3, 1.0 / 3, 1.0 / 3});
    check_probs(FD_FILTER_TYPICAL, t4, 4, 0.7, (double[]){0.4, 0.2, 0.2, 0.2});
    check_probs(FD_FILTER_TYPICAL, t4, 4, 0.0, (double[]){0, 1.0 / 3, 1.0 / 3, 1.0 / 3});
    check_probs(FD_FILTER_TOP_N_SIGMA, p4, 4, 1.0, (double[]){0, 0, 0.428571, 0.571429});
    check_probs(FD_FILTER_TOP_N_SIGMA, p4, 4, 0.0, (double[]){0.1, 0.2, 0.3, 0.4});
    check_probs(FD_FILTER_TOP_N_SIGMA, p4, 4, 3.0, (double[]){0.1, 0.2, 0.3, 0.4});
    check_probs(FD_FILTER_EPSILON, p4, 4, 0.15, (double[]){0, 0.222222, 0.333333, 0.444444});
    check_probs(FD_FILTER_EPSILON, p4, 4, 0.5, (double[]){0, 0, 0, 1});
    /* eta: H(p4) = 1.2799, sqrt(.2) e^-H = 0.1242 < .2 -> keeps p >= 0.1242 */
    check_probs(FD_FILTER_ETA, p4, 4, 0.2, (double[]){0, 0.222222, 0.333333, 0.444444});
}

/* ---------------------------------------------------------------------------------------------
 * Tables: ties, -inf, min_keep, boundaries. Each case: kind, logits, p, min_keep, kept mask.
 * --------------------------------------------------------------------------------------------- */

typedef struct {
    fd_filter_kind kind;
    int n;
    float x[8];
    double p, min_keep;
    const char *kept;
} fcase;

static void test_table(void)
{
    static const fcase cases[] = {
        /* top-k: every token tied with the k-th is kept; k >= V and k = 0 are no-ops */
        {FD_FILTER_TOP_K, 5, {1, 2, 2, 2, 0}, 2, 1, "01110"},
        {FD_FILTER_TOP_K, 5, {1, 2, 2, 2, 0}, 4, 1, "11110"},
        {FD_FILTER_TOP_K, 5, {1, 2, 2, 2, 0}, 9, 1, "11111"},
        {FD_FILTER_TOP_K, 5, {1, 2, 2, 2, 0}, 0, 3, "11111"},
        {FD_FILTER_TOP_K, 5, {1, 2, 0, 3, 0}, 1, 3, "11010"}, /* k = max(k, min_keep) */
        {FD_FILTER_TOP_K, 4, {NINF, 1, NINF, 0}, 3, 1, "1111"}, /* 3rd largest is -inf */
        {FD_FILTER_TOP_K, 4, {NINF, 1, NINF, 0}, 2, 1, "0101"},
        {FD_FILTER_TOP_K, 3, {-0.0f, 0.0f, -1}, 1, 1, "110"}, /* -0 == +0 */
        /* top-p: walk by descending z, ties HIGHER id first (HF's stable ascending sort); keep
         * while mass before < p. Expectations checked against TopPLogitsWarper itself. */
        {FD_FILTER_TOP_P, 4, {0, 0, 0, 0}, 0.5, 1, "0011"},
        {FD_FILTER_TOP_P, 4, {0, 0, 0, 0}, 0.51, 1, "0111"},
        {FD_FILTER_TOP_P, 4, {0, 0, 0, 0}, 0.0, 3, "0111"},
        {FD_FILTER_TOP_P, 4, {0, 0, 0, 0}, 0.0, 1, "0001"},
        {FD_FILTER_TOP_P, 5, {1, 3, 3, 0, 3}, 0.0, 2, "00101"},
        {FD_FILTER_TOP_P, 4, {NINF, 0, 0, NINF}, 0.99, 1, "0110"},
        {FD_FILTER_TOP_P, 4, {NINF, 0, 0, NINF}, 1.0, 1, "1111"}, /* p = 1 keeps -inf too */
        {FD_FILTER_TOP_P, 4, {NINF, 0, 0, NINF}, 0.99, 3, "0111"}, /* -inf: higher id first */
        {FD_FILTER_TOP_P, 3, {NINF, NINF, NINF}, 0.5, 1, "001"},
        {FD_FILTER_TOP_P, 5, {0, 10, 0, 0, 0}, 0.9, 2, "01001"},
        {FD_FILTER_TOP_P, 5, {0, 10, 0, 0, 0}, 0.9, 5, "11111"},
        /* min-p: remove (z - max) < ln p; then the first min_keep of the descending walk */
        {FD_FILTER_MIN_P, 4, {1, 1, 1, 0}, 1.0, 1, "1110"},
        {FD_FILTER_MIN_P, 5, {0, 5, 3, 5, 3}, 1.0, 3, "01110"},
        {FD_FILTER_MIN_P, 5, {0, 5, 3, 5, 3}, 1.0, 2, "01010"},
        {FD_FILTER_MIN_P, 4, {NINF, 0, 0, NINF}, 0.0, 1, "1111"},
        {FD_FILTER_MIN_P, 4, {NINF, 0, 0, NINF}, 0.5, 1, "0110"},
        {FD_FILTER_MIN_P, 4, {NINF, 0, -5, NINF}, 0.5, 4, "1111"},
        {FD_FILTER_MIN_P, 4, {NINF, 0, -5, NINF}, 0.5, 3, "1110"},
        /* typical: ties of s are kept; min_keep counts the ascending-s walk */
        {FD_FILTER_TYPICAL, 4, {0, 0, 0, 0}, 0.3, 1, "1111"},
        {FD_FILTER_TYPICAL, 5, {NINF, 0, 0, 0, 0}, 0.3, 1, "01111"},
        {FD_FILTER_TYPICAL, 5, {NINF, 0, 0, 0, 0}, 1.0, 1, "11111"}, /* mass 1 keeps all, as p = 1 */
        {FD_FILTER_TYPICAL, 4, {NINF, 5, 0, NINF}, 0.5, 3, "1110"},
        /* epsilon / eta: p >= eps, or z >= the min_keep-th largest (ties kept) */
        {FD_FILTER_EPSILON, 4, {0, 1, 1, 2}, 0.9, 2, "0111"},
        {FD_FILTER_EPSILON, 4, {0, 1, 1, 2}, 0.9, 1, "0001"},
        {FD_FILTER_EPSILON, 4, {0, 0, 0, 0}, 0.9, 1, "1111"},
        {FD_FILTER_EPSILON, 4, {NINF, 0, 0, 0}, 0.0, 1, "1111"},
        {FD_FILTER_EPSILON, 4, {NINF, 0, 0, 0}, 0.1, 1, "0111"},
        {FD_FILTER_ETA, 4, {0, 1, 1, 2}, 0.9, 2, "0111"},
        {FD_FILTER_ETA, 4, {NINF, 0, 0, 0}, 0.0, 1, "1111"},
        /* top-n-sigma: population std of the finite logits */
        {FD_FILTER_TOP_N_SIGMA, 4, {0, 0, 2, 2}, 1.0, 1, "0011"}, /* std 1: keep >= 1 */
        {FD_FILTER_TOP_N_SIGMA, 4, {0, 0, 2, 2}, 2.0, 1, "1111"},
        {FD_FILTER_TOP_N_SIGMA, 5, {0, NINF, 2, 2, 0}, 1.0, 1, "00110"},
        {FD_FILTER_TOP_N_SIGMA, 3, {NINF, NINF, NINF}, 1.0, 1, "111"},
        {FD_FILTER_TOP_N_SIGMA, 3, {1, 1, 1}, 1.0, 1, "111"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const fcase *t = &cases[c];
        float out[8];
        char got[9];
        fd_status st = filter1(t->kind, t->x, out, t->n, t->p, t->min_keep);
        CHECK(st == FD_OK);
        kept_str(out, t->n, got);
        if (strcmp(got, t->kept) != 0) {
            fprintf(stderr, "table case %zu (kind %d p %g min_keep %g): kept %s, expected %s\n", c,
                    (int)t->kind, t->p, t->min_keep, got, t->kept);
        }
        CHECK(strcmp(got, t->kept) == 0);
        for (int i = 0; i < t->n; i++) { /* kept values copied through bit for bit */
            if (got[i] == '1') {
                CHECK(memcmp(&out[i], &t->x[i], 4) == 0);
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Storage dtypes, strides, aliasing, per-row parameters, errors.
 * --------------------------------------------------------------------------------------------- */

static void test_dtypes_layout(void)
{
    /* float64: kept values copied exactly (beyond float precision), removed -> filter_value */
    double d[5] = {1.0000000001, 3.0, 2.0000000003, -1.0, 2.0000000003};
    double dout[5];
    fd_rows in = {d, FD_F64, 1, 5, 5}, out = {dout, FD_F64, 1, 5, 5};
    double k = 3, mk = 1;
    void *ws = ws_alloc(fd_filter_workspace(5));
    CHECK(fd_filter(FD_FILTER_TOP_K, &in, &out, scalar(&k), scalar(&mk), NINF, ws, NULL) == FD_OK);
    CHECK(dout[0] == NINF && dout[1] == 3.0 && dout[2] == 2.0000000003 && dout[3] == NINF &&
          dout[4] == 2.0000000003);

    /* float16 and bfloat16: kept bits copied, removed = the rounded filter value */
    uint16_t h[5], hout[5], b[5], bout[5];
    float hv[5] = {0.5f, -2.0f, 7.0f, 7.0f, 1.0f};
    for (int i = 0; i < 5; i++) {
        h[i] = fd_float_to_half(hv[i]);
        b[i] = fd_float_to_bf16(hv[i]);
    }
    double k2 = 2;
    fd_rows hin = {h, FD_F16, 1, 5, 5}, ho = {hout, FD_F16, 1, 5, 5};
    CHECK(fd_filter(FD_FILTER_TOP_K, &hin, &ho, scalar(&k2), scalar(&mk), -5.0, ws, NULL) ==
          FD_OK);
    CHECK(hout[2] == h[2] && hout[3] == h[3] && hout[0] == fd_float_to_half(-5.0f) &&
          hout[4] == fd_float_to_half(-5.0f));
    fd_rows bin = {b, FD_BF16, 1, 5, 5}, bo = {bout, FD_BF16, 1, 5, 5};
    double pp = 0.4;
    CHECK(fd_filter(FD_FILTER_TOP_P, &bin, &bo, scalar(&pp), scalar(&mk), NINF, ws, NULL) ==
          FD_OK);
    CHECK(bout[3] == b[3] && bout[2] == fd_float_to_bf16(NINF)); /* the tie: higher id kept */
    CHECK(bout[0] == fd_float_to_bf16(NINF));
    /* with filter_value -inf the half is 0xfc00 */
    CHECK(fd_float_to_half(NINF) == 0xfc00u);
    free(ws);

    /* row stride > n_cols, per-row parameters, padding untouched, out aliasing in */
    float m[3 * 8];
    for (int i = 0; i < 24; i++) {
        m[i] = 99.0f; /* padding sentinel */
    }
    const float rows[3][5] = {{1, 5, 3, 4, 2}, {0, 0, 0, 0, 0}, {NINF, 1, 2, NINF, 3}};
    for (int r = 0; r < 3; r++) {
        memcpy(m + 8 * r, rows[r], sizeof rows[r]);
    }
    fd_rows xm = {m, FD_F32, 3, 5, 8};
    double ks[3] = {2, 1, 4}, mks[3] = {1, 3, 1};
    fd_param kp = {ks, 1}, mkp = {mks, 1};
    ws = ws_alloc(fd_filter_workspace(5));
    CHECK(fd_filter(FD_FILTER_TOP_K, &xm, &xm, kp, mkp, -7.0, ws, NULL) == FD_OK);
    const float exp_rows[3][5] = {{-7, 5, -7, 4, -7}, {0, 0, 0, 0, 0}, {NINF, 1, 2, NINF, 3}};
    for (int r = 0; r < 3; r++) {
        for (int c = 0; c < 8; c++) {
            CHECK(m[8 * r + c] == (c < 5 ? exp_rows[r][c] : 99.0f));
        }
    }
    /* separate output with its own stride */
    float o[2 * 6];
    for (int i = 0; i < 12; i++) {
        o[i] = 42.0f;
    }
    fd_rows xi = {m, FD_F32, 2, 5, 8}, xo = {o, FD_F32, 2, 5, 6};
    double p1 = 0.0;
    CHECK(fd_filter(FD_FILTER_TOP_P, &xi, &xo, scalar(&p1), scalar(&mk), -3.0, ws, NULL) == FD_OK);
    CHECK(o[0] == -3 && o[1] == 5 && o[2] == -3 && o[3] == -3 && o[4] == -3 && o[5] == 42);
    CHECK(o[6] == -3 && o[9] == -3 && o[10] == 0 && o[11] == 42); /* all tied: the last id */

    /* errors: NaN / +inf with row and index, parameters outside the domain with the row */
    float e[2 * 4] = {0, 1, 2, 3, 0, 1, NAN, 3};
    fd_rows xe = {e, FD_F32, 2, 4, 4};
    float eo[8];
    fd_rows xeo = {eo, FD_F32, 2, 4, 4};
    fd_errinfo err = {-1, -1};
    CHECK(fd_filter(FD_FILTER_TOP_K, &xe, &xeo, scalar(&k), scalar(&mk), NINF, ws, &err) ==
          FD_ENAN);
    CHECK(err.row == 1 && err.index == 2);
    e[6] = INFINITY;
    CHECK(fd_filter(FD_FILTER_MIN_P, &xe, &xeo, scalar(&pp), scalar(&mk), NINF, ws, &err) ==
          FD_EPOSINF);
    CHECK(err.row == 1 && err.index == 2);
    e[6] = 2;
    double badp[2] = {0.5, 1.5};
    fd_param bp = {badp, 1};
    for (int kind = FD_FILTER_TOP_P; kind <= FD_FILTER_ETA; kind++) {
        err.row = -1;
        CHECK(fd_filter((fd_filter_kind)kind, &xe, &xeo, bp, scalar(&mk), NINF, ws, &err) ==
              FD_EINVAL);
        CHECK(err.row == 1);
    }
    double negk = -1, fracp = 2.5, zero = 0, nanv = NAN;
    CHECK(fd_filter(FD_FILTER_TOP_K, &xe, &xeo, scalar(&negk), scalar(&mk), NINF, ws, &err) ==
          FD_EINVAL);
    CHECK(fd_filter(FD_FILTER_TOP_K, &xe, &xeo, scalar(&fracp), scalar(&mk), NINF, ws, &err) ==
          FD_EINVAL);
    CHECK(fd_filter(FD_FILTER_TOP_P, &xe, &xeo, scalar(&pp), scalar(&zero), NINF, ws, &err) ==
          FD_EINVAL);
    CHECK(fd_filter(FD_FILTER_TOP_P, &xe, &xeo, scalar(&nanv), scalar(&mk), NINF, ws, &err) ==
          FD_EINVAL);
    CHECK(fd_filter(FD_FILTER_TOP_N_SIGMA, &xe, &xeo, scalar(&nanv), scalar(&mk), NINF, ws, &err) ==
          FD_EINVAL);
    fd_rows bad_shape = {eo, FD_F32, 2, 3, 3};
    CHECK(fd_filter(FD_FILTER_TOP_K, &xe, &bad_shape, scalar(&k), scalar(&mk), NINF, ws, &err) ==
          FD_ESHAPE);
    fd_rows bad_stride = {e, FD_F32, 2, 4, 3};
    CHECK(fd_filter(FD_FILTER_TOP_K, &bad_stride, &bad_stride, scalar(&k), scalar(&mk), NINF, ws,
                    &err) == FD_ESHAPE);
    fd_rows empty = {NULL, FD_F32, 0, 4, 4};
    CHECK(fd_filter(FD_FILTER_TOP_K, &empty, &empty, scalar(&k), scalar(&mk), NINF, ws, &err) ==
          FD_OK);
    free(ws);
}

/* ---------------------------------------------------------------------------------------------
 * Random rows against a sort-based reference.
 * --------------------------------------------------------------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static double unif(void) { return (double)(rnd() >> 11) * (1.0 / 9007199254740992.0); }
static double normal(void)
{
    double u = unif() + 1e-300, v = unif();
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static const float *sort_key;
static int cmp_desc(const void *a, const void *b)
{
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    float x = sort_key[i], y = sort_key[j];
    if (x != y) {
        return x > y ? -1 : 1;
    }
    return i < j ? -1 : 1;
}
static int cmp_asc(const void *a, const void *b)
{
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    float x = sort_key[i], y = sort_key[j];
    if (x != y) {
        return x < y ? -1 : 1;
    }
    return i < j ? -1 : 1;
}

/* order[0..n) = ids by descending key (ascending when asc), ties lower id first */
static void sorted_ids(const float *key, int64_t n, int asc, int32_t *order)
{
    for (int64_t i = 0; i < n; i++) {
        order[i] = (int32_t)i;
    }
    sort_key = key;
    qsort(order, (size_t)n, sizeof *order, asc ? cmp_asc : cmp_desc);
}

/* The reference: the rules of fd.h, applied by walking a full sort. keep[i] = 0/1. */
static void reference(fd_filter_kind kind, const float *v, int64_t n, double p, int64_t mk,
                      char *keep, int32_t *order, float *tmp)
{
    if (n <= 0) {
        return;
    }
    float max = NINF;
    for (int64_t i = 0; i < n; i++) {
        max = v[i] > max ? v[i] : max;
    }
    double z = 0.0;
    for (int64_t i = 0; i < n; i++) {
        z += (double)expf(v[i] - max);
    }
    if (mk > n) {
        mk = n;
    }
    memset(keep, 0, (size_t)n);
    sorted_ids(v, n, 0, order);
    switch (kind) {
    case FD_FILTER_TOP_K: {
        int64_t k = (int64_t)p == 0 ? n : ((int64_t)p > mk ? (int64_t)p : mk);
        float kth = v[order[(k < n ? k : n) - 1]];
        for (int64_t i = 0; i < n; i++) {
            keep[i] = v[i] >= kth;
        }
        break;
    }
    case FD_FILTER_TOP_P: {
        /* HF's tie order: equal values walked by descending id */
        for (int64_t j = 0; j < n;) {
            int64_t g = j;
            while (g < n && v[order[g]] == v[order[j]]) {
                g++;
            }
            for (int64_t a = j, b = g - 1; a < b; a++, b--) {
                int32_t t = order[a];
                order[a] = order[b];
                order[b] = t;
            }
            j = g;
        }
        double cum = 0.0;
        for (int64_t j = 0; j < n; j++) {
            int32_t i = order[j];
            keep[i] = p >= 1.0 || cum < p * z || j < mk;
            cum += (double)expf(v[i] - max);
        }
        break;
    }
    case FD_FILTER_MIN_P: {
        for (int64_t j = 0; j < n; j++) {
            int32_t i = order[j];
            keep[i] = p == 0.0 || !((double)(v[i] - max) < log(p)) || j < mk;
        }
        break;
    }
    case FD_FILTER_TYPICAL: {
        float lse = (float)log(z);
        double hs = 0.0;
        for (int64_t i = 0; i < n; i++) {
            float lp = (v[i] - max) - lse;
            tmp[i] = lp;
            hs += v[i] == NINF ? 0.0 : (double)(lp * expf(lp));
        }
        float h = (float)-hs;
        for (int64_t i = 0; i < n; i++) {
            tmp[i] = fabsf(-tmp[i] - h);
        }
        sorted_ids(tmp, n, 1, order);
        double cum = 0.0;
        int64_t cross = n - 1;
        for (int64_t j = 0; j < n; j++) {
            cum += (double)expf(v[order[j]] - max);
            if (cum >= p * z) {
                cross = j;
                break;
            }
        }
        float sc = tmp[order[cross]];
        for (int64_t j = 0; j < n; j++) {
            keep[order[j]] = tmp[order[j]] <= sc || j < mk;
        }
        break;
    }
    case FD_FILTER_EPSILON:
    case FD_FILTER_ETA: {
        float thr = (float)p;
        if (kind == FD_FILTER_ETA) {
            double s1 = 0.0;
            for (int64_t i = 0; i < n; i++) {
                float d = v[i] - max;
                s1 += d == NINF ? 0.0 : (double)expf(d) * (double)d;
            }
            float cand = sqrtf(thr) * expf((float)-(log(z) - s1 / z));
            thr = thr < cand ? thr : cand;
        }
        float kth = v[order[mk - 1]];
        float inv = (float)(1.0 / z);
        for (int64_t i = 0; i < n; i++) {
            keep[i] = p == 0.0 || !(expf(v[i] - max) * inv < thr) || v[i] >= kth;
        }
        break;
    }
    case FD_FILTER_TOP_N_SIGMA: {
        double s = 0.0, ss = 0.0;
        int64_t c = 0;
        for (int64_t i = 0; i < n; i++) {
            if (v[i] != NINF) {
                s += v[i];
                c++;
            }
        }
        double mean = s / (double)c;
        for (int64_t i = 0; i < n; i++) {
            if (v[i] != NINF) {
                ss += ((double)v[i] - mean) * ((double)v[i] - mean);
            }
        }
        double thr = (double)max - p * sqrt(ss / (double)c);
        float kth = v[order[mk - 1]]; /* min_tokens_to_keep: the top mk values, ties included */
        for (int64_t i = 0; i < n; i++) {
            keep[i] = p <= 0.0 || c == 0 || (double)v[i] >= thr || v[i] >= kth;
        }
        break;
    }
    }
}

/* Row shapes: 0 normal(0, 1), 1 normal(0, 8), 2 quarter-step ties, 3 with 30% -inf, 4 a cluster
 * of nearby floats (keys share their top 21 bits: exercises radix passes 2 and 3), 5 all equal. */
static void make_row(float *v, int64_t n, int shape)
{
    for (int64_t i = 0; i < n; i++) {
        switch (shape) {
        case 0:
            v[i] = (float)normal();
            break;
        case 1:
            v[i] = (float)(8.0 * normal());
            break;
        case 2:
            v[i] = (float)floor(4.0 * normal()) * 0.25f;
            break;
        case 3:
            v[i] = unif() < 0.3 ? NINF : (float)(2.0 * normal());
            break;
        case 4:
            v[i] = 1.0f + (float)(rnd() % 3000) * 1.1920929e-7f;
            break;
        default:
            v[i] = 0.5f;
            break;
        }
    }
}

/* top-n-sigma with an element exactly on the threshold: {-1, 1, 0 x 6} has mean 0 and sigma
 * 0.5 exactly, so n = 2 puts max - n sigma on the zeros. The vectorised moments cannot decide
 * such a row (an element inside their error band), so the sequential sums must (filter.c);
 * the zeros are kept at n = 2 and dropped just below it. Every ISA level, long rows too (the
 * pattern repeated: same mean and sigma). */
static void test_sigma_band(void)
{
    int best = fdi_set_isa(-1);
    static const float base[8] = {-1, 1, 0, 0, 0, 0, 0, 0};
    int64_t ns[] = {8, 8 * 4096};
    for (int level = FDI_ISA_PORTABLE; level <= best; level++) {
        fdi_set_isa(level);
        for (int t = 0; t < 2; t++) {
            int64_t n = ns[t];
            float *x = malloc((size_t)n * 4), *out = malloc((size_t)n * 4);
            for (int64_t i = 0; i < n; i++) {
                x[i] = base[i % 8];
            }
            CHECK(filter1(FD_FILTER_TOP_N_SIGMA, x, out, n, 2.0, 1) == FD_OK);
            int ok = 1;
            for (int64_t i = 0; i < n; i++) {
                ok &= (out[i] == (float)FV) == (x[i] < 0.0f);
            }
            CHECK(ok);
            CHECK(filter1(FD_FILTER_TOP_N_SIGMA, x, out, n, 1.999, 1) == FD_OK);
            ok = 1;
            for (int64_t i = 0; i < n; i++) {
                ok &= (out[i] == (float)FV) == (x[i] <= 0.0f);
            }
            CHECK(ok);
            free(x);
            free(out);
        }
    }
    fdi_set_isa(-1);
}

static void test_random(void)
{
    static const int64_t sizes[] = {1, 2, 7, 64, 65, 300, 4096, 50000};
    static const double params[7][4] = {
        {1, 5, 40, 1000},        {0.1, 0.5, 0.9, 0.999}, {0.01, 0.1, 0.5, 0.9},
        {0.2, 0.5, 0.9, 0.999},  {3e-4, 1e-3, 0.01, 0.1}, {3e-4, 1e-3, 0.01, 0.1},
        {0.5, 1.0, 2.0, 3.0},
    };
    int64_t nmax = 50000;
    float *v = malloc(sizeof(float) * nmax), *out = malloc(sizeof(float) * nmax);
    float *tmp = malloc(sizeof(float) * nmax);
    int32_t *order = malloc(sizeof(int32_t) * nmax);
    char *keep = malloc((size_t)nmax);
    void *ws = ws_alloc(fd_filter_workspace(nmax));
    int mismatched_rows = 0;
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        int64_t n = sizes[si];
        int reps = n >= 50000 ? 2 : 4;
        for (int shape = 0; shape < 6; shape++) {
            for (int rep = 0; rep < reps; rep++) {
                make_row(v, n, shape);
                for (int kind = 0; kind < 7; kind++) {
                    double p = params[kind][rnd() % 4];
                    int64_t mk = rnd() % 3 == 0 ? 3 : 1;
                    fd_rows in = {v, FD_F32, 1, n, n}, o = {out, FD_F32, 1, n, n};
                    double mkd = (double)mk;
                    fd_status st = fd_filter((fd_filter_kind)kind, &in, &o, scalar(&p),
                                             scalar(&mkd), FV, ws, NULL);
                    CHECK(st == FD_OK);
                    reference((fd_filter_kind)kind, v, n, p, mk, keep, order, tmp);
                    int64_t diff = 0, first = -1;
                    for (int64_t i = 0; i < n; i++) {
                        int k = out[i] != (float)FV;
                        if (k != keep[i]) {
                            diff++;
                            first = first < 0 ? i : first;
                        }
                        if (k && memcmp(&out[i], &v[i], 4) != 0) {
                            diff++;
                        }
                    }
                    if (diff) {
                        mismatched_rows++;
                        fprintf(stderr,
                                "random: kind %d n %lld shape %d p %g mk %lld: %lld differ "
                                "(first id %lld)\n",
                                kind, (long long)n, shape, p, (long long)mk, (long long)diff,
                                (long long)first);
                    }
                    CHECK(diff == 0);
                }
            }
        }
    }
    CHECK(mismatched_rows == 0);
    free(v);
    free(out);
    free(tmp);
    free(order);
    free(keep);
    free(ws);
}

/* ---------------------------------------------------------------------------------------------
 * The linear-bin weight cut (select.c) against the radix cut it replaces, and the float-compare
 * compaction at the zero / -inf key boundaries, on every ISA path.
 * --------------------------------------------------------------------------------------------- */

size_t fdi_radix_workspace(int64_t n);
double fdi_weights(const float *v, int64_t n, float max, float *w);
uint32_t fdi_radix_cut(const float *v, const float *w, int64_t n, int invert, double target,
                       void *ws, int64_t *n_above, double *w_above, int64_t *n_eq, int *found);
uint32_t fdi_linear_cut(const float *v, const float *w, int64_t n, int invert, float base,
                        double target, float dlim, void *ws, int64_t *n_above, double *w_above,
                        int64_t *n_eq);
int64_t fdi_compact(float *v, int32_t *id, const float *src, int64_t n, int invert, uint32_t T,
                    int64_t take_eq);

static void test_linear_cut(void)
{
    static const int64_t sizes[] = {2047, 2048, 5000, 40000};
    static const double fr[] = {1e-9, 0.1, 0.5, 0.9, 0.999, 1.0};
    int64_t nmax = 40000;
    float *v = malloc(sizeof(float) * nmax), *w = malloc(sizeof(float) * nmax);
    float *s = malloc(sizeof(float) * nmax);
    void *ws = ws_alloc(fdi_radix_workspace(nmax));
    int best = fdi_set_isa(-1);
    int diffs = 0;
    for (int level = FDI_ISA_PORTABLE; level <= best; level++) {
        fdi_set_isa(level);
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            int64_t n = sizes[si];
            for (int shape = 0; shape < 8; shape++) {
                if (shape < 6) {
                    make_row(v, n, shape);
                }
                else { /* peaked: a few tokens far above the rest; or scores crowding bin 0 */
                    make_row(v, n, 0);
                    for (int k = 0; k < 5; k++) {
                        v[rnd() % (uint64_t)n] += shape == 6 ? 30.0f : 1e-3f;
                    }
                }
                float max = fdi_max(v, n);
                double z = fdi_weights(v, n, max, w);
                /* typical-like scores: |v - mean| >= 0, +inf where v is -inf */
                for (int64_t i = 0; i < n; i++) {
                    s[i] = v[i] == NINF ? INFINITY : fabsf(v[i] - 0.25f);
                }
                for (size_t fi = 0; fi < sizeof fr / sizeof fr[0]; fi++) {
                    for (int inv = 0; inv < 2; inv++) {
                        const float *src = inv ? s : v;
                        int64_t na0 = 0, ne0 = 0, na1 = 0, ne1 = 0;
                        double wa0 = 0, wa1 = 0;
                        uint32_t k0 = fdi_radix_cut(src, w, n, inv, fr[fi] * z, ws, &na0, &wa0,
                                                    &ne0, NULL);
                        uint32_t k1 = fdi_linear_cut(src, w, n, inv, inv ? 0.0f : max,
                                                     fr[fi] * z, INFINITY, ws, &na1, &wa1, &ne1);
                        int same = k0 == k1 && na0 == na1 && ne0 == ne1 &&
                                   fabs(wa0 - wa1) <= 1e-12 * z;
                        /* the far-tail hint changes nothing, wherever the crossing lies */
                        static const float dl[] = {0.0f, 0.5f, 1.0f, 3.0f, 8.0f, 15.99f,
                                                   16.0f, 100.0f, -1.0f, NAN};
                        for (size_t di = 0; di < sizeof dl / sizeof dl[0]; di++) {
                            int64_t na2 = 0, ne2 = 0;
                            double wa2 = 0;
                            uint32_t k2 = fdi_linear_cut(src, w, n, inv, inv ? 0.0f : max,
                                                         fr[fi] * z, dl[di], ws, &na2, &wa2,
                                                         &ne2);
                            same &= k1 == k2 && na1 == na2 && ne1 == ne2 &&
                                    memcmp(&wa1, &wa2, sizeof wa1) == 0;
                        }
                        if (!same) {
                            diffs++;
                            fprintf(stderr,
                                    "linear cut: isa %d n %lld shape %d f %g inv %d: key %08x/%08x "
                                    "above %lld/%lld eq %lld/%lld\n",
                                    level, (long long)n, shape, fr[fi], inv, k0, k1,
                                    (long long)na0, (long long)na1, (long long)ne0,
                                    (long long)ne1);
                        }
                        CHECK(same);
                    }
                }
            }
        }
    }
    fdi_set_isa(-1);
    CHECK(diffs == 0);

    /* compaction by float comparison: the -0 key hole, denormals, -inf and +inf, both walks */
    const float zs[10] = {0.0f, -0.0f, 1e-45f, -1e-45f, NINF, INFINITY, 1.0f, -1.0f, 0.0f, -0.0f};
    for (int inv = 0; inv < 2; inv++) {
        for (int t = 0; t < 10; t++) {
            for (int mode = 0; mode < 2; mode++) {
                float key_v[40], cv[40];
                int32_t cid[40];
                for (int i = 0; i < 40; i++) {
                    key_v[i] = zs[i % 10];
                    cv[i] = (float)i;
                    cid[i] = i;
                }
                uint32_t T = 0;
                {
                    float f = zs[t] + 0.0f;
                    uint32_t u;
                    memcpy(&u, &f, 4);
                    T = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
                    T ^= inv ? 0xffffffffu : 0u;
                }
                int64_t take = mode ? INT64_MAX : 0;
                int64_t got = fdi_compact(cv, cid, key_v, 40, inv, T, take);
                int64_t j = 0, ok = 1;
                for (int i = 0; i < 40; i++) {
                    float f = key_v[i] + 0.0f;
                    uint32_t u;
                    memcpy(&u, &f, 4);
                    uint32_t k = ((u & 0x80000000u) ? ~u : (u | 0x80000000u)) ^
                                 (inv ? 0xffffffffu : 0u);
                    if (k > T || (mode && k == T)) {
                        ok &= j < got && cid[j] == i;
                        j++;
                    }
                }
                CHECK(ok && j == got);
            }
        }
    }
    free(v);
    free(w);
    free(s);
    free(ws);
}

/* The candidate-list API directly: stable compaction with arbitrary increasing ids, and the
 * fdi helpers' contracts. */
static void test_candidates(void)
{
    float v[6] = {3, NINF, 1, 3, 2, 0};
    int32_t id[6] = {2, 5, 9, 10, 40, 41};
    void *ws = ws_alloc(fdi_workspace(6));
    int64_t n = fdi_top_k(v, id, 6, 2, ws);
    CHECK(n == 2 && id[0] == 2 && id[1] == 10 && v[0] == 3 && v[1] == 3);
    float w[5] = {0, 1, 2, 3, 4};
    int32_t wid[5] = {0, 1, 2, 3, 4};
    n = fdi_top_p(w, wid, 5, 0.0, 2, ws);
    CHECK(n == 2 && wid[0] == 3 && wid[1] == 4);
    CHECK(fdi_max(v, 0) == NINF);
    float m[5] = {NINF, -1, 7, 2, 7};
    CHECK(fdi_max(m, 5) == 7.0f);
    float wm[5];
    CHECK_NEAR(fdi_weights(m, 5, 7.0f, wm), 2.0 + exp(-5.0) + exp(-8.0), 1e-6);
    CHECK(wm[0] == 0.0f && wm[2] == 1.0f && wm[4] == 1.0f);
    free(ws);
}

int main(void)
{
    test_sigma_band();
    test_conformance();
    test_table();
    test_dtypes_layout();
    test_candidates();
    test_random();
    test_linear_cut();
    CHECK_REPORT("test_filter");
}
