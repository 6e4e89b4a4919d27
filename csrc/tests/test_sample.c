/* Tests for sample.c: hand-computed picks with explicit uniforms (the llama.cpp
 * tests/test-sampling.cpp vectors, probabilities given as ln p logits), greedy ties, each filter
 * restricting the support, the two chain orders, validation, dtypes and strides, a chi-square test
 * of the Philox-driven draws against the exact filtered distribution, and batch invariance. */
#include "check.h"
#include "fastdecode/fd.h"
#include "internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NINF (-INFINITY)

static _Alignas(64) unsigned char wsbuf[1 << 20];

static fd_param P(const double *v)
{
    return (fd_param){v, 0};
}

static const double T1 = 1.0, ZERO = 0.0, ONE = 1.0;

/* All filters disabled, temperature 1, HF order. */
static fd_sample_params defaults(void)
{
    fd_sample_params p = {P(&T1),   P(&ZERO), P(&ONE),  P(&ZERO),   P(&ONE),
                          P(&ZERO), P(&ZERO), P(&ZERO), FD_ORDER_HF};
    return p;
}

/* Samples one float32 row with an explicit uniform. Returns the status. */
static fd_status sample1(const float *x, int64_t n, const fd_sample_params *p, double u,
                         int64_t *tok, double *lp, fd_errinfo *err)
{
    fd_rows r = {(void *)x, FD_F32, 1, n, n};
    fd_rng_args rng = {NULL, 0, NULL, 0, &u, 0};
    return fd_sample(&r, p, &rng, tok, lp, wsbuf, err);
}

static void lnp(const double *p, float *z, int n)
{
    for (int i = 0; i < n; i++) {
        z[i] = p[i] > 0 ? (float)log(p[i]) : NINF;
    }
}

typedef struct {
    const char *what;
    double u;
    int64_t token;
    double prob; /* of the token under the filtered distribution */
} pick_case;

static void run_picks(const char *what, const float *z, int n, const fd_sample_params *p,
                      const pick_case *c, int nc)
{
    for (int i = 0; i < nc; i++) {
        int64_t tok = -1;
        double lp = 1;
        fd_errinfo err;
        fd_status st = sample1(z, n, p, c[i].u, &tok, &lp, &err);
        CHECK(st == FD_OK);
        if (tok != c[i].token) {
            fprintf(stderr, "  %s / %s: u = %g gave %lld, expected %lld\n", what, c[i].what, c[i].u,
                    (long long)tok, (long long)c[i].token);
        }
        CHECK(tok == c[i].token);
        CHECK_NEAR(lp, log(c[i].prob), 1e-6);
    }
}

static const double P4[4] = {.1, .2, .3, .4};

static void test_plain(void)
{
    float z[4];
    lnp(P4, z, 4);
    fd_sample_params p = defaults();
    /* cumulative .1 .3 .6 1 */
    const pick_case c[] = {
        {"u=0", 0.0, 0, .1},    {"u=.05", 0.05, 0, .1},   {"u=.15", 0.15, 1, .2},
        {"u=.29", 0.29, 1, .2}, {"u=.35", 0.35, 2, .3},   {"u=.59", 0.59, 2, .3},
        {"u=.61", 0.61, 3, .4}, {"u=.999", 0.999, 3, .4},
    };
    run_picks("plain", z, 4, &p, c, (int)(sizeof c / sizeof c[0]));

    /* -inf entries never picked; the survivors keep ascending id order */
    const float zi[6] = {NINF, z[0], NINF, z[1], z[2], z[3]};
    const pick_case ci[] = {{"u=0", 0.0, 1, .1}, {"u=.35", 0.35, 4, .3}, {"u=.9", 0.9, 5, .4}};
    run_picks("with -inf", zi, 6, &p, ci, 3);

    /* u just below 1 reaches a token of relative weight e^-30 at the end of the list */
    const float zs[3] = {0, NINF, -30};
    const pick_case cs[] = {{"u=max", 0x1.fffffffffffffp-1, 2, exp(-30.0) / (1 + exp(-30.0))},
                            {"u=0", 0.0, 0, 1 / (1 + exp(-30.0))}};
    run_picks("tail", zs, 3, &p, cs, 2);
}

