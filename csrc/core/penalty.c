/*
 * penalty.c: in-place logit edits driven by token histories (repetition, presence/frequency,
 * no-repeat n-gram, bad words) and by id lists or masks (logit bias, suppress, bitmask).
 *
 * Cost model. A decode step has a vocabulary V of 10^4..10^5 and a history T that is usually far
 * shorter, so the history-driven kernels touch only the columns named in the history: O(T) per
 * row, never O(V). "Seen" flags and counts live in the caller's workspace (V int32); the
 * workspace is zeroed once per call (a memset, not an O(V) loop of work per row) and every row
 * clears exactly the entries it set, so each row starts from a clean table at O(T) cost. The
 * packed bitmask is the one O(V) kernel; it skips whole 32-token words that allow everything.
 *
 * No-repeat n-gram bans every token that completed an earlier occurrence of the history's last
 * n - 1 tokens. Finding those occurrences naively costs O(T * n) on repetitive histories (a run
 * of one token matches everywhere), so the suffix is searched with Knuth-Morris-Pratt: O(T + n),
 * failure table in the workspace (a naive scan is kept for the case n - 1 > V, where the
 * workspace is too small; such n are far beyond any practical setting).
 *
 * Arithmetic. Hugging Face and vLLM apply these edits in the tensor's dtype with the parameter
 * rounded to that dtype, so for float32/float16/bfloat16 rows a value is widened to float32, the
 * edit is done in float32 with the parameter rounded to float32, and fd_store rounds the result
 * back: repetition penalty is z < 0 ? z * (float)theta : z / (float)theta, bit-identical to
 * RepetitionPenaltyLogitsProcessor on float32; presence/frequency follow vLLM's two in-place
 * subtractions, z - (float)freq * count, then - (float)presence; a bias adds (float)value.
 * float64 rows do the same arithmetic in double. Banned tokens are set to filter_value.
 *
 * Validation happens for a row before anything of that row is written: parameters, history
 * bounds (FD_ESHAPE), then every history id (FD_ERANGE, err->index = the id's column in the ids
 * matrix). Shared id lists (bias, suppress, bad words) are checked before any row is written
 * (err->row = -1, err->index = position in the list). These kernels read only the columns they
 * edit, so they do not scan rows for NaN / +inf (that would make them O(V)); a NaN logit at an
 * edited column stays NaN and is rejected by the next kernel that loads the whole row.
 */
#include "internal.h"

#include <string.h>

static void set_err(fd_errinfo *err, int64_t row, int64_t index)
{
    if (err) {
        err->row = row;
        err->index = index;
    }
}

static fd_status check_rows(const fd_rows *x)
{
    if (!x || x->n_rows < 0 || x->n_cols < 0) {
        return FD_ESHAPE;
    }
    if (x->dtype != FD_F32 && x->dtype != FD_F64 && x->dtype != FD_F16 && x->dtype != FD_BF16) {
        return FD_EINVAL;
    }
    if (x->n_rows > 0 && x->n_cols > 0 && !x->data) {
        return FD_ESHAPE;
    }
    if (x->n_rows > 1 && x->row_stride < x->n_cols) {
        return FD_ESHAPE;
    }
    return FD_OK;
}

static fd_status check_ids_shape(const fd_rows *x, const fd_ids *ids)
{
    if (!ids || ids->n_rows != x->n_rows || ids->n_cols < 0) {
        return FD_ESHAPE;
    }
    if (ids->n_rows > 0 && ids->n_cols > 0 && !ids->data) {
        return FD_ESHAPE;
    }
    if (ids->n_rows > 1 && ids->row_stride < ids->n_cols) {
        return FD_ESHAPE;
    }
    return FD_OK;
}

