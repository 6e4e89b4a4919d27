/* Tests for speculative.c: the greedy rule (ties, partial n_draft, the bonus argmax); the sampling
 * rule with hand-checked uniforms (a draft of target probability 0 is always rejected, q == p is
 * always accepted, the bonus token is fd_sample's draw with the same uniform); the residual's
 * distribution over many seeds against normalize(max(0, p - q)); per-row independence; every
 * storage dtype; and the error statuses with their row and position. */
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

static fd_rows rows32(float *x, int64_t n_rows, int64_t V)
{
    fd_rows r = {x, FD_F32, n_rows, V, V};
    return r;
}

static void test_greedy(void *ws)
{
    /* one row, gamma 3, V 4: argmaxes 2, 3, 0 (tie 0/1), 1 */
    float t[4 * 4] = {0, 0, 5, 1, /**/ 0, 0, 1, 5, /**/ 3, 3, 1, 1, /**/ 0, 9, 0, 0};
    fd_rows T = rows32(t, 4, 4);
    uint8_t g = 1;
    int64_t acc = -1, nxt = -1;
    fd_errinfo e;
    int64_t d1[3] = {2, 3, 0};
    CHECK(fd_spec_verify(&T, NULL, d1, 3, 3, NULL, &g, NULL, 0, NULL, 0, &acc, &nxt, ws, &e) == FD_OK);
    CHECK(acc == 3 && nxt == 1);
    int64_t d2[3] = {2, 3, 1}; /* 1 is tied with 0 but not the first maximum */
    CHECK(fd_spec_verify(&T, NULL, d2, 3, 3, NULL, &g, NULL, 0, NULL, 0, &acc, &nxt, ws, &e) == FD_OK);
    CHECK(acc == 2 && nxt == 0);
    int64_t d3[3] = {1, 3, 0};
    CHECK(fd_spec_verify(&T, NULL, d3, 3, 3, NULL, &g, NULL, 0, NULL, 0, &acc, &nxt, ws, &e) == FD_OK);
    CHECK(acc == 0 && nxt == 2);
    int64_t n1 = 1; /* only the first draft counts: the next token is row 1's argmax */
    CHECK(fd_spec_verify(&T, NULL, d1, 3, 3, &n1, &g, NULL, 0, NULL, 0, &acc, &nxt, ws, &e) == FD_OK);
    CHECK(acc == 1 && nxt == 3);
    int64_t n0 = 0;
    CHECK(fd_spec_verify(&T, NULL, d1, 3, 3, &n0, &g, NULL, 0, NULL, 0, &acc, &nxt, ws, &e) == FD_OK);
    CHECK(acc == 0 && nxt == 2);
    /* gamma 0: a plain greedy step */
    fd_rows T0 = rows32(t, 1, 4);
    CHECK(fd_spec_verify(&T0, NULL, NULL, 0, 0, NULL, &g, NULL, 0, NULL, 0, &acc, &nxt, ws, &e) == FD_OK);
    CHECK(acc == 0 && nxt == 2);
}

