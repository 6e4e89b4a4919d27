/*
 * isa.c: the row kernels that dominate run time, one copy per instruction set, chosen at run time.
 *
 * What is here. The few loops that read a whole vocabulary row (the rest of the core works on
 * short candidate lists or is not on a hot path):
 *   argmax      the maximum, its first index, and whether the row holds NaN or +inf (argmax,
 *               softmax's pass 1, fdi_max);
 *   block_max   the maximum of every 64-element block, and whether the row holds NaN or +inf (one
 *               read of the row; the fused sampler and beam_step start from it, and the block
 *               maxima drive the top-k / top-p candidate filters of select.c);
 *   exp, exp_sum  w = exp(x - shift) (optionally stored) and sum w;
 *   div_f32     (float)((double)e / z), softmax's normalisation;
 *   shift_div   (float)((double)(x - m) / t), softmax's temperature;
 *   log_shift   (float)(((double)(x - m) - log Z) + 0.0), log_softmax's write;
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
 *   - exp is vexpf below, evaluated operation for operation in the same order. No fused
 *     multiply-add where it could round differently (-ffp-contract=off): an FMA rounds once where
 *     the portable copy, which must stay fast on plain SSE2 (libm's fmaf is a call), rounds twice.
 *     The AVX copies use one FMA, x - k * FDI_LN2_HI, whose product is exact, so it rounds as the
 *     separate multiply and subtract do.
 *   - the exp sum has a fixed order that does not depend on the ISA or the address: 128-element
 *     blocks from the row's start, element i of a block in float lane i % 16, each lane's 8 terms
 *     summed pairwise in float32, ((t0 + t1) + (t2 + t3)) + ((t4 + t5) + (t6 + t7)), the 16 lane
 *     sums of each block added to 16 double accumulators, those combined by halves (l += l + 8,
 *     + 4, + 2, + 1). A last partial block is padded with +0.
 *   - other sums are double with 32 lanes (FDI_SLANES), element i in lane i % 32 (a tail of < 32
 *     elements in lane 0), combined by halves (l += l + 16, + 8, + 4, + 2, + 1);
 *   - max is exact, and zeros are returned as +0 so that the sign of a zero maximum does not
 *     depend on the lane layout;
 *   - div_f32 and shift_div multiply by the reciprocal in double (a division costs 16 cycles per 8
 *     doubles) and redo the division only where the product may round differently: q = a * (1/b)
 *     is within 2 double ulps of the correctly rounded a / b, so both round to the same float
 *     unless q lies within 8 double ulps of a float rounding midpoint (its low 29 mantissa bits
 *     near 0x10000000), or q is outside the normal float range; those lanes are divided exactly.
 *
 * The exp sum's cost and accuracy. The exp pass (exp, sum, store) was ~2 cycles per element: the
 * sum converted every weight to double (two conversions, an extract and two dependent double adds
 * per 16 weights), the Cephes polynomial was one degree longer than float needs, and its Horner
 * chain made one exp a ~90-cycle dependency chain, more than the scheduler hides. Now: a degree-6
 * minimax polynomial (relative error 3.2e-9, below float rounding: the whole exp stays within
 * 1.01 ulp of the correctly rounded value, checked on every float in (-87.3, 88]) evaluated in
 * Estrin form (r^2 and two linear pieces in parallel), 2^k from the rounded t's bit pattern (or
 * vscalefps) instead of a conversion, and the float32 block sums above (one add per 16 weights,
 * one conversion per 128). Error of the sum: a lane's 8 weights, all >= 0, are summed to depth 3,
 * so the block sum is within 3 * 2^-24 (1.8e-7) of its exact value relatively, the double part
 * adds ~2^-53 per addition, and the total is within 2e-7 of the exact sum of the weights however
 * long the row (a small weight is lost only against the <= 7 others of its lane and block, never
 * against the running total). AVX-512: ~0.24 ns per element for exp + sum + store (was 0.45), AVX2
 * 0.38 (0.63), portable 0.86 (1.28); the weights are within ~1 ulp as before, but their bits and
 * the sums' last bits changed.
 *
 * Alignment. NumPy rows start 16 bytes off a 64-byte boundary, so every 64-byte load splits
 * across two cache lines. That halves the load rate, which only the memory-bound argmax feels:
 * it starts its second chunk at a 64-byte boundary (chunk bounds do not change an argmax). The exp
 * sum is bound by arithmetic (~11 cycles per 16 elements) and measured the same at either
 * alignment, so its order stays tied to the row's start, never to the address.
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

/* exp(x) in float32, written so that loops over it vectorize (no libm call, no branch; the file
 * comment says why this form): x = k ln2 + r with |r| <= ln2 / 2 (k rounded with the 1.5 * 2^23
 * trick, ln2 split in two so that k * FDI_LN2_HI is exact), e^r = 1 + r + r^2 P(r) with P the
 * degree-4 minimax fit below, 2^k put in the exponent field. The rounded t already holds k in its
 * low mantissa bits: t << 23 is k << 23, so no float-to-int conversion (and none of its undefined
 * behaviour on -inf) is needed. x <= -87.3 (near FLT_MIN) gives 0, -inf and NaN included, so a
 * weight is never subnormal; those lanes compute garbage that the last select discards. x is
 * clamped at 88 (callers pass x <= 0, up to rounding). */
