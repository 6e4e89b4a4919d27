"""Plain-NumPy twins of the public ``fastdecode`` functions (used by the tests only).

Every function here computes, slowly and obviously, what the C core computes quickly. It may sort,
loop over rows and allocate freely; what it must not do is differ from the contract in
``csrc/include/fastdecode/fd.h``:

* Decisions (which tokens a filter keeps) are made on the logits rounded to float32 (float64 input
  is rounded too, as the core does), with probabilities, sums and entropies evaluated in float64.
  The core evaluates probabilities in float32, so a token whose decision lies within float32
  rounding of a threshold may legitimately go either way; the tests bracket such rows with
  :func:`filter_mask` at slightly perturbed parameters.
* Ties: wherever m of several equal values must be kept, the m lowest token ids are kept; argmax
  is the first maximum.
* Kept logits are copied through bit for bit; removed ones become ``filter_value`` (rounded to the
  dtype). Penalties compute in float32 with float32-rounded parameters (float64 for float64
  input) and round once to the dtype: z * theta or z / theta; z - frequency * count, then
  - presence (vLLM's two subtractions); z + bias.
* Softmax/log-softmax: float64 internally, returned as float32 (float64 for float64 input).

Input: NumPy arrays of float16/float32/float64, shape (V,) or (B, V); the result keeps the shape and
dtype. bfloat16 is the callers' business (the tests upcast to float32, which is exact). Parameters
may be scalars or length-B arrays. Invalid input raises ValueError/TypeError naming the argument
(and the row), like the public API, so the tests can check "C raised <=> reference raised".
"""

import math

import numpy as np

__all__ = [
    "softmax", "log_softmax", "entropy", "varentropy", "argmax",
    "top_k", "top_p", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff", "top_n_sigma",
    "filter_mask",
    "repetition_penalty", "presence_frequency_penalty", "no_repeat_ngram", "logit_bias",
    "suppress_tokens", "allowed_tokens", "allowed_tokens_bitmask", "bad_words",
    "sample_distribution", "sample", "Sampler", "beam_step",
]

_FLOATS = (np.float16, np.float32, np.float64)


# ------------------------------------------------------------------------------------------------
# validation and coercion


def _logits(x, name="logits", check_values=True):
    """Returns (2-D array view, was_1d). Validates dtype, ndim and (check_values) NaN / +inf.

    The penalty/constraint kernels read only the columns they edit and therefore do not scan rows
    for NaN / +inf (csrc/core/penalty.c); a NaN survives them and is rejected by the next kernel
    that loads whole rows (a filter, softmax, argmax or sample)."""
    x = np.asarray(x) if not isinstance(x, np.ndarray) else x
    if x.dtype.type not in _FLOATS:
        raise TypeError(f"{name} must be float16, float32 or float64, got {x.dtype}")
    if x.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D or 2-D, got {x.ndim}-D")
    one = x.ndim == 1
    x2 = x[None, :] if one else x
    if x2.shape[1] == 0:
        raise ValueError(f"{name} must have at least one column")
    for r in range(x2.shape[0] if check_values else 0):
        row = x2[r]
        if np.isnan(row).any():
            raise ValueError(f"{name} row {r} contains NaN")
        if np.isposinf(row).any():
            raise ValueError(f"{name} row {r} contains +inf")
    return x2, one


def _per_row(value, n_rows, name, *, dtype=np.float64):
    """A parameter as a length-n_rows array (scalar broadcast)."""
    a = np.asarray(value)
    if a.dtype == object or a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a number or an array of numbers")
    if a.ndim == 0 or (a.ndim == 1 and a.shape[0] == 1):
        a = np.full(n_rows, a.reshape(-1)[0])
    elif a.ndim != 1 or a.shape[0] != n_rows:
        raise ValueError(f"{name} must be a scalar or have one value per row ({n_rows}), "
                         f"got shape {a.shape}")
    if a.dtype.kind == "f" and np.isnan(a).any():
        raise ValueError(f"{name} must not be NaN")
    return a.astype(dtype)


def _per_row_int(value, n_rows, name):
    a = np.asarray(value)
    if a.dtype.kind == "f":
        if np.any(a != np.floor(a)):
            raise ValueError(f"{name} must be an integer")
    elif a.dtype.kind not in "biu":
        raise TypeError(f"{name} must be an integer")
    return _per_row(a, n_rows, name, dtype=np.int64)


def _z(x2):
    """Logits as float64 after rounding to float32 (the core decides in float32)."""
    return x2.astype(np.float32).astype(np.float64)


def _desc_order(z):
    """Token order by descending value, ties by ascending id."""
    return np.argsort(-z, kind="stable")


def _softmax_row(z):
    m = np.max(z)
    if m == -np.inf:
        return np.zeros_like(z)
    e = np.exp(z - m)
    return e / e.sum()


def _log_softmax_row(z):
    m = np.max(z)
    lse = m + np.log(np.exp(z - m).sum())
    return z - lse


def _entropy_row(z):
    p = _softmax_row(z)
    lp = _log_softmax_row(z)
    fin = p > 0
    h = -np.sum(p[fin] * lp[fin])
    v = np.sum(p[fin] * (lp[fin] + h) ** 2)
    return h, v


# ------------------------------------------------------------------------------------------------
# softmax family


def _softmax_impl(logits, temperature, log):
    x2, one = _logits(logits)
    B, V = x2.shape
    t = _per_row(temperature, B, "temperature")
    if np.any(t < 0) or np.any(~np.isfinite(t)):
        r = int(np.nonzero((t < 0) | ~np.isfinite(t))[0][0])
        raise ValueError(f"temperature must be >= 0 and finite (row {r})")
    z = _z(x2) if x2.dtype != np.float64 else x2.astype(np.float64)
    odt = np.float64 if x2.dtype == np.float64 else np.float32
    res = np.empty((B, V), dtype=np.float64)
    for r in range(B):
        if np.max(z[r]) == -np.inf:
            raise ValueError(f"logits row {r} has no finite value")
        if t[r] == 0:
            oh = np.zeros(V)
            oh[int(np.argmax(z[r]))] = 1.0
            res[r] = np.log(oh, where=oh > 0, out=np.full(V, -np.inf)) if log else oh
        else:
            zr = z[r] / t[r]
            res[r] = _log_softmax_row(zr) if log else _softmax_row(zr)
    res = res.astype(odt)
    return res[0] if one else res


def softmax(logits, *, temperature=1.0):
    """softmax(logits / T) per row; T = 0 gives the one-hot of the first maximum."""
    return _softmax_impl(logits, temperature, False)


def log_softmax(logits, *, temperature=1.0):
    """log_softmax(logits / T) per row; T = 0 gives 0 at the first maximum, -inf elsewhere."""
    return _softmax_impl(logits, temperature, True)


def _entropies(logits):
    x2, one = _logits(logits)
    z = x2.astype(np.float64)
    h = np.empty(x2.shape[0])
    v = np.empty(x2.shape[0])
    for r in range(x2.shape[0]):
        if np.max(z[r]) == -np.inf:
            raise ValueError(f"logits row {r} has no finite value")
        h[r], v[r] = _entropy_row(z[r])
    if one:
        return np.float64(h[0]), np.float64(v[0])
    return h, v


def entropy(logits):
    """H = -sum p log p in nats, float64 per row."""
    return _entropies(logits)[0]


def varentropy(logits):
    """sum p (log p + H)^2, float64 per row."""
    return _entropies(logits)[1]


def argmax(logits):
    """First index of the maximum per row (int64); an all -inf row raises."""
    x2, one = _logits(logits)
    res = np.empty(x2.shape[0], dtype=np.int64)
    for r in range(x2.shape[0]):
        if np.max(x2[r]) == -np.inf:
            raise ValueError(f"logits row {r} has no finite value")
        res[r] = int(np.argmax(x2[r]))
    return res[0] if one else res


# ------------------------------------------------------------------------------------------------
# filters: keep masks on one float64 row z (already rounded to float32 values)


