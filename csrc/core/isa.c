/*
 * isa.c: the row kernels that dominate run time, one copy per instruction set, chosen at run time.
 *
 * What is here. The few loops that read a whole vocabulary row (the rest of the core works on
 * short candidate lists or is not on a hot path):
 *   block_max   the maximum of every 64-element block, and whether the row holds NaN or +inf (one
 *               read of the row; argmax, softmax and the fused sampler start from it, and the
 *               block maxima drive the top-k / top-p candidate filters of select.c);
 *   exp, exp_sum  w = exp(x - shift) (optionally stored) and sum w in double;
 *   div_f32     (float)((double)e / z), softmax's normalisation;
 *   shift_div   (float)((double)(x - m) / t), softmax's temperature;
 *   keep_f32, count_in, moments, sq_dev, dot_shift_pos  the dense filters' write pass (the keep
 *               rule of internal.h), a range count, top-n-sigma's sums, eta's entropy dot product:
 *               one C body compiled per ISA (compares, selects and lane sums in a fixed order are
 *               exact, so the compiler's vectorisation cannot change a bit);
 *   gather_keep the fused sampler's gather of the columns a keep rule keeps (the C body per ISA,
 *               plus an AVX-512 copy that packs 16 columns with vcompressps): data movement only;
 *   lbins, bin_gather  the linear-bin pass of select.c's top-p / typical cut and its count-below
 *               and gather of the crossing bin (one C body per ISA: a power-of-two scaling,
 *               compares, truncation and data movement, exact on every path).
 *
 * Why one copy per ISA and not -march=native: wheels must run on plain x86-64, so the default
 * build is SSE2, and the AVX2 / AVX-512 copies are compiled with GCC's target attribute and picked
 * by __builtin_cpu_supports. Explicit function-pointer dispatch (not target_clones) lets the
 * environment variable FASTDECODE_ISA = portable | avx2 | avx512 (read once, on first use) force a
 * path -- a request above what the CPU supports falls back to the best supported one -- and lets
 * the C tests run every path in one process (fdi_set_isa). Non-x86 or non-GNU compilers get the
 * portable copy only.
 *
 * The one global of the core is the dispatch level below, an int written with atomic stores:
 * initialisation is idempotent (every racing thread computes the same value), so no lock is
 * needed, and after it the level is only read. It is not kernel state: every copy computes the
 * same bits.
 *
 * Every path gives bitwise-identical results, which the tests check:
 *   - exp is the Cephes expf below (vexpf), evaluated operation for operation in the same order,
 *     with no FMA (-ffp-contract=off semantics: a fused multiply-add rounds once and would change
 *     bits);
 *   - sums are double with 8 lanes, element i in lane i % 8 (a tail of < 8 elements in lane 0),
 *     combined ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)): AVX-512 keeps the 8 lanes in one
 *     register, AVX2 in two, the portable copy in an array;
 *   - max is exact, and zeros are returned as +0 so that the sign of a zero maximum does not
 *     depend on the lane layout;
 *   - div_f32 and shift_div multiply by the reciprocal in double (a division costs 16 cycles per 8
 *     doubles) and redo the division only where the product may round differently: q = a * (1/b)
 *     is within 2 double ulps of the correctly rounded a / b, so both round to the same float
 *     unless q lies within 8 double ulps of a float rounding midpoint (its low 29 mantissa bits
 *     near 0x10000000), or q is outside the normal float range; those lanes are divided exactly.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define FDI_X86 1
#include <immintrin.h>
#else
#define FDI_X86 0
#endif

/* ---------------------------------------------------------------------------------------------
 * Portable copy (also the reference the other copies are tested against).
 * --------------------------------------------------------------------------------------------- */

/* exp(x) in float32, written so that loops over it vectorize (no libm call, no branch): Cephes
 * expf. x = k ln2 + r with |r| <= ln2 / 2 (k rounded with the 1.5 * 2^23 trick, ln2 split in two
 * for an exact reduction), e^r by a degree-7 polynomial, 2^k put in the exponent field. Error
 * ~1 ulp against the correctly rounded value. x < -87.3 (near FLT_MIN) gives 0, -inf included, so
 * a weight is never subnormal; x is clamped at 88 (callers pass x <= 0). Every ISA copy below
 * evaluates it operation for operation in this order. */
