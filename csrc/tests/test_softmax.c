/* Tests for softmax.c: hand-computed softmax / log-softmax with temperature, temperature 0,
 * -inf entries, storage dtypes and strides, entropy and varentropy, argmax (ties, chunk
 * boundaries, errors), and a large random row against a double-precision reference. */
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
    return aligned_alloc(64, n ? n : 64);
}

static fd_param scalar(const double *v) { return (fd_param){v, 0}; }

typedef struct {
    int n;
    float x[6];
    double t;
    int log;
    double expected[6];
} scase;

static void test_softmax_table(void)
{
    static const scase cases[] = {
        {3, {1, 2, 3}, 1.0, 0, {0.0900305732, 0.2447284711, 0.6652409558}},
        {3, {1, 2, 3}, 2.0, 0, {0.1863237232, 0.3071958894, 0.5064803874}},
        {3, {1, 2, 3}, 0.5, 0, {0.0158762400, 0.1173104278, 0.8668133322}},
        {3, {1, 2, 3}, 1.0, 1, {-2.4076059645, -1.4076059645, -0.4076059645}},
        {4, {NINF, 0, 0, NINF}, 1.0, 0, {0, 0.5, 0.5, 0}},
        {4, {NINF, 0, 0, NINF}, 1.0, 1, {NINF, -0.6931471806, -0.6931471806, NINF}},
        {4, {1, 3, 3, 2}, 0.0, 0, {0, 1, 0, 0}}, /* T = 0: one-hot at the first maximum */
        {4, {1, 3, 3, 2}, 0.0, 1, {NINF, 0, NINF, NINF}},
        {2, {1000, -1000}, 1.0, 0, {1, 0}},
        {2, {1000, 999}, 1e-30, 0, {1, 0}}, /* tiny temperature: no overflow */
    };
    size_t nc = sizeof cases / sizeof cases[0];
    void *ws = ws_alloc(fd_softmax_workspace(8));
    for (size_t c = 0; c < nc; c++) {
        const scase *t = &cases[c];
        float o32[6];
        double o64[6];
        fd_rows in = {(void *)t->x, FD_F32, 1, t->n, t->n};
        fd_rows out32 = {o32, FD_F32, 1, t->n, t->n}, out64 = {o64, FD_F64, 1, t->n, t->n};
        CHECK(fd_softmax(&in, &out32, scalar(&t->t), t->log, ws, NULL) == FD_OK);
        CHECK(fd_softmax(&in, &out64, scalar(&t->t), t->log, ws, NULL) == FD_OK);
        for (int i = 0; i < t->n; i++) {
            CHECK_NEAR(o32[i], t->expected[i], 2e-7 * (1 + fabs(t->expected[i])));
            CHECK_NEAR(o64[i], t->expected[i], 2e-7 * (1 + fabs(t->expected[i])));
        }
    }
    /* errors */
    float allinf[3] = {NINF, NINF, NINF}, o[3];
    fd_rows in = {allinf, FD_F32, 1, 3, 3}, out = {o, FD_F32, 1, 3, 3};
    fd_errinfo err = {-1, -1};
    double one = 1.0, zero = 0.0, neg = -1.0;
    CHECK(fd_softmax(&in, &out, scalar(&one), 0, ws, &err) == FD_ENOFINITE && err.row == 0);
    CHECK(fd_softmax(&in, &out, scalar(&zero), 1, ws, &err) == FD_ENOFINITE && err.row == 0);
    float bad[2 * 3] = {0, 1, 2, 0, NAN, 2};
    fd_rows bin = {bad, FD_F32, 2, 3, 3};
    float bo[6];
    fd_rows bout = {bo, FD_F32, 2, 3, 3};
    CHECK(fd_softmax(&bin, &bout, scalar(&one), 0, ws, &err) == FD_ENAN);
    CHECK(err.row == 1 && err.index == 1);
    bad[4] = INFINITY;
    CHECK(fd_softmax(&bin, &bout, scalar(&one), 0, ws, &err) == FD_EPOSINF);
    CHECK(err.row == 1 && err.index == 1);
    bad[4] = 1;
    double temps[2] = {1.0, -1.0};
    fd_param tp = {temps, 1};
    CHECK(fd_softmax(&bin, &bout, tp, 0, ws, &err) == FD_EINVAL && err.row == 1);
    CHECK(fd_softmax(&bin, &bout, scalar(&neg), 0, ws, &err) == FD_EINVAL && err.row == 0);
    fd_rows f16out = {bo, FD_F16, 2, 3, 3};
    CHECK(fd_softmax(&bin, &f16out, scalar(&one), 0, ws, &err) == FD_EINVAL);
    fd_rows wrong = {bo, FD_F32, 2, 2, 3};
    CHECK(fd_softmax(&bin, &wrong, scalar(&one), 0, ws, &err) == FD_ESHAPE);
    free(ws);
}