def _keep_top_k(z, k, min_keep):
    V = z.shape[0]
    if k == 0:
        return np.ones(V, dtype=bool)
    k = min(max(k, min_keep), V)
    kth = np.sort(z)[::-1][k - 1]
    return z >= kth


def _keep_first_walk(order, m):
    keep = np.zeros(order.shape[0], dtype=bool)
    keep[order[:m]] = True
    return keep


def _keep_top_p(z, p, min_keep):
    V = z.shape[0]
    if p >= 1.0:
        return np.ones(V, dtype=bool)
    probs = _softmax_row(z)
    # HF's tie order: it sorts ascending (stably, on short rows) and removes a prefix, so among
    # equal logits the higher id comes first in the descending walk
    order = np.lexsort((-np.arange(V), -z))
    sp = probs[order]
    before = np.concatenate(([0.0], np.cumsum(sp)[:-1]))
    keep_sorted = before < p
    keep_sorted[:min_keep] = True
    keep = np.zeros(V, dtype=bool)
    keep[order] = keep_sorted
    return keep


def _keep_min_p(z, p, min_keep):
    m = np.max(z)
    with np.errstate(divide="ignore"):
        lnp = math.log(p) if p > 0 else -np.inf
    keep = ~((z - m) < lnp) if m > -np.inf else np.ones(z.shape[0], dtype=bool)
    return keep | _keep_first_walk(_desc_order(z), min_keep)


def _keep_typical(z, mass, min_keep):
    V = z.shape[0]
    if mass >= 1.0:
        return np.ones(V, dtype=bool)
    lp = _log_softmax_row(z)
    p = np.exp(lp)
    fin = p > 0
    h = -np.sum(p[fin] * lp[fin])
    s = np.abs(-lp - h)
    order = np.argsort(s, kind="stable")
    cum = np.cumsum(p[order])
    hit = np.nonzero(cum >= mass)[0]
    c = int(hit[0]) if hit.size else V - 1
    keep = s <= s[order[c]]
    return keep | _keep_first_walk(order, min_keep)


def _kth_largest(z, m):
    m = min(m, z.shape[0])
    return np.sort(z)[::-1][m - 1]


def _keep_epsilon(z, eps, min_keep):
    p = _softmax_row(z)
    return (p >= eps) | (z >= _kth_largest(z, min_keep))


def _keep_eta(z, eps, min_keep):
    p = _softmax_row(z)
    h, _ = _entropy_row(z)
    eta = min(eps, math.sqrt(eps) * math.exp(-h))
    return (p >= eta) | (z >= _kth_largest(z, min_keep))


def _keep_top_n_sigma(z, n, min_keep):
    V = z.shape[0]
    if n <= 0:
        return np.ones(V, dtype=bool)
    fin = z[np.isfinite(z)]
    if fin.size == 0:
        return np.ones(V, dtype=bool)
    sigma = float(np.std(fin))
    keep = z >= np.max(fin) - n * sigma
    return keep | (z >= _kth_largest(z, min_keep))


_KEEPERS = {
    "top_k": _keep_top_k,
    "top_p": _keep_top_p,
    "min_p": _keep_min_p,
    "typical_p": _keep_typical,
    "epsilon_cutoff": _keep_epsilon,
    "eta_cutoff": _keep_eta,
    "top_n_sigma": _keep_top_n_sigma,
}

_PARAM_NAME = {
    "top_k": "k", "top_p": "p", "min_p": "p", "typical_p": "mass",
    "epsilon_cutoff": "epsilon", "eta_cutoff": "epsilon", "top_n_sigma": "n",
}


def _check_filter_param(kind, prm, name):
    if kind == "top_k":
        if np.any(prm < 0):
            r = int(np.nonzero(prm < 0)[0][0])
            raise ValueError(f"{name} must be >= 0 (row {r})")
    elif kind == "top_n_sigma":
        if np.any(~np.isfinite(prm)):
            raise ValueError(f"{name} must be finite")
    elif kind in ("epsilon_cutoff", "eta_cutoff"):
        bad = (prm < 0) | (prm >= 1) | ~np.isfinite(prm)
        if np.any(bad):
            r = int(np.nonzero(bad)[0][0])
            raise ValueError(f"{name} must be in [0, 1) (row {r})")
    else:
        bad = (prm < 0) | (prm > 1) | ~np.isfinite(prm)
        if np.any(bad):
            r = int(np.nonzero(bad)[0][0])
            raise ValueError(f"{name} must be in [0, 1] (row {r})")


def filter_mask(kind, logits, param, *, min_tokens_to_keep=1):
    """Boolean keep-mask (same shape as logits) of filter `kind` (a public function name)."""
    x2, one = _logits(logits)
    B, _ = x2.shape
    name = _PARAM_NAME[kind]
    prm = _per_row_int(param, B, name) if kind == "top_k" else _per_row(param, B, name)
    _check_filter_param(kind, prm, name)
    mk = _per_row_int(min_tokens_to_keep, B, "min_tokens_to_keep")
    if np.any(mk < 1):
        raise ValueError("min_tokens_to_keep must be >= 1")
    z = _z(x2)
    keeper = _KEEPERS[kind]
    masks = np.empty(x2.shape, dtype=bool)
    for r in range(B):
        if np.max(z[r]) == -np.inf:
            masks[r] = True  # nothing to choose between: the row stays all -inf
        else:
            masks[r] = keeper(z[r], prm[r].item(), int(mk[r]))
    return masks[0] if one else masks


def _apply_filter(kind, logits, param, min_tokens_to_keep, filter_value):
    x2, one = _logits(logits)
    keep = filter_mask(kind, x2, param, min_tokens_to_keep=min_tokens_to_keep)
    out = x2.copy()
    out[~keep] = np.asarray(filter_value, dtype=np.float64).astype(x2.dtype)
    return out[0] if one else out


def top_k(logits, k, *, min_tokens_to_keep=1, filter_value=-np.inf):
    """Remove z < (k-th largest z), k = min(max(k, min_keep), V); ties with the k-th are kept;
    k = 0 disables."""
    return _apply_filter("top_k", logits, k, min_tokens_to_keep, filter_value)


def top_p(logits, p, *, min_tokens_to_keep=1, filter_value=-np.inf):
    """Walk by descending z (ties: lower id first), keep while the mass before is < p; the first
    min_keep of the walk are always kept; p = 1 keeps everything."""
    return _apply_filter("top_p", logits, p, min_tokens_to_keep, filter_value)


def min_p(logits, p, *, min_tokens_to_keep=1, filter_value=-np.inf):
    """Remove z - max < ln p; keep the first min_keep of the descending walk."""
    return _apply_filter("min_p", logits, p, min_tokens_to_keep, filter_value)


def typical_p(logits, mass, *, min_tokens_to_keep=1, filter_value=-np.inf):
    """HF TypicalLogitsWarper (see fd.h); mass = 1 keeps everything."""
    return _apply_filter("typical_p", logits, mass, min_tokens_to_keep, filter_value)


def epsilon_cutoff(logits, epsilon, *, min_tokens_to_keep=1, filter_value=-np.inf):
    """Remove p < epsilon unless z >= (min_keep-th largest z)."""
    return _apply_filter("epsilon_cutoff", logits, epsilon, min_tokens_to_keep, filter_value)


def eta_cutoff(logits, epsilon, *, min_tokens_to_keep=1, filter_value=-np.inf):
    """Remove p < min(eps, sqrt(eps) exp(-H)) unless z >= (min_keep-th largest z)."""
    return _apply_filter("eta_cutoff", logits, epsilon, min_tokens_to_keep, filter_value)


def top_n_sigma(logits, n, *, min_tokens_to_keep=1, filter_value=-np.inf):
    """Keep z >= max - n * std(finite z) (population std); n <= 0 disables."""
    return _apply_filter("top_n_sigma", logits, n, min_tokens_to_keep, filter_value)


# ------------------------------------------------------------------------------------------------
# penalties and constraints


