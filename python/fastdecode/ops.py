"""The functional API: validate -> coerce -> one C call -> wrap.

Every function takes logits of shape ``(B, V)`` or ``(V,)`` (NumPy float32/float64/float16, a
torch CPU tensor including bfloat16, an ``ml_dtypes`` bfloat16 array, or ``uint16`` bfloat16 bits
with ``dtype="bfloat16"``) and returns the caller's type and shape. Scalar parameters may
also be length-``B`` arrays, one value per row. Inputs are never modified unless passed as ``out=``.
Computation happens in float32 (sums in float64); float16/bfloat16 are storage formats.

Semantics follow Hugging Face ``transformers`` (``generation/logits_process.py``) unless a
docstring says otherwise; see SPEC.md. Where HF's own result depends on the order in which
``torch.sort`` arranges equal values, fastdecode resolves the tie deterministically: as HF does on
rows of up to 16 tokens (where ``torch.sort`` is stable) — top-p keeps the highest ids of a split
tie group — and in favour of the lowest token id everywhere else. On longer rows HF's choice inside
a tie group is arbitrary.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any, Mapping, Sequence

import numpy as np

from . import _kernels as _k
from ._array import (
    Logits,
    _fix_layout,
    _is_torch,
    as_id_list,
    as_ids_matrix,
    as_logits,
    prepare_out,
    resolve_alias,
    row_bounds,
    row_param,
)

__all__ = [
    "set_num_threads", "get_num_threads",
    "softmax", "log_softmax", "entropy", "varentropy",
    "top_k", "top_p", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff", "top_n_sigma",
    "repetition_penalty", "presence_frequency_penalty", "no_repeat_ngram", "logit_bias",
    "suppress_tokens", "allowed_tokens", "allowed_tokens_bitmask", "pack_bitmask", "bad_words",
    "argmax", "sample", "beam_step",
    "speculative_verify", "VerifyResult",
]

_NEG_INF = float("-inf")


def _default_threads() -> int:
    env = os.environ.get("FASTDECODE_NUM_THREADS", "").strip()
    if env:
        if env.isdigit() and int(env) >= 1:
            return int(env)
        # a bad setting must not make the package unimportable: say so and use the default
        warnings.warn(f"FASTDECODE_NUM_THREADS must be a positive integer, got {env!r}; "
                      "using the default", RuntimeWarning, stacklevel=2)
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


_threads = [_default_threads()]


def set_num_threads(n: int) -> None:
    """Set how many threads a batched kernel call may use.

    Parameters
    ----------
    n : int, >= 1
        The thread count for every later kernel call of this process. The default is the number
        of usable CPUs, at most 8, or the environment variable ``FASTDECODE_NUM_THREADS``.

    Raises
    ------
    ValueError
        ``n`` is not a positive integer (the message names ``n``).

    Notes
    -----
    Rows are split into contiguous chunks, one per thread, with the GIL released; only batches of
    at least 2 rows and 2**18 logits are split. Results do not depend on the thread count: every
    row is computed by the same code whatever chunk it lands in.

    Examples
    --------
    >>> import fastdecode as fd
    >>> old = fd.get_num_threads()
    >>> fd.set_num_threads(2)
    >>> fd.get_num_threads()
    2
    >>> fd.set_num_threads(old)
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    _threads[0] = n


def get_num_threads() -> int:
    """The number of threads batched kernel calls may use (see :func:`set_num_threads`).

    Returns
    -------
    int
        The current setting, >= 1.

    Examples
    --------
    >>> import fastdecode as fd
    >>> fd.get_num_threads() >= 1
    True
    """
    return _threads[0]


def _filter_value(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"filter_value must be a float, got {type(v).__name__}") from None
    if math.isnan(f):
        raise ValueError("filter_value must not be NaN")
    return f


def _min_keep(v: Any, batch: int) -> np.ndarray:
    return row_param(v, batch, "min_tokens_to_keep", lo=1, integer=True)


def _run_filter(kind: int, logits: Any, param: np.ndarray | None, pname: str, pkw: dict,
                min_tokens_to_keep: Any, filter_value: Any, out: Any, dtype: str | None) -> Any:
    lg = as_logits(logits, dtype=dtype)
    p = row_param(param, lg.batch, pname, **pkw)
    mk = _min_keep(min_tokens_to_keep, lg.batch)
    fv = _filter_value(filter_value)
    o, ret = prepare_out(out, lg)
    resolve_alias(lg, o)
    _k.filter(kind, lg.array, o, p, mk, fv, _threads[0])
    return ret if ret is not None else lg.wrap_logits(o)


# --------------------------------------------------------------------------------------------
# probabilities


def softmax(logits: Any, *, temperature: Any = 1.0, out: Any = None,
            dtype: str | None = None) -> Any:
    """Softmax of ``logits / temperature`` along the last axis.

    Parameters
    ----------
    logits : array_like, shape (B, V) or (V,)
        float32, float64, float16 or bfloat16 (see ``dtype``) logits; a row-strided view is read
        in place.
    temperature : float or array of B floats, >= 0, default 1.0
        0 gives the one-hot distribution of the first maximum.
    out : ndarray, optional
        float32 (float64 for float64 input) array of the logits' shape.
    dtype : {None, "bfloat16"}
        "bfloat16" when ``logits`` is a ``uint16`` array holding bfloat16 bits.

    Returns
    -------
    ndarray or torch.Tensor
        float32 probabilities (float64 for float64 input), in the caller's type and shape.

    Raises
    ------
    TypeError
        ``logits`` (or ``out``) of an unsupported dtype.
    ValueError
        ``temperature`` negative or NaN, NaN in ``logits``, a row with no finite logit, or a
        wrong shape; the message names the argument and the row. ``out`` is left unchanged.

    Notes
    -----
    ``-inf`` logits get probability 0. The exponentials are float32 (float64 for float64 input)
    of ``(z - max) / T``; sums are accumulated in float64.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> x = np.array([1.0, 3.0, 2.0, 3.0], dtype=np.float32)
    >>> fd.softmax(x)
    array([0.0541, 0.3995, 0.147 , 0.3995], dtype=float32)
    >>> fd.softmax(x, temperature=0)  # the first maximum
    array([0., 1., 0., 0.], dtype=float32)
    """
    return _softmax(logits, temperature, out, False, dtype)


def log_softmax(logits: Any, *, temperature: Any = 1.0, out: Any = None,
                dtype: str | None = None) -> Any:
    """Log-softmax of ``logits / temperature`` along the last axis; ``-inf`` where p is 0.

    Parameters
    ----------
    logits : array_like, shape (B, V) or (V,)
        float32, float64, float16 or bfloat16 (see ``dtype``) logits.
    temperature : float or array of B floats, >= 0, default 1.0
        0 gives 0 at the first maximum and ``-inf`` elsewhere.
    out : ndarray, optional
        float32 (float64 for float64 input) array of the logits' shape.
    dtype : {None, "bfloat16"}
        "bfloat16" when ``logits`` is a ``uint16`` array holding bfloat16 bits.

    Returns
    -------
    ndarray or torch.Tensor
        float32 log-probabilities (float64 for float64 input).

    Raises
    ------
    TypeError
        ``logits`` (or ``out``) of an unsupported dtype.
    ValueError
        As :func:`softmax`: bad ``temperature``, NaN, a row with no finite logit, a wrong shape.

    Notes
    -----
    ``z / T - max - log(sum exp(z / T - max))`` with the sum in float64, as :func:`softmax`.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> fd.log_softmax(np.array([1.0, 3.0, 2.0, 3.0], dtype=np.float32))
    array([-2.9176, -0.9176, -1.9176, -0.9176], dtype=float32)
    """
    return _softmax(logits, temperature, out, True, dtype)


def _softmax(logits: Any, temperature: Any, out: Any, log: bool, dtype: str | None) -> Any:
    lg = as_logits(logits, dtype=dtype)
    t = row_param(temperature, lg.batch, "temperature", lo=0.0, hi=math.inf, hi_open=True)
    want = np.float64 if lg.array.dtype == np.float64 else np.float32
    o, ret = prepare_out(out, lg, dtype=np.dtype(want))
    if np.may_share_memory(lg.array, o):
        # in place: a row with no finite value raises after earlier rows are written, so compute
        # into scratch and copy, leaving the caller's array as it was on error
        tmp = np.empty(o.shape, dtype=o.dtype)
        _k.softmax(lg.array, tmp, t, log, _threads[0])
        np.copyto(o, tmp)
    else:
        _k.softmax(lg.array, o, t, log, _threads[0])
    return ret if ret is not None else lg.wrap_float(o)


def entropy(logits: Any, *, dtype: str | None = None) -> Any:
    """Shannon entropy ``H = -sum p log p`` of ``softmax(logits)`` in nats, per row.

    Parameters
    ----------
    logits : array_like, shape (B, V) or (V,)
        float32, float64, float16 or bfloat16 (see ``dtype``) logits.
    dtype : {None, "bfloat16"}
        "bfloat16" when ``logits`` is a ``uint16`` array holding bfloat16 bits.

    Returns
    -------
    ndarray or torch.Tensor
        float64 entropies, shape (B,), or a 0-d array for a 1-D input.

    Raises
    ------
    TypeError
        ``logits`` of an unsupported dtype.
    ValueError
        NaN in ``logits``, a row with no finite logit, or a wrong shape (naming the row).

    Notes
    -----
    ``-inf`` logits contribute nothing. Weights are float32 ``exp(z - max)``, sums float64.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> fd.entropy(np.zeros((2, 4)))  # uniform over 4 tokens: ln 4
    array([1.3863, 1.3863])
    """
    lg = as_logits(logits, dtype=dtype)
    h = np.empty(lg.batch, dtype=np.float64)
    _k.entropy(lg.array, h, None, _threads[0])
    return lg.wrap_rows(h)


def varentropy(logits: Any, *, dtype: str | None = None) -> Any:
    """Varentropy ``sum p (log p + H)^2``: the variance of the surprisal ``-log p`` under p (nats²).

    Parameters
    ----------
    logits : array_like, shape (B, V) or (V,)
        float32, float64, float16 or bfloat16 (see ``dtype``) logits.
    dtype : {None, "bfloat16"}
        "bfloat16" when ``logits`` is a ``uint16`` array holding bfloat16 bits.

    Returns
    -------
    ndarray or torch.Tensor
        float64 varentropies, shape (B,), or a 0-d array for a 1-D input.

    Raises
    ------
    TypeError
        ``logits`` of an unsupported dtype.
    ValueError
        NaN in ``logits``, a row with no finite logit, or a wrong shape (naming the row).

    Notes
    -----
    The entropix "varentropy"; 0 for a uniform (or one-hot) row. ``-inf`` logits contribute
    nothing; sums in float64.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> fd.varentropy(np.array([1.0, 3.0, 2.0, 3.0]))
    array(0.2981)
    >>> fd.varentropy(np.zeros(4))
    array(0.)
    """
    lg = as_logits(logits, dtype=dtype)
    v = np.empty(lg.batch, dtype=np.float64)
    _k.entropy(lg.array, None, v, _threads[0])
    return lg.wrap_rows(v)


# --------------------------------------------------------------------------------------------
# filters

_FILTER_DOC_PARAMS = """
    min_tokens_to_keep : int or array of B ints, >= 1
        At least this many tokens survive (see Notes for which).
    filter_value : float, default -inf
        Value written to removed tokens (rounded to the logits' dtype).
    out : array, optional
        Destination of the logits' shape and dtype; may be the input itself.
    dtype : {None, "bfloat16"}
        "bfloat16" when ``logits`` is a ``uint16`` array holding bfloat16 bits.

    Returns
    -------
    ndarray or torch.Tensor
        The logits with removed tokens set to ``filter_value``; kept values are copied unchanged.
        The caller's type (NumPy or torch), dtype and shape.

    Raises
    ------
    TypeError
        ``logits`` or ``out`` of an unsupported dtype, or a parameter of the wrong type.
    ValueError
        A parameter outside its range (the message names it, and the row for per-row arrays), a
        NaN ``filter_value``, NaN in ``logits``, or a wrong shape.
"""


