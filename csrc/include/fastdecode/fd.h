/*
 * fastdecode core: the public C API.
 *
 * The core is plain C11. It never includes Python.h or NumPy headers, owns no globals, allocates no
 * memory and does no I/O: callers pass every buffer in, and scratch space is sized by the matching
 * fd_*_workspace() function (the LAPACK `lwork` pattern), so the binding can allocate it before it
 * releases the GIL.
 *
 * Data model
 *   fd_rows   a (n_rows, n_cols) matrix of logits with unit inner stride and any row stride (in
 *             elements), in one of the storage dtypes below. Everything is computed in float32 (sums
 *             in double); float16 and bfloat16 are converted on load, float64 is rounded to float32 for
 *             the decisions while kept values are copied through unchanged.
 *   fd_param  one double per row: values[row * stride]; stride 0 means "the same for every row".
 *   fd_ids    a (n_rows, n_cols) int64 matrix of token histories with optional per-row [begin, end)
 *             bounds (NULL: 0 and n_cols).
 *
 * Logits may be finite or -inf. NaN gives FD_ENAN and +inf gives FD_EPOSINF, with err->row and
 * err->index naming the offending element; kernels check before they write anything for that row,
 * but earlier rows may already have been written (the binding writes into a private buffer or
 * documents this).
 *
 * Ties: wherever a kernel must choose between equal values, the lowest vocabulary index wins
 * (argmax picks the first maximum; a filter that keeps "m of the tied tokens" keeps the m lowest
 * ids), except in top-p, which follows Hugging Face's stable ascending sort: there the highest ids
 * of a split tie group are kept.
 */
#ifndef FASTDECODE_FD_H
#define FASTDECODE_FD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    FD_OK = 0,
    FD_EINVAL = 1,     /* a parameter is outside its domain (k < 0, p outside [0, 1], ...) */
    FD_ERANGE = 2,     /* a token id is negative or >= n_cols */
    FD_ENAN = 3,       /* a logit is NaN */
    FD_EPOSINF = 4,    /* a logit is +inf */
    FD_ENOFINITE = 5,  /* a row has no finite logit where a token must be picked */
    FD_ESHAPE = 6      /* inconsistent sizes or strides */
} fd_status;

typedef enum { FD_F32 = 0, FD_F64 = 1, FD_F16 = 2, FD_BF16 = 3 } fd_dtype;

typedef struct {
    void *data;          /* element (0, 0) */
    fd_dtype dtype;
    int64_t n_rows;
    int64_t n_cols;
    int64_t row_stride;  /* in elements; may be anything >= n_cols for distinct rows */
} fd_rows;

typedef struct {
    const double *values;
    int64_t stride;      /* 0: values[0] for every row */
} fd_param;

#define FD_PARAM_AT(p, r) ((p).values[(int64_t)(r) * (p).stride])

typedef struct {
    const int64_t *data;  /* element (0, 0) */
    int64_t n_rows;
    int64_t n_cols;
    int64_t row_stride;   /* in elements */
    const int64_t *begin; /* NULL or n_rows values: first valid column of each row */
    const int64_t *end;   /* NULL or n_rows values: one past the last valid column */
} fd_ids;

typedef struct {
    int64_t row;    /* row at fault, -1 if none */
    int64_t index;  /* column / id position at fault, -1 if none */
} fd_errinfo;

/* ---------------------------------------------------------------------------------------------
 * dtype.c: row loading and storing (used by every kernel; exported for the binding and tests).
 * --------------------------------------------------------------------------------------------- */

/* Converts row `row` of `x` to float32 in dst[0..n_cols). Returns FD_ENAN / FD_EPOSINF (with
 * err->index) if the row holds NaN / +inf, else FD_OK. */
fd_status fd_load_row(const fd_rows *x, int64_t row, float *dst, fd_errinfo *err);
/* FD_OK if no element of x is NaN or +inf, else the status of the first offending element (in
 * row-major order) with err->row / err->index. Lets a caller that writes in place validate the
 * whole matrix before it writes anything. */
fd_status fd_check_rows(const fd_rows *x, fd_errinfo *err);
/* Stores one float32 value into element (row, col) of `x`, rounding to the storage dtype
 * (round-to-nearest-even for float16 and bfloat16). */