def _ids2(input_ids, B, name="input_ids"):
    a = np.asarray(input_ids)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got {a.dtype}")
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D")
    if a.shape[0] != B:
        raise ValueError(f"{name} has {a.shape[0]} rows, logits has {B}")
    return a.astype(np.int64)


def _bounds(ids, lengths, starts, last_n):
    """Per-row [begin, end) of the history."""
    B, T = ids.shape
    end = np.full(B, T, dtype=np.int64) if lengths is None else _per_row_int(lengths, B, "lengths")
    if np.any(end < 0) or np.any(end > T):
        r = int(np.nonzero((end < 0) | (end > T))[0][0])
        raise ValueError(f"lengths must be in [0, {T}] (row {r})")
    begin = np.zeros(B, dtype=np.int64)
    if starts is not None:
        name, val = starts
        begin = _per_row_int(val, B, name)
        if np.any(begin < 0):
            raise ValueError(f"{name} must be >= 0")
        begin = np.minimum(begin, end)
    if last_n is not None:
        ln = _per_row_int(last_n, B, "last_n")
        if np.any(ln < 0):
            raise ValueError("last_n must be >= 0")
        begin = np.maximum(begin, end - ln)
    return begin, end


def _check_range(ids, begin, end, V, name="input_ids"):
    for r in range(ids.shape[0]):
        h = ids[r, begin[r]:end[r]]
        bad = np.nonzero((h < 0) | (h >= V))[0]
        if bad.size:
            raise ValueError(f"{name} row {r} position {begin[r] + bad[0]}: id {h[bad[0]]} "
                             f"outside [0, {V})")


def _compute_dtype(x2):
    return np.float64 if x2.dtype == np.float64 else np.float32


def repetition_penalty(logits, input_ids, penalty, *, lengths=None, prompt_ignore_length=None,
                       last_n=None):
    """Every distinct id of the history once: z < 0 ? z * theta : z / theta (float32 arithmetic,
    float64 for float64 input)."""
    x2, one = _logits(logits, check_values=False)
    B, V = x2.shape
    th = _per_row(penalty, B, "penalty")
    if np.any(~(th > 0)) or np.any(~np.isfinite(th)):
        raise ValueError("penalty must be > 0")
    ids = _ids2(input_ids, B)
    starts = None if prompt_ignore_length is None else ("prompt_ignore_length",
                                                        prompt_ignore_length)
    begin, end = _bounds(ids, lengths, starts, last_n)
    _check_range(ids, begin, end, V)
    cd = _compute_dtype(x2)
    out = x2.copy()
    for r in range(B):
        toks = np.unique(ids[r, begin[r]:end[r]])
        z = x2[r, toks].astype(cd)
        t = cd(th[r])
        out[r, toks] = np.where(z < 0, z * t, z / t).astype(x2.dtype)
    return out[0] if one else out


def presence_frequency_penalty(logits, input_ids, *, presence=0.0, frequency=0.0, lengths=None,
                               prompt_lengths=None, last_n=None):
    """z -= frequency * count; z -= presence (where count > 0), counts over
    input_ids[r, prompt_lengths[r]:lengths[r]] (optionally only the last last_n of those)."""
    x2, one = _logits(logits, check_values=False)
    B, V = x2.shape
    pres = _per_row(presence, B, "presence")
    freq = _per_row(frequency, B, "frequency")
    if np.any(~np.isfinite(pres)) or np.any(~np.isfinite(freq)):
        raise ValueError("presence and frequency must be finite")
    ids = _ids2(input_ids, B)
    starts = None if prompt_lengths is None else ("prompt_lengths", prompt_lengths)
    begin, end = _bounds(ids, lengths, starts, last_n)
    _check_range(ids, begin, end, V)
    out = x2.copy()
    cd = _compute_dtype(x2)
    for r in range(B):
        cnt = np.bincount(ids[r, begin[r]:end[r]], minlength=V)
        hit = cnt > 0
        # vLLM's two in-place subtractions, in the compute dtype with the parameters rounded to it
        z = x2[r, hit].astype(cd)
        z = z - cd(freq[r]) * cnt[hit].astype(cd)
        z = z - cd(pres[r])
        out[r, hit] = z.astype(x2.dtype)
    return out[0] if one else out


def no_repeat_ngram(logits, input_ids, n, *, lengths=None, filter_value=-np.inf):
    """HF NoRepeatNGram on each row's history ids[r, :lengths[r]]: ban (filter_value) every token
    that would complete an n-gram already present."""
    x2, one = _logits(logits, check_values=False)
    B, V = x2.shape
    n = int(n)
    if n < 1:
        raise ValueError("n must be >= 1")
    ids = _ids2(input_ids, B)
    begin, end = _bounds(ids, lengths, None, None)
    _check_range(ids, begin, end, V)
    out = x2.copy()
    for r in range(B):
        h = ids[r, begin[r]:end[r]].tolist()
        L = len(h)
        if L < n:
            continue
        suffix = h[L - n + 1:] if n > 1 else []
        for i in range(L - n + 1):
            if h[i:i + n - 1] == suffix:
                out[r, h[i + n - 1]] = x2.dtype.type(filter_value)
    return out[0] if one else out


def logit_bias(logits, bias):
    """z[id] += value (float32 arithmetic; float64 for float64 input). bias is a dict
    {id: value} or a tuple (ids, values) with values (n,) shared or (B, n) per row; repeated ids
    add up in order."""
    x2, one = _logits(logits, check_values=False)
    B, V = x2.shape
    if isinstance(bias, dict):
        ids = [int(t) for t in bias.keys()]
        vals = np.broadcast_to(np.asarray(list(bias.values()), dtype=np.float64), (B, len(ids)))
    elif isinstance(bias, tuple) and len(bias) == 2:
        ids = [int(t) for t in np.asarray(bias[0]).reshape(-1)]
        v = np.asarray(bias[1], dtype=np.float64)
        if v.ndim == 2 and v.shape[0] == 1:
            v = v[0]
        vals = np.broadcast_to(v, (B, len(ids)))
    else:
        raise TypeError("bias must be a dict {token id: value} or a tuple (ids, values)")
    if np.isnan(vals).any():
        raise ValueError("bias values must not be NaN")
    cd = _compute_dtype(x2)
    acc = x2.astype(cd)
    for j, tok in enumerate(ids):
        if tok < 0 or tok >= V:
            raise ValueError(f"bias id {tok} outside [0, {V})")
        acc[:, tok] = (acc[:, tok] + vals[:, j].astype(cd)).astype(x2.dtype).astype(cd)
    out = x2.copy()
    touched = np.unique(np.asarray(ids, dtype=np.int64))
    out[:, touched] = acc[:, touched].astype(x2.dtype)
    return out[0] if one else out


def _id_list(ids, V, name="ids"):
    a = np.asarray(ids)
    if a.size == 0:
        return np.zeros(0, dtype=np.int64)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integers")
    a = a.reshape(-1).astype(np.int64)
    bad = (a < 0) | (a >= V)
    if bad.any():
        raise ValueError(f"{name}: id {a[bad][0]} outside [0, {V})")
    return a


def suppress_tokens(logits, ids, *, filter_value=-np.inf):
    """z[ids] = filter_value in every row."""
    x2, one = _logits(logits, check_values=False)
    out = x2.copy()
    out[:, _id_list(ids, x2.shape[1])] = x2.dtype.type(filter_value)
    return out[0] if one else out


def allowed_tokens(logits, ids, *, filter_value=-np.inf):
    """Every token not in ids becomes filter_value (ids: one list, or one list per row)."""
    x2, one = _logits(logits, check_values=False)
    B, V = x2.shape
    per_row = (isinstance(ids, (list, tuple)) and len(ids) > 0
               and isinstance(ids[0], (list, tuple, np.ndarray)))
    keep = np.zeros((B, V), dtype=bool)
    if per_row:
        if len(ids) not in (1, B):
            raise ValueError(f"ids has {len(ids)} rows, logits has {B}")
        for r in range(B):
            keep[r, _id_list(ids[r if len(ids) == B else 0], V)] = True
    else:
        keep[:, _id_list(ids, V)] = True
    out = x2.copy()
    out[~keep] = x2.dtype.type(filter_value)
    return out[0] if one else out


