/* Tests for adaptive.c: llama.cpp's published vectors (tests/test-sampling.cpp: test_temp_ext,
 * test_xtc, test_dry), hand-computed rows for adaptive temperature and dynamic temperature, the
 * validation contract (status, row / index, nothing written for a bad row of the in-place DRY),
 * and the ISA levels giving the same bits. */
#include "check.h"
#include "fastdecode/fd.h"
#include "internal.h"

#include <stdint.h>
#include <string.h>

#define NINF (-INFINITY)

static _Alignas(64) unsigned char ws[1 << 16];

static fd_rows rows_f32(float *x, int64_t n_rows, int64_t n_cols)
{
    fd_rows r = {x, FD_F32, n_rows, n_cols, n_cols};
    return r;
}

static fd_param P(const double *v)
{
    return (fd_param){v, 0};
}

/* probabilities of a row of logits (float64) */
static void probs(const float *z, int n, double *p)
{
    double m = NINF, s = 0;
    for (int i = 0; i < n; i++) {
        m = z[i] > m ? z[i] : m;
    }
    for (int i = 0; i < n; i++) {
        p[i] = z[i] == NINF ? 0.0 : exp((double)z[i] - m);
        s += p[i];
    }
    for (int i = 0; i < n; i++) {
        p[i] /= s;
    }
}

static void log_row(const float *p, int n, float *z)
{
    for (int i = 0; i < n; i++) {
        z[i] = logf(p[i]);
    }
}

static void test_adaptive_temperature(void)
{
    /* uniform over 8: H = ln 8 = 2.0794, beta = poly(H) */
    float x[8] = {0}, out[8];
    fd_rows in = rows_f32(x, 1, 8), o = rows_f32(out, 1, 8);
    double beta = 0;
    fd_errinfo e;
    CHECK(fd_adaptive_temperature(&in, &o, &beta, ws, &e) == FD_OK);
    double h = log(8.0);
    double poly = -0.037 * pow(h, 4) + 0.481 * pow(h, 3) - 2.3 * h * h + 4.917 * h - 1.791;
    CHECK_NEAR(beta, poly, 1e-6);
    CHECK(fd_adaptive_beta(0.5) == 1.0 && fd_adaptive_beta(0.3) == 1.0);
    CHECK_NEAR(fd_adaptive_beta(2.0), -0.037 * 16 + 0.481 * 8 - 2.3 * 4 + 4.917 * 2 - 1.791, 1e-12);
    /* a peaked row (H < 0.5) is copied; a row scaled by beta: z * (float)beta */
    float y[4] = {9.0f, 0.0f, -1.0f, NINF}, oy[4];
    fd_rows iy = rows_f32(y, 1, 4), ooy = rows_f32(oy, 1, 4);
    CHECK(fd_adaptive_temperature(&iy, &ooy, &beta, ws, &e) == FD_OK && beta == 1.0);
    CHECK(memcmp(y, oy, sizeof y) == 0);
    float w[3] = {1.0f, 0.5f, 0.25f}, ow[3];
    fd_rows iw = rows_f32(w, 1, 3), oow = rows_f32(ow, 1, 3);
    CHECK(fd_adaptive_temperature(&iw, &oow, &beta, ws, &e) == FD_OK && beta > 1.0);
    for (int i = 0; i < 3; i++) {
        CHECK(ow[i] == w[i] * (float)beta);
    }
    /* all -inf: ENOFINITE naming the row; NaN: ENAN naming the element */
    float z2[6] = {0.0f, 1.0f, 2.0f, NINF, NINF, NINF};
    fd_rows i2 = rows_f32(z2, 2, 3), o2 = i2;
    CHECK(fd_adaptive_temperature(&i2, &o2, NULL, ws, &e) == FD_ENOFINITE && e.row == 1);
    z2[4] = NAN;
    CHECK(fd_adaptive_temperature(&i2, &o2, NULL, ws, &e) == FD_ENAN && e.row == 1 && e.index == 1);
}

