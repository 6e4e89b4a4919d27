/* Tests for penalty.c: hand-computed tables for every kernel, dtype round trips, the validation
 * contract (which status, which row / index, nothing of a bad row written), and a randomized
 * comparison of the KMP n-gram search with a direct transcription of the fd.h rule. */
#include "check.h"
#include "fastdecode/fd.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NINF (-INFINITY)

static _Alignas(64) unsigned char ws[1 << 16];

static fd_rows rows_f32(float *x, int64_t n_rows, int64_t n_cols, int64_t stride)
{
    fd_rows r = {x, FD_F32, n_rows, n_cols, stride};
    return r;
}

static fd_ids ids_of(const int64_t *d, int64_t n_rows, int64_t n_cols, const int64_t *b,
                     const int64_t *e)
{
    fd_ids r = {d, n_rows, n_cols, n_cols, b, e};
    return r;
}

static fd_param P(const double *v)
{
    return (fd_param){v, 0};
}

static int eq_f32(const float *a, const float *b, int n)
{
    for (int i = 0; i < n; i++) {
        if (!(a[i] == b[i] || (a[i] != a[i] && b[i] != b[i]))) {
            fprintf(stderr, "  [%d] %.9g != %.9g\n", i, a[i], b[i]);
            return 0;
        }
    }
    return 1;
}

/* ---- repetition penalty ---- */

static void test_repetition(void)
{
    /* each distinct id once: id 0 appears three times, divided by 2 once */
    float x[6] = {2, -2, 0.5f, -0.5f, 1, 3};
    const float want[6] = {1, -4, 0.5f, -1, 1, 3};
    int64_t h[5] = {0, 1, 0, 3, 0};
    fd_rows xr = rows_f32(x, 1, 6, 6);
    fd_ids ir = ids_of(h, 1, 5, NULL, NULL);
    double th = 2.0;
    fd_errinfo err;
    CHECK(fd_repetition_penalty(&xr, &ir, P(&th), ws, &err) == FD_OK);
    CHECK(eq_f32(x, want, 6));

    /* per-row penalty, begin/end bounds (id 9 lies outside [begin, end) and is never read), a
     * row stride wider than the row, and the seen table cleared between rows */
    float y[2 * 8] = {4, 4, 4, 4, 0, 0, 99, 99, 4, 4, 4, 4, 0, 0, 99, 99};
    int64_t h2[2 * 4] = {9, 0, 1, 9, 9, 9, 0, 2};
    int64_t b[2] = {1, 2}, e[2] = {3, 4};
    double th2[2] = {2.0, 4.0};
    fd_rows yr = rows_f32(y, 2, 6, 8);
    fd_ids i2 = ids_of(h2, 2, 4, b, e);
    CHECK(fd_repetition_penalty(&yr, &i2, (fd_param){th2, 1}, ws, &err) == FD_OK);
    /* row 0 reads {0, 1} (theta 2), row 1 reads {0, 2} (theta 4) */
    const float want2[16] = {2, 2, 4, 4, 0, 0, 99, 99, 1, 4, 1, 4, 0, 0, 99, 99};
    CHECK(eq_f32(y, want2, 16));

    /* penalty 1 is the identity; -0.0 stays -0.0 (not < 0, divided) */
    float z[3] = {-0.0f, 1.5f, -7.25f};
    int64_t h3[3] = {0, 1, 2};
    double one = 1.0;
    fd_rows zr = rows_f32(z, 1, 3, 3);
    fd_ids i3 = ids_of(h3, 1, 3, NULL, NULL);
    CHECK(fd_repetition_penalty(&zr, &i3, P(&one), ws, &err) == FD_OK);
    CHECK(z[0] == 0 && signbit(z[0]) && z[1] == 1.5f && z[2] == -7.25f);

    /* -inf stays -inf */
    float w[2] = {NINF, 1};
    fd_rows wr = rows_f32(w, 1, 2, 2);
    fd_ids i4 = ids_of(h3, 1, 2, NULL, NULL);
    double th3 = 1.5;
    CHECK(fd_repetition_penalty(&wr, &i4, P(&th3), ws, &err) == FD_OK);
    CHECK(w[0] == NINF && w[1] == 1.0f / 1.5f);
}