static inline float vexpf(float x)
{
    const float magic = 12582912.0f;
    float xc = fdi_fsel(x > -87.3f, x, -87.3f);
    xc = fdi_fsel(xc < 88.0f, xc, 88.0f);
    float t = xc * 1.44269504088896341f + magic;
    float kf = t - magic;
    float r = xc - kf * 0.693359375f;
    r = r - kf * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t k = (int32_t)kf;
    uint32_t bits = (uint32_t)(k + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return fdi_fsel(x > -87.3f, p * scale, 0.0f);
}

float fdi_expf1(float x) { return vexpf(x); }

static double combine(const double *a)
{
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

/* max of len <= 64 elements (8 independent lanes: vectorizes without -ffast-math) and whether one
 * is NaN or +inf (+inf survives the max; NaN does not, since x > m is false, so it is tested
 * apart) */
static inline float max64(const float *p, int64_t len, int *bad)
{
    float m[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY,
                  -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int nan = 0;
#if defined(__GNUC__)
    /* GCC vector extensions: SSE2 on plain x86-64, NEON elsewhere (GCC does not vectorize the
     * scalar select below under -ftrapping-math) */
    typedef float v4f __attribute__((vector_size(16)));
    typedef int32_t v4i __attribute__((vector_size(16)));
    if (len == 64) {
        v4f a = {-INFINITY, -INFINITY, -INFINITY, -INFINITY}, c = a;
        v4i un = {0, 0, 0, 0};
        for (int i = 0; i < 64; i += 8) {
            v4f x0, x1;
            memcpy(&x0, p + i, sizeof x0);
            memcpy(&x1, p + i + 4, sizeof x1);
            v4i g0 = x0 > a, g1 = x1 > c;
            a = (v4f)(((v4i)x0 & g0) | ((v4i)a & ~g0));
            c = (v4f)(((v4i)x1 & g1) | ((v4i)c & ~g1));
            un |= (x0 != x0) | (x1 != x1);
        }
        for (int j = 0; j < 4; j++) {
            m[j] = a[j];
            m[j + 4] = c[j];
            nan |= un[j] != 0;
        }
    }
#else
    if (len == 64) {
        for (int i = 0; i < 64; i += 8) {
            for (int j = 0; j < 8; j++) {
                m[j] = fdi_fsel(p[i + j] > m[j], p[i + j], m[j]);
            }
        }
        for (int i = 0; i < 64; i++) {
            nan |= p[i] != p[i];
        }
    }
#endif
    else {
        for (int64_t i = 0; i < len; i++) {
            m[0] = fdi_fsel(p[i] > m[0], p[i], m[0]);
            nan |= p[i] != p[i];
        }
    }
    for (int j = 1; j < 8; j++) {
        m[0] = fdi_fsel(m[j] > m[0], m[j], m[0]);
    }
    *bad |= nan | (m[0] == INFINITY);
    return m[0] + 0.0f;
}

static int block_max_portable(const float *x, int64_t n, float *bm)
{
    int bad = 0;
    for (int64_t b = 0; b * 64 < n; b++) {
        bm[b] = max64(x + b * 64, n - b * 64 < 64 ? n - b * 64 : 64, &bad);
    }
    return bad;
}

static double exp_sum_portable(const float *x, int64_t n, float shift, float *out)
{
    double acc[8] = {0};
    float buf[256];
    int64_t i = 0;
    while (i < n) {
        int64_t len = n - i < 256 ? n - i : 256;
        float *e = out ? out + i : buf;
        for (int64_t j = 0; j < len; j++) {
            e[j] = vexpf(x[i + j] - shift);
        }
        int64_t j = 0;
        for (; j + 8 <= len; j += 8) {
            for (int l = 0; l < 8; l++) {
                acc[l] += (double)e[j + l];
            }
        }
        for (; j < len; j++) {
            acc[0] += (double)e[j];
        }
        i += len;
    }
    return combine(acc);
}

static void exp_portable(const float *x, int64_t n, float shift, float *out)
{
    for (int64_t i = 0; i < n; i++) {
        out[i] = vexpf(x[i] - shift);
    }
}

static void div_f32_portable(const float *e, int64_t n, double z, float *out)
{
    for (int64_t i = 0; i < n; i++) {
        out[i] = (float)((double)e[i] / z);
    }
}

static void shift_div_portable(const float *x, int64_t n, float m, double t, float *out)
{
    for (int64_t i = 0; i < n; i++) {
        out[i] = (float)((double)(x[i] - m) / t);
    }
}

/* The compare-and-select kernels: one C body, compiled once per ISA (the AVX2 / AVX-512 copies
 * below are the same body under a target attribute, vectorised by the compiler). Compares and
 * selects are exact, and the sums keep the fixed 8-lane order (GCC never reassociates without
 * -ffast-math), so every copy gives the portable copy's bits by construction. */
#define FDI_INLINE static inline __attribute__((always_inline))

FDI_INLINE void keep_f32_body(const fdi_keep *k, const uint32_t *src, uint32_t *dst, int64_t n,
                              uint32_t fill)
{
    const uint32_t *a = (const uint32_t *)k->a, neg = k->neg;
    const float *b = k->b;
    const float t = k->t, tb = k->tb;
    const int32_t lo = k->lo, hi = k->hi;
    for (int32_t c = 0; c < (int32_t)n; c++) {
        uint32_t ua = a[c] ^ neg;
        float av;
        memcpy(&av, &ua, sizeof av);
        int keep = (av > t) | ((av == t) & (c >= lo) & (c < hi)) | (b[c] >= tb);
        uint32_t m = -(uint32_t)keep;
        dst[c] = (src[c] & m) | (fill & ~m);
    }
}

FDI_INLINE int64_t count_in_body(const float *x, int64_t n, float lo, float hi)
{
    int64_t cnt = 0;
    for (int64_t i = 0; i < n; i++) {
        cnt += (x[i] >= lo) & (x[i] <= hi);
    }
    return cnt;
}

/* the keep flags of 64 columns at a time (vectorised by the compiler), then the kept ones packed
 * branch-free (store always, advance by the flag); blocks that keep nothing are skipped */
FDI_INLINE int64_t gather_keep_body(const fdi_keep *k, int all, const float *y, const float *w,
                                    int64_t i0, int64_t n, float *v, int32_t *id, float *wv)
{
    const uint32_t *a = (const uint32_t *)k->a, neg = k->neg;
    const float *b = k->b;
    const float t = k->t, tb = k->tb;
    const int32_t lo = k->lo, hi = k->hi;
    int64_t j = 0;
    for (int64_t s = 0; s < n; s += 64) {
        int32_t len = n - s < 64 ? (int32_t)(n - s) : 64, c0 = (int32_t)(i0 + s);
        unsigned char f[64];
        int any = 0;
        for (int32_t q = 0; q < len; q++) {
            int32_t c = c0 + q;
            uint32_t ua = a[c] ^ neg;
            float av;
            memcpy(&av, &ua, sizeof av);
            int keep = all | (av > t) | ((av == t) & (c >= lo) & (c < hi)) | (b[c] >= tb);
            f[q] = (unsigned char)keep;
            any |= keep;
        }
        if (!any) {
            continue;
        }
        for (int32_t q = 0; q < len; q++) {
            float yv = y[c0 + q];
            v[j] = yv;
            id[j] = c0 + q;
            if (wv) {
                wv[j] = w[c0 + q];
            }
            j += f[q];
        }
    }
    return j;
}

/* 32 lanes (four vector registers of AVX-512, so that the additions are not one dependent
 * chain), combined pairwise in a fixed order. top-n-sigma only bounds the error of these sums
 * (filter.c), any fixed order would do. */
#define FDI_SLANES 32
static double combine32(double *a)
{
    for (int w = FDI_SLANES / 2; w >= 1; w /= 2) {
        for (int l = 0; l < w; l++) {
            a[l] += a[l + w];
        }
    }
    return a[0];
}

FDI_INLINE void moments_body(const float *x, int64_t n, double *sum, double *asum, int64_t *cnt)
{
    double s[FDI_SLANES] = {0}, a[FDI_SLANES] = {0}, c[FDI_SLANES] = {0};
    int64_t i = 0;
    for (; i + FDI_SLANES <= n; i += FDI_SLANES) {
        for (int l = 0; l < FDI_SLANES; l++) {
            double d = (double)x[i + l];
            double f = fdi_dsel(x[i + l] != -INFINITY, 1.0, 0.0);
            double dd = fdi_dsel(x[i + l] != -INFINITY, d, 0.0);
            s[l] += dd;
            a[l] += fabs(dd);
            c[l] += f; /* counts in double: exact below 2^53 */
        }
    }
    for (; i < n; i++) {
        double dd = fdi_dsel(x[i] != -INFINITY, (double)x[i], 0.0);
        s[0] += dd;
        a[0] += fabs(dd);
        c[0] += fdi_dsel(x[i] != -INFINITY, 1.0, 0.0);
    }
    *sum = combine32(s);
    *asum = combine32(a);
    *cnt = (int64_t)combine32(c);
}

FDI_INLINE double sq_dev_body(const float *x, int64_t n, double mean)
{
    double s[FDI_SLANES] = {0};
    int64_t i = 0;
    for (; i + FDI_SLANES <= n; i += FDI_SLANES) {
        for (int l = 0; l < FDI_SLANES; l++) {
            double d = (double)x[i + l] - mean;
            s[l] += fdi_dsel(x[i + l] != -INFINITY, d * d, 0.0);
        }
    }
    for (; i < n; i++) {
        double d = (double)x[i] - mean;
        s[0] += fdi_dsel(x[i] != -INFINITY, d * d, 0.0);
    }
    return combine32(s);
}

/* the float32 difference x - shift as in the filters (then widened: the product of two floats
 * is exact in double) */
FDI_INLINE double dot_shift_pos_body(const float *w, const float *x, int64_t n, float shift)
{
    double acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int l = 0; l < 8; l++) {
            float d = x[i + l] - shift;
            acc[l] += fdi_dsel(w[i + l] > 0.0f, (double)w[i + l] * (double)d, 0.0);
        }
    }
    for (; i < n; i++) {
        float d = x[i] - shift;
        acc[0] += fdi_dsel(w[i] > 0.0f, (double)w[i] * (double)d, 0.0);
    }
    return combine(acc);
}

/* fdi_linear_cut's bins (select.c), 64 at a time: the junk slot is the lane */
FDI_INLINE uint32_t lbin_in(float d, uint32_t lo, uint32_t span, uint32_t junk)
{
    uint32_t b = fdi_lbin(d), m = -(uint32_t)(b - lo < span);
    return (b & m) | (junk & ~m);
}

FDI_INLINE void lbins_body(const float *v, int64_t n, int invert, float base, uint32_t lo,
                           uint32_t hi, uint32_t *bin)
{
    uint32_t span = hi - lo;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        if (invert) {
            for (uint32_t k = 0; k < 64; k++) {
                bin[i + k] = lbin_in(v[i + k], lo, span, FDI_LBINS + k);
            }
        }
        else {
            for (uint32_t k = 0; k < 64; k++) {
                bin[i + k] = lbin_in(base - v[i + k], lo, span, FDI_LBINS + k);
            }
        }
    }
    for (; i < n; i++) {
        bin[i] = lbin_in(invert ? v[i] : base - v[i], lo, span, FDI_LBINS + (uint32_t)(i & 63));
    }
}

