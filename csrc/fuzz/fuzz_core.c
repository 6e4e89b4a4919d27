/*
 * fuzz_core.c: a coverage-guided fuzz target (libFuzzer, ASan + UBSan) over every public entry
 * point of fd.h, with invariants that must hold for any input.
 *
 *   make -C csrc fuzz                       build tests/bin/fuzz_core (needs clang)
 *   make -C csrc fuzz-run FUZZ_SECONDS=60   replay fuzz/corpus, then fuzz for a fixed time
 *   csrc/tests/bin/fuzz_core FILE...        replay single inputs (a crash reproducer)
 *
 * Decoding. The input is read front to back as a structured description of one call; a read
 * past the end gives 0 (and logits / ids past the end follow a fixed benign pattern), so a short
 * input still describes a whole case and every byte the fuzzer mutates has one meaning:
 *   kernel    one byte: fd_filter (each kind, and an invalid kind), fd_softmax / log, fd_entropy,
 *             fd_argmax, fd_floor, fd_sample in both orders, the seven penalty kernels, fd_beam_step, the
 *             dtype loads / stores / copies and the scalar float16 / bfloat16 conversions, rng
 *   flags     dtype (any of the four, rarely an invalid one), ISA level (portable, AVX2,
 *             AVX-512), whether to re-run at another ISA level (differential: every path must
 *             give the same bits), whether to re-run each row alone (rows never depend on their
 *             batch neighbours), a NULL data pointer
 *   shape     n_rows 0..8, n_cols 0..300 (rarely one or two rows of 301..4300: the paths for
 *             lists of >= 2048 candidates), row_stride = n_cols, n_cols + 1..64, or invalid on
 *             purpose (< n_cols, negative; one row with a huge or negative stride; negative
 *             sizes), a misalignment of the rows by whole elements
 *   params    per row with stride 0 or 1, each value typical for its kind (probabilities,
 *             counts, temperatures) or one of a table of specials (NaN, +-inf, -0, huge, denormal,
 *             2^53, 2^63, just above / below 1, raw bits)
 *   logits    one of four encodings (raw bit patterns of the dtype, small tied values with
 *             escapes to -inf / NaN / +inf / specials, 16-bit fixed point, mostly -inf) times a
 *             scale (1 .. 3e38, denormal); past the input's end a fixed pattern (ties, a ramp,
 *             nearly distinct values)
 *   kernel specifics: id histories (any int64, small alphabets so n-grams repeat, begin / end
 *             arrays valid or not), id lists and bias values, bitmask words, bad-word lists, beam
 *             scores, group size and k, rng seeds / positions / explicit uniforms, filter_value
 *   spec_verify (kernel bytes 224..231): n_rows is the batch B; then gamma 0..6 (rarely -1,
 *             INT64_MAX, or a target row count that is not B * (gamma + 1)), draft rows NULL or
 *             B * gamma (rarely a wrong count), drafted ids (any int64, mostly in range, or drawn
 *             from the draft rows by fd_sample with the uniform fd_uniform(seed, position + i,
 *             FD_DRAW_SPEC_DRAFT)), n_draft (NULL or per row, sometimes outside [0, gamma]),
 *             greedy (NULL or per-row bytes), seeds / positions (sometimes NULL); the logits hold
 *             the target rows, then the draft rows
 *
 * Every buffer is malloc'd at its exact size with the data at its end (rows, per-row params,
 * ids, outputs, the workspace from the matching fd_*_workspace function), so ASan reports any
 * read or write past what the contract allows; gaps between rows hold NaN, so a kernel that read
 * a gap would report FD_ENAN at an element that is not NaN. The workspace is filled with a
 * different byte on every run, so a result that depended on uninitialised scratch would differ
 * between the runs that are compared.
 *
 * Invariants (a violation calls __builtin_trap, which libFuzzer reports as a crash):
 *   every call   the status is an fd_status; err row / index are -1 or in range; an invalid
 *                shape, stride, dtype or NULL pointer gives an error; const inputs are unchanged;
 *                FD_ENAN / FD_EPOSINF name the first NaN / +inf element of their row; re-runs at
 *                another ISA level, with another alignment, aliasing and workspace contents, give
 *                identical bits; each row run alone gives its row of the batch result
 *   filter       every output is the input element or filter_value; at least min(min_keep, V)
 *                kept; the row maximum kept (all kinds but typical); the kept set is closed
 *                upwards (all but typical); top-k and min-p kept sets exactly as fd.h defines
 *   softmax      probabilities finite, in [0, 1], summing to 1 within 1e-4 and ordered as the
 *                logits; log-probabilities <= 0; temperature 0 the one-hot of the first maximum
 *   entropy      0 <= H <= log(#finite), varentropy >= 0, both finite
 *   argmax       the first maximum (a reference scan)
 *   sample       a token in [0, V) with a finite logit, logprob finite and <= 0; temperature 0,
 *                top_k 1 and min_p 1 give a maximum
 *   penalties    every element exactly as the fd.h rule computes it (reference transcriptions);
 *                success only when every id read is in [0, V); FD_ERANGE names an id outside
 *   beam_step    the k best (score, flat index) pairs of a brute-force sort, scores bit for bit
 *                fd_softmax's log-probabilities plus the beam score
 *   mirostat     a token in [0, V) with a finite logit (temperature 0: the first maximum), mu'
 *                = mu - eta (surprise - tau) with surprise = -logprob / ln 2, 1 <= kept <= finite
 *                logits; an invalid version / m / tau / eta / T / mu is FD_EINVAL
 *   entropix     branch in 0..5, H / V finite and >= 0, argmax rows the first maximum, clarify
 *                rows the clarify token, other tokens have finite logits; explicit uniforms or no
 *                rng are FD_EINVAL
 *   spec_verify  n_accepted in [0, n_draft], next_token in [0, V) with a finite logit in target row
 *                acc; greedy rows: accepted drafts the first maxima of their rows, next_token the
 *                first maximum of row acc and different from a rejected draft; sampling rows: an
 *                accepted draft has a finite target logit, each accept / reject decision agrees with
 *                u * q(d) < p(d) recomputed in double (unless within 1e-5 of the boundary), a
 *                rejected deterministic draft is not the next token, a residual token has p >= q
 *                (within 1e-5); drafts drawn by fd_sample never fail the q(d) > 0 check; errors
 *                name a row and index of the right kind (FD_ERANGE the first id out of range,
 *                FD_ENAN / FD_EPOSINF a row holding NaN / +inf, FD_ENOFINITE a row of -inf, and
 *                every row read before it clean); rows not decided are not written
 *   dtype        fd_load_row / fd_check_rows against reference conversions and scans; fd_store
 *                rounds to nearest even (a bisection over the target format); conversions
 *                round-trip
 */
#define _POSIX_C_SOURCE 200809L
#include "fastdecode/fd.h"
#include "internal.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_core: invariant failed: %s (%s:%d)\n", #c, __FILE__, __LINE__);  \
            __builtin_trap();                                                                      \
        }                                                                                          \
    } while (0)

#define MAXR 8
#define MAXC 300
#define MAXWS ((size_t)1 << 26)

enum {
    K_FILTER0 = 0, /* 0..6: fd_filter of that kind */
    K_FILTER_BADKIND = 7,
    K_SOFTMAX = 8,
    K_LOGSOFTMAX,
    K_ENTROPY,
    K_ARGMAX,
    K_SAMPLE_HF,
    K_SAMPLE_LLAMA,
    K_REPETITION,
    K_PRESFREQ,
    K_NGRAM,
    K_BIAS,
    K_SUPPRESS,
    K_BITMASK,
    K_BADWORDS,
    K_BEAM,
    K_DTYPE,
    K_CONVERT,
    K_RNG,
    K_MIROSTAT, /* fd_mirostat, both versions (and invalid ones) */
    K_ENTROPIX, /* fd_entropix */
    K_FLOOR, /* fd_floor (the benchmark suite's floors): ival = kind, 2 invalid */
    K_COUNT
};

/* fd_contrastive and fd_guidance, added later: selected by kernel bytes 240..250 and 252..255,
 * which no committed corpus input uses (the others keep their meaning, byte % K_COUNT) */
enum { K_CONTRAST = K_COUNT, K_GUIDANCE };

/* fd_adaptive_temperature, fd_dynamic_temperature, fd_xtc and fd_dry (adaptive.c), added later
 * still: kernel bytes 232..235, which no committed corpus input other than their own uses */
enum { K_ADAPTIVE_T = K_GUIDANCE + 1, K_DYNAMIC_T, K_XTC, K_DRY };

/* fd_spec_verify likewise: the unused kernel bytes 224..231 */
enum { K_SPEC = K_DRY + 1 };
static int kernel_of(uint8_t b)
{
    if (b >= 224 && b <= 231) {
        return K_SPEC;
    }
    if (b >= 240 && b != 251) {
        return b & 1 ? K_CONTRAST : K_GUIDANCE;
    }
    if (b >= 232 && b <= 235) {
        return K_ADAPTIVE_T + (b - 232);
    }
    return b % K_COUNT;
}

/* ----------------------------------------------------------------------------------------- */
/* input reader                                                                              */

typedef struct {
    const uint8_t *p;
    size_t n, i;
} rd;

static int more(const rd *r)
{
    return r->i < r->n;
}
static uint8_t u8(rd *r)
{
    return r->i < r->n ? r->p[r->i++] : 0;
}
static uint16_t u16(rd *r)
{
    return (uint16_t)(u8(r) | (u8(r) << 8));
}
static uint32_t u32(rd *r)
{
    return (uint32_t)u16(r) | ((uint32_t)u16(r) << 16);
}
static uint64_t u64(rd *r)
{
    return (uint64_t)u32(r) | ((uint64_t)u32(r) << 32);
}