#define FDI_EXP_LO -87.3f
#define FDI_EXP_HI 88.0f
#define FDI_EXP_MAGIC 12582912.0f /* 1.5 * 2^23 */
#define FDI_LOG2E 1.44269504088896341f
#define FDI_LN2_HI 0.693359375f /* 9 significant bits: k * FDI_LN2_HI is exact for |k| < 2^15 */
#define FDI_LN2_LO -2.12194440e-4f
#define FDI_P2 0x1.fffffcp-2f /* P(r) = P2 + P3 r + P4 r^2 + P5 r^3 + P6 r^4, relative error of */
#define FDI_P3 0x1.55549p-3f  /* 1 + r + r^2 P(r) below 3.2e-9 on |r| <= 0.3473 (weighted */
#define FDI_P4 0x1.5558f8p-5f /* Remez, coefficients then rounded to float) */
#define FDI_P5 0x1.123b0ep-7f
#define FDI_P6 0x1.6a2244p-10f
static inline float vexpf(float x)
{
    float xc = fdi_fsel(x < FDI_EXP_HI, x, FDI_EXP_HI);
    float t = xc * FDI_LOG2E + FDI_EXP_MAGIC;
    float kf = t - FDI_EXP_MAGIC;
    float r = xc - kf * FDI_LN2_HI;
    r = r - kf * FDI_LN2_LO;
    float r2 = r * r;
    float a = FDI_P5 * r + FDI_P4, b = FDI_P3 * r + FDI_P2;
    float p = (FDI_P6 * r2 + a) * r2 + b;
    p = (p * r2 + r) + 1.0f;
    uint32_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits << 23) + (127u << 23);
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return fdi_fsel(x > FDI_EXP_LO, p * scale, 0.0f);
}

float fdi_expf1(float x) { return vexpf(x); }

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

/* argmax (internal.h): the row in chunks of FDI_ACHUNK elements, each reduced to its maximum
 * with vertical maxima (NaN looked for alongside, +inf survives the max); the first chunk whose
 * maximum beats every earlier one holds the first maximum, and only that chunk is scanned again.
 * Chunk bounds do not change the result, so the AVX copies start the second chunk at a 64-byte
 * boundary (NumPy rows start 16 bytes off one, and a load split across two cache lines halves the
 * load rate of this memory-bound pass). */
#define FDI_ACHUNK 2048