static void test_repetition_dtypes(void)
{
    /* float16: 3.0 / 1.3 = 2.3077 -> nearest half 2.3086 (0x409e); -3 * 1.3 = -3.9 -> -3.9004
     * (0xc3cd), as torch gives on float16 tensors; bfloat16: 0x4014 (2.3125), 0xc07a (-3.90625) */
    uint16_t hx[2] = {fd_float_to_half(3.0f), fd_float_to_half(-3.0f)};
    uint16_t bx[2] = {fd_float_to_bf16(3.0f), fd_float_to_bf16(-3.0f)};
    double dx[2] = {3.0, -3.0};
    int64_t h[2] = {0, 1};
    fd_ids ir = ids_of(h, 1, 2, NULL, NULL);
    double th = 1.3;
    fd_errinfo err;
    fd_rows hr = {hx, FD_F16, 1, 2, 2}, br = {bx, FD_BF16, 1, 2, 2}, dr = {dx, FD_F64, 1, 2, 2};
    CHECK(fd_repetition_penalty(&hr, &ir, P(&th), ws, &err) == FD_OK);
    CHECK(fd_repetition_penalty(&br, &ir, P(&th), ws, &err) == FD_OK);
    CHECK(fd_repetition_penalty(&dr, &ir, P(&th), ws, &err) == FD_OK);
    CHECK(hx[0] == fd_float_to_half(3.0f / 1.3f) && hx[1] == fd_float_to_half(-3.0f * 1.3f));
    CHECK(hx[0] == 0x409e && hx[1] == 0xc3cd);
    CHECK(bx[0] == 0x4014 && bx[1] == 0xc07a);
    CHECK(dx[0] == 3.0 / 1.3 && dx[1] == -3.0 * 1.3); /* float64 computed in double */
}