static void test_softmax_layout(void)
{
    /* float16 / bfloat16 / float64 input, strided rows, per-row temperature, out aliasing in */
    uint16_t h[2 * 5], b[2 * 5];
    double d[2 * 5];
    const float src[2][3] = {{1, 2, 3}, {0, 0, NINF}};
    for (int r = 0; r < 2; r++) {
        for (int c = 0; c < 3; c++) {
            h[5 * r + c] = fd_float_to_half(src[r][c]);
            b[5 * r + c] = fd_float_to_bf16(src[r][c]);
            d[5 * r + c] = src[r][c];
        }
        h[5 * r + 3] = h[5 * r + 4] = 0x7e00; /* NaN padding must never be read */
        b[5 * r + 3] = b[5 * r + 4] = 0x7fc0;
        d[5 * r + 3] = d[5 * r + 4] = NAN;
    }
    double temps[2] = {2.0, 1.0};
    fd_param tp = {temps, 1};
    const double expect[2][3] = {{0.1863237232, 0.3071958894, 0.5064803874}, {0.5, 0.5, 0}};
    void *ws = ws_alloc(fd_softmax_workspace(3));
    fd_rows ins[3] = {{h, FD_F16, 2, 3, 5}, {b, FD_BF16, 2, 3, 5}, {d, FD_F64, 2, 3, 5}};
    for (int k = 0; k < 3; k++) {
        double o[2 * 4];
        for (int i = 0; i < 8; i++) {
            o[i] = 7.0;
        }
        fd_rows out = {o, FD_F64, 2, 3, 4};
        CHECK(fd_softmax(&ins[k], &out, tp, 0, ws, NULL) == FD_OK);
        for (int r = 0; r < 2; r++) {
            for (int c = 0; c < 3; c++) {
                CHECK_NEAR(o[4 * r + c], expect[r][c], 1e-7);
            }
            CHECK(o[4 * r + 3] == 7.0);
        }
    }
    /* in place: float64 in, float64 out, same buffer */
    fd_rows inout = {d, FD_F64, 2, 3, 5};
    CHECK(fd_softmax(&inout, &inout, tp, 1, ws, NULL) == FD_OK);
    CHECK_NEAR(d[2], log(0.5064803874), 1e-7);
    CHECK(d[7] == NINF && isnan(d[8]));
    free(ws);
}