static float max_run_portable(const float *p, int64_t len, int *nan)
{
    float m[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY,
                  -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int64_t i = 0;
#if defined(__GNUC__)
    typedef float v4f __attribute__((vector_size(16)));
    typedef int32_t v4i __attribute__((vector_size(16)));
    v4f a = {-INFINITY, -INFINITY, -INFINITY, -INFINITY}, c = a;
    v4i un = {0, 0, 0, 0};
    for (; i + 8 <= len; i += 8) {
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
        *nan |= un[j] != 0;
    }
#endif
    for (; i < len; i++) {
        m[i & 7] = fdi_fsel(p[i] > m[i & 7], p[i], m[i & 7]);
        *nan |= p[i] != p[i];
    }
    for (int j = 1; j < 8; j++) {
        m[0] = fdi_fsel(m[j] > m[0], m[j], m[0]);
    }
    return m[0];
}

/* the end of the chunk starting at s: chunk 0 ends FDI_ACHUNK elements past x's first 64-byte
 * boundary (head elements before it) */
static inline int64_t achunk_end(int64_t s, int64_t head, int64_t n)
{
    int64_t e = (s == 0 ? head : s) + FDI_ACHUNK;
    return e < n ? e : n;
}

static inline int64_t achunk_head(const float *x)
{
    return (int64_t)((-(uintptr_t)x & 63) / sizeof(float));
}

/* the common end of every copy: NaN, +inf, the canonical zero and the first index */
typedef int64_t (*first_eq_fn)(const float *x, int64_t s, int64_t e, float v);
static inline int argmax_finish(const float *x, int bad, float best, int64_t c0, int64_t c1,
                                first_eq_fn first_eq, float *max, int64_t *arg)
{
    *max = best + 0.0f;
    if (bad || best == INFINITY) {
        return 1;
    }
    if (arg) {
        *arg = c0 < 0 ? -1 : first_eq(x, c0, c1, best);
    }
    return 0;
}

static int64_t first_eq_portable(const float *x, int64_t s, int64_t e, float v)
{
    for (int64_t i = s; i < e; i++) {
        if (x[i] == v) {
            return i;
        }
    }
    return -1;
}

static int argmax_portable(const float *x, int64_t n, float *max, int64_t *arg)
{
    int nan = 0;
    float best = -INFINITY;
    int64_t c0 = -1, c1 = -1, head = achunk_head(x);
    for (int64_t s = 0; s < n;) {
        int64_t e = achunk_end(s, head, n);
        float cm = max_run_portable(x + s, e - s, &nan);
        if (cm > best) {
            best = cm;
            c0 = s;
            c1 = e;
        }
        s = e;
    }
    return argmax_finish(x, nan, best, c0, c1, first_eq_portable, max, arg);
}

/* The exp sum's fixed order (file comment): element i of block b (FDI_EBLOCK elements from
 * 128 b; a last partial block is padded with +0, which adds nothing) goes to float lane i % 16 as
 * one of eight terms summed pairwise, ((t0 + t1) + (t2 + t3)) + ((t4 + t5) + (t6 + t7)); the lane
 * sums are added to 16 double accumulators, and those are combined by halves (lane l += lane
 * l + w for w = 8, 4, 2, 1). The AVX copies hold the 16 lanes in one (AVX-512) or two (AVX2)
 * float registers and the doubles in two or four. */
#define FDI_ELANES 16
#define FDI_EBLOCK (8 * FDI_ELANES)

static inline void block_sum(const float *e, double *acc)
{
    for (int l = 0; l < FDI_ELANES; l++) {
        const float *q = e + l;
        float s = ((q[0] + q[16]) + (q[32] + q[48])) + ((q[64] + q[80]) + (q[96] + q[112]));
        acc[l] += (double)s;
    }
}

static double combine16(double *acc)
{
    for (int w = FDI_ELANES / 2; w >= 1; w /= 2) {
        for (int l = 0; l < w; l++) {
            acc[l] += acc[l + w];
        }
    }
    return acc[0];
}

static double exp_sum_portable(const float *x, int64_t n, float shift, float *out)
{
    double acc[FDI_ELANES] = {0};
    float buf[FDI_EBLOCK];
    for (int64_t i = 0; i < n; i += FDI_EBLOCK) {
        int64_t len = n - i < FDI_EBLOCK ? n - i : FDI_EBLOCK;
        float *e = out ? out + i : buf;
        for (int64_t j = 0; j < len; j++) {
            e[j] = vexpf(x[i + j] - shift);
        }
        if (len < FDI_EBLOCK) {
            if (e != buf) {
                memcpy(buf, e, (size_t)len * sizeof *e);
            }
            memset(buf + len, 0, (size_t)(FDI_EBLOCK - len) * sizeof *buf);
            e = buf;
        }
        block_sum(e, acc);
    }
    return combine16(acc);
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
 * is exact in double); FDI_SLANES lanes as moments (with 8 the sum was one chain of dependent
 * double additions, 4 cycles per 8 elements, slower than the exp pass before it) */
FDI_INLINE double dot_shift_pos_body(const float *w, const float *x, int64_t n, float shift)
{
    double acc[FDI_SLANES] = {0};
    int64_t i = 0;
    for (; i + FDI_SLANES <= n; i += FDI_SLANES) {
        for (int l = 0; l < FDI_SLANES; l++) {
            /* w > 0 ? w * d : +0, selecting both factors in float (0 * 0 = +0) rather than the
             * double product: a 32-bit select vectorizes in place, a 64-bit one from a float
             * compare needs its mask widened */
            int pos = w[i + l] > 0.0f;
            float d = fdi_fsel(pos, x[i + l] - shift, 0.0f), wp = fdi_fsel(pos, w[i + l], 0.0f);
            acc[l] += (double)wp * (double)d;
        }
    }
    for (; i < n; i++) {
        float d = x[i] - shift;
        acc[0] += fdi_dsel(w[i] > 0.0f, (double)w[i] * (double)d, 0.0);
    }
    return combine32(acc);
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

/* log_softmax's write: (float)(((double)(x - shift) - lz) + 0.0), exact operations only */
FDI_INLINE void log_shift_body(const float *x, int64_t n, float shift, double lz, float *out)
{
    for (int64_t i = 0; i < n; i++) {
        out[i] = (float)(((double)(x[i] - shift) - lz) + 0.0);
    }
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
    }                                                                                            \
    attr static void log_shift_##sfx(const float *x, int64_t n, float shift, double lz,          \
                                     float *out)                                                 \
    {                                                                                            \
        log_shift_body(x, n, shift, lz, out);                                                    \
    }

FDI_SELECT_KERNELS(, portable)

static int64_t gather_keep_portable(const fdi_keep *k, int all, const float *y, const float *w,
                                    int64_t i0, int64_t n, float *v, int32_t *id, float *wv)
{
    return gather_keep_body(k, all, y, w, i0, n, v, id, wv);
}

/* The reciprocal trick needs 1 / b finite and normal, with room: otherwise divide everywhere. */
static int recip_ok(double b) { return b >= 0x1p-1000 && b <= 0x1p1000; }

/* The AVX-512 copy tests the range on the float dividend a instead of the double quotient (16
 * lanes per compare, not 8): a lane is fast when a == 0 or lo <= |a| <= hi, with lo the least
 * float >= 2^-125 b (at least the least subnormal) and hi the greatest float <= 2^127 b, so that
 * |a| / b lies in [2^-125, 2^127] as the double-side test asks. For b in [2^-100, 2^100] the
 * products are exact doubles; other b take the exact division everywhere. Returns the bit
 * patterns lo - 1 and hi. */
static int div_bounds(double b, uint32_t *lom1, uint32_t *hi)
{
    if (!(b >= 0x1p-100 && b <= 0x1p100)) {
        return 0;
    }
    double dlo = 0x1p-125 * b, dhi = 0x1p127 * b;
    float lo = (float)dlo, h = (float)dhi;
    if ((double)lo < dlo) {
        lo = nextafterf(lo, INFINITY);
    }
    if (!((double)h <= dhi)) {
        h = nextafterf(h, 0.0f);
    }
    uint32_t ul, uh;
    memcpy(&ul, &lo, sizeof ul);
    memcpy(&uh, &h, sizeof uh);
    *lom1 = (ul > 1 ? ul : 1) - 1;
    *hi = uh;
    return 1;
}

#if FDI_X86
/* ---------------------------------------------------------------------------------------------
 * AVX2 copy (8 floats per register; FMA only where the product is exact, see the file comment).
 * --------------------------------------------------------------------------------------------- */
#define FDI_AVX2 __attribute__((target("avx2,fma")))
/* FDI_VZ: every AVX copy ends its vector part with an explicit vzeroupper before it returns or
 * calls portable code. GCC's automatic insertion missed a path, and a dirty upper state makes
 * every later SSE instruction (libm's exp, the rest of the core) pay a false dependency: the fused
 * sampler's pick ran 10x slower. */

/* vexpf on 8 lanes, operation for operation (the fnmadd's product kf * FDI_LN2_HI is exact, so
 * it rounds as the portable multiply-then-subtract does) */
FDI_AVX2 static inline __m256 exp8(__m256 x)
{
    const __m256 magic = _mm256_set1_ps(FDI_EXP_MAGIC);
    __m256 xc = _mm256_min_ps(x, _mm256_set1_ps(FDI_EXP_HI)); /* x < hi ? x : hi, as fdi_fsel */
    __m256 t = _mm256_add_ps(_mm256_mul_ps(xc, _mm256_set1_ps(FDI_LOG2E)), magic);
    __m256 kf = _mm256_sub_ps(t, magic);
    __m256 r = _mm256_fnmadd_ps(kf, _mm256_set1_ps(FDI_LN2_HI), xc);
    r = _mm256_sub_ps(r, _mm256_mul_ps(kf, _mm256_set1_ps(FDI_LN2_LO)));
    __m256 r2 = _mm256_mul_ps(r, r);
    __m256 a = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(FDI_P5), r), _mm256_set1_ps(FDI_P4));
    __m256 b = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(FDI_P3), r), _mm256_set1_ps(FDI_P2));
    __m256 p = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(FDI_P6), r2), a);
    p = _mm256_add_ps(_mm256_mul_ps(p, r2), b);
    p = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(p, r2), r), _mm256_set1_ps(1.0f));
    __m256i bits = _mm256_add_epi32(_mm256_slli_epi32(_mm256_castps_si256(t), 23),
                                    _mm256_set1_epi32(127 << 23));
    __m256 res = _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
    return _mm256_and_ps(res, _mm256_cmp_ps(x, _mm256_set1_ps(FDI_EXP_LO), _CMP_GT_OQ));
}

