/* Tests for isa.c (every ISA copy of the row kernels gives the portable copy's bits, and
 * FASTDECODE_ISA selects a copy) and for the block-max top-k filter of select.c (the same kept
 * list as the radix select on the whole row: random, tied, zero and -inf rows, k from 1 to past
 * V, with and without a temperature divisor), and the public kernels built on them (softmax,
 * argmax, top-k, sample) agreeing bitwise across ISA levels. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "fastdecode/fd.h"
#include "internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rs = 88172645463325252ull;
static uint64_t rnd(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}
static double unif(void) { return (double)(rnd() >> 11) * 0x1p-53; }
static double normal(void)
{
    double u = unif() + 1e-300, v = unif();
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static void *ws_alloc(size_t bytes)
{
    size_t n = (bytes + 63) / 64 * 64 + 64;
    void *p = aligned_alloc(64, n);
    memset(p, 0xA5, n);
    return p;
}

/* kinds: normal, Zipf-like, heavy ties (rounded), half -inf, a few finite, signed zeros */
static void fill_row(float *x, int64_t n, int kind)
{
    for (int64_t i = 0; i < n; i++) {
        double z = normal();
        switch (kind) {
        case 0:
            x[i] = (float)z;
            break;
        case 1:
            x[i] = (float)(-3.3 * log((double)(rnd() % (uint64_t)(n + 1)) + 1.0) + 0.5 * z);
            break;
        case 2:
            x[i] = (float)floor(2.0 * z);
            break;
        case 3:
            x[i] = unif() < 0.5 ? -INFINITY : (float)z;
            break;
        case 4:
            x[i] = unif() < 0.01 ? (float)(3 * z) : -INFINITY;
            break;
        default:
            x[i] = unif() < 0.5 ? (float)(10 * z) : (z < 0 ? -0.0f : 0.0f);
            break;
        }
    }
}

static int same_bits(const void *a, const void *b, size_t n) { return memcmp(a, b, n) == 0; }

static void test_env(void)
{
    /* first use in this process: the variable decides */
    setenv("FASTDECODE_ISA", "portable", 1);
    CHECK(fdi_isa() == FDI_ISA_PORTABLE);
    CHECK(strcmp(fdi_ops()->name, "portable") == 0);
    CHECK(fdi_set_isa(-1) >= FDI_ISA_PORTABLE);
    CHECK(fdi_set_isa(99) == fdi_set_isa(-1)); /* above the CPU: the best it has */
}