static void test_temperature(void)
{
    float z[4];
    lnp(P4, z, 4);
    /* T = 0.5 squares the probabilities: {.01, .04, .09, .16} / .3, cumulative .033 .167 .467 */
    double t = 0.5;
    fd_sample_params p = defaults();
    p.temperature = P(&t);
    const pick_case c[] = {{"u=.02", 0.02, 0, .01 / .3},
                           {"u=.1", 0.1, 1, .04 / .3},
                           {"u=.4", 0.4, 2, .09 / .3},
                           {"u=.5", 0.5, 3, .16 / .3}};
    run_picks("T=0.5", z, 4, &p, c, 4);
    p.order = FD_ORDER_LLAMA;
    run_picks("T=0.5 llama", z, 4, &p, c, 4);

    /* T = +inf: uniform over the finite logits */
    double tinf = INFINITY;
    p = defaults();
    p.temperature = P(&tinf);
    const pick_case cu[] = {{"u=.3", 0.3, 1, .25}, {"u=.76", 0.76, 3, .25}};
    run_picks("T=inf", z, 4, &p, cu, 2);

    /* a temperature so small that max / T overflows is greedy */
    double tiny = 1e-300;
    p.temperature = P(&tiny);
    const pick_case ct[] = {{"u=.0", 0.0, 3, 1.0}, {"u=.99", 0.99, 3, 1.0}};
    run_picks("T=1e-300", z, 4, &p, ct, 2);
    /* small but representable: the others are >= 2877 below the max, weight 0 in double (at
     * T = 1e-3 id 1 would sit 693 below it, weight 1e-301, still pickable with u = 0) */
    double small = 1e-4;
    p.temperature = P(&small);
    run_picks("T=1e-3", z, 4, &p, ct, 2);
}

static void test_greedy(void)
{
    fd_sample_params p = defaults();
    p.temperature = P(&ZERO);
    double tk = 1;
    typedef struct {
        float z[5];
        int64_t token;
    } g;
    const g cases[] = {
        {{1, 3, 3, 2, 0}, 1},      {{NINF, NINF, -5, NINF, -5}, 2}, {{-1, -1, -1, -1, -1}, 0},
        {{0, 0, 0, 0, 1e-30f}, 4}, {{-0.0f, 0.0f, -1, -2, -3}, 0}, /* -0 == +0: the first wins */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t tok = -1;
        double lp = 1;
        fd_errinfo err;
        /* the filters do not apply to greedy: top_k = 1 would not change it anyway, and an
         * invalid uniform is never read */
        p.top_k = P(&tk);
        CHECK(sample1(cases[i].z, 5, &p, 5.0, &tok, &lp, &err) == FD_OK);
        CHECK(tok == cases[i].token);
        CHECK(lp == 0.0);
    }
}

static void test_filters(void)
{
    float z[4];
    lnp(P4, z, 4);

    /* top-k 3 -> {.2,.3,.4}/.9 (llama.cpp: {.444444,.333333,.222222}) */
    double k3 = 3, k2 = 2, k1 = 1;
    fd_sample_params p = defaults();
    p.top_k = P(&k3);
    const pick_case ck3[] = {
        {"u=0", 0.0, 1, .2 / .9}, {"u=.3", 0.3, 2, .3 / .9}, {"u=.6", 0.6, 3, .4 / .9}};
    run_picks("top-k 3", z, 4, &p, ck3, 3);
    p.top_k = P(&k2);
    const pick_case ck2[] = {
        {"u=0", 0.0, 2, 3. / 7}, {"u=.42", 0.42, 2, 3. / 7}, {"u=.43", 0.43, 3, 4. / 7}};
    run_picks("top-k 2", z, 4, &p, ck2, 3);
    p.top_k = P(&k1);
    const pick_case ck1[] = {{"u=0", 0.0, 3, 1}, {"u=.9", 0.9, 3, 1}};
    run_picks("top-k 1", z, 4, &p, ck1, 2);
    /* every token tied with the k-th is kept: {1, 2, 2, 0} k = 2 keeps ids 1, 2 (equal) */
    const float zt[4] = {1, 2, 2, 0};
    p.top_k = P(&k2);
    const pick_case ckt[] = {{"u=.49", 0.49, 1, .5}, {"u=.51", 0.51, 2, .5}};
    run_picks("top-k tie", zt, 4, &p, ckt, 2);
    const float zt3[4] = {2, 1, 2, 2};
    const pick_case ckt3[] = {
        {"u=.3", 0.3, 0, 1. / 3}, {"u=.5", 0.5, 2, 1. / 3}, {"u=.9", 0.9, 3, 1. / 3}};
    p.top_k = P(&k1); /* ties with the 1st value: all three 2s kept */
    run_picks("top-k tie 3", zt3, 4, &p, ckt3, 3);

    /* top-p .6: .4 (mass before 0), .3 (before .4 < .6) kept; .2 (before .7) removed */
    double tp = 0.6, tp0 = 0.0;
    p = defaults();
    p.top_p = P(&tp);
    const pick_case cp[] = {{"u=.42", 0.42, 2, 3. / 7}, {"u=.43", 0.43, 3, 4. / 7}};
    run_picks("top-p .6", z, 4, &p, cp, 2);
    p.top_p = P(&tp0); /* p = 0 keeps the top token */
    const pick_case cp0[] = {{"u=0", 0.0, 3, 1.0}};
    run_picks("top-p 0", z, 4, &p, cp0, 1);

    /* min-p .51 -> {.3,.4}/.7 (.2 < .51 * .4) */
    double mp = 0.51;
    p = defaults();
    p.min_p = P(&mp);
    run_picks("min-p .51", z, 4, &p, cp, 2);

    /* top-n-sigma 1 -> {0, 0, .428571, .571429} (llama.cpp vector) */
    double ns = 1.0;
    p = defaults();
    p.top_n_sigma = P(&ns);
    run_picks("top-n-sigma 1", z, 4, &p, cp, 2);

    /* typical .5 on {.4,.2,.2,.2}: H = 1.3322, s(.4) = .416, s(.2) = .277; the three .2 tokens
     * come first in the walk and the third crosses .5 -> {1, 2, 3} uniformly */
    const double P5[4] = {.4, .2, .2, .2};
    float zy[4];
    lnp(P5, zy, 4);
    double ty = 0.5;
    p = defaults();
    p.typical_p = P(&ty);
    const pick_case cy[] = {
        {"u=0", 0.0, 1, 1. / 3}, {"u=.5", 0.5, 2, 1. / 3}, {"u=.9", 0.9, 3, 1. / 3}};
    run_picks("typical .5", zy, 4, &p, cy, 3);

    /* epsilon .15 removes .1; eta .3: eta = min(.3, sqrt(.3) exp(-1.2799)) = .152 removes .1 */
    double ep = 0.15, et = 0.3;
    const pick_case ce[] = {{"u=0", 0.0, 1, .2 / .9}, {"u=.3", 0.3, 2, .3 / .9}};
    p = defaults();
    p.epsilon = P(&ep);
    run_picks("epsilon .15", z, 4, &p, ce, 2);
    p = defaults();
    p.eta = P(&et);
    run_picks("eta .3", z, 4, &p, ce, 2);

    /* a filter after top-k sees the top-k survivors only: top-k 3 then top-p .5 over
     * {.2,.3,.4}/.9 = {.222,.333,.444}: .444 (before 0), .333 (before .444 < .5) kept */
    p = defaults();
    p.top_k = P(&k3);
    double tp5 = 0.5;
    p.top_p = P(&tp5);
    run_picks("top-k 3 + top-p .5", z, 4, &p, cp, 2);
}

