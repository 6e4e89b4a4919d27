/* Tests for dtype.c's row loading of float16 / bfloat16 (the branch-free conversion loops): every
 * one of the 65,536 bit patterns of each format loads to the bits of the scalar conversion
 * fd_half_to_float / fd_bf16_to_float, and the first NaN / +inf is reported with its index, on
 * every ISA level (the F16C loop from AVX2 up). */
#include "check.h"
#include "fastdecode/fd.h"
#include "internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int bad_bits(float f) { return f != f || f == INFINITY; }

static void test_format(fd_dtype dt, float (*conv)(uint16_t))
{
    /* all finite and -inf patterns in one row (NaN / +inf left out), then each bad one alone */
    uint16_t *h = malloc(65536 * sizeof *h);
    float *dst = malloc(65536 * sizeof *dst);
    int64_t n = 0;
    for (uint32_t b = 0; b < 65536; b++) {
        if (!bad_bits(conv((uint16_t)b))) {
            h[n++] = (uint16_t)b;
        }
    }
    fd_rows r = {h, dt, 1, n, n};
    fd_errinfo e;
    CHECK(fd_load_row(&r, 0, dst, &e) == FD_OK);
    int64_t mism = 0;
    for (int64_t i = 0; i < n; i++) {
        float ref = conv(h[i]);
        mism += memcmp(&ref, &dst[i], sizeof ref) != 0;
    }
    CHECK(mism == 0);
    /* a NaN or +inf at position 5 of a row of 9 (after a -inf and a subnormal) */
    int64_t n_bad = 0, right = 0;
    for (uint32_t b = 0; b < 65536; b++) {
        float f = conv((uint16_t)b);
        if (!bad_bits(f)) {
            continue;
        }
        uint16_t row[9] = {0x0001, h[3], 0, 0, 0, (uint16_t)b, 0, (uint16_t)b, 0};
        fd_rows rb = {row, dt, 1, 9, 9};
        fd_status st = fd_load_row(&rb, 0, dst, &e);
        n_bad++;
        right += st == (f != f ? FD_ENAN : FD_EPOSINF) && e.row == 0 && e.index == 5;
    }
    CHECK(n_bad > 0 && right == n_bad);
    free(h);
    free(dst);
}

int main(void)
{
    /* every ISA level: float16 has an F16C path from AVX2 up */
    int best = fdi_set_isa(-1);
    for (int level = FDI_ISA_PORTABLE; level <= best; level++) {
        fdi_set_isa(level);
        test_format(FD_F16, fd_half_to_float);
        test_format(FD_BF16, fd_bf16_to_float);
    }
    fdi_set_isa(-1);
    CHECK_REPORT("test_dtype_load");
}