/* The history of row r: [*h, *h + *len) after checking bounds and every id. */
static fd_status row_history(const fd_rows *x, const fd_ids *ids, int64_t r, const int64_t **h,
                             int64_t *len, fd_errinfo *err)
{
    int64_t b = ids->begin ? ids->begin[r] : 0;
    int64_t e = ids->end ? ids->end[r] : ids->n_cols;
    if (b < 0 || e < b || e > ids->n_cols) {
        set_err(err, r, -1);
        return FD_ESHAPE;
    }
    const int64_t *t = ids->data ? ids->data + r * ids->row_stride : NULL;
    for (int64_t j = b; j < e; j++) {
        if (t[j] < 0 || t[j] >= x->n_cols) {
            set_err(err, r, j);
            return FD_ERANGE;
        }
    }
    *h = t ? t + b : NULL;
    *len = e - b;
    return FD_OK;
}


static int bad_filter_value(double v)
{
    return v != v || v == INFINITY;
}

/* The common prologue of the history kernels: clears err, validates x and ids. */
static fd_status history_prologue(const fd_rows *x, const fd_ids *ids, fd_errinfo *err)
{
    set_err(err, -1, -1);
    fd_status st = check_rows(x);
    return st == FD_OK ? check_ids_shape(x, ids) : st;
}

size_t fd_penalty_workspace(int64_t n_cols)
{
    if (n_cols <= 0) {
        return 64;
    }
    return fdi_align64((size_t)n_cols * sizeof(int32_t));
}

fd_status fd_repetition_penalty(const fd_rows *x, const fd_ids *ids, fd_param penalty, void *ws,
                                fd_errinfo *err)
{
    fd_status st = history_prologue(x, ids, err);
    if (st != FD_OK || x->n_rows == 0) {
        return st;
    }
    unsigned char *seen = ws;
    memset(seen, 0, (size_t)x->n_cols);
    for (int64_t r = 0; r < x->n_rows; r++) {
        double theta = FD_PARAM_AT(penalty, r);
        if (!(theta > 0 && theta < INFINITY)) {
            set_err(err, r, -1);
            return FD_EINVAL;
        }
        const int64_t *t;
        int64_t len;
        st = row_history(x, ids, r, &t, &len, err);
        if (st != FD_OK) {
            return st;
        }
        float th = (float)theta;
        for (int64_t j = 0; j < len; j++) {
            int64_t c = t[j];
            if (seen[c]) {
                continue;
            }
            seen[c] = 1;
            if (x->dtype == FD_F64) {
                double z = fdi_load_elem(x, r, c);
                fd_store(x, r, c, z < 0 ? z * theta : z / theta);
            }
            else {
                float z = (float)fdi_load_elem(x, r, c);
                float v = z < 0 ? z * th : z / th;
                fd_store(x, r, c, v);
            }
        }
        for (int64_t j = 0; j < len; j++) {
            seen[t[j]] = 0;
        }
    }
    return FD_OK;
}

fd_status fd_presence_frequency(const fd_rows *x, const fd_ids *ids, fd_param presence,
                                fd_param frequency, void *ws, fd_errinfo *err)
{
    fd_status st = history_prologue(x, ids, err);
    if (st != FD_OK || x->n_rows == 0) {
        return st;
    }
    int32_t *count = ws;
    memset(count, 0, (size_t)x->n_cols * sizeof *count);
    for (int64_t r = 0; r < x->n_rows; r++) {
        double pres = FD_PARAM_AT(presence, r);
        double freq = FD_PARAM_AT(frequency, r);
        if (!isfinite(pres) || !isfinite(freq)) {
            set_err(err, r, -1);
            return FD_EINVAL;
        }
        const int64_t *t;
        int64_t len;
        st = row_history(x, ids, r, &t, &len, err);
        if (st != FD_OK) {
            return st;
        }
        for (int64_t j = 0; j < len; j++) {
            count[t[j]]++;
        }
        /* each distinct id is edited at its first occurrence; zeroing its count there both
         * skips its later occurrences and leaves the table clean for the next row */
        float pf = (float)pres, ff = (float)freq;
        for (int64_t j = 0; j < len; j++) {
            int64_t c = t[j];
            int32_t n = count[c];
            if (n == 0) {
                continue;
            }
            count[c] = 0;
            if (x->dtype == FD_F64) {
                double z = fdi_load_elem(x, r, c);
                z -= freq * (double)n;
                z -= pres;
                fd_store(x, r, c, z);
            }
            else {
                float z = (float)fdi_load_elem(x, r, c);
                float fc = ff * (float)n;
                z -= fc;
                z -= pf;
                fd_store(x, r, c, z);
            }
        }
    }
    return FD_OK;
}