/* every copy of every kernel against the portable copy, on lengths around the vector widths */
static void test_kernels(void)
{
    int best = fdi_set_isa(-1);
    const int64_t lens[] = {0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 127, 128, 200, 1000, 4097, 128256};
    const int64_t nl = (int64_t)(sizeof lens / sizeof lens[0]);
    int64_t N = 128256;
    float *x = malloc((size_t)N * 4), *a = malloc((size_t)N * 4), *b = malloc((size_t)N * 4);
    float *bma = malloc((size_t)N * 4), *bmb = malloc((size_t)N * 4);
    for (int rep = 0; rep < 3; rep++) {
        for (int64_t li = 0; li < nl; li++) {
            int64_t n = lens[li];
            for (int kind = 0; kind < 6; kind++) {
                fill_row(x, n, kind);
                fdi_set_isa(FDI_ISA_PORTABLE);
                const fdi_isa_ops *P = fdi_ops();
                int bad_p = P->block_max(x, n, bma);
                float m = fdi_max(x, n);
                float shift = m == -INFINITY ? 0.0f : m;
                double zp = P->exp_sum(x, n, shift, a);
                double zp2 = P->exp_sum(x, n, shift, NULL);
                CHECK(zp == zp2);
                for (int level = FDI_ISA_AVX2; level <= best; level++) {
                    fdi_set_isa(level);
                    const fdi_isa_ops *O = fdi_ops();
                    int64_t nb = fdi_n_blocks(n);
                    CHECK(O->block_max(x, n, bmb) == bad_p);
                    CHECK(same_bits(bma, bmb, (size_t)nb * 4));
                    CHECK(fdi_max(x, n) == m);
                    memset(b, 0, (size_t)n * 4);
                    double z = O->exp_sum(x, n, shift, b);
                    CHECK(same_bits(&z, &zp, sizeof z));
                    CHECK(same_bits(a, b, (size_t)n * 4));
                    z = O->exp_sum(x, n, shift, NULL);
                    CHECK(same_bits(&z, &zp, sizeof z));
                    O->exp(x, n, shift, b);
                    CHECK(same_bits(a, b, (size_t)n * 4));
                    /* normalisation by z >= 1, and temperatures from tiny to huge */
                    double zs[] = {zp > 1.0 ? zp : 1.0, 1.0, 3.0, 1e5 * unif() + 1.0, 0x1p-1020};
                    for (int zi = 0; zi < 5; zi++) {
                        fdi_set_isa(FDI_ISA_PORTABLE);
                        fdi_ops()->div_f32(a, n, zs[zi], bma);
                        fdi_ops()->shift_div(x, n, shift, zs[zi] * 0.37, bmb);
                        fdi_set_isa(level);
                        float *c = malloc((size_t)(n ? n : 1) * 4);
                        O->div_f32(a, n, zs[zi], c);
                        CHECK(same_bits(c, bma, (size_t)n * 4));
                        O->shift_div(x, n, shift, zs[zi] * 0.37, c);
                        CHECK(same_bits(c, bmb, (size_t)n * 4));
                        free(c);
                    }
                    fdi_set_isa(FDI_ISA_PORTABLE);
                    P->block_max(x, n, bma);
                }
            }
        }
    }
    /* NaN / +inf anywhere, in every copy */
    for (int level = FDI_ISA_PORTABLE; level <= best; level++) {
        fdi_set_isa(level);
        for (int64_t n = 1; n < 300; n += 7) {
            fill_row(x, n, 0);
            int64_t at = (int64_t)(rnd() % (uint64_t)n);
            x[at] = (n & 1) ? NAN : INFINITY;
            CHECK(fdi_ops()->block_max(x, n, bma) != 0);
            float mm;
            int64_t am;
            CHECK(fdi_argmax_check(x, n, &mm, &am) != 0);
            x[at] = -INFINITY;
            CHECK(fdi_ops()->block_max(x, n, bma) == 0);
        }
    }
    /* midpoint cases of the reciprocal trick: e / z exactly between two floats */
    for (int level = FDI_ISA_PORTABLE; level <= best; level++) {
        for (int i = 0; i < 4096; i++) {
            float lo = (float)unif();
            float hi = nextafterf(lo, 2.0f);
            double mid = ((double)lo + (double)hi) / 2; /* exact */
            double z = 1.0 + (double)(rnd() % 1000);
            a[i] = (float)(mid * z); /* e / z is near the midpoint of [lo, hi] */
        }
        for (int i = 0; i < 40; i++) {
            double z = 1.0 + (double)(rnd() % 1000);
            fdi_set_isa(FDI_ISA_PORTABLE);
            fdi_ops()->div_f32(a, 4096, z, bma);
            fdi_set_isa(level);
            fdi_ops()->div_f32(a, 4096, z, bmb);
            CHECK(same_bits(bma, bmb, 4096 * 4));
        }
    }
    fdi_set_isa(-1);
    free(x);
    free(a);
    free(b);
    free(bma);
    free(bmb);
}

/* the compare-and-select kernels of the dense filters: every copy gives the portable bits, and
 * dot_shift_pos is fdi_dot_pos of the float differences */
