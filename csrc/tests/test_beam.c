/* Tests for beam.c: hand-computed beam steps (ties across rows and tokens, -inf logits and beam
 * scores, groups, k = the whole group, normalize 0 / 1) in every storage dtype and with strided
 * rows; the error statuses; and long random groups against a brute force (fd_softmax's
 * log-probabilities plus the beam score, fully sorted) at every ISA level, which exercises the
 * block and row skipping. */
#include "check.h"
#include "fastdecode/fd.h"
#include "internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NINF (-INFINITY)
#define MAXN 8
#define MAXK 8

static void *ws_alloc(size_t bytes)
{
    size_t n = (bytes + 63) / 64 * 64;
    return aligned_alloc(64, n ? n : 64);
}

/* float32 log-probabilities of uniform rows: -ln 2, -ln 3, -ln 4 rounded once */
#define L2 ((float)-0.69314718055994531)
#define L3 ((float)-1.0986122886681098)
#define L4 ((float)-1.3862943611198906)

typedef struct {
    int R, V;
    float x[MAXN];
    float b[4];
    int gs, k, normalize;
    float s[MAXK]; /* expected, G * k of each */
    int64_t rows[MAXK], toks[MAXK];
} bcase;

/* one case per line pair: R, V, logits, beam scores, group size, k, normalize; then the expected
 * scores, rows and tokens, best first (clang-format would spread each case over ten lines) */
// clang-format off
static const bcase cases[] = {
    /* one group, ties across tokens and rows: lower flat index first */
    {2, 3, {1, 2, 2, 2, 0, NINF}, {0, 0}, 2, 4, 0,
     {2, 2, 2, 1}, {0, 0, 1, 0}, {1, 2, 0, 0}},
    /* k = the whole group: -inf last */
    {2, 3, {1, 2, 2, 2, 0, NINF}, {0, 0}, 2, 6, 0,
     {2, 2, 2, 1, 0, NINF}, {0, 0, 1, 0, 1, 1}, {1, 2, 0, 0, 1, 2}},
    /* groups of one row: rows are global */
    {2, 3, {1, 2, 2, 2, 0, NINF}, {0, 0}, 1, 2, 0,
     {2, 2, 2, 0}, {0, 0, 1, 1}, {1, 2, 0, 1}},
    {2, 3, {1, 2, 2, 2, 0, NINF}, {0, 0}, 1, 3, 0,
     {2, 2, 1, 2, 0, NINF}, {0, 0, 0, 1, 1, 1}, {1, 2, 0, 0, 1, 2}},
    /* -inf ties ranked last, by flat index */
    {2, 2, {NINF, NINF, NINF, 0}, {0, 0}, 2, 4, 0,
     {0, NINF, NINF, NINF}, {1, 0, 0, 1}, {1, 0, 1, 0}},
    /* beam scores move whole rows */
    {2, 3, {1, 2, 2, 2, 0, NINF}, {-1.5f, 0.25f}, 2, 3, 0,
     {2.25f, 0.5f, 0.5f}, {1, 0, 0}, {0, 1, 2}},
    /* a -inf beam score makes its row -inf */
    {2, 3, {1, 2, 2, 2, 0, NINF}, {NINF, 0}, 2, 4, 0,
     {2, 0, NINF, NINF}, {1, 1, 0, 0}, {0, 1, 0, 1}},
    /* all -inf without normalize: legitimate candidates */
    {1, 2, {NINF, NINF}, {0}, 1, 2, 0,
     {NINF, NINF}, {0, 0}, {0, 1}},
    /* normalize: equal log-probabilities in two rows of different logits */
    {2, 2, {0, 0, 5, 5}, {0, 0}, 2, 3, 1,
     {L2, L2, L2}, {0, 0, 1}, {0, 1, 0}},
    {2, 2, {0, 0, 3, 3}, {-1, 0}, 2, 4, 1,
     {L2, L2, L2 - 1, L2 - 1}, {1, 1, 0, 0}, {0, 1, 0, 1}},
    {2, 4, {0, NINF, 0, 0, 7, 7, 7, 7}, {0, 0}, 2, 5, 1,
     {L3, L3, L3, L4, L4}, {0, 0, 0, 1, 1}, {0, 2, 3, 0, 1}},
    /* large logits: the shift keeps log Z exact */
    {1, 2, {1000, 1000}, {0.5f}, 1, 1, 1,
     {L2 + 0.5f}, {0}, {0}},
    /* normalize with a -inf beam score, and -inf logits in the other row */
    {2, 2, {0, 0, 1, NINF}, {NINF, 0}, 2, 4, 1,
     {0, NINF, NINF, NINF}, {1, 0, 0, 1}, {0, 0, 1, 1}},
};
// clang-format on