/* the count below B over 64 elements at a time (one reduction in 32-bit lanes), then the rare
 * members of bin B 16 at a time, written branch-free (store always, advance by the flag) */
FDI_INLINE int64_t bin_gather_body(const uint32_t *bin, int64_t n, uint32_t B, const float *v,
                                   const float *w, uint32_t flip, uint32_t *gk, float *gw,
                                   int64_t *mp)
{
    int64_t m = 0, cn = 0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        uint32_t any = 0, below = 0;
        for (int k = 0; k < 64; k++) {
            any |= (uint32_t)(bin[i + k] == B);
            below += (uint32_t)(bin[i + k] < B);
        }
        cn += below;
        if (!any) {
            continue;
        }
        for (int k0 = 0; k0 < 64; k0 += 16) {
            uint32_t any16 = 0;
            for (int k = k0; k < k0 + 16; k++) {
                any16 |= (uint32_t)(bin[i + k] == B);
            }
            if (!any16) {
                continue;
            }
            for (int k = k0; k < k0 + 16; k++) {
                int in = bin[i + k] == B;
                gk[m] = fdi_key(v[i + k]) ^ flip;
                gw[m] = w[i + k];
                m += in;
            }
        }
    }
    for (; i < n; i++) {
        int in = bin[i] == B;
        cn += bin[i] < B;
        gk[m] = fdi_key(v[i]) ^ flip;
        gw[m] = w[i];
        m += in;
    }
    *mp = m;
    return cn;
}

