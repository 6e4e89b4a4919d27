/* Tests for contrastive.c: hand-computed contrastive scores (both formulas, alpha 0 / 1 / between,
 * amateur temperature, -inf entries, ties at the head boundary) and guidance (normalize 0 / 1,
 * g == 1 shortcut, -inf exclusions), in float32 and float64 output, with strided rows and every
 * input dtype; the error statuses and the column encoding that names the input; and every ISA
 * level giving the same bits. */
#include "check.h"
#include "fastdecode/fd.h"
#include "internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NINF (-INFINITY)
#define V 4

static void *ws_alloc(size_t bytes)
{
    size_t n = (bytes + 63) / 64 * 64;
    return aligned_alloc(64, n ? n : 64);
}

static fd_param P(const double *v) { return (fd_param){v, 0}; }

static double lse(const double *x, int n)
{
    double m = -INFINITY, s = 0.0;
    for (int i = 0; i < n; i++) {
        m = x[i] > m ? x[i] : m;
    }
    for (int i = 0; i < n; i++) {
        s += exp(x[i] - m);
    }
    return m + log(s);
}

typedef struct {
    double e[V], a[V];
    double alpha, tau, beta;
    int use_beta;
    int head[V]; /* expected head membership */
} ccase;

// clang-format off
static const ccase cases[] = {
    /* alpha = 0.5: ln 0.5 = -0.693; e - max = {0, -0.5, -1, -3}: head {0, 1} */
    {{2, 1.5, 1, -1}, {1, 2, 0, 0}, 0.5, 1.0, 0, 0, {1, 1, 0, 0}},
    {{2, 1.5, 1, -1}, {1, 2, 0, 0}, 0.5, 1.0, 0.5, 1, {1, 1, 0, 0}},
    /* amateur temperature 0.5 */
    {{2, 1.5, 1, -1}, {1, 2, 0, 0}, 0.5, 0.5, 0, 0, {1, 1, 0, 0}},
    {{2, 1.5, 1, -1}, {1, 2, 0, 0}, 0.5, 2.0, 1.0, 1, {1, 1, 0, 0}},
    /* alpha = 0 keeps every finite expert logit, never a -inf one */
    {{2, NINF, 1, -30}, {1, NINF, 0, 0}, 0.0, 1.0, 0, 0, {1, 0, 1, 1}},
    /* alpha = 1 keeps the tied maxima only */
    {{3, 1, 3, 2}, {0, 0, 5, 0}, 1.0, 1.0, 0, 0, {1, 0, 1, 0}},
    /* the boundary: e - max = ln(0.25) rounded to float32 sits exactly on log(alpha)'s float
     * neighbourhood; -1.5 is in for alpha = e^-1.5 rounded down */
    {{0, -1.5, -1.5000001, -2}, {0, 0, 0, 0}, 0.22313015, 1.0, 0, 0, {1, 1, 0, 0}},
    /* the amateur's -inf outside the head is harmless */
    {{5, 0, 0, 0}, {0, NINF, NINF, NINF}, 0.1, 1.0, 0, 0, {1, 0, 0, 0}},
};
// clang-format on

/* the expected score of a case at column c (double) */
static double expect(const ccase *k, int c)
{
    if (!k->head[c]) {
        return -INFINITY;
    }
    if (k->use_beta) {
        return (1.0 + k->beta) * k->e[c] - k->beta * k->a[c] / k->tau;
    }
    double as[V];
    for (int i = 0; i < V; i++) {
        as[i] = k->a[i] / k->tau;
    }
    return (k->e[c] - lse(k->e, V)) - (as[c] - lse(as, V));
}

