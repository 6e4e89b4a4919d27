"""Leak loops: every entry point of fastdecode._kernels, called 10^5 times, leaks nothing.

The cases are public-API calls and, for the paths the Python layer never lets through (wrong
dtypes, shapes, layouts, argument counts, unknown kinds) and for ``uniform`` (no public function
calls it), direct calls of the binding. Each public-API case is run once with ``ops._k`` replaced
by a recorder that captures the exact binding calls it makes. Then

* ``test_binding_entry_point_does_not_leak[entry]``: ``N_CALLS`` (10^5) calls of one entry point,
  cycling through every call of it the cases make — returning ones and raising ones (NaN / +inf /
  all ``-inf`` logits, parameters out of their domain, out-of-range ids, bad dtypes and shapes);
  on a failure each case is re-run alone so that the message names the culprit;
* ``test_api_does_not_leak[case]``: ``N_API`` (5 * 10^3) calls of each public-API case, including
  ones the Python layer rejects.

Every loop checks

* refcounts: ``sys.getrefcount`` of every argument array, parameter array, ``out`` array and
  helper object is the same after the loop as before it (a reference leaked per call shows as a
  growth of the loop count); so are those of the result and exception types; ``None``/``True``/
  ``False`` move by less than a tenth of the loop count (other code touches them too). A fresh
  result (beam_step's tuple and its arrays, uniform's array) and a fresh exception hold exactly
  the references their caller holds;
* tracemalloc: the traced total (Python objects, NumPy buffers and the binding's
  ``PyMem_RawMalloc`` workspaces are all traced) grows by less than ``_traced_slack`` between the
  end of the second tenth of the loop (warm-up: caches and free lists fill up) and the end;
* RSS (``/proc/self/statm``): grows by less than ``RSS_SLACK`` (2 MiB) over the same span — this
  also catches a plain ``malloc`` leak in the core, which tracemalloc does not see.

Under an ASan/UBSan build (``ASAN_OPTIONS`` set, or libasan mapped into the process) everything
is 3-10x slower and RSS measures the sanitizer's shadow memory and quarantine, not ours: the loops
run ``N_ASAN`` (10^3) calls per entry point and the RSS assertions are dropped — each loop prints
so, and ``test_rss_check_active`` is reported as skipped with the reason. Refcount and tracemalloc
checks still apply. ``FASTDECODE_LEAK_CALLS`` overrides the per-entry-point count.
"""

from __future__ import annotations

import functools
import gc
import os
import sys
import tracemalloc

import numpy as np
import pytest

import fastdecode as fd
from fastdecode import _kernels as K
from fastdecode import ops


def _under_asan() -> str | None:
    """Why RSS is meaningless in this process, or None."""
    if os.environ.get("ASAN_OPTIONS") is not None:
        return "ASAN_OPTIONS is set (sanitizer build)"
    try:
        with open("/proc/self/maps") as f:
            if "libasan" in f.read():
                return "libasan is loaded into the process"
    except OSError:
        pass
    return None