void fd_store(const fd_rows *x, int64_t row, int64_t col, double value);
/* Copies element (row, col) of `src` to the same element of `dst` (same dtype), exactly. */
void fd_copy_elem(const fd_rows *src, const fd_rows *dst, int64_t row, int64_t col);
float fd_half_to_float(uint16_t h);
uint16_t fd_float_to_half(float f);
float fd_bf16_to_float(uint16_t h);
uint16_t fd_float_to_bf16(float f);

/* ---------------------------------------------------------------------------------------------
 * softmax.c
 * --------------------------------------------------------------------------------------------- */

size_t fd_softmax_workspace(int64_t n_cols);
/* out = softmax(in / T) (log_softmax when `log` != 0), per row, T from `temperature` (T > 0; T == 0
 * gives the one-hot of the first maximum, whose log is 0 / -inf). `out` has in's shape and dtype
 * FD_F32 or FD_F64. A row of all -inf gives FD_ENOFINITE. */
fd_status fd_softmax(const fd_rows *in, const fd_rows *out, fd_param temperature, int log,
                     void *ws, fd_errinfo *err);
/* Entropy H = -sum p log p (nats) and varentropy = sum p (log p + H)^2 of softmax(in) per row;
 * either output may be NULL. -inf logits contribute nothing. */
fd_status fd_entropy(const fd_rows *in, double *entropy, double *varentropy, void *ws,
                     fd_errinfo *err);
/* First index of the maximum of every row (NaN rejected). */
fd_status fd_argmax(const fd_rows *in, int64_t *out, fd_errinfo *err);

/* ---------------------------------------------------------------------------------------------
 * filter.c: the logits -> logits warpers, with Hugging Face semantics.
 *
 * out has in's shape and dtype and may alias it (same data and row stride). A kept element is
 * copied through unchanged; a removed one becomes filter_value (rounded to the dtype).
 * `param` is per row: k for TOP_K (0 disables; k = max(k, min_keep), clipped to n_cols), p for
 * TOP_P, MIN_P, TYPICAL (mass), EPSILON, ETA, n for TOP_N_SIGMA (<= 0 disables). min_keep >= 1.
 * Exact rules (p are the softmax probabilities of the row in float32, sums in double):
 *   TOP_K    remove z < (k-th largest z); every token tied with the k-th value is kept.
 *   TOP_P    walk tokens by descending z (ties: HIGHER id first, the reverse of HF's stable
 *            ascending sort); keep a token while the mass of the tokens before it is < p; the
 *            first min_keep tokens of the walk are always kept.
 *            p = 1 keeps everything (HF: cumsum <= 1 - p removes nothing).
 *   MIN_P    remove (z - max) < ln(p) (i.e. prob < p * max prob); keep the min_keep first of the
 *            descending walk.
 *   TYPICAL  HF TypicalLogitsWarper: s = |(-log p) - H|; walk by ascending s (ties: lower id
 *            first); the crossing position is the first whose inclusive mass >= mass (the last
 *            position if none); keep every token with s <= s(crossing) (ties kept) and the first
 *            min_keep of the walk.
 *   EPSILON  remove p < eps unless z >= (min_keep-th largest z).
 *   ETA      eta = min(eps, sqrt(eps) * exp(-H)); remove p < eta unless z >= (min_keep-th largest).
 *   TOP_N_SIGMA keep z >= max - n * sigma, sigma = population std of the finite logits, and
 *            z >= (min_keep-th largest z) (ties kept).
 * --------------------------------------------------------------------------------------------- */

typedef enum {
    FD_FILTER_TOP_K = 0,
    FD_FILTER_TOP_P = 1,
    FD_FILTER_MIN_P = 2,
    FD_FILTER_TYPICAL = 3,
    FD_FILTER_EPSILON = 4,
    FD_FILTER_ETA = 5,
    FD_FILTER_TOP_N_SIGMA = 6
} fd_filter_kind;

size_t fd_filter_workspace(int64_t n_cols);
fd_status fd_filter(fd_filter_kind kind, const fd_rows *in, const fd_rows *out, fd_param param,
                    fd_param min_keep, double filter_value, void *ws, fd_errinfo *err);