static void test_cases(void)
{
    void *ws = ws_alloc(fd_contrastive_workspace(V));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const ccase *k = &cases[i];
        /* float32 in and out; float64 in and out; float16 / bfloat16 in (values exact in both) */
        float e32[V], a32[V], o32[V];
        double o64[V];
        uint16_t e16[V], a16[V], eb[V], ab[V];
        for (int c = 0; c < V; c++) {
            e32[c] = (float)k->e[c];
            a32[c] = (float)k->a[c];
            e16[c] = fd_float_to_half(e32[c]);
            a16[c] = fd_float_to_half(a32[c]);
            eb[c] = fd_float_to_bf16(e32[c]);
            ab[c] = fd_float_to_bf16(a32[c]);
        }
        double al = k->alpha, tau = k->tau, be = k->beta;
        fd_errinfo err;
        fd_rows out32 = {o32, FD_F32, 1, V, V};
        fd_rows out64 = {o64, FD_F64, 1, V, V};
        fd_rows E = {e32, FD_F32, 1, V, V}, A = {a32, FD_F32, 1, V, V};
        fd_rows E64 = {(void *)k->e, FD_F64, 1, V, V}, A64 = {(void *)k->a, FD_F64, 1, V, V};
        CHECK(fd_contrastive(&E, &A, &out32, P(&al), P(&tau), P(&be), k->use_beta, -INFINITY, ws,
                             &err) == FD_OK);
        CHECK(fd_contrastive(&E64, &A64, &out64, P(&al), P(&tau), P(&be), k->use_beta, -INFINITY,
                             ws, &err) == FD_OK);
        for (int c = 0; c < V; c++) {
            double x = expect(k, c);
            CHECK((o32[c] == -INFINITY) == !k->head[c]);
            CHECK((o64[c] == -INFINITY) == !k->head[c]);
            if (k->head[c]) {
                CHECK_NEAR(o32[c], x, 2e-6 * (1 + fabs(x)));
                CHECK_NEAR(o64[c], x, 1e-13 * (1 + fabs(x)));
            }
        }
        /* float16 and bfloat16 inputs (the case values are exact in both): the float32 bits */
        float o2[V];
        fd_rows out2 = {o2, FD_F32, 1, V, V};
        fd_rows E16 = {e16, FD_F16, 1, V, V}, A16 = {a16, FD_F16, 1, V, V};
        fd_rows EB = {eb, FD_BF16, 1, V, V}, AB = {ab, FD_BF16, 1, V, V};
        if (i != 6) { /* case 6's values are not exact in half precision */
            CHECK(fd_contrastive(&E16, &A16, &out2, P(&al), P(&tau), P(&be), k->use_beta,
                                 -INFINITY, ws, &err) == FD_OK);
            CHECK(memcmp(o2, o32, sizeof o2) == 0);
            CHECK(fd_contrastive(&EB, &AB, &out2, P(&al), P(&tau), P(&be), k->use_beta, -INFINITY,
                                 ws, &err) == FD_OK);
            CHECK(memcmp(o2, o32, sizeof o2) == 0);
        }
        /* filter_value */
        CHECK(fd_contrastive(&E, &A, &out2, P(&al), P(&tau), P(&be), k->use_beta, -7.5, ws,
                             &err) == FD_OK);
        for (int c = 0; c < V; c++) {
            CHECK(k->head[c] ? o2[c] == o32[c] : o2[c] == -7.5f);
        }
    }
    free(ws);
}

