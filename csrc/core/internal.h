/*
 * Internal helpers shared by the core's translation units (not part of the public API).
 *
 * Candidate lists: the fused sampler and the dense filters work on a list of n (value, id) pairs,
 * ids strictly increasing. Each fdi_* filter compacts the list in place, stably (kept pairs keep
 * their relative order), and returns the new length. Values are float32 and may be -inf (weight 0);
 * never NaN or +inf (fd_load_row rejects those). Filters never sort the whole list: thresholds are
 * found by radix selection over the float bit patterns (select.c).
 *
 * Every fdi_* filter needs at most fdi_workspace(n) bytes of scratch, 64-byte aligned by the caller.
 */
#ifndef FASTDECODE_INTERNAL_H
#define FASTDECODE_INTERNAL_H

#include "fastdecode/fd.h"

#include <math.h>
#include <stdint.h>

size_t fdi_workspace(int64_t n);

/* Max of v[0..n) (-inf if n == 0 or all -inf). */
float fdi_max(const float *v, int64_t n);
/* sum exp(v - max) in double; -inf entries add 0. */
double fdi_sum_exp(const float *v, int64_t n, float max);

/* Filters (semantics: fd.h, filter.c section). min_keep >= 1. */
int64_t fdi_top_k(float *v, int32_t *id, int64_t n, int64_t k, void *ws);
int64_t fdi_top_p(float *v, int32_t *id, int64_t n, double p, int64_t min_keep, void *ws);
int64_t fdi_min_p(float *v, int32_t *id, int64_t n, double p, int64_t min_keep, void *ws);
int64_t fdi_typical(float *v, int32_t *id, int64_t n, double mass, int64_t min_keep, void *ws);
int64_t fdi_epsilon(float *v, int32_t *id, int64_t n, double eps, int64_t min_keep, void *ws);
int64_t fdi_eta(float *v, int32_t *id, int64_t n, double eps, int64_t min_keep, void *ws);
int64_t fdi_top_n_sigma(float *v, int32_t *id, int64_t n, double nsig, void *ws);

static inline size_t fdi_align64(size_t n) { return (n + 63) & ~(size_t)63; }

#endif