/* ---------------------------------------------------------------------------------------------
 * penalty.c: in-place edits of a logits matrix from token histories. x is modified in place
 * (the binding copies first when the caller did not pass out=). ids must have x's n_rows; ids
 * outside [0, n_cols) give FD_ERANGE with err->row / err->index (the position in the history).
 * Only the history columns [begin, end) of each row are read.
 * --------------------------------------------------------------------------------------------- */

size_t fd_penalty_workspace(int64_t n_cols);
/* CTRL / HF: every distinct id once: z < 0 ? z * theta : z / theta. theta > 0. */
fd_status fd_repetition_penalty(const fd_rows *x, const fd_ids *ids, fd_param penalty, void *ws,
                                fd_errinfo *err);
/* OpenAI / vLLM: z -= frequency * count + presence * (count > 0). */
fd_status fd_presence_frequency(const fd_rows *x, const fd_ids *ids, fd_param presence,
                                fd_param frequency, void *ws, fd_errinfo *err);
/* HF NoRepeatNGram: with history t[0..L) (L = end - begin), if L >= n ban (set filter_value) every
 * t[i + n - 1] such that t[i .. i + n - 2] == t[L - n + 1 .. L - 1], 0 <= i <= L - n. n >= 1. */
fd_status fd_no_repeat_ngram(const fd_rows *x, const fd_ids *ids, int64_t n, double filter_value,
                             void *ws, fd_errinfo *err);
/* z[ids[j]] += values[r * values_row_stride + j] for j < n_ids (values_row_stride 0: shared). */
fd_status fd_logit_bias(const fd_rows *x, const int64_t *ids, int64_t n_ids, const double *values,
                        int64_t values_row_stride, fd_errinfo *err);
/* z[ids[j]] = filter_value for j < n_ids, every row. */
fd_status fd_suppress_tokens(const fd_rows *x, const int64_t *ids, int64_t n_ids,
                             double filter_value, fd_errinfo *err);
/* Bit i of words[r * row_stride + i / 32] (bit i % 32, little-endian) set = token i allowed;
 * disallowed tokens become filter_value. n_words >= ceil(n_cols / 32). */
fd_status fd_apply_bitmask(const fd_rows *x, const int32_t *words, int64_t n_words,
                           int64_t row_stride, double filter_value, fd_errinfo *err);
/* HF NoBadWords: word w = flat[offsets[w] .. offsets[w + 1]) (length m >= 1). If m == 1 ban
 * w[0]; else ban w[m - 1] when the history's last m - 1 tokens equal w[0 .. m - 2]. */
fd_status fd_bad_words(const fd_rows *x, const fd_ids *ids, const int64_t *flat,
                       const int64_t *offsets, int64_t n_words, double filter_value,
                       fd_errinfo *err);

/* ---------------------------------------------------------------------------------------------
 * rng.c: Philox4x32-10 (Salmon et al. 2011), counter-based.
 * --------------------------------------------------------------------------------------------- */

void fd_philox4x32(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]);
/* A uniform double in [0, 1) with 53 random bits, keyed by (seed, position, draw). */
double fd_uniform(uint64_t seed, uint64_t position, uint64_t draw);

/* ---------------------------------------------------------------------------------------------
 * sample.c: the fused sampler.
 * --------------------------------------------------------------------------------------------- */

typedef enum { FD_ORDER_HF = 0, FD_ORDER_LLAMA = 1 } fd_order;

typedef struct {
    fd_param temperature;  /* >= 0; 0: argmax of the raw row (first maximum) */
    fd_param top_k;        /* 0 disables */
    fd_param top_p;        /* 1 disables */
    fd_param min_p;        /* 0 disables */
    fd_param typical_p;    /* 1 disables */
    fd_param epsilon;      /* 0 disables */
    fd_param eta;          /* 0 disables */
    fd_param top_n_sigma;  /* <= 0 disables */
    fd_order order;
} fd_sample_params;

/* Per row: seed and position (uint64 / int64 values with the given strides, 0 = shared), or
 * explicit uniforms in [0, 1) (uniform != NULL; then seed/position are ignored). */