def _filter_doc(fn):
    """Splices the parameters every filter shares into ``fn``'s docstring."""
    if fn.__doc__:  # None under python -OO
        fn.__doc__ = fn.__doc__.replace("    @FILTER_PARAMS@\n", _FILTER_DOC_PARAMS.lstrip("\n") + "\n")
    return fn


@_filter_doc
def top_k(logits: Any, k: Any, *, min_tokens_to_keep: Any = 1, filter_value: Any = _NEG_INF,
          out: Any = None, dtype: str | None = None) -> Any:
    """Keep the ``k`` highest logits of each row (HF ``TopKLogitsWarper``).

    Parameters
    ----------
    logits : array_like, shape (B, V) or (V,)
    k : int or array of B ints, >= 0
        0 disables the filter.
    @FILTER_PARAMS@
    Notes
    -----
    ``k = max(k, min_tokens_to_keep)`` clipped to V; every token tied with the k-th highest value is
    kept, so more than k tokens may survive (HF: ``scores < topk(scores, k)[0][..., -1]`` is
    removed). Found by radix selection, no sort.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> x = np.array([1.0, 3.0, 2.0, 3.0], dtype=np.float32)
    >>> fd.top_k(x, 1)  # both tokens tied at the top survive
    array([-inf,   3., -inf,   3.], dtype=float32)
    >>> p = np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32)
    >>> fd.softmax(fd.top_k(np.log(p), 3))  # llama.cpp's conformance vector
    array([0.    , 0.2222, 0.3333, 0.4444], dtype=float32)
    """
    return _run_filter(_k.TOP_K, logits, k, "k", dict(lo=0, integer=True), min_tokens_to_keep,
                       filter_value, out, dtype)


@_filter_doc
def top_p(logits: Any, p: Any, *, min_tokens_to_keep: Any = 1, filter_value: Any = _NEG_INF,
          out: Any = None, dtype: str | None = None) -> Any:
    """Nucleus filter: keep the smallest top set whose probability mass reaches ``p`` (HF ``TopPLogitsWarper``).

    Parameters
    ----------
    logits : array_like, shape (B, V) or (V,)
    p : float or array of B floats in [0, 1]
    @FILTER_PARAMS@
    Notes
    -----
    Tokens are walked from the highest logit down; a token is kept while the mass of the tokens
    before it is ``< p``, so the token that crosses ``p`` is kept (HF removes ``cumsum <= 1 - p`` of
    the ascending sort). ``p = 1`` keeps everything; ``p = 0`` keeps the top ``min_tokens_to_keep``.
    Among equal logits the highest token id comes first in the walk, which is what HF's stable
    ascending sort gives (torch.sort is stable on rows of up to 16 tokens; beyond that HF's choice
    inside a tie group is arbitrary). Sort-free (radix selection).

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> p = np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32)
    >>> fd.softmax(fd.top_p(np.log(p), 0.7))  # 0.4 < 0.7, so 0.3 (which crosses) is kept
    array([0.    , 0.    , 0.4286, 0.5714], dtype=float32)
    """
    return _run_filter(_k.TOP_P, logits, p, "p", dict(lo=0.0, hi=1.0), min_tokens_to_keep,
                       filter_value, out, dtype)


@_filter_doc
def min_p(logits: Any, p: Any, *, min_tokens_to_keep: Any = 1, filter_value: Any = _NEG_INF,
          out: Any = None, dtype: str | None = None) -> Any:
    """Keep tokens with ``prob >= p * max prob`` (HF ``MinPLogitsWarper``).

    Parameters
    ----------
    logits : array_like, shape (B, V) or (V,)
    p : float or array of B floats in [0, 1]
    @FILTER_PARAMS@
    Notes
    -----
    Removal is strict: ``prob < p * max_prob``, evaluated in logit space as
    ``logit - max < ln p`` (no softmax). ``p = 0`` keeps everything. The ``min_tokens_to_keep``
    highest logits always survive.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> p = np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32)
    >>> fd.softmax(fd.min_p(np.log(p), 0.51))  # keeps p >= 0.51 * 0.4
    array([0.    , 0.    , 0.4286, 0.5714], dtype=float32)
    """
    return _run_filter(_k.MIN_P, logits, p, "p", dict(lo=0.0, hi=1.0), min_tokens_to_keep,
                       filter_value, out, dtype)


@_filter_doc
def typical_p(logits: Any, mass: Any, *, min_tokens_to_keep: Any = 1, filter_value: Any = _NEG_INF,
              out: Any = None, dtype: str | None = None) -> Any:
    """Locally typical filter (Meister et al. 2022; HF ``TypicalLogitsWarper``).

    Parameters
    ----------
    logits : array_like, shape (B, V) or (V,)
    mass : float or array of B floats in [0, 1]
    @FILTER_PARAMS@
    Notes
    -----
    With ``H`` the entropy and ``s = |-log p - H|``, tokens are walked by increasing ``s``; the
    crossing token is the first at which the cumulative mass reaches ``mass``; every token with
    ``s <= s(crossing)`` is kept (ties included), plus the first ``min_tokens_to_keep`` of the walk.
    This is HF's rule; llama.cpp's ``typical`` differs on ties (it stops at the crossing token).

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> p = np.array([0.4, 0.2, 0.2, 0.2], dtype=np.float32)
    >>> fd.softmax(fd.typical_p(np.log(p), 0.5))  # the three typical tokens (llama.cpp agrees)
    array([0.    , 0.3333, 0.3333, 0.3333], dtype=float32)
    """
    return _run_filter(_k.TYPICAL, logits, mass, "mass", dict(lo=0.0, hi=1.0), min_tokens_to_keep,
                       filter_value, out, dtype)


@_filter_doc
def epsilon_cutoff(logits: Any, epsilon: Any, *, min_tokens_to_keep: Any = 1,
                   filter_value: Any = _NEG_INF, out: Any = None, dtype: str | None = None) -> Any:
    """Remove tokens with probability below ``epsilon`` (Hewitt et al. 2022; HF ``EpsilonLogitsWarper``).

    Parameters
    ----------
    logits : array_like, shape (B, V) or (V,)
    epsilon : float or array of B floats in [0, 1)
        0 disables the filter.
    @FILTER_PARAMS@
    Notes
    -----
    Removed: ``p < epsilon`` and ``logit < (min_tokens_to_keep-th highest logit)``.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> p = np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32)
    >>> fd.softmax(fd.epsilon_cutoff(np.log(p), 0.15))
    array([0.    , 0.2222, 0.3333, 0.4444], dtype=float32)
    """
    return _run_filter(_k.EPSILON, logits, epsilon, "epsilon", dict(lo=0.0, hi=1.0, hi_open=True),
                       min_tokens_to_keep, filter_value, out, dtype)


@_filter_doc
def eta_cutoff(logits: Any, epsilon: Any, *, min_tokens_to_keep: Any = 1,
               filter_value: Any = _NEG_INF, out: Any = None, dtype: str | None = None) -> Any:
    """Entropy-dependent cutoff (Hewitt et al. 2022; HF ``EtaLogitsWarper``).

    Parameters
    ----------
    logits : array_like, shape (B, V) or (V,)
    epsilon : float or array of B floats in [0, 1)
        0 disables the filter.
    @FILTER_PARAMS@
    Notes
    -----
    ``eta = min(epsilon, sqrt(epsilon) * exp(-H))`` with ``H`` the entropy (nats) of the row;
    removed: ``p < eta`` and ``logit < (min_tokens_to_keep-th highest logit)``.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> p = np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32)
    >>> fd.softmax(fd.eta_cutoff(np.log(p), 0.2))  # H = 1.28 nats: eta = 0.124
    array([0.    , 0.2222, 0.3333, 0.4444], dtype=float32)
    """
    return _run_filter(_k.ETA, logits, epsilon, "epsilon", dict(lo=0.0, hi=1.0, hi_open=True),
                       min_tokens_to_keep, filter_value, out, dtype)


@_filter_doc
def top_n_sigma(logits: Any, n: Any, *, min_tokens_to_keep: Any = 1, filter_value: Any = _NEG_INF,
                out: Any = None, dtype: str | None = None) -> Any:
    """Keep logits within ``n`` standard deviations of the maximum (Tang et al. 2024, arXiv 2411.07641).

    Parameters
    ----------
    logits : array_like, shape (B, V) or (V,)
    n : float or array of B floats, finite
        ``n <= 0`` disables the filter.
    @FILTER_PARAMS@
    Notes
    -----
    Keeps ``z >= max - n * sigma`` with ``sigma`` the population standard deviation of the finite
    logits of the row (llama.cpp ``top_n_sigma``). Invariant to temperature.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> p = np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32)
    >>> fd.softmax(fd.top_n_sigma(np.log(p), 1.0))  # llama.cpp's conformance vector
    array([0.    , 0.    , 0.4286, 0.5714], dtype=float32)
    """
    return _run_filter(_k.TOP_N_SIGMA, logits, n, "n", dict(lo=-math.inf, hi=math.inf, lo_open=True,
                                                              hi_open=True),
                       min_tokens_to_keep, filter_value, out, dtype)


# --------------------------------------------------------------------------------------------
# penalties and constraints


def _inplace_target(logits: Any, out: Any, dtype: str | None) -> tuple[Logits, np.ndarray, Any]:
    """Logits, the 2-D array the in-place kernel will edit, and what to return. Nothing is
    written yet: call _filled(lg, o) once every argument is validated, so that an error leaves a
    caller's ``out=`` as it was."""
    lg = as_logits(logits, dtype=dtype)
    o, ret = prepare_out(out, lg)
    resolve_alias(lg, o)
    return lg, o, ret


def _filled(lg: Logits, o: np.ndarray) -> np.ndarray:
    """`o` holding the input logits, ready for an in-place kernel."""
    if o is not lg.array:
        np.copyto(o, lg.array)
    return o


def _check_history(ids: np.ndarray, begin: Any, end: Any, vocab: int) -> None:
    """Every id in the counted part [begin, end) of each row must lie in [0, vocab).

    Checked before the kernel runs (the C core checks too, row by row) so that an error leaves
    ``out=`` untouched; padding outside the counted part may hold anything.
    """
    if ids.size == 0:
        return
    bad = (ids < 0) | (ids >= vocab)
    if begin is not None or end is not None:
        pos = np.arange(ids.shape[1])
        if begin is not None:
            bad &= pos >= begin[:, None]
        if end is not None:
            bad &= pos < end[:, None]
    if bad.any():
        r, i = (int(v[0]) for v in np.nonzero(bad))
        raise ValueError(f"input_ids row {r}, position {i}: token id {int(ids[r, i])} outside "
                         f"[0, {vocab})")


def _done(lg: Logits, o: np.ndarray, ret: Any) -> Any:
    return ret if ret is not None else lg.wrap_logits(o)