/* Writes x (R x V float32) into buf as dtype t with row stride `stride`. */
static void put_rows(const float *x, int R, int V, fd_dtype t, int64_t stride, void *buf)
{
    for (int r = 0; r < R; r++) {
        for (int c = 0; c < V; c++) {
            float f = x[r * V + c];
            int64_t o = r * stride + c;
            if (t == FD_F32) {
                ((float *)buf)[o] = f;
            }
            else if (t == FD_F64) {
                ((double *)buf)[o] = f;
            }
            else if (t == FD_F16) {
                ((uint16_t *)buf)[o] = fd_float_to_half(f);
            }
            else {
                ((uint16_t *)buf)[o] = fd_float_to_bf16(f);
            }
        }
    }
}

static int same_bits(float a, float b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

static void test_table(void)
{
    static const fd_dtype dts[4] = {FD_F32, FD_F64, FD_F16, FD_BF16};
    size_t nc = sizeof cases / sizeof cases[0];
    for (size_t ci = 0; ci < nc; ci++) {
        const bcase *t = &cases[ci];
        int G = t->R / t->gs;
        for (int d = 0; d < 4; d++) {
            for (int strided = 0; strided < 2; strided++) {
                int64_t stride = t->V + 3 * strided;
                double buf[MAXN + 3 * 4];
                put_rows(t->x, t->R, t->V, dts[d], stride, buf);
                fd_rows in = {buf, dts[d], t->R, t->V, stride};
                float s[MAXK];
                int64_t rows[MAXK], toks[MAXK];
                void *ws = ws_alloc(fd_beam_step_workspace(t->V, t->k));
                fd_errinfo e;
                fd_status st =
                    fd_beam_step(&in, t->b, t->gs, t->k, t->normalize, s, rows, toks, ws, &e);
                CHECK(st == FD_OK);
                int ok = st == FD_OK;
                for (int j = 0; ok && j < G * t->k; j++) {
                    ok &=
                        same_bits(s[j], t->s[j]) && rows[j] == t->rows[j] && toks[j] == t->toks[j];
                }
                if (!ok) {
                    fprintf(stderr, "case %zu dtype %d strided %d: got", ci, d, strided);
                    for (int j = 0; j < G * t->k; j++) {
                        fprintf(stderr, " (%.9g r%lld t%lld)", s[j], (long long)rows[j],
                                (long long)toks[j]);
                    }
                    fprintf(stderr, "\n");
                }
                CHECK(ok);
                free(ws);
            }
        }
    }
}

static void test_errors(void)
{
    float x[6] = {1, 2, 3, 4, 5, 6}, b[2] = {0, 0}, s[12];
    int64_t rows[12], toks[12];
    void *ws = ws_alloc(fd_beam_step_workspace(3, 12));
    fd_rows in = {x, FD_F32, 2, 3, 3};
    fd_errinfo e;
    CHECK(fd_beam_step(&in, b, 2, 0, 1, s, rows, toks, ws, &e) == FD_EINVAL);
    CHECK(fd_beam_step(&in, b, 2, 7, 1, s, rows, toks, ws, &e) == FD_EINVAL);
    CHECK(fd_beam_step(&in, b, 1, 4, 1, s, rows, toks, ws, &e) == FD_EINVAL); /* k > 1 * V */
    CHECK(fd_beam_step(&in, b, 2, 6, 1, s, rows, toks, ws, &e) == FD_OK);
    CHECK(fd_beam_step(&in, b, 0, 1, 1, s, rows, toks, ws, &e) == FD_ESHAPE);
    fd_rows odd = {x, FD_F32, 3, 2, 2};
    float b3[3] = {0, 0, 0};
    CHECK(fd_beam_step(&odd, b3, 2, 1, 1, s, rows, toks, ws, &e) == FD_ESHAPE);
    fd_rows overlap = {x, FD_F32, 2, 3, 2};
    CHECK(fd_beam_step(&overlap, b, 2, 1, 1, s, rows, toks, ws, &e) == FD_ESHAPE);
    /* no rows: nothing to do */
    fd_rows none = {x, FD_F32, 0, 3, 3};
    CHECK(fd_beam_step(&none, b, 2, 1, 1, s, rows, toks, ws, &e) == FD_OK);

    /* NaN / +inf logits: the first offending element, in every dtype */
    static const fd_dtype dts[4] = {FD_F32, FD_F64, FD_F16, FD_BF16};
    for (int d = 0; d < 4; d++) {
        for (int norm = 0; norm < 2; norm++) {
            float y[6] = {1, 2, 3, 4, NAN, INFINITY};
            double buf[6];
            put_rows(y, 2, 3, dts[d], 3, buf);
            fd_rows yin = {buf, dts[d], 2, 3, 3};
            CHECK(fd_beam_step(&yin, b, 2, 2, norm, s, rows, toks, ws, &e) == FD_ENAN);
            CHECK(e.row == 1 && e.index == 1);
            y[4] = 0;
            put_rows(y, 2, 3, dts[d], 3, buf);
            CHECK(fd_beam_step(&yin, b, 1, 2, norm, s, rows, toks, ws, &e) == FD_EPOSINF);
            CHECK(e.row == 1 && e.index == 2);
        }
    }
    /* beam scores: NaN and +inf rejected with the row, -inf allowed; checked before the row */
    float bad[2] = {0, NAN};
    CHECK(fd_beam_step(&in, bad, 2, 1, 1, s, rows, toks, ws, &e) == FD_EINVAL && e.row == 1);
    bad[1] = INFINITY;
    CHECK(fd_beam_step(&in, bad, 1, 1, 0, s, rows, toks, ws, &e) == FD_EINVAL && e.row == 1);
    CHECK(s[0] == 3 && rows[0] == 0 && toks[0] == 2); /* the first group was written */
    bad[1] = NINF;
    CHECK(fd_beam_step(&in, bad, 2, 1, 1, s, rows, toks, ws, &e) == FD_OK);
    float y[6] = {1, 2, 3, NAN, 5, 6};
    fd_rows yin = {y, FD_F32, 2, 3, 3};
    bad[1] = NAN;
    CHECK(fd_beam_step(&yin, bad, 2, 1, 1, s, rows, toks, ws, &e) == FD_EINVAL && e.row == 1);
    /* a row of all -inf: an error with normalize (as log_softmax), candidates without */
    float z[6] = {0, 1, 2, NINF, NINF, NINF};
    fd_rows zin = {z, FD_F32, 2, 3, 3};
    CHECK(fd_beam_step(&zin, b, 2, 1, 1, s, rows, toks, ws, &e) == FD_ENOFINITE && e.row == 1);
    CHECK(fd_beam_step(&zin, b, 2, 6, 0, s, rows, toks, ws, &e) == FD_OK);
    CHECK(s[3] == NINF && rows[3] == 1 && toks[3] == 0 && rows[5] == 1 && toks[5] == 2);
    free(ws);
}

/* brute force: every (s, flat index) of a group, fully sorted */
typedef struct {
    float s;
    int64_t i;
} entry;

static int cmp_entry(const void *pa, const void *pb)
{
    const entry *a = pa, *b = pb;
    if (a->s != b->s) {
        return a->s > b->s ? -1 : 1;
    }
    return a->i < b->i ? -1 : a->i > b->i;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double urand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) * 0x1p-53;
}

