/* Tests for mirostat.c and entropix.c: hand-computed mirostat v2 truncations and mu updates
 * (probabilities given as ln p logits), v1's k on an exact Zipf ramp, greedy, per-row state and
 * row independence, validation; entropix branches on rows of known entropy / varentropy. */
#include "check.h"
#include "fastdecode/fd.h"
#include "internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NINF (-INFINITY)
#define LN2 0.693147180559945309417232121458176568

static _Alignas(64) unsigned char wsbuf[1 << 22];

static fd_param P(const double *v)
{
    return (fd_param){v, 0};
}

static const double ONE = 1.0;

/* One mirostat step on one float32 row with an explicit uniform. */
static fd_status step1(const float *x, int64_t n, int version, int64_t m, double tau, double eta,
                       double T, double u, double *mu, int64_t *tok, double *lp, int64_t *kept)
{
    fd_rows r = {(void *)x, FD_F32, 1, n, n};
    fd_mirostat_params p = {P(&tau), P(&eta), P(&T), version, m};
    fd_rng_args rng = {NULL, 0, NULL, 0, &u, 0};
    fd_errinfo e;
    return fd_mirostat(&r, &p, &rng, mu, tok, lp, kept, wsbuf, &e);
}

typedef struct {
    double mu, u;
    int64_t token, kept;
    double prob; /* of the token among the survivors */
} v2_case;

static void test_v2_table(void)
{
    /* p = .5 .25 .125 .0625 .0625: surprises 1, 2, 3, 4, 4 bits */
    const double p[5] = {0.5, 0.25, 0.125, 0.0625, 0.0625};
    float z[5];
    for (int i = 0; i < 5; i++) {
        z[i] = (float)log(p[i]);
    }
    const v2_case cs[] = {
        {0.5, 0.9, 0, 1, 1.0},            /* nothing within budget: the maximum alone */
        {1.5, 0.9, 0, 1, 1.0},            /* only surprise 1 */
        {2.5, 0.6, 0, 2, 2.0 / 3},        /* {.5, .25}: u .6 < 2/3 */
        {2.5, 0.7, 1, 2, 1.0 / 3},        /* u .7 > 2/3 */
        {3.5, 0.95, 2, 3, 0.125 / 0.875}, /* {.5 .25 .125} */
        {4.5, 0.999, 4, 5, 0.0625},       /* everything */
        {40.0, 0.0, 0, 5, 0.5},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        double mu = cs[i].mu, lp = 1;
        int64_t tok = -1, kept = -1;
        CHECK(step1(z, 5, 2, 100, 3.0, 0.25, 1.0, cs[i].u, &mu, &tok, &lp, &kept) == FD_OK);
        CHECK(tok == cs[i].token);
        CHECK(kept == cs[i].kept);
        CHECK_NEAR(lp, log(cs[i].prob), 1e-6);
        CHECK_NEAR(mu, cs[i].mu - 0.25 * (-log2(cs[i].prob) - 3.0), 1e-6);
    }
    /* -inf entries are never kept, also with an unbounded budget */
    float zi[4] = {NINF, 0.0f, NINF, 0.0f};
    double mu = 100.0;
    int64_t tok, kept;
    CHECK(step1(zi, 4, 2, 100, 1.0, 0.1, 1.0, 0.99, &mu, &tok, NULL, &kept) == FD_OK);
    CHECK(tok == 3 && kept == 2);
}

static void test_v1_k(void)
{
    /* z = -s ln(rank), s = 1.5 exactly: s_hat = 1.5, k = (0.5 2^mu / (1 - V^-0.5))^(1/1.5) */
    enum { V = 2000 };
    static float z[V];
    for (int i = 0; i < V; i++) {
        z[i] = (float)(-1.5 * log((double)(i + 1)));
    }
    const double mus[] = {2.0, 5.0, 8.0, 11.0};
    for (size_t j = 0; j < sizeof mus / sizeof mus[0]; j++) {
        double mu = mus[j];
        int64_t tok, kept;
        CHECK(step1(z, V, 1, 100, 3.0, 0.1, 1.0, 0.5, &mu, &tok, NULL, &kept) == FD_OK);
        double k = pow(0.5 * pow(2.0, mus[j]) / (1.0 - pow(V, -0.5)), 1.0 / 1.5);
        CHECK(fabs((double)kept - floor(k)) <= 1.0); /* float32 ramp */
        CHECK(tok < kept);                           /* ranks are ids: the top k are 0..k-1 */
    }
    /* m = 1 (no pair to estimate from) and a row with one finite logit: k = 1, the maximum */
    double mu = 10.0;
    int64_t tok, kept;
    CHECK(step1(z, V, 1, 1, 3.0, 0.1, 1.0, 0.99, &mu, &tok, NULL, &kept) == FD_OK);
    CHECK(tok == 0 && kept == 1);
    float one[3] = {NINF, 2.0f, NINF};
    mu = 10.0;
    CHECK(step1(one, 3, 1, 100, 3.0, 0.1, 1.0, 0.99, &mu, &tok, NULL, &kept) == FD_OK);
    CHECK(tok == 1 && kept == 1);
    CHECK_NEAR(mu, 10.0 + 0.1 * 3.0, 1e-12);
    /* the top m = 3 tied: s_hat = 0; 2^mu > V - 1 keeps everything, else k = 1, which keeps
     * the tied maxima (fd.h's TOP_K rule) */
    float flat[8] = {0, 0, 0, 0, -5, -5, -5, -5};
    mu = 3.0; /* 8 > 7 */
    CHECK(step1(flat, 8, 1, 3, 3.0, 0.1, 1.0, 0.99, &mu, &tok, NULL, &kept) == FD_OK);
    CHECK(kept == 8);
    mu = 2.0;
    CHECK(step1(flat, 8, 1, 3, 3.0, 0.1, 1.0, 0.99, &mu, &tok, NULL, &kept) == FD_OK);
    CHECK(kept == 4 && tok == 3);
}