static double bits_d(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}
static float bits_f(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static uint32_t f_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static uint64_t d_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

/* doubles that sit on a boundary of some rule */
static double special(rd *r, uint8_t b)
{
    static const double t[] = {0.0,
                               -0.0,
                               1.0,
                               -1.0,
                               0.5,
                               2.0,
                               1e-300,
                               5e-324,
                               1e300,
                               DBL_MAX,
                               -DBL_MAX,
                               INFINITY,
                               -INFINITY,
                               NAN,
                               -NAN,
                               0x1p53,
                               0x1p63,
                               -0x1p63,
                               0x1p31,
                               0x1p32,
                               1.0 + DBL_EPSILON,
                               1.0 - DBL_EPSILON / 2,
                               3.5,
                               0.1,
                               0.9,
                               0.999999,
                               1e-7,
                               1e-45,
                               FLT_MAX,
                               3.4028235677973366e38,
                               1e39,
                               0x1p-149,
                               0x1p-126,
                               65504.0,
                               65520.0,
                               300.0,
                               301.0,
                               299.0,
                               1e18,
                               9.3e18,
                               1e-10,
                               64.0,
                               63.0,
                               65.0,
                               -0.5,
                               0x1p-1074,
                               1.0 + 0x1p-23,
                               1.0 - 0x1p-24};
    size_t n = sizeof t / sizeof t[0];
    if (b % (n + 1) == n) {
        return bits_d(u64(r));
    }
    return t[b % (n + 1)];
}

enum { P_PROB, P_COUNT, P_TEMP, P_REAL, P_NSIG };

static double gen_val(rd *r, int kind)
{
    uint8_t b = u8(r);
    if (b >= 200) {
        return special(r, (uint8_t)(b - 200));
    }
    uint8_t c = u8(r);
    switch (kind) {
    case P_PROB:
        return c < 128 ? c / 127.0 : pow(10.0, -(c - 128) / 16.0);
    case P_COUNT:
        return (double)(c % 40);
    case P_TEMP:
        return c / 32.0;
    case P_NSIG:
        return (c - 64) / 16.0;
    default:
        return (c - 128) / 16.0;
    }
}

/* a per-row parameter: stride 0 (one value) or 1 (n_rows values), exactly allocated */
typedef struct {
    double *v;
    int64_t stride;
} gparam;

static gparam gen_param(rd *r, int64_t n_rows, int kind)
{
    gparam p;
    p.stride = u8(r) & 1;
    int64_t n = p.stride && n_rows > 0 ? n_rows : 1;
    p.v = malloc((size_t)n * sizeof(double));
    for (int64_t i = 0; i < n; i++) {
        p.v[i] = gen_val(r, kind);
    }
    return p;
}

static gparam const_param(double v)
{
    gparam p = {malloc(sizeof(double)), 0};
    p.v[0] = v;
    return p;
}

static fd_param fparam(const gparam *p, int64_t r0)
{
    return (fd_param){p->v + r0 * p->stride, p->stride};
}
static double pat(const gparam *p, int64_t r)
{
    return p->v[r * p->stride];
}

/* ----------------------------------------------------------------------------------------- */
/* reference conversions (independent of dtype.c)                                           */

static size_t esize(int dt)
{
    return dt == FD_F64 ? 8 : (dt == FD_F16 || dt == FD_BF16) ? 2 : 4;
}

static float ref_half(uint16_t h)
{
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double s = (h & 0x8000) ? -1.0 : 1.0;
    if (e == 0x1f) {
        return m ? (float)NAN : (float)(s * INFINITY);
    }
    if (e == 0) {
        return (float)(s * ldexp(m, -24));
    }
    return (float)(s * ldexp(m + 1024, e - 25));
}

static float ref_bf16(uint16_t h)
{
    return bits_f((uint32_t)h << 16);
}

/* element `off` of a buffer of dtype dt, loaded to float32 as fd.h defines (float64 saturates to
 * +-FLT_MAX, -inf and NaN pass) */
static float ref_load(int dt, const void *base, int64_t off)
{
    switch (dt) {
    case FD_F32: {
        float f;
        memcpy(&f, (const char *)base + off * 4, 4);
        return f;
    }
    case FD_F64: {
        double d;
        memcpy(&d, (const char *)base + off * 8, 8);
        if (d != d) {
            return NAN;
        }
        if (d == INFINITY || d == -INFINITY) {
            return (float)d;
        }
        if (d > FLT_MAX) {
            return FLT_MAX;
        }
        if (d < -FLT_MAX) {
            return -FLT_MAX;
        }
        return (float)d;
    }
    default: {
        uint16_t h;
        memcpy(&h, (const char *)base + off * 2, 2);
        return dt == FD_F16 ? ref_half(h) : ref_bf16(h);
    }
    }
}

static int is_bad(float f)
{
    return f != f || f == INFINITY;
}

static uint64_t ebits(int dt, const void *base, int64_t off)
{
    uint64_t u = 0;
    memcpy(&u, (const char *)base + off * (int64_t)esize(dt), esize(dt));
    return u;
}

/* round-to-nearest-even of f into a 16-bit format whose positive bit patterns 0..inf are ordered
 * like their values (float16: inf 0x7c00, bfloat16: inf 0x7f80), found by bisection */
static uint16_t ref_round16(float f, int bf)
{
    uint16_t inf = bf ? 0x7f80 : 0x7c00;
    if (f != f) {
        return 0; /* callers handle NaN */
    }
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    double a = fabs((double)f);
    float (*cv)(uint16_t) = bf ? ref_bf16 : ref_half;
    /* the largest pattern h <= inf with value(h) <= a */
    uint16_t lo = 0, hi = inf;
    if ((double)cv(inf) <= a) {
        return (uint16_t)(sign | inf);
    }
    while (hi - lo > 1) {
        uint16_t mid = (uint16_t)((lo + hi) / 2);
        if ((double)cv(mid) <= a) {
            lo = mid;
        }
        else {
            hi = mid;
        }
    }
    double vlo = cv(lo), vhi = cv(hi);
    if (hi == inf) { /* the overflow threshold: the next value the format would have */
        vhi = bf ? 0x1p128 : 65536.0;
    }
    uint16_t q;
    if (a - vlo < vhi - a) {
        q = lo;
    }
    else if (a - vlo > vhi - a) {
        q = hi;
    }
    else {
        q = (lo & 1) ? hi : lo;
    }
    return (uint16_t)(sign | q);
}

/* ----------------------------------------------------------------------------------------- */
/* the decoded case                                                                          */

typedef struct {
    int kernel;
    int dtype;
    int isa, diff, split, null_data;
    int64_t n_rows, n_cols, row_stride; /* as passed (may be invalid) */
    int weird;                          /* sizes / strides invalid on purpose */
    int pad;                            /* misalignment of the data, in elements */
    uint8_t wsfill;
    int wsoff;
    uint8_t *x; /* n_rows * n_cols elements, row-major, no gaps, in dtype's encoding */
    /* outputs of filter / softmax */
    int alias; /* 0 separate, 1 in place, 2 in place shifted by `shift` elements */
    int64_t shift;
    int out_dtype;
    int64_t out_stride; /* separate buffer */
    int out_bad;        /* 1: out rows + 1, 2: out cols - 1 */
    int null_out;       /* NULL optional outputs (entropy, varentropy, logprob) */
    /* parameters */
    gparam p[8];
    int np;
    double filter_value;
    int64_t ival, ival2; /* n of no-repeat-ngram; group_size, k of beam_step */
    int order, norm;
    /* histories */
    int64_t ids_rows, ids_cols, ids_stride;
    int64_t *ids;
    int64_t *ids_begin, *ids_end;
    int null_ids;
    /* lists: logit bias / suppress ids and values; bad words flat / offsets */
    int64_t n_list;
    int64_t *list;
    double *vals;
    int64_t vals_stride, vals_len;
    int64_t n_words;
    int64_t *flat, *offsets;
    int64_t flat_len;
    /* bitmask */
    int32_t *words;
    int64_t bm_words, bm_stride, bm_len;
    /* beam */
    float *beam;
    /* rng */
    int rng_mode;
    uint64_t *seed;
    int64_t *pos;
    double *unif;
    int64_t seed_stride, pos_stride, unif_stride;
    /* dtype kernels: a list of (row, col, value) stores */
    int n_stores;
    int64_t st_row[16], st_col[16];
    double st_val[16];
    /* spec_verify (n_rows is B, ival gamma; ids the drafted tokens, ids_stride their stride):
     * target and draft row counts as passed (draft -1: NULL), the rows of x they take, n_draft,
     * greedy, which rows' drafts fd_sample drew, an invalid gamma */
    int64_t sp_trows, sp_drows, sp_xt, sp_xd;
    int64_t *sp_ndraft;
    uint8_t *sp_greedy;
    uint8_t *sp_drawn;
    int sp_badgamma, sp_null_seed, sp_null_pos;
} fcase;

static int valid_stride(const fcase *c, int64_t nr)
{
    return nr <= 1 || c->row_stride >= c->n_cols;
}

/* one logits value from the input (or from the fixed pattern past its end) */
static double gen_logit(rd *r, int mode, double scale, int64_t i, int *raw, uint64_t *rawbits,
                        int dt, uint8_t pat)
{
    *raw = 0;
    if (!more(r)) {
        /* past the input: a periodic pattern (mostly ties), a ramp, or nearly distinct values */
        static const int64_t mul[4] = {7919, 1, 7919, 40503};
        static const int64_t mod[4] = {97, 4099, 1021, 65521};
        int64_t q = (i * mul[pat & 3]) % mod[pat & 3] - mod[pat & 3] / 2;
        return (double)q * scale / ((pat & 4) ? 8.0 : 512.0);
    }
    uint8_t b;
    switch (mode) {
    case 0:
        *raw = 1;
        *rawbits = 0;
        for (size_t k = 0; k < esize(dt); k++) {
            *rawbits |= (uint64_t)u8(r) << (8 * k);
        }
        return 0.0;
    case 1:
        b = u8(r);
        if (b == 255) {
            return -INFINITY;
        }
        if (b == 254) {
            return NAN;
        }
        if (b == 253) {
            return INFINITY;
        }
        if (b == 252) {
            return special(r, u8(r));
        }
        return (double)((int)(b % 32) - 16) * scale;
    case 2: {
        uint16_t w = u16(r);
        if ((w >> 8) == 0x80) {
            return special(r, (uint8_t)w);
        }
        return (double)(int16_t)w / 256.0 * scale;
    }
    default:
        b = u8(r);
        return b < 192 ? -INFINITY : (double)((int)(b & 31) - 16) * scale;
    }
}

static void put_elem(uint8_t *buf, int dt, int64_t off, double v)
{
    switch (dt) {
    case FD_F64:
        memcpy(buf + off * 8, &v, 8);
        break;
    case FD_F16: {
        uint16_t h = fd_float_to_half((float)v);
        memcpy(buf + off * 2, &h, 2);
        break;
    }
    case FD_BF16: {
        uint16_t h = fd_float_to_bf16((float)v);
        memcpy(buf + off * 2, &h, 2);
        break;
    }
    default: {
        float f = (float)v;
        memcpy(buf + off * 4, &f, 4);
        break;
    }
    }
}

static int64_t gen_id(rd *r, int64_t alpha, int64_t V, int64_t i)
{
    if (!more(r)) {
        return V > 0 ? (i % 5) % V : 0;
    }
    uint8_t b = u8(r);
    if (b < 224) {
        int64_t v = b % alpha;
        return V > 0 ? v % V : v;
    }
    switch (b % 8) {
    case 0:
        return -1;
    case 1:
        return V;
    case 2:
        return V - 1;
    case 3:
        return INT64_MIN;
    case 4:
        return INT64_MAX;
    case 5:
        return V + 1;
    case 6:
        return -V;
    default:
        return (int64_t)u64(r);
    }
}

static void gen_ids(rd *r, fcase *c)
{
    uint8_t b = u8(r);
    c->ids_rows = c->n_rows + (b == 255); /* a mismatch, rarely */
    c->ids_cols = u8(r) % 49;
    uint8_t sm = u8(r);
    c->ids_stride = c->ids_cols + (sm % 3);
    if (sm >= 250) {
        c->ids_stride = c->ids_cols - 1 - (sm & 1);
    }
    int64_t alpha = 1 + u8(r) % 8;
    if (alpha == 8) {
        alpha = 256;
    }
    c->null_ids = u8(r) == 255;
    int64_t rows = c->ids_rows > 0 ? c->ids_rows : 0;
    int64_t st = c->ids_stride >= c->ids_cols ? c->ids_stride : c->ids_cols;
    int64_t len = rows > 0 && c->ids_cols > 0 ? (rows - 1) * st + c->ids_cols : 0;
    c->ids = malloc((size_t)(len > 0 ? len : 1) * sizeof(int64_t));
    for (int64_t i = 0; i < len; i++) {
        c->ids[i] = gen_id(r, alpha, c->n_cols, i);
    }
    uint8_t be = u8(r);
    c->ids_begin = c->ids_end = NULL;
    if (be & 1) {
        c->ids_begin = malloc((size_t)(rows > 0 ? rows : 1) * sizeof(int64_t));
    }
    if (be & 2) {
        c->ids_end = malloc((size_t)(rows > 0 ? rows : 1) * sizeof(int64_t));
    }
    for (int64_t i = 0; i < rows; i++) {
        int64_t bg = u8(r) % (c->ids_cols + 1);
        int64_t en = bg + u8(r) % (c->ids_cols - bg + 1);
        uint8_t bad = u8(r);
        if (bad >= 250) {
            switch (bad % 3) {
            case 0:
                bg = -1;
                break;
            case 1:
                en = c->ids_cols + 1;
                break;
            default:
                en = bg - 1;
                break;
            }
        }
        if (c->ids_begin) {
            c->ids_begin[i] = bg;
        }
        if (c->ids_end) {
            c->ids_end[i] = en;
        }
    }
}

static void gen_list(rd *r, fcase *c, int with_vals)
{
    c->n_list = u8(r) % 17;
    int64_t alpha = 1 + u8(r) % 64;
    c->list = malloc((size_t)(c->n_list ? c->n_list : 1) * sizeof(int64_t));
    for (int64_t j = 0; j < c->n_list; j++) {
        c->list[j] = gen_id(r, alpha, c->n_cols, j);
    }
    if (!with_vals) {
        return;
    }
    uint8_t sm = u8(r);
    int64_t rows = c->n_rows > 0 ? c->n_rows : 0;
    c->vals_stride = (sm & 1) ? c->n_list + (sm >> 1) % 3 : 0;
    if (sm == 255) {
        c->vals_stride = -1;
    }
    int64_t st = c->vals_stride > 0 ? c->vals_stride : 0;
    c->vals_len = rows > 0 ? (rows - 1) * st + c->n_list : c->n_list;
    c->vals = malloc((size_t)(c->vals_len ? c->vals_len : 1) * sizeof(double));
    for (int64_t j = 0; j < c->vals_len; j++) {
        c->vals[j] = gen_val(r, P_REAL);
    }
}

static void free_case(fcase *c)
{
    free(c->x);
    for (int i = 0; i < c->np; i++) {
        free(c->p[i].v);
    }
    free(c->ids);
    free(c->ids_begin);
    free(c->ids_end);
    free(c->list);
    free(c->vals);
    free(c->flat);
    free(c->offsets);
    free(c->words);
    free(c->beam);
    free(c->seed);
    free(c->pos);
    free(c->unif);
    free(c->sp_ndraft);
    free(c->sp_greedy);
    free(c->sp_drawn);
}

/* fd_spec_verify's arguments after the common header (n_rows is the batch B): gamma, the row
 * counts of the target and draft matrices (x holds sp_xt target rows, then sp_xd draft rows),
 * the drafted ids, n_draft, greedy, seeds and positions; sets `weird` exactly when the call is
 * malformed (the kernel must answer FD_ESHAPE) */
static void decode_spec(rd *r, fcase *c)
{
    int64_t B = c->n_rows, rows = B > 0 ? B : 0;
    uint8_t gb = u8(r);
    int64_t g = gb % 7, extra = 0;
    int bad_rows = 0;
    if (c->row_stride == INT64_MAX) {
        g = 0; /* one row with a huge stride: every row count stays <= 1 */
    }
    else if (gb >= 252) {
        static const int64_t badg[4] = {-1, INT64_MAX, INT64_MIN, -2};
        g = badg[gb - 252];
        c->sp_badgamma = 1;
    }
    else if (gb >= 248) {
        g = 1 + gb % 6; /* target rows not a multiple of gamma + 1 */
        extra = 1 + u8(r) % g;
        bad_rows = 1;
    }
    c->ival = g;
    int64_t gv = c->sp_badgamma ? 0 : g; /* drafts per row that exist */
    c->sp_trows = B < 0 || c->sp_badgamma ? B : B * (g + 1) + extra;
    c->sp_xt = c->sp_trows > 0 ? c->sp_trows : 0;

    uint8_t dm = u8(r);
    int hasd = dm % 4 != 0;
    int64_t drows = rows * gv;
    if (hasd && dm >= 248 && c->row_stride != INT64_MAX) {
        drows = (dm & 1) || drows == 0 ? drows + 1 : drows - 1;
        bad_rows = 1;
    }
    c->sp_drows = hasd ? drows : -1;
    c->sp_xd = hasd ? drows : 0;

    /* drafted ids: B rows of gamma with stride gamma + 0..2 (rarely 0: shared, or NULL) */
    uint8_t ts = u8(r);
    c->ids_cols = gv;
    c->ids_stride = ts >= 250 ? 0 : gv + ts % 3;
    c->null_ids = ts == 249;
    c->ids_rows = c->ids_stride == 0 && rows > 1 ? 1 : rows;
    int64_t alpha = 1 + u8(r) % 16;
    int64_t len = rows > 0 ? (rows - 1) * c->ids_stride + gv : 0;
    c->ids = malloc((size_t)(len > 0 ? len : 1) * sizeof(int64_t));
    for (int64_t i = 0; i < len; i++) {
        c->ids[i] = gen_id(r, alpha, c->n_cols, i);
    }
    /* drawn from the draft rows (draw_spec, once the logits are known) */
    int draw = ((dm >> 2) & 3) != 0 && hasd && !bad_rows && !c->sp_badgamma && gv > 0 &&
               c->ids_stride >= gv && !c->null_ids && c->n_cols > 0 && c->dtype <= FD_BF16;
    if (draw && rows > 0) {
        c->sp_drawn = calloc((size_t)(rows * gv), 1);
    }

    uint8_t nd = u8(r);
    if (nd % 3 != 0) {
        c->sp_ndraft = malloc((size_t)(rows ? rows : 1) * sizeof(int64_t));
        for (int64_t b = 0; b < rows; b++) {
            uint8_t v = u8(r);
            static const int64_t badn[4] = {-1, 1, INT64_MIN, INT64_MAX};
            c->sp_ndraft[b] = v < 240 ? v % (gv + 1) : (v % 4 == 1 ? gv + 1 : badn[v % 4]);
        }
    }
    uint8_t gm = u8(r);
    if (gm % 3 != 0) {
        c->sp_greedy = malloc((size_t)(rows ? rows : 1));
        for (int64_t b = 0; b < rows; b++) {
            c->sp_greedy[b] = gm % 3 == 2 ? 1 : (uint8_t)(u8(r) & 0x81);
        }
    }
    uint8_t rm = u8(r);
    c->sp_null_seed = rm % 8 == 1;
    c->sp_null_pos = rm % 8 == 2;
    c->seed_stride = (rm >> 3) & 1;
    c->pos_stride = (rm >> 4) & 1;
    int64_t ns = c->seed_stride && rows ? rows : 1, npos = c->pos_stride && rows ? rows : 1;
    c->seed = malloc((size_t)ns * sizeof(uint64_t));
    c->pos = malloc((size_t)npos * sizeof(int64_t));
    for (int64_t i = 0; i < ns; i++) {
        c->seed[i] = u8(r) < 128 ? u8(r) : u64(r);
    }
    for (int64_t i = 0; i < npos; i++) {
        c->pos[i] = u8(r) < 128 ? (int64_t)u16(r) : (int64_t)u64(r);
    }

    int malformed = c->n_rows < 0 || c->n_cols < 0 || c->dtype > FD_BF16 || c->sp_badgamma ||
                    bad_rows;
    int64_t tr = c->sp_trows, dr = hasd ? drows : 0;
    if (c->row_stride < c->n_cols && (tr > 1 || dr > 1)) {
        malformed = 1;
    }
    if (c->null_data && c->n_cols > 0 && (tr > 0 || dr > 0)) {
        malformed = 1;
    }
    if (B > 0 && (c->null_out >= 254 || (c->null_ids && gv > 0))) {
        malformed = 1;
    }
    c->weird = malformed;
}

/* the drafted ids of rows whose draft logits are given: drawn by fd_sample (temperature 1, no
 * filter) with the uniform fd_uniform(seed, position + i, FD_DRAW_SPEC_DRAFT), so q(d) > 0 */
static void draw_spec(fcase *c)
{
    if (!c->sp_drawn) {
        return;
    }
    int64_t B = c->n_rows, g = c->ival, V = c->n_cols;
    size_t es = esize(c->dtype);
    static const double one = 1.0, zero = 0.0;
    fd_sample_params P = {{&one, 0}, {&zero, 0}, {&one, 0},  {&zero, 0},
                          {&one, 0}, {&zero, 0}, {&zero, 0}, {&zero, 0}, FD_ORDER_HF};
    void *ws = NULL;
    if (posix_memalign(&ws, 64, fd_sample_workspace(V))) {
        abort();
    }
    for (int64_t b = 0; b < B; b++) {
        uint64_t s = c->seed[b * c->seed_stride];
        uint64_t pos = (uint64_t)c->pos[b * c->pos_stride];
        for (int64_t i = 0; i < g; i++) {
            fd_rows row = {c->x + (size_t)((c->sp_xt + b * g + i) * V) * es, (fd_dtype)c->dtype, 1,
                           V, V};
            double u = fd_uniform(s, pos + (uint64_t)i, FD_DRAW_SPEC_DRAFT);
            fd_rng_args rng = {0};
            rng.uniform = &u;
            int64_t t = -1;
            fd_errinfo e;
            if (fd_sample(&row, &P, &rng, &t, NULL, ws, &e) == FD_OK) {
                REQUIRE(t >= 0 && t < V);
                c->ids[b * c->ids_stride + i] = t;
                c->sp_drawn[b * g + i] = 1;
            }
        }
    }
    free(ws);
}

static void decode_adaptive(rd *r, fcase *c, int64_t rows); /* adaptive.c kernels */

static void decode(rd *r, fcase *c)
{
    memset(c, 0, sizeof *c);
    c->kernel = kernel_of(u8(r));
    uint8_t f = u8(r);
    c->dtype = f & 3;
    c->isa = (f >> 2) & 3; /* 3: the best the CPU has */
    c->diff = (f >> 4) & 1;
    c->split = (f >> 5) & 1;
    c->null_data = (f >> 6) == 3 && (u8(r) & 7) == 0;
    c->n_rows = u8(r) % (MAXR + 1);
    uint16_t wc = u16(r);
    c->n_cols = wc % (MAXC + 1);
    if (wc >= 0xf000) {
        /* rarely, one or two long rows: the paths for lists of >= 2048 candidates (linear bins
         * of select.c), several argmax chunks, fd_check_rows' slices */
        c->n_cols = MAXC + 1 + (wc & 0xfff) % 4000;
        c->n_rows = c->n_rows > 2 ? 2 : c->n_rows;
    }
    uint8_t sm = u8(r);
    c->row_stride = c->n_cols;
    switch (sm % 16) {
    case 8:
    case 9:
        c->row_stride = c->n_cols + 1 + (sm >> 4) % 64;
        break;
    case 10: /* invalid: rows overlap */
        c->row_stride = c->n_cols - 1 - (sm >> 4) % 4;
        c->weird = c->n_rows > 1;
        break;
    case 11: { /* one row with any stride, or negative sizes, or an invalid dtype */
        uint8_t w = u8(r);
        switch (w % 6) {
        case 0:
            c->n_rows = c->n_rows ? 1 : 0;
            c->row_stride = INT64_MAX;
            break;
        case 1:
            c->n_rows = c->n_rows ? 1 : 0;
            c->row_stride = -(int64_t)(w >> 3) - 1;
            break;
        case 2:
            c->n_rows = -1 - (w >> 3);
            c->weird = 1;
            break;
        case 3:
            c->n_cols = -1 - (w >> 3);
            c->weird = 1;
            break;
        case 4:
            c->dtype = 4 + (w >> 3);
            c->weird = 1;
            break;
        default:
            c->row_stride = INT64_MIN;
            c->weird = c->n_rows > 1;
            break;
        }
        break;
    }
    default:
        break;
    }
    if (c->null_data && c->n_rows > 0 && c->n_cols > 0) {
        c->weird = 1;
    }
    c->pad = u8(r) % 4;
    c->wsfill = u8(r);
    c->wsoff = u8(r) % 64;
    uint8_t om = u8(r);
    c->alias = om % 4 == 1 ? 1 : om % 4 == 2 ? 2 : 0;
    c->shift = 1 + (om >> 2) % 8;
    c->out_stride = c->row_stride < INT64_MAX ? c->row_stride + ((om >> 5) & 1) : c->row_stride;
    c->out_bad = om >= 252 ? 1 + (om & 1) : 0;
    c->null_out = u8(r);
    c->filter_value = (u8(r) & 3) ? -INFINITY : gen_val(r, P_REAL);

    int64_t rows = c->n_rows > 0 ? c->n_rows : 0, cols = c->n_cols > 0 ? c->n_cols : 0;
    int k = c->kernel;
    /* kernel-specific parameters */
    if (k <= K_FILTER_BADKIND) {
        int kind = k == K_FILTER_BADKIND ? FD_FILTER_TOP_K : k;
        c->p[0] = gen_param(r, rows,
                            kind == FD_FILTER_TOP_K         ? P_COUNT
                            : kind == FD_FILTER_TOP_N_SIGMA ? P_NSIG
                                                            : P_PROB);
        uint8_t mk = u8(r);
        c->p[1] = mk < 128 ? const_param(1.0) : gen_param(r, rows, P_COUNT);
        c->np = 2;
        c->out_dtype = c->dtype;
        if (c->out_bad == 2) {
            c->out_dtype = (c->dtype + 1) % 4;
        }
    }
    else if (k == K_SOFTMAX || k == K_LOGSOFTMAX || k == K_ENTROPY) {
        uint8_t tm = u8(r);
        c->p[0] = tm < 128 ? const_param(1.0) : gen_param(r, rows, P_TEMP);
        c->np = 1;
        c->out_dtype = (tm & 1) ? FD_F64 : FD_F32;
        if (c->out_bad == 2) {
            c->out_dtype = FD_F16;
        }
    }
    else if (k == K_SAMPLE_HF || k == K_SAMPLE_LLAMA) {
        uint8_t on = u8(r);
        static const int kinds[8] = {P_TEMP, P_COUNT, P_PROB, P_PROB,
                                     P_PROB, P_PROB,  P_PROB, P_NSIG};
        static const double off[8] = {1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0};
        for (int i = 0; i < 8; i++) {
            c->p[i] = ((on >> i) & 1) ? gen_param(r, rows, kinds[i]) : const_param(off[i]);
        }
        c->np = 8;
        uint8_t ob = u8(r);
        c->order = k == K_SAMPLE_HF ? FD_ORDER_HF : FD_ORDER_LLAMA;
        if (ob == 255) {
            c->order = 2;
        }
        uint8_t rm = u8(r);
        c->rng_mode = rm % 4; /* 0 uniforms, 1 seed + position, 2 no rng, 3 an empty rng */
        c->unif_stride = (rm >> 2) & 1;
        c->seed_stride = (rm >> 3) & 1;
        c->pos_stride = (rm >> 4) & 1;
        int64_t nu = c->unif_stride && rows ? rows : 1;
        c->unif = malloc((size_t)nu * sizeof(double));
        for (int64_t i = 0; i < nu; i++) {
            uint8_t b = u8(r);
            c->unif[i] = b < 240 ? u16(r) / 65536.0 : special(r, u8(r));
        }
        int64_t ns = c->seed_stride && rows ? rows : 1, npos = c->pos_stride && rows ? rows : 1;
        c->seed = malloc((size_t)ns * sizeof(uint64_t));
        c->pos = malloc((size_t)npos * sizeof(int64_t));
        for (int64_t i = 0; i < ns; i++) {
            c->seed[i] = u64(r);
        }
        for (int64_t i = 0; i < npos; i++) {
            c->pos[i] = (int64_t)u64(r);
        }
    }
    else if (k == K_REPETITION || k == K_PRESFREQ || k == K_NGRAM || k == K_BADWORDS) {
        if (k == K_REPETITION) {
            c->p[0] = gen_param(r, rows, P_TEMP);
            c->np = 1;
        }
        else if (k == K_PRESFREQ) {
            c->p[0] = gen_param(r, rows, P_REAL);
            c->p[1] = gen_param(r, rows, P_REAL);
            c->np = 2;
        }
        else if (k == K_NGRAM) {
            uint8_t b = u8(r);
            c->ival = b < 240 ? 1 + b % 6 : (b == 255 ? INT64_MAX : (int64_t)(b % 8) - 3);
            if (b >= 240 && b < 250) {
                c->ival = 1 + (b - 240) * 8;
            }
        }
        else {
            c->n_words = u8(r) % 7;
            uint8_t ob = u8(r);
            c->offsets = malloc((size_t)(c->n_words + 1) * sizeof(int64_t));
            c->offsets[0] = ob == 255 ? -1 : 0;
            int64_t alpha = 1 + u8(r) % 8;
            for (int64_t w = 0; w < c->n_words; w++) {
                uint8_t lb = u8(r);
                int64_t m = lb == 255 ? 0 : 1 + lb % 4;
                c->offsets[w + 1] = (w == 0 && c->offsets[0] < 0 ? 0 : c->offsets[w]) + m;
            }
            c->flat_len = c->n_words ? c->offsets[c->n_words] : 0;
            c->flat = malloc((size_t)(c->flat_len > 0 ? c->flat_len : 1) * sizeof(int64_t));
            for (int64_t q = 0; q < c->flat_len; q++) {
                c->flat[q] = gen_id(r, alpha, c->n_cols, q);
            }
        }
        gen_ids(r, c);
    }
    else if (k == K_BIAS || k == K_SUPPRESS) {
        gen_list(r, c, k == K_BIAS);
    }
    else if (k == K_BITMASK) {
        int64_t need = (cols + 31) / 32;
        uint8_t b = u8(r);
        c->bm_words = need + b % 3;
        if (b == 255) {
            c->bm_words = need - 1;
        }
        uint8_t s = u8(r);
        c->bm_stride = s % 3 == 0 ? 0 : c->bm_words + (s % 3 == 2);
        if (s == 255) {
            c->bm_stride = -1;
        }
        int64_t st = c->bm_stride > 0 ? c->bm_stride : 0;
        c->bm_len = c->bm_words > 0 ? (rows > 0 ? (rows - 1) * st : 0) + c->bm_words : 0;
        c->words = malloc((size_t)(c->bm_len > 0 ? c->bm_len : 1) * sizeof(int32_t));
        for (int64_t i = 0; i < c->bm_len; i++) {
            uint8_t m = u8(r);
            c->words[i] = m < 64 ? -1 : m < 96 ? 0 : (int32_t)u32(r);
        }
    }
    else if (k == K_BEAM) {
        c->beam = malloc((size_t)(rows ? rows : 1) * sizeof(float));
        for (int64_t i = 0; i < rows; i++) {
            uint8_t b = u8(r);
            c->beam[i] = b < 200 ? (float)((b - 100) / 10.0)
                                 : (float)(b % 8 == 0   ? -INFINITY
                                           : b % 8 == 1 ? NAN
                                           : b % 8 == 2 ? INFINITY
                                           : b % 8 == 3 ? -FLT_MAX
                                           : b % 8 == 4 ? FLT_MAX
                                           : b % 8 == 5 ? 0x1p-149
                                           : b % 8 == 6 ? -1e30
                                                        : 0.0);
        }
        uint8_t g = u8(r);
        c->ival = 1 + g % (rows > 0 ? rows : 1);
        if (g >= 248) {
            c->ival = g % 4 == 0 ? 0 : g % 4 == 1 ? -1 : rows + 1;
        }
        uint8_t kb = u8(r);
        int64_t gv = c->ival > 0 ? c->ival * cols : 0;
        c->ival2 = gv > 0 ? 1 + (kb | (u8(r) << 8)) % gv : 1;
        if (kb >= 248 || gv == 0) {
            c->ival2 = kb % 4 == 0 ? 0 : kb % 4 == 1 ? -1 : kb % 4 == 2 ? gv + 1 : INT64_MAX;
        }
        c->norm = u8(r) & 1;
    }
    else if (k == K_MIROSTAT || k == K_ENTROPIX) {
        /* mirostat: p = tau, eta, temperature, mu; ival = version, ival2 = m. entropix: vals =
         * the fd_entropix_params (defaults, some fields replaced), list = last tokens. Both:
         * rng as fd_sample. */
        if (k == K_MIROSTAT) {
            c->p[0] = gen_param(r, rows, P_TEMP);
            c->p[1] = gen_param(r, rows, P_PROB);
            c->p[2] = u8(r) < 128 ? const_param(1.0) : gen_param(r, rows, P_TEMP);
            c->p[3] = gen_param(r, rows, P_REAL);
            c->np = 4;
            uint8_t vb = u8(r);
            c->ival = vb < 250 ? 1 + (vb & 1) : (int64_t)(vb % 4) - 1;
            uint8_t mb = u8(r);
            c->ival2 = mb < 250 ? 1 + mb % 120 : (mb == 255 ? INT64_MAX : (int64_t)(mb % 3) - 1);
        }
        else {
            static const double def[FD_ENTROPIX_NPARAMS] = {
                0.666, 27, 0.9, 0.0, 0.1, 0.1, 3.0, 5.0, 5.0, 5.0, 5.0, 1.3, 1.5,
                1.2,   1.5, 1.5, 5, 2.0, 2.0, 0.0, 0.5, 0.3, 0.03, 0.5, 5, -1};
            c->vals = malloc(sizeof def);
            memcpy(c->vals, def, sizeof def);
            uint8_t nch = u8(r) % 6;
            for (uint8_t i = 0; i < nch; i++) {
                uint8_t fi = u8(r) % FD_ENTROPIX_NPARAMS;
                c->vals[fi] = fi == 25 ? (double)((int)u8(r) - 8) : gen_val(r, P_TEMP);
            }
            c->n_list = u8(r) & 1; /* last tokens given */
            c->list = malloc((size_t)(rows ? rows : 1) * sizeof(int64_t));
            for (int64_t i = 0; i < rows; i++) {
                c->list[i] = (int64_t)(u8(r) % 8) - 1;
            }
        }
        uint8_t rm = u8(r);
        c->rng_mode = k == K_MIROSTAT ? rm % 4 : (rm % 16 == 0 ? 0 : rm % 16 == 1 ? 2 : 1);
        c->unif_stride = (rm >> 2) & 1;
        c->seed_stride = (rm >> 3) & 1;
        c->pos_stride = (rm >> 4) & 1;
        int64_t nu = c->unif_stride && rows ? rows : 1;
        c->unif = malloc((size_t)nu * sizeof(double));
        for (int64_t i = 0; i < nu; i++) {
            uint8_t b = u8(r);
            c->unif[i] = b < 240 ? u16(r) / 65536.0 : special(r, u8(r));
        }
        int64_t ns = c->seed_stride && rows ? rows : 1, npos = c->pos_stride && rows ? rows : 1;
        c->seed = malloc((size_t)ns * sizeof(uint64_t));
        c->pos = malloc((size_t)npos * sizeof(int64_t));
        for (int64_t i = 0; i < ns; i++) {
            c->seed[i] = u64(r);
        }
        for (int64_t i = 0; i < npos; i++) {
            c->pos[i] = (int64_t)u64(r);
        }
    }
    else if (k == K_CONTRAST || k == K_GUIDANCE) {
        /* p0 alpha / guidance scale, p1 tau, p2 beta; order: use_beta / normalize */
        uint8_t m = u8(r);
        c->p[0] = k == K_GUIDANCE ? gen_param(r, rows, P_REAL)
                  : m & 2         ? gen_param(r, rows, P_PROB)
                                  : const_param(0.1);
        c->p[1] = m & 4 ? gen_param(r, rows, P_TEMP) : const_param(1.0);
        c->p[2] = m & 8 ? gen_param(r, rows, P_REAL) : const_param(0.5);
        c->np = 3;
        c->order = m & 1;
        c->out_dtype = (m & 16) ? FD_F64 : FD_F32;
        if (c->out_bad == 2) {
            c->out_dtype = FD_F16;
        }
    }
    else if (k == K_FLOOR) {
        c->ival = u8(r) % 3;
    }
    else if (k >= K_ADAPTIVE_T && k <= K_DRY) {
        decode_adaptive(r, c, rows);
    }
    else if (k == K_DTYPE) {
        c->n_stores = u8(r) % 17;
        for (int i = 0; i < c->n_stores; i++) {
            c->st_row[i] = rows ? u8(r) % rows : 0;
            c->st_col[i] = cols ? u16(r) % cols : 0;
            uint8_t b = u8(r);
            c->st_val[i] = b < 128 ? bits_f(u32(r)) : gen_val(r, P_REAL);
        }
    }

    else if (k == K_SPEC) {
        decode_spec(r, c);
    }

    /* the logits, last: they take whatever the input has left */
    size_t es = esize(c->dtype);
    int64_t ne = (k == K_SPEC ? c->sp_xt + c->sp_xd : rows) * cols;
    c->x = malloc((size_t)(ne > 0 ? ne : 1) * es);
    uint8_t lm = u8(r), pat = u8(r);
    static const double scales[8] = {1.0, 1.0 / 64, 1000.0, 1e30, 1e-40, 3e38, 1e-5, 88.0};
    double scale = scales[(lm >> 2) & 7];
    for (int64_t i = 0; i < ne; i++) {
        int raw;
        uint64_t rb;
        double v = gen_logit(r, lm & 3, scale, i, &raw, &rb, c->dtype, pat);
        if (raw) {
            memcpy(c->x + i * (int64_t)es, &rb, es);
        }
        else {
            put_elem(c->x, c->dtype, i, v);
        }
    }
    if (k == K_SPEC) {
        draw_spec(c);
    }
}

/* ----------------------------------------------------------------------------------------- */
/* buffers of one run                                                                        */

typedef struct {
    void *base;
    fd_rows v;
    int64_t stride_eff; /* element (r, c) is at r * stride_eff + c */
    size_t bytes;
    uint8_t *snap; /* a copy of the whole block after setup */
} rowbuf;

/* rows r0 .. r0 + nr of the case, at the end of an exact block, gaps NaN; extra elements after
 * the last row (the shifted alias writes there) */
static void rows_make(rowbuf *b, const fcase *c, int64_t r0, int64_t nr, int pad, int64_t extra)
{
    int dt = c->dtype;
    size_t es = esize(dt);
    int64_t cols = c->n_cols;
    int ok = nr >= 0 && cols >= 0;
    b->stride_eff = valid_stride(c, nr) && nr > 1 ? c->row_stride : cols;
    int64_t elems = ok && nr > 0 && cols > 0 ? (nr - 1) * b->stride_eff + cols + extra : 0;
    b->bytes = (size_t)(pad + elems) * es;
    b->base = malloc(b->bytes ? b->bytes : 1);
    memset(b->base, 0xff, b->bytes); /* NaN in every float format */
    uint8_t *data = (uint8_t *)b->base + (size_t)pad * es;
    for (int64_t r = 0; ok && r < nr; r++) {
        memcpy(data + (size_t)(r * b->stride_eff) * es, c->x + (size_t)((r0 + r) * cols) * es,
               (size_t)cols * es);
    }
    b->v.data = c->null_data && nr > 0 && cols > 0 ? NULL : data;
    b->v.dtype = (fd_dtype)dt;
    b->v.n_rows = nr;
    b->v.n_cols = cols;
    b->v.row_stride = c->row_stride;
    b->snap = malloc(b->bytes ? b->bytes : 1);
    memcpy(b->snap, b->base, b->bytes);
}

static void rows_free(rowbuf *b)
{
    free(b->base);
    free(b->snap);
}

static int rows_unchanged(const rowbuf *b)
{
    return memcmp(b->base, b->snap, b->bytes) == 0;
}

static void *ws_make(size_t size, uint8_t fill, int off)
{
    if (size > MAXWS) {
        return NULL;
    }
    void *p = NULL;
    if (posix_memalign(&p, 64, size + (size_t)off)) {
        abort();
    }
    memset(p, fill, size + (size_t)off);
    return (char *)p + off;
}

static void ws_free(void *ws, int off)
{
    if (ws) {
        free((char *)ws - off);
    }
}

/* ----------------------------------------------------------------------------------------- */
/* results                                                                                   */

typedef struct {
    int st;
    fd_errinfo err;
    int nb;
    uint8_t *blob[MAXR + 1];
    size_t len[MAXR + 1], cap[MAXR + 1];
} result;

static const uint64_t zero8 = 0; /* the blob of an output passed as NULL */

static void blob_add(result *res, int i, const void *p, size_t n)
{
    if (n == 0) {
        return;
    }
    if (res->len[i] + n > res->cap[i]) { /* geometric growth: beam_step adds 3k small pieces */
        res->cap[i] = 2 * (res->len[i] + n);
        res->blob[i] = realloc(res->blob[i], res->cap[i]);
    }
    memcpy(res->blob[i] + res->len[i], p, n);
    res->len[i] += n;
    if (i + 1 > res->nb) {
        res->nb = i + 1;
    }
}

static void res_free(result *res)
{
    for (int i = 0; i < MAXR + 1; i++) {
        free(res->blob[i]);
    }
    memset(res, 0, sizeof *res);
}

static int blob_eq(const result *a, int ia, const result *b, int ib)
{
    size_t la = ia < a->nb ? a->len[ia] : 0, lb = ib < b->nb ? b->len[ib] : 0;
    return la == lb && (la == 0 || memcmp(a->blob[ia], b->blob[ib], la) == 0);
}

typedef struct {
    int64_t r0, nr;
    int isa, alias, pad, wsoff;
    uint8_t wsfill;
    int checks; /* the invariant checks of the kernel (the first run only) */
} runopt;

/* common checks of a status and error info */
static void check_common(const fcase *c, int st, const fd_errinfo *e, int64_t nr, int64_t ibound)
{
    REQUIRE(st >= FD_OK && st <= FD_ESHAPE);
    if (st != FD_OK) {
        REQUIRE(e->row == -1 || (e->row >= 0 && e->row < nr));
        REQUIRE(e->index == -1 || (e->index >= 0 && e->index < ibound));
    }
    if (c->weird) {
        REQUIRE(st != FD_OK);
    }
}

/* element (R, i) of the case's logits (absolute row R) as float32 */
static float case_at(const fcase *c, int64_t R, int64_t i)
{
    return ref_load(c->dtype, c->x, R * c->n_cols + i);
}

static void case_row(const fcase *c, int64_t R, float *dst)
{
    for (int64_t i = 0; i < c->n_cols; i++) {
        dst[i] = case_at(c, R, i);
    }
}

/* FD_ENAN / FD_EPOSINF: the element named is the first NaN / +inf of its row, and rows before it
 * (row-wise kernels check rows in order) hold none; rows counted from r0 */
static void check_bad_elem(const fcase *c, int64_t r0, int st, const fd_errinfo *e)
{
    if (st != FD_ENAN && st != FD_EPOSINF) {
        return;
    }
    REQUIRE(e->row >= 0 && e->index >= 0);
    float f = case_at(c, r0 + e->row, e->index);
    REQUIRE(st == FD_ENAN ? f != f : f == INFINITY);
    for (int64_t r = 0; r <= e->row; r++) {
        int64_t n = r == e->row ? e->index : c->n_cols;
        for (int64_t i = 0; i < n; i++) {
            REQUIRE(!is_bad(case_at(c, r0 + r, i)));
        }
    }
}

static int64_t first_max(const float *x, int64_t n, float *m)
{
    int64_t a = -1;
    float best = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        if (x[i] > best) {
            best = x[i];
            a = i;
        }
    }
    *m = best;
    return a;
}