static void test_sampling_rules(void *ws)
{
    /* target row 0 gives token 2 probability 0: a deterministic draft 2 is always rejected and
     * the residual (p without token 2) never draws 2 */
    float t[2 * 3] = {0, 0, NINF, /**/ 1, 2, 3};
    fd_rows T = rows32(t, 2, 3);
    int64_t d = 2, acc, nxt;
    fd_errinfo e;
    for (uint64_t s = 0; s < 300; s++) {
        int64_t pos = (int64_t)s * 7;
        CHECK(fd_spec_verify(&T, NULL, &d, 1, 1, NULL, NULL, &s, 0, &pos, 0, &acc, &nxt, ws, &e) ==
              FD_OK);
        CHECK(acc == 0 && (nxt == 0 || nxt == 1));
    }
    /* q == p (the draft's row is the target's): every draft accepted; the bonus token is exactly
     * fd_sample's pick of row 1 with the uniform fd_uniform(seed, position + 1, NEXT) */
    float q[3] = {0, 0, NINF};
    fd_rows Q = rows32(q, 1, 3);
    int64_t d0 = 1;
    for (uint64_t s = 0; s < 300; s++) {
        int64_t pos = 11;
        CHECK(fd_spec_verify(&T, &Q, &d0, 1, 1, NULL, NULL, &s, 0, &pos, 0, &acc, &nxt, ws, &e) ==
              FD_OK);
        CHECK(acc == 1);
        double u = fd_uniform(s, 12, FD_DRAW_SPEC_NEXT);
        fd_sample_params sp;
        double one = 1.0, zero = 0.0;
        fd_param P1 = {&one, 0}, P0 = {&zero, 0};
        sp.temperature = P1;
        sp.top_k = P0;
        sp.top_p = P1;
        sp.min_p = P0;
        sp.typical_p = P1;
        sp.epsilon = P0;
        sp.eta = P0;
        sp.top_n_sigma = P0;
        sp.order = FD_ORDER_HF;
        fd_rng_args rng = {NULL, 0, NULL, 0, &u, 0};
        fd_rows row1 = rows32(t + 3, 1, 3);
        int64_t tok = -1;
        void *ws2 = ws_alloc(fd_sample_workspace(3));
        CHECK(fd_sample(&row1, &sp, &rng, &tok, NULL, ws2, &e) == FD_OK);
        free(ws2);
        CHECK(tok == nxt);
    }
}

static void test_residual_distribution(void *ws)
{
    /* p = (.5, .3, .2), q = (.2, .3, .5): drafts 0 and 1 are always accepted (p >= q), draft 2
     * with probability p/q = .4, and on its rejection the residual max(0, p - q) = (.3, 0, 0)
     * gives token 0. The first token is then distributed as p: .2 + .5 * .6 = .5, .3, .5 * .4. */
    float t[2 * 3], q[3];
    const double p[3] = {0.5, 0.3, 0.2}, qq[3] = {0.2, 0.3, 0.5};
    for (int i = 0; i < 3; i++) {
        t[i] = (float)log(p[i]);
        t[3 + i] = 0.0f;
        q[i] = (float)log(qq[i]);
    }
    fd_rows T = rows32(t, 2, 3), Q = rows32(q, 1, 3);
    int64_t count[3] = {0, 0, 0};
    const int N = 60000;
    fd_errinfo e;
    for (int s = 0; s < N; s++) {
        uint64_t seed = (uint64_t)s;
        int64_t pos = 0, acc, nxt;
        /* the draft token drawn from q with its own stream */
        double u = fd_uniform(seed, 0, FD_DRAW_SPEC_DRAFT);
        int64_t d = u < 0.2 ? 0 : (u < 0.5 ? 1 : 2); /* close to fdi_pick's float32 weights */
        CHECK(fd_spec_verify(&T, &Q, &d, 1, 1, NULL, NULL, &seed, 0, &pos, 0, &acc, &nxt, ws, &e) ==
              FD_OK);
        count[acc ? d : nxt]++;
    }
    for (int i = 0; i < 3; i++) {
        double f = (double)count[i] / N, sd = sqrt(p[i] * (1 - p[i]) / N);
        CHECK(fabs(f - p[i]) < 5 * sd);
    }
}

static void test_dtypes_and_rows(void *ws)
{
    /* two rows, gamma 1, V 3, stored as float64 / float16 / bfloat16: greedy results per row */
    const float vals[2 * 2 * 3] = {1, 3, 2, 0, 0, 1, /**/ 2, 1, 0, 0, 4, 1};
    int64_t d[2] = {1, 1}, acc[2], nxt[2];
    uint8_t g[2] = {1, 1};
    fd_errinfo e;
    double x64[12];
    uint16_t x16[12], xb[12];
    for (int i = 0; i < 12; i++) {
        x64[i] = vals[i];
        x16[i] = fd_float_to_half(vals[i]);
        xb[i] = fd_float_to_bf16(vals[i]);
    }
    fd_rows R[3] = {{x64, FD_F64, 4, 3, 3}, {x16, FD_F16, 4, 3, 3}, {xb, FD_BF16, 4, 3, 3}};
    for (int k = 0; k < 3; k++) {
        CHECK(fd_spec_verify(&R[k], NULL, d, 1, 1, NULL, g, NULL, 0, NULL, 0, acc, nxt, ws, &e) ==
              FD_OK);
        CHECK(acc[0] == 1 && nxt[0] == 2 && acc[1] == 0 && nxt[1] == 0);
    }
}