/* HF order applies temperature first, llama.cpp order last. T = 2 turns {.1,.2,.3,.4} into
 * {.163,.230,.282,.325}; top-p .65 then keeps {1,2,3} in HF order (.230 has .607 before it) but
 * {2,3} in llama order (on the raw row, .2 has .7 before it). Final probabilities: HF sqrt(p)
 * renormalised over {1,2,3}; llama sqrt(p) over {2,3}. */
static void test_orders(void)
{
    float z[4];
    lnp(P4, z, 4);
    double t = 2.0, tp = 0.65;
    fd_sample_params p = defaults();
    p.temperature = P(&t);
    p.top_p = P(&tp);
    double s1 = sqrt(.2), s2 = sqrt(.3), s3 = sqrt(.4);
    const pick_case hf[] = {{"u=0", 0.0, 1, s1 / (s1 + s2 + s3)},
                            {"u=.99", 0.99, 3, s3 / (s1 + s2 + s3)}};
    run_picks("order hf", z, 4, &p, hf, 2);
    p.order = FD_ORDER_LLAMA;
    const pick_case ll[] = {{"u=0", 0.0, 2, s2 / (s2 + s3)}, {"u=.99", 0.99, 3, s3 / (s2 + s3)}};
    run_picks("order llama", z, 4, &p, ll, 2);

    /* min-p .6 with T = 4. llama order (unscaled): .3 and .4 are >= .6 * .4 = .24, so {2, 3},
     * then flattened by T. HF order (T first): p^(1/4) / .4^(1/4) is .71, .84, .93, 1 -- all
     * >= .6, so all four survive. */
    double t4 = 4.0, mp = 0.6;
    p = defaults();
    p.temperature = P(&t4);
    p.min_p = P(&mp);
    double q[4];
    double sq = 0;
    for (int i = 0; i < 4; i++) {
        q[i] = pow(P4[i], 0.25);
        sq += q[i];
    }
    const pick_case hf2[] = {{"u=0", 0.0, 0, q[0] / sq}};
    run_picks("min-p hf", z, 4, &p, hf2, 1);
    p.order = FD_ORDER_LLAMA;
    const pick_case ll2[] = {{"u=0", 0.0, 2, q[2] / (q[2] + q[3])}};
    run_picks("min-p llama", z, 4, &p, ll2, 1);
}