typedef struct {
    const uint64_t *seed;
    int64_t seed_stride;
    const int64_t *position;
    int64_t position_stride;
    const double *uniform;
    int64_t uniform_stride;
} fd_rng_args;

size_t fd_sample_workspace(int64_t n_cols);
/* One token per row. Chain, order FD_ORDER_HF: temperature -> top-n-sigma -> top-k -> top-p ->
 * min-p -> typical -> epsilon -> eta -> pick; FD_ORDER_LLAMA: top-n-sigma -> top-k -> typical ->
 * top-p -> min-p -> epsilon -> eta -> temperature -> pick. Each filter has fd_filter's semantics
 * with min_keep = 1 on the surviving candidates. The pick is the inverse CDF over the surviving
 * candidates in ascending id order: float32 weights exp(z - max), summed in double in a fixed
 * blocked order (sequential within 64-weight blocks, then the block sums in order); the first id
 * whose running sum exceeds u * total. tokens[r] is written for every row; logprob (may be NULL) receives
 * the log-probability of the chosen token under the final filtered distribution. */
fd_status fd_sample(const fd_rows *in, const fd_sample_params *params, const fd_rng_args *rng,
                    int64_t *tokens, double *logprob, void *ws, fd_errinfo *err);

/* ---------------------------------------------------------------------------------------------
 * beam.c: the beam-search step.
 * --------------------------------------------------------------------------------------------- */

/* Scratch for fd_beam_step on rows of n_cols logits and k results per group. */
size_t fd_beam_step_workspace(int64_t n_cols, int64_t k);
/* For each group g of group_size consecutive rows of `in` (group_size >= 1 dividing n_rows,
 * else FD_ESHAPE), the k best (1 <= k <= group_size * n_cols, else FD_EINVAL) of
 *   s(r, t) = lp(r, t) + beam_scores[r]      (float32 addition)
 * over the rows r of the group and tokens t, where lp is the float32 log_softmax of the row (bit
 * for bit what fd_softmax with temperature 1 and log != 0 gives, rounded to float32) when
 * normalize != 0, else the logit itself as float32. Written best first to out_scores[g * k + j],
 * out_rows[g * k + j] (the row of `in`, 0 .. n_rows - 1) and out_tokens[g * k + j]. Order: larger
 * s first, equal s by smaller flat index (r - g * group_size) * n_cols + t first (torch.topk over
 * the flattened group, with its tie order made deterministic). -inf scores are ranked last and
 * returned like any other when fewer than k are finite. beam_scores[r] may be -inf; NaN or +inf
 * gives FD_EINVAL with err->row = r. NaN / +inf logits give FD_ENAN / FD_EPOSINF; with normalize,
 * a row of all -inf gives FD_ENOFINITE (as log_softmax). Rows are checked in order (beam score,
 * then logits); groups before the failing row's group have been written. ws: at least
 * fd_beam_step_workspace(n_cols, k) bytes, 64-byte aligned. */
fd_status fd_beam_step(const fd_rows *in, const float *beam_scores, int64_t group_size, int64_t k,
                       int normalize, float *out_scores, int64_t *out_rows, int64_t *out_tokens,
                       void *ws, fd_errinfo *err);

/* ---------------------------------------------------------------------------------------------
 * speculative.c: verification of drafted tokens (speculative decoding).
 * --------------------------------------------------------------------------------------------- */

/* The fd_uniform draw indices of speculative decoding (fd_sample uses draw 0): the acceptance test
 * of the draft at a position, the residual or bonus token drawn at a position, and the draft's
 * own draw at a position (made by the caller through fd_sample with explicit uniforms). */
#define FD_DRAW_SPEC_ACCEPT 0x5350454341ull
#define FD_DRAW_SPEC_NEXT 0x535045434eull
#define FD_DRAW_SPEC_DRAFT 0x5350454344ull