/* strided rows, per-row parameters, in place over the expert */
static void test_rows(void)
{
    enum { R = 3, S = 7 };
    float e[R * S], a[R * 5], ref[V];
    for (int i = 0; i < R * S; i++) {
        e[i] = (float)((i * 37) % 11) * 0.5f - 2.0f;
    }
    for (int i = 0; i < R * 5; i++) {
        a[i] = (float)((i * 13) % 7) * 0.75f - 1.0f;
    }
    double al[R] = {0.1, 0.0, 1.0}, tau[R] = {1.0, 0.5, 2.0}, be[R] = {0.5, 0.0, 2.0};
    void *ws = ws_alloc(fd_contrastive_workspace(V));
    fd_errinfo err;
    for (int ub = 0; ub < 2; ub++) {
        float work[R * S];
        memcpy(work, e, sizeof work);
        fd_rows E = {work, FD_F32, R, V, S}, A = {a, FD_F32, R, V, 5};
        fd_param pa = {al, 1}, pt = {tau, 1}, pb = {be, 1};
        CHECK(fd_contrastive(&E, &A, &E, pa, pt, pb, ub, -INFINITY, ws, &err) == FD_OK);
        for (int r = 0; r < R; r++) {
            fd_rows e1 = {e + r * S, FD_F32, 1, V, V}, a1 = {a + r * 5, FD_F32, 1, V, V};
            fd_rows o1 = {ref, FD_F32, 1, V, V};
            CHECK(fd_contrastive(&e1, &a1, &o1, P(&al[r]), P(&tau[r]), P(&be[r]), ub, -INFINITY,
                                 ws, &err) == FD_OK);
            CHECK(memcmp(ref, work + r * S, sizeof ref) == 0);
            CHECK(memcmp(e + r * S + V, work + r * S + V, (S - V) * sizeof(float)) == 0);
        }
    }
    free(ws);
}

static void test_errors(void)
{
    float e[2 * V] = {0, 1, 2, 3, 0, 1, 2, 3}, a[2 * V] = {0, 0, 0, 0, 0, 0, 0, 0}, o[2 * V];
    double one = 1.0, half = 0.5, bad_a = 1.5, neg = -0.5, zero = 0.0, nan = NAN;
    void *ws = ws_alloc(fd_contrastive_workspace(V));
    fd_errinfo err;
    fd_rows E = {e, FD_F32, 2, V, V}, A = {a, FD_F32, 2, V, V}, O = {o, FD_F32, 2, V, V};
    /* parameters */
    CHECK(fd_contrastive(&E, &A, &O, P(&bad_a), P(&one), P(&half), 0, NINF, ws, &err) ==
          FD_EINVAL);
    CHECK(err.row == 0 && err.index == -1);
    CHECK(fd_contrastive(&E, &A, &O, P(&neg), P(&one), P(&half), 0, NINF, ws, &err) == FD_EINVAL);
    CHECK(fd_contrastive(&E, &A, &O, P(&nan), P(&one), P(&half), 0, NINF, ws, &err) == FD_EINVAL);
    CHECK(fd_contrastive(&E, &A, &O, P(&half), P(&zero), P(&half), 0, NINF, ws, &err) ==
          FD_EINVAL);
    CHECK(fd_contrastive(&E, &A, &O, P(&half), P(&one), P(&neg), 1, NINF, ws, &err) == FD_EINVAL);
    /* a negative beta is ignored without use_beta */
    CHECK(fd_contrastive(&E, &A, &O, P(&half), P(&one), P(&neg), 0, NINF, ws, &err) == FD_OK);
    CHECK(fd_contrastive(&E, &A, &O, P(&half), P(&one), P(&half), 0, NAN, ws, &err) == FD_EINVAL);
    /* shapes */
    fd_rows A3 = {a, FD_F32, 2, V - 1, V};
    CHECK(fd_contrastive(&E, &A3, &O, P(&half), P(&one), P(&half), 0, NINF, ws, &err) ==
          FD_ESHAPE);
    fd_rows O16 = {o, FD_F16, 2, V, V};
    CHECK(fd_contrastive(&E, &A, &O16, P(&half), P(&one), P(&half), 0, NINF, ws, &err) ==
          FD_EINVAL);
    /* NaN / +inf: the column names the input */
    e[V + 2] = NAN;
    CHECK(fd_contrastive(&E, &A, &O, P(&half), P(&one), P(&half), 0, NINF, ws, &err) == FD_ENAN);
    CHECK(err.row == 1 && err.index == 2);
    e[V + 2] = 2;
    a[V + 1] = INFINITY;
    CHECK(fd_contrastive(&E, &A, &O, P(&half), P(&one), P(&half), 0, NINF, ws, &err) ==
          FD_EPOSINF);
    CHECK(err.row == 1 && err.index == V + 1);
    a[V + 1] = NAN;
    fd_rows O64 = {o, FD_F64, 1, V, V};
    fd_rows E1 = {e + V, FD_F32, 1, V, V}, A1 = {a + V, FD_F32, 1, V, V};
    CHECK(fd_contrastive(&E1, &A1, &O64, P(&half), P(&one), P(&half), 1, NINF, ws, &err) ==
          FD_ENAN);
    CHECK(err.row == 0 && err.index == V + 1);
    a[V + 1] = 0;
    /* all -inf rows */
    float ninf[V] = {NINF, NINF, NINF, NINF};
    fd_rows N = {ninf, FD_F32, 1, V, V}, O1 = {o, FD_F32, 1, V, V};
    fd_rows E0 = {e, FD_F32, 1, V, V}, A0 = {a, FD_F32, 1, V, V};
    CHECK(fd_contrastive(&N, &A0, &O1, P(&half), P(&one), P(&half), 0, NINF, ws, &err) ==
          FD_ENOFINITE);
    CHECK(err.row == 0 && err.index == 0);
    CHECK(fd_contrastive(&E0, &N, &O1, P(&half), P(&one), P(&half), 0, NINF, ws, &err) ==
          FD_ENOFINITE);
    CHECK(err.index == V);
    /* the amateur's -inf inside the head */
    a[3] = NINF;
    for (int ub = 0; ub < 2; ub++) {
        CHECK(fd_contrastive(&E0, &A0, &O1, P(&half), P(&one), P(&half), ub, NINF, ws, &err) ==
              FD_EINVAL);
        CHECK(err.row == 0 && err.index == V + 3);
        CHECK(fd_contrastive(&E0, &A0, &O64, P(&half), P(&one), P(&half), ub, NINF, ws, &err) ==
              FD_EINVAL);
        CHECK(err.index == V + 3);
    }
    a[3] = 0;
    /* a tiny amateur temperature sends the float32 scaled amateur to -inf: an overflow, not the
     * amateur's -inf (index -1); in double the scores are huge but finite */
    double tiny = 1e-300;
    a[1] = 1;
    CHECK(fd_contrastive(&E0, &A0, &O1, P(&zero), P(&tiny), P(&half), 0, NINF, ws, &err) ==
          FD_EINVAL);
    CHECK(err.row == 0 && err.index == -1);
    CHECK(fd_contrastive(&E0, &A0, &O64, P(&zero), P(&tiny), P(&half), 0, NINF, ws, &err) ==
          FD_OK);
    CHECK(((double *)o)[0] > 1e299 && ((double *)o)[0] < INFINITY);
    a[1] = 0;
    /* an overflowing score */
    double huge = 1e300;
    e[3] = 3e38f;
    CHECK(fd_contrastive(&E0, &A0, &O1, P(&half), P(&one), P(&huge), 1, NINF, ws, &err) ==
          FD_EINVAL);
    CHECK(err.row == 0 && err.index == -1);
    free(ws);
}