def bitmask_to_bool(bitmask, V):
    """Packed int32 words (bit i % 32 of word i // 32 set = token i allowed) -> bool (..., V)."""
    w = np.ascontiguousarray(np.asarray(bitmask).astype(np.int32)).view(np.uint32)
    bits = (w[..., :, None] >> np.arange(32, dtype=np.uint32)) & 1
    return bits.reshape(*w.shape[:-1], -1)[..., :V].astype(bool)


def bool_to_bitmask(allowed):
    """Inverse of bitmask_to_bool: bool (..., V) -> int32 words (..., ceil(V / 32))."""
    allowed = np.asarray(allowed, dtype=bool)
    V = allowed.shape[-1]
    W = (V + 31) // 32
    pad = np.zeros(allowed.shape[:-1] + (W * 32,), dtype=np.uint64)
    pad[..., :V] = allowed
    pad = pad.reshape(*allowed.shape[:-1], W, 32)
    words = (pad << np.arange(32, dtype=np.uint64)).sum(axis=-1).astype(np.uint32)
    return words.view(np.int32)


def allowed_tokens_bitmask(logits, bitmask, *, filter_value=-np.inf):
    """Disallowed tokens (bit clear) become filter_value."""
    x2, one = _logits(logits, check_values=False)
    B, V = x2.shape
    bm = np.asarray(bitmask)
    if bm.dtype != np.int32:
        raise TypeError("bitmask must be int32")
    if bm.ndim == 1:
        bm = np.broadcast_to(bm, (B, bm.shape[0]))
    if bm.ndim != 2 or bm.shape[0] != B or bm.shape[1] < (V + 31) // 32:
        raise ValueError(f"bitmask must have shape ({B}, {(V + 31) // 32})")
    keep = bitmask_to_bool(bm, V)
    out = x2.copy()
    out[~keep] = x2.dtype.type(filter_value)
    return out[0] if one else out


def bad_words(logits, input_ids, bad_words_ids, *, lengths=None, filter_value=-np.inf):
    """HF NoBadWords on ids[r, :lengths[r]]: a single-token word is always banned; a longer word
    bans its last token when the history ends with the rest of it."""
    x2, one = _logits(logits, check_values=False)
    B, V = x2.shape
    ids = _ids2(input_ids, B)
    begin, end = _bounds(ids, lengths, None, None)
    words = [list(map(int, w)) for w in bad_words_ids]
    for w in words:
        if len(w) == 0:
            raise ValueError("bad_words_ids entries must be non-empty")
        for t in w:
            if t < 0 or t >= V:
                raise ValueError(f"bad_words_ids id {t} outside [0, {V})")
    out = x2.copy()
    for r in range(B):
        h = ids[r, begin[r]:end[r]].tolist()
        for w in words:
            m = len(w)
            if m == 1 or (len(h) >= m - 1 and h[len(h) - (m - 1):] == w[:-1]):
                out[r, w[-1]] = x2.dtype.type(filter_value)
    return out[0] if one else out


# ------------------------------------------------------------------------------------------------
# sampling


_HF_CHAIN = ("top_n_sigma", "top_k", "top_p", "min_p", "typical_p", "epsilon_cutoff",
             "eta_cutoff")
_LLAMA_CHAIN = ("top_n_sigma", "top_k", "typical_p", "top_p", "min_p", "epsilon_cutoff",
                "eta_cutoff")
_DISABLED = {"top_k": 0, "top_p": 1.0, "min_p": 0.0, "typical_p": 1.0, "epsilon_cutoff": 0.0,
             "eta_cutoff": 0.0, "top_n_sigma": 0.0}


def _restricted(keeper, z, prm):
    """Apply a keeper (min_keep 1) to the surviving (finite) candidates only."""
    alive = np.isfinite(z)
    keep = np.zeros(z.shape[0], dtype=bool)
    keep[alive] = keeper(z[alive], prm, 1)
    return np.where(keep, z, -np.inf)


def sample_distribution(logits, *, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0,
                        typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0, top_n_sigma=0.0,
                        order="hf"):
    """The exact (float64) distribution sample() draws from, (B, V) (or (V,))."""
    x2, one = _logits(logits)
    B, V = x2.shape
    if order not in ("hf", "llama.cpp"):
        raise ValueError("order must be 'hf' or 'llama.cpp'")
    t = _per_row(temperature, B, "temperature")
    if np.any(t < 0) or np.any(~np.isfinite(t)):
        raise ValueError("temperature must be >= 0")
    prm = {
        "top_k": _per_row_int(top_k, B, "top_k"),
        "top_p": _per_row(top_p, B, "top_p"),
        "min_p": _per_row(min_p, B, "min_p"),
        "typical_p": _per_row(typical_p, B, "typical_p"),
        "epsilon_cutoff": _per_row(epsilon_cutoff, B, "epsilon_cutoff"),
        "eta_cutoff": _per_row(eta_cutoff, B, "eta_cutoff"),
        "top_n_sigma": _per_row(top_n_sigma, B, "top_n_sigma"),
    }
    for kind, v in prm.items():
        _check_filter_param(kind, v, kind)
    z = _z(x2)
    res = np.zeros((B, V))
    for r in range(B):
        if np.max(z[r]) == -np.inf:
            raise ValueError(f"logits row {r} has no finite value")
        if t[r] == 0:
            res[r, int(np.argmax(z[r]))] = 1.0
            continue
        zr = z[r] / t[r] if order == "hf" else z[r].copy()
        for kind in (_HF_CHAIN if order == "hf" else _LLAMA_CHAIN):
            v = prm[kind][r].item()
            if v == _DISABLED[kind] or (kind == "top_n_sigma" and v <= 0):
                continue
            zr = _restricted(_KEEPERS[kind], zr, v)
        if order != "hf":
            zr = zr / t[r]
        res[r] = _softmax_row(zr)
    return res[0] if one else res


def sample(logits, *, uniform, return_logprobs=False, **params):
    """Inverse-CDF pick from sample_distribution() with explicit uniforms u in [0, 1): the first
    id (ascending) whose running weight exceeds u * total."""
    probs = sample_distribution(logits, **params)
    one = probs.ndim == 1
    p2 = probs[None, :] if one else probs
    u = _per_row(uniform, p2.shape[0], "uniform")
    cum = np.cumsum(p2, axis=1)
    tok = np.array([int(np.argmax(cum[r] > u[r] * cum[r, -1])) for r in range(p2.shape[0])],
                   dtype=np.int64)
    lp = np.log(p2[np.arange(p2.shape[0]), tok])
    if one:
        tok, lp = tok[0], lp[0]
    return (tok, lp) if return_logprobs else tok