static void test_entropy(void)
{
    void *ws = ws_alloc(fd_softmax_workspace(6));
    /* uniform over 4: H = ln 4, varentropy 0; {.5,.25,.25}: H = 1.5 ln 2, V = (ln 2)^2 / 4;
     * -inf entries contribute nothing; a one-hot: H = 0 */
    float x[4 * 5] = {0, 0, 0, 0, NINF, (float)log(0.5), (float)log(0.25), (float)log(0.25), NINF,
                      NINF, 3, NINF, NINF, NINF, NINF, 1, 2, 3, 4, 5};
    fd_rows in = {x, FD_F32, 4, 5, 5};
    double h[4], v[4];
    CHECK(fd_entropy(&in, h, v, ws, NULL) == FD_OK);
    double l2 = log(2.0);
    CHECK_NEAR(h[0], log(4.0), 1e-7);
    CHECK_NEAR(v[0], 0.0, 1e-7);
    CHECK_NEAR(h[1], 1.5 * l2, 1e-7);
    CHECK_NEAR(v[1], 0.25 * l2 * l2, 1e-7);
    CHECK(h[2] == 0.0 && v[2] == 0.0);
    /* {1..5}: against a direct double computation */
    double z = 0, hh = 0, vv = 0;
    for (int i = 1; i <= 5; i++) {
        z += exp(i);
    }
    for (int i = 1; i <= 5; i++) {
        double lp = i - log(z);
        hh -= exp(lp) * lp;
    }
    for (int i = 1; i <= 5; i++) {
        double lp = i - log(z);
        vv += exp(lp) * (lp + hh) * (lp + hh);
    }
    CHECK_NEAR(h[3], hh, 1e-6);
    CHECK_NEAR(v[3], vv, 1e-6);
    double h2[4];
    CHECK(fd_entropy(&in, h2, NULL, ws, NULL) == FD_OK);
    CHECK(memcmp(h, h2, sizeof h) == 0);
    CHECK(fd_entropy(&in, NULL, NULL, ws, NULL) == FD_OK);
    fd_errinfo err = {-1, -1};
    x[10] = NINF; /* row 2 all -inf */
    CHECK(fd_entropy(&in, h, v, ws, &err) == FD_ENOFINITE && err.row == 2);
    x[12] = NAN;
    CHECK(fd_entropy(&in, h, v, ws, &err) == FD_ENAN && err.row == 2 && err.index == 2);
    free(ws);
}

static void test_argmax(void)
{
    float x[3 * 4] = {1, 3, 3, 2, NINF, -5, NINF, -5, -0.0f, 0.0f, -1, -1};
    fd_rows in = {x, FD_F32, 3, 4, 4};
    int64_t out[3];
    CHECK(fd_argmax(&in, out, NULL) == FD_OK);
    CHECK(out[0] == 1 && out[1] == 1 && out[2] == 0);
    /* long rows across the 512-element chunks, float16 and strided */
    enum { N = 1300, S = 1310 };
    static uint16_t hrow[2 * S];
    for (int r = 0; r < 2; r++) {
        for (int i = 0; i < N; i++) {
            hrow[S * r + i] = fd_float_to_half((float)(i % 97) * 0.01f);
        }
        hrow[S * r + N] = fd_float_to_half(100.0f); /* padding: beyond n_cols */
    }
    hrow[700] = fd_float_to_half(5.0f);
    hrow[1100] = fd_float_to_half(5.0f);
    hrow[S + 1299] = fd_float_to_half(5.0f);
    fd_rows hin = {hrow, FD_F16, 2, N, S};
    int64_t ho[2];
    CHECK(fd_argmax(&hin, ho, NULL) == FD_OK);
    CHECK(ho[0] == 700 && ho[1] == 1299);
    fd_errinfo err = {-1, -1};
    hrow[S + 1030] = 0x7e00; /* NaN in the third chunk of row 1 */
    CHECK(fd_argmax(&hin, ho, &err) == FD_ENAN && err.row == 1 && err.index == 1030);
    hrow[S + 1030] = 0x7c00; /* +inf */
    CHECK(fd_argmax(&hin, ho, &err) == FD_EPOSINF && err.row == 1 && err.index == 1030);
    float ninf[2] = {NINF, NINF};
    fd_rows ni = {ninf, FD_F32, 1, 2, 2};
    CHECK(fd_argmax(&ni, out, &err) == FD_ENOFINITE && err.row == 0);
    double dx[3] = {1.0, 1.0 + 1e-12, 0.5}; /* float64 decided in float32: a tie, first wins */
    fd_rows di = {dx, FD_F64, 1, 3, 3};
    CHECK(fd_argmax(&di, out, NULL) == FD_OK && out[0] == 0);
}