size_t fd_spec_verify_workspace(int64_t n_cols);
/* Verifies the drafts of B = target->n_rows / (gamma + 1) rows (n_rows must be a multiple of
 * gamma + 1, else FD_ESHAPE). Row b owns target rows b * (gamma + 1) + i, i = 0 .. gamma: the
 * target's processed logits at the position of draft i + 1 (row gamma: after the last draft);
 * draft rows b * gamma + i (draft may be NULL: deterministic drafts) with the draft's processed
 * logits for draft i + 1; tokens[b * tokens_stride + i] the drafted ids; n_draft[b] in [0, gamma]
 * (NULL: gamma) how many of them count. greedy[b] != 0 (greedy may be NULL: none) verifies row b
 * greedily (drafts accepted while equal to the target row's first maximum, then that maximum);
 * otherwise by the speculative sampling rule, with seed[b * seed_stride] and
 * position[b * position_stride] = the absolute position of the first draft (see speculative.c
 * for the rule and the random streams). p and q are the distributions fd_sample draws from with
 * temperature 1 and no filter on those rows. Writes n_accepted[b] (0 .. n_draft[b]) and
 * next_token[b] (the residual, bonus or greedy token). Only the rows needed for the decision are
 * read. Errors (err->row = b): FD_EINVAL for n_draft outside [0, gamma], missing seeds, or a draft
 * token of probability 0 under its own q (err->index = gamma + 1 + i); FD_ERANGE for a draft id
 * outside [0, n_cols) (err->index = i); FD_ENAN / FD_EPOSINF / FD_ENOFINITE for a target row i
 * (err->index = i) or a draft row i (err->index = gamma + 1 + i). ws: at least
 * fd_spec_verify_workspace(n_cols) bytes. */
fd_status fd_spec_verify(const fd_rows *target, const fd_rows *draft, const int64_t *tokens,
                         int64_t tokens_stride, int64_t gamma, const int64_t *n_draft,
                         const uint8_t *greedy, const uint64_t *seed, int64_t seed_stride,
                         const int64_t *position, int64_t position_stride, int64_t *n_accepted,
                         int64_t *next_token, void *ws, fd_errinfo *err);

/* ---------------------------------------------------------------------------------------------
 * mirostat.c / entropix.c: stateful and entropy-driven samplers. Per-row state lives in caller
 * arrays, one value per row; a row's result never depends on another row.
 * --------------------------------------------------------------------------------------------- */

typedef struct {
    fd_param tau;          /* target surprise in bits, > 0 (finite) */
    fd_param eta;          /* learning rate, >= 0 (finite) */
    fd_param temperature;  /* >= 0, applied first (z / T in float32); 0: greedy, surprise 0 */
    int version;           /* 1 or 2 */
    int64_t m;             /* v1: tokens used to estimate s_hat, >= 1 (llama.cpp: 100) */
} fd_mirostat_params;

size_t fd_mirostat_workspace(int64_t n_cols);
/* One mirostat step per row (llama.cpp llama_sampler_mirostat{,_v2}; mirostat.c states the exact
 * computation). mu[r] (bits, finite; llama.cpp starts at 2 tau) is read and replaced by
 *   mu - eta * (surprise - tau),  surprise = -log2 p(token) under the truncated distribution.
 * v2 keeps the tokens with -log2 p <= mu (at least the first maximum); v1 keeps the top k with k
 * from the Zipf exponent estimated on the top m logits. The pick is inverse CDF in ascending id
 * order with u from rng (as fd_sample). tokens[r] always; logprob[r] (log p of the token under the
 * truncated distribution) and n_kept[r] (survivors) when not NULL. Bad tau / eta / T / mu give
 * FD_EINVAL with err->row, a bad version or m FD_EINVAL with row -1. Rows before a failing row have
 * been written (mu included). ws: fd_mirostat_workspace(n_cols) bytes. */
fd_status fd_mirostat(const fd_rows *in, const fd_mirostat_params *params, const fd_rng_args *rng,
                      double *mu, int64_t *tokens, double *logprob, int64_t *n_kept, void *ws,
                      fd_errinfo *err);