static void test_select_kernels(void)
{
    int best = fdi_set_isa(-1);
    const int64_t lens[] = {0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 1000, 4097, 128256};
    const int64_t nl = (int64_t)(sizeof lens / sizeof lens[0]);
    int64_t N = 128256;
    float *x = malloc((size_t)N * 4), *w = malloc((size_t)N * 4), *d = malloc((size_t)N * 4);
    uint32_t *o0 = malloc((size_t)N * 4), *o1 = malloc((size_t)N * 4);
    for (int64_t li = 0; li < nl; li++) {
        int64_t n = lens[li];
        for (int kind = 0; kind < 6; kind++) {
            fill_row(x, n, kind);
            float m = fdi_max(x, n);
            float shift = m == -INFINITY ? 0.0f : m;
            fdi_exp(x, n, shift, w);
            for (int64_t i = 0; i < n; i++) {
                d[i] = x[i] - shift;
            }
            float t = n ? x[rnd() % (uint64_t)n] : 0.0f;
            fdi_keep k = {x, t, 0, (int32_t)(n / 3), (int32_t)(2 * n / 3), w, 0.25f};
            if (kind % 2) { /* the ascending form, and no second term */
                k.neg = 0x80000000u;
                k.t = -t;
                k.tb = NAN;
            }
            fdi_set_isa(FDI_ISA_PORTABLE);
            const fdi_isa_ops *P = fdi_ops();
            memset(o0, 0, (size_t)n * 4);
            P->keep_f32(&k, (const uint32_t *)x, o0, n, 0xdeadbeefu);
            for (int64_t c = 0; c < n; c++) { /* against the rule itself */
                uint32_t xb;
                memcpy(&xb, &x[c], 4);
                CHECK(o0[c] == (fdi_keep_at(&k, c) ? xb : 0xdeadbeefu));
            }
            int64_t ci = P->count_in(x, n, t - 0.5f, t + 0.5f);
            double s0, a0, q0;
            int64_t c0;
            P->moments(x, n, &s0, &a0, &c0);
            q0 = P->sq_dev(x, n, 0.125);
            double dp = P->dot_shift_pos(w, x, n, shift);
            double dr = fdi_dot_pos(w, d, n);
            CHECK(same_bits(&dp, &dr, sizeof dp));
            int64_t fin = 0;
            for (int64_t i = 0; i < n; i++) {
                fin += x[i] != -INFINITY;
            }
            CHECK(c0 == fin);
            for (int level = FDI_ISA_AVX2; level <= best; level++) {
                fdi_set_isa(level);
                const fdi_isa_ops *O = fdi_ops();
                memset(o1, 0, (size_t)n * 4);
                O->keep_f32(&k, (const uint32_t *)x, o1, n, 0xdeadbeefu);
                CHECK(same_bits(o0, o1, (size_t)n * 4));
                memcpy(o1, x, (size_t)n * 4); /* in place */
                O->keep_f32(&k, o1, o1, n, 0xdeadbeefu);
                CHECK(same_bits(o0, o1, (size_t)n * 4));
                CHECK(O->count_in(x, n, t - 0.5f, t + 0.5f) == ci);
                double s1, a1, q1;
                int64_t c1;
                O->moments(x, n, &s1, &a1, &c1);
                q1 = O->sq_dev(x, n, 0.125);
                CHECK(same_bits(&s0, &s1, 8) && same_bits(&a0, &a1, 8) && c0 == c1);
                CHECK(same_bits(&q0, &q1, 8));
                double dq = O->dot_shift_pos(w, x, n, shift);
                CHECK(same_bits(&dq, &dr, sizeof dq));
            }
        }
    }
    fdi_set_isa(-1);
    free(x);
    free(w);
    free(d);
    free(o0);
    free(o1);
}

/* every dense filter gives the same bits on every ISA level (in place and not, min_keep 1 / 5) */
/* the linear-bin pass and the crossing-bin gather of select.c's top-p / typical cut: every copy
 * gives the portable bins, counts and gathered pairs (both walks, junk ranges, in place) */
static void test_bin_kernels(void)
{
    int best = fdi_set_isa(-1);
    const int64_t lens[] = {0, 1, 63, 64, 65, 130, 1000, 4097, 40000};
    const int64_t nl = (int64_t)(sizeof lens / sizeof lens[0]);
    int64_t N = 40000;
    float *x = malloc((size_t)N * 4), *s = malloc((size_t)N * 4), *w = malloc((size_t)N * 4);
    uint32_t *b0 = malloc((size_t)N * 4), *b1 = malloc((size_t)N * 4);
    uint32_t *g0 = malloc((size_t)N * 4), *g1 = malloc((size_t)N * 4);
    float *gw0 = malloc((size_t)N * 4), *gw1 = malloc((size_t)N * 4);
    const uint32_t ranges[][2] = {{0, FDI_LBINS}, {0, 1}, {0, 700}, {700, FDI_LBINS}, {2047, 2048}};
    for (int64_t li = 0; li < nl; li++) {
        int64_t n = lens[li];
        for (int kind = 0; kind < 6; kind++) {
            fill_row(x, n, kind);
            float m = fdi_max(x, n);
            float base = m == -INFINITY ? 0.0f : m;
            fdi_exp(x, n, base, w);
            for (int64_t i = 0; i < n; i++) {
                s[i] = fabsf(x[i] - 0.25f) * 3.0f; /* +inf where x is -inf */
            }
            for (int inv = 0; inv < 2; inv++) {
                const float *v = inv ? s : x;
                for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
                    fdi_set_isa(FDI_ISA_PORTABLE);
                    const fdi_isa_ops *P = fdi_ops();
                    P->lbins(v, n, inv, base, ranges[r][0], ranges[r][1], b0);
                    for (int64_t i = 0; i < n; i++) { /* against the definition */
                        uint32_t b = fdi_lbin(inv ? v[i] : base - v[i]);
                        int in = b >= ranges[r][0] && b < ranges[r][1];
                        CHECK(b0[i] == (in ? b : FDI_LBINS + (uint32_t)(i % 64)));
                    }
                    uint32_t B = n ? b0[rnd() % (uint64_t)n] : 5;
                    int64_t m0 = 0, m1 = 0;
                    memcpy(g0, b0, (size_t)n * 4);
                    int64_t c0 = P->bin_gather(g0, n, B, v, w, inv ? 0xffffffffu : 0u, g0, gw0,
                                               &m0);
                    int64_t cb = 0, mb = 0;
                    uint32_t flip = inv ? 0xffffffffu : 0u;
                    for (int64_t i = 0; i < n; i++) {
                        cb += b0[i] < B;
                        if (b0[i] == B) {
                            CHECK(mb < m0 && g0[mb] == (fdi_key(v[i]) ^ flip) &&
                                  same_bits(&gw0[mb], &w[i], 4));
                            mb++;
                        }
                    }
                    CHECK(c0 == cb && m0 == mb);
                    for (int level = FDI_ISA_AVX2; level <= best; level++) {
                        fdi_set_isa(level);
                        const fdi_isa_ops *O = fdi_ops();
                        O->lbins(v, n, inv, base, ranges[r][0], ranges[r][1], b1);
                        CHECK(same_bits(b0, b1, (size_t)n * 4));
                        int64_t c1 = O->bin_gather(b1, n, B, v, w, inv ? 0xffffffffu : 0u, b1,
                                                   gw1, &m1);
                        CHECK(c1 == c0 && m1 == m0 && same_bits(g0, b1, (size_t)m0 * 4) &&
                              same_bits(gw0, gw1, (size_t)m0 * 4));
                    }
                }
            }
        }
    }
    fdi_set_isa(-1);
    free(x);
    free(s);
    free(w);
    free(b0);
    free(b1);
    free(g0);
    free(g1);
    free(gw0);
    free(gw1);
}