static void test_errors(void)
{
    float z[4] = {0, 1, 2, 3};
    int64_t tok;
    fd_errinfo err;
    typedef struct {
        int which;
        double v;
    } bad;
    const bad cases[] = {
        {0, -0.5}, {0, NAN}, {1, -1}, {1, 1.5}, {1, NAN}, {2, 1.01}, {2, -0.1},
        {3, NAN},  {3, 2.0}, {4, -1}, {5, 1.5}, {6, NAN}, {7, NAN},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fd_sample_params p = defaults();
        fd_param *f[8] = {&p.temperature, &p.top_k,   &p.top_p, &p.min_p,
                          &p.typical_p,   &p.epsilon, &p.eta,   &p.top_n_sigma};
        /* row 1 of a 2-row batch is at fault; row 0 holds the parameter's disabled value */
        const double disabled[8] = {1, 0, 1, 0, 1, 0, 0, 0};
        double vals[2] = {disabled[cases[i].which], cases[i].v};
        *f[cases[i].which] = (fd_param){vals, 1};
        float zz[8] = {0, 1, 2, 3, 0, 1, 2, 3};
        fd_rows r = {zz, FD_F32, 2, 4, 4};
        double u = 0.5;
        fd_rng_args rng = {NULL, 0, NULL, 0, &u, 0};
        int64_t toks[2] = {-1, -1};
        fd_status st = fd_sample(&r, &p, &rng, toks, NULL, wsbuf, &err);
        CHECK(st == FD_EINVAL);
        CHECK(err.row == 1);
        if (st != FD_EINVAL || err.row != 1) {
            fprintf(stderr, "  param case %zu\n", i);
        }
    }
    /* uniforms outside [0, 1) */
    fd_sample_params p = defaults();
    CHECK(sample1(z, 4, &p, 1.0, &tok, NULL, &err) == FD_EINVAL);
    CHECK(sample1(z, 4, &p, -0.1, &tok, NULL, &err) == FD_EINVAL);
    CHECK(sample1(z, 4, &p, NAN, &tok, NULL, &err) == FD_EINVAL);
    /* logits: NaN / +inf with their column; all -inf */
    float zn[4] = {0, 1, NAN, 3}, zp[4] = {0, INFINITY, 2, 3}, zm[4] = {NINF, NINF, NINF, NINF};
    CHECK(sample1(zn, 4, &p, 0.5, &tok, NULL, &err) == FD_ENAN && err.row == 0 && err.index == 2);
    CHECK(sample1(zp, 4, &p, 0.5, &tok, NULL, &err) == FD_EPOSINF && err.index == 1);
    CHECK(sample1(zm, 4, &p, 0.5, &tok, NULL, &err) == FD_ENOFINITE && err.row == 0);
    p.temperature = P(&ZERO);
    CHECK(sample1(zm, 4, &p, 0.5, &tok, NULL, &err) == FD_ENOFINITE);
    /* no uniform and no seed */
    p = defaults();
    fd_rows r = {z, FD_F32, 1, 4, 4};
    fd_rng_args none = {NULL, 0, NULL, 0, NULL, 0};
    CHECK(fd_sample(&r, &p, &none, &tok, NULL, wsbuf, &err) == FD_EINVAL);
    p.order = (fd_order)7;
    double u = 0.5;
    fd_rng_args ru = {NULL, 0, NULL, 0, &u, 0};
    CHECK(fd_sample(&r, &p, &ru, &tok, NULL, wsbuf, &err) == FD_EINVAL);
}

/* float16, bfloat16 and float64 storage of the same logits, a row stride wider than the row, an
 * unaligned workspace pointer, and per-row parameters. */
static void test_dtypes_strides(void)
{
    float z[4];
    lnp(P4, z, 4);
    uint16_t h[2 * 6], b[2 * 6];
    double d[2 * 6];
    for (int r = 0; r < 2; r++) {
        for (int i = 0; i < 6; i++) {
            float v = i < 4 ? z[i] : 1000.0f; /* padding beyond n_cols must never be read */
            h[r * 6 + i] = fd_float_to_half(v);
            b[r * 6 + i] = fd_float_to_bf16(v);
            d[r * 6 + i] = v;
        }
    }
    double us[2] = {0.35, 0.05}, ks[2] = {0, 2};
    fd_sample_params p = defaults();
    p.top_k = (fd_param){ks, 1};
    fd_rng_args rng = {NULL, 0, NULL, 0, us, 1};
    const fd_rows rows[3] = {{h, FD_F16, 2, 4, 6}, {b, FD_BF16, 2, 4, 6}, {d, FD_F64, 2, 4, 6}};
    for (int k = 0; k < 3; k++) {
        int64_t tok[2] = {-1, -1};
        double lp[2];
        fd_errinfo err;
        CHECK(fd_sample(&rows[k], &p, &rng, tok, lp, wsbuf + 8, &err) == FD_OK);
        CHECK(tok[0] == 2 && tok[1] == 2); /* u=.35 -> 2; top-2 {.3,.4}, u=.05 -> 2 */
        CHECK_NEAR(lp[0], log(.3), 2e-2);  /* bf16 keeps 8 bits */
        CHECK_NEAR(lp[1], log(3. / 7), 2e-2);
    }
}

/* Chi-square test of the Philox-driven draws. Row (V = 8): z = {1, 2.5, .3, 2, -1, 1.8, .9, -inf},
 * temperature .7, top-k 5, top-p .9, both orders. By hand: the top 5 are ids 1, 3, 5, 0, 6; their
 * tempered probabilities walk .4816 .7174 .8945 .9510 (HF) / raw .3955 .6355 .8319 .9201
 * (llama), so top-p keeps ids {0, 1, 3, 5} in both orders, and the final distribution is
 * exp(z / .7) renormalised over them. 200,000 draws (seed 2024, positions 0..N-1); the statistic
 * has 3 degrees of freedom and the bound 30.66 is its 1 - 1e-6 quantile, so a correct sampler
 * fails with probability 1e-6 (and, the seeds being fixed, the outcome is deterministic). */