def repetition_penalty(logits: Any, input_ids: Any, penalty: Any, *, lengths: Any = None,
                       prompt_ignore_length: Any = None, last_n: Any = None, out: Any = None,
                       dtype: str | None = None) -> Any:
    """CTRL repetition penalty (HF ``RepetitionPenaltyLogitsProcessor``).

    Parameters
    ----------
    logits : array_like, shape (B, V) or (V,)
    input_ids : array_like of int, shape (B, T) or (T,)
        Token history (prompt included, as in HF).
    penalty : float or array of B floats, > 0
        1 is a no-op; > 1 discourages repeats.
    lengths : int or array of B ints, optional
        Valid length of each history row (right padding beyond it is ignored).
    prompt_ignore_length : int or array of B ints, optional
        Leading tokens of each row to ignore (HF ``prompt_ignore_length``).
    last_n : int or array of B ints, optional
        Only the last ``last_n`` valid tokens count (llama.cpp ``penalty_last_n``).
    out : array, optional
        Destination of the logits' shape and dtype; may be the input itself.
    dtype : {None, "bfloat16"}
        "bfloat16" when ``logits`` is a ``uint16`` array holding bfloat16 bits.

    Returns
    -------
    ndarray or torch.Tensor
        The processed logits, in the caller's type, dtype and shape.

    Raises
    ------
    TypeError
        ``logits`` of an unsupported dtype, ``input_ids`` not integers.
    ValueError
        A parameter outside its range (the message names it), a token id of ``input_ids``
        outside ``[0, V)`` (naming the row and position), NaN logits, or a wrong shape.
        ``out`` is left unchanged on error.

    Notes
    -----
    Every distinct token in the history is penalised once, however often it repeats:
    ``z * penalty`` if ``z < 0`` else ``z / penalty`` (computed in float32). Ids must lie in
    ``[0, V)``; HF silently ignores ids ``>= V``, fastdecode raises.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> x = np.array([2.0, -1.0, 0.5, 1.0], dtype=np.float32)
    >>> fd.repetition_penalty(x, [0, 1, 1], 2.0)  # token 1 counted once
    array([ 1. , -2. ,  0.5,  1. ], dtype=float32)
    """
    lg, o, ret = _inplace_target(logits, out, dtype)
    ids = as_ids_matrix(input_ids, lg.batch)
    pen = row_param(penalty, lg.batch, "penalty", lo=0.0, lo_open=True, hi=math.inf, hi_open=True)
    b, e = row_bounds(lg.batch, ids.shape[1], lengths=lengths, begin=prompt_ignore_length,
                      last_n=last_n, begin_name="prompt_ignore_length")
    _check_history(ids, b, e, lg.vocab)
    _k.history_penalty(0, _filled(lg, o), ids, b, e, pen, None)
    return _done(lg, o, ret)


def presence_frequency_penalty(logits: Any, input_ids: Any, *, presence: Any = 0.0,
                               frequency: Any = 0.0, lengths: Any = None,
                               prompt_lengths: Any = None, last_n: Any = None,
                               out: Any = None, dtype: str | None = None) -> Any:
    """OpenAI/vLLM presence and frequency penalties.

    Parameters
    ----------
    logits : array_like, shape (B, V) or (V,)
        float32, float64, float16 or bfloat16 (see ``dtype``) logits; not modified unless passed
        as ``out``.
    input_ids : array_like of int, shape (B, T) or (T,)
        Token history.
    presence : float or array of B floats, finite, default 0.0
        Subtracted once from every token that occurs at least once.
    frequency : float or array of B floats, finite, default 0.0
        Subtracted once per occurrence.
    lengths : int or array of B ints, optional
        Valid length of each history row (right padding beyond it is ignored).
    prompt_lengths : int or array of B ints, optional
        Leading tokens of each row not counted (the prompt, for vLLM's rule).
    last_n : int or array of B ints, optional
        Only the last ``last_n`` counted tokens count (llama.cpp ``penalty_last_n``).
    out : array, optional
        Destination of the logits' shape and dtype; may be the input itself.
    dtype : {None, "bfloat16"}
        "bfloat16" when ``logits`` is a ``uint16`` array holding bfloat16 bits.

    Returns
    -------
    ndarray or torch.Tensor
        The processed logits, in the caller's type, dtype and shape.

    Raises
    ------
    TypeError
        ``logits`` of an unsupported dtype, ``input_ids`` not integers.
    ValueError
        A parameter outside its range (the message names it), a token id of ``input_ids``
        outside ``[0, V)`` (naming the row and position), NaN logits, or a wrong shape.
        ``out`` is left unchanged on error.

    Notes
    -----
    ``z -= frequency * count + presence * (count > 0)`` where ``count`` is how often the token
    occurs in ``input_ids[r, prompt_lengths[r]:lengths[r]]`` (optionally only its last ``last_n``
    tokens), computed in float32. vLLM counts generated tokens only: pass the prompt lengths as
    ``prompt_lengths``. Penalties may be negative (to encourage repetition).

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> x = np.array([2.0, -1.0, 0.5, 1.0], dtype=np.float32)
    >>> fd.presence_frequency_penalty(x, [0, 1, 1], presence=0.5, frequency=0.25)
    array([ 1.25, -2.  ,  0.5 ,  1.  ], dtype=float32)
    """
    lg, o, ret = _inplace_target(logits, out, dtype)
    ids = as_ids_matrix(input_ids, lg.batch)
    pres = row_param(presence, lg.batch, "presence", lo=-math.inf, hi=math.inf, lo_open=True, hi_open=True)
    freq = row_param(frequency, lg.batch, "frequency", lo=-math.inf, hi=math.inf, lo_open=True, hi_open=True)
    b, e = row_bounds(lg.batch, ids.shape[1], lengths=lengths, begin=prompt_lengths, last_n=last_n)
    _check_history(ids, b, e, lg.vocab)
    _k.history_penalty(1, _filled(lg, o), ids, b, e, pres, freq)
    return _done(lg, o, ret)


def no_repeat_ngram(logits: Any, input_ids: Any, n: int, *, lengths: Any = None,
                    filter_value: Any = _NEG_INF, out: Any = None, dtype: str | None = None) -> Any:
    """Ban every token that would complete an n-gram already in the history (HF ``NoRepeatNGramLogitsProcessor``).

    Parameters
    ----------
    logits : array_like, shape (B, V) or (V,)
        float32, float64, float16 or bfloat16 (see ``dtype``) logits; not modified unless passed
        as ``out``.
    input_ids : array_like of int, shape (B, T) or (T,)
        Token history (prompt included, as in HF).
    n : int, >= 1
        The n-gram size (HF ``no_repeat_ngram_size``), shared by every row.
    lengths : int or array of B ints, optional
        Valid length of each history row (right padding beyond it is ignored).
    filter_value : float, default -inf
        Value written to banned tokens.
    out : array, optional
        Destination of the logits' shape and dtype; may be the input itself.
    dtype : {None, "bfloat16"}
        "bfloat16" when ``logits`` is a ``uint16`` array holding bfloat16 bits.

    Returns
    -------
    ndarray or torch.Tensor
        The processed logits, in the caller's type, dtype and shape.

    Raises
    ------
    TypeError
        ``logits`` of an unsupported dtype, ``input_ids`` not integers.
    ValueError
        A parameter outside its range (the message names it), a token id of ``input_ids``
        outside ``[0, V)`` (naming the row and position), NaN logits, or a wrong shape.
        ``out`` is left unchanged on error.

    Notes
    -----
    A token ``t`` is banned when ``history[-(n-1):] + [t]`` occurs in the history. Nothing is
    banned while the history is shorter than ``n``. ``n = 1`` bans every token seen.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> x = np.array([2.0, -1.0, 0.5, 1.0], dtype=np.float32)
    >>> fd.no_repeat_ngram(x, [0, 1, 2, 0], 2)  # (0, 1) was seen: 1 is banned after 0
    array([ 2. , -inf,  0.5,  1. ], dtype=float32)
    """
    lg, o, ret = _inplace_target(logits, out, dtype)
    ids = as_ids_matrix(input_ids, lg.batch)
    nn = int(row_param(n, 1, "n", lo=1, integer=True)[0])
    _, e = row_bounds(lg.batch, ids.shape[1], lengths=lengths)
    _check_history(ids, None, e, lg.vocab)
    fv = _filter_value(filter_value)
    _k.history_penalty(2, _filled(lg, o), ids, None, e, nn, fv)
    return _done(lg, o, ret)


def logit_bias(logits: Any, bias: Mapping[int, float] | tuple[Any, Any], *, out: Any = None,
               dtype: str | None = None) -> Any:
    """Add a bias to chosen tokens (OpenAI/vLLM ``logit_bias``).

    Parameters
    ----------
    logits : array_like, shape (B, V) or (V,)
        float32, float64, float16 or bfloat16 (see ``dtype``) logits; not modified unless passed
        as ``out``.
    bias : dict {token_id: value} or (ids, values)
        ``values`` may be (n,) (shared) or (B, n) (one row of biases per batch row). ``-inf``
        bans a token; NaN and ``+inf`` are refused.
    out : array, optional
        Destination of the logits' shape and dtype; may be the input itself.
    dtype : {None, "bfloat16"}
        "bfloat16" when ``logits`` is a ``uint16`` array holding bfloat16 bits.

    Returns
    -------
    ndarray or torch.Tensor
        The processed logits, in the caller's type, dtype and shape.

    Raises
    ------
    TypeError
        ``bias`` neither a dict nor an ``(ids, values)`` tuple; ``logits`` of an unsupported dtype.
    ValueError
        A token id outside ``[0, V)``, a NaN or ``+inf`` value (also once rounded to float32),
        ``values`` of the wrong shape (the messages name ``bias``).

    Notes
    -----
    The addition is done in float32 (float64 for float64 logits) and rounded once to the dtype.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> x = np.array([2.0, -1.0, 0.5, 1.0], dtype=np.float32)
    >>> fd.logit_bias(x, {1: 5.0, 3: float("-inf")})
    array([ 2. ,  4. ,  0.5, -inf], dtype=float32)
    """
    lg, o, ret = _inplace_target(logits, out, dtype)
    if isinstance(bias, Mapping):
        ids = as_id_list(list(bias.keys()), "bias")
        vals = np.asarray(list(bias.values()), dtype=np.float64)
    elif isinstance(bias, tuple) and len(bias) == 2:
        ids = as_id_list(bias[0], "bias")
        vals = np.ascontiguousarray(np.asarray(bias[1], dtype=np.float64))
        if vals.ndim == 2 and vals.shape[0] == 1:
            vals = vals.reshape(-1)
    else:
        raise TypeError("bias must be a dict {token_id: value} or a tuple (ids, values)")
    # +inf also after rounding to the compute dtype: 1e39 is +inf in float32
    with np.errstate(over="ignore"):
        cv = vals.astype(np.float64 if lg.array.dtype == np.float64 else np.float32)
    if np.isnan(vals).any() or np.isposinf(cv).any():
        raise ValueError("bias values must not be NaN or +inf, also once rounded to float32 for "
                         "non-float64 logits (-inf bans a token)")
    _k.logit_bias(_filled(lg, o), ids, np.ascontiguousarray(vals))
    return _done(lg, o, ret)


def suppress_tokens(logits: Any, ids: Any, *, filter_value: Any = _NEG_INF, out: Any = None,
                    dtype: str | None = None) -> Any:
    """Set the given token ids to ``filter_value`` in every row (HF ``SuppressTokensLogitsProcessor``).

    Parameters
    ----------
    logits : array_like, shape (B, V) or (V,)
        float32, float64, float16 or bfloat16 (see ``dtype``) logits; not modified unless passed
        as ``out``.
    ids : array_like of int
        The suppressed token ids, each in ``[0, V)``.
    filter_value : float, default -inf
        Value written to the suppressed tokens.
    out : array, optional
        Destination of the logits' shape and dtype; may be the input itself.
    dtype : {None, "bfloat16"}
        "bfloat16" when ``logits`` is a ``uint16`` array holding bfloat16 bits.

    Returns
    -------
    ndarray or torch.Tensor
        The processed logits, in the caller's type, dtype and shape.

    Raises
    ------
    TypeError
        ``ids`` not integers; ``logits`` of an unsupported dtype.
    ValueError
        An id outside ``[0, V)`` (the message names ``ids``), a NaN ``filter_value``.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> fd.suppress_tokens(np.array([2.0, -1.0, 0.5, 1.0], dtype=np.float32), [0, 2])
    array([-inf,  -1., -inf,   1.], dtype=float32)
    """
    lg, o, ret = _inplace_target(logits, out, dtype)
    sup, fv = as_id_list(ids, "ids"), _filter_value(filter_value)
    _k.suppress_tokens(_filled(lg, o), sup, fv)
    return _done(lg, o, ret)