/* lanes l < len of 8 (len may be <= 0 or >= 8) */
FDI_AVX2 static inline __m256i lanes8(int64_t len)
{
    int32_t c = len < 0 ? 0 : len > 8 ? 8 : (int32_t)len;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
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

/* exp8 of x[i .. i + 8) - shift, stored to out when out != NULL; lanes past n are 0 */
FDI_AVX2 static inline __m256 exp8_at(const float *x, int64_t i, int64_t n, __m256 s, float *out)
{
    if (i + 8 <= n) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
        if (out) {
            _mm256_storeu_ps(out + i, e);
        }
        return e;
    }
    __m256i m = lanes8(n - i);
    __m256 e = exp8(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), s));
    e = _mm256_and_ps(e, _mm256_castsi256_ps(m));
    if (out) {
        _mm256_maskstore_ps(out + i, m, e);
    }
    return e;
}

/* the 16 lanes of a block (exp_sum_portable): lanes 0-7 in a, 8-15 in b; the double
 * accumulators d0..d3 hold lanes 0-3, 4-7, 8-11, 12-15 */
FDI_AVX2 static double exp_sum_avx2(const float *x, int64_t n, float shift, float *out)
{
    const __m256 s = _mm256_set1_ps(shift);
    __m256d d0 = _mm256_setzero_pd(), d1 = d0, d2 = d0, d3 = d0;
    for (int64_t i = 0; i < n; i += FDI_EBLOCK) {
        __m256 a[8], b[8];
        for (int j = 0; j < 8; j++) {
            a[j] = exp8_at(x, i + 16 * j, n, s, out);
            b[j] = exp8_at(x, i + 16 * j + 8, n, s, out);
        }
        __m256 sa =
            _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3])),
                          _mm256_add_ps(_mm256_add_ps(a[4], a[5]), _mm256_add_ps(a[6], a[7])));
        __m256 sb =
            _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(b[0], b[1]), _mm256_add_ps(b[2], b[3])),
                          _mm256_add_ps(_mm256_add_ps(b[4], b[5]), _mm256_add_ps(b[6], b[7])));
        d0 = _mm256_add_pd(d0, _mm256_cvtps_pd(_mm256_castps256_ps128(sa)));
        d1 = _mm256_add_pd(d1, _mm256_cvtps_pd(_mm256_extractf128_ps(sa, 1)));
        d2 = _mm256_add_pd(d2, _mm256_cvtps_pd(_mm256_castps256_ps128(sb)));
        d3 = _mm256_add_pd(d3, _mm256_cvtps_pd(_mm256_extractf128_ps(sb, 1)));
    }
    __m256d c = _mm256_add_pd(_mm256_add_pd(d0, d2), _mm256_add_pd(d1, d3));
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(c), _mm256_extractf128_pd(c, 1));
    double z = _mm_cvtsd_f64(h) + _mm_cvtsd_f64(_mm_unpackhi_pd(h, h));
    _mm256_zeroupper(); /* see FDI_VZ */
    return z;
}

FDI_AVX2 static void exp_avx2(const float *x, int64_t n, float shift, float *out)
{
    const __m256 s = _mm256_set1_ps(shift);
    for (int64_t i = 0; i < n; i += 8) {
        (void)exp8_at(x, i, n, s, out);
    }
    _mm256_zeroupper(); /* see FDI_VZ */
}

FDI_AVX2 static float hmax8(__m256 m)
{
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    return _mm_cvtss_f32(h);
}

FDI_AVX2 static int64_t first_eq_avx2(const float *x, int64_t s, int64_t e, float v)
{
    const __m256 vv = _mm256_set1_ps(v);
    int64_t i = s;
    for (; i + 8 <= e; i += 8) {
        int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), vv, _CMP_EQ_OQ));
        if (hit) {
            _mm256_zeroupper(); /* see FDI_VZ */
            return i + __builtin_ctz((unsigned)hit);
        }
    }
    _mm256_zeroupper(); /* see FDI_VZ */
    return first_eq_portable(x, i, e, v);
}