class Sampler:
    """Penalties on a private float32 copy (float64 stays float64), in the order of
    fastdecode.Sampler: repetition -> presence/frequency -> no-repeat n-gram -> bad words ->
    logit bias -> suppress -> whitelist; then the fused sampler's distribution
    (`distribution()`), or a pick with explicit uniforms (`__call__`)."""

    def __init__(self, *, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0,
                 epsilon_cutoff=0.0, eta_cutoff=0.0, top_n_sigma=0.0, repetition_penalty=1.0,
                 presence_penalty=0.0, frequency_penalty=0.0, penalty_last_n=None,
                 no_repeat_ngram_size=0, logit_bias=None, bad_words_ids=None,
                 suppress_tokens=None, allowed_token_ids=None, order="hf", seed=None):
        self.params = dict(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                           typical_p=typical_p, epsilon_cutoff=epsilon_cutoff,
                           eta_cutoff=eta_cutoff, top_n_sigma=top_n_sigma, order=order)
        self.repetition_penalty = repetition_penalty
        self.presence_penalty = presence_penalty
        self.frequency_penalty = frequency_penalty
        self.penalty_last_n = penalty_last_n
        self.no_repeat_ngram_size = no_repeat_ngram_size
        self.logit_bias = logit_bias
        self.bad_words_ids = bad_words_ids
        self.suppress_tokens = suppress_tokens
        self.allowed_token_ids = allowed_token_ids
        self.seed = seed

    def penalized(self, logits, input_ids=None, *, prompt_lengths=None, lengths=None):
        x2, one = _logits(logits)
        z = x2.astype(np.float64 if x2.dtype == np.float64 else np.float32)
        last_n = self.penalty_last_n
        if np.any(np.asarray(self.repetition_penalty) != 1.0):
            z = repetition_penalty(z, input_ids, self.repetition_penalty, lengths=lengths,
                                   last_n=last_n)
        if (np.any(np.asarray(self.presence_penalty) != 0)
                or np.any(np.asarray(self.frequency_penalty) != 0)):
            z = presence_frequency_penalty(z, input_ids, presence=self.presence_penalty,
                                           frequency=self.frequency_penalty, lengths=lengths,
                                           prompt_lengths=prompt_lengths, last_n=last_n)
        if self.no_repeat_ngram_size:
            z = no_repeat_ngram(z, input_ids, self.no_repeat_ngram_size, lengths=lengths)
        if self.bad_words_ids:
            z = bad_words(z, input_ids, self.bad_words_ids, lengths=lengths)
        if self.logit_bias:
            z = logit_bias(z, self.logit_bias)
        if self.suppress_tokens is not None and len(self.suppress_tokens):
            z = suppress_tokens(z, self.suppress_tokens)
        if self.allowed_token_ids is not None:
            z = allowed_tokens(z, self.allowed_token_ids)
        return z[0] if one else z

    def distribution(self, logits, input_ids=None, *, prompt_lengths=None, lengths=None):
        z = self.penalized(logits, input_ids, prompt_lengths=prompt_lengths, lengths=lengths)
        return sample_distribution(z, **self.params)

    def __call__(self, logits, input_ids=None, *, uniform, prompt_lengths=None, lengths=None,
                 return_logprobs=False):
        z = self.penalized(logits, input_ids, prompt_lengths=prompt_lengths, lengths=lengths)
        return sample(z, uniform=uniform, return_logprobs=return_logprobs, **self.params)


# ------------------------------------------------------------------------------------------------
# beam search


def beam_step(logits, beam_scores, k, *, group_size=None, normalize=True, logprobs=None):
    """HF's beam step: s = lp + beam_scores[r] (float32 addition) over each group of group_size
    rows, the k largest per group, ties by the smaller flat index (row in group) * V + token.

    lp is log_softmax(logits) rounded to float32 (normalize) or the logits as float32. NumPy's exp
    differs from the core's in the last bit, so for a bit-exact comparison pass the core's own
    ``logprobs`` (e.g. ``fastdecode.log_softmax(logits)``); the default computes them here in
    float64 from the float32 logits, as the core does (float32 z - max, then - log Z in float64).
    Returns (scores float32 (G, k), rows int64 (G, k) as rows of logits, tokens int64 (G, k)).
    """
    x2 = np.asarray(logits)
    if x2.ndim != 2:
        raise ValueError(f"logits must be 2-D (rows, V), got {x2.ndim}-D")
    x2, _ = _logits(x2)
    R, V = x2.shape
    gs = R if group_size is None else int(group_size)
    if gs < 1 or R % gs:
        raise ValueError(f"group_size must be a positive divisor of {R}, got {gs}")
    if not 1 <= int(k) <= gs * V:
        raise ValueError(f"k must be in [1, {gs * V}], got {k}")
    k = int(k)
    b = np.asarray(beam_scores, dtype=np.float64)
    if b.shape != (R,):
        raise ValueError(f"beam_scores must have shape ({R},), got {b.shape}")
    b = b.astype(np.float32)
    if np.isnan(b).any() or (b == np.inf).any():
        raise ValueError("beam_scores must not be NaN or +inf")
    # float32 logits; the core saturates finite float64 beyond the float32 range to +-FLT_MAX
    big = np.finfo(np.float32).max
    z = x2.astype(np.float64)
    z = np.where(np.isfinite(z), np.clip(z, -big, big), z).astype(np.float32)
    if not normalize:
        lp = z
    elif logprobs is not None:
        lp = np.asarray(logprobs).astype(np.float32)
    else:
        lp = np.empty((R, V), dtype=np.float32)
        for r in range(R):
            m = np.max(z[r])
            if m == -np.inf:
                raise ValueError(f"logits row {r} has no finite value")
            d = (z[r] - m).astype(np.float64)  # a float32 subtraction, exact in float64
            lp[r] = (d - np.log(np.exp(d).sum())).astype(np.float32)
    s = lp + b[:, None]  # float32 + float32: one float32 rounding, as torch
    G = R // gs
    out_s = np.empty((G, k), dtype=np.float32)
    out_r = np.empty((G, k), dtype=np.int64)
    out_t = np.empty((G, k), dtype=np.int64)
    for g in range(G):
        flat = s[g * gs:(g + 1) * gs].reshape(-1)
        order = np.lexsort((np.arange(flat.size), -flat))[:k]
        out_s[g] = flat[order]
        out_r[g] = g * gs + order // V
        out_t[g] = order % V
    return out_s, out_r, out_t


def speculative_verify(target_logits, draft_tokens, draft_logits=None, *, accept_uniforms,
                       next_uniforms, num_drafts=None, greedy=False):
    """Speculative verification (Leviathan et al. 2023, Algorithm 1) in float64 with explicit
    uniforms: ``accept_uniforms`` (B, gamma) for the tests of the drafts, ``next_uniforms``
    (B, gamma + 1) for the token drawn at each draft index (residual or bonus). Returns
    (num_accepted, next_token), int64 (B,)."""
    t = np.asarray(target_logits)
    d = np.asarray(draft_tokens, dtype=np.int64)
    B, G1, V = t.shape
    G = G1 - 1
    q = None if draft_logits is None else np.asarray(draft_logits)
    n = np.full(B, G, np.int64) if num_drafts is None else np.broadcast_to(
        np.asarray(num_drafts, np.int64), (B,))
    g = np.broadcast_to(np.asarray(greedy, bool), (B,))
    ua = np.asarray(accept_uniforms, np.float64).reshape(B, G)
    un = np.asarray(next_uniforms, np.float64).reshape(B, G1)
    acc = np.zeros(B, np.int64)
    nxt = np.zeros(B, np.int64)

    def pick(w, u):
        cum = np.cumsum(w)
        return int(np.argmax(cum > u * cum[-1]))

    for b in range(B):
        if g[b]:
            for i in range(n[b] + 1):
                am = int(np.argmax(_z(t[b, i])))
                if i == n[b] or d[b, i] != am:
                    acc[b], nxt[b] = i, am
                    break
            continue
        for i in range(n[b] + 1):
            p = _softmax_row(_z(t[b, i]))
            if i == n[b]:
                acc[b], nxt[b] = i, pick(p, un[b, i])
                break
            qv = np.zeros(V)
            if q is None:
                qv[d[b, i]] = 1.0
            else:
                qv = _softmax_row(_z(q[b, i]))
            if ua[b, i] * qv[d[b, i]] < p[d[b, i]]:
                continue
            r = np.maximum(p - qv, 0.0)
            acc[b] = i
            nxt[b] = pick(r, un[b, i]) if r.sum() > 0 else pick(p, un[b, i])
            break
    return acc, nxt


# ------------------------------------------------------------------------------------------------
# stateful samplers: mirostat v1 / v2 and the entropix policy (fastdecode.adaptive)

__all__ += ["mirostat", "mirostat_v1_k", "entropix"]

_LN2 = 0.6931471805599453  # the double nearest ln 2, as the core's constant rounds