static void test_dynamic_temperature(void)
{
    /* llama.cpp test_temp_ext: (T 1, delta 0) keeps the distribution, (T 0, delta 0) is greedy */
    const float pr[4] = {0.1f, 0.2f, 0.3f, 0.4f};
    float z[4], out[4];
    double p[4];
    log_row(pr, 4, z);
    fd_rows in = rows_f32(z, 1, 4), o = rows_f32(out, 1, 4);
    double one = 1.0, zero = 0.0, t = -1;
    fd_errinfo e;
    CHECK(fd_dynamic_temperature(&in, &o, P(&one), P(&zero), P(&one), &t, ws, &e) == FD_OK);
    probs(out, 4, p);
    for (int i = 0; i < 4; i++) {
        CHECK_NEAR(p[i], pr[i], 1e-5);
    }
    CHECK(fd_dynamic_temperature(&in, &o, P(&zero), P(&zero), P(&one), &t, ws, &e) == FD_OK);
    CHECK(out[0] == NINF && out[1] == NINF && out[2] == NINF && out[3] == z[3]);
    /* two equal candidates and a removed token: H / ln N = 1, T' = T + delta */
    float y[3] = {1.0f, NINF, 1.0f}, oy[3];
    fd_rows iy = rows_f32(y, 1, 3), ooy = rows_f32(oy, 1, 3);
    double T = 0.7, d = 0.3, ex = 2.0;
    CHECK(fd_dynamic_temperature(&iy, &ooy, P(&T), P(&d), P(&ex), &t, ws, &e) == FD_OK);
    CHECK_NEAR(t, 1.0, 1e-6);
    CHECK(oy[1] == NINF && oy[0] == 1.0f / (float)t);
    /* one candidate with delta > 0: unchanged, T' NaN */
    float s1[3] = {NINF, 2.0f, NINF}, os1[3];
    fd_rows is1 = rows_f32(s1, 1, 3), oos1 = rows_f32(os1, 1, 3);
    CHECK(fd_dynamic_temperature(&is1, &oos1, P(&T), P(&d), P(&ex), &t, ws, &e) == FD_OK);
    CHECK(t != t && memcmp(s1, os1, sizeof s1) == 0);
    /* domain: negative delta, infinite exponent */
    double neg = -0.1, inf = INFINITY;
    CHECK(fd_dynamic_temperature(&in, &o, P(&one), P(&neg), P(&one), NULL, ws, &e) == FD_EINVAL &&
          e.row == 0);
    CHECK(fd_dynamic_temperature(&in, &o, P(&one), P(&one), P(&inf), NULL, ws, &e) == FD_EINVAL);
}

static void test_xtc(void)
{
    /* llama.cpp test_xtc on {0.4, 0.3, 0.2, 0.1} with probability 0.99 */
    const float pr[4] = {0.4f, 0.3f, 0.2f, 0.1f};
    const double thr[4] = {0.09, 0.19, 0.29, 0.39};
    const int kept_from[4] = {3, 2, 1, 0};
    float z[4], out[4];
    log_row(pr, 4, z);
    fd_rows in = rows_f32(z, 1, 4), o = rows_f32(out, 1, 4);
    double prob = 0.99, mk = 1.0, u = 0.5;
    fd_rng_args rng = {0};
    rng.uniform = &u;
    fd_errinfo e;
    for (int k = 0; k < 4; k++) {
        CHECK(fd_xtc(&in, &o, P(&prob), P(&thr[k]), P(&mk), &rng, NINF, ws, &e) == FD_OK);
        for (int i = 0; i < 4; i++) {
            CHECK(i < kept_from[k] ? out[i] == NINF : out[i] == z[i]);
        }
    }
    /* the coin says skip: u > probability */
    u = 0.995;
    CHECK(fd_xtc(&in, &o, P(&prob), P(&thr[0]), P(&mk), &rng, NINF, ws, &e) == FD_OK);
    CHECK(memcmp(out, z, sizeof z) == 0);
    /* min_keep 2 forbids leaving one token */
    u = 0.0;
    double mk2 = 2.0;
    CHECK(fd_xtc(&in, &o, P(&prob), P(&thr[0]), P(&mk2), &rng, NINF, ws, &e) == FD_OK);
    CHECK(memcmp(out, z, sizeof z) == 0);
    /* the seeded coin is fd_uniform(seed, position, FD_DRAW_XTC) */
    uint64_t seed = 1234;
    int64_t pos = 9;
    fd_rng_args sr = {&seed, 0, &pos, 0, NULL, 0};
    double uu = fd_uniform(seed, (uint64_t)pos, FD_DRAW_XTC), half = 0.5;
    CHECK(fd_xtc(&in, &o, P(&half), P(&thr[0]), P(&mk), &sr, NINF, ws, &e) == FD_OK);
    CHECK((out[0] == NINF) == (uu <= 0.5));
    CHECK(uu != fd_uniform(seed, (uint64_t)pos, 0));
    /* domain and rng errors */
    double bad = 1.5, bu = 1.0;
    CHECK(fd_xtc(&in, &o, P(&bad), P(&thr[0]), P(&mk), &rng, NINF, ws, &e) == FD_EINVAL);
    rng.uniform = &bu;
    CHECK(fd_xtc(&in, &o, P(&prob), P(&thr[0]), P(&mk), &rng, NINF, ws, &e) == FD_EINVAL);
    fd_rng_args none = {0};
    CHECK(fd_xtc(&in, &o, P(&prob), P(&thr[0]), P(&mk), &none, NINF, ws, &e) == FD_EINVAL);
}