/* argmax_portable's chunks; 64 elements per step: four maxima of pairs into four accumulators
 * (one dependent max each per step), the pairs' unordered compares or-ed into four NaN flags */
FDI_AVX2 static int argmax_avx2(const float *x, int64_t n, float *max, int64_t *arg)
{
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 u0 = _mm256_setzero_ps(), u1 = u0, u2 = u0, u3 = u0;
    float best = -INFINITY;
    int64_t c0 = -1, c1 = -1, head = achunk_head(x);
    for (int64_t s = 0; s < n;) {
        int64_t e = achunk_end(s, head, n), i = s;
        __m256 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
        for (; i + 64 <= e; i += 64) {
            const float *p = x + i;
            __m256 a0 = _mm256_loadu_ps(p), a1 = _mm256_loadu_ps(p + 8);
            __m256 a2 = _mm256_loadu_ps(p + 16), a3 = _mm256_loadu_ps(p + 24);
            __m256 a4 = _mm256_loadu_ps(p + 32), a5 = _mm256_loadu_ps(p + 40);
            __m256 a6 = _mm256_loadu_ps(p + 48), a7 = _mm256_loadu_ps(p + 56);
            u0 = _mm256_or_ps(u0, _mm256_cmp_ps(a0, a1, _CMP_UNORD_Q));
            u1 = _mm256_or_ps(u1, _mm256_cmp_ps(a2, a3, _CMP_UNORD_Q));
            u2 = _mm256_or_ps(u2, _mm256_cmp_ps(a4, a5, _CMP_UNORD_Q));
            u3 = _mm256_or_ps(u3, _mm256_cmp_ps(a6, a7, _CMP_UNORD_Q));
            m0 = _mm256_max_ps(m0, _mm256_max_ps(a0, a1));
            m1 = _mm256_max_ps(m1, _mm256_max_ps(a2, a3));
            m2 = _mm256_max_ps(m2, _mm256_max_ps(a4, a5));
            m3 = _mm256_max_ps(m3, _mm256_max_ps(a6, a7));
        }
        for (; i < e; i += 8) {
            __m256i k = lanes8(e - i);
            __m256 a = _mm256_blendv_ps(ninf, _mm256_maskload_ps(x + i, k), _mm256_castsi256_ps(k));
            u0 = _mm256_or_ps(u0, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
            m0 = _mm256_max_ps(m0, a);
        }
        float cm = hmax8(_mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3)));
        if (cm > best) {
            best = cm;
            c0 = s;
            c1 = e;
        }
        s = e;
    }
    int nan = _mm256_movemask_ps(_mm256_or_ps(_mm256_or_ps(u0, u1), _mm256_or_ps(u2, u3))) != 0;
    _mm256_zeroupper(); /* see FDI_VZ */
    return argmax_finish(x, nan, best, c0, c1, first_eq_avx2, max, arg);
}

/* q = a * r (r = 1 / b) rounded to float, with the lanes that may round differently from
 * (float)(a / b) recomputed by division (see the file comment). */
FDI_AVX2 static inline __m128 qdiv4(__m256d a, __m256d r, __m256d b)
{
    const __m256i mid = _mm256_set1_epi64x(0x10000000 - 8), win = _mm256_set1_epi64x(0x1fffffe0);
    const __m256d absm = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL));
    __m256d q = _mm256_mul_pd(a, r);
    /* near a midpoint: the low 29 bits of q in [2^28 - 8, 2^28 + 23] */
    __m256i nearm =
        _mm256_cmpeq_epi64(_mm256_and_si256(_mm256_sub_epi64(_mm256_castpd_si256(q), mid), win),
                           _mm256_setzero_si256());
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

/* vexpf on 16 lanes, operation for operation (see exp8); 2^k is applied by vscalefps, which for
 * the kept lanes (k in [-126, 127], p in [0.7, 1.5]) is the exact product p * 2^k, as the portable
 * exponent-field multiply */
FDI_AVX512 static inline __m512 exp16(__m512 x)
{
    const __m512 magic = _mm512_set1_ps(FDI_EXP_MAGIC);
    __m512 xc = _mm512_min_ps(x, _mm512_set1_ps(FDI_EXP_HI));
    __m512 t = _mm512_add_ps(_mm512_mul_ps(xc, _mm512_set1_ps(FDI_LOG2E)), magic);
    __m512 kf = _mm512_sub_ps(t, magic);
    __m512 r = _mm512_fnmadd_ps(kf, _mm512_set1_ps(FDI_LN2_HI), xc);
    r = _mm512_sub_ps(r, _mm512_mul_ps(kf, _mm512_set1_ps(FDI_LN2_LO)));
    __m512 r2 = _mm512_mul_ps(r, r);
    __m512 a = _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(FDI_P5), r), _mm512_set1_ps(FDI_P4));
    __m512 b = _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(FDI_P3), r), _mm512_set1_ps(FDI_P2));
    __m512 p = _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(FDI_P6), r2), a);
    p = _mm512_add_ps(_mm512_mul_ps(p, r2), b);
    p = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(p, r2), r), _mm512_set1_ps(1.0f));
    __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(FDI_EXP_LO), _CMP_GT_OQ);
    return _mm512_maskz_scalef_ps(keep, p, kf);
}

FDI_AVX512 static float hmax16(__m512 m);