static void test_chi_square(void)
{
    enum { V = 8, N = 200000 };
    const float z[V] = {1.0f, 2.5f, 0.3f, 2.0f, -1.0f, 1.8f, 0.9f, NINF};
    const int keep[4] = {0, 1, 3, 5};
    double expect[V] = {0}, tot = 0;
    for (int j = 0; j < 4; j++) {
        expect[keep[j]] = exp((double)z[keep[j]] / 0.7);
        tot += expect[keep[j]];
    }
    for (int i = 0; i < V; i++) {
        expect[i] /= tot;
    }
    double t = 0.7, k = 5, tp = 0.9;
    for (int order = 0; order < 2; order++) {
        fd_sample_params p = defaults();
        p.temperature = P(&t);
        p.top_k = P(&k);
        p.top_p = P(&tp);
        p.order = order ? FD_ORDER_LLAMA : FD_ORDER_HF;
        long count[V] = {0};
        uint64_t seed = 2024;
        int ok = 1;
        for (int64_t i = 0; i < N; i++) {
            fd_rows r = {(void *)z, FD_F32, 1, V, V};
            fd_rng_args rng = {&seed, 0, &i, 0, NULL, 0};
            int64_t tok = -1;
            double lp;
            fd_errinfo err;
            ok &= fd_sample(&r, &p, &rng, &tok, &lp, wsbuf, &err) == FD_OK;
            ok &= tok >= 0 && tok < V && expect[tok] > 0 && fabs(lp - log(expect[tok])) < 1e-5;
            if (tok >= 0 && tok < V) {
                count[tok]++;
            }
        }
        CHECK(ok);
        double chi2 = 0;
        int outside = 0;
        for (int i = 0; i < V; i++) {
            if (expect[i] > 0) {
                double e = N * expect[i];
                chi2 += (count[i] - e) * (count[i] - e) / e;
            }
            else {
                outside += count[i] != 0;
            }
        }
        CHECK(outside == 0);
        if (!(chi2 < 30.66)) {
            fprintf(stderr, "  chi2 = %g (order %d)\n", chi2, order);
        }
        CHECK(chi2 < 30.66);
    }
}

/* The seeded pick equals the explicit-uniform pick with u = fd_uniform(seed, position, 0). */
static void test_seed_is_uniform(void)
{
    float z[4];
    lnp(P4, z, 4);
    fd_sample_params p = defaults();
    int ok = 1;
    for (int64_t i = 0; i < 200; i++) {
        uint64_t seed = 99 + (uint64_t)i * 7919u;
        int64_t pos = i * 3;
        fd_rows r = {z, FD_F32, 1, 4, 4};
        fd_rng_args rng = {&seed, 0, &pos, 0, NULL, 0};
        int64_t a = -1, b = -2;
        double la, lb;
        fd_errinfo err;
        ok &= fd_sample(&r, &p, &rng, &a, &la, wsbuf, &err) == FD_OK;
        ok &= sample1(z, 4, &p, fd_uniform(seed, (uint64_t)pos, 0), &b, &lb, &err) == FD_OK;
        ok &= a == b && la == lb;
    }
    CHECK(ok);
}