/* entropix branches (xjdr-alt/entropix torch_sampler.py `sample`), tested in this order. */
typedef enum {
    FD_ENTROPIX_ARGMAX = 0,   /* H < low_entropy and V < low_varentropy: first maximum */
    FD_ENTROPIX_CLARIFY = 1,  /* H > helv_entropy and V < low_varentropy, clarify_token >= 0 and
                                 not the row's last token: clarify_token itself */
    FD_ENTROPIX_HELV = 2,     /* same quadrant otherwise: T' = min(helv_t_max, T * helv_t_factor) */
    FD_ENTROPIX_LEHV = 3,     /* H < lehv_entropy and V > lehv_varentropy: T' = min(lehv_t_max,
                                 T * lehv_t_factor), k' = max(lehv_k_min, floor(k * lehv_k_factor))
                                 (k = 0 stays 0: disabled) */
    FD_ENTROPIX_HEHV = 4,     /* H > hehv_entropy and V > hehv_varentropy: T' = max(hehv_t_min,
                                 T * hehv_t_factor), p' = max(hehv_p_min, p - hehv_p_delta) */
    FD_ENTROPIX_ADAPTIVE = 5  /* otherwise: T' = T (1 + a_t (H + V)), min_p' = clamp(a_min_p (1 -
                                 a_m (H + V)), 0.01, 0.5); n_samples draws, the one with the
                                 highest raw logit wins (first on ties) */
} fd_entropix_branch;

/* Every field a double, in this order (the binding fills it from a float64 array). */
typedef struct {
    double temperature, top_k, top_p, min_p; /* the base sampler (entropix: .666, 27, .9, 0) */
    double low_entropy, low_varentropy;      /* .1, .1 */
    double helv_entropy;                     /* 3 */
    double lehv_entropy, lehv_varentropy;    /* 5, 5 */
    double hehv_entropy, hehv_varentropy;    /* 5, 5 */
    double helv_t_factor, helv_t_max;        /* 1.3, 1.5 */
    double lehv_t_factor, lehv_t_max, lehv_k_factor, lehv_k_min; /* 1.2, 1.5, 1.5, 5 */
    double hehv_t_factor, hehv_t_min, hehv_p_delta, hehv_p_min;  /* 2, 2, 0, .5 */
    double a_t, a_min_p, a_m, n_samples;     /* .3, .03, .5, 5 */
    double clarify_token;                    /* < 0: none (entropix hard-codes 2564) */
} fd_entropix_params;
#define FD_ENTROPIX_NPARAMS 26

size_t fd_entropix_workspace(int64_t n_cols);
/* One entropix step per row. H and V are the entropy and varentropy of softmax(row) in bits
 * (fd_entropy / ln 2 and / ln^2 2), written to entropy[r] / varentropy[r] when not NULL; the
 * branch (fd_entropix_branch) to branch[r]. Sampling branches call fd_sample (HF order:
 * temperature, top-k, top-p, min-p) on the row with the branch's parameters and the uniform
 * fd_uniform(seed, position, j) of draw j (j = 0 except in the adaptive branch); rng->uniform must
 * be NULL. last_token (NULL: none) is each row's previous token, for the clarify rule. logprob[r]
 * (may be NULL): log p of the token under the branch's filtered distribution (0 for ARGMAX and
 * CLARIFY). Parameters are validated before any row is read (FD_EINVAL, row -1). */
fd_status fd_entropix(const fd_rows *in, const fd_entropix_params *params,
                      const int64_t *last_token, const fd_rng_args *rng, int64_t *tokens,
                      int64_t *branch, double *entropy, double *varentropy, double *logprob,
                      void *ws, fd_errinfo *err);

/* ---------------------------------------------------------------------------------------------
 * contrastive.c: contrastive decoding (expert / amateur) and classifier-free guidance.
 *
 * Both take two row matrices of the same shape (any dtypes, any row strides) and write `out`
 * (FD_F32 or FD_F64, the same shape; it may alias either input exactly: each row is read in full
 * before it is written). With FD_F32 the rows are loaded as float32 and the arithmetic is float32
 * values evaluated in double (sums in double), rounded once; with FD_F64 it is double throughout.
 * NaN / +inf in an input give FD_ENAN / FD_EPOSINF; err->index is the column for the first input
 * and n_cols + column for the second, so the caller can name the argument. Rows are checked
 * before they are written; earlier rows may already be written.
 * --------------------------------------------------------------------------------------------- */