static int row_has_bad(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        if (is_bad(x[i])) {
            return 1;
        }
    }
    return 0;
}

/* descending order of values, ties by ascending index */
static const float *g_sort_v;
static int cmp_desc(const void *a, const void *b)
{
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    float x = g_sort_v[i], y = g_sort_v[j];
    if (x > y) {
        return -1;
    }
    if (x < y) {
        return 1;
    }
    return i < j ? -1 : i > j;
}

static void sort_desc(const float *v, int64_t n, int64_t *idx)
{
    for (int64_t i = 0; i < n; i++) {
        idx[i] = i;
    }
    g_sort_v = v;
    qsort(idx, (size_t)n, sizeof *idx, cmp_desc);
}

/* ----------------------------------------------------------------------------------------- */
/* fd_filter                                                                                 */

static uint64_t fill_bits(int dt, double fv)
{
    switch (dt) {
    case FD_F32:
        return f_bits((float)fv);
    case FD_F64:
        return d_bits(fv);
    case FD_F16:
        return fd_float_to_half((float)fv);
    default:
        return fd_float_to_bf16((float)fv);
    }
}

static void run_filter(const fcase *c, const runopt *o, result *res)
{
    int kind = c->kernel == K_FILTER_BADKIND ? ((c->null_out & 4) ? 7 : -1) : c->kernel;
    int64_t nr = o->nr, V = c->n_cols;
    size_t es = esize(c->dtype);
    int alias = o->alias;
    /* in place: the same data and row stride (fd.h), nothing partial */
    alias = alias ? 1 : 0;
    if (alias && (c->out_bad || c->weird)) {
        alias = 0;
    }
    rowbuf in;
    rows_make(&in, c, o->r0, nr, o->pad, 0);
    fd_rows out = in.v;
    void *obase = NULL;
    size_t obytes = 0;
    int64_t ostride_eff = in.stride_eff;
    if (alias == 0) {
        out.dtype = (fd_dtype)c->out_dtype;
        out.row_stride = nr > 1 && !c->weird ? c->out_stride : c->row_stride;
        ostride_eff = nr > 1 && !c->weird ? c->out_stride : V;
        if (c->out_bad == 1) {
            out.n_rows = nr + 1;
        }
        int64_t oelems = nr > 0 && V > 0 && !c->weird ? (nr - 1) * ostride_eff + V : 0;
        obytes = (size_t)oelems * esize(c->out_dtype);
        obase = malloc(obytes ? obytes : 1);
        memset(obase, 0xa5, obytes);
        out.data = c->null_data && nr > 0 && V > 0 ? NULL : obase;
    }
    size_t wsz = fd_filter_workspace(V);
    void *ws = ws_make(wsz, o->wsfill, 0);
    fd_errinfo err = {77, 77};
    fd_param prm = fparam(&c->p[0], o->r0), mk = fparam(&c->p[1], o->r0);
    int st = fd_filter((fd_filter_kind)kind, &in.v, &out, prm, mk, c->filter_value, ws, &err);
    res->st = st;
    res->err = err;
    if (o->checks) {
        check_common(c, st, &err, nr, V);
        if (kind < 0 || kind > 6 || c->out_bad) {
            REQUIRE(st != FD_OK);
        }
        if (st == FD_OK) {
            REQUIRE(err.row == -1 && err.index == -1);
        }
        if (alias == 0) {
            REQUIRE(rows_unchanged(&in));
        }
        check_bad_elem(c, o->r0, st, &err);
    }
    /* the outputs of the rows that were written */
    int64_t done = st == FD_OK ? nr : (err.row >= 0 ? err.row : 0);
    uint64_t fb = fill_bits(c->dtype, c->filter_value);
    float *xr = malloc((size_t)(V > 0 ? V : 1) * sizeof(float));
    int64_t *idx = malloc((size_t)(V > 0 ? V : 1) * sizeof(int64_t));
    for (int64_t r = 0; r < nr && !c->weird && !c->out_bad && out.data; r++) {
        const uint8_t *orow = (const uint8_t *)out.data + (size_t)(r * ostride_eff) * es;
        if (r < done) {
            blob_add(res, (int)r, orow, (size_t)V * es);
        }
        if (!o->checks || r >= done) {
            continue;
        }
        /* the input row from the case (an alias has overwritten the buffer) */
        const uint8_t *irow = c->x + (size_t)((o->r0 + r) * V) * es;
        for (int64_t i = 0; i < V; i++) {
            xr[i] = ref_load(c->dtype, irow, i);
        }
        double p = pat(&c->p[0], o->r0 + r), mkv = pat(&c->p[1], o->r0 + r);
        int64_t keep = mkv < (double)V ? (int64_t)mkv : V;
        int64_t kept = 0;
        float m;
        int64_t am = first_max(xr, V, &m);
        int max_kept = am < 0;
        float min_kept = INFINITY; /* smallest unambiguously kept value */
        for (int64_t i = 0; i < V; i++) {
            uint64_t ib = ebits(c->dtype, irow, i), ob = ebits(c->dtype, orow, i);
            REQUIRE(ob == ib || ob == fb);
            if (ob == ib) {
                kept++;
                if (xr[i] == m) {
                    max_kept = 1;
                }
                if (ib != fb && xr[i] < min_kept) {
                    min_kept = xr[i];
                }
            }
        }
        REQUIRE(kept >= keep);
        if (kind != FD_FILTER_TYPICAL) {
            REQUIRE(max_kept);
            /* closed upwards: everything above a kept value is kept */
            for (int64_t i = 0; i < V; i++) {
                if (xr[i] > min_kept) {
                    REQUIRE(ebits(c->dtype, irow, i) == ebits(c->dtype, orow, i));
                }
            }
        }
        /* exact kept sets: top-k and min-p */
        int exact = 0;
        int64_t expect_cut = 0; /* top-k: keep z >= kth */
        float kth = -INFINITY;
        char *want = NULL;
        if (kind == FD_FILTER_TOP_K && V > 0) {
            int64_t k = p > 0 ? (p < (double)V ? (int64_t)p : V) : 0;
            if (k > 0) {
                k = k > keep ? k : keep;
                sort_desc(xr, V, idx);
                kth = xr[idx[k - 1]];
                exact = 1;
                expect_cut = 1;
            }
        }
        if (kind == FD_FILTER_MIN_P && V > 0 && p > 0 && m != -INFINITY) {
            want = calloc((size_t)V, 1);
            double lp = log(p);
            int64_t n = 0;
            for (int64_t i = 0; i < V; i++) {
                want[i] = !((double)(xr[i] - m) < lp);
                n += want[i];
            }
            if (n < keep) {
                sort_desc(xr, V, idx);
                memset(want, 0, (size_t)V);
                for (int64_t j = 0; j < keep; j++) {
                    want[idx[j]] = 1;
                }
            }
            exact = 1;
        }
        for (int64_t i = 0; exact && i < V; i++) {
            int w = expect_cut ? xr[i] >= kth : want[i];
            uint64_t ib = ebits(c->dtype, irow, i), ob = ebits(c->dtype, orow, i);
            REQUIRE(w ? ob == ib : ob == fb);
        }
        free(want);
    }
    free(xr);
    free(idx);
    ws_free(ws, 0);
    free(obase);
    rows_free(&in);
}