/* Row r of a batch == the same row sampled alone with its own seed, position and parameters. */
static void test_batch_invariance(void)
{
    enum { B = 7, V = 300, S = 320 };
    static float x[B * S];
    uint64_t st = 12345;
    for (int i = 0; i < B * S; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        double g = (double)(st >> 11) / 9007199254740992.0;
        x[i] = (float)(6.0 * g - 3.0);
        if ((st >> 7) % 50 == 0) {
            x[i] = NINF;
        }
    }
    uint64_t seeds[B] = {1, 2, 3, 3, 5, 8, 13};
    int64_t pos[B] = {0, 10, 10, 11, 1000000, 7, 7};
    double temp[B] = {1.0, 0.7, 0.0, 1.3, 0.5, 2.0, 0.9};
    double topk[B] = {0, 40, 0, 5, 100, 0, 20};
    double topp[B] = {1.0, 0.9, 0.5, 1.0, 0.8, 0.95, 1.0};
    double minp[B] = {0, 0.05, 0, 0.1, 0, 0, 0.02};
    double typ[B] = {1, 1, 1, 0.9, 1, 1, 1};
    double eps[B] = {0, 0, 0, 0, 3e-3, 0, 0};
    double eta[B] = {0, 0, 0, 0, 0, 1e-3, 0};
    double nsig[B] = {0, 0, 0, 0, 0, 0, 1.5};
    for (int order = 0; order < 2; order++) {
        fd_sample_params p = {{temp, 1}, {topk, 1}, {topp, 1},
                              {minp, 1}, {typ, 1},  {eps, 1},
                              {eta, 1},  {nsig, 1}, order ? FD_ORDER_LLAMA : FD_ORDER_HF};
        fd_rows all = {x, FD_F32, B, V, S};
        fd_rng_args rng = {seeds, 1, pos, 1, NULL, 0};
        int64_t tok[B];
        double lp[B];
        fd_errinfo err;
        CHECK(fd_sample(&all, &p, &rng, tok, lp, wsbuf, &err) == FD_OK);
        /* the batch in reverse order */
        static float xr[B * V];
        uint64_t sr[B];
        int64_t prr[B];
        double tr[B], kr[B], ppr[B], mr[B], yr[B], er[B], hr[B], nr[B];
        for (int r = 0; r < B; r++) {
            int s = B - 1 - r;
            memcpy(xr + r * V, x + s * S, V * sizeof(float));
            sr[r] = seeds[s];
            prr[r] = pos[s];
            tr[r] = temp[s];
            kr[r] = topk[s];
            ppr[r] = topp[s];
            mr[r] = minp[s];
            yr[r] = typ[s];
            er[r] = eps[s];
            hr[r] = eta[s];
            nr[r] = nsig[s];
        }
        fd_sample_params pr = {{tr, 1}, {kr, 1}, {ppr, 1}, {mr, 1}, {yr, 1},
                               {er, 1}, {hr, 1}, {nr, 1},  p.order};
        fd_rows rev = {xr, FD_F32, B, V, V};
        fd_rng_args rngr = {sr, 1, prr, 1, NULL, 0};
        int64_t tokr[B];
        double lpr[B];
        CHECK(fd_sample(&rev, &pr, &rngr, tokr, lpr, wsbuf + 24, &err) == FD_OK);
        int distinct = 0;
        for (int r = 0; r < B; r++) {
            fd_sample_params p1 = {{&temp[r], 0}, {&topk[r], 0}, {&topp[r], 0},
                                   {&minp[r], 0}, {&typ[r], 0},  {&eps[r], 0},
                                   {&eta[r], 0},  {&nsig[r], 0}, p.order};
            fd_rows one = {x + r * S, FD_F32, 1, V, V};
            fd_rng_args rng1 = {&seeds[r], 0, &pos[r], 0, NULL, 0};
            int64_t t1 = -1;
            double l1;
            CHECK(fd_sample(&one, &p1, &rng1, &t1, &l1, wsbuf, &err) == FD_OK);
            CHECK(t1 == tok[r] && l1 == lp[r]);
            CHECK(tokr[B - 1 - r] == tok[r] && lpr[B - 1 - r] == lp[r]);
            distinct += r > 0 && tok[r] != tok[r - 1];
        }
        CHECK(distinct > 0);
        /* greedy row */
        CHECK(lp[2] == 0.0);
    }
}

/* The blocked pick on long rows (no filter: the row itself, -inf included; top-p: the compacted
 * survivors; a temperature) against a straightforward sequential inverse CDF over the same float32
 * weights, on every ISA path. The two sum in different orders, so a token may differ only where
 * the target lies within rounding (1e-12 of the total) of a cumulative boundary. */
static void test_pick_long_rows(void)
{
    enum { V = 20000, U = 60 };
    static float x[V], sv[V];
    static int32_t sid[V];
    CHECK(fd_sample_workspace(V) <= sizeof wsbuf - 64);
    uint64_t st = 0x1234567ull;
    int best = fdi_set_isa(-1), mismatches = 0, borderline = 0;
    for (int level = FDI_ISA_PORTABLE; level <= best; level++) {
        fdi_set_isa(level);
        for (int shape = 0; shape < 3; shape++) {
            for (int i = 0; i < V; i++) {
                st = st * 6364136223846793005ull + 1442695040888963407ull;
                double g = (double)(st >> 11) * (1.0 / 9007199254740992.0);
                x[i] = (float)(shape == 1 ? 8.0 * g : 3.0 * g);
                if (shape == 2 && (st >> 60) < 5) {
                    x[i] = NINF;
                }
            }
            for (int cfg = 0; cfg < 3; cfg++) {
                double temp = cfg == 2 ? 0.7 : 1.0, top_p = cfg == 1 ? 0.9 : 1.0;
                fd_sample_params p = defaults();
                p.temperature = P(&temp);
                p.top_p = P(&top_p);
                /* the reference's survivors: the scaled finite logits, then top-p by fd_filter */
                float tf = (float)temp;
                int64_t n = 0;
                for (int i = 0; i < V; i++) {
                    if (x[i] != NINF) {
                        sv[n] = tf != 1.0f ? x[i] / tf : x[i];
                        sid[n] = i;
                        n++;
                    }
                }
                if (top_p < 1.0) {
                    static _Alignas(64) unsigned char fw[1 << 20];
                    n = fdi_top_p(sv, sid, n, top_p, 1, fw);
                }
                float max = fdi_max(sv, n);
                for (int k = 0; k < U; k++) {
                    double u = (k + 0.5) / U;
                    int64_t tok = -1;
                    double lp = 0;
                    CHECK(sample1(x, V, &p, u, &tok, &lp, NULL) == FD_OK);
                    double total = 0.0;
                    for (int64_t i = 0; i < n; i++) {
                        total += (double)fdi_expf1(sv[i] - max);
                    }
                    double target = u * total, run = 0.0, gap = INFINITY;
                    int64_t ref = -1;
                    for (int64_t i = 0; i < n; i++) {
                        run += (double)fdi_expf1(sv[i] - max);
                        gap = fmin(gap, fabs(run - target));
                        if (run > target) {
                            ref = sid[i];
                            break;
                        }
                    }
                    if (tok != ref) {
                        mismatches++;
                        borderline += gap <= 1e-12 * total;
                    }
                    if (tok == ref) {
                        double w = (double)fdi_expf1(sv[0] - max);
                        for (int64_t i = 0; i < n; i++) {
                            if (sid[i] == tok) {
                                w = (double)fdi_expf1(sv[i] - max);
                            }
                        }
                        CHECK_NEAR(lp, log(w / total), 1e-9);
                    }
                }
            }
        }
    }
    fdi_set_isa(-1);
    CHECK(mismatches == borderline);
    CHECK(mismatches <= 2);
}