static void test_greedy_and_validation(void)
{
    float z[4] = {1.0f, 3.0f, 3.0f, 0.0f};
    double mu = 1.0, lp;
    int64_t tok, kept;
    CHECK(step1(z, 4, 2, 100, 2.0, 0.5, 0.0, 0.99, &mu, &tok, &lp, &kept) == FD_OK);
    CHECK(tok == 1 && kept == 1 && lp == 0.0 && mu == 1.0 + 0.5 * 2.0);
    const double bad[][4] = {{0.0, 0.1, 1.0, 5.0},      {-1.0, 0.1, 1.0, 5.0},
                             {1.0, -0.1, 1.0, 5.0},     {1.0, 0.1, -1.0, 5.0},
                             {1.0, 0.1, 1.0, NAN},      {1.0, 0.1, 1.0, INFINITY},
                             {INFINITY, 0.1, 1.0, 5.0}, {1.0, NAN, 1.0, 5.0}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mu = bad[i][3];
        CHECK(step1(z, 4, 2, 100, bad[i][0], bad[i][1], bad[i][2], 0.5, &mu, &tok, NULL, NULL) ==
              FD_EINVAL);
        CHECK(mu == bad[i][3] || (mu != mu && bad[i][3] != bad[i][3])); /* not written */
    }
    mu = 1.0;
    CHECK(step1(z, 4, 3, 100, 1.0, 0.1, 1.0, 0.5, &mu, &tok, NULL, NULL) == FD_EINVAL);
    CHECK(step1(z, 4, 1, 0, 1.0, 0.1, 1.0, 0.5, &mu, &tok, NULL, NULL) == FD_EINVAL);
    CHECK(step1(z, 4, 2, 100, 1.0, 0.1, 1.0, 1.0, &mu, &tok, NULL, NULL) == FD_EINVAL); /* u */
    float ninf[2] = {NINF, NINF};
    CHECK(step1(ninf, 2, 2, 100, 1.0, 0.1, 1.0, 0.5, &mu, &tok, NULL, NULL) == FD_ENOFINITE);
    float nan_[2] = {0.0f, NAN};
    CHECK(step1(nan_, 2, 1, 100, 1.0, 0.1, 1.0, 0.5, &mu, &tok, NULL, NULL) == FD_ENAN);
}

/* Rows of a batch keep their own mu: a 3-row batch over 20 steps equals each row run alone. */
static void test_rows_independent(void)
{
    enum { B = 3, V = 64, S = 20 };
    static float x[B * V];
    uint64_t seeds[B] = {1, 2, 3};
    double tau[B] = {2.0, 3.0, 4.0}, eta[B] = {0.1, 0.3, 0.5};
    for (int version = 1; version <= 2; version++) {
        double mu[B] = {4.0, 6.0, 8.0}, solo[B] = {4.0, 6.0, 8.0};
        int ok = 1;
        for (int s = 0; s < S; s++) {
            for (int i = 0; i < B * V; i++) {
                x[i] = (float)sin(0.37 * i + 1.3 * s) * 3.0f;
            }
            int64_t pos[B] = {s, s, s}, tok[B], t1;
            fd_rows rows = {x, FD_F32, B, V, V};
            fd_mirostat_params p = {{tau, 1}, {eta, 1}, P(&ONE), version, 50};
            fd_rng_args rng = {seeds, 1, pos, 1, NULL, 0};
            fd_errinfo e;
            ok &= fd_mirostat(&rows, &p, &rng, mu, tok, NULL, NULL, wsbuf, &e) == FD_OK;
            for (int b = 0; b < B; b++) {
                fd_rows one = {x + b * V, FD_F32, 1, V, V};
                fd_mirostat_params q = {P(&tau[b]), P(&eta[b]), P(&ONE), version, 50};
                fd_rng_args r1 = {&seeds[b], 0, &pos[b], 0, NULL, 0};
                ok &= fd_mirostat(&one, &q, &r1, &solo[b], &t1, NULL, NULL, wsbuf, &e) == FD_OK;
                ok &= t1 == tok[b] && solo[b] == mu[b];
            }
        }
        CHECK(ok);
        CHECK(mu[0] != mu[1] && mu[1] != mu[2]);
    }
}