#define FDI_SELECT_KERNELS(attr, sfx)                                                            \
    attr static void keep_f32_##sfx(const fdi_keep *k, const uint32_t *src, uint32_t *dst,      \
                                    int64_t n, uint32_t fill)                                    \
    {                                                                                            \
        keep_f32_body(k, src, dst, n, fill);                                                     \
    }                                                                                            \
    attr static int64_t count_in_##sfx(const float *x, int64_t n, float lo, float hi)            \
    {                                                                                            \
        return count_in_body(x, n, lo, hi);                                                      \
    }                                                                                            \
    attr static void moments_##sfx(const float *x, int64_t n, double *sum, double *asum,         \
                                   int64_t *cnt)                                                 \
    {                                                                                            \
        moments_body(x, n, sum, asum, cnt);                                                      \
    }                                                                                            \
    attr static double sq_dev_##sfx(const float *x, int64_t n, double mean)                      \
    {                                                                                            \
        return sq_dev_body(x, n, mean);                                                          \
    }                                                                                            \
    attr static double dot_shift_pos_##sfx(const float *w, const float *x, int64_t n,            \
                                           float shift)                                          \
    {                                                                                            \
        return dot_shift_pos_body(w, x, n, shift);                                               \
    }                                                                                            \
    attr static void lbins_##sfx(const float *v, int64_t n, int invert, float base, uint32_t lo,  \
                                 uint32_t hi, uint32_t *bin)                                     \
    {                                                                                            \
        lbins_body(v, n, invert, base, lo, hi, bin);                                             \
    }                                                                                            \
    attr static int64_t bin_gather_##sfx(const uint32_t *bin, int64_t n, uint32_t B,              \
                                         const float *v, const float *w, uint32_t flip,          \
                                         uint32_t *gk, float *gw, int64_t *m)                    \
    {                                                                                            \
        return bin_gather_body(bin, n, B, v, w, flip, gk, gw, m);                                \
    }                                                 

FDI_SELECT_KERNELS(, portable)

static int64_t gather_keep_portable(const fdi_keep *k, int all, const float *y, const float *w,
                                    int64_t i0, int64_t n, float *v, int32_t *id, float *wv)
{
    return gather_keep_body(k, all, y, w, i0, n, v, id, wv);
}