/* The maxima of 16 consecutive blocks (m[j]: the vertical maximum of block j) as one register,
 * lane j = block j: a transpose-and-max tree (4 levels of shuffles, 15 maxima) instead of a
 * 4-step horizontal reduction per block, then one permutation puts the lanes in block order.
 * max is exact, so the tree's order gives the bits of max64 (zeros are made +0 by the caller). */
FDI_AVX512 static inline __m512 bmax16_tree(const __m512 *m)
{
    __m512 p[8], q[4], r[2];
    for (int j = 0; j < 8; j++) { /* 128-bit chunks: a's 4 chunks -> 2, b's -> 2 */
        __m512 a = m[2 * j], b = m[2 * j + 1];
        p[j] = _mm512_max_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
    }
    for (int j = 0; j < 4; j++) { /* chunk pairs -> one chunk per block */
        __m512 a = p[2 * j], b = p[2 * j + 1];
        q[j] = _mm512_max_ps(_mm512_shuffle_f32x4(a, b, 0x88), _mm512_shuffle_f32x4(a, b, 0xDD));
    }
    for (int j = 0; j < 2; j++) { /* within chunks: 4 values per block -> 2 */
        __m512 a = q[2 * j], b = q[2 * j + 1];
        r[j] = _mm512_max_ps(_mm512_shuffle_ps(a, b, 0x44), _mm512_shuffle_ps(a, b, 0xEE));
    }
    __m512 t = _mm512_max_ps(_mm512_shuffle_ps(r[0], r[1], 0x88),
                             _mm512_shuffle_ps(r[0], r[1], 0xDD));
    /* lane L of t holds block 4 (L % 4) + L / 4 (a 4 x 4 transpose): put block j in lane j */
    const __m512i perm = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    return _mm512_permutexvar_ps(perm, t);
}

FDI_AVX512 static int block_max_avx512(const float *x, int64_t n, float *bm)
{
    const __m512 inf = _mm512_set1_ps(INFINITY);
    __mmask16 bad = 0;
    int64_t b = 0;
    /* Alignment: blocks start at the row's start, which NumPy puts 16 bytes off a 64-byte line,
     * so each 64-byte load would split across two lines (8.0 us per 128k row instead of 5.7).
     * A block's maximum does not depend on the order of its elements, so it is read with aligned
     * loads from xa = x - sh: lanes >= sh of the first vector, the next three whole, and lanes
     * < sh of the fifth (the next block's first) merged into the first by one blend. Block 0
     * (whose first aligned vector starts before the row) and the last blocks (whose fifth may
     * lie past the row's end) take the unaligned loads below, so nothing outside the row is
     * read. */
    int64_t sh = ((uintptr_t)x & 3) == 0 ? (int64_t)(((uintptr_t)x & 63) / 4) : -1;
    const float *xa = sh > 0 ? x - sh : x;
    const __mmask16 from_next = sh > 0 ? (__mmask16)((1u << sh) - 1) : 0;
    int64_t b0 = sh > 0 ? 1 : 0;
    __mmask16 k0 = 0xffff, k1 = 0xffff;
    if (sh >= 0) {
        /* block 0 first when it cannot be read aligned */
        for (; b < b0 && (b + 1) * 64 <= n; b++) {
            const float *p = x + b * 64;
            __m512 a0 = _mm512_loadu_ps(p), a1 = _mm512_loadu_ps(p + 16);
            __m512 a2 = _mm512_loadu_ps(p + 32), a3 = _mm512_loadu_ps(p + 48);
            __m512 m = _mm512_max_ps(_mm512_max_ps(a0, a1), _mm512_max_ps(a2, a3));
            k0 = _mm512_mask_cmp_ps_mask(k0, a0, a1, _CMP_ORD_Q);
            k1 = _mm512_mask_cmp_ps_mask(k1, a2, a3, _CMP_ORD_Q);
            bad |= _mm512_cmp_ps_mask(m, inf, _CMP_EQ_OQ);
            bm[b] = hmax16(m) + 0.0f;
        }
        /* 16 blocks (1024 elements) per step, their maxima stored as one register. NaN: ordered
         * compares chained through their write masks (argmax_avx512), no mask register moved
         * to a general one per block; +inf: a block maximum equal to +inf (max keeps it unless
         * a NaN is present, which is caught anyway) */
        for (; b == b0 && (b + 16) * 64 + 16 <= n; b += 16, b0 += 16) {
            __m512 m[16];
            for (int j = 0; j < 16; j++) {
                const float *p = xa + (b + j) * 64;
                __m512 a0 = _mm512_load_ps(p), a1 = _mm512_load_ps(p + 16);
                __m512 a2 = _mm512_load_ps(p + 32), a3 = _mm512_load_ps(p + 48);
                if (sh > 0) {
                    a0 = _mm512_mask_blend_ps(from_next, a0, _mm512_load_ps(p + 64));
                }
                m[j] = _mm512_max_ps(_mm512_max_ps(a0, a1), _mm512_max_ps(a2, a3));
                k0 = _mm512_mask_cmp_ps_mask(k0, a0, a1, _CMP_ORD_Q);
                k1 = _mm512_mask_cmp_ps_mask(k1, a2, a3, _CMP_ORD_Q);
            }
            __m512 t = bmax16_tree(m);
            bad |= _mm512_cmp_ps_mask(t, inf, _CMP_EQ_OQ);
            _mm512_storeu_ps(bm + b, _mm512_add_ps(t, _mm512_setzero_ps()));
        }
    }
    bad |= (__mmask16)~(k0 & k1);
    for (; (b + 1) * 64 <= n; b++) {
        const float *p = x + b * 64;
        __m512 a0 = _mm512_loadu_ps(p), a1 = _mm512_loadu_ps(p + 16);
        __m512 a2 = _mm512_loadu_ps(p + 32), a3 = _mm512_loadu_ps(p + 48);
        __m512 m = _mm512_max_ps(_mm512_max_ps(a0, a1), _mm512_max_ps(a2, a3));
        bad |= _mm512_cmp_ps_mask(a0, a1, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(a2, a3, _CMP_UNORD_Q) |
               _mm512_cmp_ps_mask(m, inf, _CMP_EQ_OQ);
        bm[b] = hmax16(m) + 0.0f;
    }
    _mm256_zeroupper(); /* see FDI_VZ */
    if (b * 64 < n) {
        bad |= (__mmask16)block_max_portable(x + b * 64, n - b * 64, bm + b);
    }
    return bad != 0;
}

/* lanes l < len of 16 (len may be <= 0 or >= 16) */
static inline __mmask16 lanes16(int64_t len)
{
    return len >= 16 ? (__mmask16)0xffff : len <= 0 ? (__mmask16)0 : (__mmask16)((1u << len) - 1);
}

/* exp16 of x[i .. i + 16) - shift, stored to out when out != NULL; lanes past n are 0 */
FDI_AVX512 static inline __m512 exp16_at(const float *x, int64_t i, int64_t n, __m512 s, float *out)
{
    if (i + 16 <= n) {
        __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), s));
        if (out) {
            _mm512_storeu_ps(out + i, e);
        }
        return e;
    }
    __mmask16 m = lanes16(n - i);
    __m512 e = _mm512_maskz_mov_ps(m, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), s)));
    if (out) {
        _mm512_mask_storeu_ps(out + i, m, e);
    }
    return e;
}