/* The blocked pick of fd.h written out: float32 weights exp(v - max), sequential sums within
 * 64-weight blocks, then the block sums in order; the first index whose running sum exceeds
 * u * total (else the last of nonzero weight). */
static int64_t ref_pick(const float *v, int64_t n, double u, double *lp)
{
    float max = fdi_max(v, n);
    double total = 0.0;
    for (int64_t b = 0; b * 64 < n; b++) {
        double acc = 0.0;
        for (int64_t i = b * 64; i < n && i < b * 64 + 64; i++) {
            acc += (double)fdi_expf1(v[i] - max);
        }
        total += acc;
    }
    double target = u * total, run = 0.0;
    int64_t pick = -1;
    for (int64_t b = 0; b * 64 < n && pick < 0; b++) {
        double acc = 0.0;
        for (int64_t i = b * 64; i < n && i < b * 64 + 64; i++) {
            acc += (double)fdi_expf1(v[i] - max);
        }
        if (run + acc > target) {
            double s = 0.0;
            for (int64_t i = b * 64; i < n && i < b * 64 + 64; i++) {
                s += (double)fdi_expf1(v[i] - max);
                if (run + s > target) {
                    pick = i;
                    break;
                }
            }
        }
        run += acc;
    }
    if (pick < 0) {
        pick = n - 1;
        while (pick > 0 && !(fdi_expf1(v[pick] - max) > 0.0f)) {
            pick--;
        }
    }
    *lp = log((double)fdi_expf1(v[pick] - max) / total);
    return pick;
}

/* Rows without -inf take the direct path of sample.c (the first filter decided on the row by the
 * dense rule, survivors gathered, the filter's weights reused by the pick): every single filter,
 * and two-filter chains, both orders, T = 1 and 0.7, flat / peaked / tied rows, on every ISA
 * path, against the candidate-list chain (the fdi_* filters on the scaled row) and the pick of
 * fd.h written out -- tokens and log-probabilities bit for bit. */