/* The reciprocal trick needs 1 / b finite and normal, with room: otherwise divide everywhere. */
static int recip_ok(double b) { return b >= 0x1p-1000 && b <= 0x1p1000; }

#if FDI_X86
/* ---------------------------------------------------------------------------------------------
 * AVX2 copy (8 floats per register; the 8 double lanes of the sums in two registers).
 * --------------------------------------------------------------------------------------------- */
#define FDI_AVX2 __attribute__((target("avx2")))
/* FDI_VZ: every AVX copy ends its vector part with an explicit vzeroupper before it returns or
 * calls portable code. GCC's automatic insertion missed a path, and a dirty upper state makes
 * every later SSE instruction (libm's exp, the rest of the core) pay a false dependency: the fused
 * sampler's pick ran 10x slower. */

FDI_AVX2 static inline __m256 exp8(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(-87.3f), magic = _mm256_set1_ps(12582912.0f);
    __m256 xc = _mm256_max_ps(x, lo); /* x > lo ? x : lo, as fdi_fsel */
    xc = _mm256_min_ps(xc, _mm256_set1_ps(88.0f));
    __m256 t = _mm256_add_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)), magic);
    __m256 kf = _mm256_sub_ps(t, magic);
    __m256 r = _mm256_sub_ps(xc, _mm256_mul_ps(kf, _mm256_set1_ps(0.693359375f)));
    r = _mm256_sub_ps(r, _mm256_mul_ps(kf, _mm256_set1_ps(-2.12194440e-4f)));
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(p, r), r), r),
                      _mm256_set1_ps(1.0f));
    __m256i k = _mm256_cvttps_epi32(kf);
    __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127)), 23);
    __m256 res = _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
    return _mm256_and_ps(res, _mm256_cmp_ps(x, lo, _CMP_GT_OQ));
}

FDI_AVX2 static int block_max_avx2(const float *x, int64_t n, float *bm)
{
    const __m256 inf = _mm256_set1_ps(INFINITY);
    __m256 bad = _mm256_setzero_ps();
    int64_t b = 0;
    for (; (b + 1) * 64 <= n; b++) {
        const float *p = x + b * 64;
        __m256 a0 = _mm256_loadu_ps(p), a1 = _mm256_loadu_ps(p + 8);
        __m256 a2 = _mm256_loadu_ps(p + 16), a3 = _mm256_loadu_ps(p + 24);
        __m256 a4 = _mm256_loadu_ps(p + 32), a5 = _mm256_loadu_ps(p + 40);
        __m256 a6 = _mm256_loadu_ps(p + 48), a7 = _mm256_loadu_ps(p + 56);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_max_ps(a0, a1), _mm256_max_ps(a2, a3)),
                                 _mm256_max_ps(_mm256_max_ps(a4, a5), _mm256_max_ps(a6, a7)));
        /* NaN and +inf: !(x < inf); max propagates +inf, and NaN is checked on every element */
        __m256 u = _mm256_or_ps(
            _mm256_or_ps(_mm256_cmp_ps(a0, a1, _CMP_UNORD_Q), _mm256_cmp_ps(a2, a3, _CMP_UNORD_Q)),
            _mm256_or_ps(_mm256_cmp_ps(a4, a5, _CMP_UNORD_Q), _mm256_cmp_ps(a6, a7, _CMP_UNORD_Q)));
        bad = _mm256_or_ps(bad, _mm256_or_ps(u, _mm256_cmp_ps(m, inf, _CMP_EQ_OQ)));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
        bm[b] = _mm_cvtss_f32(h) + 0.0f;
    }
    int any = _mm256_movemask_ps(bad) != 0;
    _mm256_zeroupper(); /* see FDI_VZ */
    if (b * 64 < n) {
        any |= block_max_portable(x + b * 64, n - b * 64, bm + b);
    }
    return any;
}

FDI_AVX2 static double exp_sum_avx2(const float *x, int64_t n, float shift, float *out)
{
    __m256 s = _mm256_set1_ps(shift);
    __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
        if (out) {
            _mm256_storeu_ps(out + i, e);
        }
        lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double acc[8];
    _mm256_storeu_pd(acc, lo);
    _mm256_storeu_pd(acc + 4, hi);
    _mm256_zeroupper(); /* see FDI_VZ */
    for (; i < n; i++) {
        float e = vexpf(x[i] - shift);
        if (out) {
            out[i] = e;
        }
        acc[0] += (double)e;
    }
    return combine(acc);
}

FDI_AVX2 static void exp_avx2(const float *x, int64_t n, float shift, float *out)
{
    __m256 s = _mm256_set1_ps(shift);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(out + i, exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s)));
    }
    _mm256_zeroupper(); /* see FDI_VZ */
    for (; i < n; i++) {
        out[i] = vexpf(x[i] - shift);
    }
}