/* the 16 lanes of a block (exp_sum_portable) in one register; the double accumulators lo, hi
 * hold lanes 0-7 and 8-15 */
FDI_AVX512 static double exp_sum_avx512(const float *x, int64_t n, float shift, float *out)
{
    const __m512 s = _mm512_set1_ps(shift);
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    for (int64_t i = 0; i < n; i += FDI_EBLOCK) {
        __m512 e0 = exp16_at(x, i, n, s, out), e1 = exp16_at(x, i + 16, n, s, out);
        __m512 e2 = exp16_at(x, i + 32, n, s, out), e3 = exp16_at(x, i + 48, n, s, out);
        __m512 e4 = exp16_at(x, i + 64, n, s, out), e5 = exp16_at(x, i + 80, n, s, out);
        __m512 e6 = exp16_at(x, i + 96, n, s, out), e7 = exp16_at(x, i + 112, n, s, out);
        __m512 b = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(e0, e1), _mm512_add_ps(e2, e3)),
                                 _mm512_add_ps(_mm512_add_ps(e4, e5), _mm512_add_ps(e6, e7)));
        lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(b)));
        hi = _mm512_add_pd(
            hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(b), 1))));
    }
    __m512d c = _mm512_add_pd(lo, hi);
    __m256d c4 = _mm256_add_pd(_mm512_castpd512_pd256(c), _mm512_extractf64x4_pd(c, 1));
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(c4), _mm256_extractf128_pd(c4, 1));
    double z = _mm_cvtsd_f64(h) + _mm_cvtsd_f64(_mm_unpackhi_pd(h, h));
    _mm256_zeroupper(); /* see FDI_VZ */
    return z;
}

FDI_AVX512 static void exp_avx512(const float *x, int64_t n, float shift, float *out)
{
    const __m512 s = _mm512_set1_ps(shift);
    for (int64_t i = 0; i < n; i += 16) {
        (void)exp16_at(x, i, n, s, out);
    }
    _mm256_zeroupper(); /* see FDI_VZ */
}

FDI_AVX512 static float hmax16(__m512 m)
{
    __m256 h8 = _mm256_max_ps(_mm512_castps512_ps256(m),
                              _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(m), 1)));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    return _mm_cvtss_f32(h);
}

FDI_AVX512 static int64_t first_eq_avx512(const float *x, int64_t s, int64_t e, float v)
{
    const __m512 vv = _mm512_set1_ps(v);
    for (int64_t i = s; i < e; i += 16) {
        __mmask16 m = lanes16(e - i);
        __mmask16 hit = _mm512_mask_cmp_ps_mask(m, _mm512_maskz_loadu_ps(m, x + i), vv, _CMP_EQ_OQ);
        if (hit) {
            _mm256_zeroupper(); /* see FDI_VZ */
            return i + __builtin_ctz((unsigned)hit);
        }
    }
    _mm256_zeroupper(); /* see FDI_VZ */
    return -1;
}

/* argmax_portable's chunks; 128 elements per step: four maxima of pairs into four accumulators
 * (one dependent max each per step), and the pairs' ordered compares and-ed into four masks
 * through the compare's own write mask (no separate mask operation) */