static void test_random(void)
{
    static const int64_t Vs[] = {1, 63, 64, 65, 1000, 5000};
    static const int64_t gss[] = {1, 3};
    int best = fdi_set_isa(-1);
    for (int level = FDI_ISA_PORTABLE; level <= best; level++) {
        fdi_set_isa(level);
        for (size_t vi = 0; vi < sizeof Vs / sizeof Vs[0]; vi++) {
            for (size_t gi = 0; gi < sizeof gss / sizeof gss[0]; gi++) {
                for (int kind = 0; kind < 3; kind++) {
                    int64_t V = Vs[vi], gs = gss[gi], R = 2 * gs, N = gs * V;
                    float *x = malloc((size_t)(R * V) * 4), *lp = malloc((size_t)(R * V) * 4);
                    float b[6];
                    for (int64_t i = 0; i < R * V; i++) {
                        double u = urand();
                        /* 0: spread; 1: integers (many ties); 2: a peak and -inf holes */
                        x[i] = kind == 0   ? (float)(20 * u - 10)
                               : kind == 1 ? (float)(int)(6 * u)
                               : u < 0.3   ? NINF
                                           : (float)(4 * u);
                    }
                    if (kind == 2) {
                        x[(R - 1) * V + V / 2] = 30; /* the last row holds the group's best */
                    }
                    for (int64_t r = 0; r < R; r++) {
                        b[r] = kind == 1 ? (float)(r % 2) : (float)(-3 * urand());
                        x[r * V] = kind == 2 ? 1.0f : x[r * V]; /* a finite value per row */
                    }
                    fd_rows in = {x, FD_F32, R, V, V}, out = {lp, FD_F32, R, V, V};
                    double one = 1.0;
                    void *sws = ws_alloc(fd_softmax_workspace(V));
                    CHECK(fd_softmax(&in, &out, (fd_param){&one, 0}, 1, sws, NULL) == FD_OK);
                    free(sws);
                    entry *all = malloc((size_t)N * sizeof *all);
                    int64_t ks[4] = {1, 5 < N ? 5 : N, 64 < N ? 64 : N, N};
                    for (int norm = 0; norm < 2; norm++) {
                        for (int ki = 0; ki < 4; ki++) {
                            int64_t k = ks[ki];
                            float *s = malloc((size_t)(2 * k) * 4);
                            int64_t *rows = malloc((size_t)(2 * k) * 8);
                            int64_t *toks = malloc((size_t)(2 * k) * 8);
                            void *ws = ws_alloc(fd_beam_step_workspace(V, k));
                            CHECK(fd_beam_step(&in, b, gs, k, norm, s, rows, toks, ws, NULL) ==
                                  FD_OK);
                            int ok = 1;
                            for (int64_t g = 0; g < 2; g++) {
                                for (int64_t f = 0; f < N; f++) {
                                    int64_t r = g * gs + f / V;
                                    float v = norm ? lp[r * V + f % V] : x[r * V + f % V];
                                    all[f].s = v + b[r];
                                    all[f].i = f;
                                }
                                qsort(all, (size_t)N, sizeof *all, cmp_entry);
                                for (int64_t j = 0; j < k; j++) {
                                    ok &= same_bits(s[g * k + j], all[j].s) &&
                                          rows[g * k + j] == g * gs + all[j].i / V &&
                                          toks[g * k + j] == all[j].i % V;
                                }
                            }
                            if (!ok) {
                                fprintf(stderr, "isa %d V %lld gs %lld kind %d norm %d k %lld\n",
                                        level, (long long)V, (long long)gs, kind, norm,
                                        (long long)k);
                            }
                            CHECK(ok);
                            free(s);
                            free(rows);
                            free(toks);
                            free(ws);
                        }
                    }
                    free(all);
                    free(x);
                    free(lp);
                }
            }
        }
    }
    fdi_set_isa(-1);
}

int main(void)
{
    test_table();
    test_errors();
    test_random();
    CHECK_REPORT("test_beam");
}