/* q = a * r (r = 1 / b) rounded to float, with the lanes that may round differently from
 * (float)(a / b) recomputed by division (see the file comment). */
FDI_AVX2 static inline __m128 qdiv4(__m256d a, __m256d r, __m256d b)
{
    const __m256i low = _mm256_set1_epi64x(0x1fffffff), mid = _mm256_set1_epi64x(0x10000000 - 8);
    const __m256i span = _mm256_set1_epi64x(16), neg1 = _mm256_set1_epi64x(-1);
    const __m256d absm = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL));
    __m256d q = _mm256_mul_pd(a, r);
    __m256i d = _mm256_sub_epi64(_mm256_and_si256(_mm256_castpd_si256(q), low), mid);
    /* near a midpoint: 0 <= d <= 16 */
    __m256i nearm = _mm256_andnot_si256(_mm256_cmpgt_epi64(d, span),
                                        _mm256_cmpgt_epi64(d, neg1));
    __m256d aq = _mm256_and_pd(q, absm);
    __m256d out = _mm256_or_pd(_mm256_cmp_pd(aq, _mm256_set1_pd(0x1p-125), _CMP_LT_OQ),
                               _mm256_cmp_pd(aq, _mm256_set1_pd(0x1p127), _CMP_GE_OQ));
    out = _mm256_andnot_pd(_mm256_cmp_pd(aq, _mm256_setzero_pd(), _CMP_EQ_OQ), out);
    __m256d slow = _mm256_or_pd(out, _mm256_castsi256_pd(nearm));
    if (_mm256_movemask_pd(slow)) {
        q = _mm256_blendv_pd(q, _mm256_div_pd(a, b), slow);
    }
    return _mm256_cvtpd_ps(q);
}

FDI_AVX2 static void div_f32_avx2(const float *e, int64_t n, double z, float *out)
{
    if (!recip_ok(z)) {
        div_f32_portable(e, n, z, out);
        return;
    }
    __m256d b = _mm256_set1_pd(z), r = _mm256_set1_pd(1.0 / z);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        _mm_storeu_ps(out + i, qdiv4(_mm256_cvtps_pd(_mm_loadu_ps(e + i)), r, b));
    }
    _mm256_zeroupper(); /* see FDI_VZ */
    div_f32_portable(e + i, n - i, z, out + i);
}

FDI_AVX2 static void shift_div_avx2(const float *x, int64_t n, float m, double t, float *out)
{
    if (!recip_ok(t)) {
        shift_div_portable(x, n, m, t, out);
        return;
    }
    __m256d b = _mm256_set1_pd(t), r = _mm256_set1_pd(1.0 / t);
    __m128 mm = _mm_set1_ps(m);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m128 d = _mm_sub_ps(_mm_loadu_ps(x + i), mm);
        _mm_storeu_ps(out + i, qdiv4(_mm256_cvtps_pd(d), r, b));
    }
    _mm256_zeroupper(); /* see FDI_VZ */
    shift_div_portable(x + i, n - i, m, t, out + i);
}

FDI_SELECT_KERNELS(FDI_AVX2, avx2)

FDI_AVX2 static int64_t gather_keep_avx2(const fdi_keep *k, int all, const float *y,
                                         const float *w, int64_t i0, int64_t n, float *v,
                                         int32_t *id, float *wv)
{
    return gather_keep_body(k, all, y, w, i0, n, v, id, wv);
}

/* ---------------------------------------------------------------------------------------------
 * AVX-512 copy (16 floats per register; the 8 double lanes of the sums in one register).
 * --------------------------------------------------------------------------------------------- */
#define FDI_AVX512 __attribute__((target("avx512f")))

FDI_SELECT_KERNELS(FDI_AVX512, avx512)

FDI_AVX512 static inline __m512 exp16(__m512 x)
{
    const __m512 lo = _mm512_set1_ps(-87.3f), magic = _mm512_set1_ps(12582912.0f);
    __m512 xc = _mm512_max_ps(x, lo);
    xc = _mm512_min_ps(xc, _mm512_set1_ps(88.0f));
    __m512 t = _mm512_add_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)), magic);
    __m512 kf = _mm512_sub_ps(t, magic);
    __m512 r = _mm512_sub_ps(xc, _mm512_mul_ps(kf, _mm512_set1_ps(0.693359375f)));
    r = _mm512_sub_ps(r, _mm512_mul_ps(kf, _mm512_set1_ps(-2.12194440e-4f)));
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(p, r), r), r),
                      _mm512_set1_ps(1.0f));
    __m512i k = _mm512_cvttps_epi32(kf);
    __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(k, _mm512_set1_epi32(127)), 23);
    __m512 res = _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, lo, _CMP_GT_OQ), res);
}