static void test_guidance(void)
{
    float c[V] = {1, 2, NINF, 0.5f}, u[V] = {0.5f, NINF, 1, 2}, o[V];
    double oc[V];
    double g = 1.5, one = 1.0, inf = INFINITY;
    void *ws = ws_alloc(fd_guidance_workspace(V));
    fd_errinfo err;
    fd_rows C = {c, FD_F32, 1, V, V}, U = {u, FD_F32, 1, V, V}, O = {o, FD_F32, 1, V, V};
    fd_rows O64 = {oc, FD_F64, 1, V, V};
    /* raw: u + (c - u) * g in float32; -inf wherever either is -inf */
    CHECK(fd_guidance(&C, &U, &O, P(&g), 0, ws, &err) == FD_OK);
    CHECK(o[0] == 0.5f + (1.0f - 0.5f) * 1.5f);
    CHECK(o[1] == NINF && o[2] == NINF);
    CHECK(o[3] == 2.0f + (0.5f - 2.0f) * 1.5f);
    /* normalized */
    double cd[V] = {1, 2, NINF, 0.5}, ud[V] = {0.5, NINF, 1, 2};
    double lc = lse(cd, V), lu = lse(ud, V);
    CHECK(fd_guidance(&C, &U, &O, P(&g), 1, ws, &err) == FD_OK);
    CHECK(fd_guidance(&C, &U, &O64, P(&g), 1, ws, &err) == FD_OK);
    for (int i = 0; i < V; i++) {
        if (i == 1 || i == 2) {
            CHECK(o[i] == NINF && oc[i] == NINF);
            continue;
        }
        double x = 1.5 * ((cd[i] - lc) - (ud[i] - lu)) + (ud[i] - lu);
        CHECK_NEAR(o[i], x, 1e-6);
        CHECK_NEAR(oc[i], x, 1e-14);
    }
    /* g == 1 with normalize: the conditional log-probabilities, -inf of uncond ignored */
    CHECK(fd_guidance(&C, &U, &O, P(&one), 1, ws, &err) == FD_OK);
    CHECK_NEAR(o[1], 2 - lc, 1e-6);
    CHECK(o[2] == NINF);
    /* errors */
    CHECK(fd_guidance(&C, &U, &O, P(&inf), 0, ws, &err) == FD_EINVAL);
    float ninf[V] = {NINF, NINF, NINF, NINF};
    fd_rows N = {ninf, FD_F32, 1, V, V};
    CHECK(fd_guidance(&C, &N, &O, P(&g), 1, ws, &err) == FD_ENOFINITE);
    CHECK(err.index == V);
    CHECK(fd_guidance(&C, &N, &O, P(&g), 0, ws, &err) == FD_OK); /* raw: no normaliser needed */
    u[0] = NAN;
    CHECK(fd_guidance(&C, &U, &O, P(&g), 0, ws, &err) == FD_ENAN);
    CHECK(err.row == 0 && err.index == V);
    u[0] = 0.5f;
    double big = 1e38;
    c[0] = 1e30f;
    CHECK(fd_guidance(&C, &U, &O, P(&big), 0, ws, &err) == FD_EINVAL);
    CHECK(err.index == 0);
    free(ws);
}