static uint64_t rng_state = 0x1234567887654321ull;
static double unif(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}

static void test_random(void)
{
    enum { N = 50000 };
    float *x = malloc(sizeof(float) * N), *o = malloc(sizeof(float) * N);
    double *ol = malloc(sizeof(double) * N);
    void *ws = ws_alloc(fd_softmax_workspace(N));
    for (int i = 0; i < N; i++) {
        x[i] = unif() < 0.1 ? NINF : (float)(20.0 * unif() - 10.0);
    }
    double t = 0.7;
    fd_rows in = {x, FD_F32, 1, N, N}, out = {o, FD_F32, 1, N, N}, outl = {ol, FD_F64, 1, N, N};
    CHECK(fd_softmax(&in, &out, scalar(&t), 0, ws, NULL) == FD_OK);
    CHECK(fd_softmax(&in, &outl, scalar(&t), 1, ws, NULL) == FD_OK);
    double m = -INFINITY, z = 0.0, sum = 0.0, maxrel = 0.0, maxabs = 0.0;
    for (int i = 0; i < N; i++) {
        m = x[i] > m ? x[i] : m;
    }
    for (int i = 0; i < N; i++) {
        z += exp(((double)x[i] - m) / t);
    }
    for (int i = 0; i < N; i++) {
        double ref = exp(((double)x[i] - m) / t) / z;
        sum += o[i];
        if (ref > 0) {
            double rel = fabs(o[i] - ref) / ref;
            maxrel = rel > maxrel ? rel : maxrel;
            double la = fabs(ol[i] - log(ref));
            maxabs = la > maxabs ? la : maxabs;
        }
        else {
            CHECK(o[i] == 0.0f && ol[i] == NINF);
        }
    }
    CHECK_NEAR(sum, 1.0, 1e-5);
    CHECK(maxrel < 2e-5);
    CHECK(maxabs < 2e-5);
    /* determinism: a second call gives the same bits */
    float *o2 = malloc(sizeof(float) * N);
    fd_rows out2 = {o2, FD_F32, 1, N, N};
    CHECK(fd_softmax(&in, &out2, scalar(&t), 0, ws, NULL) == FD_OK);
    CHECK(memcmp(o, o2, sizeof(float) * N) == 0);
    free(o2);
    free(x);
    free(o);
    free(ol);
    free(ws);
}

/* select.c's vectorisable exp: within 2 ulp of the double exp on [-87, 0], 0 below -87.3 */
void fdi_exp(const float *x, int64_t n, float shift, float *out);

static void test_exp(void)
{
    enum { N = 200001 };
    float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++) {
        x[i] = -87.0f * (float)i / (float)(N - 1);
    }
    fdi_exp(x, N, 0.0f, y);
    double worst = 0.0;
    for (int i = 0; i < N; i++) {
        double ref = exp((double)x[i]);
        double ulp = ldexp(1.0, ilogb(ref) - 23);
        double e = fabs((double)y[i] - ref) / ulp;
        worst = e > worst ? e : worst;
    }
    CHECK(worst <= 2.0);
    float sp[4] = {NINF, -100.0f, 0.0f, -88.0f}, so[4];
    fdi_exp(sp, 4, 0.0f, so);
    CHECK(so[0] == 0.0f && so[1] == 0.0f && so[2] == 1.0f && so[3] == 0.0f);
    fdi_exp(sp + 2, 1, 1.0f, so); /* shift */
    CHECK_NEAR(so[0], exp(-1.0), 1e-7);
    free(x);
    free(y);
}

int main(void)
{
    test_exp();
    test_softmax_table();
    test_softmax_layout();
    test_entropy();
    test_argmax();
    test_random();
    CHECK_REPORT("test_softmax");
}