FDI_AVX512 static int block_max_avx512(const float *x, int64_t n, float *bm)
{
    const __m512 inf = _mm512_set1_ps(INFINITY);
    __mmask16 bad = 0;
    int64_t b = 0;
    for (; (b + 1) * 64 <= n; b++) {
        const float *p = x + b * 64;
        __m512 a0 = _mm512_loadu_ps(p), a1 = _mm512_loadu_ps(p + 16);
        __m512 a2 = _mm512_loadu_ps(p + 32), a3 = _mm512_loadu_ps(p + 48);
        __m512 m = _mm512_max_ps(_mm512_max_ps(a0, a1), _mm512_max_ps(a2, a3));
        bad |= _mm512_cmp_ps_mask(a0, a1, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(a2, a3, _CMP_UNORD_Q) |
               _mm512_cmp_ps_mask(m, inf, _CMP_EQ_OQ);
        __m256 h8 = _mm256_max_ps(_mm512_castps512_ps256(m),
                                  _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(m), 1)));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
        bm[b] = _mm_cvtss_f32(h) + 0.0f;
    }
    _mm256_zeroupper(); /* see FDI_VZ */
    if (b * 64 < n) {
        bad |= (__mmask16)block_max_portable(x + b * 64, n - b * 64, bm + b);
    }
    return bad != 0;
}

FDI_AVX512 static double exp_sum_avx512(const float *x, int64_t n, float shift, float *out)
{
    __m512 s = _mm512_set1_ps(shift);
    __m512d acc = _mm512_setzero_pd();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), s));
        if (out) {
            _mm512_storeu_ps(out + i, e);
        }
        acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        acc = _mm512_add_pd(
            acc, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
    }
    if (i + 8 <= n) {
        __m512 e = exp16(_mm512_sub_ps(_mm512_castps256_ps512(_mm256_loadu_ps(x + i)), s));
        if (out) {
            _mm256_storeu_ps(out + i, _mm512_castps512_ps256(e));
        }
        acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        i += 8;
    }
    double a[8];
    _mm512_storeu_pd(a, acc);
    _mm256_zeroupper(); /* see FDI_VZ */
    for (; i < n; i++) {
        float e = vexpf(x[i] - shift);
        if (out) {
            out[i] = e;
        }
        a[0] += (double)e;
    }
    return combine(a);
}

FDI_AVX512 static void exp_avx512(const float *x, int64_t n, float shift, float *out)
{
    __m512 s = _mm512_set1_ps(shift);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        _mm512_storeu_ps(out + i, exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), s)));
    }
    _mm256_zeroupper(); /* see FDI_VZ */
    for (; i < n; i++) {
        out[i] = vexpf(x[i] - shift);
    }
}

FDI_AVX512 static inline __m256 qdiv8(__m512d a, __m512d r, __m512d b)
{
    const __m512i low = _mm512_set1_epi64(0x1fffffff), mid = _mm512_set1_epi64(0x10000000 - 8);
    __m512d q = _mm512_mul_pd(a, r);
    __m512i d = _mm512_sub_epi64(_mm512_and_si512(_mm512_castpd_si512(q), low), mid);
    __mmask8 slow = _mm512_cmple_epu64_mask(d, _mm512_set1_epi64(16));
    __m512d aq = _mm512_abs_pd(q);
    __mmask8 range = _mm512_cmp_pd_mask(aq, _mm512_set1_pd(0x1p-125), _CMP_LT_OQ) |
                     _mm512_cmp_pd_mask(aq, _mm512_set1_pd(0x1p127), _CMP_GE_OQ);
    range &= _mm512_cmp_pd_mask(aq, _mm512_setzero_pd(), _CMP_NEQ_UQ);
    slow |= range;
    if (slow) {
        q = _mm512_mask_div_pd(q, slow, a, b);
    }
    return _mm512_cvtpd_ps(q);
}

FDI_AVX512 static void div_f32_avx512(const float *e, int64_t n, double z, float *out)
{
    if (!recip_ok(z)) {
        div_f32_portable(e, n, z, out);
        return;
    }
    __m512d b = _mm512_set1_pd(z), r = _mm512_set1_pd(1.0 / z);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(out + i, qdiv8(_mm512_cvtps_pd(_mm256_loadu_ps(e + i)), r, b));
    }
    _mm256_zeroupper(); /* see FDI_VZ */
    div_f32_portable(e + i, n - i, z, out + i);
}

FDI_AVX512 static void shift_div_avx512(const float *x, int64_t n, float m, double t, float *out)
{
    if (!recip_ok(t)) {
        shift_div_portable(x, n, m, t, out);
        return;
    }
    __m512d b = _mm512_set1_pd(t), r = _mm512_set1_pd(1.0 / t);
    __m256 mm = _mm256_set1_ps(m);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), mm);
        _mm256_storeu_ps(out + i, qdiv8(_mm512_cvtps_pd(d), r, b));
    }
    _mm256_zeroupper(); /* see FDI_VZ */
    shift_div_portable(x + i, n - i, m, t, out + i);
}
/* 16 columns at a time: the rule as one compare mask, the kept lanes packed to the front of a
 * register (vcompressps) and the whole register stored at v + j (lanes past the count are
 * overwritten by the next store or lie below v + n: see internal.h); the tail by the C body. */