/* ----------------------------------------------------------------------------------------- */
/* fd_softmax, fd_entropy, fd_argmax                                                         */

static void run_softmax(const fcase *c, const runopt *o, result *res)
{
    int want_log = c->kernel == K_LOGSOFTMAX;
    int64_t nr = o->nr, V = c->n_cols;
    int odt = c->out_dtype;
    size_t oes = esize(odt);
    int alias = o->alias;
    /* in place only where out has in's dtype */
    if (c->dtype != odt || c->weird || c->out_bad) {
        alias = 0;
    }
    if (alias == 2 && !(V > 0 && (nr <= 1 || c->row_stride >= V + c->shift))) {
        alias = 1;
    }
    rowbuf in;
    rows_make(&in, c, o->r0, nr, o->pad, alias == 2 ? c->shift : 0);
    fd_rows out = in.v;
    out.dtype = (fd_dtype)odt;
    void *obase = NULL;
    int64_t ostride_eff = in.stride_eff;
    if (alias == 2) {
        out.data = (char *)in.v.data + c->shift * (int64_t)oes;
    }
    else if (alias == 0) {
        out.row_stride = nr > 1 && !c->weird ? c->out_stride : c->row_stride;
        ostride_eff = nr > 1 && !c->weird ? c->out_stride : V;
        if (c->out_bad == 1) {
            out.n_cols = V + 1;
        }
        int64_t oelems = nr > 0 && V > 0 && !c->weird ? (nr - 1) * ostride_eff + V : 0;
        size_t obytes = (size_t)oelems * oes;
        obase = malloc(obytes ? obytes : 1);
        memset(obase, 0xa5, obytes);
        out.data = c->null_data && nr > 0 && V > 0 ? NULL : obase;
    }
    void *ws = ws_make(fd_softmax_workspace(V), o->wsfill, 0);
    fd_errinfo err = {77, 77};
    int st = fd_softmax(&in.v, &out, fparam(&c->p[0], o->r0), want_log, ws, &err);
    res->st = st;
    res->err = err;
    int64_t done = st == FD_OK ? nr : (err.row >= 0 ? err.row : 0);
    if (o->checks) {
        check_common(c, st, &err, nr, V);
        if (c->out_bad) {
            REQUIRE(st != FD_OK);
        }
        if (st == FD_OK) {
            REQUIRE(err.row == -1 && err.index == -1);
        }
        if (alias == 0) {
            REQUIRE(rows_unchanged(&in));
            check_bad_elem(c, o->r0, st, &err);
        }
        if (st == FD_EINVAL && err.row >= 0) {
            double t = pat(&c->p[0], o->r0 + err.row);
            REQUIRE(!(t >= 0.0 && t < INFINITY));
        }
    }
    float *xr = malloc((size_t)(V > 0 ? V : 1) * sizeof(float));
    int64_t *idx = malloc((size_t)(V > 0 ? V : 1) * sizeof(int64_t));
    for (int64_t r = 0; r < nr && !c->weird && !c->out_bad && out.data; r++) {
        const uint8_t *orow = (const uint8_t *)out.data + (size_t)(r * ostride_eff) * oes;
        if (r < done) {
            blob_add(res, (int)r, orow, (size_t)V * oes);
        }
        const uint8_t *irow = c->x + (size_t)((o->r0 + r) * V) * esize(c->dtype);
        for (int64_t i = 0; i < V; i++) {
            xr[i] = ref_load(c->dtype, irow, i);
        }
        float m;
        int64_t am = first_max(xr, V, &m);
        if (o->checks && st == FD_ENOFINITE && r == err.row) {
            REQUIRE(am < 0 && !row_has_bad(xr, V));
        }
        if (!o->checks || r >= done || V == 0) {
            continue;
        }
        REQUIRE(am >= 0);
        double t = pat(&c->p[0], o->r0 + r);
        double sum = 0.0;
        for (int64_t i = 0; i < V; i++) {
            double q = odt == FD_F32 ? ((const float *)orow)[i] : ((const double *)orow)[i];
            if (t == 0.0) {
                REQUIRE(q == (i == am ? (want_log ? 0.0 : 1.0) : (want_log ? -INFINITY : 0.0)));
            }
            if (want_log) {
                REQUIRE(q == q && q <= 0.0);
                sum += exp(q);
            }
            else {
                REQUIRE(q >= 0.0 && q <= 1.0);
                sum += q;
            }
            if (xr[i] == -INFINITY) {
                REQUIRE(want_log ? q == -INFINITY : q == 0.0);
            }
        }
        REQUIRE(fabs(sum - 1.0) <= 1e-4);
        /* ordered as the logits */
        sort_desc(xr, V, idx);
        for (int64_t j = 1; j < V; j++) {
            double a = odt == FD_F32 ? ((const float *)orow)[idx[j - 1]]
                                     : ((const double *)orow)[idx[j - 1]];
            double b =
                odt == FD_F32 ? ((const float *)orow)[idx[j]] : ((const double *)orow)[idx[j]];
            REQUIRE(a >= b);
        }
    }
    free(xr);
    free(idx);
    ws_free(ws, 0);
    free(obase);
    rows_free(&in);
}

static void run_entropy(const fcase *c, const runopt *o, result *res)
{
    int64_t nr = o->nr, V = c->n_cols;
    rowbuf in;
    rows_make(&in, c, o->r0, nr, o->pad, 0);
    int64_t nn = nr > 0 ? nr : 1;
    double *h = (c->null_out & 1) ? NULL : malloc((size_t)nn * sizeof(double));
    double *vh = (c->null_out & 2) ? NULL : malloc((size_t)nn * sizeof(double));
    void *ws = ws_make(fd_softmax_workspace(V), o->wsfill, 0);
    fd_errinfo err = {77, 77};
    int st = fd_entropy(&in.v, h, vh, ws, &err);
    res->st = st;
    res->err = err;
    int64_t done = st == FD_OK ? nr : (err.row >= 0 ? err.row : 0);
    if (o->checks) {
        check_common(c, st, &err, nr, V);
        REQUIRE(rows_unchanged(&in));
        check_bad_elem(c, o->r0, st, &err);
        if (st == FD_OK) {
            REQUIRE(err.row == -1 && err.index == -1);
        }
    }
    float *xr = malloc((size_t)(V > 0 ? V : 1) * sizeof(float));
    for (int64_t r = 0; r < nr && !c->weird; r++) {
        if (r < done) {
            blob_add(res, (int)r, h ? (const void *)&h[r] : (const void *)&zero8, 8);
            blob_add(res, (int)r, vh ? (const void *)&vh[r] : (const void *)&zero8, 8);
        }
        if (!o->checks) {
            continue;
        }
        case_row(c, o->r0 + r, xr);
        float m;
        int64_t am = first_max(xr, V, &m);
        if (st == FD_ENOFINITE && r == err.row) {
            REQUIRE(am < 0 && !row_has_bad(xr, V));
        }
        if (r >= done) {
            continue;
        }
        int64_t nf = 0;
        for (int64_t i = 0; i < V; i++) {
            nf += xr[i] != -INFINITY;
        }
        REQUIRE(nf >= 1);
        if (h) {
            REQUIRE(isfinite(h[r]) && h[r] >= -1e-6 && h[r] <= log((double)nf) * (1 + 1e-5) + 1e-6);
        }
        if (vh) {
            REQUIRE(isfinite(vh[r]) && vh[r] >= -1e-9);
        }
    }
    free(xr);
    ws_free(ws, 0);
    free(h);
    free(vh);
    rows_free(&in);
}

static void run_argmax(const fcase *c, const runopt *o, result *res)
{
    int64_t nr = o->nr, V = c->n_cols;
    rowbuf in;
    rows_make(&in, c, o->r0, nr, o->pad, 0);
    int64_t *out = malloc((size_t)(nr > 0 ? nr : 1) * sizeof(int64_t));
    for (int64_t r = 0; r < nr; r++) {
        out[r] = -77;
    }
    fd_errinfo err = {77, 77};
    int st = fd_argmax(&in.v, out, &err);
    res->st = st;
    res->err = err;
    int64_t done = st == FD_OK ? nr : (err.row >= 0 ? err.row : 0);
    if (o->checks) {
        check_common(c, st, &err, nr, V);
        REQUIRE(rows_unchanged(&in));
        check_bad_elem(c, o->r0, st, &err);
    }
    float *xr = malloc((size_t)(V > 0 ? V : 1) * sizeof(float));
    for (int64_t r = 0; r < nr && !c->weird; r++) {
        if (r < done) {
            blob_add(res, (int)r, &out[r], 8);
        }
        if (!o->checks) {
            continue;
        }
        case_row(c, o->r0 + r, xr);
        float m;
        int64_t am = first_max(xr, V, &m);
        if (st == FD_ENOFINITE && r == err.row) {
            REQUIRE(am < 0 && !row_has_bad(xr, V));
        }
        if (r < done) {
            REQUIRE(out[r] == am);
        }
    }
    free(xr);
    free(out);
    rows_free(&in);
}

/* fd_floor: the read floor is the row maximum, the exp-sum floor sum exp(x - max) within 5e-7
 * of a double-precision sum (0 for a row of all -inf): isa.c bounds the sum of the float32
 * weights within 2e-7, each weight is within 1.01 ulp of its exp, and x - max is rounded to
 * float first (at most e^-1 |d| 2^-24 per unit weight). Kind 2 is invalid. */
static void run_floor(const fcase *c, const runopt *o, result *res)
{
    int64_t nr = o->nr, V = c->n_cols;
    rowbuf in;
    rows_make(&in, c, o->r0, nr, o->pad, 0);
    double *out = malloc((size_t)(nr > 0 ? nr : 1) * sizeof(double));
    void *ws = ws_make(fd_floor_workspace(V), o->wsfill, 0);
    fd_errinfo err = {77, 77};
    int st = fd_floor(&in.v, (int)c->ival, out, ws, &err);
    res->st = st;
    res->err = err;
    int64_t done = st == FD_OK ? nr : (err.row >= 0 ? err.row : 0);
    if (o->checks) {
        check_common(c, st, &err, nr, V);
        REQUIRE(rows_unchanged(&in));
        if (c->ival == 2 && !c->weird) {
            REQUIRE(st == FD_EINVAL);
        }
        if (c->ival != 2) {
            check_bad_elem(c, o->r0, st, &err);
        }
    }
    float *xr = malloc((size_t)(V > 0 ? V : 1) * sizeof(float));
    for (int64_t r = 0; r < nr && !c->weird; r++) {
        if (r < done) {
            blob_add(res, (int)r, &out[r], 8);
        }
        if (!o->checks || r >= done) {
            continue;
        }
        case_row(c, o->r0 + r, xr);
        float m;
        (void)first_max(xr, V, &m);
        if (c->ival == FD_FLOOR_READ) {
            REQUIRE(out[r] == (double)m);
        }
        else {
            double ref = 0.0;
            for (int64_t i = 0; m != -INFINITY && i < V; i++) {
                ref += exp((double)xr[i] - (double)m);
            }
            REQUIRE(fabs(out[r] - ref) <= 5e-7 * ref);
        }
    }
    free(xr);
    free(out);
    ws_free(ws, 0);
    rows_free(&in);
}

/* ----------------------------------------------------------------------------------------- */
/* fd_sample                                                                                 */

static void run_sample(const fcase *c, const runopt *o, result *res)
{
    int64_t nr = o->nr, V = c->n_cols;
    rowbuf in;
    rows_make(&in, c, o->r0, nr, o->pad, 0);
    fd_sample_params P;
    fd_param *slots[8] = {&P.temperature, &P.top_k,   &P.top_p, &P.min_p,
                          &P.typical_p,   &P.epsilon, &P.eta,   &P.top_n_sigma};
    for (int i = 0; i < 8; i++) {
        *slots[i] = fparam(&c->p[i], o->r0);
    }
    P.order = (fd_order)c->order;
    fd_rng_args rng = {0};
    if (c->rng_mode == 0) {
        rng.uniform = c->unif + o->r0 * c->unif_stride;
        rng.uniform_stride = c->unif_stride;
    }
    else if (c->rng_mode == 1) {
        rng.seed = c->seed + o->r0 * c->seed_stride;
        rng.seed_stride = c->seed_stride;
        rng.position = c->pos + o->r0 * c->pos_stride;
        rng.position_stride = c->pos_stride;
    }
    int64_t nn = nr > 0 ? nr : 1;
    int64_t *tok = malloc((size_t)nn * sizeof(int64_t));
    double *lp = (c->null_out & 1) ? NULL : malloc((size_t)nn * sizeof(double));
    for (int64_t r = 0; r < nr; r++) {
        tok[r] = -77;
    }
    size_t wsz = fd_sample_workspace(V);
    void *ws = ws_make(wsz, o->wsfill, o->wsoff);
    fd_errinfo err = {77, 77};
    int st = fd_sample(&in.v, &P, c->rng_mode == 2 ? NULL : &rng, tok, lp, ws, &err);
    res->st = st;
    res->err = err;
    int64_t done = st == FD_OK ? nr : (err.row >= 0 ? err.row : 0);
    if (o->checks) {
        check_common(c, st, &err, nr, V);
        REQUIRE(rows_unchanged(&in));
        check_bad_elem(c, o->r0, st, &err);
        if (c->order != FD_ORDER_HF && c->order != FD_ORDER_LLAMA && nr > 0) {
            REQUIRE(st != FD_OK);
        }
        if (st == FD_OK) {
            REQUIRE(err.row == -1 && err.index == -1);
        }
    }
    float *xr = malloc((size_t)(V > 0 ? V : 1) * sizeof(float));
    for (int64_t r = 0; r < nr && !c->weird; r++) {
        if (r < done) {
            blob_add(res, (int)r, &tok[r], 8);
            blob_add(res, (int)r, lp ? (const void *)&lp[r] : (const void *)&zero8, 8);
        }
        if (!o->checks) {
            continue;
        }
        case_row(c, o->r0 + r, xr);
        float m;
        int64_t am = first_max(xr, V, &m);
        if (st == FD_ENOFINITE && r == err.row) {
            REQUIRE(am < 0 && !row_has_bad(xr, V));
        }
        if (r >= done) {
            continue;
        }
        int64_t t = tok[r];
        REQUIRE(t >= 0 && t < V);
        REQUIRE(xr[t] != -INFINITY);
        if (lp) {
            REQUIRE(isfinite(lp[r]) && lp[r] <= 1e-12);
        }
        double T = pat(&c->p[0], o->r0 + r);
        double k = pat(&c->p[1], o->r0 + r), mp = pat(&c->p[3], o->r0 + r);
        if (T == 0.0) {
            REQUIRE(t == am);
            REQUIRE(!lp || lp[r] == 0.0);
        }
        double typ = pat(&c->p[4], o->r0 + r);
        if (k == 1.0 || (mp == 1.0 && (c->order == FD_ORDER_HF || typ >= 1.0))) {
            /* only maxima survive (of the scaled row in HF order: x / T is monotone); every
             * filter before min-p keeps a maximum but typical, which llama order puts first */
            if (c->order == FD_ORDER_HF) {
                float tf = (float)T;
                REQUIRE(xr[t] / tf == m / tf || xr[t] == m);
            }
            else {
                REQUIRE(xr[t] == m);
            }
        }
    }
    free(xr);
    ws_free(ws, o->wsoff);
    free(tok);
    free(lp);
    rows_free(&in);
}