def pack_bitmask(ids: Any, vocab_size: int) -> np.ndarray:
    """Pack allowed token ids into int32 words: bit ``i % 32`` of word ``i // 32`` set = allowed.

    Parameters
    ----------
    ids : array_like of int, or a list of such lists
        One list of allowed ids (the same for every row), or one list per row.
    vocab_size : int, >= 1
        V; the result has ``W = ceil(V / 32)`` words per row.

    Returns
    -------
    ndarray of int32
        Shape (W,) for one list, (B, W) for per-row lists: the layout of
        :func:`allowed_tokens_bitmask` (and of structured-output engines such as xgrammar).

    Raises
    ------
    TypeError
        ``vocab_size`` not an int, ``ids`` not integers.
    ValueError
        ``vocab_size < 1``, an id outside ``[0, vocab_size)`` (naming ``ids`` and the row).

    Examples
    --------
    >>> import fastdecode as fd
    >>> fd.pack_bitmask([0, 2, 33], 40)  # bits 0 and 2 of word 0, bit 1 of word 1
    array([5, 2], dtype=int32)
    """
    if isinstance(vocab_size, (bool, np.bool_)) or not isinstance(vocab_size, (int, np.integer)):
        raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
    w = (int(vocab_size) + 31) // 32
    rows = ids if (isinstance(ids, (list, tuple)) and ids and isinstance(ids[0], (list, tuple, np.ndarray))) else None
    seqs = [as_id_list(r, "ids") for r in rows] if rows is not None else [as_id_list(ids, "ids")]
    words = np.zeros((len(seqs), w), dtype=np.uint32)
    for r, s in enumerate(seqs):
        if s.size and (s.min() < 0 or s.max() >= vocab_size):
            raise ValueError(f"ids (row {r}) must lie in [0, {vocab_size})")
        np.bitwise_or.at(words[r], s >> 5, (np.uint32(1) << (s & 31).astype(np.uint32)))
    words = words.view(np.int32)
    return words if rows is not None else words[0]


def allowed_tokens(logits: Any, ids: Any, *, filter_value: Any = _NEG_INF, out: Any = None,
                   dtype: str | None = None) -> Any:
    """Keep only the given token ids (a whitelist; one list, or one list per row).

    Parameters
    ----------
    logits : array_like, shape (B, V) or (V,)
        float32, float64, float16 or bfloat16 (see ``dtype``) logits; not modified unless passed
        as ``out``.
    ids : array_like of int, or a list of B such lists
        The allowed ids, shared by every row or one list per row.
    filter_value : float, default -inf
        Value written to every other token.
    out : array, optional
        Destination of the logits' shape and dtype; may be the input itself.
    dtype : {None, "bfloat16"}
        "bfloat16" when ``logits`` is a ``uint16`` array holding bfloat16 bits.

    Returns
    -------
    ndarray or torch.Tensor
        The processed logits, in the caller's type, dtype and shape.

    Raises
    ------
    TypeError
        ``ids`` not integers; ``logits`` of an unsupported dtype.
    ValueError
        An id outside ``[0, V)`` or a number of lists other than 1 or B (naming ``ids``).

    Notes
    -----
    Equivalent to ``allowed_tokens_bitmask(logits, pack_bitmask(ids, V))``. An empty list
    removes every token.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> fd.allowed_tokens(np.array([2.0, -1.0, 0.5, 1.0], dtype=np.float32), [1, 3])
    array([-inf,  -1., -inf,   1.], dtype=float32)
    """
    lg = as_logits(logits, dtype=dtype)
    m = pack_bitmask(ids, lg.vocab)
    if m.ndim == 2 and m.shape[0] not in (1, lg.batch):
        raise ValueError(f"ids has {m.shape[0]} lists (one per row) but logits has {lg.batch} rows")
    return allowed_tokens_bitmask(logits, m, filter_value=filter_value, out=out, dtype=dtype)


def allowed_tokens_bitmask(logits: Any, bitmask: Any, *, filter_value: Any = _NEG_INF,
                           out: Any = None, dtype: str | None = None) -> Any:
    """Apply a packed token bitmask (the structured-output layout).

    Parameters
    ----------
    logits : array_like, shape (B, V) or (V,)
        float32, float64, float16 or bfloat16 (see ``dtype``) logits; not modified unless passed
        as ``out``.
    bitmask : int32 or uint32 array, shape (W,), (1, W) or (B, W), W >= ceil(V/32)
        Bit ``i % 32`` (little-endian) of word ``i // 32`` set means token ``i`` is allowed.
        One row of words applies to every row of logits; words beyond ``ceil(V/32)`` are ignored.
        A torch tensor is accepted.
    filter_value : float, default -inf
        Value written to disallowed tokens.
    out : array, optional
        Destination of the logits' shape and dtype; may be the input itself.
    dtype : {None, "bfloat16"}
        "bfloat16" when ``logits`` is a ``uint16`` array holding bfloat16 bits.

    Returns
    -------
    ndarray or torch.Tensor
        The processed logits, in the caller's type, dtype and shape.

    Raises
    ------
    TypeError
        ``bitmask`` not int32/uint32 words; ``logits`` of an unsupported dtype.
    ValueError
        ``bitmask`` of the wrong shape (too few words, or a row count other than 1 or B).

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> x = np.array([2.0, -1.0, 0.5, 1.0], dtype=np.float32)
    >>> fd.allowed_tokens_bitmask(x, fd.pack_bitmask([1, 3], 4))
    array([-inf,  -1., -inf,   1.], dtype=float32)
    """
    lg, o, ret = _inplace_target(logits, out, dtype)
    m = np.asarray(bitmask.cpu().numpy() if hasattr(bitmask, "cpu") else bitmask)
    if m.dtype not in (np.dtype(np.int32), np.dtype(np.uint32)):
        raise TypeError(f"bitmask must be int32 or uint32 words, got {m.dtype}")
    m = np.ascontiguousarray(m.view(np.int32))
    if m.ndim == 1:
        m = m.reshape(1, -1)
    if m.ndim != 2 or m.shape[0] not in (1, lg.batch):
        raise ValueError(f"bitmask must have shape (W,) or ({lg.batch}, W), got {np.shape(bitmask)}")
    fv = _filter_value(filter_value)
    _k.apply_bitmask(_filled(lg, o), m, fv, _threads[0])
    return _done(lg, o, ret)