/* Knuth-Morris-Pratt failure table of p[0..m): fail[i] = length of the longest proper border of
 * p[0..i]. */
static void kmp_table(const int64_t *p, int64_t m, int32_t *fail)
{
    fail[0] = 0;
    int64_t k = 0;
    for (int64_t i = 1; i < m; i++) {
        while (k > 0 && p[i] != p[k]) {
            k = fail[k - 1];
        }
        if (p[i] == p[k]) {
            k++;
        }
        fail[i] = (int32_t)k;
    }
}

fd_status fd_no_repeat_ngram(const fd_rows *x, const fd_ids *ids, int64_t n, double filter_value,
                             void *ws, fd_errinfo *err)
{
    set_err(err, -1, -1);
    fd_status st = check_rows(x);
    if (st == FD_OK) {
        st = check_ids_shape(x, ids);
    }
    if (st != FD_OK) {
        return st;
    }
    if (n < 1 || bad_filter_value(filter_value)) {
        return FD_EINVAL;
    }
    int32_t *fail = ws;
    for (int64_t r = 0; r < x->n_rows; r++) {
        const int64_t *t;
        int64_t len;
        st = row_history(x, ids, r, &t, &len, err);
        if (st != FD_OK) {
            return st;
        }
        if (len < n) {
            continue;
        }
        int64_t m = n - 1;                   /* prefix length */
        const int64_t *suffix = t + len - m; /* the history's last n - 1 tokens */
        if (m == 0) {
            for (int64_t i = 0; i < len; i++) {
                fd_store(x, r, t[i], filter_value);
            }
        }
        else if (m <= x->n_cols && m < INT32_MAX) {
            /* occurrences of suffix in t[0 .. len - 1): a match ending at i bans t[i + 1] */
            kmp_table(suffix, m, fail);
            int64_t k = 0;
            for (int64_t i = 0; i < len - 1; i++) {
                while (k > 0 && t[i] != suffix[k]) {
                    k = fail[k - 1];
                }
                if (t[i] == suffix[k]) {
                    k++;
                }
                if (k == m) {
                    fd_store(x, r, t[i + 1], filter_value);
                    k = fail[k - 1];
                }
            }
        }
        else {
            for (int64_t i = 0; i + n <= len; i++) {
                int64_t q = 0;
                while (q < m && t[i + q] == suffix[q]) {
                    q++;
                }
                if (q == m) {
                    fd_store(x, r, t[i + m], filter_value);
                }
            }
        }
    }
    return FD_OK;
}

fd_status fd_logit_bias(const fd_rows *x, const int64_t *ids, int64_t n_ids, const double *values,
                        int64_t values_row_stride, fd_errinfo *err)
{
    set_err(err, -1, -1);
    fd_status st = check_rows(x);
    if (st != FD_OK) {
        return st;
    }
    if (n_ids < 0 || values_row_stride < 0 || (n_ids > 0 && (!ids || !values))) {
        return FD_ESHAPE;
    }
    for (int64_t j = 0; j < n_ids; j++) {
        if (ids[j] < 0 || ids[j] >= x->n_cols) {
            set_err(err, -1, j);
            return FD_ERANGE;
        }
    }
    for (int64_t r = 0; r < x->n_rows; r++) {
        const double *v = values + r * values_row_stride;
        for (int64_t j = 0; j < n_ids; j++) {
            if (bad_filter_value(v[j])) {
                set_err(err, r, j);
                return FD_EINVAL;
            }
        }
        for (int64_t j = 0; j < n_ids; j++) {
            int64_t c = ids[j];
            if (x->dtype == FD_F64) {
                fd_store(x, r, c, fdi_load_elem(x, r, c) + v[j]);
            }
            else {
                float z = (float)fdi_load_elem(x, r, c);
                z += (float)v[j];
                fd_store(x, r, c, z);
            }
        }
    }
    return FD_OK;
}