/* ----------------------------------------------------------------------------------------- */
/* penalties                                                                                 */

/* the history of case row R: [*b, *e) of the ids row, or 0 if the bounds are invalid */
static int hist(const fcase *c, int64_t R, int64_t *b, int64_t *e)
{
    *b = c->ids_begin ? c->ids_begin[R] : 0;
    *e = c->ids_end ? c->ids_end[R] : c->ids_cols;
    return *b >= 0 && *e >= *b && *e <= c->ids_cols;
}

static const int64_t *ids_row(const fcase *c, int64_t R)
{
    int64_t st = c->ids_stride >= c->ids_cols ? c->ids_stride : c->ids_cols;
    return c->ids + R * st;
}

/* stores v into element i of a row of dtype dt the way fd_store does */
static void store_ref(int dt, uint8_t *row, int64_t i, double v)
{
    switch (dt) {
    case FD_F32: {
        float f = (float)v;
        memcpy(row + i * 4, &f, 4);
        break;
    }
    case FD_F64:
        memcpy(row + i * 8, &v, 8);
        break;
    default: {
        float f = (float)v;
        uint16_t h = f != f ? (dt == FD_F16 ? fd_float_to_half(f) : fd_float_to_bf16(f))
                            : ref_round16(f, dt == FD_BF16);
        memcpy(row + i * 2, &h, 2);
        break;
    }
    }
}