static void test_direct_first_filter(void)
{
    enum { V = 9000, U = 7 };
    static float x[V], sv[V];
    static int32_t sid[V];
    static _Alignas(64) unsigned char fw[1 << 20];
    uint64_t st = 0x9e3779b97f4a7c15ull;
    int best = fdi_set_isa(-1);
    static const double vals[7] = {1.0, 0.9, 0.05, 0.95, 3e-4, 3e-4, 1.0};
    for (int level = FDI_ISA_PORTABLE; level <= best; level++) {
        fdi_set_isa(level);
        for (int shape = 0; shape < 3; shape++) {
            for (int i = 0; i < V; i++) {
                st = st * 6364136223846793005ull + 1442695040888963407ull;
                double g = (double)(st >> 11) * (1.0 / 9007199254740992.0);
                x[i] = (float)(shape == 0 ? 3.0 * g : shape == 1 ? 20.0 * g * g * g
                                                                 : floor(8.0 * g) / 4.0);
            }
            for (int cfg = 0; cfg < 6 * 2 * 2 + 4; cfg++) {
                int f = FD_FILTER_TOP_P + (cfg % 6), g2 = -1;
                int order = (cfg / 6) % 2;
                double temp = (cfg / 12) % 2 ? 0.7 : 1.0;
                if (cfg >= 24) { /* a second filter after the first */
                    f = cfg % 2 ? FD_FILTER_TOP_N_SIGMA : FD_FILTER_TOP_P;
                    g2 = cfg % 2 ? FD_FILTER_MIN_P : FD_FILTER_EPSILON;
                    order = (cfg / 2) % 2;
                }
                double pv[7] = {0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0};
                pv[f] = vals[f];
                if (g2 >= 0) {
                    pv[g2] = vals[g2];
                }
                fd_sample_params p = defaults();
                p.temperature = P(&temp);
                p.top_p = P(&pv[FD_FILTER_TOP_P]);
                p.min_p = P(&pv[FD_FILTER_MIN_P]);
                p.typical_p = P(&pv[FD_FILTER_TYPICAL]);
                p.epsilon = P(&pv[FD_FILTER_EPSILON]);
                p.eta = P(&pv[FD_FILTER_ETA]);
                p.top_n_sigma = P(&pv[FD_FILTER_TOP_N_SIGMA]);
                p.order = order ? FD_ORDER_LLAMA : FD_ORDER_HF;
                float tf = (float)temp;
                for (int i = 0; i < V; i++) {
                    sv[i] = !order && tf != 1.0f ? x[i] / tf : x[i];
                    sid[i] = i;
                }
                int64_t n = V;
                static const int hf[6] = {FD_FILTER_TOP_N_SIGMA, FD_FILTER_TOP_P, FD_FILTER_MIN_P,
                                          FD_FILTER_TYPICAL, FD_FILTER_EPSILON, FD_FILTER_ETA};
                static const int ll[6] = {FD_FILTER_TOP_N_SIGMA, FD_FILTER_TYPICAL,
                                          FD_FILTER_TOP_P, FD_FILTER_MIN_P, FD_FILTER_EPSILON,
                                          FD_FILTER_ETA};
                for (int s = 0; s < 6; s++) {
                    int w = order ? ll[s] : hf[s];
                    if (w != f && w != g2) {
                        continue;
                    }
                    switch (w) {
                    case FD_FILTER_TOP_P:
                        n = fdi_top_p(sv, sid, n, pv[w], 1, fw);
                        break;
                    case FD_FILTER_MIN_P:
                        n = fdi_min_p(sv, sid, n, pv[w], 1, fw);
                        break;
                    case FD_FILTER_TYPICAL:
                        n = fdi_typical(sv, sid, n, pv[w], 1, fw);
                        break;
                    case FD_FILTER_EPSILON:
                        n = fdi_epsilon(sv, sid, n, pv[w], 1, fw);
                        break;
                    case FD_FILTER_ETA:
                        n = fdi_eta(sv, sid, n, pv[w], 1, fw);
                        break;
                    default:
                        n = fdi_top_n_sigma(sv, sid, n, pv[w], 1, fw);
                        break;
                    }
                }
                if (order && tf != 1.0f) {
                    for (int64_t i = 0; i < n; i++) {
                        sv[i] = sv[i] / tf;
                    }
                }
                for (int k = 0; k < U; k++) {
                    double u = k == 0 ? 0.0 : (k - 0.5) / (U - 1), lp = 0.0, rlp = 1.0;
                    int64_t tok = -1;
                    CHECK(sample1(x, V, &p, u, &tok, &lp, NULL) == FD_OK);
                    int64_t ref = sid[ref_pick(sv, n, u, &rlp)];
                    if (tok != ref || memcmp(&lp, &rlp, sizeof lp) != 0) {
                        fprintf(stderr, "  direct path: isa %d shape %d cfg %d u %g: %lld / %lld\n",
                                level, shape, cfg, u, (long long)tok, (long long)ref);
                    }
                    CHECK(tok == ref && memcmp(&lp, &rlp, sizeof lp) == 0);
                }
            }
        }
    }
    fdi_set_isa(-1);
}

/* The no-filter pick on long rows (the AVX-512 level sums 16 blocks in vector lanes): tokens and
 * log-probabilities bit for bit those of the portable level, for row lengths around the 16-block
 * groups, T = 1 and 0.7 and uniforms across [0, 1). */
static void test_pick_isa_bits(void)
{
    enum { V = 5200, U = 40 };
    static float x[V];
    uint64_t st = 0xabcdef12345ull;
    for (int i = 0; i < V; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(st >> 11) * (1.0 / 9007199254740992.0) * 6.0);
    }
    int best = fdi_set_isa(-1);
    static const int64_t lens[] = {1023, 1024, 1025, 2047, 2048, 3100, 5200};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        for (int ti = 0; ti < 2; ti++) {
            double temp = ti ? 0.7 : 1.0;
            fd_sample_params p = defaults();
            p.temperature = P(&temp);
            for (int k = 0; k < U; k++) {
                double u = (k + 0.25) / U, lp0 = 0, lp1 = 0;
                int64_t t0 = -1, t1 = -1;
                fdi_set_isa(FDI_ISA_PORTABLE);
                CHECK(sample1(x, lens[li], &p, u, &t0, &lp0, NULL) == FD_OK);
                for (int level = FDI_ISA_AVX2; level <= best; level++) {
                    fdi_set_isa(level);
                    CHECK(sample1(x, lens[li], &p, u, &t1, &lp1, NULL) == FD_OK);
                    CHECK(t0 == t1 && memcmp(&lp0, &lp1, sizeof lp0) == 0);
                }
            }
        }
    }
    fdi_set_isa(-1);
}

int main(void)
{
    CHECK(fd_sample_workspace(8) <= sizeof wsbuf - 64);
    CHECK(fd_sample_workspace(320) <= sizeof wsbuf - 64);
    test_plain();
    test_temperature();
    test_greedy();
    test_filters();
    test_orders();
    test_errors();
    test_dtypes_strides();
    test_chi_square();
    test_seed_is_uniform();
    test_batch_invariance();
    test_pick_long_rows();
    test_direct_first_filter();
    test_pick_isa_bits();
    CHECK_REPORT("test_sample");
}