static void test_history_errors(void)
{
    float x[2 * 4] = {1, 1, 1, 1, 1, 1, 1, 1};
    const float orig[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    int64_t h[2 * 3] = {0, 1, 2, 3, 4, 1}; /* row 1, column 1 holds 4 >= V */
    fd_rows xr = rows_f32(x, 2, 4, 4);
    fd_ids ir = ids_of(h, 2, 3, NULL, NULL);
    double th = 2.0;
    fd_errinfo err;
    CHECK(fd_repetition_penalty(&xr, &ir, P(&th), ws, &err) == FD_ERANGE);
    CHECK(err.row == 1 && err.index == 1);
    /* row 0 written, row 1 untouched */
    CHECK(x[0] == 0.5f && x[1] == 0.5f && x[2] == 0.5f && x[3] == 1);
    CHECK(eq_f32(x + 4, orig + 4, 4));

    memcpy(x, orig, sizeof x);
    h[4] = -1;
    CHECK(fd_presence_frequency(&xr, &ir, P(&th), P(&th), ws, &err) == FD_ERANGE);
    CHECK(err.row == 1 && err.index == 1);
    CHECK(fd_no_repeat_ngram(&xr, &ir, 2, NINF, ws, &err) == FD_ERANGE);
    CHECK(err.row == 1 && err.index == 1);
    h[4] = 1;

    /* the range check covers only [begin, end): the bad id is excluded here */
    h[4] = 77;
    int64_t b[2] = {0, 2}, e[2] = {3, 3};
    fd_ids ib = ids_of(h, 2, 3, b, e);
    memcpy(x, orig, sizeof x);
    CHECK(fd_repetition_penalty(&xr, &ib, P(&th), ws, &err) == FD_OK);
    CHECK(x[4 + 1] == 0.5f && x[4 + 0] == 1);

    /* bounds */
    int64_t bb[2] = {0, 2}, eb[2] = {3, 1};
    fd_ids ibad = ids_of(h, 2, 3, bb, eb);
    CHECK(fd_repetition_penalty(&xr, &ibad, P(&th), ws, &err) == FD_ESHAPE && err.row == 1);
    int64_t eb2[2] = {4, 3};
    fd_ids ibad2 = ids_of(h, 2, 3, bb, eb2);
    CHECK(fd_presence_frequency(&xr, &ibad2, P(&th), P(&th), ws, &err) == FD_ESHAPE &&
          err.row == 0);
    int64_t bneg[2] = {-1, 0};
    fd_ids ibad3 = ids_of(h, 2, 3, bneg, NULL);
    CHECK(fd_no_repeat_ngram(&xr, &ibad3, 2, NINF, ws, &err) == FD_ESHAPE && err.row == 0);
    CHECK(fd_bad_words(&xr, &ibad3, (int64_t[]){1}, (int64_t[]){0, 1}, 1, NINF, &err) == FD_ESHAPE);
    /* ids with a different number of rows */
    fd_ids ione = ids_of(h, 1, 3, NULL, NULL);
    CHECK(fd_repetition_penalty(&xr, &ione, P(&th), ws, &err) == FD_ESHAPE);

    /* parameters: penalty > 0 and finite; presence / frequency finite */
    h[4] = 1;
    const double badp[] = {0.0, -1.0, NAN, INFINITY};
    for (int i = 0; i < 4; i++) {
        memcpy(x, orig, sizeof x);
        double pv[2] = {2.0, badp[i]};
        CHECK(fd_repetition_penalty(&xr, &ir, (fd_param){pv, 1}, ws, &err) == FD_EINVAL);
        CHECK(err.row == 1);
        CHECK(eq_f32(x + 4, orig + 4, 4));
    }
    double nanv = NAN, zero = 0;
    CHECK(fd_presence_frequency(&xr, &ir, P(&nanv), P(&zero), ws, &err) == FD_EINVAL);
    CHECK(fd_presence_frequency(&xr, &ir, P(&zero), P(&nanv), ws, &err) == FD_EINVAL);
    CHECK(fd_no_repeat_ngram(&xr, &ir, 0, NINF, ws, &err) == FD_EINVAL);
    CHECK(fd_no_repeat_ngram(&xr, &ir, 2, NAN, ws, &err) == FD_EINVAL);
}

/* ---- presence / frequency ---- */

static void test_presence_frequency(void)
{
    float x[2 * 4] = {0, 0, 0, 1, 0, 0, 0, 1};
    int64_t h[2 * 3] = {1, 1, 2, 3, 3, 3};
    double pres[2] = {0.5, 0.0}, freq[2] = {0.25, 1.0};
    fd_rows xr = rows_f32(x, 2, 4, 4);
    fd_ids ir = ids_of(h, 2, 3, NULL, NULL);
    fd_errinfo err;
    CHECK(fd_presence_frequency(&xr, &ir, (fd_param){pres, 1}, (fd_param){freq, 1}, ws, &err) ==
          FD_OK);
    const float want[8] = {0, -1.0f, -0.75f, 1, 0, 0, 0, -2};
    CHECK(eq_f32(x, want, 8));

    /* vLLM rounding: z - (float)f * count, then - (float)p, each in float32 */
    float y[1] = {1.0f};
    int64_t h1[7] = {0, 0, 0, 0, 0, 0, 0};
    double p1 = 0.1, f1 = 0.3;
    fd_rows yr = rows_f32(y, 1, 1, 1);
    fd_ids i1 = ids_of(h1, 1, 7, NULL, NULL);
    CHECK(fd_presence_frequency(&yr, &i1, P(&p1), P(&f1), ws, &err) == FD_OK);
    float expect = 1.0f;
    expect -= 0.3f * 7.0f;
    expect -= 0.1f;
    CHECK(y[0] == expect);
}

/* ---- no-repeat n-gram ---- */

typedef struct {
    int64_t n;
    int64_t len;
    int64_t hist[8];
    int banned[6]; /* V = 6 */
} ngram_case;

static const ngram_case ngram_cases[] = {
    {2, 3, {1, 2, 1}, {0, 0, 1, 0, 0, 0}},
    {2, 4, {1, 2, 1, 3}, {0, 0, 0, 0, 0, 0}}, /* suffix {3} never seen before */
    {3, 5, {1, 2, 3, 1, 2}, {0, 0, 0, 1, 0, 0}},
    {3, 6, {1, 2, 4, 1, 2, 5}, {0, 0, 0, 0, 0, 0}},
    {3, 7, {1, 2, 4, 1, 2, 5, 1}, {0, 0, 0, 0, 0, 0}},
    {3, 8, {1, 2, 4, 1, 2, 5, 1, 2}, {0, 0, 0, 0, 1, 1}},
    {1, 3, {4, 0, 4}, {1, 0, 0, 0, 1, 0}},    /* n = 1 bans the whole history */
    {3, 2, {1, 2}, {0, 0, 0, 0, 0, 0}},       /* len < n */
    {3, 3, {1, 2, 3}, {0, 0, 0, 0, 0, 0}},    /* len == n: window 0 is not the suffix */
    {3, 4, {0, 0, 0, 0}, {1, 0, 0, 0, 0, 0}}, /* overlapping matches */
    {2, 5, {5, 5, 5, 5, 5}, {0, 0, 0, 0, 0, 1}},
    {4, 7, {1, 1, 2, 1, 1, 2, 1}, {0, 1, 0, 0, 0, 0}}, /* prefix {1,2,1} at i = 1 */
    {4, 7, {1, 2, 1, 3, 1, 2, 1}, {0, 0, 0, 1, 0, 0}},
    {2, 0, {0}, {0, 0, 0, 0, 0, 0}},
};

/* direct transcription of the fd.h rule */
static void ngram_naive(const int64_t *t, int64_t len, int64_t n, int *ban)
{
    if (len < n) {
        return;
    }
    for (int64_t i = 0; i + n <= len; i++) {
        int ok = 1;
        for (int64_t q = 0; q < n - 1; q++) {
            ok &= t[i + q] == t[len - n + 1 + q];
        }
        if (ok) {
            ban[t[i + n - 1]] = 1;
        }
    }
}

static void test_ngram(void)
{
    fd_errinfo err;
    for (size_t c = 0; c < sizeof ngram_cases / sizeof ngram_cases[0]; c++) {
        const ngram_case *k = &ngram_cases[c];
        float x[6] = {0, 1, 2, 3, 4, 5};
        fd_rows xr = rows_f32(x, 1, 6, 6);
        fd_ids ir = ids_of(k->hist, 1, k->len, NULL, NULL);
        CHECK(fd_no_repeat_ngram(&xr, &ir, k->n, NINF, ws, &err) == FD_OK);
        int naive[6] = {0};
        ngram_naive(k->hist, k->len, k->n, naive);
        for (int i = 0; i < 6; i++) {
            int banned = x[i] == NINF;
            CHECK(banned == naive[i]);
            CHECK(banned == k->banned[i]);
        }
    }

    /* randomized: KMP path against the naive rule, small alphabets so matches are frequent */
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int trial = 0; trial < 3000; trial++) {
        enum { V = 5 };
        int64_t t[40];
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        int64_t len = (int64_t)((s >> 33) % 40);
        int64_t n = 1 + (int64_t)((s >> 20) % 6);
        int64_t alpha = 1 + (int64_t)((s >> 10) % V);
        for (int64_t i = 0; i < len; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            t[i] = (int64_t)((s >> 33) % (uint64_t)alpha);
        }
        float x[V] = {0, 0, 0, 0, 0};
        fd_rows xr = rows_f32(x, 1, V, V);
        fd_ids ir = ids_of(t, 1, len, NULL, NULL);
        int ok = fd_no_repeat_ngram(&xr, &ir, n, NINF, ws, &err) == FD_OK;
        int naive[V] = {0};
        ngram_naive(t, len, n, naive);
        for (int i = 0; i < V; i++) {
            ok &= (x[i] == NINF) == naive[i];
        }
        CHECK(ok);
    }

    /* n - 1 > V: the naive fallback (V = 2, n = 4) */
    float x[2] = {0, 0};
    int64_t t[7] = {0, 1, 0, 1, 1, 0, 1};
    fd_rows xr = rows_f32(x, 1, 2, 2);
    fd_ids ir = ids_of(t, 1, 7, NULL, NULL);
    CHECK(fd_no_repeat_ngram(&xr, &ir, 4, -100.0, ws, &err) == FD_OK);
    CHECK(x[0] == 0 && x[1] == -100.0f); /* prefix {1,0,1} at i = 1 -> ban t[4] = 1 */
    int naive[2] = {0};
    ngram_naive(t, 7, 4, naive);
    CHECK((x[0] == -100.0f) == naive[0] && (x[1] == -100.0f) == naive[1]);
}