def bad_words(logits: Any, input_ids: Any, bad_words_ids: Sequence[Sequence[int]], *,
              lengths: Any = None, filter_value: Any = _NEG_INF, out: Any = None,
              dtype: str | None = None) -> Any:
    """Ban words given as token sequences (HF ``NoBadWordsLogitsProcessor``).

    Parameters
    ----------
    logits : array_like, shape (B, V) or (V,)
        float32, float64, float16 or bfloat16 (see ``dtype``) logits; not modified unless passed
        as ``out``.
    input_ids : array_like of int, shape (B, T) or (T,)
        Token history.
    bad_words_ids : list of lists of int
        The banned words (HF ``bad_words_ids``), each a non-empty id sequence.
    lengths : int or array of B ints, optional
        Valid length of each history row (right padding beyond it is ignored).
    filter_value : float, default -inf
        Value written to banned tokens.
    out : array, optional
        Destination of the logits' shape and dtype; may be the input itself.
    dtype : {None, "bfloat16"}
        "bfloat16" when ``logits`` is a ``uint16`` array holding bfloat16 bits.

    Returns
    -------
    ndarray or torch.Tensor
        The processed logits, in the caller's type, dtype and shape.

    Raises
    ------
    TypeError
        ``bad_words_ids`` not a list of id lists; ``logits`` of an unsupported dtype.
    ValueError
        An empty word, an id outside ``[0, V)`` (naming ``bad_words_ids`` or the ``input_ids`` row
        and position), NaN logits, a wrong shape.

    Notes
    -----
    A single-token word is always banned; a longer word bans its last token when the history ends
    with the rest of it.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> x = np.array([2.0, -1.0, 0.5, 1.0], dtype=np.float32)
    >>> fd.bad_words(x, [3, 1], [[2], [1, 3]])  # 2 always; 3 because the history ends with 1
    array([  2.,  -1., -inf, -inf], dtype=float32)
    """
    lg, o, ret = _inplace_target(logits, out, dtype)
    ids = as_ids_matrix(input_ids, lg.batch)
    if isinstance(bad_words_ids, (str, bytes)) or not isinstance(bad_words_ids, Sequence):
        raise TypeError("bad_words_ids must be a list of lists of token ids")
    if any(not isinstance(w, (Sequence, np.ndarray)) or isinstance(w, (str, bytes)) for w in bad_words_ids):
        raise TypeError("bad_words_ids must be a list of lists of token ids, e.g. [[5], [7, 8]]")
    words = [as_id_list(w, "bad_words_ids") for w in bad_words_ids]
    if any(w.size == 0 for w in words):
        raise ValueError("bad_words_ids must not contain empty sequences")
    flat = np.concatenate(words) if words else np.zeros(0, dtype=np.int64)
    offsets = np.zeros(len(words) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([w.size for w in words])
    _, e = row_bounds(lg.batch, ids.shape[1], lengths=lengths)
    _check_history(ids, None, e, lg.vocab)
    fv = _filter_value(filter_value)
    _k.bad_words(_filled(lg, o), ids, None, e, np.ascontiguousarray(flat), offsets, fv)
    return _done(lg, o, ret)


# --------------------------------------------------------------------------------------------
# picking


def argmax(logits: Any, *, dtype: str | None = None) -> Any:
    """Index of the maximum of each row; the first one on ties (as numpy/torch argmax).

    Parameters
    ----------
    logits : array_like, shape (B, V) or (V,)
        float32, float64, float16 or bfloat16 (see ``dtype``) logits.
    dtype : {None, "bfloat16"}
        "bfloat16" when ``logits`` is a ``uint16`` array holding bfloat16 bits.

    Returns
    -------
    ndarray or torch.Tensor
        int64 token ids, shape (B,), or a 0-d array for a 1-D input.

    Raises
    ------
    TypeError
        ``logits`` of an unsupported dtype.
    ValueError
        NaN logits (naming the row and column), a row of all ``-inf`` (no token to choose; numpy
        would return 0), or a wrong shape.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> fd.argmax(np.array([[1.0, 3.0, 3.0], [0.0, 0.0, -1.0]]))
    array([1, 0])
    """
    lg = as_logits(logits, dtype=dtype)
    o = np.empty(lg.batch, dtype=np.int64)
    _k.argmax(lg.array, o, _threads[0])
    return lg.wrap_rows(o)


_ORDERS = {"hf": 0, "vllm": 0, "llama.cpp": 1, "llama": 1}
_U64 = 1 << 64


def _seeds(seed: Any, batch: int) -> np.ndarray:
    if seed is None:
        return np.random.SeedSequence().generate_state(batch, dtype=np.uint64)
    if hasattr(seed, "detach"):
        seed = seed.detach().cpu().numpy()
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError("seed must be an int or an array of ints")
    if isinstance(seed, (int, np.integer)):
        s = int(seed)
        if not 0 <= s < _U64:
            raise ValueError(f"seed must be an integer in [0, 2**64), got {s}")
        return np.array([s], dtype=np.uint64)
    arr = np.asarray(seed)
    if arr.dtype.kind not in "iu" or arr.ndim != 1:
        raise TypeError("seed must be an int or a 1-D array of ints (one per row)")
    if arr.shape[0] not in (1, batch):
        raise ValueError(f"seed has {arr.shape[0]} values but logits has {batch} rows")
    if arr.dtype.kind == "i" and (arr < 0).any():
        raise ValueError(f"seed must be non-negative (row {int(np.flatnonzero(arr < 0)[0])})")
    return np.ascontiguousarray(arr, dtype=np.uint64)


def _positions(position: Any, batch: int) -> np.ndarray:
    p = row_param(position, batch, "position", lo=0, integer=True)
    if (p >= 2.0**63).any():
        raise ValueError("position must be < 2**63")
    return np.ascontiguousarray(p.astype(np.int64))


def sample(logits: Any, *, temperature: Any = 1.0, top_k: Any = 0, top_p: Any = 1.0,
           min_p: Any = 0.0, typical_p: Any = 1.0, epsilon_cutoff: Any = 0.0,
           eta_cutoff: Any = 0.0, top_n_sigma: Any = 0.0, seed: Any = None, position: Any = 0,
           order: str = "hf", return_logprobs: bool = False, uniforms: Any = None,
           dtype: str | None = None) -> Any:
    """Draw one token per row through the whole filter chain in one C call.

    Parameters
    ----------
    logits : array_like, shape (B, V) or (V,)
    temperature : float or array, >= 0
        0 means greedy: the first maximum of the raw logits (vLLM and llama.cpp convention).
    top_k, top_p, min_p, typical_p, epsilon_cutoff, eta_cutoff, top_n_sigma
        As the filter functions of the same name; the defaults (0, 1, 0, 1, 0, 0, 0) disable them.
    seed : int, array of B ints, or None
        The draw for a row is a function of its own seed, its position and its logits only: the
        same seed gives the same token whatever the batch, the row order or the thread count. A
        scalar seed is shared by every row, so rows with equal logits draw equal tokens; pass one
        seed per row for independent rows. None draws fresh entropy (one seed per row).
    position : int or array of B ints, >= 0
        The step counter mixed into the random stream (e.g. the sequence length); advance it every
        step, or the same uniform is reused.
    order : {"hf", "llama.cpp"}
        "hf" (also vLLM): temperature -> top-n-sigma -> top-k -> top-p -> min-p -> typical ->
        epsilon -> eta. "llama.cpp": top-n-sigma -> top-k -> typical -> top-p -> min-p -> epsilon
        -> eta -> temperature (last). The orders give different distributions.
    return_logprobs : bool
        Also return the log-probability of each chosen token under the final filtered distribution.
    uniforms : array of B floats in [0, 1), optional
        Use these uniforms instead of the generator (for tests and custom randomness).
    dtype : {None, "bfloat16"}
        "bfloat16" when ``logits`` is a ``uint16`` array holding bfloat16 bits.

    Returns
    -------
    tokens : ndarray or torch.Tensor
        int64 token ids, shape (B,), or 0-d for a 1-D input.
    logprobs : ndarray or torch.Tensor
        Only with ``return_logprobs``: float64 log-probability of each chosen token under the
        final filtered (and tempered) distribution, the one it was drawn from.

    Raises
    ------
    TypeError
        ``logits`` of an unsupported dtype; ``seed`` not an int or a 1-D integer array.
    ValueError
        A parameter outside its range (the message names it, and the row for per-row arrays):
        ``temperature < 0``, ``top_k < 0``, ``top_p`` outside [0, 1], ``seed`` outside
        [0, 2**64), ``position < 0``, ``uniforms`` outside [0, 1); an unknown ``order``; NaN
        logits; a row with no finite logit (no token to choose).

    Notes
    -----
    The chain, in the ``order="hf"`` (default, also vLLM's) order:
    temperature -> top-n-sigma -> top-k -> top-p -> min-p -> typical -> epsilon -> eta -> pick;
    in ``order="llama.cpp"``: top-n-sigma -> top-k -> typical -> top-p -> min-p -> epsilon ->
    eta -> temperature -> pick. Each filter follows the function of the same name (tie and
    boundary rules included: every token tied with the k-th is kept by top-k, the token that
    crosses ``top_p`` is kept, min-p removal is strict) with ``min_tokens_to_keep = 1``.
    Penalties and biases are not part of this call: apply them to the logits first
    (:class:`Sampler` chains both).

    ``temperature == 0`` is greedy: the first maximum of the raw logits, whatever the filters
    (vLLM and llama.cpp convention; Hugging Face raises instead).

    The pick is the inverse CDF over the surviving tokens in ascending id order, with float32
    weights ``exp(z - max)`` summed in float64, and ``u`` a 53-bit uniform from Philox4x32-10
    keyed by (seed, position): the token drawn for a row depends only on its own seed, its
    position and its logits -- not on the batch it shares, the row order or the thread count.
    No vocabulary sort: thresholds are found by radix selection.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> x = np.array([1.0, 3.0, 2.0, 3.0], dtype=np.float32)
    >>> fd.sample(x, temperature=0)  # greedy: the first maximum
    array(1)
    >>> fd.sample(x, seed=7, position=0), fd.sample(x, seed=7, position=1)
    (array(3), array(1))
    >>> fd.sample(np.stack([x, x]), seed=[7, 7], position=[0, 1])  # the same draws in a batch
    array([3, 1])
    >>> fd.sample(x, top_k=1, seed=7, return_logprobs=True)  # two tokens tie for the top
    (array(3), array(-0.6931))
    """
    lg = as_logits(logits, dtype=dtype)
    b = lg.batch
    if order not in _ORDERS:
        raise ValueError(f"order must be 'hf' or 'llama.cpp', got {order!r}")
    params = [
        row_param(temperature, b, "temperature", lo=0.0, hi=math.inf, hi_open=True),
        row_param(top_k, b, "top_k", lo=0, integer=True),
        row_param(top_p, b, "top_p", lo=0.0, hi=1.0),
        row_param(min_p, b, "min_p", lo=0.0, hi=1.0),
        row_param(typical_p, b, "typical_p", lo=0.0, hi=1.0),
        row_param(epsilon_cutoff, b, "epsilon_cutoff", lo=0.0, hi=1.0, hi_open=True),
        row_param(eta_cutoff, b, "eta_cutoff", lo=0.0, hi=1.0, hi_open=True),
        row_param(top_n_sigma, b, "top_n_sigma", lo=-math.inf, hi=math.inf, lo_open=True,
                  hi_open=True),
    ]
    u = None
    if uniforms is not None:
        u = row_param(uniforms, b, "uniforms", lo=0.0, hi=1.0, hi_open=True)
    seeds = _seeds(seed, b)
    pos = _positions(position, b)
    tokens = np.empty(b, dtype=np.int64)
    lp = np.empty(b, dtype=np.float64) if return_logprobs else None
    _k.sample(lg.array, *params, _ORDERS[order], seeds, pos, u, tokens, lp, _threads[0])
    if return_logprobs:
        return lg.wrap_rows(tokens), lg.wrap_rows(lp)
    return lg.wrap_rows(tokens)


# --------------------------------------------------------------------------------------------
# beam search


def _beam_scores(v: Any, rows: int) -> np.ndarray:
    """beam_scores as a contiguous float32 (rows,) array; NaN / +inf rejected (-inf allowed)."""
    if _is_torch(v):
        if v.device.type != "cpu":
            raise ValueError(f"beam_scores is on device {v.device}; pass beam_scores.cpu()")
        v = v.detach().float().numpy()
    a = np.asarray(v)
    if a.dtype.kind not in "iuf" and a.dtype.name != "bfloat16":
        raise TypeError(f"beam_scores must be an array of floats, got {a.dtype}")
    if a.shape != (rows,):
        raise ValueError(f"beam_scores must have shape ({rows},), one score per row of logits, "
                         f"got {a.shape}")
    with np.errstate(over="ignore"):  # a float64 beyond the float32 range becomes inf: caught below
        b = np.ascontiguousarray(a, dtype=np.float32)
    bad = np.isnan(b) | (b == np.inf)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise ValueError(f"beam_scores[{r}] is {a[r]!r}: NaN and +inf (also after rounding to "
                         "float32) are not allowed; -inf is")
    return b


def _count(v: Any, name: str) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    return int(v)


def beam_step(logits: Any, beam_scores: Any, k: int, *, group_size: int | None = None,
              normalize: bool = True, dtype: str | None = None) -> tuple[Any, Any, Any]:
    """One beam-search step: the ``k`` best (beam, token) continuations of each group of beams.

    Parameters
    ----------
    logits : array_like, shape (R, V)
        The next-token logits of every beam (float32/float64/float16/bfloat16, as every op).
        Rows ``g * group_size .. (g + 1) * group_size - 1`` are the beams of group ``g``.
    beam_scores : array_like, shape (R,)
        The running score of every beam (rounded to float32). ``-inf`` is allowed (a dead beam);
        NaN and ``+inf`` raise ``ValueError``.
    k : int
        How many continuations to return per group, ``1 <= k <= group_size * V`` (Hugging Face
        asks for ``2 * num_beams``).
    group_size : int, optional
        Beams per group (``num_beams``); must divide R. Default: all R rows form one group.
    normalize : bool, default True
        Take the log-softmax of each row first. False: the logits are already log-probabilities
        (e.g. after processors that set some to ``-inf``) and are used as they are.
    dtype : {None, "bfloat16"}
        "bfloat16" when ``logits`` is a ``uint16`` array holding bfloat16 bits.

    Returns
    -------
    scores : float32 array (G, k)
        ``s = lp + beam_scores[row]``, best first, G = R / group_size.
    rows : int64 array (G, k)
        The beam each continuation extends, as a row index of ``logits`` (0 .. R - 1, not
        relative to the group).
    tokens : int64 array (G, k)
        The token each continuation appends.

    torch CPU logits give torch tensors.

    Notes
    -----
    This is Hugging Face's beam step: ``log_softmax(logits, -1) + beam_scores[:, None]``, viewed
    as ``(G, group_size * V)``, then ``topk(k)``. ``lp`` is bit for bit the float32 value of
    :func:`log_softmax` (normalize) or the logit as float32, and the addition is one float32
    addition, as torch does on float32 tensors. Order: larger ``s`` first; equal ``s`` by the
    smaller flat index ``(row - g * group_size) * V + token`` first (torch.topk leaves this order
    unspecified). ``-inf`` scores are ranked last and returned like any other, so a group with
    fewer than ``k`` finite scores still yields ``k`` entries. With ``normalize``, a row whose
    logits are all ``-inf`` raises ``ValueError``, as :func:`log_softmax` does (HF's log_softmax
    would give NaN there). No vocabulary sort: a bounded heap of the k best, with whole 64-token
    blocks, and whole rows, skipped when their maximum cannot beat the current k-th best.

    Raises
    ------
    TypeError
        ``k`` or ``group_size`` not an int, ``beam_scores`` not floats, ``logits`` of an
        unsupported dtype.
    ValueError
        1-D ``logits``; ``group_size`` not a positive divisor of R; ``k`` outside
        ``[1, group_size * V]``; ``beam_scores`` of the wrong shape or holding NaN/+inf; NaN
        logits; with ``normalize``, a row of all ``-inf``.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> lp = np.log(np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]], dtype=np.float32))
    >>> scores, rows, tokens = fd.beam_step(lp, np.array([0.0, -1.0]), 3, normalize=False)
    >>> rows, tokens  # beam 0 + token 0, beam 0 + token 1, beam 1 + token 1
    (array([[0, 0, 1]]), array([[0, 1, 1]]))
    >>> scores
    array([[-0.6931, -1.204 , -1.5108]], dtype=float32)
    """
    lg = as_logits(logits, dtype=dtype)
    if lg.one_d:
        raise ValueError("logits must be 2-D (rows, V) for beam_step: one row per beam")
    R, V = lg.array.shape
    kk = _count(k, "k")
    if group_size is None:
        if R == 0:
            raise ValueError("logits has no rows: pass group_size to get empty results")
        gs = R
    else:
        gs = _count(group_size, "group_size")
        if gs < 1 or R % gs:
            raise ValueError(f"group_size must be a positive divisor of the {R} rows of logits, "
                             f"got {gs}")
    if not 1 <= kk <= gs * V:
        raise ValueError(f"k must be in [1, group_size * V] = [1, {gs * V}], got {kk}")
    b = _beam_scores(beam_scores, R)
    s, rows, tokens = _k.beam_step(lg.array, b, kk, gs, bool(normalize), _threads[0])
    return lg.wrap_float(s), lg.wrap_float(rows), lg.wrap_float(tokens)



# --------------------------------------------------------------------------------------------
# speculative decoding


class VerifyResult(tuple):
    """The result of :func:`speculative_verify`: a ``(num_accepted, next_token)`` tuple.

    Attributes
    ----------
    num_accepted : ndarray or torch.Tensor
        int64 (B,) (0-d for a single row): how many drafts of each row were accepted.
    next_token : ndarray or torch.Tensor
        int64 (B,) (0-d for a single row): the token that follows the accepted drafts (the
        correction at the first rejection, or the bonus token).

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> p = np.log(np.array([[0.5, 0.5], [0.9, 0.1]]))
    >>> n, tok = fd.speculative_verify(p, [0], greedy=True)
    >>> int(n), int(tok)
    (1, 0)
    """

    __slots__ = ()

    def __new__(cls, num_accepted: Any, next_token: Any) -> "VerifyResult":
        return tuple.__new__(cls, (num_accepted, next_token))

    @property
    def num_accepted(self) -> Any:
        """Accepted drafts per row (``self[0]``)."""
        return self[0]

    @property
    def next_token(self) -> Any:
        """The token after the accepted drafts, per row (``self[1]``)."""
        return self[1]

    def __repr__(self) -> str:
        return f"VerifyResult(num_accepted={self[0]!r}, next_token={self[1]!r})"


def _stack3(x: Any, name: str, dtype: str | None) -> tuple[np.ndarray, bool, bool]:
    """(B, n, V) logits (or (n, V) for one row) as a NumPy array the binding reads as
    (B * n, V) rows. Returns (array 3-D, one_row, torch_in)."""
    torch_in = _is_torch(x)
    if torch_in:
        from ._array import _torch_to_numpy

        a, bf16 = _torch_to_numpy(x, name)
    else:
        a = x if isinstance(x, np.ndarray) else np.asarray(x)
        bf16 = False
    if dtype is not None:
        if dtype != "bfloat16":
            raise ValueError(f"dtype must be None or 'bfloat16', got {dtype!r}")
        if a.dtype not in (np.dtype(np.uint16), np.dtype(np.int16)):
            raise TypeError(f"{name} must hold uint16 bits when dtype='bfloat16', got {a.dtype}")
        a = a.view(np.uint16)
    elif a.dtype.name == "bfloat16":
        a = a.view(np.uint16)
    elif not bf16 and (a.dtype.kind != "f" or a.dtype.newbyteorder("=") not in
                       (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16))):
        raise TypeError(f"{name} must be float32, float64, float16 or bfloat16, got {a.dtype}")
    one = a.ndim == 2
    if one:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"{name} must be 3-D (B, n, V) (or 2-D (n, V) for one row), got shape "
                         f"{a.shape}")
    if a.shape[2] == 0:
        raise ValueError(f"{name} must have at least one column (vocabulary size 0)")
    return a, one, torch_in


