/*
 * dtype.c: storage formats in and out of float32.
 *
 * float16 and bfloat16 are storage formats only: a row is widened to float32 once, on load, and a
 * written value is rounded back with round-to-nearest-even (the IEEE default, and what NumPy and
 * torch do), so `out=` on a float16 array gives the same bits as NumPy's astype. The conversions
 * are written out by hand (no F16C intrinsics) so the portable build needs no ISA flags; they run
 * once per element and are not on a hot path next to the exp of the softmax.
 */
#include "internal.h"

#include <string.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define FDI_DT_X86 1
#include <immintrin.h>
#else
#define FDI_DT_X86 0
#endif

float fd_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    }
    else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (mant << 13);
    }
    else if (mant == 0) {
        bits = sign;
    }
    else {
        /* subnormal half: normalise */
        exp = 113;
        while ((mant & 0x400u) == 0) {
            mant <<= 1;
            exp--;
        }
        mant &= 0x3ffu;
        bits = sign | (exp << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

uint16_t fd_float_to_half(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) { /* inf or NaN */
        return (uint16_t)(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u));
    }
    if (absx >= 0x477ff000u) { /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00u);
    }
    if (absx < 0x38800000u) { /* below the smallest normal half (2^-14): subnormal or zero */
        if (absx < 0x33000000u) { /* < 2^-25: rounds to zero */
            return (uint16_t)sign;
        }
        uint32_t e = absx >> 23;
        uint32_t m = (absx & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e; /* 14..24 */
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (q & 1u))) {
            q++;
        }
        return (uint16_t)(sign | q);
    }
    uint32_t r = absx - 0x38000000u; /* rebias exponent: 127 - 15 = 112 -> 112 << 23 */
    uint32_t q = r >> 13;
    uint32_t rem = r & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) {
        q++;
    }
    return (uint16_t)(sign | q);
}

float fd_bf16_to_float(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

uint16_t fd_float_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffffu) > 0x7f800000u) {
        return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    }
    uint32_t lsb = (x >> 16) & 1u;
    x += 0x7fffu + lsb;
    return (uint16_t)(x >> 16);
}

int fdi_valid_rows(const fd_rows *x)
{
    if (x->n_rows < 0 || x->n_cols < 0) {
        return 0;
    }
    if (x->n_rows > 0 && x->n_cols > 0 && x->data == NULL) {
        return 0;
    }
    if (!(x->dtype == FD_F32 || x->dtype == FD_F64 || x->dtype == FD_F16 || x->dtype == FD_BF16)) {
        return 0;
    }
    return x->n_rows <= 1 || x->row_stride >= x->n_cols;
}

/* fd_half_to_float without a branch, so that a row's conversion vectorizes (it was a scalar
 * loop with a branch per element: 2.4 ns per element; and a call to an exported function is
 * not inlined in the -fPIC build, so bfloat16 used fd_bf16_to_float's bits inline below): the
 * same bits for every input. A
 * subnormal half m 2^-24 is the exact float product (float)m * 2^-24 (normal in float32) instead
 * of a normalisation loop; inf / NaN keep the mantissa shifted as fd_half_to_float does. */
static inline float half_to_float_nb(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    uint32_t normal = sign | ((e + 112u) << 23) | (m << 13);
    uint32_t special = sign | 0x7f800000u | (m << 13);
    float sub = (float)(int32_t)m * 0x1p-24f;
    uint32_t subb;
    memcpy(&subb, &sub, sizeof subb);
    subb |= sign;
    uint32_t is_special = -(uint32_t)(e == 0x1fu), is_sub = -(uint32_t)(e == 0u);
    uint32_t bits =
        (normal & ~(is_special | is_sub)) | (special & is_special) | (subb & is_sub);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

#if FDI_DT_X86
/* float16 rows through the F16C instruction (8 at a time; exact, as every half is a float),
 * used when the dispatch level (isa.c) is AVX2 or AVX-512 (see use_f16c): 0.1 ns per
 * element instead of 0.7 for the SSE2 loop. Bits as half_to_float_nb for every non-NaN input
 * (a signalling NaN comes out quiet, but any NaN fails the row with FD_ENAN, whose index the
 * rescan below finds either way). Returns whether the row holds NaN or +inf. */
__attribute__((target("avx2,f16c"))) static int half_row_f16c(const uint16_t *s, int64_t n,
                                                               float *dst)
{
    const __m256 inf = _mm256_set1_ps(INFINITY);
    __m256 bad = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 f = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(s + i)));
        _mm256_storeu_ps(dst + i, f);
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(f, inf, _CMP_NLT_UQ)); /* !(f < inf) */
    }
    int any = _mm256_movemask_ps(bad) != 0;
    _mm256_zeroupper(); /* see isa.c, FDI_VZ */
    for (; i < n; i++) {
        float f = half_to_float_nb(s[i]);
        dst[i] = f;
        any |= (f != f) | (f == INFINITY);
    }
    return any;
}

/* F16C came before AVX2 on every x86 line (Intel Ivy Bridge, AMD Piledriver), so the AVX2 level
 * implies it; asking cpuid here would cost a VM exit per row under a hypervisor, and caching the
 * answer would be a second global in the core. */
static int use_f16c(void) { return fdi_isa() >= FDI_ISA_AVX2; }
#endif

static inline int classify(float f, fd_status *st)
{
    if (f != f) {
        *st = FD_ENAN;
        return 1;
    }
    if (f == INFINITY) {
        *st = FD_EPOSINF;
        return 1;
    }
    return 0;
}