static void test_public_filters(void)
{
    int best = fdi_set_isa(-1);
    int64_t V = 70000;
    float *x = malloc((size_t)V * 4), *o0 = malloc((size_t)V * 4), *o1 = malloc((size_t)V * 4);
    void *ws = ws_alloc(fd_filter_workspace(V));
    static const double ps[7][2] = {{40, 3000}, {0.9, 0.3}, {0.05, 0.5}, {0.9, 0.2},
                                    {3e-4, 0.05}, {3e-4, 0.02}, {1.0, 2.5}};
    for (int it = 0; it < 24; it++) {
        fill_row(x, V, it % 6);
        if (it % 6 == 4) {
            x[17] = 1.0f;
        }
        for (int kind = 0; kind < 7; kind++) {
            double p = ps[kind][it % 2], mk = it % 3 ? 1.0 : 5.0;
            fd_rows in = {x, FD_F32, 1, V, V};
            fdi_set_isa(FDI_ISA_PORTABLE);
            fd_rows out0 = {o0, FD_F32, 1, V, V};
            CHECK(fd_filter((fd_filter_kind)kind, &in, &out0, (fd_param){&p, 0},
                            (fd_param){&mk, 0}, -INFINITY, ws, NULL) == FD_OK);
            for (int level = FDI_ISA_AVX2; level <= best; level++) {
                fdi_set_isa(level);
                memcpy(o1, x, (size_t)V * 4);
                fd_rows io = {o1, FD_F32, 1, V, V};
                CHECK(fd_filter((fd_filter_kind)kind, &io, &io, (fd_param){&p, 0},
                                (fd_param){&mk, 0}, -INFINITY, ws, NULL) == FD_OK);
                CHECK(same_bits(o0, o1, (size_t)V * 4));
            }
        }
    }
    fdi_set_isa(-1);
    free(x);
    free(o0);
    free(o1);
    free(ws);
}