/* ---- logit bias, suppress, bitmask ---- */

static void test_bias_suppress_bitmask(void)
{
    fd_errinfo err;
    float x[2 * 4] = {1, 2, 3, 4, 1, 2, 3, 4};
    fd_rows xr = rows_f32(x, 2, 4, 4);
    int64_t ids[3] = {3, 0, 3};
    double vals[2 * 3] = {1.0, -0.5, 2.0, NINF, 0.25, 0.0};
    CHECK(fd_logit_bias(&xr, ids, 3, vals, 3, &err) == FD_OK);
    const float want[8] = {0.5f, 2, 3, 7, 1.25f, 2, 3, NINF};
    CHECK(eq_f32(x, want, 8));
    /* shared values (stride 0) */
    float y[2 * 2] = {0, 0, 0, 0};
    fd_rows yr = rows_f32(y, 2, 2, 2);
    double sv[1] = {0.1};
    CHECK(fd_logit_bias(&yr, (int64_t[]){1}, 1, sv, 0, &err) == FD_OK);
    CHECK(y[1] == 0.1f && y[3] == 0.1f && y[0] == 0 && y[2] == 0);
    /* errors: id out of range, NaN value (row 1: row 0 already biased) */
    CHECK(fd_logit_bias(&yr, (int64_t[]){0, 2}, 2, vals, 0, &err) == FD_ERANGE);
    CHECK(err.row == -1 && err.index == 1);
    double nv[2 * 1] = {1.0, NAN};
    CHECK(fd_logit_bias(&yr, (int64_t[]){0}, 1, nv, 1, &err) == FD_EINVAL);
    CHECK(err.row == 1 && err.index == 0 && y[0] == 1.0f && y[2] == 0);

    float z[2 * 3] = {1, 2, 3, 4, 5, 6};
    fd_rows zr = rows_f32(z, 2, 3, 3);
    CHECK(fd_suppress_tokens(&zr, (int64_t[]){2, 0}, 2, NINF, &err) == FD_OK);
    const float wz[6] = {NINF, 2, NINF, NINF, 5, NINF};
    CHECK(eq_f32(z, wz, 6));
    CHECK(fd_suppress_tokens(&zr, (int64_t[]){1, -1}, 2, NINF, &err) == FD_ERANGE);
    CHECK(err.index == 1 && z[1] == 2);

    /* bitmask: V = 40 -> 2 words; row 0 allows {0, 5, 33}, row 1 allows everything but 39 */
    enum { V = 40 };
    float m[2 * V];
    for (int i = 0; i < 2 * V; i++) {
        m[i] = (float)i;
    }
    int32_t words[2 * 3] = {
        (int32_t)((1u << 0) | (1u << 5)), 1 << 1, 0x7777, -1, (int32_t)0x7fu, 0};
    fd_rows mr = rows_f32(m, 2, V, V);
    CHECK(fd_apply_bitmask(&mr, words, 2, 3, -1e9, &err) == FD_OK);
    int ok = 1;
    for (int i = 0; i < V; i++) {
        int allowed0 = i == 0 || i == 5 || i == 33;
        ok &= allowed0 ? m[i] == (float)i : m[i] == -1e9f;
        int allowed1 = i != 39;
        ok &= allowed1 ? m[V + i] == (float)(V + i) : m[V + i] == -1e9f;
    }
    CHECK(ok);
    /* a shared mask (row_stride 0) and too few words */
    float q[2 * 3] = {1, 2, 3, 4, 5, 6};
    fd_rows qr = rows_f32(q, 2, 3, 3);
    int32_t w1[1] = {2};
    CHECK(fd_apply_bitmask(&qr, w1, 1, 0, NINF, &err) == FD_OK);
    const float wq[6] = {NINF, 2, NINF, NINF, 5, NINF};
    CHECK(eq_f32(q, wq, 6));
    CHECK(fd_apply_bitmask(&mr, words, 1, 3, NINF, &err) == FD_ESHAPE);
}