static double load_widened(int dt, const uint8_t *row, int64_t i)
{
    if (dt == FD_F64) {
        double d;
        memcpy(&d, row + i * 8, 8);
        return d;
    }
    if (dt == FD_F32) {
        float f;
        memcpy(&f, row + i * 4, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, row + i * 2, 2);
    return dt == FD_F16 ? ref_half(h) : ref_bf16(h);
}

static int same_elem(int dt, const uint8_t *a, const uint8_t *b, int64_t i)
{
    uint64_t x = ebits(dt, a, i), y = ebits(dt, b, i);
    if (x == y) {
        return 1;
    }
    double p = load_widened(dt, a, i), q = load_widened(dt, b, i);
    return p != p && q != q;
}

/* the expected row R after the penalty kernel (reference transcriptions of fd.h) */
static void expect_penalty(const fcase *c, int64_t R, uint8_t *row)
{
    int dt = c->dtype;
    int64_t V = c->n_cols;
    int64_t b = 0, e = 0;
    const int64_t *t = NULL;
    if (c->kernel == K_REPETITION || c->kernel == K_PRESFREQ || c->kernel == K_NGRAM ||
        c->kernel == K_BADWORDS) {
        hist(c, R, &b, &e);
        t = ids_row(c, R);
    }
    switch (c->kernel) {
    case K_REPETITION: {
        double th = pat(&c->p[0], R);
        for (int64_t col = 0; col < V; col++) {
            int seen = 0;
            for (int64_t j = b; j < e; j++) {
                seen |= t[j] == col;
            }
            if (!seen) {
                continue;
            }
            double z = load_widened(dt, row, col);
            if (dt == FD_F64) {
                store_ref(dt, row, col, z < 0 ? z * th : z / th);
            }
            else {
                float zf = (float)z, tf = (float)th;
                store_ref(dt, row, col, zf < 0 ? zf * tf : zf / tf);
            }
        }
        break;
    }
    case K_PRESFREQ: {
        double pr = pat(&c->p[0], R), fr = pat(&c->p[1], R);
        for (int64_t col = 0; col < V; col++) {
            int32_t n = 0;
            for (int64_t j = b; j < e; j++) {
                n += t[j] == col;
            }
            if (!n) {
                continue;
            }
            double z = load_widened(dt, row, col);
            if (dt == FD_F64) {
                z -= fr * (double)n;
                z -= pr;
                store_ref(dt, row, col, z);
            }
            else {
                float zf = (float)z, fc = (float)fr * (float)n;
                zf -= fc;
                zf -= (float)pr;
                store_ref(dt, row, col, zf);
            }
        }
        break;
    }
    case K_NGRAM: {
        int64_t n = c->ival, L = e - b;
        const int64_t *h = t + b;
        if (L < n) {
            break;
        }
        for (int64_t i = 0; i + n <= L; i++) {
            int64_t q = 0;
            while (q < n - 1 && h[i + q] == h[L - n + 1 + q]) {
                q++;
            }
            if (q == n - 1) {
                store_ref(dt, row, h[i + n - 1], c->filter_value);
            }
        }
        break;
    }
    case K_BADWORDS: {
        int64_t L = e - b;
        const int64_t *h = t + b;
        for (int64_t w = 0; w < c->n_words; w++) {
            const int64_t *word = c->flat + c->offsets[w];
            int64_t m = c->offsets[w + 1] - c->offsets[w];
            if (m - 1 > L) {
                continue;
            }
            int64_t q = 0;
            while (q < m - 1 && h[L - (m - 1) + q] == word[q]) {
                q++;
            }
            if (q == m - 1) {
                store_ref(dt, row, word[m - 1], c->filter_value);
            }
        }
        break;
    }
    case K_BIAS: {
        const double *v = c->vals + R * c->vals_stride;
        for (int64_t j = 0; j < c->n_list; j++) {
            int64_t col = c->list[j];
            double z = load_widened(dt, row, col);
            if (dt == FD_F64) {
                store_ref(dt, row, col, z + v[j]);
            }
            else {
                float zf = (float)z;
                zf += (float)v[j];
                store_ref(dt, row, col, zf);
            }
        }
        break;
    }
    case K_SUPPRESS:
        for (int64_t j = 0; j < c->n_list; j++) {
            store_ref(dt, row, c->list[j], c->filter_value);
        }
        break;
    case K_BITMASK: {
        const int32_t *w = c->words + R * c->bm_stride;
        for (int64_t col = 0; col < V; col++) {
            if (!(((uint32_t)w[col / 32] >> (col % 32)) & 1u)) {
                store_ref(dt, row, col, c->filter_value);
            }
        }
        break;
    }
    }
}

static void run_penalty(const fcase *c, const runopt *o, result *res)
{
    int64_t nr = o->nr, V = c->n_cols;
    int dt = c->dtype;
    size_t es = esize(dt);
    rowbuf x;
    rows_make(&x, c, o->r0, nr, o->pad, 0);
    fd_ids ids = {0};
    int64_t ibound = 1;
    if (c->ids) {
        ids.data = c->null_ids ? NULL : ids_row(c, o->r0 < c->ids_rows ? o->r0 : 0);
        ids.n_rows = o->nr == c->n_rows ? c->ids_rows : o->nr;
        ids.n_cols = c->ids_cols;
        ids.row_stride = c->ids_stride;
        ids.begin = c->ids_begin ? c->ids_begin + o->r0 : NULL;
        ids.end = c->ids_end ? c->ids_end + o->r0 : NULL;
        ibound = c->ids_cols;
    }
    size_t wsz = fd_penalty_workspace(V);
    void *ws = ws_make(wsz, o->wsfill, 0);
    fd_errinfo err = {77, 77};
    int st = FD_OK;
    switch (c->kernel) {
    case K_REPETITION:
        st = fd_repetition_penalty(&x.v, &ids, fparam(&c->p[0], o->r0), ws, &err);
        break;
    case K_PRESFREQ:
        st = fd_presence_frequency(&x.v, &ids, fparam(&c->p[0], o->r0), fparam(&c->p[1], o->r0), ws,
                                   &err);
        break;
    case K_NGRAM:
        st = fd_no_repeat_ngram(&x.v, &ids, c->ival, c->filter_value, ws, &err);
        break;
    case K_BIAS:
        st = fd_logit_bias(&x.v, c->list, c->n_list,
                           c->vals + o->r0 * (c->vals_stride > 0 ? c->vals_stride : 0),
                           c->vals_stride, &err);
        ibound = c->n_list;
        break;
    case K_SUPPRESS:
        st = fd_suppress_tokens(&x.v, c->list, c->n_list, c->filter_value, &err);
        ibound = c->n_list;
        break;
    case K_BITMASK:
        st = fd_apply_bitmask(&x.v, c->words + o->r0 * (c->bm_stride > 0 ? c->bm_stride : 0),
                              c->bm_words, c->bm_stride, c->filter_value, &err);
        break;
    case K_BADWORDS:
        st = fd_bad_words(&x.v, &ids, c->flat, c->offsets, c->n_words, c->filter_value, &err);
        /* a word (ESHAPE), a flat position (ERANGE, row -1) or a history position */
        ibound = c->n_words > c->flat_len ? c->n_words : c->flat_len;
        ibound = ibound > c->ids_cols ? ibound : c->ids_cols;
        break;
    }
    res->st = st;
    res->err = err;
    if (o->checks) {
        check_common(c, st, &err, nr, ibound > 0 ? ibound : 1);
        if (st == FD_OK) {
            REQUIRE(err.row == -1 && err.index == -1);
        }
        if (st == FD_ERANGE) {
            /* the id named is out of range */
            int64_t id = 0;
            if (c->kernel == K_BIAS || c->kernel == K_SUPPRESS) {
                REQUIRE(err.row == -1 && err.index >= 0);
                id = c->list[err.index];
            }
            else if (c->kernel == K_BADWORDS && err.row == -1) {
                REQUIRE(err.index >= 0 && err.index < c->flat_len);
                id = c->flat[err.index];
            }
            else {
                REQUIRE(err.row >= 0 && err.index >= 0);
                int64_t b, e;
                REQUIRE(hist(c, o->r0 + err.row, &b, &e));
                REQUIRE(err.index >= b && err.index < e);
                id = ids_row(c, o->r0 + err.row)[err.index];
            }
            REQUIRE(id < 0 || id >= V);
        }
    }
    int64_t done = st == FD_OK ? nr : (err.row >= 0 ? err.row : 0);
    if (o->checks && !c->weird) {
        /* every id a successful call accepted is in [0, V): the histories of the rows done, and
         * the shared lists whenever a row was edited */
        int hist_kernel = c->kernel == K_REPETITION || c->kernel == K_PRESFREQ ||
                          c->kernel == K_NGRAM || c->kernel == K_BADWORDS;
        for (int64_t r = 0; hist_kernel && r < done; r++) {
            int64_t b, e;
            REQUIRE(hist(c, o->r0 + r, &b, &e));
            for (int64_t j = b; j < e; j++) {
                int64_t id = ids_row(c, o->r0 + r)[j];
                REQUIRE(id >= 0 && id < V);
            }
        }
        const int64_t *lst = c->kernel == K_BADWORDS ? c->flat : c->list;
        int64_t nl = c->kernel == K_BADWORDS                          ? c->flat_len
                     : c->kernel == K_BIAS || c->kernel == K_SUPPRESS ? c->n_list
                                                                      : 0;
        for (int64_t j = 0; st == FD_OK && nr > 0 && j < nl; j++) {
            REQUIRE(lst[j] >= 0 && lst[j] < V);
        }
    }
    uint8_t *exp_row = malloc((size_t)(V > 0 ? V : 1) * es);
    for (int64_t r = 0; r < nr && !c->weird && x.v.data; r++) {
        const uint8_t *row = (const uint8_t *)x.v.data + (size_t)(r * x.stride_eff) * es;
        if (r < done) {
            blob_add(res, (int)r, row, (size_t)V * es);
        }
        if (!o->checks) {
            continue;
        }
        memcpy(exp_row, c->x + (size_t)((o->r0 + r) * V) * es, (size_t)V * es);
        if (r < done) {
            expect_penalty(c, o->r0 + r, exp_row);
        }
        for (int64_t i = 0; i < V; i++) {
            REQUIRE(same_elem(dt, row, exp_row, i));
        }
    }
    /* gaps and padding untouched */
    if (o->checks && !c->weird && x.v.data && V > 0) {
        for (size_t i = 0; i < (size_t)o->pad * es; i++) {
            REQUIRE(((uint8_t *)x.base)[i] == 0xff);
        }
        for (int64_t r = 0; r + 1 < nr; r++) {
            const uint8_t *g = (const uint8_t *)x.v.data + (size_t)(r * x.stride_eff + V) * es;
            for (size_t i = 0; i < (size_t)(x.stride_eff - V) * es; i++) {
                REQUIRE(g[i] == 0xff);
            }
        }
    }
    free(exp_row);
    ws_free(ws, 0);
    rows_free(&x);
}

/* ----------------------------------------------------------------------------------------- */
/* fd_beam_step                                                                              */

typedef struct {
    float s;
    int64_t i;
} scored;

static int cmp_scored(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    if (x->s > y->s) {
        return -1;
    }
    if (x->s < y->s) {
        return 1;
    }
    return x->i < y->i ? -1 : x->i > y->i;
}

static void run_beam(const fcase *c, const runopt *o, result *res)
{
    int64_t nr = o->nr, V = c->n_cols, gs = c->ival, k = c->ival2;
    rowbuf in;
    rows_make(&in, c, o->r0, nr, o->pad, 0);
    int valid = !c->weird && gs >= 1 && nr % gs == 0 && k >= 1 && V > 0 && (k - 1) / V < gs;
    int64_t ng = valid ? nr / gs : 0;
    int64_t nout = valid ? ng * k : 1;
    float *sc = malloc((size_t)(nout > 0 ? nout : 1) * sizeof(float));
    int64_t *rows = malloc((size_t)(nout > 0 ? nout : 1) * sizeof(int64_t));
    int64_t *toks = malloc((size_t)(nout > 0 ? nout : 1) * sizeof(int64_t));
    float *bs = nr > 0 ? malloc((size_t)nr * sizeof(float)) : NULL;
    if (bs) {
        memcpy(bs, c->beam + o->r0, (size_t)nr * sizeof(float));
    }
    size_t wsz = fd_beam_step_workspace(V, k);
    void *ws = ws_make(wsz, o->wsfill, 0);
    fd_errinfo err = {77, 77};
    int st = fd_beam_step(&in.v, bs, gs, k, c->norm, sc, rows, toks, ws, &err);
    res->st = st;
    res->err = err;
    if (o->checks) {
        check_common(c, st, &err, nr, V);
        REQUIRE(rows_unchanged(&in));
        check_bad_elem(c, o->r0, st, &err);
        if (!valid) {
            REQUIRE(st != FD_OK);
        }
        if (st == FD_EINVAL && err.row >= 0) {
            float b = bs[err.row];
            REQUIRE(b != b || b == INFINITY);
        }
    }
    int64_t gdone = st == FD_OK ? ng : (err.row >= 0 && valid ? err.row / gs : 0);
    if (!valid) {
        gdone = 0;
    }
    float *lp = malloc((size_t)(V > 0 ? V : 1) * sizeof(float));
    scored *all = malloc((size_t)(valid ? gs * V : 1) * sizeof(scored));
    void *sws = ws_make(fd_softmax_workspace(V), 0, 0);
    for (int64_t g = 0; g < gdone; g++) {
        for (int64_t j = 0; j < k; j++) {
            int64_t rel = rows[g * k + j] - g * gs;
            blob_add(res, (int)g, &sc[g * k + j], 4);
            blob_add(res, (int)g, &rel, 8);
            blob_add(res, (int)g, &toks[g * k + j], 8);
        }
        if (!o->checks) {
            continue;
        }
        /* brute force: every s of the group, sorted */
        for (int64_t rr = 0; rr < gs; rr++) {
            int64_t r = g * gs + rr;
            if (c->norm) {
                fd_rows one = in.v;
                one.data = (char *)in.v.data + (size_t)(r * in.stride_eff) * esize(c->dtype);
                one.n_rows = 1;
                fd_rows lo = {lp, FD_F32, 1, V, V};
                double one_t = 1.0;
                fd_errinfo e2;
                REQUIRE(fd_softmax(&one, &lo, (fd_param){&one_t, 0}, 1, sws, &e2) == FD_OK);
            }
            else {
                case_row(c, o->r0 + r, lp);
                /* (fd_beam_step reads logits as float32 as fd_load_row gives them) */
            }
            for (int64_t t = 0; t < V; t++) {
                all[rr * V + t].s = lp[t] + bs[r];
                all[rr * V + t].i = rr * V + t;
            }
        }
        qsort(all, (size_t)(gs * V), sizeof *all, cmp_scored);
        for (int64_t j = 0; j < k; j++) {
            int64_t q = g * k + j;
            REQUIRE(rows[q] >= g * gs && rows[q] < (g + 1) * gs);
            REQUIRE(toks[q] >= 0 && toks[q] < V);
            REQUIRE((rows[q] - g * gs) * V + toks[q] == all[j].i);
            REQUIRE(f_bits(sc[q]) == f_bits(all[j].s) || (sc[q] == 0 && all[j].s == 0));
        }
    }
    if (o->checks && st == FD_ENOFINITE) {
        REQUIRE(c->norm && err.row >= 0);
        case_row(c, o->r0 + err.row, lp);
        float m;
        REQUIRE(first_max(lp, V, &m) < 0);
    }
    ws_free(sws, 0);
    free(all);
    free(lp);
    ws_free(ws, 0);
    free(sc);
    free(rows);
    free(toks);
    free(bs);
    rows_free(&in);
}

/* ----------------------------------------------------------------------------------------- */
/* dtype.c: loads, checks, stores, copies; scalar conversions; rng                           */

static void run_dtype(const fcase *c, const runopt *o, result *res)
{
    int64_t nr = o->nr, V = c->n_cols;
    int dt = c->dtype;
    if (c->weird) {
        /* only an invalid dtype is meaningful here: loads and checks report it */
        if (dt > FD_BF16 && nr > 0 && V > 0 && !c->null_data) {
            rowbuf b;
            rows_make(&b, c, o->r0, nr, o->pad, 0);
            float *dst = malloc((size_t)V * sizeof(float));
            fd_errinfo err = {-1, -1};
            REQUIRE(fd_load_row(&b.v, 0, dst, &err) == FD_EINVAL);
            REQUIRE(fd_check_rows(&b.v, &err) == FD_EINVAL);
            free(dst);
            rows_free(&b);
        }
        return;
    }
    rowbuf b;
    rows_make(&b, c, o->r0, nr, o->pad, 0);
    if (!b.v.data) {
        rows_free(&b);
        return;
    }
    size_t es = esize(dt);
    float *dst = malloc((size_t)(V > 0 ? V : 1) * sizeof(float));
    float *ref = malloc((size_t)(V > 0 ? V : 1) * sizeof(float));
    fd_status first = FD_OK;
    int64_t fr = -1, fi = -1;
    for (int64_t r = 0; r < nr; r++) {
        fd_errinfo err = {-5, -5};
        int st = fd_load_row(&b.v, r, dst, &err);
        case_row(c, o->r0 + r, ref);
        int64_t bad = -1;
        for (int64_t i = 0; i < V && bad < 0; i++) {
            if (is_bad(ref[i])) {
                bad = i;
            }
        }
        if (bad < 0) {
            REQUIRE(st == FD_OK);
        }
        else {
            REQUIRE(st == (ref[bad] != ref[bad] ? FD_ENAN : FD_EPOSINF));
            REQUIRE(err.row == r && err.index == bad);
            if (first == FD_OK) {
                first = (fd_status)st;
                fr = r;
                fi = bad;
            }
        }
        for (int64_t i = 0; i < (bad < 0 ? V : bad); i++) {
            REQUIRE(f_bits(dst[i]) == f_bits(ref[i]));
        }
    }
    fd_errinfo err = {-5, -5};
    REQUIRE(fd_check_rows(&b.v, &err) == first);
    if (first != FD_OK) {
        REQUIRE(err.row == fr && err.index == fi);
    }
    /* stores: each element is the value rounded to the dtype; the rest untouched */
    uint8_t *expect = malloc(b.bytes ? b.bytes : 1);
    memcpy(expect, b.base, b.bytes);
    uint8_t *edata = expect + (size_t)o->pad * es;
    for (int i = 0; nr > 0 && V > 0 && i < c->n_stores; i++) {
        int64_t r = c->st_row[i] < nr ? c->st_row[i] : 0, col = c->st_col[i];
        fd_store(&b.v, r, col, c->st_val[i]);
        store_ref(dt, edata + (size_t)(r * b.stride_eff) * es, col, c->st_val[i]);
    }
    for (int64_t r = 0; r < nr; r++) {
        for (int64_t i = 0; i < V; i++) {
            int64_t off = r * b.stride_eff + i;
            REQUIRE(same_elem(dt, (const uint8_t *)b.v.data + off * (int64_t)es,
                              edata + off * (int64_t)es, 0));
        }
    }
    /* copies into a buffer of another row stride: exact bits */
    int64_t dstride = V + 3;
    size_t dbytes = nr > 0 && V > 0 ? (size_t)((nr - 1) * dstride + V) * es : 0;
    uint8_t *dbuf = malloc(dbytes ? dbytes : 1);
    memset(dbuf, 0, dbytes);
    fd_rows d = b.v;
    d.data = dbuf;
    d.row_stride = nr > 1 ? dstride : V;
    int64_t dse = nr > 1 ? dstride : V;
    for (int64_t r = 0; r < nr; r++) {
        for (int64_t i = 0; i < V; i++) {
            fd_copy_elem(&b.v, &d, r, i);
            REQUIRE(ebits(dt, dbuf, r * dse + i) == ebits(dt, b.v.data, r * b.stride_eff + i));
        }
    }
    res->st = first;
    free(dbuf);
    free(expect);
    free(dst);
    free(ref);
    rows_free(&b);
}

static void run_convert(rd *r)
{
    for (int n = 0; n < 64 && more(r); n++) {
        uint16_t h = u16(r);
        float f = fd_half_to_float(h), g = ref_half(h);
        REQUIRE(f_bits(f) == f_bits(g) || (f != f && g != g));
        uint16_t back = fd_float_to_half(f);
        if (f == f) {
            REQUIRE(back == h);
        }
        else {
            REQUIRE((back & 0x7c00) == 0x7c00 && (back & 0x3ff) && (back & 0x8000) == (h & 0x8000));
        }
        float bf = fd_bf16_to_float(h);
        REQUIRE(f_bits(bf) == (uint32_t)h << 16);
        uint16_t bb = fd_float_to_bf16(bf);
        if (bf == bf) {
            REQUIRE(bb == h);
        }
        else {
            REQUIRE(fd_bf16_to_float(bb) != fd_bf16_to_float(bb) && (bb & 0x8000) == (h & 0x8000));
        }
        float x = bits_f(u32(r));
        if (x == x) {
            REQUIRE(fd_float_to_half(x) == ref_round16(x, 0));
            REQUIRE(fd_float_to_bf16(x) == ref_round16(x, 1));
        }
        else {
            REQUIRE(fd_half_to_float(fd_float_to_half(x)) != fd_half_to_float(fd_float_to_half(x)));
            REQUIRE(fd_bf16_to_float(fd_float_to_bf16(x)) != fd_bf16_to_float(fd_float_to_bf16(x)));
        }
    }
}

static void run_rng(rd *r)
{
    for (int n = 0; n < 16 && more(r); n++) {
        uint64_t s = u64(r), p = u64(r), d = u8(r);
        double u = fd_uniform(s, p, d);
        REQUIRE(u >= 0.0 && u < 1.0);
        REQUIRE(d_bits(u) == d_bits(fd_uniform(s, p, d)));
        uint32_t ctr[4] = {u32(r), u32(r), u32(r), u32(r)}, key[2] = {u32(r), u32(r)}, a[4], b[4];
        fd_philox4x32(ctr, key, a);
        fd_philox4x32(ctr, key, b);
        REQUIRE(memcmp(a, b, sizeof a) == 0);
    }
}

/* ----------------------------------------------------------------------------------------- */
/* fd_mirostat, fd_entropix                                                                  */

static fd_rng_args case_rng(const fcase *c, int64_t r0)
{
    fd_rng_args rng = {0};
    if (c->rng_mode == 0) {
        rng.uniform = c->unif + r0 * c->unif_stride;
        rng.uniform_stride = c->unif_stride;
    }
    else if (c->rng_mode == 1) {
        rng.seed = c->seed + r0 * c->seed_stride;
        rng.seed_stride = c->seed_stride;
        rng.position = c->pos + r0 * c->pos_stride;
        rng.position_stride = c->pos_stride;
    }
    return rng;
}

static void run_mirostat(const fcase *c, const runopt *o, result *res)
{
    int64_t nr = o->nr, V = c->n_cols;
    rowbuf in;
    rows_make(&in, c, o->r0, nr, o->pad, 0);
    fd_mirostat_params P = {fparam(&c->p[0], o->r0), fparam(&c->p[1], o->r0),
                            fparam(&c->p[2], o->r0), (int)c->ival, c->ival2};
    fd_rng_args rng = case_rng(c, o->r0);
    int64_t nn = nr > 0 ? nr : 1;
    int64_t *tok = malloc((size_t)nn * sizeof(int64_t));
    double *mu = malloc((size_t)nn * sizeof(double));
    double *mu0 = malloc((size_t)nn * sizeof(double));
    double *lp = (c->null_out & 1) ? NULL : malloc((size_t)nn * sizeof(double));
    int64_t *kept = (c->null_out & 2) ? NULL : malloc((size_t)nn * sizeof(int64_t));
    for (int64_t r = 0; r < nr; r++) {
        tok[r] = -77;
        mu[r] = mu0[r] = pat(&c->p[3], o->r0 + r);
    }
    void *ws = ws_make(fd_mirostat_workspace(V), o->wsfill, o->wsoff);
    fd_errinfo err = {77, 77};
    int st = fd_mirostat(&in.v, &P, c->rng_mode == 2 ? NULL : &rng, mu, tok, lp, kept, ws, &err);
    res->st = st;
    res->err = err;
    int64_t done = st == FD_OK ? nr : (err.row >= 0 ? err.row : 0);
    if (o->checks) {
        check_common(c, st, &err, nr, V);
        REQUIRE(rows_unchanged(&in));
        check_bad_elem(c, o->r0, st, &err);
        if ((c->ival != 1 && c->ival != 2) || c->ival2 < 1) {
            REQUIRE(st == FD_ESHAPE || (st == FD_EINVAL && err.row == -1));
        }
        if (st == FD_OK) {
            REQUIRE(err.row == -1 && err.index == -1);
        }
    }
    float *xr = malloc((size_t)(V > 0 ? V : 1) * sizeof(float));
    for (int64_t r = 0; r < nr && !c->weird; r++) {
        if (r < done) {
            blob_add(res, (int)r, &tok[r], 8);
            blob_add(res, (int)r, &mu[r], 8);
            blob_add(res, (int)r, lp ? (const void *)&lp[r] : (const void *)&zero8, 8);
            blob_add(res, (int)r, kept ? (const void *)&kept[r] : (const void *)&zero8, 8);
        }
        if (!o->checks) {
            continue;
        }
        case_row(c, o->r0 + r, xr);
        float m;
        int64_t am = first_max(xr, V, &m);
        if (st == FD_ENOFINITE && r == err.row) {
            REQUIRE(am < 0 && !row_has_bad(xr, V));
        }
        double tau = pat(&c->p[0], o->r0 + r), eta = pat(&c->p[1], o->r0 + r);
        double T = pat(&c->p[2], o->r0 + r);
        if (st == FD_EINVAL && r == err.row) {
            REQUIRE(!(tau > 0 && tau < INFINITY && eta >= 0 && eta < INFINITY && T >= 0 &&
                      T < INFINITY && isfinite(mu0[r])) ||
                    c->rng_mode >= 2 || (c->rng_mode == 0 && !(c->unif[r * c->unif_stride] >= 0 &&
                                                               c->unif[r * c->unif_stride] < 1)));
        }
        if (r >= done) {
            if (st != FD_OK && r == err.row) {
                REQUIRE(mu[r] == mu0[r] || (mu[r] != mu[r] && mu0[r] != mu0[r]));
            }
            continue;
        }
        int64_t t = tok[r];
        REQUIRE(t >= 0 && t < V && xr[t] != -INFINITY);
        int64_t nf = 0;
        for (int64_t i = 0; i < V; i++) {
            nf += xr[i] != -INFINITY;
        }
        if (kept) {
            REQUIRE(kept[r] >= 1 && kept[r] <= nf);
        }
        double s = 0.0;
        if (lp) {
            REQUIRE(isfinite(lp[r]) && lp[r] <= 1e-12);
            s = -lp[r] / 0.693147180559945309417232121458176568;
            double want = mu0[r] - eta * (s - tau);
            REQUIRE(mu[r] == want || (mu[r] != mu[r] && want != want));
        }
        if (T == 0.0) {
            REQUIRE(t == am);
            REQUIRE(!lp || lp[r] == 0.0);
            REQUIRE(!kept || kept[r] == 1);
        }
    }
    free(xr);
    ws_free(ws, o->wsoff);
    free(tok);
    free(mu);
    free(mu0);
    free(lp);
    free(kept);
    rows_free(&in);
}

static void run_entropix(const fcase *c, const runopt *o, result *res)
{
    int64_t nr = o->nr, V = c->n_cols;
    rowbuf in;
    rows_make(&in, c, o->r0, nr, o->pad, 0);
    fd_entropix_params P;
    memcpy(&P, c->vals, sizeof P);
    fd_rng_args rng = case_rng(c, o->r0);
    int64_t nn = nr > 0 ? nr : 1;
    int64_t *tok = malloc((size_t)nn * sizeof(int64_t));
    int64_t *br = malloc((size_t)nn * sizeof(int64_t));
    double *h = (c->null_out & 1) ? NULL : malloc((size_t)nn * sizeof(double));
    double *vv = (c->null_out & 2) ? NULL : malloc((size_t)nn * sizeof(double));
    double *lp = (c->null_out & 4) ? NULL : malloc((size_t)nn * sizeof(double));
    for (int64_t r = 0; r < nr; r++) {
        tok[r] = br[r] = -77;
    }
    void *ws = ws_make(fd_entropix_workspace(V), o->wsfill, o->wsoff);
    fd_errinfo err = {77, 77};
    int st = fd_entropix(&in.v, &P, c->n_list ? c->list + o->r0 : NULL,
                         c->rng_mode == 2 ? NULL : &rng, tok, br, h, vv, lp, ws, &err);
    res->st = st;
    res->err = err;
    int64_t done = st == FD_OK ? nr : (err.row >= 0 ? err.row : 0);
    if (o->checks) {
        check_common(c, st, &err, nr, V);
        REQUIRE(rows_unchanged(&in));
        check_bad_elem(c, o->r0, st, &err);
        if (c->rng_mode != 1) {
            REQUIRE(st == FD_ESHAPE || (st == FD_EINVAL && err.row == -1));
        }
        if (st == FD_OK) {
            REQUIRE(err.row == -1 && err.index == -1);
        }
    }
    float *xr = malloc((size_t)(V > 0 ? V : 1) * sizeof(float));
    for (int64_t r = 0; r < nr && !c->weird; r++) {
        if (r < done) {
            blob_add(res, (int)r, &tok[r], 8);
            blob_add(res, (int)r, &br[r], 8);
            blob_add(res, (int)r, h ? (const void *)&h[r] : (const void *)&zero8, 8);
            blob_add(res, (int)r, vv ? (const void *)&vv[r] : (const void *)&zero8, 8);
            blob_add(res, (int)r, lp ? (const void *)&lp[r] : (const void *)&zero8, 8);
        }
        if (!o->checks || r >= done) {
            continue;
        }
        case_row(c, o->r0 + r, xr);
        float m;
        int64_t am = first_max(xr, V, &m);
        int64_t t = tok[r];
        REQUIRE(br[r] >= FD_ENTROPIX_ARGMAX && br[r] <= FD_ENTROPIX_ADAPTIVE);
        REQUIRE(t >= 0 && t < V);
        if (br[r] == FD_ENTROPIX_CLARIFY) {
            REQUIRE(t == (int64_t)P.clarify_token);
            REQUIRE(!c->n_list || c->list[o->r0 + r] != t);
        }
        else {
            REQUIRE(xr[t] != -INFINITY);
        }
        if (br[r] == FD_ENTROPIX_ARGMAX) {
            REQUIRE(t == am);
        }
        if (h) {
            REQUIRE(isfinite(h[r]) && h[r] >= -1e-6);
        }
        if (vv) {
            REQUIRE(isfinite(vv[r]) && vv[r] >= -1e-9);
        }
        if (lp) {
            REQUIRE(isfinite(lp[r]) && lp[r] <= 1e-12);
        }
    }
    free(xr);
    ws_free(ws, o->wsoff);
    free(tok);
    free(br);
    free(h);
    free(vv);
    free(lp);
    rows_free(&in);
}

/* ----------------------------------------------------------------------------------------- */
/* fd_contrastive / fd_guidance: the second input is the case's rows with their columns reversed */

/* element (R, i) of the second input */
static float case_at2(const fcase *c, int64_t R, int64_t i)
{
    return case_at(c, R, c->n_cols - 1 - i);
}

static float fz_to_f32(double v)
{
    if (v >= 3.4028235677973366e38) {
        return INFINITY;
    }
    if (v <= -3.4028235677973366e38) {
        return -INFINITY;
    }
    return v > FLT_MAX ? FLT_MAX : v < -FLT_MAX ? -FLT_MAX : (float)v;
}

static void run_contrast(const fcase *c, const runopt *o, result *res)
{
    int guid = c->kernel == K_GUIDANCE, flag = c->order;
    int64_t nr = o->nr, V = c->n_cols;
    int odt = c->out_dtype;
    size_t oes = esize(odt);
    int alias = o->alias == 1 && c->dtype == odt && !c->weird && !c->out_bad;
    rowbuf in, in2;
    rows_make(&in, c, o->r0, nr, o->pad, 0);
    rows_make(&in2, c, o->r0, nr, (o->pad + 1) % 4, 0);
    /* reverse the columns of the second input's rows */
    if (!c->weird && nr > 0 && V > 0 && in2.v.data) {
        size_t es = esize(c->dtype);
        uint8_t *d = in2.v.data;
        uint8_t tmp[8];
        for (int64_t r = 0; r < nr; r++) {
            uint8_t *row = d + (size_t)(r * in2.stride_eff) * es;
            for (int64_t i = 0; i < V / 2; i++) {
                memcpy(tmp, row + i * es, es);
                memcpy(row + i * es, row + (V - 1 - i) * es, es);
                memcpy(row + (V - 1 - i) * es, tmp, es);
            }
        }
        memcpy(in2.snap, in2.base, in2.bytes);
    }
    fd_rows out = in.v;
    out.dtype = (fd_dtype)odt;
    void *obase = NULL;
    int64_t ostride_eff = in.stride_eff;
    if (!alias) {
        out.row_stride = nr > 1 && !c->weird ? c->out_stride : c->row_stride;
        ostride_eff = nr > 1 && !c->weird ? c->out_stride : V;
        if (c->out_bad == 1) {
            out.n_cols = V + 1;
        }
        int64_t oelems = nr > 0 && V > 0 && !c->weird ? (nr - 1) * ostride_eff + V : 0;
        size_t obytes = (size_t)oelems * oes;
        obase = malloc(obytes ? obytes : 1);
        memset(obase, 0xa5, obytes);
        out.data = c->null_data && nr > 0 && V > 0 ? NULL : obase;
    }
    void *ws = ws_make(guid ? fd_guidance_workspace(V) : fd_contrastive_workspace(V), o->wsfill, 0);
    fd_errinfo err = {77, 77};
    int st = guid ? fd_guidance(&in.v, &in2.v, &out, fparam(&c->p[0], o->r0), flag, ws, &err)
                  : fd_contrastive(&in.v, &in2.v, &out, fparam(&c->p[0], o->r0),
                                   fparam(&c->p[1], o->r0), fparam(&c->p[2], o->r0), flag,
                                   c->filter_value, ws, &err);
    res->st = st;
    res->err = err;
    int64_t done = st == FD_OK ? nr : (err.row >= 0 ? err.row : 0);
    if (o->checks) {
        check_common(c, st, &err, nr, 2 * (V > 0 ? V : 0));
        if (c->out_bad) {
            REQUIRE(st != FD_OK);
        }
        if (st == FD_OK) {
            REQUIRE(err.row == -1 && err.index == -1);
        }
        REQUIRE(rows_unchanged(&in2));
        if (!alias) {
            REQUIRE(rows_unchanged(&in));
        }
        if (!c->weird && !c->out_bad && (st == FD_ENAN || st == FD_EPOSINF)) {
            /* the first bad element of the row, the first input before the second */
            REQUIRE(err.row >= 0 && err.index >= 0 && err.index < 2 * V);
            int second = err.index >= V;
            int64_t col = second ? err.index - V : err.index;
            float f = second ? case_at2(c, o->r0 + err.row, col) : case_at(c, o->r0 + err.row, col);
            REQUIRE(st == FD_ENAN ? f != f : f == INFINITY);
            for (int64_t i = 0; i < (second ? V : col); i++) {
                REQUIRE(!is_bad(case_at(c, o->r0 + err.row, i)));
            }
            for (int64_t i = 0; second && i < col; i++) {
                REQUIRE(!is_bad(case_at2(c, o->r0 + err.row, i)));
            }
        }
        if (st == FD_EINVAL && err.row >= 0 && err.index >= 0) {
            REQUIRE(guid || err.index >= V); /* the amateur's -inf in the head */
            if (!guid) {
                REQUIRE(case_at2(c, o->r0 + err.row, err.index - V) == -INFINITY);
            }
        }
    }
    float *e = malloc((size_t)(V > 0 ? V : 1) * sizeof(float));
    float *a = malloc((size_t)(V > 0 ? V : 1) * sizeof(float));
    for (int64_t r = 0; r < nr && !c->weird && !c->out_bad && out.data; r++) {
        const uint8_t *orow = (const uint8_t *)out.data + (size_t)(r * ostride_eff) * oes;
        if (r < done) {
            blob_add(res, (int)r, orow, (size_t)V * oes);
        }
        if (!o->checks || V == 0 || r > done || (r == done && st == FD_OK)) {
            continue;
        }
        for (int64_t i = 0; i < V; i++) {
            e[i] = case_at(c, o->r0 + r, i);
            a[i] = case_at2(c, o->r0 + r, i);
        }
        float me, ma;
        int64_t am = first_max(e, V, &me);
        first_max(a, V, &ma);
        if (r == done) { /* the failing row */
            if (st == FD_ENOFINITE) {
                REQUIRE(err.index == 0 ? me == -INFINITY : (err.index == V && ma == -INFINITY));
            }
            continue;
        }
        double p0 = pat(&c->p[0], o->r0 + r), tau = pat(&c->p[1], o->r0 + r);
        double be = pat(&c->p[2], o->r0 + r);
        for (int64_t i = 0; i < V; i++) {
            double q = odt == FD_F32 ? ((const float *)orow)[i] : ((const double *)orow)[i];
            if (guid) {
                int excl = e[i] == -INFINITY || a[i] == -INFINITY;
                if (flag && odt == FD_F32) { /* float32 log_softmax: x - max may overflow to -inf, as torch's */
                    excl |= e[i] - me == -INFINITY || a[i] - ma == -INFINITY;
                }
                if (!(flag && p0 == 1.0)) {
                    REQUIRE(excl ? q == -INFINITY : (q > -INFINITY && q < INFINITY));
                }
                if (!flag && !excl && odt == FD_F32) {
                    float g = (float)p0, t = e[i] - a[i], p = t * g;
                    REQUIRE(q == (double)(a[i] + p));
                }
                continue;
            }
            if (odt == FD_F64) { /* decided on the double values: a score or the fill */
                REQUIRE(d_bits(q) == d_bits(c->filter_value) || (q > -INFINITY && q < INFINITY));
                continue;
            }
            int head = e[i] != -INFINITY && !((double)(e[i] - me) < log(p0));
            REQUIRE(head ? (q > -INFINITY && q < INFINITY)
                         : f_bits((float)q) == f_bits(fz_to_f32(c->filter_value)));
            if (head && flag) {
                double v = (1.0 + be) * (double)e[i] - be * ((double)a[i] / tau);
                REQUIRE((float)q == fz_to_f32(v));
            }
            if (i == am) {
                REQUIRE(head); /* the maximum is always in the head */
            }
        }
    }
    free(e);
    free(a);
    ws_free(ws, 0);
    free(obase);
    rows_free(&in);
    rows_free(&in2);
}

/* ----------------------------------------------------------------------------------------- */
/* fd_spec_verify: x holds the target rows (row b owns rows b * (gamma + 1) + i), then the draft */
/* rows (row b owns rows b * gamma + i)                                                      */

/* the distribution of case row R at temperature 1 in double (weights exp(z - max)) */
static void spec_probs(const fcase *c, int64_t R, double *p)
{
    int64_t V = c->n_cols;
    float m = -INFINITY;
    for (int64_t j = 0; j < V; j++) {
        float f = case_at(c, R, j);
        m = f > m ? f : m;
    }
    double tot = 0.0;
    for (int64_t j = 0; j < V; j++) {
        float f = case_at(c, R, j);
        p[j] = f == -INFINITY ? 0.0 : exp((double)f - (double)m);
        tot += p[j];
    }
    for (int64_t j = 0; j < V; j++) {
        p[j] /= tot;
    }
}

/* 0: case row R is clean (no NaN / +inf, a finite value), else the status its load or pick
 * gives: that of its first NaN / +inf, or FD_ENOFINITE */
static int spec_row_status(const fcase *c, int64_t R)
{
    int fin = 0;
    for (int64_t j = 0; j < c->n_cols; j++) {
        float f = case_at(c, R, j);
        if (f != f) {
            return FD_ENAN;
        }
        if (f == INFINITY) {
            return FD_EPOSINF;
        }
        fin |= f != -INFINITY;
    }
    return fin ? 0 : FD_ENOFINITE;
}

static void run_spec(const fcase *c, const runopt *o, result *res)
{
    const int64_t B = c->n_rows, g = c->ival, V = c->n_cols, nr = o->nr;
    const int whole = o->r0 == 0 && nr == B; /* else a slice of a well-formed case */
    const int hasd = c->sp_drows >= 0;
    int64_t tr0 = whole ? 0 : o->r0 * (g + 1), tnr = whole ? c->sp_trows : nr * (g + 1);
    int64_t dr0 = c->sp_xt + (whole ? 0 : o->r0 * g), dnr = whole ? c->sp_drows : nr * g;
    rowbuf tg, dr;
    rows_make(&tg, c, tr0, tnr, o->pad, 0);
    if (hasd) {
        rows_make(&dr, c, dr0, dnr, (o->pad + 2) % 4, 0);
    }
    const int64_t *tok = c->null_ids ? NULL : c->ids + o->r0 * c->ids_stride;
    const int64_t *nd = c->sp_ndraft ? c->sp_ndraft + o->r0 : NULL;
    const uint8_t *gr = c->sp_greedy ? c->sp_greedy + o->r0 : NULL;
    const uint64_t *seed = c->sp_null_seed ? NULL : c->seed + o->r0 * c->seed_stride;
    const int64_t *pos = c->sp_null_pos ? NULL : c->pos + o->r0 * c->pos_stride;
    int64_t nn = nr > 0 ? nr : 1;
    int64_t *acc = c->null_out == 254 ? NULL : malloc((size_t)nn * sizeof(int64_t));
    int64_t *nxt = c->null_out == 255 ? NULL : malloc((size_t)nn * sizeof(int64_t));
    for (int64_t r = 0; r < nr; r++) {
        if (acc) {
            acc[r] = -77;
        }
        if (nxt) {
            nxt[r] = -77;
        }
    }
    void *ws = ws_make(fd_spec_verify_workspace(V), o->wsfill, o->wsoff);
    fd_errinfo err = {77, 77};
    int st = fd_spec_verify(&tg.v, hasd ? &dr.v : NULL, tok, c->ids_stride, g, nd, gr, seed,
                            c->seed_stride, pos, c->pos_stride, acc, nxt, ws, &err);
    res->st = st;
    res->err = err;
    int64_t done = st == FD_OK ? nr : (err.row >= 0 ? err.row : 0);
    if (o->checks) {
        check_common(c, st, &err, nr, c->sp_badgamma ? 0 : 2 * g + 1);
        REQUIRE((st == FD_ESHAPE) == c->weird);
        REQUIRE(rows_unchanged(&tg));
        REQUIRE(!hasd || rows_unchanged(&dr));
        if (st == FD_OK || st == FD_ESHAPE) {
            REQUIRE(err.row == -1 && err.index == -1);
        }
        else {
            REQUIRE(err.row >= 0);
        }
    }
    double *p = malloc((size_t)(V > 0 ? V : 1) * sizeof(double));
    double *q = malloc((size_t)(V > 0 ? V : 1) * sizeof(double));
    float *xr = malloc((size_t)(V > 0 ? V : 1) * sizeof(float));
    for (int64_t r = 0; r < nr && !c->weird; r++) {
        if (r < done) {
            blob_add(res, (int)r, &acc[r], 8);
            blob_add(res, (int)r, &nxt[r], 8);
        }
        if (!o->checks) {
            continue;
        }
        const int64_t b = o->r0 + r, T0 = b * (g + 1), D0 = c->sp_xt + b * g;
        const int64_t n = nd ? nd[r] : g;
        const int64_t *d = tok ? tok + r * c->ids_stride : NULL;
        const int greedy = gr && gr[r];
        if (r > done || (r == done && st == FD_OK)) {
            REQUIRE(acc[r] == -77 && nxt[r] == -77); /* rows not decided are not written */
            continue;
        }
        if (r == done) { /* the failing row: an error of the right kind */
            REQUIRE(acc[r] == -77 && nxt[r] == -77);
            int64_t ix = err.index;
            if (st == FD_EINVAL && ix < 0) {
                REQUIRE(n < 0 || n > g || (!greedy && (!seed || !pos)));
                continue;
            }
            REQUIRE(n >= 0 && n <= g);
            int64_t nbad = 0;
            while (nbad < n && d[nbad] >= 0 && d[nbad] < V) {
                nbad++;
            }
            if (st == FD_ERANGE) {
                REQUIRE(ix == nbad && ix < n);
                continue;
            }
            REQUIRE(nbad == n);
            if (V == 0) {
                REQUIRE(st == FD_ENOFINITE && ix == 0);
                continue;
            }
            REQUIRE(greedy || (seed && pos));
            /* a target row i <= n, or (sampling with draft logits) a draft row i < n */
            int draft_row = ix > g;
            int64_t i = draft_row ? ix - g - 1 : ix;
            REQUIRE(i >= 0 && (draft_row ? i < n && hasd && !greedy : i <= n));
            for (int64_t j = 0; j < i + draft_row; j++) {
                REQUIRE(spec_row_status(c, T0 + j) == 0);
            }
            for (int64_t j = 0; hasd && !greedy && j < i; j++) {
                REQUIRE(spec_row_status(c, D0 + j) == 0);
            }
            int rs = spec_row_status(c, draft_row ? D0 + i : T0 + i);
            if (st == FD_EINVAL) { /* q(d) == 0: not a draw of fd_sample */
                REQUIRE(draft_row && rs == 0);
                REQUIRE(!c->sp_drawn || !c->sp_drawn[b * g + i]);
                float m;
                case_row(c, D0 + i, xr);
                first_max(xr, V, &m);
                REQUIRE(xr[d[i]] == -INFINITY || xr[d[i]] - m < -87.0f); /* exp underflows */
            }
            else {
                REQUIRE(rs == st);
            }
            continue;
        }
        /* a decided row */
        int64_t a = acc[r], t = nxt[r];
        REQUIRE(a >= 0 && a <= n);
        REQUIRE(t >= 0 && t < V);
        REQUIRE(case_at(c, T0 + a, t) != -INFINITY);
        if (greedy) {
            float m;
            for (int64_t i = 0; i < a; i++) {
                case_row(c, T0 + i, xr);
                REQUIRE(d[i] == first_max(xr, V, &m));
            }
            case_row(c, T0 + a, xr);
            REQUIRE(t == first_max(xr, V, &m));
            REQUIRE(a == n || d[a] != t);
            continue;
        }
        const uint64_t s = seed[r * c->seed_stride], p0 = (uint64_t)pos[r * c->pos_stride];
        const double tol = 1e-5;
        for (int64_t i = 0; i <= a && i < n; i++) {
            spec_probs(c, T0 + i, p);
            double qd = 1.0;
            if (hasd) {
                spec_probs(c, D0 + i, q);
                qd = q[d[i]];
            }
            double u = fd_uniform(s, p0 + (uint64_t)i, FD_DRAW_SPEC_ACCEPT);
            if (i < a) { /* accepted: p(d) > 0 and u q(d) < p(d) */
                REQUIRE(case_at(c, T0 + i, d[i]) != -INFINITY);
                REQUIRE(!(u * qd > p[d[i]] + tol));
                continue;
            }
            /* rejected */
            REQUIRE(!(u * qd < p[d[i]] - tol));
            if (!hasd) {
                REQUIRE(t != d[i]); /* p with d removed */
                continue;
            }
            double resid = 0.0;
            for (int64_t j = 0; j < V; j++) {
                resid += p[j] > q[j] ? p[j] - q[j] : 0.0;
            }
            REQUIRE(resid < tol || p[t] - q[t] > -tol);
        }
    }
    free(p);
    free(q);
    free(xr);
    ws_free(ws, o->wsoff);
    free(acc);
    free(nxt);
    rows_free(&tg);
    if (hasd) {
        rows_free(&dr);
    }
}

/* ----------------------------------------------------------------------------------------- */
/* driver                                                                                    */

/* ----------------------------------------------------------------------------------------- */
/* adaptive.c: fd_adaptive_temperature, fd_dynamic_temperature, fd_xtc, fd_dry                */
/*
 * Decoding: the temperature kernels take (temperature, delta, exponent) per row; XTC
 * (probability, threshold, min_keep) per row, an rng as fd_sample's (uniforms, seed + position,
 * none); DRY (multiplier, base, allowed_length, last_n) per row, breakers as bad words' lists and
 * histories as the penalties'. Invariants: the common ones (status, error row / index, inputs
 * unchanged, first NaN / +inf named, ISA / alias / split re-runs identical); temperatures: no NaN
 * or +inf written, -inf stays -inf, the first maximum stays finite, beta >= 1 and finite, T' NaN
 * only for delta > 0 with <= 1 finite logit, else finite and >= 0; XTC: every element is the
 * input or filter_value, removals only when the rules allow them (p > 0, threshold <= 0.5, at
 * least two removed-or-kept top choices), a kept finite token at or below every removed one, at
 * least min_keep finite left; DRY: only ids of the row's history change, never upwards, and
 * nothing with a zero multiplier or last_n; FD_ERANGE names an id outside [0, V).
 */

static void decode_adaptive(rd *r, fcase *c, int64_t rows)
{
    int k = c->kernel;
    c->out_dtype = c->out_bad == 2 ? (c->dtype + 1) % 4 : c->dtype;
    if (k == K_ADAPTIVE_T || k == K_DYNAMIC_T) {
        c->p[0] = gen_param(r, rows, P_TEMP);
        c->p[1] = (u8(r) & 1) ? gen_param(r, rows, P_TEMP) : const_param(0.0);
        c->p[2] = gen_param(r, rows, P_TEMP);
        c->np = 3;
        return;
    }
    if (k == K_XTC) {
        c->p[0] = gen_param(r, rows, P_PROB);
        c->p[1] = gen_param(r, rows, P_PROB);
        uint8_t mk = u8(r);
        c->p[2] = mk < 128 ? const_param(1.0) : gen_param(r, rows, P_COUNT);
        c->np = 3;
        uint8_t rm = u8(r);
        c->rng_mode = rm % 3; /* 0 uniforms, 1 seed + position, 2 none */
        c->unif_stride = (rm >> 2) & 1;
        c->seed_stride = (rm >> 3) & 1;
        c->pos_stride = (rm >> 4) & 1;
        int64_t nu = c->unif_stride && rows ? rows : 1;
        c->unif = malloc((size_t)nu * sizeof(double));
        for (int64_t i = 0; i < nu; i++) {
            uint8_t b = u8(r);
            c->unif[i] = b < 240 ? u16(r) / 65536.0 : special(r, u8(r));
        }
        int64_t ns = c->seed_stride && rows ? rows : 1, npos = c->pos_stride && rows ? rows : 1;
        c->seed = malloc((size_t)ns * sizeof(uint64_t));
        c->pos = malloc((size_t)npos * sizeof(int64_t));
        for (int64_t i = 0; i < ns; i++) {
            c->seed[i] = u64(r);
        }
        for (int64_t i = 0; i < npos; i++) {
            c->pos[i] = (int64_t)u64(r);
        }
        return;
    }
    /* K_DRY */
    c->p[0] = gen_param(r, rows, P_TEMP);
    uint8_t bb = u8(r);
    c->p[1] = bb < 64 ? const_param(1.75) : gen_param(r, rows, bb < 128 ? P_COUNT : P_TEMP);
    c->p[2] = gen_param(r, rows, P_COUNT);
    uint8_t lb = u8(r);
    c->p[3] = lb < 128 ? const_param(-1.0) : gen_param(r, rows, P_NSIG);
    c->np = 4;
    c->n_words = u8(r) % 5;
    uint8_t ob = u8(r);
    c->offsets = malloc((size_t)(c->n_words + 1) * sizeof(int64_t));
    c->offsets[0] = ob == 255 ? -1 : 0;
    int64_t alpha = 1 + u8(r) % 8;
    for (int64_t w = 0; w < c->n_words; w++) {
        uint8_t wl = u8(r);
        int64_t m = wl == 255 ? 0 : 1 + wl % 3;
        c->offsets[w + 1] = (w == 0 && c->offsets[0] < 0 ? 0 : c->offsets[w]) + m;
    }
    c->flat_len = c->n_words ? c->offsets[c->n_words] : 0;
    c->flat = malloc((size_t)(c->flat_len > 0 ? c->flat_len : 1) * sizeof(int64_t));
    for (int64_t q = 0; q < c->flat_len; q++) {
        c->flat[q] = gen_id(r, alpha, c->n_cols, q);
    }
    gen_ids(r, c);
}

static void run_adaptive_dry(const fcase *c, const runopt *o, result *res)
{
    int64_t nr = o->nr, V = c->n_cols;
    int dt = c->dtype;
    size_t es = esize(dt);
    rowbuf x;
    rows_make(&x, c, o->r0, nr, o->pad, 0);
    fd_ids ids = {0};
    ids.data = c->null_ids ? NULL : ids_row(c, o->r0 < c->ids_rows ? o->r0 : 0);
    ids.n_rows = o->nr == c->n_rows ? c->ids_rows : o->nr;
    ids.n_cols = c->ids_cols;
    ids.row_stride = c->ids_stride;
    ids.begin = c->ids_begin ? c->ids_begin + o->r0 : NULL;
    ids.end = c->ids_end ? c->ids_end + o->r0 : NULL;
    void *ws = ws_make(fd_dry_workspace(V, c->ids_cols, c->n_words), o->wsfill, 0);
    fd_errinfo err = {77, 77};
    int st = fd_dry(&x.v, &ids, fparam(&c->p[0], o->r0), fparam(&c->p[1], o->r0),
                    fparam(&c->p[2], o->r0), fparam(&c->p[3], o->r0), c->flat, c->offsets,
                    c->n_words, ws, &err);
    res->st = st;
    res->err = err;
    int64_t ibound = c->flat_len > c->ids_cols ? c->flat_len : c->ids_cols;
    if (o->checks) {
        check_common(c, st, &err, nr, ibound > 0 ? ibound : 1);
        if (st == FD_OK) {
            REQUIRE(err.row == -1 && err.index == -1);
        }
        if (st == FD_ERANGE) {
            int64_t id;
            if (err.row == -1) {
                REQUIRE(err.index >= 0 && err.index < c->flat_len);
                id = c->flat[err.index];
            }
            else {
                int64_t b, e;
                REQUIRE(hist(c, o->r0 + err.row, &b, &e));
                REQUIRE(err.index >= b && err.index < e);
                id = ids_row(c, o->r0 + err.row)[err.index];
            }
            REQUIRE(id < 0 || id >= V);
        }
    }
    int64_t done = st == FD_OK ? nr : (err.row >= 0 ? err.row : 0);
    char *inh = malloc((size_t)(V > 0 ? V : 1));
    for (int64_t r = 0; r < nr && !c->weird && x.v.data; r++) {
        const uint8_t *row = (const uint8_t *)x.v.data + (size_t)(r * x.stride_eff) * es;
        if (r < done) {
            blob_add(res, (int)r, row, (size_t)V * es);
        }
        if (!o->checks) {
            continue;
        }
        const uint8_t *orig = c->x + (size_t)((o->r0 + r) * V) * es;
        int64_t b = 0, e = 0;
        memset(inh, 0, (size_t)(V > 0 ? V : 1));
        if (r < done && hist(c, o->r0 + r, &b, &e)) {
            for (int64_t j = b; j < e; j++) {
                inh[ids_row(c, o->r0 + r)[j]] = 1;
            }
        }
        double mult = pat(&c->p[0], o->r0 + r), ln = pat(&c->p[3], o->r0 + r);
        for (int64_t i = 0; i < V; i++) {
            if (same_elem(dt, row, orig, i)) {
                continue;
            }
            REQUIRE(r < done && inh[i] && mult != 0 && ln != 0);
            double a = load_widened(dt, row, i), z = load_widened(dt, orig, i);
            REQUIRE(a <= z || z != z || z == INFINITY); /* NaN / +inf are not scanned (penalty.c) */
        }
    }
    free(inh);
    ws_free(ws, 0);
    rows_free(&x);
}

static void run_adaptive(const fcase *c, const runopt *o, result *res)
{
    if (c->kernel == K_DRY) {
        run_adaptive_dry(c, o, res);
        return;
    }
    int64_t nr = o->nr, V = c->n_cols;
    size_t es = esize(c->dtype);
    int alias = o->alias && !c->out_bad && !c->weird ? 1 : 0;
    rowbuf in;
    rows_make(&in, c, o->r0, nr, o->pad, 0);
    fd_rows out = in.v;
    void *obase = NULL;
    int64_t ostride_eff = in.stride_eff;
    if (alias == 0) {
        out.dtype = (fd_dtype)c->out_dtype;
        out.row_stride = nr > 1 && !c->weird ? c->out_stride : c->row_stride;
        ostride_eff = nr > 1 && !c->weird ? c->out_stride : V;
        if (c->out_bad == 1) {
            out.n_rows = nr + 1;
        }
        int64_t oelems = nr > 0 && V > 0 && !c->weird ? (nr - 1) * ostride_eff + V : 0;
        size_t obytes = (size_t)oelems * esize(c->out_dtype);
        obase = malloc(obytes ? obytes : 1);
        memset(obase, 0xa5, obytes);
        out.data = c->null_data && nr > 0 && V > 0 ? NULL : obase;
    }
    int64_t nn = nr > 0 ? nr : 1;
    double *aux = (c->null_out & 1) ? NULL : malloc((size_t)nn * sizeof(double));
    void *ws = ws_make(fd_adaptive_workspace(V), o->wsfill, 0); /* 64-byte aligned (fd.h) */
    fd_errinfo err = {77, 77};
    int st;
    if (c->kernel == K_ADAPTIVE_T) {
        st = fd_adaptive_temperature(&in.v, &out, aux, ws, &err);
    }
    else if (c->kernel == K_DYNAMIC_T) {
        st = fd_dynamic_temperature(&in.v, &out, fparam(&c->p[0], o->r0), fparam(&c->p[1], o->r0),
                                    fparam(&c->p[2], o->r0), aux, ws, &err);
    }
    else {
        fd_rng_args rng = {0};
        if (c->rng_mode == 0) {
            rng.uniform = c->unif + o->r0 * c->unif_stride;
            rng.uniform_stride = c->unif_stride;
        }
        else if (c->rng_mode == 1) {
            rng.seed = c->seed + o->r0 * c->seed_stride;
            rng.seed_stride = c->seed_stride;
            rng.position = c->pos + o->r0 * c->pos_stride;
            rng.position_stride = c->pos_stride;
        }
        st = fd_xtc(&in.v, &out, fparam(&c->p[0], o->r0), fparam(&c->p[1], o->r0),
                    fparam(&c->p[2], o->r0), &rng, c->filter_value, ws, &err);
    }
    res->st = st;
    res->err = err;
    if (o->checks) {
        check_common(c, st, &err, nr, V);
        if (c->out_bad) {
            REQUIRE(st != FD_OK);
        }
        if (st == FD_OK) {
            REQUIRE(err.row == -1 && err.index == -1);
        }
        if (alias == 0) {
            REQUIRE(rows_unchanged(&in));
        }
        check_bad_elem(c, o->r0, st, &err);
    }
    int64_t done = st == FD_OK ? nr : (err.row >= 0 ? err.row : 0);
    uint64_t fb = fill_bits(c->dtype, c->filter_value);
    float *xr = malloc((size_t)(V > 0 ? V : 1) * sizeof(float));
    for (int64_t r = 0; r < nr && !c->weird && !c->out_bad && out.data; r++) {
        const uint8_t *orow = (const uint8_t *)out.data + (size_t)(r * ostride_eff) * es;
        if (r < done) {
            blob_add(res, (int)r, orow, (size_t)V * es);
            blob_add(res, (int)r, aux ? (const void *)&aux[r] : (const void *)&zero8, 8);
        }
        if (!o->checks) {
            continue;
        }
        case_row(c, o->r0 + r, xr);
        float m;
        int64_t am = first_max(xr, V, &m);
        if (st == FD_ENOFINITE && r == err.row) {
            REQUIRE(c->kernel == K_ADAPTIVE_T && am < 0 && !row_has_bad(xr, V));
        }
        if (r >= done || V == 0) {
            continue;
        }
        const uint8_t *irow = c->x + (size_t)((o->r0 + r) * V) * es;
        int64_t nf = 0;
        for (int64_t i = 0; i < V; i++) {
            nf += xr[i] != -INFINITY;
        }
        if (c->kernel != K_XTC) {
            for (int64_t i = 0; i < V; i++) {
                double a = load_widened(c->dtype, orow, i);
                REQUIRE(a == a && a != INFINITY);
                if (xr[i] == -INFINITY) {
                    REQUIRE(a == -INFINITY);
                }
            }
            if (am >= 0) {
                REQUIRE(isfinite(load_widened(c->dtype, orow, am)));
            }
            if (aux && c->kernel == K_ADAPTIVE_T) {
                REQUIRE(isfinite(aux[r]) && aux[r] >= 1.0);
            }
            if (aux && c->kernel == K_DYNAMIC_T) {
                double t = pat(&c->p[0], o->r0 + r), d = pat(&c->p[1], o->r0 + r);
                /* T' <= T + delta: infinite only when that sum overflows */
                REQUIRE(aux[r] != aux[r] ? d > 0 && nf <= 1
                                         : aux[r] >= 0 && (isfinite(aux[r]) || isinf(t + d)));
            }
            continue;
        }
        /* XTC */
        int64_t removed = 0;
        float min_removed = INFINITY;
        for (int64_t i = 0; i < V; i++) {
            uint64_t ib = ebits(c->dtype, irow, i), ob = ebits(c->dtype, orow, i);
            REQUIRE(ob == ib || ob == fb);
            if (ob != ib) {
                REQUIRE(xr[i] != -INFINITY);
                removed++;
                min_removed = xr[i] < min_removed ? xr[i] : min_removed;
            }
        }
        if (removed > 0) {
            double p = pat(&c->p[0], o->r0 + r), th = pat(&c->p[1], o->r0 + r);
            double mk = pat(&c->p[2], o->r0 + r);
            REQUIRE(p > 0 && th <= 0.5 && nf >= 2 && (double)(nf - removed) >= mk);
            int kept_below = 0;
            for (int64_t i = 0; i < V; i++) {
                if (xr[i] != -INFINITY && xr[i] <= min_removed &&
                    ebits(c->dtype, irow, i) == ebits(c->dtype, orow, i)) {
                    kept_below = 1;
                }
            }
            REQUIRE(kept_below);
        }
    }
    free(xr);
    free(aux);
    ws_free(ws, 0);
    free(obase);
    rows_free(&in);
}

static void run(const fcase *c, const runopt *o, result *res)
{
    int k = c->kernel;
    fdi_set_isa(o->isa);
    if (k <= K_FILTER_BADKIND) {
        run_filter(c, o, res);
    }
    else if (k == K_SOFTMAX || k == K_LOGSOFTMAX) {
        run_softmax(c, o, res);
    }
    else if (k == K_ENTROPY) {
        run_entropy(c, o, res);
    }
    else if (k == K_ARGMAX) {
        run_argmax(c, o, res);
    }
    else if (k == K_SAMPLE_HF || k == K_SAMPLE_LLAMA) {
        run_sample(c, o, res);
    }
    else if (k >= K_REPETITION && k <= K_BADWORDS) {
        run_penalty(c, o, res);
    }
    else if (k == K_BEAM) {
        run_beam(c, o, res);
    }
    else if (k == K_DTYPE) {
        run_dtype(c, o, res);
    }
    else if (k == K_MIROSTAT) {
        run_mirostat(c, o, res);
    }
    else if (k == K_ENTROPIX) {
        run_entropix(c, o, res);
    }
    else if (k == K_FLOOR) {
        run_floor(c, o, res);
    }
    else if (k == K_CONTRAST || k == K_GUIDANCE) {
        run_contrast(c, o, res);
    }
    else if (k >= K_ADAPTIVE_T && k <= K_DRY) {
        run_adaptive(c, o, res);
    }
    else if (k == K_SPEC) {
        run_spec(c, o, res);
    }
}

/* FUZZ_DEBUG=1 in the environment: a description of the case and of mismatching results */
static int debug_on(void)
{
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("FUZZ_DEBUG");
        on = e && *e && *e != '0';
    }
    return on;
}

