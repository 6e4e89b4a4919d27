/* Tests for floor.c (the benchmark suite's calibration floors): hand-computed maxima and exp
 * sums, -inf and empty rows, storage dtypes and strides, errors, and identical bits on every ISA
 * path. */
#include "check.h"
#include "fastdecode/fd.h"
#include "internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void *ws_alloc(size_t bytes)
{
    size_t n = (bytes + 63) / 64 * 64;
    return aligned_alloc(64, n ? n : 64);
}

static void test_table(void)
{
    /* two rows of three with a stride of 4 (the gap holds NaN: never read) */
    float x[8] = {1, 2, 3, NAN, -INFINITY, -INFINITY, -INFINITY, NAN};
    fd_rows r = {x, FD_F32, 2, 3, 4};
    double out[2];
    void *ws = ws_alloc(fd_floor_workspace(3));
    fd_errinfo e;
    CHECK(fd_floor(&r, FD_FLOOR_READ, out, ws, &e) == FD_OK);
    CHECK(out[0] == 3.0 && out[1] == -INFINITY && e.row == -1 && e.index == -1);
    CHECK(fd_floor(&r, FD_FLOOR_EXP_SUM, out, ws, &e) == FD_OK);
    CHECK_NEAR(out[0], 1.0 + exp(-1.0) + exp(-2.0), 2e-7);
    CHECK(out[1] == 0.0);
    /* float16: 0, 1 and -1 are exact */
    uint16_t h[3] = {fd_float_to_half(0.0f), fd_float_to_half(1.0f), fd_float_to_half(-1.0f)};
    fd_rows rh = {h, FD_F16, 1, 3, 3};
    CHECK(fd_floor(&rh, FD_FLOOR_READ, out, ws, &e) == FD_OK && out[0] == 1.0);
    CHECK(fd_floor(&rh, FD_FLOOR_EXP_SUM, out, ws, &e) == FD_OK);
    CHECK_NEAR(out[0], 1.0 + exp(-1.0) + exp(-2.0), 2e-7);
    /* errors: NaN named, +inf named, an unknown kind, a bad shape */
    float bad[3] = {0, NAN, 1};
    fd_rows rb = {bad, FD_F32, 1, 3, 3};
    CHECK(fd_floor(&rb, FD_FLOOR_EXP_SUM, out, ws, &e) == FD_ENAN && e.row == 0 && e.index == 1);
    bad[1] = INFINITY;
    CHECK(fd_floor(&rb, FD_FLOOR_READ, out, ws, &e) == FD_EPOSINF && e.index == 1);
    CHECK(fd_floor(&r, 2, out, ws, &e) == FD_EINVAL);
    fd_rows rs = {x, FD_F32, 2, 3, 2}; /* overlapping rows */
    CHECK(fd_floor(&rs, FD_FLOOR_READ, out, ws, &e) == FD_ESHAPE);
    fd_rows r0 = {x, FD_F32, 1, 0, 0};
    CHECK(fd_floor(&r0, FD_FLOOR_READ, out, ws, &e) == FD_OK && out[0] == -INFINITY);
    CHECK(fd_floor(&r0, FD_FLOOR_EXP_SUM, out, ws, &e) == FD_OK && out[0] == 0.0);
    free(ws);
}

/* a long row at an odd offset: the same bits on every ISA path, and the sum within 2e-7 of a
 * double-precision reference */
static void test_isa(void)
{
    int64_t n = 100003;
    float *buf = malloc((size_t)(n + 1) * sizeof *buf), *x = buf + 1;
    uint32_t s = 12345;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)((double)(s >> 8) / (1 << 24) * 20.0 - 10.0);
    }
    fd_rows r = {x, FD_F32, 1, n, n};
    void *ws = ws_alloc(fd_floor_workspace(n));
    double ref = 0.0, m = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        m = x[i] > m ? x[i] : m;
    }
    for (int64_t i = 0; i < n; i++) {
        ref += exp((double)x[i] - m);
    }
    int best = fdi_set_isa(-1);
    double first[2] = {0, 0};
    for (int level = FDI_ISA_PORTABLE; level <= best; level++) {
        fdi_set_isa(level);
        for (int kind = 0; kind < 2; kind++) {
            double out;
            CHECK(fd_floor(&r, kind, &out, ws, NULL) == FD_OK);
            if (level == FDI_ISA_PORTABLE) {
                first[kind] = out;
            }
            CHECK(memcmp(&out, &first[kind], sizeof out) == 0);
        }
    }
    fdi_set_isa(-1);
    CHECK(first[0] == m);
    CHECK(fabs(first[1] - ref) <= 2e-7 * ref);
    free(ws);
    free(buf);
}

int main(void)
{
    test_table();
    test_isa();
    CHECK_REPORT("test_floor");
}