static void test_errors(void *ws)
{
    float t[2 * 2 * 3] = {0};
    fd_rows T = rows32(t, 4, 3);
    int64_t d[2] = {0, 0}, acc[2], nxt[2], bad_n[2] = {0, 2};
    uint8_t g[2] = {1, 1};
    uint64_t s = 1;
    int64_t pos = 0;
    fd_errinfo e;
    fd_rows T3 = rows32(t, 3, 3);
    CHECK(fd_spec_verify(&T3, NULL, d, 1, 1, NULL, g, NULL, 0, NULL, 0, acc, nxt, ws, &e) == FD_ESHAPE);
    CHECK(fd_spec_verify(&T, NULL, d, 1, 1, bad_n, g, NULL, 0, NULL, 0, acc, nxt, ws, &e) == FD_EINVAL &&
          e.row == 1);
    int64_t dr[2] = {0, 3};
    CHECK(fd_spec_verify(&T, NULL, dr, 1, 1, NULL, g, NULL, 0, NULL, 0, acc, nxt, ws, &e) == FD_ERANGE &&
          e.row == 1 && e.index == 0);
    CHECK(fd_spec_verify(&T, NULL, d, 1, 1, NULL, NULL, NULL, 0, NULL, 0, acc, nxt, ws, &e) == FD_EINVAL);
    t[2 * 3 + 1] = NAN; /* row 1, position 0 */
    CHECK(fd_spec_verify(&T, NULL, d, 1, 1, NULL, NULL, &s, 0, &pos, 0, acc, nxt, ws, &e) == FD_ENAN &&
          e.row == 1 && e.index == 0);
    t[2 * 3 + 1] = 0;
    t[3] = t[4] = t[5] = NINF; /* row 0, position 1 (read after accepting draft 0 greedily) */
    CHECK(fd_spec_verify(&T, NULL, d, 1, 1, NULL, g, NULL, 0, NULL, 0, acc, nxt, ws, &e) == FD_ENOFINITE &&
          e.row == 0 && e.index == 1);
    t[3] = t[4] = t[5] = 0;
    float q[2 * 3] = {NINF, 0, 0, 0, 0, 0}; /* draft 0 of row 0 has q = 0 */
    fd_rows Q = rows32(q, 2, 3);
    CHECK(fd_spec_verify(&T, &Q, d, 1, 1, NULL, NULL, &s, 0, &pos, 0, acc, nxt, ws, &e) == FD_EINVAL &&
          e.row == 0 && e.index == 2);
    /* an invalid dtype is a shape error whatever the batch (fuzz: regress-spec-bad-dtype) */
    fd_rows Tbad = T;
    Tbad.dtype = (fd_dtype)7;
    CHECK(fd_spec_verify(&Tbad, NULL, d, 1, 1, NULL, g, NULL, 0, NULL, 0, acc, nxt, ws, &e) == FD_ESHAPE);
    Tbad.n_rows = 0;
    CHECK(fd_spec_verify(&Tbad, NULL, d, 1, 1, NULL, g, NULL, 0, NULL, 0, acc, nxt, ws, &e) == FD_ESHAPE);
    CHECK(fd_spec_verify(&T, NULL, d, 1, INT64_MAX, NULL, g, NULL, 0, NULL, 0, acc, nxt, ws, &e) == FD_ESHAPE);
    fd_rows Qbad = rows32(q, 1, 3);
    CHECK(fd_spec_verify(&T, &Qbad, d, 1, 1, NULL, NULL, &s, 0, &pos, 0, acc, nxt, ws, &e) == FD_ESHAPE);
}

int main(void)
{
    void *ws = ws_alloc(fd_spec_verify_workspace(64));
    test_greedy(ws);
    test_sampling_rules(ws);
    test_residual_distribution(ws);
    test_dtypes_and_rows(ws);
    test_errors(ws);
    free(ws);
    CHECK_REPORT("test_speculative");
}