/* llama.cpp test_dry: probabilities after the penalty */
typedef struct {
    int n;
    float p[5];
    int hl;
    int64_t h[8];
    float expect[5];
    double mult, base, allowed, last_n;
    int nb;
    int64_t flat[2], off[3];
} dry_case;

static const dry_case DRY[] = {
    {4, {0.25f, 0.25f, 0.25f, 0.25f}, 2, {0, 1}, {0.25f, 0.25f, 0.25f, 0.25f}, 1.0, 1.1, 2, 4, 0,
     {0}, {0}},
    {4, {0.25f, 0.25f, 0.25f, 0.25f}, 5, {0, 1, 2, 0, 1},
     {0.296923f, 0.296923f, 0.109232f, 0.296923f}, 1.0, 1.1, 2, 5, 0, {0}, {0}},
    {5, {0.2f, 0.2f, 0.2f, 0.2f, 0.2f}, 6, {0, 1, 3, 4, 0, 1}, {0.2f, 0.2f, 0.2f, 0.2f, 0.2f}, 1.0,
     1.1, 2, 6, 1, {3}, {0, 1}},
    {5, {0.2f, 0.2f, 0.2f, 0.2f, 0.2f}, 5, {0, 1, 2, 0, 1},
     {0.241818f, 0.241818f, 0.032727f, 0.241818f, 0.241818f}, 2.0, 1.1, 2, 5, 0, {0}, {0}},
    {5, {0.2f, 0.2f, 0.2f, 0.2f, 0.2f}, 7, {0, 1, 2, 3, 4, 0, 1}, {0.2f, 0.2f, 0.2f, 0.2f, 0.2f},
     1.0, 1.1, 4, 7, 0, {0}, {0}},
};