static void dump_param(const char *name, const gparam *p, int64_t n_rows)
{
    fprintf(stderr, "  %s (stride %lld):", name, (long long)p->stride);
    for (int64_t i = 0; i < (p->stride ? n_rows : 1); i++) {
        fprintf(stderr, " %.17g", p->v[i]);
    }
    fprintf(stderr, "\n");
}

static void dump_case(const fcase *c)
{
    if (!debug_on()) {
        return;
    }
    fprintf(stderr,
            "case: kernel %d dtype %d isa %d diff %d split %d null_data %d n_rows %lld n_cols %lld "
            "row_stride %lld weird %d pad %d alias %d shift %lld out_dtype %d out_stride %lld "
            "out_bad %d null_out %d filter_value %.17g ival %lld ival2 %lld order %d norm %d "
            "rng_mode %d\n",
            c->kernel, c->dtype, c->isa, c->diff, c->split, c->null_data, (long long)c->n_rows,
            (long long)c->n_cols, (long long)c->row_stride, c->weird, c->pad, c->alias,
            (long long)c->shift, c->out_dtype, (long long)c->out_stride, c->out_bad, c->null_out,
            c->filter_value, (long long)c->ival, (long long)c->ival2, c->order, c->norm,
            c->rng_mode);
    static const char *names[8] = {"p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7"};
    for (int i = 0; i < c->np; i++) {
        dump_param(names[i], &c->p[i], c->n_rows);
    }
    for (int64_t r = 0; r < c->n_rows && c->n_cols > 0 && !c->weird; r++) {
        fprintf(stderr, "  row %lld:", (long long)r);
        for (int64_t i = 0; i < c->n_cols; i++) {
            fprintf(stderr, " %.9g", case_at(c, r, i));
        }
        fprintf(stderr, "\n");
    }
    if (c->ids) {
        fprintf(stderr, "  ids %lld x %lld stride %lld null %d:", (long long)c->ids_rows,
                (long long)c->ids_cols, (long long)c->ids_stride, c->null_ids);
        for (int64_t r = 0; r < c->ids_rows; r++) {
            int64_t b = 0, e = 0;
            int ok = hist(c, r, &b, &e);
            fprintf(stderr, " [%lld %lld%s]", (long long)b, (long long)e, ok ? "" : " bad");
            for (int64_t j = 0; j < c->ids_cols; j++) {
                fprintf(stderr, " %lld", (long long)ids_row(c, r)[j]);
            }
            fprintf(stderr, " |");
        }
        fprintf(stderr, "\n");
    }
}