/* block-max candidates + fdi_top_k == fdi_top_k on the whole list (finite logits, divided by t) */
static void test_block_topk(void)
{
    int64_t N = 20000;
    float *x = malloc((size_t)N * 4), *v = malloc((size_t)N * 4), *cv = malloc((size_t)N * 4);
    float *bm = malloc((size_t)N * 4);
    int32_t *id = malloc((size_t)N * 4), *cid = malloc((size_t)N * 4);
    void *ws = ws_alloc(fdi_workspace(N));
    void *radix = ws_alloc(fdi_workspace(N));
    int applied = 0;
    for (int it = 0; it < 600; it++) {
        int64_t n = 1 + (int64_t)(rnd() % (uint64_t)(it % 3 == 0 ? N : 700));
        fill_row(x, n, it % 6);
        int64_t k = 1 + (int64_t)(rnd() % (uint64_t)(it % 2 ? fdi_n_blocks(n) : n + 3));
        float t = (it % 4 == 0) ? 0.0f : (float)(0.05 + 2.0 * unif());
        /* reference: the fused sampler's generic path */
        int64_t m = 0;
        for (int64_t i = 0; i < n; i++) {
            if (x[i] != -INFINITY) {
                v[m] = t != 0.0f ? x[i] / t : x[i];
                id[m] = (int32_t)i;
                m++;
            }
        }
        int64_t ref = k < m ? fdi_top_k(v, id, m, k, ws) : m;
        (void)fdi_ops()->block_max(x, n, bm);
        int64_t c = fdi_block_candidates(x, n, bm, k, t, cv, cid, radix);
        if (c < 0) {
            continue;
        }
        applied++;
        CHECK(c >= k);
        int64_t got = fdi_top_k(cv, cid, c, k, ws);
        CHECK(got == ref);
        if (got == ref) {
            CHECK(same_bits(cv, v, (size_t)got * 4));
            CHECK(same_bits(cid, id, (size_t)got * 4));
        }
    }
    CHECK(applied > 150);
    free(x);
    free(v);
    free(cv);
    free(bm);
    free(id);
    free(cid);
    free(ws);
    free(radix);
}

/* exp on special and boundary inputs: every copy gives the portable bits (random bit patterns of
 * every class, the -87.3 / 88 cut-offs and their neighbours, signed zeros, subnormals), and the
 * portable exp is within 1.5 ulp of exp on [-87.3, 0] (the fit's worst case is 1.0), exactly 1 at
 * 0 and 0 at and below the cut-off */
static void test_exp_special(void)
{
    int best = fdi_set_isa(-1);
    enum { N = 4096 };
    float *x = malloc(N * 4), *a = malloc(N * 4), *b = malloc(N * 4);
    const float fixed[] = {0.0f,
                           -0.0f,
                           -INFINITY,
                           INFINITY,
                           NAN,
                           -NAN,
                           -87.3f,
                           nextafterf(-87.3f, 0.0f),
                           nextafterf(-87.3f, -INFINITY),
                           88.0f,
                           nextafterf(88.0f, 0.0f),
                           nextafterf(88.0f, INFINITY),
                           88.7f,
                           89.0f,
                           1e30f,
                           -1e30f,
                           1e-45f,
                           -1e-45f,
                           1e-40f,
                           -1e-40f,
                           -0.34657359f,
                           0.34657359f,
                           -0.6931472f,
                           -86.99f,
                           -87.0f,
                           -103.97f,
                           -104.0f,
                           -150.0f};
    const int nf = (int)(sizeof fixed / sizeof fixed[0]);
    for (int rep = 0; rep < 40; rep++) {
        for (int i = 0; i < N; i++) {
            if (i < nf) {
                x[i] = fixed[i];
            }
            else if (rep % 2) {
                uint32_t u = (uint32_t)rnd();
                memcpy(&x[i], &u, 4);
            }
            else {
                x[i] = (float)(-100.0 * unif() + 1.0);
            }
        }
        float shift = rep % 4 < 2 ? 0.0f : (float)(3 * normal());
        fdi_set_isa(FDI_ISA_PORTABLE);
        fdi_ops()->exp(x, N, shift, a);
        double zp = fdi_ops()->exp_sum(x + 1, N - 1, shift, NULL);
        for (int level = FDI_ISA_AVX2; level <= best; level++) {
            fdi_set_isa(level);
            fdi_ops()->exp(x, N, shift, b);
            CHECK(same_bits(a, b, N * 4));
            double z = fdi_ops()->exp_sum(x + 1, N - 1, shift, NULL);
            CHECK(same_bits(&z, &zp, sizeof z) || (z != z && zp != zp));
        }
    }
    fdi_set_isa(FDI_ISA_PORTABLE);
    double worst = 0.0;
    for (int i = 0; i < 2000000; i++) {
        float v = (float)(-87.3 * unif());
        float e = fdi_expf1(v);
        double ref = exp((double)v), ulp = ldexp(1.0, ilogb(ref) - 23);
        double err = fabs((double)e - ref) / ulp;
        worst = err > worst ? err : worst;
    }
    CHECK(worst <= 1.5);
    CHECK(fdi_expf1(0.0f) == 1.0f && fdi_expf1(-0.0f) == 1.0f);
    CHECK(fdi_expf1(-INFINITY) == 0.0f && fdi_expf1(-87.3f) == 0.0f && fdi_expf1(-200.0f) == 0.0f);
    CHECK(fdi_expf1(nextafterf(-87.3f, 0.0f)) >= 0x1p-126f);
    CHECK(fdi_expf1(NAN) == 0.0f);
    fdi_set_isa(-1);
    free(x);
    free(a);
    free(b);
}