def speculative_verify(target_logits: Any, draft_tokens: Any, draft_logits: Any = None, *,
                       num_drafts: Any = None, greedy: Any = False, seed: Any = None,
                       position: Any = 0, dtype: str | None = None) -> VerifyResult:
    """Verify drafted tokens against the target: how many are accepted, and the next token.

    Parameters
    ----------
    target_logits : array_like, shape (B, gamma + 1, V) (or (gamma + 1, V) for one row)
        The target's *processed* logits (after penalties, temperature and filters, removed tokens
        ``-inf``: e.g. :meth:`Sampler.final_logits`) at the position of each draft and after the
        last one. Row i is the distribution ``p_{i+1}`` that plain sampling would draw the token
        at draft position i from.
    draft_tokens : int array, shape (B, gamma)
        The drafted ids.
    draft_logits : array_like, shape (B, gamma, V), optional
        The draft's processed logits each draft was drawn from (``q``). The drafts must have been
        drawn from exactly these distributions, as :func:`sample` with temperature 1 and no filter
        draws from them (:func:`fastdecode.speculative_generate` does this). None: the drafts are
        deterministic (prompt lookup, a greedy draft), ``q`` is the one-hot of each draft.
    num_drafts : int or array of B ints, optional
        How many of each row's ``gamma`` drafts count (0 .. gamma); default all.
    greedy : bool or array of B bools
        Greedy verification for these rows: accept while the draft equals the first maximum of
        the target row, then that maximum (token for token the greedy output of the target).
    seed, position : int or array of B ints
        The row's seed and the absolute position of its first draft (the history length).
        Unused (and not validated) when every row is greedy.
    dtype : {None, "bfloat16"}
        "bfloat16" when the logits are ``uint16`` arrays holding bfloat16 bits.

    Returns
    -------
    VerifyResult
        ``(num_accepted, next_token)``, int64 arrays (B,): row b's output is
        ``draft_tokens[b, :num_accepted[b]]`` followed by ``next_token[b]``.

    Notes
    -----
    Speculative sampling (Leviathan et al. 2023, Algorithm 1; Chen et al. 2023): accept draft i
    with probability ``min(1, p_i(d_i) / q_i(d_i))`` (``u < p/q`` with a 53-bit uniform); at the
    first rejection draw from ``normalize(max(0, p_i - q_i))`` (from ``p_i`` if that is all
    zero); after full acceptance draw the bonus token from ``p_{n+1}``. The output is then
    distributed exactly as a token-by-token draw from the target. ``p`` and ``q`` are computed
    exactly as the fused sampler computes its pick (float32 weights ``exp(z - max)``, summed in
    float64), so a draft drawn by :func:`sample` is drawn from the very ``q`` tested here (the
    condition Hugging Face broke in transformers #32867 and #47932). Random streams are keyed by
    (seed, absolute position): a row's result does not depend on its batch.

    Raises
    ------
    TypeError
        Logits of an unsupported dtype, ``draft_tokens`` not integers.
    ValueError
        Shapes that disagree (``draft_tokens`` must be (B, gamma), ``draft_logits`` (B, gamma, V));
        ``num_drafts`` outside [0, gamma]; a bad ``greedy``, ``seed`` or ``position``; a draft id
        outside ``[0, V)``; NaN logits; a target row with no finite logit. Messages name the
        argument.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> p = np.log(np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]], dtype=np.float32))
    >>> fd.speculative_verify(p, [0, 1], greedy=True)  # both drafts are the argmax: bonus 2
    VerifyResult(num_accepted=array(2), next_token=array(2))
    >>> fd.speculative_verify(p, [0, 2], greedy=True)  # 2 is rejected, replaced by the argmax
    VerifyResult(num_accepted=array(1), next_token=array(1))
    """
    t, one, torch_in = _stack3(target_logits, "target_logits", dtype)
    B, G1, V = t.shape
    G = G1 - 1
    if G < 0:
        raise ValueError("target_logits must have gamma + 1 >= 1 positions per row")
    d = np.asarray(draft_tokens.detach().cpu().numpy() if _is_torch(draft_tokens) else draft_tokens)
    if one:
        d = d[None]
    if d.size == 0:
        d = d.reshape(B, 0) if d.ndim != 2 else d
    if d.dtype.kind not in "iu" and d.size:
        raise TypeError(f"draft_tokens must be integer token ids, got dtype {d.dtype}")
    if d.shape != (B, G):
        raise ValueError(f"draft_tokens must have shape {(B, G) if not one else (G,)} "
                         f"(gamma = target positions - 1), got {np.shape(draft_tokens)}")
    d = np.ascontiguousarray(d, dtype=np.int64)
    q = None
    if draft_logits is not None:
        qa, qone, _ = _stack3(draft_logits, "draft_logits", dtype)
        if qone != one or qa.shape != (B, G, V):
            raise ValueError(f"draft_logits must have shape {(B, G, V) if not one else (G, V)} "
                             f"(the target's rows and vocabulary, gamma positions), got "
                             f"{np.shape(draft_logits)}")
        q = _fix_layout(qa.reshape(B * G, V))
    n = None
    if num_drafts is not None:
        n = row_param(num_drafts, B, "num_drafts", lo=0, hi=G, integer=True)
        n = np.ascontiguousarray(np.broadcast_to(n, (B,)), dtype=np.int64)
    g = np.asarray(greedy)
    if g.dtype.kind not in "biu" or g.ndim > 1 or (g.ndim == 1 and g.size not in (1, B)):
        raise ValueError(f"greedy must be a bool or an array of {B} bools")
    g = np.ascontiguousarray(np.broadcast_to(g.astype(bool), (B,)), dtype=np.uint8)
    seeds = pos = None
    if not g.all():
        seeds = _seeds(seed, B)
        pos = _positions(position, B)
    acc = np.empty(B, np.int64)
    nxt = np.empty(B, np.int64)
    _k.spec_verify(_fix_layout(t.reshape(B * G1, V)), q, d, G, n, g if g.any() else None, seeds,
                   pos, acc, nxt, _threads[0])
    if one:
        acc, nxt = acc.reshape(()), nxt.reshape(())
    if torch_in:
        import torch

        return VerifyResult(torch.from_numpy(acc), torch.from_numpy(nxt))
    return VerifyResult(acc, nxt)



# --------------------------------------------------------------------------------------------
# contrastive decoding and classifier-free guidance

__all__ += ["contrastive_logits", "guidance_logits"]


def _logits_pair(a: Any, b: Any, aname: str, bname: str, dtype: str | None) -> tuple[Logits, Logits]:
    la = as_logits(a, aname, dtype=dtype)
    lb = as_logits(b, bname, dtype=dtype)
    if la.one_d != lb.one_d or la.array.shape != lb.array.shape:
        sa = la.array.shape[1:] if la.one_d else la.array.shape
        sb = lb.array.shape[1:] if lb.one_d else lb.array.shape
        what = (f" (vocabulary mismatch: {la.vocab} vs {lb.vocab} tokens)"
                if la.vocab != lb.vocab else "")
        raise ValueError(f"{bname} must have the shape of {aname} {sa}, got {sb}{what}")
    return la, lb


def _pair_out(la: Logits, lb: Logits, out: Any) -> tuple[np.ndarray, Any, np.ndarray | None]:
    """(array the kernel writes, caller's out or None, scratch to copy from when out overlaps
    an input: a failing row must leave the caller's arrays as they were)."""
    want = np.float64 if (la.array.dtype == np.float64 and lb.array.dtype == np.float64) else np.float32
    o, ret = prepare_out(out, la, dtype=np.dtype(want))
    if np.may_share_memory(o, la.array) or np.may_share_memory(o, lb.array):
        return np.empty(o.shape, o.dtype), ret, o
    return o, ret, None