def mirostat_v1_k(z, m, mu, V):
    """Mirostat v1's k (csrc/core/mirostat.c) from the float32-valued row z (finite or -inf):
    s_hat over the top min(m, n) finite values, then k clipped to [1, n]; every double operation
    in the core's order, with Python's math (the same libm), so the result is bit-identical."""
    fin = np.sort(z[np.isfinite(z)])[::-1]
    n = fin.size
    mm = min(m, n)
    if mm < 2:
        return 1
    num = den = 0.0
    for i in range(mm - 1):
        ti = math.log((i + 2) / (i + 1))
        bi = float(fin[i]) - float(fin[i + 1])
        num += ti * bi
        den += ti * ti
    s_hat = num / den
    if s_hat == 0.0:
        kd = math.inf if math.pow(2.0, mu) > float(V - 1) else 0.0
    else:
        eps = s_hat - 1.0
        if eps == 0.0:
            base = math.pow(2.0, mu) / math.log(float(V))
        else:
            base = eps * math.pow(2.0, mu) / (1.0 - math.pow(float(V), -eps))
        try:
            kd = math.pow(base, 1.0 / s_hat)
        except OverflowError:
            kd = math.inf
        except ValueError:  # a negative base: C's pow gives NaN
            kd = math.nan
    if not kd >= 1.0:
        return 1
    if kd >= n:
        return n
    return int(kd)


def mirostat(logits, mu, *, tau, eta, version=2, m=100, temperature=1.0, uniform,
             return_details=False):
    """One mirostat step per row with explicit uniforms (llama.cpp semantics; mirostat.c).

    Returns (tokens int64, new mu float64) or, with return_details, also the log-probabilities,
    the survivor counts and, per row, the distance of the nearest finite token from the v2
    threshold in logit space (inf for v1 and greedy rows): the core's exp-sum is float32, so a
    token closer than ~1e-6 may be decided differently there.

    Every quantity except the v2 normaliser Z is computed exactly as the core does (same libm
    calls, same order), so given the same kept set tokens and mu agree bit for bit."""
    x2, one = _logits(logits)
    B, V = x2.shape
    if version not in (1, 2):
        raise ValueError(f"version must be 1 or 2, got {version!r}")
    if int(m) != m or m < 1:
        raise ValueError(f"m must be an integer >= 1, got {m!r}")
    tau = _per_row(tau, B, "tau")
    eta = _per_row(eta, B, "eta")
    t = _per_row(temperature, B, "temperature")
    mu = _per_row(mu, B, "mu")
    u = _per_row(uniform, B, "uniform")
    if np.any(~(tau > 0)) or np.any(~np.isfinite(tau)):
        raise ValueError("tau must be > 0 and finite")
    if np.any(~(eta >= 0)) or np.any(~np.isfinite(eta)):
        raise ValueError("eta must be >= 0 and finite")
    if np.any(~(t >= 0)) or np.any(~np.isfinite(t)):
        raise ValueError("temperature must be >= 0 and finite")
    if np.any(~np.isfinite(mu)):
        raise ValueError("mu must be finite")
    x32 = x2.astype(np.float32)
    tok = np.empty(B, dtype=np.int64)
    new_mu = np.empty(B)
    lps = np.empty(B)
    kept = np.empty(B, dtype=np.int64)
    margin = np.full(B, np.inf)
    for r in range(B):
        x = x32[r]
        if np.max(x) == -np.inf:
            raise ValueError(f"logits row {r} has no finite value")
        tt = np.float32(t[r])
        if t[r] == 0 or tt == 0 or np.isinf(np.max(x) / tt):
            tok[r], lps[r], kept[r] = int(np.argmax(x)), 0.0, 1
            new_mu[r] = mu[r] - eta[r] * (0.0 - tau[r])
            continue
        z = x if tt == 1 else (x / tt).astype(np.float32)
        am = int(np.argmax(z))
        zm = float(z[am])
        d = z.astype(np.float64) - zm
        if version == 2:
            fin = np.isfinite(d)
            lz = math.log(math.fsum(np.exp(d[fin])))
            thr = lz - float(mu[r]) * _LN2
            keep = d >= thr
            margin[r] = float(np.min(np.abs(d[fin] - thr)))
            if not keep.any():
                keep[am] = True
        else:
            k = mirostat_v1_k(z, int(m), float(mu[r]), V)
            fz = np.sort(z[np.isfinite(z)])[::-1]
            keep = np.isfinite(z) & (z >= fz[k - 1])
        ids = np.flatnonzero(keep)
        w = [math.exp(float(z[i]) - zm) for i in ids]
        total = 0.0
        for wi in w:
            total += wi
        target = float(u[r]) * total
        run, pick = 0.0, -1
        for j, wi in enumerate(w):
            run += wi
            if run > target:
                pick = j
                break
        if pick < 0:
            pick = len(w) - 1
            while pick > 0 and not w[pick] > 0.0:
                pick -= 1
        lp = (float(z[ids[pick]]) - zm) - math.log(total)
        surprise = -lp / _LN2
        tok[r], lps[r], kept[r] = int(ids[pick]), lp, ids.size
        new_mu[r] = float(mu[r]) - float(eta[r]) * (surprise - float(tau[r]))
    if one:
        tok, new_mu, lps, kept, margin = tok[0], new_mu[0], lps[0], kept[0], margin[0]
    if return_details:
        return tok, new_mu, lps, kept, margin
    return tok, new_mu


_ENTROPIX_DEFAULTS = dict(
    temperature=0.666, top_k=27, top_p=0.90, min_p=0.0, low_entropy=0.1, low_varentropy=0.1,
    helv_entropy=3.0, lehv_entropy=5.0, lehv_varentropy=5.0, hehv_entropy=5.0, hehv_varentropy=5.0,
    helv_temperature_factor=1.3, helv_temperature_max=1.5, lehv_temperature_factor=1.2,
    lehv_temperature_max=1.5, lehv_top_k_factor=1.5, lehv_top_k_min=5, hehv_temperature_factor=2.0,
    hehv_temperature_min=2.0, hehv_top_p_delta=0.0, hehv_top_p_min=0.5,
    adaptive_temperature_coef=0.3, adaptive_min_p=0.03, adaptive_min_p_coef=0.5,
    adaptive_samples=5, clarify_token=None)


def entropix(logits, *, uniforms, last_token=None, **params):
    """The entropix policy (fastdecode.adaptive.entropix) with explicit uniforms (B, n): column j
    is draw j. Returns (tokens, branch, entropy bits, varentropy bits, the branch's sample
    parameters per row as dicts). H and V come from the float64 twin, so a row within float32
    rounding of a threshold may branch differently in the core."""
    x2, one = _logits(logits)
    B, V = x2.shape
    P = dict(_ENTROPIX_DEFAULTS)
    for k, v in params.items():
        if k not in P:
            raise TypeError(f"unexpected keyword argument {k!r}")
        P[k] = v
    u = np.asarray(uniforms, dtype=np.float64).reshape(B, -1)
    h, v = _entropies(x2)
    h = np.atleast_1d(h) / _LN2
    v = np.atleast_1d(v) / (_LN2 * _LN2)
    z32 = x2.astype(np.float32)
    tok = np.empty(B, dtype=np.int64)
    br = np.empty(B, dtype=np.int64)
    used = []
    for r in range(B):
        t, k, p, mp, n = P["temperature"], P["top_k"], P["top_p"], P["min_p"], 1
        if h[r] < P["low_entropy"] and v[r] < P["low_varentropy"]:
            b = 0
        elif h[r] > P["helv_entropy"] and v[r] < P["low_varentropy"]:
            ct = P["clarify_token"]
            b = 1 if ct is not None and not (last_token is not None
                                             and int(np.broadcast_to(last_token, (B,))[r]) == ct) else 2
            t = min(P["helv_temperature_max"], t * P["helv_temperature_factor"])
        elif h[r] < P["lehv_entropy"] and v[r] > P["lehv_varentropy"]:
            b = 3
            t = min(P["lehv_temperature_max"], t * P["lehv_temperature_factor"])
            if k > 0:
                k = max(P["lehv_top_k_min"], math.floor(k * P["lehv_top_k_factor"]))
        elif h[r] > P["hehv_entropy"] and v[r] > P["hehv_varentropy"]:
            b = 4
            t = max(P["hehv_temperature_min"], t * P["hehv_temperature_factor"])
            p = max(P["hehv_top_p_min"], p - P["hehv_top_p_delta"])
        else:
            b = 5
            t = t * (1.0 + P["adaptive_temperature_coef"] * (h[r] + v[r]))
            mp = min(0.5, max(0.01, P["adaptive_min_p"] * (1.0 - P["adaptive_min_p_coef"] * (h[r] + v[r]))))
            n = int(P["adaptive_samples"])
        br[r] = b
        sp = dict(temperature=t, top_k=int(k), top_p=p, min_p=mp)
        used.append(sp)
        if b == 0:
            tok[r] = int(np.argmax(z32[r]))
        elif b == 1:
            tok[r] = int(P["clarify_token"])
        else:
            best, bz = -1, -np.inf
            for j in range(n):
                c = int(sample(x2[r], uniform=u[r, j], **sp))
                if best < 0 or z32[r, c] > bz:
                    best, bz = c, z32[r, c]
            tok[r] = best
    if one:
        return tok[0], br[0], h[0], v[0], used[0]
    return tok, br, h, v, used