FDI_AVX512 static int64_t gather_keep_avx512(const fdi_keep *k, int all, const float *y,
                                             const float *w, int64_t i0, int64_t n, float *v,
                                             int32_t *id, float *wv)
{
    int64_t i = 0, j = 0;
    __m512i col = _mm512_add_epi32(_mm512_set1_epi32((int32_t)i0),
                                   _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
                                                     13, 14, 15));
    const __m512i sixteen = _mm512_set1_epi32(16), neg = _mm512_set1_epi32((int32_t)k->neg);
    const __m512i lo = _mm512_set1_epi32(k->lo), hi = _mm512_set1_epi32(k->hi);
    const __m512 t = _mm512_set1_ps(k->t), tb = _mm512_set1_ps(k->tb);
    const __mmask16 every = all ? (__mmask16)0xffff : 0;
    for (; i + 16 <= n; i += 16) {
        int64_t c = i0 + i;
        __m512 av = _mm512_castsi512_ps(
            _mm512_xor_si512(_mm512_loadu_si512((const void *)(k->a + c)), neg));
        __mmask16 m = _mm512_cmp_ps_mask(av, t, _CMP_GT_OQ) |
                      (_mm512_cmp_ps_mask(av, t, _CMP_EQ_OQ) &
                       _mm512_cmpge_epi32_mask(col, lo) & _mm512_cmplt_epi32_mask(col, hi)) |
                      _mm512_cmp_ps_mask(_mm512_loadu_ps(k->b + c), tb, _CMP_GE_OQ) | every;
        if (m) {
            _mm512_storeu_ps(v + j, _mm512_maskz_compress_ps(m, _mm512_loadu_ps(y + c)));
            _mm512_storeu_si512((void *)(id + j), _mm512_maskz_compress_epi32(m, col));
            if (wv) {
                _mm512_storeu_ps(wv + j, _mm512_maskz_compress_ps(m, _mm512_loadu_ps(w + c)));
            }
            j += __builtin_popcount((unsigned)m);
        }
        col = _mm512_add_epi32(col, sixteen);
    }
    _mm256_zeroupper(); /* see FDI_VZ */
    return j + gather_keep_body(k, all, y, w, i0 + i, n - i, v + j, id + j, wv ? wv + j : NULL);
}
#endif /* FDI_X86 */

/* ---------------------------------------------------------------------------------------------
 * Dispatch.
 * --------------------------------------------------------------------------------------------- */

#define FDI_OPS(name, sfx)                                                                       \
    {                                                                                            \
        name, block_max_##sfx, exp_sum_##sfx, exp_##sfx, div_f32_##sfx, shift_div_##sfx,         \
            keep_f32_##sfx, count_in_##sfx, moments_##sfx, sq_dev_##sfx, dot_shift_pos_##sfx,    \
            gather_keep_##sfx, lbins_##sfx, bin_gather_##sfx                                    \
    }
static const fdi_isa_ops ops_table[3] = {
    FDI_OPS("portable", portable),
#if FDI_X86
    FDI_OPS("avx2", avx2),
    FDI_OPS("avx512", avx512),
#else
    FDI_OPS("portable", portable),
    FDI_OPS("portable", portable),
#endif
};

/* -1: not chosen yet; else FDI_ISA_PORTABLE / AVX2 / AVX512. The only global (file comment). */
static int isa_level = -1;

static int best_supported(void)
{
#if FDI_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        return FDI_ISA_AVX512;
    }
    if (__builtin_cpu_supports("avx2")) {
        return FDI_ISA_AVX2;
    }
#endif
    return FDI_ISA_PORTABLE;
}

int fdi_set_isa(int level)
{
    int best = best_supported();
    if (level < 0 || level > best) {
        level = best;
    }
    __atomic_store_n(&isa_level, level, __ATOMIC_RELAXED);
    return level;
}

int fdi_isa(void)
{
    int level = __atomic_load_n(&isa_level, __ATOMIC_RELAXED);
    if (level >= 0) {
        return level;
    }
    const char *env = getenv("FASTDECODE_ISA");
    level = -1;
    if (env && strcmp(env, "portable") == 0) {
        level = FDI_ISA_PORTABLE;
    }
    else if (env && strcmp(env, "avx2") == 0) {
        level = FDI_ISA_AVX2;
    }
    else if (env && strcmp(env, "avx512") == 0) {
        level = FDI_ISA_AVX512;
    }
    return fdi_set_isa(level);
}

const fdi_isa_ops *fdi_ops(void) { return &ops_table[fdi_isa()]; }