FDI_AVX512 static int argmax_avx512(const float *x, int64_t n, float *max, int64_t *arg)
{
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    __mmask16 k0 = 0xffff, k1 = 0xffff, k2 = 0xffff, k3 = 0xffff;
    float best = -INFINITY;
    int64_t c0 = -1, c1 = -1, head = achunk_head(x);
    for (int64_t s = 0; s < n;) {
        int64_t e = achunk_end(s, head, n), i = s;
        __m512 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
        for (; i + 128 <= e; i += 128) {
            const float *p = x + i;
            __m512 a0 = _mm512_loadu_ps(p), a1 = _mm512_loadu_ps(p + 16);
            __m512 a2 = _mm512_loadu_ps(p + 32), a3 = _mm512_loadu_ps(p + 48);
            __m512 a4 = _mm512_loadu_ps(p + 64), a5 = _mm512_loadu_ps(p + 80);
            __m512 a6 = _mm512_loadu_ps(p + 96), a7 = _mm512_loadu_ps(p + 112);
            k0 = _mm512_mask_cmp_ps_mask(k0, a0, a1, _CMP_ORD_Q);
            k1 = _mm512_mask_cmp_ps_mask(k1, a2, a3, _CMP_ORD_Q);
            k2 = _mm512_mask_cmp_ps_mask(k2, a4, a5, _CMP_ORD_Q);
            k3 = _mm512_mask_cmp_ps_mask(k3, a6, a7, _CMP_ORD_Q);
            m0 = _mm512_max_ps(m0, _mm512_max_ps(a0, a1));
            m1 = _mm512_max_ps(m1, _mm512_max_ps(a2, a3));
            m2 = _mm512_max_ps(m2, _mm512_max_ps(a4, a5));
            m3 = _mm512_max_ps(m3, _mm512_max_ps(a6, a7));
        }
        for (; i < e; i += 16) {
            __m512 a = _mm512_mask_loadu_ps(ninf, lanes16(e - i), x + i);
            k0 = _mm512_mask_cmp_ps_mask(k0, a, a, _CMP_ORD_Q);
            m0 = _mm512_max_ps(m0, a);
        }
        float cm = hmax16(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
        if (cm > best) {
            best = cm;
            c0 = s;
            c1 = e;
        }
        s = e;
    }
    int nan = (k0 & k1 & k2 & k3) != 0xffff;
    _mm256_zeroupper(); /* see FDI_VZ */
    return argmax_finish(x, nan, best, c0, c1, first_eq_avx512, max, arg);
}

/* 16 quotients (float)((double)a / b): q = a * r in double, the lanes near a float rounding
 * midpoint (the low 29 bits of q within [2^28 - 8, 2^28 + 23]: one subtract and one test of bits
 * 5..28) or outside the range (div_bounds) divided exactly */
FDI_AVX512 static inline __m512 qdiv16(__m512 a, __m512d r, __m512d b, __m512i lom1, __m512i hi)
{
    const __m512i mid = _mm512_set1_epi64(0x10000000 - 8), win = _mm512_set1_epi64(0x1fffffe0);
    __m512i ab = _mm512_and_si512(_mm512_castps_si512(a), _mm512_set1_epi32(0x7fffffff));
    __mmask16 out = _mm512_cmplt_epu32_mask(_mm512_sub_epi32(ab, _mm512_set1_epi32(1)), lom1) |
                    _mm512_cmpgt_epu32_mask(ab, hi);
    __m512d a0 = _mm512_cvtps_pd(_mm512_castps512_ps256(a));
    __m512d a1 = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
    __m512d q0 = _mm512_mul_pd(a0, r), q1 = _mm512_mul_pd(a1, r);
    __mmask8 s0 = _mm512_testn_epi64_mask(_mm512_sub_epi64(_mm512_castpd_si512(q0), mid), win);
    __mmask8 s1 = _mm512_testn_epi64_mask(_mm512_sub_epi64(_mm512_castpd_si512(q1), mid), win);
    s0 |= (__mmask8)out;
    s1 |= (__mmask8)(out >> 8);
    if (s0 | s1) {
        q0 = _mm512_mask_div_pd(q0, s0, a0, b);
        q1 = _mm512_mask_div_pd(q1, s1, a1, b);
    }
    __m256 f0 = _mm512_cvtpd_ps(q0), f1 = _mm512_cvtpd_ps(q1);
    return _mm512_castpd_ps(
        _mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(f0)), _mm256_castps_pd(f1), 1));
}

/* (float)((double)(a - m) / b) over n elements (m = 0: div_f32), 16 at a time, the tail masked */
FDI_AVX512 static void qdiv_row_avx512(const float *x, int64_t n, float m, double b, float *out)
{
    uint32_t lom1, hi;
    if (!recip_ok(b) || !div_bounds(b, &lom1, &hi)) {
        shift_div_portable(x, n, m, b, out);
        return;
    }
    const __m512d bb = _mm512_set1_pd(b), r = _mm512_set1_pd(1.0 / b);
    const __m512i vlo = _mm512_set1_epi32((int32_t)lom1), vhi = _mm512_set1_epi32((int32_t)hi);
    const __m512 mm = _mm512_set1_ps(m);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 a = _mm512_sub_ps(_mm512_loadu_ps(x + i), mm);
        _mm512_storeu_ps(out + i, qdiv16(a, r, bb, vlo, vhi));
    }
    if (i < n) {
        __mmask16 k = lanes16(n - i);
        __m512 a = _mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), mm);
        _mm512_mask_storeu_ps(out + i, k, qdiv16(a, r, bb, vlo, vhi));
    }
    _mm256_zeroupper(); /* see FDI_VZ */
}

/* e - 0.0f is e (also for -0: -0 - +0 = -0), so div_f32 is shift_div with m = 0 */
FDI_AVX512 static void div_f32_avx512(const float *e, int64_t n, double z, float *out)
{
    qdiv_row_avx512(e, n, 0.0f, z, out);
}

FDI_AVX512 static void shift_div_avx512(const float *x, int64_t n, float m, double t, float *out)
{
    qdiv_row_avx512(x, n, m, t, out);
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
            gather_keep_##sfx, lbins_##sfx, bin_gather_##sfx, argmax_##sfx, log_shift_##sfx      \
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
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
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