size_t fd_contrastive_workspace(int64_t n_cols);
/* Per row r, with head(x) = z_e(x) > -inf and !((z_e(x) - max z_e) < log(alpha)) (the min-p mask
 * of the expert; the subtraction in float32 for FD_F32 output; alpha = 0 keeps every finite
 * expert logit):
 *   use_beta == 0: out(x) = log_softmax(z_e)(x) - log_softmax(z_a / tau)(x)   (Li et al. 2022)
 *   use_beta != 0: out(x) = (1 + beta) z_e(x) - beta z_a(x) / tau           (O'Brien & Lewis 2023)
 * on the head, filter_value (rounded to the output dtype) elsewhere. alpha in [0, 1], tau > 0
 * finite, beta >= 0 finite (per row, fd_param), filter_value not NaN; else FD_EINVAL with
 * err->row = r and err->index = -1 (also when finite inputs give an infinite score). An expert row
 * with no finite logit gives FD_ENOFINITE (err->index 0), an amateur row with none under Li
 * FD_ENOFINITE (err->index n_cols). A head token whose amateur logit is -inf (its score would be
 * +inf) gives FD_EINVAL with err->index = n_cols + column. ws: fd_contrastive_workspace(n_cols)
 * bytes, 64-byte aligned. */
fd_status fd_contrastive(const fd_rows *expert, const fd_rows *amateur, const fd_rows *out,
                         fd_param alpha, fd_param amateur_temperature, fd_param beta, int use_beta,
                         double filter_value, void *ws, fd_errinfo *err);

size_t fd_guidance_workspace(int64_t n_cols);
/* Classifier-free guidance, Hugging Face arithmetic, g = guidance_scale[r] (finite):
 *   normalize != 0: c = log_softmax(cond), u = log_softmax(uncond); out = g * (c - u) + u, and
 *                   out = c when g == 1 (UnbatchedClassifierFreeGuidanceLogitsProcessor);
 *   normalize == 0: out = u + (c - u) * g with c, u the raw rows (ClassifierFreeGuidanceLogitsProcessor).
 * FD_F32: each operation rounded to float32 as torch does (g rounded to float32 first). Where
 * c or u is -inf the output is -inf (torch would give NaN or an infinity there), except out = c
 * for g == 1 with normalize. With normalize a row with no finite value gives FD_ENOFINITE
 * (err->index 0 for cond, n_cols for uncond). A non-finite g or a finite result that overflows
 * gives FD_EINVAL (err->index -1, or the column). ws: fd_guidance_workspace(n_cols) bytes. */
fd_status fd_guidance(const fd_rows *cond, const fd_rows *uncond, const fd_rows *out,
                      fd_param guidance_scale, int normalize, void *ws, fd_errinfo *err);

/* ---------------------------------------------------------------------------------------------
 * floor.c: the benchmark suite's calibration floors (not a decoding kernel).
 * --------------------------------------------------------------------------------------------- */

#define FD_FLOOR_READ 0    /* one read pass: out[r] = the row maximum (-inf for an empty row) */
#define FD_FLOOR_EXP_SUM 1 /* the read pass, then out[r] = sum exp(x - max), weights not stored */
size_t fd_floor_workspace(int64_t n_cols);
/* The least work a kernel of each class must do per row, with the kernels' own dispatched ISA
 * copies: kind FD_FLOOR_READ or FD_FLOOR_EXP_SUM above (0 for a row of all -inf). out: n_rows
 * doubles. NaN / +inf give FD_ENAN / FD_EPOSINF naming the element; another kind FD_EINVAL.
 * ws: at least fd_floor_workspace(n_cols) bytes, 64-byte aligned. */
fd_status fd_floor(const fd_rows *in, int kind, double *out, void *ws, fd_errinfo *err);

/* ---------------------------------------------------------------------------------------------
 * adaptive.c: the stateless adaptive samplers (semantics and references: the file comment there).
 * in/out: same shape and dtype, out may alias in (same data and row stride). Kept tokens are
 * copied through unchanged; scaled ones are computed in float32 (float64 rows in double) and
 * rounded once to the dtype. NaN / +inf logits give FD_ENAN / FD_EPOSINF (err->row, err->index).
 * --------------------------------------------------------------------------------------------- */