static void dump_result(const char *what, const result *a)
{
    if (!debug_on()) {
        return;
    }
    fprintf(stderr, "%s: status %d err (%lld, %lld) blobs %d\n", what, a->st, (long long)a->err.row,
            (long long)a->err.index, a->nb);
    for (int i = 0; i < a->nb; i++) {
        fprintf(stderr, "  blob %d (%zu bytes):", i, a->len[i]);
        for (size_t j = 0; j < a->len[i] && j < 64; j++) {
            fprintf(stderr, " %02x", a->blob[i][j]);
        }
        fprintf(stderr, "\n");
    }
}

static void same_result(const result *a, const result *b)
{
    dump_result("first run", a);
    dump_result("second run", b);
    REQUIRE(a->st == b->st);
    REQUIRE(a->err.row == b->err.row && a->err.index == b->err.index);
    int n = a->nb > b->nb ? a->nb : b->nb;
    for (int i = 0; i < n; i++) {
        REQUIRE(blob_eq(a, i, b, i));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rd r = {data, size, 0};
    int k0 = size ? kernel_of(data[0]) : 0;
    if (k0 == K_CONVERT || k0 == K_RNG) {
        r.i = 1;
        if (k0 == K_CONVERT) {
            run_convert(&r);
        }
        else {
            run_rng(&r);
        }
        return 0;
    }
    fcase c;
    decode(&r, &c);
    dump_case(&c);
    int isa = c.isa == 3 ? -1 : c.isa;
    runopt o = {0, c.n_rows, isa, c.alias, c.pad, c.wsoff, c.wsfill, 1};
    result base = {0};
    run(&c, &o, &base);

    /* another ISA level, no aliasing, other alignment and scratch contents: the same bits */
    if (c.diff && c.kernel != K_DTYPE) {
        int level = fdi_set_isa(isa);
        runopt d = o;
        d.isa = level == FDI_ISA_PORTABLE ? -1 : FDI_ISA_PORTABLE;
        d.alias = 0;
        d.pad = (c.pad + 1) % 4;
        d.wsoff = (c.wsoff + 17) % 64;
        d.wsfill = (uint8_t)~c.wsfill;
        d.checks = 0;
        result other = {0};
        run(&c, &d, &other);
        same_result(&base, &other);
        res_free(&other);
    }

    /* each row (beam: each group) alone gives its part of the batch result */
    int rowwise = c.kernel != K_DTYPE && !c.weird && !c.out_bad && c.n_rows > 1;
    if (c.split && rowwise) {
        int64_t unit = 1;
        if (c.kernel == K_BEAM) {
            unit = c.ival >= 1 && c.n_rows % c.ival == 0 ? c.ival : 0;
        }
        int shared_list_err = base.st != FD_OK && base.err.row < 0;
        int64_t upto = base.st == FD_OK ? c.n_rows : base.err.row;
        if (c.kernel == K_PRESFREQ || c.kernel == K_REPETITION || c.kernel == K_NGRAM ||
            c.kernel == K_BADWORDS || c.kernel == K_DRY) {
            /* a row alone needs an ids matrix of one row */
            if (c.ids_rows != c.n_rows) {
                unit = 0;
            }
        }
        for (int64_t r0 = 0; unit > 0 && !shared_list_err && r0 <= upto && r0 < c.n_rows;
             r0 += unit) {
            runopt s = o;
            s.r0 = r0;
            s.nr = unit;
            s.checks = 0;
            s.alias = 0;
            s.wsfill = (uint8_t)(c.wsfill + 1 + r0);
            result one = {0};
            run(&c, &s, &one);
            if (debug_on()) {
                fprintf(stderr, "slice at row %lld\n", (long long)r0);
                dump_result("batch", &base);
                dump_result("slice", &one);
            }
            int64_t slot = r0 / unit;
            if (r0 + unit <= upto || base.st == FD_OK) {
                REQUIRE(one.st == FD_OK);
                REQUIRE(blob_eq(&base, (int)slot, &one, 0));
            }
            else {
                /* the failing row (group): the same error, at its row within the slice */
                REQUIRE(one.st == base.st);
                REQUIRE(one.err.row == base.err.row - r0);
                REQUIRE(one.err.index == base.err.index);
            }
            res_free(&one);
        }
    }
    res_free(&base);
    free_case(&c);
    return 0;
}