/* the exp sum's accuracy: within 1e-6 relative of a long double sum on 256k-element rows (flat,
 * peaked, one large weight among many tiny ones), and out / NULL / out == x give the same sum */
static void test_exp_sum_accuracy(void)
{
    int best = fdi_set_isa(-1);
    int64_t N = 262144 + 77;
    float *x = malloc((size_t)N * 4), *w = malloc((size_t)N * 4), *y = malloc((size_t)N * 4);
    for (int kind = 0; kind < 4; kind++) {
        for (int64_t i = 0; i < N; i++) {
            double z = normal();
            x[i] = kind == 0   ? (float)z
                   : kind == 1 ? (float)(8 * z)
                   : kind == 2 ? (i == 12345 ? 0.0f : -18.0f - (float)unif())
                               : (float)(-30.0 * unif());
        }
        float m = fdi_max(x, N);
        for (int level = FDI_ISA_PORTABLE; level <= best; level++) {
            fdi_set_isa(level);
            double z = fdi_ops()->exp_sum(x, N, m, w);
            long double ref = 0.0L;
            for (int64_t i = 0; i < N; i++) {
                ref += (long double)w[i];
            }
            CHECK(fabs((double)(((long double)z - ref) / ref)) <= 1e-6);
            memcpy(y, x, (size_t)N * 4);
            double z2 = fdi_ops()->exp_sum(y, N, m, y);
            CHECK(z2 == z && same_bits(y, w, (size_t)N * 4));
            CHECK(fdi_ops()->exp_sum(x, N, m, NULL) == z);
        }
    }
    fdi_set_isa(-1);
    free(x);
    free(w);
    free(y);
}

/* the reciprocal division on dividends of every magnitude (subnormal, huge, zero, inf, NaN) and
 * divisors around the thresholds of the float-side range test (2^+-100, powers of two, odd
 * values): every copy gives the portable bits */
static void test_div_edges(void)
{
    int best = fdi_set_isa(-1);
    enum { N = 1000 };
    float *a = malloc(N * 4), *o0 = malloc(N * 4), *o1 = malloc(N * 4), *p0 = malloc(N * 4);
    const double bs[] = {1.0,
                         3.0,
                         0.37,
                         1e5 + 0.5,
                         0x1p-100,
                         0x1p100,
                         0x1.0000000000001p-100,
                         0x1.fffffffffffffp99,
                         0x1p-101,
                         0x1p101,
                         1.5 * 0x1p-60,
                         0x1p60 / 3,
                         0x1p-24,
                         0x1p24 + 1.0,
                         128256.0,
                         7e-30,
                         7e29};
    const int nb = (int)(sizeof bs / sizeof bs[0]);
    for (int rep = 0; rep < 30; rep++) {
        for (int i = 0; i < N; i++) {
            uint32_t u = (uint32_t)rnd();
            if (i % 4 == 1) {
                u &= 0x807fffffu; /* subnormal or zero */
            }
            else if (i % 4 == 2) {
                u = (u & 0x80ffffffu) | (rep % 2 ? 0x7e000000u : 0x01000000u);
            }
            memcpy(&a[i], &u, 4);
        }
        a[0] = 0.0f;
        a[1] = -0.0f;
        a[2] = INFINITY;
        a[3] = NAN;
        for (int bi = 0; bi < nb; bi++) {
            for (int mi = 0; mi < 2; mi++) {
                float m = mi ? (float)normal() : 0.0f;
                fdi_set_isa(FDI_ISA_PORTABLE);
                fdi_ops()->div_f32(a, N, bs[bi], p0);
                fdi_ops()->shift_div(a, N, m, bs[bi], o0);
                for (int level = FDI_ISA_AVX2; level <= best; level++) {
                    fdi_set_isa(level);
                    fdi_ops()->div_f32(a, N - rep, bs[bi], o1);
                    CHECK(same_bits(o1, p0, (size_t)(N - rep) * 4));
                    fdi_ops()->shift_div(a, N - rep, m, bs[bi], o1);
                    CHECK(same_bits(o1, o0, (size_t)(N - rep) * 4));
                }
            }
        }
    }
    fdi_set_isa(-1);
    free(a);
    free(o0);
    free(o1);
    free(p0);
}