/* The draw index of XTC's coin in fd_uniform(seed, position, draw); fd_sample's pick uses 0. */
#define FD_DRAW_XTC UINT64_C(0x5854430000000000)

/* Scratch for the three row kernels below: four rows of 4-byte entries, 64-byte aligned (as
 * fd_dry's). */
size_t fd_adaptive_workspace(int64_t n_cols);
/* beta(H) of adaptive temperature: max(poly(H), 1) if H > 0.5 else 1. */
double fd_adaptive_beta(double h);
/* Velickovic et al. 2024: out = in * beta(H), H the entropy (nats) of softmax(in). A row whose
 * scaled maximum overflows the dtype becomes the one-hot of its first maximum (value kept, the
 * rest -inf). A row of all -inf gives FD_ENOFINITE. beta_out (may be NULL) receives beta. */
fd_status fd_adaptive_temperature(const fd_rows *in, const fd_rows *out, double *beta_out,
                                  void *ws, fd_errinfo *err);
/* llama.cpp temp-ext: temperature T >= 0, delta >= 0, exponent >= 0 (finite; else FD_EINVAL).
 * delta == 0: T' = T. delta > 0: N = finite logits; N <= 1 leaves the row as it is (temp_out NaN);
 * else T' = T_min + (T_max - T_min) r^exponent, r = H / ln N clamped to [0, 1], H the entropy
 * (nats) of softmax(in), T_min = max(0, T - delta), T_max = T + delta. out = in / T' (-inf stays
 * -inf); T' == 0 (or 0 in float32 for non-float64 rows) or a scaled maximum that overflows the
 * dtype: the one-hot of the first maximum. A row of all -inf is copied. temp_out (may be NULL)
 * receives T'. */
fd_status fd_dynamic_temperature(const fd_rows *in, const fd_rows *out, fd_param temperature,
                                 fd_param delta, fd_param exponent, double *temp_out, void *ws,
                                 fd_errinfo *err);
/* llama.cpp XTC: probability in [0, 1], threshold in [0, 1], min_keep >= 1 (else FD_EINVAL).
 * u = rng->uniform[r] (in [0, 1), else FD_EINVAL) or fd_uniform(seed, position, FD_DRAW_XTC).
 * Unchanged unless probability > 0, threshold <= 0.5, at least 2 finite logits and u <= p. Then
 * with P = {finite tokens with w >= threshold * Z} (w = float32 exp(z - max), Z their double sum):
 * if |P| >= 2 and N - (|P| - 1) >= min_keep, every token of P but the one with the smallest logit
 * (lowest id among equal) becomes filter_value (not NaN or +inf). */
fd_status fd_xtc(const fd_rows *in, const fd_rows *out, fd_param probability, fd_param threshold,
                 fd_param min_keep, const fd_rng_args *rng, double filter_value, void *ws,
                 fd_errinfo *err);
/* Scratch for fd_dry: logits of n_cols, histories of hist_cols, n_breakers breakers. */
size_t fd_dry_workspace(int64_t n_cols, int64_t hist_cols, int64_t n_breakers);
/* llama.cpp DRY, in place on x (penalty.c's conventions for ids, bounds and errors). Per row:
 * multiplier >= 0, base >= 1 (finite), allowed_length an integer in [0, 2^31), last_n an integer
 * >= -1 (-1: the whole history; 0 disables), else FD_EINVAL. Breaker b = flat[offsets[b] ..
 * offsets[b + 1]) (non-empty, offsets[0] == 0, else FD_ESHAPE; ids in [0, n_cols) else FD_ERANGE
 * with err->row = -1, err->index = position in flat, checked before any row). Algorithm and
 * arithmetic: adaptive.c's file comment (llama.cpp's four steps, exactly). */
fd_status fd_dry(const fd_rows *x, const fd_ids *ids, fd_param multiplier, fd_param base,
                 fd_param allowed_length, fd_param last_n, const int64_t *flat,
                 const int64_t *offsets, int64_t n_breakers, void *ws, fd_errinfo *err);

#ifdef __cplusplus
}
#endif
#endif