static fd_entropix_params entropix_defaults(void)
{
    fd_entropix_params p = {0.666, 27,  0.9, 0.0, 0.1, 0.1, 3.0, 5.0, 5.0, 5.0,  5.0, 1.3, 1.5,
                            1.2,   1.5, 1.5, 5,   2.0, 2.0, 0.0, 0.5, 0.3, 0.03, 0.5, 5,   -1};
    return p;
}

static void test_entropix_branches(void)
{
    enum { V = 5000 };
    static float x[5 * V];
    for (int i = 0; i < 5 * V; i++) {
        x[i] = NINF;
    }
    x[0 * V + 17] = 30.0f; /* spike: H = V = 0 */
    for (int i = 0; i < 16; i++) {
        x[1 * V + 100 + i] = 0.0f; /* uniform over 16: (4, 0) */
    }
    x[2 * V] = x[3 * V] = (float)log(0.5); /* .5 + .5 over 64: (4, 9); over 4096: (7, 36) */
    for (int i = 1; i <= 4096; i++) {
        if (i <= 64) {
            x[2 * V + i] = (float)log(0.5 / 64);
        }
        x[3 * V + i] = (float)log(0.5 / 4096);
    }
    x[4 * V] = (float)log(0.5); /* (.5, .25, .25): (1.5, .25) */
    x[4 * V + 1] = x[4 * V + 2] = (float)log(0.25);
    const double H[5] = {0, 4, 4, 7, 1.5}, VV[5] = {0, 0, 9, 36, 0.25};
    const int64_t br_exp[5] = {FD_ENTROPIX_ARGMAX, FD_ENTROPIX_HELV, FD_ENTROPIX_LEHV,
                               FD_ENTROPIX_HEHV, FD_ENTROPIX_ADAPTIVE};
    fd_entropix_params p = entropix_defaults();
    uint64_t seed = 7;
    int64_t pos = 3, tok[5], br[5];
    double h[5], v[5], lp[5];
    fd_rows rows = {x, FD_F32, 5, V, V};
    fd_rng_args rng = {&seed, 0, &pos, 0, NULL, 0};
    fd_errinfo e;
    CHECK(fd_entropix(&rows, &p, NULL, &rng, tok, br, h, v, lp, wsbuf, &e) == FD_OK);
    for (int r = 0; r < 5; r++) {
        CHECK(br[r] == br_exp[r]);
        CHECK_NEAR(h[r], H[r], 1e-5);
        CHECK_NEAR(v[r], VV[r], 1e-4);
        CHECK(x[r * V + tok[r]] != NINF);
    }
    CHECK(tok[0] == 17 && lp[0] == 0.0);
    /* the clarifying token, unless it was the last one */
    p.clarify_token = 9;
    fd_rows u16 = {x + V, FD_F32, 1, V, V};
    int64_t last = 9;
    CHECK(fd_entropix(&u16, &p, NULL, &rng, tok, br, NULL, NULL, NULL, wsbuf, &e) == FD_OK);
    CHECK(br[0] == FD_ENTROPIX_CLARIFY && tok[0] == 9);
    CHECK(fd_entropix(&u16, &p, &last, &rng, tok, br, NULL, NULL, NULL, wsbuf, &e) == FD_OK);
    CHECK(br[0] == FD_ENTROPIX_HELV && tok[0] >= 100 && tok[0] < 116);
    /* validation: clarify token out of range, explicit uniforms, bad parameters */
    p.clarify_token = V;
    CHECK(fd_entropix(&u16, &p, NULL, &rng, tok, br, NULL, NULL, NULL, wsbuf, &e) == FD_EINVAL);
    p = entropix_defaults();
    double u = 0.5;
    fd_rng_args ru = {NULL, 0, NULL, 0, &u, 0};
    CHECK(fd_entropix(&u16, &p, NULL, &ru, tok, br, NULL, NULL, NULL, wsbuf, &e) == FD_EINVAL);
    p.top_p = 1.5;
    CHECK(fd_entropix(&u16, &p, NULL, &rng, tok, br, NULL, NULL, NULL, wsbuf, &e) == FD_EINVAL);
    p = entropix_defaults();
    p.n_samples = 0;
    CHECK(fd_entropix(&u16, &p, NULL, &rng, tok, br, NULL, NULL, NULL, wsbuf, &e) == FD_EINVAL);
}

int main(void)
{
    CHECK(fd_mirostat_workspace(5000) <= sizeof wsbuf);
    CHECK(fd_entropix_workspace(5000) <= sizeof wsbuf);
    test_v2_table();
    test_v1_k();
    test_greedy_and_validation();
    test_rows_independent();
    test_entropix_branches();
    CHECK_REPORT("test_mirostat");
}