ASAN = _under_asan()
N_FULL, N_ASAN = 100_000, 1_000
# calls of each binding entry point (spread over all of its cases, returning and raising)
N_CALLS = int(os.environ.get("FASTDECODE_LEAK_CALLS", N_ASAN if ASAN else N_FULL))
# calls of each public-API case (Python-level work costs 5-300 us a call under tracemalloc)
N_API = max(N_CALLS // 20, 200)
RSS_SLACK = 2 << 20


def _traced_slack(measured_calls: int) -> int:
    """Allowed traced growth: 4 bytes a measured call, within [32 KiB, 64 KiB]. The smallest
    leak possible (a 16-byte allocator block, a 24-byte float) is several times that
    over the full loops; the floor is twice the largest growth seen without a leak (~8 KiB,
    NumPy's small-buffer cache and free lists filling up)."""
    return min(64 << 10, max(32 << 10, 4 * measured_calls))


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


# --------------------------------------------------------------------------------------------
# inputs (small: (2, 64), so 10^5 calls stay fast)

B, V = 2, 64
_rng = np.random.default_rng(0)
X = _rng.normal(size=(B, V)).astype(np.float32)
X64 = X.astype(np.float64)
X16 = X.astype(np.float16)
XBF = (X.view(np.uint32) >> 16).astype(np.uint16)  # bfloat16 bits
X4 = _rng.normal(size=(4, V)).astype(np.float32)
XNAN = X.copy()
XNAN[1, 7] = np.nan
XPINF = X.copy()
XPINF[1, 9] = np.inf
XNEG = X.copy()
XNEG[1] = -np.inf
X4NAN = X4.copy()
X4NAN[2, 3] = np.nan
XI32 = X.astype(np.int32)
X3 = X[None]
XRO = X.copy()
XRO.flags.writeable = False
XSWAP = X.astype(X.dtype.newbyteorder())
XSTRIDE = np.repeat(X, 2, axis=1)[:, ::2]
_buf = np.zeros(X.nbytes + 1, np.uint8)
XMISAL = _buf[1:].view(np.float32).reshape(B, V)  # misaligned
assert not XMISAL.flags.aligned

OUT = np.empty_like(X)
OUT64 = np.empty_like(X64)
OUT16 = np.empty_like(X16)
OUT_SHORT = np.empty((B, V - 1), np.float32)
OUT_RO = np.empty_like(X)
OUT_RO.flags.writeable = False
IDS = _rng.integers(0, V, (B, 8))
IDS_HI = IDS.copy()
IDS_HI[1, 5] = V
IDS_F = IDS.astype(np.float64)
K_ROWS = np.array([3, 7])
P_ROWS = np.array([0.5, 0.9])
T_ROWS = np.array([0.7, 1.3])
SEEDS = np.array([11, 12], dtype=np.uint64)
POS = np.array([5, 6], dtype=np.int64)
U = np.array([0.25, 0.75])
U_BAD = np.array([0.25, 1.5])
BIAS_IDS = np.array([3, 9, 60])
BIAS_VALS = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
MASK = fd.pack_bitmask([1, 2, 3, 40, 63], V)
MASK_ROWS = fd.pack_bitmask([[1, 2], [5, 60]], V)
MASK64 = MASK.astype(np.int64)
SCORES = np.array([0.0, -1.0, -0.5, -2.0], dtype=np.float32)
SCORES_NAN = np.array([0.0, np.nan, 0.0, 0.0], dtype=np.float32)
SAMPLER = fd.Sampler(temperature=0.8, top_p=0.9, repetition_penalty=1.1,
                     presence_penalty=0.2, no_repeat_ngram_size=2, seed=0)
SAMPLER_ADAPTIVE = fd.Sampler(temperature=0.8, top_k=20, dynatemp_range=0.5, xtc_probability=0.5,
                              xtc_threshold=0.05, dry_multiplier=0.8, seed=0)


class _BadBool:
    def __bool__(self):
        raise RuntimeError("no truth value")


BADBOOL = _BadBool()

# every non-shared object a case may hand to fastdecode: their refcounts must not move
_WATCH = {name: obj for name, obj in list(globals().items())
          if isinstance(obj, (np.ndarray, fd.Sampler, _BadBool))}
_TYPES = (np.ndarray, tuple, ValueError, TypeError, OverflowError, RuntimeError)

# --------------------------------------------------------------------------------------------
# public-API cases: (id, call, expected exception or None)

API = [
    ("top_k", lambda: fd.top_k(X, 5), None),
    ("top_k_rows_out", lambda: fd.top_k(X, K_ROWS, out=OUT), None),
    ("top_p", lambda: fd.top_p(X, P_ROWS, min_tokens_to_keep=2), None),
    ("min_p_f64", lambda: fd.min_p(X64, 0.1, out=OUT64), None),
    ("typical_p_f16", lambda: fd.typical_p(X16, 0.9), None),
    ("epsilon_cutoff", lambda: fd.epsilon_cutoff(X, 1e-3, out=OUT), None),
    ("eta_cutoff_bf16", lambda: fd.eta_cutoff(XBF, 1e-3, dtype="bfloat16"), None),
    ("top_n_sigma", lambda: fd.top_n_sigma(X, 1.0), None),
    ("softmax", lambda: fd.softmax(X, temperature=T_ROWS, out=OUT), None),
    ("softmax_1d", lambda: fd.softmax(X[0]), None),
    ("log_softmax_f64", lambda: fd.log_softmax(X64, temperature=0.5), None),
    ("entropy", lambda: fd.entropy(X), None),
    ("varentropy_f16", lambda: fd.varentropy(X16), None),
    ("argmax", lambda: fd.argmax(X), None),
    ("sample", lambda: fd.sample(X, seed=SEEDS, position=3), None),
    ("sample_logprobs", lambda: fd.sample(X, top_k=10, top_p=0.9, seed=1, position=POS,
                                          return_logprobs=True), None),
    ("sample_uniforms", lambda: fd.sample(X, min_p=0.05, uniforms=U, return_logprobs=True), None),
    ("sample_uniforms_no_logprobs", lambda: fd.sample(X64, typical_p=0.8, uniforms=U), None),
    ("sample_llama", lambda: fd.sample(X, temperature=0.7, epsilon_cutoff=1e-4, eta_cutoff=1e-4,
                                       top_n_sigma=1.5, order="llama.cpp", seed=2), None),
    ("sample_greedy", lambda: fd.sample(X, temperature=0.0, seed=1), None),
    ("repetition_penalty", lambda: fd.repetition_penalty(X, IDS, 1.3, out=OUT), None),
    ("repetition_penalty_bounds", lambda: fd.repetition_penalty(
        X, IDS, 1.3, lengths=[6, 8], prompt_ignore_length=1, last_n=4), None),
    ("presence_frequency", lambda: fd.presence_frequency_penalty(X, IDS, presence=0.5,
                                                                 frequency=0.2), None),
    ("no_repeat_ngram", lambda: fd.no_repeat_ngram(X, IDS, 2, out=OUT), None),
    ("logit_bias", lambda: fd.logit_bias(X, {3: 2.0, 7: -1.0}), None),
    ("logit_bias_rows", lambda: fd.logit_bias(X, (BIAS_IDS, BIAS_VALS), out=OUT), None),
    ("suppress_tokens", lambda: fd.suppress_tokens(X, [0, 5]), None),
    ("allowed_tokens", lambda: fd.allowed_tokens(X, [1, 2, 3]), None),
    ("allowed_tokens_bitmask", lambda: fd.allowed_tokens_bitmask(X, MASK_ROWS, out=OUT), None),
    ("bad_words", lambda: fd.bad_words(X, IDS, [[5], [int(IDS[0, -1]), 9]], out=OUT), None),
    ("beam_step", lambda: fd.beam_step(X4, SCORES, 4, group_size=2), None),
    ("beam_step_raw", lambda: fd.beam_step(X4, SCORES, 3, normalize=False), None),
    ("Sampler", lambda: SAMPLER(X, IDS), None),
    # raised by the C binding / core
    ("top_p_nan", lambda: fd.top_p(XNAN, 0.9), ValueError),
    ("top_k_nan_in_place", lambda: fd.top_k(XNAN, 3, out=XNAN), ValueError),
    ("softmax_posinf", lambda: fd.softmax(XPINF), ValueError),
    ("log_softmax_neg_row", lambda: fd.log_softmax(XNEG), ValueError),
    ("entropy_nan", lambda: fd.entropy(XNAN), ValueError),
    ("varentropy_neg_row", lambda: fd.varentropy(XNEG), ValueError),
    ("argmax_nan", lambda: fd.argmax(XNAN), ValueError),
    ("sample_nan", lambda: fd.sample(XNAN, seed=1, return_logprobs=True), ValueError),
    ("sample_neg_row", lambda: fd.sample(XNEG, uniforms=U), ValueError),
    ("beam_step_nan", lambda: fd.beam_step(X4NAN, SCORES, 2, group_size=2), ValueError),
    ("suppress_id_hi", lambda: fd.suppress_tokens(X, [3, V]), ValueError),
    ("logit_bias_id_hi", lambda: fd.logit_bias(X, {V: 1.0}), ValueError),
    ("bad_words_id_hi", lambda: fd.bad_words(X, IDS, [[1, V]]), ValueError),
    ("Sampler_nan", lambda: SAMPLER(XNAN, IDS), ValueError),
    # raised by the Python layer before the binding is reached
    ("top_p_bad_param", lambda: fd.top_p(X, 1.5), ValueError),
    ("top_k_neg", lambda: fd.top_k(X, -1), ValueError),
    ("temperature_neg", lambda: fd.softmax(X, temperature=-1.0), ValueError),
    ("int_logits", lambda: fd.top_k(XI32, 2), TypeError),
    ("ndim3", lambda: fd.sample(X3, seed=1), ValueError),
    ("out_dtype", lambda: fd.top_k(X, 2, out=OUT64), TypeError),
    ("out_shape", lambda: fd.softmax(X, out=OUT_SHORT), ValueError),
    ("out_readonly", lambda: fd.min_p(X, 0.1, out=OUT_RO), ValueError),
    ("ids_hi", lambda: fd.repetition_penalty(X, IDS_HI, 1.2), ValueError),
    ("ids_float", lambda: fd.no_repeat_ngram(X, IDS_F, 2), TypeError),
    ("seed_neg", lambda: fd.sample(X, seed=-1), ValueError),
    ("uniforms_bad", lambda: fd.sample(X, uniforms=U_BAD), ValueError),
    ("bitmask_dtype", lambda: fd.allowed_tokens_bitmask(X, MASK64), TypeError),
    ("allowed_id_hi", lambda: fd.allowed_tokens(X, [V]), ValueError),
    ("beam_k", lambda: fd.beam_step(X4, SCORES, 0), ValueError),
    ("beam_scores_nan", lambda: fd.beam_step(X4, SCORES_NAN, 2), ValueError),
]

# --------------------------------------------------------------------------------------------
# direct binding cases: error paths the Python layer never lets through, and uniform (which no
# public function calls). (id, entry point, args, expected exception or None)

_F, _P, _MK, _NI = K.TOP_K, np.array([5.0]), np.array([1.0]), -np.inf
_T1 = np.array([1.0])
_Z, _ONE = np.array([0.0]), np.array([1.0])
_TOK = np.empty(B, np.int64)
_TOK_RO = np.empty(B, np.int64)
_TOK_RO.flags.writeable = False
_TOK32 = np.empty(B, np.int32)
_LP = np.empty(B, np.float64)
_H = np.empty(B, np.float64)
_H_SHORT = np.empty(B - 1, np.float64)
_SEEDS_I64 = np.array([1, 2], np.int64)
_POS3 = np.array([1, 2, 3], np.int64)
_IDS1 = np.array([3, 5], np.int64)
_IDS1_HI = np.array([3, V], np.int64)
_IDS1_F = np.array([3.0, 5.0])
_VALS1 = np.array([1.0, 2.0])
_VALS_BAD = np.array([[1.0, 2.0, 3.0]])
_FLAT = np.array([5, 7, 9], np.int64)
_FLAT_HI = np.array([5, V], np.int64)
_OFF = np.array([0, 1, 3], np.int64)
_OFF_BAD = np.array([0, 2, 2], np.int64)
_OFF_EMPTY = np.array([0, 0, 3], np.int64)
_OFF1 = np.array([0, 2], np.int64)
_BEGIN3 = np.array([0, 0, 0], np.int64)
_MASK2 = MASK.reshape(1, -1)
_MASK_SHORT = np.ones((1, 1), np.int32)
_SC64 = SCORES.astype(np.float64)
_SEEDS_U = np.arange(5, dtype=np.uint64)
_POS_U = np.arange(5, dtype=np.int64)
_WATCH.update({n: o for n, o in list(globals().items()) if isinstance(o, np.ndarray)})


def _sample_args(**kw):
    a = dict(x=X, t=_T1, k=_Z, p=_ONE, mp=_Z, ty=_ONE, eps=_Z, eta=_Z, sig=_Z, order=0,
             seeds=SEEDS, pos=POS, u=None, tok=_TOK, lp=_LP, nt=1)
    a.update(kw)
    return tuple(a.values())


DIRECT = [
    ("uniform", "uniform", (_SEEDS_U, _POS_U, 3), None),
    ("uniform_seed_dtype", "uniform", (_SEEDS_I64, POS, 0), TypeError),
    ("uniform_position_len", "uniform", (SEEDS, _POS3, 0), ValueError),
    ("uniform_draw_neg", "uniform", (SEEDS, POS, -1), OverflowError),
    ("uniform_nargs", "uniform", (SEEDS, POS), TypeError),
    ("filter_nargs", "filter", (_F, X, OUT, _P, _MK, _NI), TypeError),
    ("filter_kind", "filter", (99, X, OUT, _P, _MK, _NI, 1), ValueError),
    ("filter_kind_float", "filter", (1.5, X, OUT, _P, _MK, _NI, 1), TypeError),
    ("filter_list_logits", "filter", (_F, [[1.0]], OUT, _P, _MK, _NI, 1), TypeError),
    ("filter_int32", "filter", (_F, XI32, OUT, _P, _MK, _NI, 1), TypeError),
    ("filter_3d", "filter", (_F, X3, OUT, _P, _MK, _NI, 1), ValueError),
    ("filter_byteswapped", "filter", (_F, XSWAP, OUT, _P, _MK, _NI, 1), ValueError),
    ("filter_misaligned", "filter", (_F, XMISAL, OUT, _P, _MK, _NI, 1), ValueError),
    ("filter_strided", "filter", (_F, XSTRIDE, OUT, _P, _MK, _NI, 1), ValueError),
    ("filter_out_readonly", "filter", (_F, X, OUT_RO, _P, _MK, _NI, 1), ValueError),
    ("filter_out_shape", "filter", (_F, X, OUT_SHORT, _P, _MK, _NI, 1), ValueError),
    ("filter_out_dtype", "filter", (_F, X, OUT64, _P, _MK, _NI, 1), TypeError),
    ("filter_param_len", "filter", (_F, X, OUT, _POS3.astype(float), _MK, _NI, 1), ValueError),
    ("filter_param_dtype", "filter", (_F, X, OUT, K_ROWS, _MK, _NI, 1), TypeError),
    ("filter_value_str", "filter", (_F, X, OUT, _P, _MK, "x", 1), TypeError),
    ("filter_threads_float", "filter", (_F, X, OUT, _P, _MK, _NI, 1.5), TypeError),
    ("filter_domain", "filter", (K.TOP_P, X, OUT, np.array([2.0]), _MK, _NI, 1), ValueError),
    ("filter_nan_in_place", "filter", (_F, XNAN, XNAN, _P, _MK, _NI, 1), ValueError),
    ("softmax_nargs", "softmax", (X, OUT, _T1, False), TypeError),
    ("softmax_log_raises", "softmax", (X, OUT, _T1, BADBOOL, 1), RuntimeError),
    ("softmax_out_f16", "softmax", (X16, OUT16, _T1, False, 1), TypeError),
    ("softmax_temperature_neg", "softmax", (X, OUT, np.array([-1.0]), False, 1), ValueError),
    ("softmax_readonly_logits_ok", "softmax", (XRO, OUT, _T1, True, 1), None),
    ("entropy_out_len", "entropy", (X, _H_SHORT, None, 1), ValueError),
    ("entropy_out_dtype", "entropy", (X, None, _TOK, 1), TypeError),
    ("entropy_nan", "entropy", (XNAN, _H, _LP, 1), ValueError),
    ("argmax_out_dtype", "argmax", (X, _TOK32, 1), TypeError),
    ("argmax_out_readonly", "argmax", (X, _TOK_RO, 1), ValueError),
    ("argmax_neg_row", "argmax", (XNEG, _TOK, 1), ValueError),
    ("sample_nargs", "sample", _sample_args()[:-1], TypeError),
    ("sample_order", "sample", _sample_args(order=5), ValueError),
    ("sample_seed_dtype", "sample", _sample_args(seeds=_SEEDS_I64), TypeError),
    ("sample_position_len", "sample", _sample_args(pos=_POS3), ValueError),
    ("sample_uniform_range", "sample", _sample_args(u=U_BAD), ValueError),
    ("sample_out_readonly", "sample", _sample_args(tok=_TOK_RO), ValueError),
    ("sample_logprobs_dtype", "sample", _sample_args(lp=_TOK), TypeError),
    ("sample_top_p_domain", "sample", _sample_args(p=np.array([2.0])), ValueError),
    ("history_kind", "history_penalty", (5, OUT, IDS, None, None, _P, None), ValueError),
    ("history_kind_str", "history_penalty", ("a", OUT, IDS, None, None, _P, None), TypeError),
    ("history_readonly", "history_penalty", (0, XRO, IDS, None, None, _P, None), ValueError),
    ("history_ids_float", "history_penalty", (0, OUT, IDS_F, None, None, _P, None), TypeError),
    ("history_ids_rows", "history_penalty", (0, OUT, IDS[:1], None, None, _P, None), ValueError),
    ("history_ids_hi", "history_penalty", (0, OUT, IDS_HI, None, None, _P, None), ValueError),
    ("history_begin_len", "history_penalty", (1, OUT, IDS, _BEGIN3, None, _P, _P), ValueError),
    ("history_penalty_zero", "history_penalty", (0, OUT, IDS, None, None, _Z, None), ValueError),
    ("history_ngram_float", "history_penalty", (2, OUT, IDS, None, None, 2.5, _NI), TypeError),
    ("history_ngram_fv_str", "history_penalty", (2, OUT, IDS, None, None, 2, "x"), TypeError),
    ("logit_bias_values_shape", "logit_bias", (OUT, _IDS1, _VALS_BAD), ValueError),
    ("logit_bias_ids_float", "logit_bias", (OUT, _IDS1_F, _VALS1), TypeError),
    ("logit_bias_id_hi", "logit_bias", (OUT, _IDS1_HI, _VALS1), ValueError),
    ("suppress_ids_float", "suppress_tokens", (OUT, _IDS1_F, _NI), TypeError),
    ("suppress_id_hi", "suppress_tokens", (OUT, _IDS1_HI, _NI), ValueError),
    ("suppress_fv_nan", "suppress_tokens", (OUT, _IDS1, float("nan")), ValueError),
    ("bitmask_short", "apply_bitmask", (OUT, _MASK_SHORT, _NI, 1), ValueError),
    ("bitmask_dtype", "apply_bitmask", (OUT, MASK64.reshape(1, -1), _NI, 1), ValueError),
    ("bitmask_threads_str", "apply_bitmask", (OUT, _MASK2, _NI, "1"), TypeError),
    ("bad_words_offsets", "bad_words", (OUT, IDS, None, None, _FLAT, _OFF_BAD, _NI), ValueError),
    ("bad_words_empty", "bad_words", (OUT, IDS, None, None, _FLAT, _OFF_EMPTY, _NI), ValueError),
    ("bad_words_flat_hi", "bad_words", (OUT, IDS, None, None, _FLAT_HI, _OFF1, _NI), ValueError),
    ("bad_words_ids_hi", "bad_words", (OUT, IDS_HI, None, None, _FLAT, _OFF, _NI), ValueError),
    ("beam_k_zero", "beam_step", (X4, SCORES, 0, 4, True, 1), ValueError),
    ("beam_group", "beam_step", (X4, SCORES, 2, 3, True, 1), ValueError),
    ("beam_scores_nan", "beam_step", (X4, SCORES_NAN, 2, 4, True, 1), ValueError),
    ("beam_scores_dtype", "beam_step", (X4, _SC64, 2, 4, True, 1), TypeError),
    ("beam_normalize_raises", "beam_step", (X4, SCORES, 2, 4, BADBOOL, 1), RuntimeError),
    ("beam_nan", "beam_step", (X4NAN, SCORES, 2, 2, True, 1), ValueError),
    # the benchmark suite's hidden floor kernel
    ("floor_read", "_floor", (X, 0, _H, 1), None),
    ("floor_exp_sum_f16", "_floor", (X16, 1, _H, 2), None),
    ("floor_kind", "_floor", (X, 2, _H, 1), ValueError),
    ("floor_nan", "_floor", (XNAN, 1, _H, 1), ValueError),
    ("floor_out_len", "_floor", (X, 0, _H_SHORT, 1), ValueError),
]

# stateful samplers (fastdecode.adaptive): mirostat and entropix
MU = np.array([6.0, 8.0])  # updated in place by every call, as a decoding loop would
LAST = np.array([3, 5], np.int64)
_MU_RO = np.array([6.0, 8.0])
_MU_RO.flags.writeable = False
_EPX = np.array([0.666, 27, 0.9, 0.0, 0.1, 0.1, 3.0, 5.0, 5.0, 5.0, 5.0, 1.3, 1.5, 1.2, 1.5, 1.5,
                 5, 2.0, 2.0, 0.0, 0.5, 0.3, 0.03, 0.5, 5, 3])
_EPX_BAD = _EPX.copy()
_EPX_BAD[2] = 2.0  # top_p
_LAST_F = np.array([3.0, 5.0])
_BR = np.empty(B, np.int64)
_MU_W = np.array([6.0, 8.0])
_KEPT = np.empty(B, np.int64)
_WATCH.update({n: o for n, o in list(globals().items()) if isinstance(o, np.ndarray)})


def _mirostat_args(**kw):
    a = dict(x=X, tau=np.array([3.0]), eta=np.array([0.1]), t=_T1, version=2, m=100, seeds=SEEDS,
             pos=POS, u=None, mu=_MU_W, tok=_TOK, lp=_LP, kept=None, nt=1)
    a.update(kw)
    return tuple(a.values())


def _entropix_args(**kw):
    a = dict(x=X, params=_EPX, last=LAST, seeds=SEEDS, pos=POS, tok=_TOK, br=_BR, h=_H, v=None,
             lp=_LP, nt=1)
    a.update(kw)
    return tuple(a.values())


API += [
    ("mirostat_v2", lambda: fd.mirostat(X, MU, tau=3.0, seed=SEEDS, position=POS), None),
    ("mirostat_v1_details", lambda: fd.mirostat(X64, 5.0, version=1, uniforms=U,
                                                return_logprobs=True, return_kept=True), None),
    ("mirostat_bf16", lambda: fd.mirostat(XBF, None, dtype="bfloat16", seed=1), None),
    ("entropix", lambda: fd.entropix(X, seed=SEEDS, position=POS, return_logprobs=True), None),
    ("entropix_clarify", lambda: fd.entropix(X16, seed=1, clarify_token=3, last_token=LAST), None),
    ("mirostat_nan", lambda: fd.mirostat(XNAN, [6.0, 8.0], seed=1), ValueError),
    ("mirostat_tau", lambda: fd.mirostat(X, 5.0, tau=0.0), ValueError),
    ("mirostat_mu_shape", lambda: fd.mirostat(X, np.zeros(3)), ValueError),
    ("entropix_neg_row", lambda: fd.entropix(XNEG, seed=1), ValueError),
    ("entropix_top_p", lambda: fd.entropix(X, top_p=2.0), ValueError),
]

DIRECT += [
    ("mirostat_ok", "mirostat", _mirostat_args(kept=_KEPT), None),
    ("mirostat_nargs", "mirostat", _mirostat_args()[:-1], TypeError),
    ("mirostat_version", "mirostat", _mirostat_args(version=3), ValueError),
    ("mirostat_m", "mirostat", _mirostat_args(m=0), ValueError),
    ("mirostat_mu_readonly", "mirostat", _mirostat_args(mu=_MU_RO), ValueError),
    ("mirostat_mu_dtype", "mirostat", _mirostat_args(mu=_TOK), TypeError),
    ("mirostat_tau_domain", "mirostat", _mirostat_args(tau=_Z), ValueError),
    ("mirostat_uniform_range", "mirostat", _mirostat_args(u=U_BAD), ValueError),
    ("entropix_ok", "entropix", _entropix_args(), None),
    ("entropix_nargs", "entropix", _entropix_args()[:-1], TypeError),
    ("entropix_params_len", "entropix", _entropix_args(params=_EPX[:-1]), ValueError),
    ("entropix_params_domain", "entropix", _entropix_args(params=_EPX_BAD), ValueError),
    ("entropix_last_dtype", "entropix", _entropix_args(last=_LAST_F), TypeError),
    ("entropix_nan", "entropix", _entropix_args(x=XNAN), ValueError),
]

# speculative decoding: verification of drafts (fastdecode.speculative_verify)
_SPT = np.random.default_rng(5).standard_normal((B, 3, V)).astype(np.float32)
_SPQ = np.ascontiguousarray(_SPT[:, :2] + 0.5)
_SPD = np.ascontiguousarray(np.argmax(_SPT[:, :2], axis=2).astype(np.int64))
_SPT2 = _SPT.reshape(B * 3, V)
_SPQ2 = _SPQ.reshape(B * 2, V)
_SPTNAN = _SPT.copy()
_SPTNAN[1, 0, 3] = np.nan
_SPN = np.array([2, 1], np.int64)[:B] if B <= 2 else np.full(B, 1, np.int64)
_SPG = np.ones(B, np.uint8)
_SPACC = np.empty(B, np.int64)
_SPNXT = np.empty(B, np.int64)
_WATCH.update({n: o for n, o in list(globals().items()) if isinstance(o, np.ndarray)})

API += [
    ("spec_verify", lambda: fd.speculative_verify(_SPT, _SPD, _SPQ, seed=SEEDS, position=POS), None),
    ("spec_verify_greedy", lambda: fd.speculative_verify(_SPT, _SPD, num_drafts=1, greedy=True), None),
    ("spec_verify_nan", lambda: fd.speculative_verify(_SPTNAN, _SPD, seed=1), ValueError),
    ("spec_verify_token", lambda: fd.speculative_verify(_SPT, _SPD + V, greedy=True), ValueError),
    ("spec_verify_shape", lambda: fd.speculative_verify(_SPT, _SPD[:, :1], greedy=True), ValueError),
]

DIRECT += [
    ("spec_verify_ok", "spec_verify", (_SPT2, _SPQ2, _SPD, 2, _SPN, None, SEEDS, POS, _SPACC, _SPNXT, 1), None),
    ("spec_verify_greedy_ok", "spec_verify", (_SPT2, None, _SPD, 2, None, _SPG, None, None, _SPACC, _SPNXT, 1), None),
    ("spec_verify_nargs", "spec_verify", (_SPT2, None, _SPD, 2, None, _SPG, None, None, _SPACC, _SPNXT), TypeError),
    ("spec_verify_rows", "spec_verify", (_SPT2[:5], None, _SPD, 2, None, _SPG, None, None, _SPACC, _SPNXT, 1), ValueError),
    ("spec_verify_draft_rows", "spec_verify", (_SPT2, _SPT2, _SPD, 2, None, None, SEEDS, POS, _SPACC, _SPNXT, 1), ValueError),
    ("spec_verify_greedy_dtype", "spec_verify", (_SPT2, None, _SPD, 2, None, _SPN, None, None, _SPACC, _SPNXT, 1), TypeError),
    ("spec_verify_no_seed", "spec_verify", (_SPT2, None, _SPD, 2, None, None, None, None, _SPACC, _SPNXT, 1), ValueError),
    ("spec_verify_n_range", "spec_verify", (_SPT2, None, _SPD, 2, _SPN + 5, _SPG, None, None, _SPACC, _SPNXT, 1), ValueError),
]

# contrastive decoding and classifier-free guidance (public API and direct binding cases)
XA = _rng.normal(size=(B, V)).astype(np.float32)
XA_NINF = XA.copy()
XA_NINF[:, :] = -np.inf
XA_HEAD_NINF = XA.copy()
XA_HEAD_NINF[0, int(np.argmax(X[0]))] = -np.inf
_ALPHA_ROWS = np.array([0.1, 0.5])
_G_ROWS = np.array([1.5, 3.0])
_OUT_F16 = np.empty_like(X16)
_WATCH.update({n: o for n, o in list(globals().items()) if isinstance(o, np.ndarray)})
API += [
    ("contrastive_logits", lambda: fd.contrastive_logits(X, XA, alpha=_ALPHA_ROWS, out=OUT), None),
    ("contrastive_logits_beta_f64", lambda: fd.contrastive_logits(X64, X64, beta=0.5), None),
    ("contrastive_logits_in_place", lambda: fd.contrastive_logits(OUT, XA, out=OUT), None),
    ("guidance_logits", lambda: fd.guidance_logits(X, XA, _G_ROWS), None),
    ("guidance_logits_raw_f16", lambda: fd.guidance_logits(X16, X16, 2.0, normalize=False), None),
    ("contrastive_nan", lambda: fd.contrastive_logits(X, XNAN), ValueError),
    ("contrastive_amateur_ninf_row", lambda: fd.contrastive_logits(X, XA_NINF), ValueError),
    ("contrastive_head_ninf", lambda: fd.contrastive_logits(X, XA_HEAD_NINF), ValueError),
    ("contrastive_alpha", lambda: fd.contrastive_logits(X, XA, alpha=1.5), ValueError),
    ("contrastive_vocab", lambda: fd.contrastive_logits(X, X4[:2, :V - 1]), ValueError),
    ("guidance_posinf", lambda: fd.guidance_logits(XPINF, XA, 2.0), ValueError),
    ("guidance_scale_inf", lambda: fd.guidance_logits(X, XA, float("inf")), ValueError),
]
_PARAM1 = np.array([0.1])
_PARAM_BAD = np.array([2.0])
DIRECT += [
    ("contrastive", "contrastive", (X, XA, OUT, _PARAM1, _T1, _Z, False, _NI, 1), None),
    ("contrastive_nargs", "contrastive", (X, XA, OUT), TypeError),
    ("contrastive_out_f16", "contrastive", (X, XA, _OUT_F16, _PARAM1, _T1, _Z, False, _NI, 1), TypeError),
    ("contrastive_shape", "contrastive", (X, X4, OUT, _PARAM1, _T1, _Z, False, _NI, 1), ValueError),
    ("contrastive_alpha", "contrastive", (X, XA, OUT, _PARAM_BAD, _T1, _Z, False, _NI, 1), ValueError),
    ("contrastive_flag_raises", "contrastive", (X, XA, OUT, _PARAM1, _T1, _Z, BADBOOL, _NI, 1),
     RuntimeError),
    ("contrastive_nan", "contrastive", (X, XNAN, OUT, _PARAM1, _T1, _Z, True, _NI, 1), ValueError),
    ("guidance", "guidance", (X, XA, OUT, _T1, True, 1), None),
    ("guidance_nargs", "guidance", (X, XA, OUT, _T1), TypeError),
    ("guidance_readonly", "guidance", (X, XA, OUT_RO, _T1, True, 1), ValueError),
    ("guidance_neg_row", "guidance", (XNEG, XA, OUT, _T1, True, 1), ValueError),
]

# adaptive samplers (csrc/core/adaptive.c): public cases, returning and raising, and direct ones
API += [
    ("adaptive_temperature", lambda: fd.adaptive_temperature(X, out=OUT, return_beta=True), None),
    ("adaptive_temperature_f16", lambda: fd.adaptive_temperature(X16), None),
    ("adaptive_temperature_neg_row", lambda: fd.adaptive_temperature(XNEG), ValueError),
    ("dynamic_temperature", lambda: fd.dynamic_temperature(X, T_ROWS, 0.5, 1.5,
                                                           return_temperature=True), None),
    ("dynamic_temperature_nan", lambda: fd.dynamic_temperature(XNAN, 1.0, 0.5), ValueError),
    ("dynamic_temperature_bad", lambda: fd.dynamic_temperature(X, 1.0, -0.5), ValueError),
    ("xtc", lambda: fd.xtc(X, 1.0, 0.01, seed=SEEDS, position=POS, out=OUT), None),
    ("xtc_uniforms", lambda: fd.xtc(X64, P_ROWS, 0.02, uniforms=U), None),
    ("xtc_nan", lambda: fd.xtc(XNAN, 1.0, 0.1, seed=1), ValueError),
    ("xtc_bad", lambda: fd.xtc(X, 1.5, 0.1, seed=1), ValueError),
    ("dry", lambda: fd.dry(X, IDS, 0.8, 1.75, 1, -1, [[int(IDS[0, 0])], [3, 4]], out=OUT), None),
    ("dry_id_hi", lambda: fd.dry(X, IDS_HI, 0.8), ValueError),
    ("dry_bad_base", lambda: fd.dry(X, IDS, 0.8, 0.5), ValueError),
    ("Sampler_adaptive", lambda: SAMPLER_ADAPTIVE(X, IDS), None),
]
_B1 = np.array([1.0])
_AL = np.array([2.0])
_LN = np.array([-1.0])
_FL0 = np.zeros(0, np.int64)
_OF0 = np.zeros(1, np.int64)
DIRECT += [
    ("adaptive_temperature_nargs", "adaptive_temperature", (X, OUT, None), TypeError),
    ("adaptive_temperature_out_dtype", "adaptive_temperature", (X, OUT64, None, 1), TypeError),
    ("adaptive_temperature_beta_len", "adaptive_temperature", (X, OUT, _H_SHORT, 1), ValueError),
    ("dynamic_temperature_neg", "dynamic_temperature",
     (X, OUT, _T1, np.array([-1.0]), _T1, None, 1), ValueError),
    ("dynamic_temperature_out_shape", "dynamic_temperature",
     (X, OUT_SHORT, _T1, _T1, _T1, None, 1), ValueError),
    ("xtc_uniform_bad", "xtc", (X, OUT, _ONE, _P / 50, _MK, SEEDS, POS, U_BAD, _NI, 1), ValueError),
    ("xtc_seed_dtype", "xtc", (X, OUT, _ONE, _P / 50, _MK, _SEEDS_I64, POS, None, _NI, 1), TypeError),
    ("xtc_fv_posinf", "xtc", (X, OUT, _ONE, _P / 50, _MK, SEEDS, POS, None, np.inf, 1), ValueError),
    ("dry_offsets_bad", "dry", (OUT, IDS, None, None, _ONE, _B1, _AL, _LN, _FLAT, _OFF_BAD),
     ValueError),
    ("dry_breaker_hi", "dry", (OUT, IDS, None, None, _ONE, _B1, _AL, _LN, _FLAT_HI, _OFF1),
     ValueError),
    ("dry_allowed_frac", "dry", (OUT, IDS, None, None, _ONE, _B1, np.array([1.5]), _LN, _FL0, _OF0),
     ValueError),
]
_WATCH.update({n: o for n, o in list(globals().items()) if isinstance(o, (np.ndarray, fd.Sampler))})

ENTRY_POINTS = sorted(n for n in dir(K) if callable(getattr(K, n)) and not n.startswith("_"))
ENTRY_POINTS = sorted(ENTRY_POINTS + ["_floor"])  # the benchmark suite's hidden floor kernel


# --------------------------------------------------------------------------------------------
# machinery


class _Recorder:
    """Stands in for fastdecode._kernels inside ops: records every binding call, then makes it."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        real = getattr(K, name)
        if not callable(real):
            return real

        def call(*args):
            try:
                r = real(*args)
            except Exception as e:
                self.calls.append((name, args, type(e)))
                raise
            self.calls.append((name, args, None))
            return r

        return call


@functools.lru_cache(maxsize=None)
def _recorded(case_id: str) -> tuple:
    """The binding calls the public-API case makes: ((entry point, args, raised type), ...)."""
    call, exc = next((c, e) for i, c, e in API if i == case_id)
    rec = _Recorder()
    saved = ops._k
    ops._k = rec
    try:
        _outcome(call, (), exc)
    finally:
        ops._k = saved
    return tuple(rec.calls)


def _outcome(f, args, exc):
    """Calls f(*args); fails unless it raises exactly `exc` (None: returns normally)."""
    try:
        f(*args)
    except Exception as e:
        if exc is None or type(e) is not exc:
            raise AssertionError(f"expected {exc}, got {type(e).__name__}: {e}") from e
        return
    if exc is not None:
        raise AssertionError(f"expected {exc.__name__}, nothing was raised")


def _caught(f, args=()):
    try:
        f(*args)
    except Exception as e:
        caught = e
    return caught


def _py_raiser():
    raise ValueError("reference exception")


def _loop(fn, n: int) -> tuple[int, int]:
    """Runs fn() n times; returns (RSS growth, traced-memory growth) from the end of the second
    tenth to the end."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        warm = n // 5
        for _ in range(warm):
            fn()
        gc.collect()
        rss0, tr0 = _rss(), tracemalloc.get_traced_memory()[0]
        for _ in range(n - warm):
            fn()
        gc.collect()
        rss1, tr1 = _rss(), tracemalloc.get_traced_memory()[0]
    finally:
        if started:
            tracemalloc.stop()
    return rss1 - rss0, tr1 - tr0


def _refcounts():
    watched = {name: sys.getrefcount(o) for name, o in _WATCH.items()}
    watched.update({f"type {t.__name__}": sys.getrefcount(t) for t in _TYPES})
    shared = {repr(o): sys.getrefcount(o) for o in (None, True, False)}
    return watched, shared


def _check(what: str, fn, n: int, calls_per_loop: int = 1) -> None:
    """The leak loop (n runs of fn, each making calls_per_loop binding or API calls) with every
    check; `what` names the case in failure messages."""
    fn()  # first call: lazy imports, caches
    # A full collection costs ~0.1 s with torch imported; freezing what exists already makes the
    # collections of the loop look at the loop's own objects only.
    gc.freeze()
    try:
        gc.collect()
        w0, s0 = _refcounts()
        drss, dtraced = _loop(fn, n)
        w1, s1 = _refcounts()
    finally:
        gc.unfreeze()
    moved = {k: w1[k] - w0[k] for k in w0 if w1[k] != w0[k]}
    assert not moved, f"{what}: refcounts changed over {n} loops: {moved}"
    for k in s0:
        assert abs(s1[k] - s0[k]) < max(n // 10, 50), (
            f"{what}: refcount of {k} moved by {s1[k] - s0[k]} over {n} loops")
    measured = n - n // 5
    assert dtraced < _traced_slack(measured * calls_per_loop), (
        f"{what}: traced memory grew by {dtraced} bytes over the last {measured} of {n} loops")
    if ASAN:
        print(f"{what}: RSS not checked ({ASAN}); refcounts and traced memory checked")
    else:
        assert drss < RSS_SLACK, (
            f"{what}: RSS grew by {drss / 2**20:.2f} MiB over the last {measured} of {n} loops")


def _check_fresh_result(what: str, f, args) -> None:
    """A new object returned by the binding is owned by the caller alone. (Counts are taken
    outside the asserts: pytest's assertion rewriting keeps extra references to sub-expressions.)"""
    r = f(*args)
    if r is None:
        return
    counts = [sys.getrefcount(r)]
    if isinstance(r, tuple):
        counts += [sys.getrefcount(r[i]) for i in range(len(r))]
    assert counts == [2] * len(counts), f"{what}: result (and its items) over-referenced: {counts}"


def _check_fresh_exception(what: str, f, args) -> None:
    """The exception raised holds the references a Python-raised one holds, no more."""
    ref = _caught(_py_raiser)
    e = _caught(f, args)
    want = [sys.getrefcount(ref), sys.getrefcount(ref.args)]
    got = [sys.getrefcount(e), sys.getrefcount(e.args)]
    assert got == want, f"{what}: exception (and its args) over-referenced: {got} vs {want}"


def _replay(calls):
    """One function making every recorded binding call, checking each outcome."""
    bound = [(getattr(K, name), args, exc) for name, args, exc in calls]

    def fn():
        for f, args, exc in bound:
            try:
                f(*args)
            except Exception as e:
                if type(e) is not exc:
                    raise
            else:
                if exc is not None:
                    raise AssertionError(f"{f.__name__} stopped raising {exc.__name__}")

    return fn


# --------------------------------------------------------------------------------------------
# tests


def _entry_cases(entry: str) -> list:
    """Every call of `entry` the cases make: [(label, args, raised type or None)], the binding
    calls recorded from the public-API cases first, then the direct ones."""
    out = []
    for case_id, _, _ in API:
        for j, (name, args, exc) in enumerate(_recorded(case_id)):
            if name == entry:
                out.append((f"{case_id}[{j}]", args, exc))
    out += [(case_id, args, exc) for case_id, e, args, exc in DIRECT if e == entry]
    return out


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_binding_entry_point_does_not_leak(entry):
    """N_CALLS calls of one entry point, cycling through all its cases (returning and raising).
    On a failure each case is re-checked alone so that the message names the culprit."""
    cases = _entry_cases(entry)
    assert cases, f"no case calls {entry}"
    passes = -(-N_CALLS // len(cases))
    try:
        _check(f"{entry} ({len(cases)} cases x {passes})",
               _replay([(entry, args, exc) for _, args, exc in cases]), passes, len(cases))
    except AssertionError as err:
        culprits = []
        for label, args, exc in cases:
            try:
                _check(label, _replay([(entry, args, exc)]), max(passes, 2_000))
            except AssertionError as alone:
                culprits.append(str(alone).splitlines()[0])
        raise AssertionError(f"{err}\nalone: {culprits or 'none fails alone'}") from None
    f = getattr(K, entry)
    for label, args, exc in cases:
        if exc is None:
            _check_fresh_result(label, f, args)
        else:
            _check_fresh_exception(label, f, args)


@pytest.mark.parametrize("case_id", [c[0] for c in API])
def test_api_does_not_leak(case_id):
    call, exc = next((c, e) for i, c, e in API if i == case_id)
    _check(f"{case_id} api", lambda: _outcome(call, (), exc), N_API)
    if exc is not None:
        _check_fresh_exception(case_id, call, ())


def test_every_entry_point_is_covered_returning_and_raising():
    ok, raised = set(), set()
    for case_id, _, _ in API:
        for name, _, exc in _recorded(case_id):
            (ok if exc is None else raised).add(name)
    for _, entry, _, exc in DIRECT:
        (ok if exc is None else raised).add(entry)
    assert ENTRY_POINTS == sorted(ok), f"entry points never called successfully: " \
                                       f"{set(ENTRY_POINTS) - ok}"
    assert ENTRY_POINTS == sorted(raised), f"entry points never made to raise: " \
                                           f"{set(ENTRY_POINTS) - raised}"
    # the filter kinds and history-penalty kinds each reached the binding
    kinds = {args[0] for case_id, _, _ in API for name, args, exc in _recorded(case_id)
             if name == "filter" and exc is None}
    assert kinds == {K.TOP_K, K.TOP_P, K.MIN_P, K.TYPICAL, K.EPSILON, K.ETA, K.TOP_N_SIGMA}
    hist = {args[0] for case_id, _, _ in API for name, args, exc in _recorded(case_id)
            if name == "history_penalty" and exc is None}
    assert hist == {0, 1, 2}


def test_rss_check_active():
    """Reports, as a skip with its reason, when the RSS assertions above are switched off."""
    if ASAN:
        pytest.skip(f"RSS assertions disabled: {ASAN}; RSS there measures sanitizer shadow "
                    f"memory and quarantine. Loops reduced to {N_CALLS} calls; refcount and "
                    "tracemalloc checks still ran")
    assert N_CALLS >= N_FULL or "FASTDECODE_LEAK_CALLS" in os.environ