fd_status fd_load_row(const fd_rows *x, int64_t row, float *dst, fd_errinfo *err)
{
    int64_t n = x->n_cols;
    fd_status st = FD_OK;
    int64_t bad = -1;
    switch (x->dtype) {
    case FD_F32: {
        const float *s = (const float *)x->data + row * x->row_stride;
        int any = 0;
        for (int64_t i = 0; i < n; i++) {
            float f = s[i];
            dst[i] = f;
            any |= (f != f) | (f == INFINITY);
        }
        if (!any) {
            return FD_OK;
        }
        for (int64_t i = 0; i < n && bad < 0; i++) {
            if (classify(dst[i], &st)) {
                bad = i;
            }
        }
        break;
    }
    case FD_F64: {
        const double *s = (const double *)x->data + row * x->row_stride;
        for (int64_t i = 0; i < n; i++) {
            double d = s[i];
            if (d != d || d == INFINITY) {
                st = d != d ? FD_ENAN : FD_EPOSINF;
                bad = i;
                break;
            }
            /* finite doubles beyond float range saturate to +-FLT_MAX rather than becoming inf */
            if (d > 3.4028234663852886e38) {
                d = 3.4028234663852886e38;
            }
            else if (d < -3.4028234663852886e38 && d != -INFINITY) {
                d = -3.4028234663852886e38;
            }
            dst[i] = (float)d;
        }
        break;
    }
    case FD_F16:
    case FD_BF16: {
        /* convert the whole row branch-free (the loop vectorizes), then look for the first
         * NaN / +inf only when there is one, as for float32 */
        const uint16_t *s = (const uint16_t *)x->data + row * x->row_stride;
        int any = 0;
#if FDI_DT_X86
        if (x->dtype == FD_F16 && use_f16c()) {
            any = half_row_f16c(s, n, dst);
        }
        else
#endif
        if (x->dtype == FD_F16) {
            for (int64_t i = 0; i < n; i++) {
                float f = half_to_float_nb(s[i]);
                dst[i] = f;
                any |= (f != f) | (f == INFINITY);
            }
        }
        else {
            for (int64_t i = 0; i < n; i++) {
                uint32_t u = (uint32_t)s[i] << 16; /* fd_bf16_to_float, inlined */
                float f;
                memcpy(&f, &u, sizeof f);
                dst[i] = f;
                any |= (f != f) | (f == INFINITY);
            }
        }
        if (!any) {
            return FD_OK;
        }
        for (int64_t i = 0; i < n && bad < 0; i++) {
            if (classify(dst[i], &st)) {
                bad = i;
            }
        }
        break;
    }
    default:
        return FD_EINVAL;
    }
    if (bad >= 0) {
        if (err) {
            err->row = row;
            err->index = bad;
        }
        return st;
    }
    return FD_OK;
}

void fd_store(const fd_rows *x, int64_t row, int64_t col, double value)
{
    int64_t off = row * x->row_stride + col;
    switch (x->dtype) {
    case FD_F32:
        ((float *)x->data)[off] = (float)value;
        break;
    case FD_F64:
        ((double *)x->data)[off] = value;
        break;
    case FD_F16:
        ((uint16_t *)x->data)[off] = fd_float_to_half((float)value);
        break;
    case FD_BF16:
        ((uint16_t *)x->data)[off] = fd_float_to_bf16((float)value);
        break;
    }
}

void fd_copy_elem(const fd_rows *src, const fd_rows *dst, int64_t row, int64_t col)
{
    int64_t so = row * src->row_stride + col;
    int64_t d = row * dst->row_stride + col;
    switch (src->dtype) {
    case FD_F32:
        ((float *)dst->data)[d] = ((const float *)src->data)[so];
        break;
    case FD_F64:
        ((double *)dst->data)[d] = ((const double *)src->data)[so];
        break;
    case FD_F16:
    case FD_BF16:
        ((uint16_t *)dst->data)[d] = ((const uint16_t *)src->data)[so];
        break;
    }
}

fd_status fd_check_rows(const fd_rows *x, fd_errinfo *err)
{
    float buf[256];
    for (int64_t r = 0; r < x->n_rows; r++) {
        /* the row in 256-element slices through fd_load_row, which reports the first NaN / +inf */
        for (int64_t c = 0; c < x->n_cols; c += 256) {
            fd_rows s = *x;
            s.data = (char *)x->data + (size_t)c * (x->dtype == FD_F64   ? 8
                                                    : x->dtype == FD_F32 ? 4
                                                                         : 2);
            s.n_cols = x->n_cols - c < 256 ? x->n_cols - c : 256;
            fd_status st = fd_load_row(&s, r, buf, err);
            if (st != FD_OK) {
                if (err) {
                    err->index += c;
                }
                return st;
            }
        }
    }
    return FD_OK;
}

/* Element (r, c) widened exactly to double (float16 / bfloat16 / float32 values are floats). */
double fdi_load_elem(const fd_rows *x, int64_t r, int64_t c)
{
    int64_t off = r * x->row_stride + c;
    switch (x->dtype) {
    case FD_F32:
        return ((const float *)x->data)[off];
    case FD_F64:
        return ((const double *)x->data)[off];
    case FD_F16:
        return fd_half_to_float(((const uint16_t *)x->data)[off]);
    case FD_BF16:
        return fd_bf16_to_float(((const uint16_t *)x->data)[off]);
    }
    return 0.0;
}