fd_status fd_suppress_tokens(const fd_rows *x, const int64_t *ids, int64_t n_ids,
                             double filter_value, fd_errinfo *err)
{
    set_err(err, -1, -1);
    fd_status st = check_rows(x);
    if (st != FD_OK) {
        return st;
    }
    if (n_ids < 0 || (n_ids > 0 && !ids)) {
        return FD_ESHAPE;
    }
    if (bad_filter_value(filter_value)) {
        return FD_EINVAL;
    }
    for (int64_t j = 0; j < n_ids; j++) {
        if (ids[j] < 0 || ids[j] >= x->n_cols) {
            set_err(err, -1, j);
            return FD_ERANGE;
        }
    }
    for (int64_t r = 0; r < x->n_rows; r++) {
        for (int64_t j = 0; j < n_ids; j++) {
            fd_store(x, r, ids[j], filter_value);
        }
    }
    return FD_OK;
}

fd_status fd_apply_bitmask(const fd_rows *x, const int32_t *words, int64_t n_words,
                           int64_t row_stride, double filter_value, fd_errinfo *err)
{
    set_err(err, -1, -1);
    fd_status st = check_rows(x);
    if (st != FD_OK) {
        return st;
    }
    int64_t need = (x->n_cols + 31) / 32;
    if (n_words < need || row_stride < 0 || (need > 0 && !words)) {
        return FD_ESHAPE;
    }
    if (bad_filter_value(filter_value)) {
        return FD_EINVAL;
    }
    for (int64_t r = 0; r < x->n_rows; r++) {
        const int32_t *w = words + r * row_stride;
        for (int64_t k = 0; k < need; k++) {
            uint32_t bits = (uint32_t)w[k];
            if (bits == 0xffffffffu) {
                continue;
            }
            int64_t c0 = k * 32;
            int64_t c1 = c0 + 32 < x->n_cols ? c0 + 32 : x->n_cols;
            for (int64_t c = c0; c < c1; c++) {
                if (!((bits >> (c - c0)) & 1u)) {
                    fd_store(x, r, c, filter_value);
                }
            }
        }
    }
    return FD_OK;
}

fd_status fd_bad_words(const fd_rows *x, const fd_ids *ids, const int64_t *flat,
                       const int64_t *offsets, int64_t n_words, double filter_value,
                       fd_errinfo *err)
{
    set_err(err, -1, -1);
    fd_status st = check_rows(x);
    if (st == FD_OK) {
        st = check_ids_shape(x, ids);
    }
    if (st != FD_OK) {
        return st;
    }
    if (n_words < 0 || (n_words > 0 && (!offsets || !flat))) {
        return FD_ESHAPE;
    }
    if (bad_filter_value(filter_value)) {
        return FD_EINVAL;
    }
    if (n_words > 0 && offsets[0] < 0) {
        set_err(err, -1, 0);
        return FD_ESHAPE;
    }
    for (int64_t w = 0; w < n_words; w++) {
        if (offsets[w + 1] <= offsets[w]) { /* every word has length >= 1 */
            set_err(err, -1, w);
            return FD_ESHAPE;
        }
        for (int64_t q = offsets[w]; q < offsets[w + 1]; q++) {
            if (flat[q] < 0 || flat[q] >= x->n_cols) {
                set_err(err, -1, q);
                return FD_ERANGE;
            }
        }
    }
    for (int64_t r = 0; r < x->n_rows; r++) {
        const int64_t *t;
        int64_t len;
        st = row_history(x, ids, r, &t, &len, err);
        if (st != FD_OK) {
            return st;
        }
        for (int64_t w = 0; w < n_words; w++) {
            const int64_t *word = flat + offsets[w];
            int64_t m = offsets[w + 1] - offsets[w];
            if (m - 1 > len) {
                continue;
            }
            const int64_t *tail = t ? t + len - (m - 1) : NULL;
            int64_t q = 0;
            while (q < m - 1 && tail[q] == word[q]) {
                q++;
            }
            if (q == m - 1) {
                fd_store(x, r, word[m - 1], filter_value);
            }
        }
    }
    return FD_OK;
}