static void test_dry(void)
{
    for (size_t k = 0; k < sizeof DRY / sizeof DRY[0]; k++) {
        const dry_case *c = &DRY[k];
        float z[5];
        double p[5];
        log_row(c->p, c->n, z);
        fd_rows x = rows_f32(z, 1, c->n);
        fd_ids ids = {c->h, 1, c->hl, c->hl, NULL, NULL};
        fd_errinfo e;
        CHECK(fd_dry(&x, &ids, P(&c->mult), P(&c->base), P(&c->allowed), P(&c->last_n), c->flat,
                     c->off, c->nb, ws, &e) == FD_OK);
        probs(z, c->n, p);
        for (int i = 0; i < c->n; i++) {
            CHECK_NEAR(p[i], c->expect[i], 1e-5);
        }
    }
    /* llama.cpp's comment: "a b c c b c y a b c" -> c +1 (len 3), b (len 1), y (len 2) */
    int64_t h[10] = {0, 1, 2, 2, 1, 2, 3, 0, 1, 2};
    float z[6] = {0};
    fd_rows x = rows_f32(z, 1, 6);
    fd_ids ids = {h, 1, 10, 10, NULL, NULL};
    double one = 1.0, two = 2.0, all = -1.0;
    fd_errinfo e;
    CHECK(fd_dry(&x, &ids, P(&one), P(&two), P(&one), P(&all), NULL, NULL, 0, ws, &e) == FD_OK);
    CHECK(z[0] == 0 && z[1] == -1.0f && z[2] == -4.0f && z[3] == -2.0f && z[4] == 0 && z[5] == 0);
    /* errors: a history id out of range (row, position), a breaker id (row -1, flat position),
     * nothing written */
    float y[4] = {1, 2, 3, 4};
    fd_rows xy = rows_f32(y, 1, 4);
    int64_t hb[3] = {0, 7, 1};
    fd_ids idb = {hb, 1, 3, 3, NULL, NULL};
    CHECK(fd_dry(&xy, &idb, P(&one), P(&two), P(&one), P(&all), NULL, NULL, 0, ws, &e) ==
              FD_ERANGE &&
          e.row == 0 && e.index == 1);
    int64_t fl[2] = {1, 9}, of[3] = {0, 1, 2};
    fd_ids idg = {hb, 1, 1, 3, NULL, NULL};
    CHECK(fd_dry(&xy, &idg, P(&one), P(&two), P(&one), P(&all), fl, of, 2, ws, &e) == FD_ERANGE &&
          e.row == -1 && e.index == 1);
    double half = 0.5, frac = 1.5;
    CHECK(fd_dry(&xy, &idg, P(&one), P(&half), P(&one), P(&all), NULL, NULL, 0, ws, &e) ==
          FD_EINVAL);
    CHECK(fd_dry(&xy, &idg, P(&one), P(&two), P(&frac), P(&all), NULL, NULL, 0, ws, &e) ==
          FD_EINVAL);
    CHECK(y[0] == 1 && y[1] == 2 && y[2] == 3 && y[3] == 4);
    CHECK(fd_dry_workspace(4, 3, 2) <= sizeof ws);
}

/* every ISA level gives the same bits */
static void test_isa_levels(void)
{
    enum { V = 300 };
    static float x[2 * V], ref_out[2 * V], out[2 * V];
    uint32_t s = 12345;
    for (int i = 0; i < 2 * V; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)((int)(s >> 8) % 2000) / 300.0f;
    }
    fd_rows in = rows_f32(x, 2, V), o = rows_f32(out, 2, V), r = rows_f32(ref_out, 2, V);
    double t = 0.8, d = 0.5, ex = 1.3, u = 0.1, prob = 1.0, th = 0.004, mk = 1.0;
    fd_rng_args rng = {0};
    rng.uniform = &u;
    fd_errinfo e;
    for (int k = 0; k < 3; k++) {
        fdi_set_isa(FDI_ISA_PORTABLE);
        fd_status st0 = k == 0   ? fd_adaptive_temperature(&in, &r, NULL, ws, &e)
                        : k == 1 ? fd_dynamic_temperature(&in, &r, P(&t), P(&d), P(&ex), NULL, ws, &e)
                                 : fd_xtc(&in, &r, P(&prob), P(&th), P(&mk), &rng, NINF, ws, &e);
        CHECK(st0 == FD_OK);
        for (int level = FDI_ISA_AVX2; level <= FDI_ISA_AVX512; level++) {
            fdi_set_isa(level);
            fd_status st = k == 0 ? fd_adaptive_temperature(&in, &o, NULL, ws, &e)
                           : k == 1
                               ? fd_dynamic_temperature(&in, &o, P(&t), P(&d), P(&ex), NULL, ws, &e)
                               : fd_xtc(&in, &o, P(&prob), P(&th), P(&mk), &rng, NINF, ws, &e);
            CHECK(st == FD_OK && memcmp(out, ref_out, sizeof out) == 0);
        }
    }
    fdi_set_isa(-1);
}

int main(void)
{
    test_adaptive_temperature();
    test_dynamic_temperature();
    test_xtc();
    test_dry();
    test_isa_levels();
    CHECK_REPORT("test_adaptive");
}