def contrastive_logits(expert_logits: Any, amateur_logits: Any, *, alpha: Any = 0.1,
                       amateur_temperature: Any = 1.0, beta: Any = None,
                       filter_value: Any = _NEG_INF, out: Any = None,
                       dtype: str | None = None) -> Any:
    """The contrastive-decoding score of an expert and an amateur model's next-token logits.

    Parameters
    ----------
    expert_logits, amateur_logits : array_like, shape (B, V) or (V,), the same shape
        Any supported dtype each (they need not match); row-strided views are read in place.
    alpha : float or array of B floats in [0, 1], default 0.1
        The plausibility cut: only tokens with ``p_exp(x) >= alpha * max p_exp`` are scored.
        0 scores every token the expert gives a finite logit; 1 only the expert's maxima.
    amateur_temperature : float or array of B floats > 0, default 1.0
        The amateur's logits are divided by it (τ of Li et al.; 0.5 sharpens the amateur).
    beta : None, or float or array of B floats >= 0
        None: Li et al.'s score ``log p_exp(x) - log softmax(z_ama / τ)(x)``. A number:
        O'Brien & Lewis's ``(1 + β) z_exp(x) - β z_ama(x) / τ`` (β ≈ 0.5 in the paper).
    filter_value : float, default -inf
        The value of tokens outside the plausibility head.
    out : array, optional
        float32 destination (float64 when both inputs are float64) of the logits' shape; may be
        one of the inputs.
    dtype : {None, "bfloat16"}
        Set when the inputs are ``uint16`` arrays holding bfloat16 bits (applies to both).

    Returns
    -------
    ndarray or torch.Tensor
        float32 scores (float64 for float64 inputs), in the expert's array type and shape.

    Raises
    ------
    ValueError
        ``alpha`` outside [0, 1], ``amateur_temperature <= 0``, ``beta < 0`` (the message names
        the argument and the row); shapes that differ (a vocabulary mismatch); NaN or +inf in
        either input, a row of the expert with no finite logit, or under Li's formula an amateur
        row with no finite logit (naming the argument and the row); an amateur logit of -inf
        inside the head (its score would be +inf).

    Notes
    -----
    Li et al. 2022, "Contrastive Decoding: Open-ended Text Generation as Optimization" (arXiv
    2210.15097), and O'Brien & Lewis 2023, "Contrastive Decoding Improves Reasoning in Large
    Language Models" (arXiv 2309.09117). The plausibility head ``V_head`` is decided in logit space,
    without exponentiating the row: ``x`` is in it when ``z_exp(x)`` is finite and
    ``(z_exp(x) - max z_exp) >= log(alpha)`` (the difference in float32, the comparison in
    float64), exactly the set :func:`min_p` keeps for ``p = alpha``; the maximum is always in it.
    Logits are loaded as float32 (float64 stays float64 when both inputs are float64); the log-
    normalisers are float64 sums, the score is evaluated in float64 and rounded once. A token
    outside the head gets ``filter_value`` whatever the amateur says; one inside it whose amateur
    logit is -inf raises rather than scoring +inf. The result is the input of a greedy, sampling
    or beam-search step (:func:`fastdecode.contrastive_generate` runs those loops).

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> expert = np.log(np.array([0.6, 0.3, 0.05, 0.05], dtype=np.float32))
    >>> amateur = np.log(np.array([0.7, 0.1, 0.1, 0.1], dtype=np.float32))
    >>> fd.contrastive_logits(expert, amateur)  # tokens 2, 3 fall outside the 0.1 * 0.6 head
    array([-0.1542,  1.0986,    -inf,    -inf], dtype=float32)
    """
    la, lb = _logits_pair(expert_logits, amateur_logits, "expert_logits", "amateur_logits", dtype)
    B = la.batch
    a = row_param(alpha, B, "alpha", lo=0.0, hi=1.0)
    t = row_param(amateur_temperature, B, "amateur_temperature", lo=0.0, lo_open=True, hi=math.inf,
                  hi_open=True)
    if beta is None:
        b, use_beta = np.zeros(1), False
    else:
        b, use_beta = row_param(beta, B, "beta", lo=0.0, hi=math.inf, hi_open=True), True
    fv = _filter_value(filter_value)
    o, ret, dest = _pair_out(la, lb, out)
    _k.contrastive(la.array, lb.array, o, a, t, b, use_beta, fv, _threads[0])
    if dest is not None:
        np.copyto(dest, o)
        o = dest
    return ret if ret is not None else la.wrap_float(o)


def guidance_logits(cond_logits: Any, uncond_logits: Any, guidance_scale: Any, *,
                    normalize: bool = True, out: Any = None, dtype: str | None = None) -> Any:
    """Classifier-free guidance of next-token logits: ``u + g (c - u)``, Hugging Face's arithmetic.

    Parameters
    ----------
    cond_logits, uncond_logits : array_like, shape (B, V) or (V,), the same shape
        The model's logits on the prompt (conditional) and on a negative or empty prompt
        (unconditional).
    guidance_scale : float or array of B floats (finite)
        ``g``; 1 is no guidance, > 1 pushes away from the unconditional distribution.
    normalize : bool, default True
        True: ``c, u`` are the log-softmax of the inputs and ``g == 1`` returns ``c``
        (``UnbatchedClassifierFreeGuidanceLogitsProcessor``, which ``model.generate`` uses for
        ``guidance_scale`` with ``negative_prompt_ids``). False: ``c, u`` are the raw logits
        (``ClassifierFreeGuidanceLogitsProcessor``, the batched form for encoder-decoder models).
    out : array, optional
        float32 destination (float64 when both inputs are float64); may be one of the inputs.
    dtype : {None, "bfloat16"}
        "bfloat16" when the inputs are ``uint16`` arrays holding bfloat16 bits.

    Returns
    -------
    ndarray or torch.Tensor
        float32 (float64) guided scores in the conditional input's type and shape.

    Raises
    ------
    TypeError
        ``normalize`` not a bool; inputs of an unsupported dtype.
    ValueError
        Shapes that differ; a non-finite ``guidance_scale``; NaN or +inf in either input; with
        ``normalize`` a row with no finite value; an overflowing result (messages name the
        argument and the row).

    Notes
    -----
    HF computes ``g * (c - u) + u`` (unbatched) and ``u + (c - u) * g`` (batched) on float32
    tensors; here each operation is rounded to float32 the same way (``g`` rounded to float32
    first, as torch does with a Python scalar), and the log-softmax is fastdecode's (float64 sums;
    it can differ from torch's in the last bit). Where either input is ``-inf`` the result is
    ``-inf`` (torch gives NaN for ``-inf - -inf`` and ``0 * -inf``, and NaN or +inf where only the
    unconditional logit is ``-inf``), except ``g == 1`` with ``normalize``, which returns ``c``
    unchanged as HF does. With ``normalize`` a row with no finite value raises ``ValueError``
    naming the argument; a finite result that overflows (absurd ``g``) raises too.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> fd.guidance_logits(np.array([1.0, 2.0, 3.0]), np.ones(3), 1.5, normalize=False)
    array([1. , 2.5, 4. ])
    """
    la, lb = _logits_pair(cond_logits, uncond_logits, "cond_logits", "uncond_logits", dtype)
    g = row_param(guidance_scale, la.batch, "guidance_scale", lo=-math.inf, hi=math.inf,
                  lo_open=True, hi_open=True)
    if not isinstance(normalize, (bool, np.bool_)):
        raise TypeError(f"normalize must be a bool, got {normalize!r}")
    o, ret, dest = _pair_out(la, lb, out)
    _k.guidance(la.array, lb.array, o, g, bool(normalize), _threads[0])
    if dest is not None:
        np.copyto(dest, o)
        o = dest
    return ret if ret is not None else la.wrap_float(o)


# --------------------------------------------------------------------------------------------
# adaptive samplers (csrc/core/adaptive.c): adaptive / dynamic temperature, XTC, DRY

__all__ += ["adaptive_temperature", "dynamic_temperature", "xtc", "dry"]

# XTC's coin is fd_uniform(seed, position, _XTC_DRAW) (fd.h FD_DRAW_XTC); sample() draws with 0
_XTC_DRAW = 0x5854430000000000


def _fresh_out(lg: Logits, out: Any) -> tuple[np.ndarray, Any]:
    o, ret = prepare_out(out, lg)
    resolve_alias(lg, o)
    return o, ret


def adaptive_temperature(logits: Any, *, out: Any = None, return_beta: bool = False,
                         dtype: str | None = None) -> Any:
    """Adaptive temperature of Veličković et al. 2024 ("Softmax is not enough", arXiv 2410.01104).

    Parameters
    ----------
    logits : array_like, shape (B, V) or (V,)
    out : array, optional
        Destination of the logits' shape and dtype; may be the input itself.
    return_beta : bool
        Also return the factor ``beta`` of each row (float64, (B,) or 0-d).
    dtype : {None, "bfloat16"}
        "bfloat16" when ``logits`` is a ``uint16`` array holding bfloat16 bits.

    Returns
    -------
    ndarray or torch.Tensor
        ``logits * beta`` per row (and ``beta`` with ``return_beta``).

    Notes
    -----
    ``H`` is the entropy (nats) of ``softmax(logits)``. If ``H > 0.5``:
    ``beta = max(poly(H), 1)`` with ``poly(H) = -0.037 H^4 + 0.481 H^3 - 2.3 H^2 + 4.917 H - 1.791``
    (the paper's fit, its reference code's ``jnp.polyval``), else ``beta = 1``: the distribution is
    only ever sharpened. The paper's snippet takes the entropy of ``log(p + 1e-9)``; this uses the
    exact entropy (the two differ by less than 1e-8 nats per token). The product is computed in
    float32 (float64 for float64 input) and rounded once to the dtype. A row whose scaled maximum
    would overflow the dtype becomes the one-hot of its first maximum (its value kept, the rest
    ``-inf``). A row with no finite logit raises ``ValueError``.

    Raises
    ------
    TypeError
        ``logits`` or ``out`` of an unsupported dtype.
    ValueError
        NaN logits or a row with no finite logit (naming the row), a wrong shape.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> x = np.array([1.0, 3.0, 2.0, 3.0], dtype=np.float32)
    >>> fd.adaptive_temperature(x, return_beta=True)  # H = 1.17 > 0.5: sharpened
    (array([1.5179, 4.5536, 3.0357, 4.5536], dtype=float32), array(1.5179))
    """
    lg = as_logits(logits, dtype=dtype)
    o, ret = _fresh_out(lg, out)
    beta = np.empty(lg.batch, dtype=np.float64) if return_beta else None
    _k.adaptive_temperature(lg.array, o, beta, _threads[0])
    res = ret if ret is not None else lg.wrap_logits(o)
    return (res, lg.wrap_rows(beta)) if return_beta else res