static int64_t ref_argmax(const float *x, int64_t n, int *bad)
{
    int64_t arg = -1;
    float m = -INFINITY;
    *bad = 0;
    for (int64_t i = 0; i < n; i++) {
        *bad |= !(x[i] < INFINITY) && x[i] != -INFINITY ? 1 : 0;
        if (x[i] > m) {
            m = x[i];
            arg = i;
        }
    }
    return arg;
}

/* argmax on every copy: lengths around the vector, step and chunk sizes, every start alignment
 * (the AVX copies align their loads), ties across chunks, signed zeros, all -inf, and NaN / +inf
 * at the edges */
static void test_argmax(void)
{
    int best = fdi_set_isa(-1);
    const int64_t lens[] = {0,   1,    2,    15,   16,   17,   63,   64,   127,  128,
                            129, 2047, 2048, 2049, 2063, 2064, 4096, 4111, 6200, 50257};
    const int nl = (int)(sizeof lens / sizeof lens[0]);
    float *buf = malloc((50257 + 32) * 4);
    for (int level = FDI_ISA_PORTABLE; level <= best; level++) {
        fdi_set_isa(level);
        for (int li = 0; li < nl; li++) {
            for (int off = 0; off < 16; off += (lens[li] > 5000 ? 5 : 1)) {
                int64_t n = lens[li];
                float *x = buf + off;
                for (int kind = 0; kind < 7; kind++) {
                    for (int64_t i = 0; i < n; i++) {
                        x[i] = kind == 0   ? (float)normal()
                               : kind == 1 ? (float)floor(2 * normal()) /* ties */
                               : kind == 2 ? -INFINITY
                               : kind == 3 ? (unif() < 0.5 ? -0.0f : -INFINITY)
                               : kind == 4 ? (unif() < 0.5 ? -1.0f : (unif() < 0.5 ? -0.0f : 0.0f))
                                           : (float)normal();
                    }
                    if (kind >= 5 && n > 0) { /* NaN or +inf at the first, last or a random place */
                        int64_t at = rnd() % 3 == 0 ? 0
                                     : rnd() % 2    ? n - 1
                                                    : (int64_t)(rnd() % (uint64_t)n);
                        x[at] = kind == 5 ? NAN : INFINITY;
                    }
                    if (kind == 1 && n > 2100) { /* the max in two chunks */
                        x[n - 3] = 100.0f;
                        x[(int64_t)(rnd() % (uint64_t)(n - 2100)) + 3] = 100.0f;
                    }
                    int bad = 0;
                    int64_t want = ref_argmax(x, n, &bad);
                    float m = 42.0f;
                    int64_t arg = -7;
                    int got = fdi_argmax_check(x, n, &m, &arg);
                    CHECK((got != 0) == (bad != 0));
                    if (!bad) {
                        CHECK(arg == want);
                        float wm = want < 0 ? -INFINITY : x[want] + 0.0f;
                        CHECK(same_bits(&m, &wm, 4));
                        float fm = fdi_max(x, n);
                        CHECK(same_bits(&fm, &wm, 4));
                    }
                }
            }
        }
    }
    fdi_set_isa(-1);
    free(buf);
}