/* ---- bad words ---- */

static void test_bad_words(void)
{
    fd_errinfo err;
    /* words: [3], [1, 2], [0, 1, 4], [2, 5, 1, 0] (longer than row 1's history) */
    int64_t flat[] = {3, 1, 2, 0, 1, 4, 2, 5, 1, 0};
    int64_t off[] = {0, 1, 3, 6, 10};
    float x[3 * 6];
    for (int i = 0; i < 18; i++) {
        x[i] = 1;
    }
    int64_t h[3 * 3] = {5, 0, 1,  /* ends with 0, 1: bans 3, 2 (prefix {1}), 4 (prefix {0,1}) */
                        0, 0, 2,  /* bans 3 only */
                        2, 5, 1}; /* bans 3, 2 (prefix {1}), 0 (prefix {2,5,1}: all of it) */
    fd_rows xr = rows_f32(x, 3, 6, 6);
    fd_ids ir = ids_of(h, 3, 3, NULL, NULL);
    CHECK(fd_bad_words(&xr, &ir, flat, off, 4, NINF, &err) == FD_OK);
    const float want[18] = {1,    1, NINF, NINF, NINF, 1, /* row 0 */
                            1,    1, 1,    NINF, 1,    1, /* row 1 */
                            NINF, 1, NINF, NINF, 1,    1};
    CHECK(eq_f32(x, want, 18));
    /* empty history: only single-token words */
    float y[6] = {1, 1, 1, 1, 1, 1};
    int64_t b[1] = {0}, e[1] = {0};
    fd_rows yr = rows_f32(y, 1, 6, 6);
    fd_ids iy = ids_of(h, 1, 3, b, e);
    CHECK(fd_bad_words(&yr, &iy, flat, off, 4, NINF, &err) == FD_OK);
    const float wy[6] = {1, 1, 1, NINF, 1, 1};
    CHECK(eq_f32(y, wy, 6));
    /* errors: id out of range in a word (position in flat), empty word */
    int64_t flat2[] = {1, 6};
    CHECK(fd_bad_words(&yr, &iy, flat2, (int64_t[]){0, 2}, 1, NINF, &err) == FD_ERANGE);
    CHECK(err.row == -1 && err.index == 1);
    CHECK(fd_bad_words(&yr, &iy, flat2, (int64_t[]){0, 0, 1}, 2, NINF, &err) == FD_ESHAPE);
    CHECK(err.index == 0);
}

static void test_workspace_and_empty(void)
{
    CHECK(fd_penalty_workspace(1000) >= 4000);
    CHECK(fd_penalty_workspace(0) >= 1);
    fd_errinfo err;
    /* zero rows */
    fd_rows xr = {NULL, FD_F32, 0, 10, 10};
    fd_ids ir = {NULL, 0, 0, 0, NULL, NULL};
    double th = 2;
    CHECK(fd_repetition_penalty(&xr, &ir, P(&th), ws, &err) == FD_OK);
    CHECK(fd_presence_frequency(&xr, &ir, P(&th), P(&th), ws, &err) == FD_OK);
    CHECK(fd_no_repeat_ngram(&xr, &ir, 3, NINF, ws, &err) == FD_OK);
}

int main(void)
{
    test_repetition();
    test_repetition_dtypes();
    test_history_errors();
    test_presence_frequency();
    test_ngram();
    test_bias_suppress_bitmask();
    test_bad_words();
    test_workspace_and_empty();
    CHECK_REPORT("test_penalty");
}