def dynamic_temperature(logits: Any, temperature: Any, delta: Any, exponent: Any = 1.0, *,
                        out: Any = None, return_temperature: bool = False,
                        dtype: str | None = None) -> Any:
    """Entropy-driven temperature (llama.cpp ``llama_sampler_temp_ext``, "dynatemp", arXiv 2309.02772).

    Parameters
    ----------
    logits : array_like, shape (B, V) or (V,)
    temperature : float or array of B floats, >= 0
        The centre temperature ``T`` (llama.cpp ``temp``).
    delta : float or array of B floats, >= 0
        The half-range (llama.cpp ``dynatemp_range``); 0 gives plain temperature ``T``.
    exponent : float or array of B floats, >= 0
        llama.cpp ``dynatemp_exponent``.
    out : array, optional
        Destination of the logits' shape and dtype; may be the input itself.
    return_temperature : bool
        Also return the temperature applied to each row (float64; NaN where none was applied).
    dtype : {None, "bfloat16"}
        "bfloat16" when ``logits`` is a ``uint16`` array holding bfloat16 bits.

    Returns
    -------
    ndarray or torch.Tensor
        ``logits / T'`` per row (and ``T'`` with ``return_temperature``).

    Notes
    -----
    llama.cpp's rules, one by one. ``delta == 0``: ``T' = T``. Otherwise, with ``N`` the number of
    finite logits (the candidates still in play: run it after the filters, as llama.cpp does, and
    ``-inf`` tokens do not count) and ``H`` the entropy of their softmax: ``N <= 1`` leaves the row
    unchanged; else ``T' = T_min + (T_max - T_min) * (H / ln N) ** exponent`` (the ratio clamped
    to [0, 1] against rounding) with
    ``T_min = max(0, T - delta)``, ``T_max = T + delta``. ``T' == 0`` is greedy as in llama.cpp: the
    first maximum keeps its logit and every other token becomes ``-inf`` (also when ``logits / T'``
    would overflow the dtype). Division in float32 (float64 for float64 input), rounded once to
    the dtype. A row with no finite logit is returned unchanged.

    Raises
    ------
    TypeError
        ``logits`` or ``out`` of an unsupported dtype.
    ValueError
        ``temperature``, ``delta`` or ``exponent`` negative or not finite (the message names it and
        the row), NaN logits, a wrong shape.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> x = np.array([1.0, 3.0, 2.0, 3.0], dtype=np.float32)
    >>> fd.dynamic_temperature(x, 1.0, 0.5, return_temperature=True)  # T' in [0.5, 1.5]
    (array([0.743, 2.229, 1.486, 2.229], dtype=float32), array(1.3459))
    """
    lg = as_logits(logits, dtype=dtype)
    b = lg.batch
    t = row_param(temperature, b, "temperature", lo=0.0, hi=math.inf, hi_open=True)
    d = row_param(delta, b, "delta", lo=0.0, hi=math.inf, hi_open=True)
    e = row_param(exponent, b, "exponent", lo=0.0, hi=math.inf, hi_open=True)
    o, ret = _fresh_out(lg, out)
    tt = np.empty(b, dtype=np.float64) if return_temperature else None
    _k.dynamic_temperature(lg.array, o, t, d, e, tt, _threads[0])
    res = ret if ret is not None else lg.wrap_logits(o)
    return (res, lg.wrap_rows(tt)) if return_temperature else res


def xtc(logits: Any, probability: Any, threshold: Any, *, seed: Any = None, position: Any = 0,
        min_tokens_to_keep: Any = 1, uniforms: Any = None, filter_value: Any = _NEG_INF,
        out: Any = None, dtype: str | None = None) -> Any:
    """Exclude Top Choices (llama.cpp ``llama_sampler_xtc``).

    Parameters
    ----------
    logits : array_like, shape (B, V) or (V,)
    probability : float or array of B floats in [0, 1]
        Chance that the exclusion happens at this step (0 disables).
    threshold : float or array of B floats in [0, 1]
        Tokens with probability ``>= threshold`` are "top choices"; above 0.5 XTC is a no-op.
    seed, position
        The coin of row r is the Philox uniform keyed by (its seed, its position, a draw index of
        its own), so it depends on nothing else in the batch and is independent of the token
        :func:`sample` draws at the same (seed, position). See :func:`sample` for the types.
    min_tokens_to_keep : int or array of B ints, >= 1
        No exclusion when it would leave fewer candidates (llama.cpp ``min_keep``; 0 there is 1).
    uniforms : array of B floats in [0, 1), optional
        Use these coins instead of the generator.
    filter_value : float, default -inf
        Value written to excluded tokens (not ``+inf``).
    out : array, optional
        Destination of the logits' shape and dtype; may be the input itself.
    dtype : {None, "bfloat16"}
        "bfloat16" when ``logits`` is a ``uint16`` array holding bfloat16 bits.

    Returns
    -------
    ndarray or torch.Tensor
        The logits with the excluded tokens set to ``filter_value``.

    Raises
    ------
    TypeError
        ``logits`` or ``out`` of an unsupported dtype, a bad ``seed`` type.
    ValueError
        ``probability``, ``threshold`` or ``uniforms`` outside their ranges, a bad ``seed`` or
        ``position``, ``filter_value`` NaN or ``+inf``, NaN logits (messages name the argument).

    Notes
    -----
    A row is left unchanged unless ``probability > 0``, ``threshold <= 0.5``, it has at least two
    finite logits, and its coin ``u <= probability`` (llama.cpp skips when ``chance >
    probability``). Then, with ``p`` the softmax of the finite logits, the tokens with
    ``p >= threshold`` are found; if there are at least two, all of them except the least likely
    (the smallest logit; the lowest id among equal ones) are removed, unless that would leave
    fewer than ``min_tokens_to_keep`` finite tokens. Probabilities are float32 weights
    ``w = exp(z - max)`` over their float64 sum ``Z``; ``p >= threshold`` is evaluated as
    ``w >= threshold * Z``. No sort.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> x = np.array([1.0, 3.0, 2.0, 3.0], dtype=np.float32)
    >>> fd.xtc(x, 1.0, 0.1, seed=0)  # tokens 1, 2, 3 have p >= 0.1: all but the least likely go
    array([  1., -inf,   2., -inf], dtype=float32)
    """
    lg = as_logits(logits, dtype=dtype)
    b = lg.batch
    p = row_param(probability, b, "probability", lo=0.0, hi=1.0)
    t = row_param(threshold, b, "threshold", lo=0.0, hi=1.0)
    mk = _min_keep(min_tokens_to_keep, b)
    u = None
    if uniforms is not None:
        u = row_param(uniforms, b, "uniforms", lo=0.0, hi=1.0, hi_open=True)
    seeds = _seeds(seed, b)
    pos = _positions(position, b)
    fv = _filter_value(filter_value)
    if fv == math.inf:
        raise ValueError("filter_value must not be +inf")
    o, ret = _fresh_out(lg, out)
    _k.xtc(lg.array, o, p, t, mk, seeds, pos, u, fv, _threads[0])
    return ret if ret is not None else lg.wrap_logits(o)


def _breakers(sequence_breakers: Any, vocab: int, name: str = "sequence_breakers") -> tuple[np.ndarray, np.ndarray]:
    """Token-id sequences as (flat int64, offsets int64), validated."""
    if sequence_breakers is None:
        sequence_breakers = ()
    if isinstance(sequence_breakers, (str, bytes)) or not isinstance(sequence_breakers, (Sequence, np.ndarray)):
        raise TypeError(f"{name} must be a list of token-id sequences, e.g. [[13], [25, 7]]")
    seqs = []
    for i, s in enumerate(sequence_breakers):
        if isinstance(s, (int, np.integer)) and not isinstance(s, (bool, np.bool_)):
            s = [s]  # a bare id is a one-token breaker
        if isinstance(s, (str, bytes)) or not isinstance(s, (Sequence, np.ndarray)):
            raise TypeError(f"{name}[{i}] must be a sequence of token ids (llama.cpp's strings must be "
                            "tokenized first)")
        a = as_id_list(s, f"{name}[{i}]")
        if a.size == 0:
            raise ValueError(f"{name}[{i}] is empty")
        if a.min() < 0 or a.max() >= vocab:
            raise ValueError(f"{name}[{i}]: token id outside [0, {vocab})")
        seqs.append(a)
    flat = np.ascontiguousarray(np.concatenate(seqs) if seqs else np.zeros(0, np.int64), dtype=np.int64)
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([s.size for s in seqs])
    return flat, offsets


def dry(logits: Any, input_ids: Any, multiplier: Any, base: Any = 1.75, allowed_length: Any = 2,
        penalty_last_n: Any = -1, sequence_breakers: Any = (), *, lengths: Any = None,
        out: Any = None, dtype: str | None = None) -> Any:
    """DRY, "Don't Repeat Yourself" (llama.cpp ``llama_sampler_dry``, from Koboldcpp).

    Parameters
    ----------
    logits : array_like, shape (B, V) or (V,)
    input_ids : array_like of int, shape (B, T) or (T,)
        Token history (prompt included if the caller wants it counted).
    multiplier : float or array of B floats, >= 0
        0 disables.
    base : float or array of B floats, >= 1
    allowed_length : int or array of B ints, >= 0
        Repeats up to this length are free.
    penalty_last_n : int or array of B ints, >= -1
        Only the last ``penalty_last_n`` tokens are searched; -1: the whole history; 0 disables.
    sequence_breakers : list of token-id sequences
        A repeat cannot extend across a breaker. llama.cpp takes strings (default
        ``["\\n", ":", "\\"", "*"]``) and tokenizes them itself, keeping every tokenization that
        overlaps the string; here the caller passes the id sequences (e.g. ``[[198], [25]]``), so
        the default is none. A bare int is a one-token breaker.
    lengths : int or array of B ints, optional
        Valid length of each history row (right padding beyond it is ignored).
    out : array, optional
        Destination of the logits' shape and dtype; may be the input itself.
    dtype : {None, "bfloat16"}
        "bfloat16" when ``logits`` is a ``uint16`` array holding bfloat16 bits.

    Returns
    -------
    ndarray or torch.Tensor
        The penalised logits.

    Raises
    ------
    TypeError
        ``sequence_breakers`` not a list of id sequences, ``input_ids`` not integers, ``logits``
        of an unsupported dtype.
    ValueError
        A parameter outside its range (naming it), an empty breaker or an id outside ``[0, V)``
        (naming ``sequence_breakers[i]`` or the ``input_ids`` row and position), NaN logits.

    Notes
    -----
    llama.cpp's algorithm exactly: in the window ``w`` (the last ``penalty_last_n`` tokens), the
    last sequence breaker caps the repeat length (no penalty if the cap is below
    ``allowed_length``); for every earlier position ``j`` the length ``L`` of the longest common
    suffix of ``w[:j + 1]`` and ``w`` is found (the Z-algorithm, linear time, capped); a token
    ``w[j + 1]`` that would extend a repeat with ``L >= allowed_length`` gets
    ``z -= multiplier * base ** (L - allowed_length)`` once, with the largest such ``L``, unless it
    is a one-token breaker. The exponent is capped at ``int(88.7228391 / ln(base))`` for
    ``base > 1.000001`` (llama.cpp's overflow guard). Arithmetic as llama.cpp: parameters rounded to
    float32, the penalty ``float32(multiplier * base ** e)`` in float64, the subtraction in float32
    (float64 input: float64 throughout). Ids must lie in ``[0, V)``.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> z = np.zeros(8, dtype=np.float32)
    >>> fd.dry(z, [5, 6, 7, 1, 5, 6], 1.0, 2.0, 2)  # 7 would extend the repeat "5 6" (L = 2)
    array([ 0.,  0.,  0.,  0.,  0.,  0.,  0., -1.], dtype=float32)
    >>> fd.dry(z, [5, 6, 7, 1, 5, 6, 7], 1.0, 2.0, 2)  # 1 would extend "5 6 7": 2 ** (3 - 2)
    array([ 0., -2.,  0.,  0.,  0.,  0.,  0.,  0.], dtype=float32)
    """
    lg, o, ret = _inplace_target(logits, out, dtype)
    ids = as_ids_matrix(input_ids, lg.batch)
    b = lg.batch
    m = row_param(multiplier, b, "multiplier", lo=0.0, hi=math.inf, hi_open=True)
    bs = row_param(base, b, "base", lo=1.0, hi=math.inf, hi_open=True)
    al = row_param(allowed_length, b, "allowed_length", lo=0, hi=2.0**31 - 1, integer=True)
    ln = row_param(penalty_last_n, b, "penalty_last_n", lo=-1, hi=2.0**62, integer=True)
    flat, offsets = _breakers(sequence_breakers, lg.vocab)
    _, e = row_bounds(b, ids.shape[1], lengths=lengths)
    _check_history(ids, None, e, lg.vocab)
    _k.dry(_filled(lg, o), ids, None, e, m, bs, al, ln, flat, offsets)
    return _done(lg, o, ret)