# ------------------------------------------------------------------------------------------------
# contrastive decoding and classifier-free guidance (csrc/core/contrastive.c)

__all__ += ["contrastive_logits", "guidance_logits"]


def _pair(a, b, aname, bname):
    a2, one = _logits(a, aname)
    b2, _ = _logits(b, bname)
    if np.shape(a) != np.shape(b):
        raise ValueError(f"{bname} must have the shape of {aname}")
    f64 = a2.dtype == np.float64 and b2.dtype == np.float64
    return a2, b2, one, f64


def _lse_shifted(d):
    """log sum exp(d) of a row already shifted so that its maximum is 0 (float64)."""
    return math.log(np.exp(d).sum())


def contrastive_logits(expert_logits, amateur_logits, *, alpha=0.1, amateur_temperature=1.0,
                       beta=None, filter_value=-np.inf):
    """Li et al. 2022 (beta None) or O'Brien & Lewis 2023 on the expert's min-p head (fd.h)."""
    e2, a2, one, f64 = _pair(expert_logits, amateur_logits, "expert_logits", "amateur_logits")
    B, V = e2.shape
    al = _per_row(alpha, B, "alpha")
    tau = _per_row(amateur_temperature, B, "amateur_temperature")
    be = None if beta is None else _per_row(beta, B, "beta")
    if ((al < 0) | (al > 1)).any():
        raise ValueError("alpha must lie in [0, 1]")
    if not ((tau > 0) & np.isfinite(tau)).all():
        raise ValueError("amateur_temperature must be > 0 and finite")
    if be is not None and not ((be >= 0) & np.isfinite(be)).all():
        raise ValueError("beta must be >= 0 and finite")
    ft = np.float64 if f64 else np.float32
    out = np.empty((B, V), ft)
    for r in range(B):
        e = e2[r].astype(ft)
        a = a2[r].astype(ft)
        me = e.max()
        if me == -np.inf:
            raise ValueError(f"expert_logits row {r} has no finite value")
        with np.errstate(divide="ignore", invalid="ignore"):
            de = (e - me).astype(np.float64)  # the difference in the compute dtype
            lal = math.log(al[r]) if al[r] > 0 else -np.inf
            head = (e > -np.inf) & ~(de < lal)
            if be is None:
                ma = a.max()
                if ma == -np.inf:
                    raise ValueError(f"amateur_logits row {r} has no finite value")
                da = (a - ma).astype(np.float64)
                if f64:
                    da = da / tau[r]
                elif tau[r] != 1.0:
                    da = (da / tau[r]).astype(np.float32).astype(np.float64)
                score = (de - _lse_shifted(de)) - (da - _lse_shifted(da))
            else:
                score = (1.0 + be[r]) * e.astype(np.float64) - be[r] * (a.astype(np.float64) / tau[r])
        bad = head & (a == -np.inf)
        if bad.any():
            c = int(np.flatnonzero(bad)[0])
            raise ValueError(f"amateur_logits row {r}, column {c} is -inf inside the expert's "
                             "plausibility head")
        with np.errstate(over="ignore"):
            row = np.where(head, score, filter_value).astype(ft)
        if not np.isfinite(row[head]).all():
            raise ValueError(f"row {r}: the score overflows (beta or amateur_temperature)")
        out[r] = row
    return out[0] if one else out


def _log_softmax_f32(x):
    """fastdecode's float32 log_softmax of a float32 row: float64 sums, one rounding."""
    m = x.max()
    d = (x - m).astype(np.float64)
    return (d - _lse_shifted(d)).astype(np.float32)


def guidance_logits(cond_logits, uncond_logits, guidance_scale, *, normalize=True):
    """HF's classifier-free guidance arithmetic with -inf exclusions (fd.h)."""
    c2, u2, one, f64 = _pair(cond_logits, uncond_logits, "cond_logits", "uncond_logits")
    B, V = c2.shape
    g = _per_row(guidance_scale, B, "guidance_scale")
    if not np.isfinite(g).all():
        raise ValueError("guidance_scale must be finite")
    ft = np.float64 if f64 else np.float32
    out = np.empty((B, V), ft)
    for r in range(B):
        c = c2[r].astype(ft)
        u = u2[r].astype(ft)
        if normalize:
            for x, name in ((c, "cond_logits"), (u, "uncond_logits")):
                if x.max() == -np.inf:
                    raise ValueError(f"{name} row {r} has no finite value")
            if f64:
                c = c - c.max() - _lse_shifted(c - c.max())
                u = u - u.max() - _lse_shifted(u - u.max())
            else:
                c, u = _log_softmax_f32(c), _log_softmax_f32(u)
            if g[r] == 1.0:
                out[r] = c
                continue
        gg = ft(g[r])
        with np.errstate(invalid="ignore", over="ignore"):
            t = c - u
            v = gg * t + u if normalize else u + t * gg
        excl = (c == -np.inf) | (u == -np.inf)
        if not np.isfinite(v[~excl]).all():
            raise ValueError(f"row {r}: the guided score overflows")
        out[r] = np.where(excl, -np.inf, v)
    return out[0] if one else out


# ------------------------------------------------------------------------------------------------
# adaptive samplers (csrc/core/adaptive.c): adaptive / dynamic temperature, XTC, DRY

__all__ += ["adaptive_beta", "adaptive_temperature", "dynamic_temperature", "xtc", "dry"]

_F32_MAX_LOG = np.float32(88.7228391)


def adaptive_beta(h):
    """Veličković et al. 2024: max(poly(H), 1) if H > 0.5 else 1 (np.polyval, the paper's code)."""
    if not h > 0.5:
        return 1.0
    return max(float(np.polyval([-0.037, 0.481, -2.3, 4.917, -1.791], h)), 1.0)


def _entropy_shifted(z):
    """Entropy (nats) of softmax(z) from d = z - max (exact for huge logits too)."""
    fin = np.isfinite(z)
    d = z[fin] - np.max(z[fin])
    lp = d - np.log(np.exp(d).sum())
    return float(-(np.exp(lp) * lp).sum())


def _overflows(dtype, v):
    with np.errstate(over="ignore"):
        return bool(np.isinf(np.asarray(v).astype(dtype)))


def _scaled_rows(x2, r, s, mul):
    """Row r of x2 times (mul) or divided by s, in float32 (float64 rows in float64)."""
    if x2.dtype == np.float64:
        z, sc = x2[r], np.float64(s)
    else:
        with np.errstate(over="ignore"):  # a temperature beyond the float32 range is +inf
            z, sc = x2[r].astype(np.float32), np.float32(s)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        v = z * sc if mul else z / sc
    v[z == -np.inf] = -np.inf  # also for a temperature that is +inf in float32
    with np.errstate(over="ignore"):
        return v.astype(x2.dtype)


def _one_hot(row, am):
    o = np.full_like(row, -np.inf)
    o[am] = row[am]
    return o