/* the public kernels give the same bits on every ISA level */
static void test_public(void)
{
    int best = fdi_set_isa(-1);
    int64_t V = 5000;
    float *x = malloc((size_t)V * 4), *o0 = malloc((size_t)V * 4), *o1 = malloc((size_t)V * 4);
    void *ws = ws_alloc(fd_softmax_workspace(V) + fd_filter_workspace(V) + fd_sample_workspace(V));
    for (int it = 0; it < 60; it++) {
        fill_row(x, V, it % 6);
        if (it % 6 == 4) {
            x[17] = 1.0f; /* at least one finite */
        }
        fd_rows in = {x, FD_F32, 1, V, V};
        double temps[] = {1.0, 0.7, 1.9};
        double t = temps[it % 3], k = (double)(1 + rnd() % 80), p = 0.9, one = 1.0, zero = 0.0;
        double u = unif();
        int64_t tok0 = -1, tok1 = -2, am0 = -1, am1 = -2;
        double lp0 = 0, lp1 = 1;
        fd_sample_params sp = {{&t, 0},   {&k, 0},    {&p, 0},    {&zero, 0}, {&one, 0},
                               {&zero, 0}, {&zero, 0}, {&zero, 0}, it % 2 ? FD_ORDER_LLAMA : FD_ORDER_HF};
        fd_rng_args ra = {NULL, 0, NULL, 0, &u, 0};
        for (int level = FDI_ISA_PORTABLE; level <= best; level++) {
            fdi_set_isa(level);
            float *o = level == 0 ? o0 : o1;
            int64_t *tok = level == 0 ? &tok0 : &tok1, *am = level == 0 ? &am0 : &am1;
            double *lp = level == 0 ? &lp0 : &lp1;
            fd_rows out = {o, FD_F32, 1, V, V};
            CHECK(fd_softmax(&in, &out, (fd_param){&t, 0}, it % 2, ws, NULL) == FD_OK);
            CHECK(fd_argmax(&in, am, NULL) == FD_OK);
            CHECK(fd_sample(&in, &sp, &ra, tok, lp, ws, NULL) == FD_OK);
            if (level > 0) {
                CHECK(same_bits(o0, o1, (size_t)V * 4));
                CHECK(am0 == am1);
                CHECK(tok0 == tok1);
                CHECK(same_bits(&lp0, &lp1, sizeof lp0));
                CHECK(fd_filter(FD_FILTER_TOP_K, &in, &out, (fd_param){&k, 0}, (fd_param){&one, 0},
                                -INFINITY, ws, NULL) == FD_OK);
                fdi_set_isa(FDI_ISA_PORTABLE);
                fd_rows out0 = {o0, FD_F32, 1, V, V};
                CHECK(fd_filter(FD_FILTER_TOP_K, &in, &out0, (fd_param){&k, 0},
                                (fd_param){&one, 0}, -INFINITY, ws, NULL) == FD_OK);
                CHECK(same_bits(o0, o1, (size_t)V * 4));
                fdi_set_isa(FDI_ISA_PORTABLE);
                fd_softmax(&in, &out0, (fd_param){&t, 0}, it % 2, ws, NULL);
            }
        }
    }
    fdi_set_isa(-1);
    free(x);
    free(o0);
    free(o1);
    free(ws);
}

/* block_max at every float offset from a 64-byte line (the AVX-512 copy reads 16-block groups
 * with aligned loads from the line below the row, except block 0 and the last blocks) and lengths
 * around the group bounds: the portable copy's maxima and bad flag, a NaN or +inf anywhere
 * (first block, inside a group, the tail) caught; nothing outside the row is read (ASan). */
static void test_block_max_alignment(void)
{
    int best = fdi_set_isa(-1);
    const int64_t lens[] = {63, 64, 1023, 1024, 1040, 1041, 1087, 1088, 1104, 2048, 2064, 5000};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        int64_t n = lens[li];
        for (int off = 0; off < 16; off++) {
            /* the row ends where the allocation ends, so a read past it is an ASan error; its
             * offset from a 64-byte line runs through all 16 values as off does */
            int64_t total = (n + off + 15) / 16 * 16;
            float *raw = aligned_alloc(64, (size_t)total * 4);
            float *x = raw + total - n, *bma = malloc(100 * 4), *bmb = malloc(100 * 4);
            for (int kind = 0; kind < 5; kind++) {
                uint32_t st = (uint32_t)(n * 31 + off * 7 + kind);
                for (int64_t i = 0; i < n; i++) {
                    st = st * 1664525u + 1013904223u;
                    x[i] = kind == 1 ? ((i % 3) ? -0.0f : -INFINITY) : (float)(st >> 9) * 1e-3f - 4e3f;
                }
                int64_t at = kind == 2 ? 0 : kind == 3 ? n / 2 : n - 1;
                if (kind >= 2) {
                    x[at] = kind == 3 ? INFINITY : NAN;
                }
                fdi_set_isa(FDI_ISA_PORTABLE);
                int bp = fdi_ops()->block_max(x, n, bma);
                for (int level = FDI_ISA_AVX2; level <= best; level++) {
                    fdi_set_isa(level);
                    int bo = fdi_ops()->block_max(x, n, bmb);
                    CHECK(bo == bp && bp == (kind >= 2));
                    if (kind < 2) {
                        CHECK(memcmp(bma, bmb, (size_t)fdi_n_blocks(n) * 4) == 0);
                    }
                }
            }
            free(raw);
            free(bma);
            free(bmb);
        }
    }
    fdi_set_isa(-1);
}

int main(void)
{
    test_env();
    test_block_max_alignment();
    test_kernels();
    test_block_topk();
    test_public();
    test_select_kernels();
    test_bin_kernels();
    test_public_filters();
    test_exp_special();
    test_exp_sum_accuracy();
    test_div_edges();
    test_argmax();
    printf("isa levels tested: portable..%s\n", fdi_ops()->name);
    CHECK_REPORT("test_isa");
}