/* every ISA level gives the same bits on a long random row */
static void test_isa(void)
{
    enum { N = 3000 };
    float *e = malloc(N * sizeof(float)), *a = malloc(N * sizeof(float));
    float *o[3];
    uint32_t s = 12345;
    for (int i = 0; i < N; i++) {
        s = s * 1664525u + 1013904223u;
        e[i] = (float)((s >> 8) % 10000) / 1000.0f;
        s = s * 1664525u + 1013904223u;
        a[i] = (float)((s >> 8) % 10000) / 1000.0f;
    }
    double al = 0.05, tau = 0.7, be = 0.5, g = 3.0;
    void *ws = ws_alloc(fd_contrastive_workspace(N));
    fd_errinfo err;
    fd_rows E = {e, FD_F32, 1, N, N}, A = {a, FD_F32, 1, N, N};
    for (int mode = 0; mode < 3; mode++) {
        for (int lvl = 0; lvl < 3; lvl++) {
            o[lvl] = malloc(N * sizeof(float));
            fd_rows O = {o[lvl], FD_F32, 1, N, N};
            fdi_set_isa(lvl);
            fd_status st = mode == 2 ? fd_guidance(&E, &A, &O, P(&g), 1, ws, &err)
                                     : fd_contrastive(&E, &A, &O, P(&al), P(&tau), P(&be), mode,
                                                      NINF, ws, &err);
            CHECK(st == FD_OK);
        }
        CHECK(memcmp(o[0], o[1], N * sizeof(float)) == 0);
        CHECK(memcmp(o[0], o[2], N * sizeof(float)) == 0);
        for (int lvl = 0; lvl < 3; lvl++) {
            free(o[lvl]);
        }
    }
    fdi_set_isa(-1);
    free(ws);
    free(e);
    free(a);
}

int main(void)
{
    test_cases();
    test_rows();
    test_errors();
    test_guidance();
    test_isa();
    CHECK_REPORT("test_contrastive");
}