def adaptive_temperature(logits, *, return_beta=False):
    """logits * beta(H) per row; see adaptive.c / ops.adaptive_temperature."""
    x2, one = _logits(logits)
    out = x2.copy()
    betas = np.ones(x2.shape[0])
    for r in range(x2.shape[0]):
        z = _z(x2[r : r + 1])[0]
        if np.max(z) == -np.inf:
            raise ValueError(f"logits row {r} has no finite value")
        beta = adaptive_beta(_entropy_shifted(z))
        betas[r] = beta
        if beta == 1.0:
            continue
        am = int(np.argmax(z))
        scaled = _scaled_rows(x2, r, beta, True)
        out[r] = _one_hot(x2[r], am) if _overflows(x2.dtype, scaled[am]) else scaled
    res = out[0] if one else out
    return (res, betas[0] if one else betas) if return_beta else res


def dynamic_temperature(logits, temperature, delta, exponent=1.0, *, return_temperature=False):
    """llama.cpp temp-ext per row; see adaptive.c / ops.dynamic_temperature."""
    x2, one = _logits(logits)
    B = x2.shape[0]
    t = _per_row(temperature, B, "temperature")
    d = _per_row(delta, B, "delta")
    e = _per_row(exponent, B, "exponent")
    for name, v in (("temperature", t), ("delta", d), ("exponent", e)):
        if np.any(~np.isfinite(v)) or np.any(v < 0):
            raise ValueError(f"{name} must be finite and >= 0")
    out = x2.copy()
    temps = np.empty(B)
    for r in range(B):
        z = _z(x2[r : r + 1])[0]
        fin = np.isfinite(z)
        tt = t[r]
        if d[r] > 0:
            n = int(fin.sum())
            if n <= 1:
                temps[r] = np.nan
                continue
            ratio = min(max(_entropy_shifted(z) / math.log(n), 0.0), 1.0)
            lo, hi = max(0.0, t[r] - d[r]), float(t[r]) + float(d[r])  # Python float: +inf on overflow, no warning
            w = ratio ** e[r]
            tt = lo if w == 0 else lo + (hi - lo) * w  # T + delta may overflow: no inf * 0
        temps[r] = tt
        if not fin.any():
            continue
        am = int(np.argmax(z))
        if tt == 0 or (x2.dtype != np.float64 and tt <= 2.0**-150):  # 0 once rounded to float32
            out[r] = _one_hot(x2[r], am)
            continue
        scaled = _scaled_rows(x2, r, tt, False)
        out[r] = _one_hot(x2[r], am) if _overflows(x2.dtype, scaled[am]) else scaled
    res = out[0] if one else out
    return (res, temps[0] if one else temps) if return_temperature else res


def xtc(logits, probability, threshold, *, uniform, min_tokens_to_keep=1, filter_value=-np.inf):
    """llama.cpp XTC per row with explicit coins ``uniform`` (one per row); probabilities in float64."""
    x2, one = _logits(logits)
    B = x2.shape[0]
    p = _per_row(probability, B, "probability")
    th = _per_row(threshold, B, "threshold")
    mk = _per_row_int(min_tokens_to_keep, B, "min_tokens_to_keep")
    u = _per_row(uniform, B, "uniform")
    for name, v, ok in (("probability", p, (p >= 0) & (p <= 1)), ("threshold", th, (th >= 0) & (th <= 1)),
                        ("min_tokens_to_keep", mk, mk >= 1), ("uniform", u, (u >= 0) & (u < 1))):
        if not np.all(ok):
            raise ValueError(f"{name} out of its range (row {int(np.flatnonzero(~ok)[0])})")
    out = x2.copy()
    for r in range(B):
        z = _z(x2[r : r + 1])[0]
        fin = np.isfinite(z)
        n = int(fin.sum())
        if p[r] <= 0 or th[r] > 0.5 or n < 2 or u[r] > p[r]:
            continue
        prob = _softmax_row(z)
        top = np.flatnonzero(fin & (prob >= th[r]))
        if top.size < 2 or n - (top.size - 1) < mk[r]:
            continue
        keep = top[np.argmin(z[top])]  # argmin: the first (lowest id) of equal smallest logits
        out[r, top[top != keep]] = filter_value
    return out[0] if one else out


def _dry_row(h, mult, base, allowed, last_n, breakers):
    """{token: penalty} for one history h (a list of ids), by llama.cpp's four steps, with a naive
    quadratic suffix match in place of the Z-algorithm (an independent check of it)."""
    if mult == 0 or last_n == 0:
        return {}
    L = len(h) if last_n < 0 else min(len(h), last_n)
    if L <= allowed:
        return {}
    w = h[len(h) - L :]
    rat = lambda i: w[L - 1 - i]  # noqa: E731 - i-th token from the end
    cap = L
    for i in range(L):
        longest = -1
        for b in breakers:
            if b[0] != rat(i):
                continue
            tail = b[1:]
            if len(tail) > longest and len(tail) <= i and all(
                    tail[o] == rat(i - o - 1) for o in range(len(tail))):
                longest = len(tail)
        if longest >= 0:
            cap = i - longest
            break
    if cap < allowed:
        return {}
    best = {}
    for j in range(L - 1):
        n = 0
        while n <= j and w[j - n] == w[L - 1 - n]:
            n += 1
        n = min(n, cap)
        if n >= allowed:
            tok = w[j + 1]
            best[tok] = max(best.get(tok, -1), n)
    single = {b[0] for b in breakers if len(b) == 1}
    bf = np.float32(base)
    max_exp = int(_F32_MAX_LOG / np.log(bf)) if bf > np.float32(1.000001) else 0
    pen = {}
    for tok, n in best.items():
        if tok in single:
            continue
        ex = n - allowed
        if max_exp > 0 and ex > max_exp:
            ex = max_exp
        pen[tok] = ex
    return pen


def dry(logits, input_ids, multiplier, base=1.75, allowed_length=2, penalty_last_n=-1,
        sequence_breakers=(), *, lengths=None):
    """llama.cpp DRY; see adaptive.c / ops.dry. Breakers are token-id sequences."""
    x2, one = _logits(logits, check_values=False)
    B, V = x2.shape
    ids = _ids2(input_ids, B)
    m = _per_row(multiplier, B, "multiplier")
    bs = _per_row(base, B, "base")
    al = _per_row_int(allowed_length, B, "allowed_length")
    ln = _per_row_int(penalty_last_n, B, "penalty_last_n")
    if np.any(~np.isfinite(m)) or np.any(m < 0):
        raise ValueError("multiplier must be finite and >= 0")
    if np.any(~np.isfinite(bs)) or np.any(bs < 1):
        raise ValueError("base must be finite and >= 1")
    if np.any(al < 0) or np.any(al > 2**31 - 1):
        raise ValueError("allowed_length must be in [0, 2**31)")
    if np.any(ln < -1):
        raise ValueError("penalty_last_n must be >= -1")
    brk = [[int(t) for t in np.atleast_1d(b)] for b in sequence_breakers]
    if any(len(b) == 0 for b in brk):
        raise ValueError("sequence_breakers must not contain empty sequences")
    if any(t < 0 or t >= V for b in brk for t in b):
        raise ValueError("sequence_breakers: token id outside the vocabulary")
    begin, end = _bounds(ids, lengths, None, None)
    _check_range(ids, begin, end, V)
    out = x2.copy()
    for r in range(B):
        h = [int(t) for t in ids[r, begin[r] : end[r]]]
        for tok, ex in _dry_row(h, m[r], bs[r], int(al[r]), int(ln[r]), brk).items():
            if x2.dtype == np.float64:
                out[r, tok] = x2[r, tok] - m[r] * bs[r] ** float(ex)
            else:
                pen = np.float32(float(np.float32(m[r])) * float(np.float32(bs[r])) ** float(ex))
                with np.errstate(over="ignore"):
                    out[r, tok] = (np.float32(x2[r, tok]) - pen).astype(x2.dtype)
    return out[0] if one else out
