"""Stateful and entropy-driven samplers: mirostat v1/v2 and an entropix-style policy.

:func:`mirostat` is the functional kernel (one step, per-row state ``mu`` in and out).
:class:`Mirostat` and :class:`Entropix` are configurations for :func:`fastdecode.generate`
(``generate(model, ids, sampler=Mirostat(tau=5.0))``). Like :class:`~fastdecode.Sampler` they are
immutable and hold no per-sequence state: the loop asks them for a fresh per-row state at its
start (``_start``), which it owns, steps (``_step``), shrinks when rows finish (``_select``) and
turns into the result's ``sampler_trace``. One configuration can serve any number of concurrent
loops; a row's state never depends on or leaks into another row (llama.cpp #3537).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import ops
from ._array import as_logits, row_param

__all__ = ["mirostat", "entropix", "Mirostat", "Entropix", "ENTROPIX_BRANCHES"]

#: Branch codes of :func:`entropix` / :class:`Entropix` traces (index = code).
ENTROPIX_BRANCHES = ("argmax", "clarify", "helv", "lehv", "hehv", "adaptive")

_ENTROPIX_DEFAULTS = dict(
    temperature=0.666, top_k=27, top_p=0.90, min_p=0.0,
    low_entropy=0.1, low_varentropy=0.1, helv_entropy=3.0,
    lehv_entropy=5.0, lehv_varentropy=5.0, hehv_entropy=5.0, hehv_varentropy=5.0,
    helv_temperature_factor=1.3, helv_temperature_max=1.5,
    lehv_temperature_factor=1.2, lehv_temperature_max=1.5, lehv_top_k_factor=1.5, lehv_top_k_min=5,
    hehv_temperature_factor=2.0, hehv_temperature_min=2.0, hehv_top_p_delta=0.0, hehv_top_p_min=0.5,
    adaptive_temperature_coef=0.3, adaptive_min_p=0.03, adaptive_min_p_coef=0.5, adaptive_samples=5,
    clarify_token=None,
)
# The order of fd_entropix_params (fd.h).
_ENTROPIX_ORDER = tuple(_ENTROPIX_DEFAULTS)


def _version(version: Any) -> int:
    if isinstance(version, (bool, np.bool_)) or version not in (1, 2):
        raise ValueError(f"version must be 1 or 2, got {version!r}")
    return int(version)


def _m(m: Any) -> int:
    if isinstance(m, (bool, np.bool_)) or not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"m must be an integer >= 1, got {m!r}")
    return int(m)


def _mu_array(mu: Any, batch: int, tau: np.ndarray) -> np.ndarray:
    """A private float64 (batch,) copy of mu (None: 2 tau, llama.cpp's start), validated."""
    if mu is None:
        return np.ascontiguousarray(np.broadcast_to(2.0 * tau, (batch,)), dtype=np.float64).copy()
    if hasattr(mu, "detach"):
        mu = mu.detach().cpu().numpy()
    a = np.asarray(mu)
    if a.dtype.kind not in "iuf":
        raise TypeError(f"mu must be a number or an array of numbers, got {a.dtype}")
    if a.shape not in ((), (batch,)) and not (a.ndim == 1 and a.shape[0] == 1):
        raise ValueError(f"mu must be a scalar or have shape ({batch},) (one value per row), "
                         f"got shape {a.shape}")
    a = np.array(np.broadcast_to(a.astype(np.float64), (batch,)), dtype=np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"mu must be finite, got {a[i]!r} (row {i})")
    return a


def _mirostat_params(batch: int, tau: Any, eta: Any, temperature: Any) -> tuple:
    return (row_param(tau, batch, "tau", lo=0.0, hi=math.inf, lo_open=True, hi_open=True),
            row_param(eta, batch, "eta", lo=0.0, hi=math.inf, hi_open=True),
            row_param(temperature, batch, "temperature", lo=0.0, hi=math.inf, hi_open=True))


def mirostat(logits: Any, mu: Any = None, *, tau: Any = 5.0, eta: Any = 0.1, version: int = 2,
             m: int = 100, temperature: Any = 1.0, seed: Any = None, position: Any = 0,
             uniforms: Any = None, return_logprobs: bool = False, return_kept: bool = False,
             dtype: str | None = None) -> Any:
    """One mirostat step per row: truncate, draw, update the row's surprise budget ``mu``.

    Follows llama.cpp's ``llama_sampler_mirostat`` (v1) and ``llama_sampler_mirostat_v2`` (v2),
    Basu et al., "Mirostat" (ICLR 2021), with a per-row ``mu``.

    Parameters
    ----------
    logits : array_like, shape (B, V) or (V,)
        float32, float64, float16 or bfloat16 (see ``dtype``) logits.
    mu : float or array of B floats, optional
        Each row's current budget in bits (None: ``2 * tau``, llama.cpp's initial value). If
        ``mu`` is a writable, C-contiguous float64 NumPy array of shape (B,) it is updated in place
        (only when the call succeeds) and returned; otherwise a new array is returned.
    tau : float or array of B floats, > 0
        Target surprise in bits per token.
    eta : float or array of B floats, >= 0
        Learning rate of ``mu``.
    version : {1, 2}, default 2
        Mirostat v1 (Zipf estimate) or v2 (direct surprise threshold).
    m : int >= 1
        v1 only: the number of top tokens used to estimate the Zipf exponent (llama.cpp: 100).
    temperature : float or array, >= 0
        Applied to the logits first (llama.cpp's chain runs ``temp`` before mirostat); 0 is greedy
        with observed surprise 0.
    seed, position, uniforms
        As :func:`fastdecode.sample`: the draw of a row depends only on its own logits, ``mu``,
        seed and position.
    return_logprobs : bool
        Also return log p of each token under the truncated distribution.
    return_kept : bool
        Also return how many tokens survived the truncation in each row.
    dtype : {None, "bfloat16"}
        "bfloat16" when ``logits`` is a ``uint16`` array holding bfloat16 bits.

    Returns
    -------
    tokens, mu[, logprobs][, kept]
        int64 (B,) and the updated float64 mu (B,) (both 0-d for a 1-D input, unless mu was
        updated in place).

    Raises
    ------
    TypeError
        ``mu`` not numeric, ``logits`` of an unsupported dtype, a bad ``seed`` type.
    ValueError
        ``version`` not 1 or 2, ``m < 1``, ``tau <= 0``, ``eta < 0``, ``temperature < 0``, a
        non-finite ``mu`` or one of the wrong shape, bad ``seed``/``position``/``uniforms``, NaN
        logits, a row with no finite logit (messages name the argument and the row).

    Notes
    -----
    With ``z = logits / T`` and ``d = z - max z``:

    * v2 keeps every token with surprise ``-log2 p <= mu``, i.e. ``d >= log(sum exp d) - mu ln 2``
      (no sort), and at least the first maximum.
    * v1 sorts only the top ``m`` logits, ``s_hat = sum t_i b_i / sum t_i^2`` with
      ``t_i = ln((i+2)/(i+1))``, ``b_i = z_(i) - z_(i+1)``, ``k = (e 2^mu / (1 - V^-e))^(1/s_hat)``,
      ``e = s_hat - 1``, and keeps the top ``floor(k)`` (clipped to [1, finite tokens]; tokens
      tied with the k-th are kept). Computed in float64 (llama.cpp: float32).
    * The pick is the inverse CDF over the survivors in ascending id order (as :func:`sample`),
      then ``mu <- mu - eta * (-log2 p(token) - tau)`` with p renormalised over the survivors.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> x = np.array([3.0, 2.0, 1.0, 0.0, -1.0])
    >>> fd.mirostat(x, tau=1.0, seed=0, return_kept=True)  # mu starts at 2: only token 0 kept
    (array(0), array(2.1), array(1))
    >>> mu = np.array([2.0, 2.0])  # one budget per row, updated in place
    >>> tokens, out = fd.mirostat(np.stack([x, x]), mu, tau=1.0, seed=[0, 1])
    >>> out is mu, mu
    (True, array([2.1, 2.1]))
    """
    lg = as_logits(logits, dtype=dtype)
    b = lg.batch
    v = _version(version)
    mm = _m(m)
    tau_a, eta_a, t_a = _mirostat_params(b, tau, eta, temperature)
    in_place = (isinstance(mu, np.ndarray) and mu.dtype == np.float64 and mu.shape == (b,)
                and mu.flags.c_contiguous and mu.flags.writeable)
    work = _mu_array(mu, b, tau_a)
    u = None
    if uniforms is not None:
        u = row_param(uniforms, b, "uniforms", lo=0.0, hi=1.0, hi_open=True)
    seeds = ops._seeds(seed, b)
    pos = ops._positions(position, b)
    tokens = np.empty(b, dtype=np.int64)
    lp = np.empty(b, dtype=np.float64) if return_logprobs else None
    kept = np.empty(b, dtype=np.int64) if return_kept else None
    ops._k.mirostat(lg.array, tau_a, eta_a, t_a, v, mm, seeds, pos, u, work, tokens, lp, kept,
                    ops._threads[0])
    if in_place:
        mu[...] = work
        work = mu
    elif lg.one_d:
        work = work.reshape(())
    out = [lg.wrap_rows(tokens), work]
    if return_logprobs:
        out.append(lg.wrap_rows(lp))
    if return_kept:
        out.append(lg.wrap_rows(kept))
    return tuple(out)


def _entropix_vector(cfg: dict) -> np.ndarray:
    vals = []
    for k in _ENTROPIX_ORDER:
        val = cfg[k]
        if k == "clarify_token":
            val = -1 if val is None else val
        vals.append(float(val))
    return np.array(vals, dtype=np.float64)


def _check_entropix(cfg: dict) -> dict:
    out = dict(_ENTROPIX_DEFAULTS)
    for k, val in cfg.items():
        if k not in out:
            raise TypeError(f"unexpected keyword argument {k!r}")
        out[k] = val
    for k, val in out.items():
        if k == "clarify_token":
            if val is not None and (isinstance(val, (bool, np.bool_))
                                    or not isinstance(val, (int, np.integer)) or val < 0):
                raise ValueError(f"clarify_token must be None or a token id >= 0, got {val!r}")
            continue
        if isinstance(val, (bool, np.bool_)) or not isinstance(val, (int, float, np.integer, np.floating)):
            raise TypeError(f"{k} must be a number, got {val!r}")
        f = float(val)
        if not math.isfinite(f):
            raise ValueError(f"{k} must be finite, got {val!r}")
        if k in ("top_k", "lehv_top_k_min", "adaptive_samples") and f != math.floor(f):
            raise ValueError(f"{k} must be an integer, got {val!r}")
        if k in ("top_p", "min_p", "hehv_top_p_min", "adaptive_min_p") and not 0.0 <= f <= 1.0:
            raise ValueError(f"{k} must be in [0, 1], got {val!r}")
        if k == "adaptive_samples" and not 1 <= f <= 64:
            raise ValueError(f"adaptive_samples must be in [1, 64], got {val!r}")
        if k not in ("low_entropy", "low_varentropy", "helv_entropy", "lehv_entropy",
                     "lehv_varentropy", "hehv_entropy", "hehv_varentropy", "hehv_top_p_delta") and f < 0:
            raise ValueError(f"{k} must be >= 0, got {val!r}")
    return out


def entropix(logits: Any, *, seed: Any = None, position: Any = 0, last_token: Any = None,
             return_logprobs: bool = False, dtype: str | None = None, **params: Any) -> Any:
    """One step of the entropix policy per row: branch on (entropy, varentropy), then draw.

    Follows xjdr-alt/entropix ``torch_sampler.py`` (``sample`` / ``adaptive_sample``) on logits
    alone (its attention statistics are taken as 0, which leaves the factors below).

    Parameters
    ----------
    logits : array_like, shape (B, V) or (V,)
        float32, float64, float16 or bfloat16 (see ``dtype``) logits.
    seed, position
        As :func:`fastdecode.sample`; draw j of a row uses the uniform keyed by (seed, position, j).
    last_token : int or array of B ints, optional
        Each row's previous token (for ``clarify_token``: the clarifying token is not inserted
        twice in a row).
    return_logprobs : bool
        Also return log p of each token under the branch's filtered distribution (0 for the
        argmax and clarify branches).
    dtype : {None, "bfloat16"}
        "bfloat16" when ``logits`` is a ``uint16`` array holding bfloat16 bits.
    **params
        Thresholds and factors, with entropix's defaults: ``temperature=0.666, top_k=27,
        top_p=0.9, min_p=0``; ``low_entropy=low_varentropy=0.1``; ``helv_entropy=3``;
        ``lehv_entropy=lehv_varentropy=5``; ``hehv_entropy=hehv_varentropy=5``;
        ``helv_temperature_factor=1.3, helv_temperature_max=1.5``;
        ``lehv_temperature_factor=1.2, lehv_temperature_max=1.5, lehv_top_k_factor=1.5,
        lehv_top_k_min=5``; ``hehv_temperature_factor=2, hehv_temperature_min=2,
        hehv_top_p_delta=0, hehv_top_p_min=0.5``; ``adaptive_temperature_coef=0.3,
        adaptive_min_p=0.03, adaptive_min_p_coef=0.5, adaptive_samples=5``;
        ``clarify_token=None`` (entropix hard-codes token 2564).

    Returns
    -------
    tokens, branch, entropy, varentropy[, logprobs]
        int64 tokens and branch codes (names in :data:`ENTROPIX_BRANCHES`), and H / varentropy of
        softmax(logits) in bits (entropix's units).

    Raises
    ------
    TypeError
        An unknown keyword in ``params``, or a parameter that is not a number.
    ValueError
        A parameter out of range (negative, non-finite, a probability outside [0, 1], a
        non-integer count, ``adaptive_samples`` outside [1, 64]), ``clarify_token`` outside the
        vocabulary, bad ``seed``/``position``, NaN logits; messages name the parameter.

    Notes
    -----
    Branches, tested in this order (H, V in bits; T, k, p, min_p the base parameters):

    0. argmax: ``H < low_entropy and V < low_varentropy`` -> the first maximum.
    1. clarify / 2. helv: ``H > helv_entropy and V < low_varentropy`` -> ``clarify_token`` when
       set and not the row's last token, else a draw at ``min(helv_temperature_max,
       T * helv_temperature_factor)``.
    3. lehv: ``H < lehv_entropy and V > lehv_varentropy`` -> ``T' = min(lehv_temperature_max,
       T * lehv_temperature_factor)``, ``k' = max(lehv_top_k_min, floor(k * lehv_top_k_factor))``.
    4. hehv: ``H > hehv_entropy and V > hehv_varentropy`` -> ``T' = max(hehv_temperature_min,
       T * hehv_temperature_factor)``, ``p' = max(hehv_top_p_min, p - hehv_top_p_delta)``.
    5. adaptive (otherwise): ``T' = T (1 + a (H + V))``, ``min_p' = clip(adaptive_min_p
       (1 - c (H + V)), 0.01, 0.5)``; ``adaptive_samples`` draws, the one with the highest raw
       logit wins (entropix's score: the draw's log-probability plus a shared term).

    Draws use :func:`fastdecode.sample`'s fused chain in HF order (temperature, top-k, top-p,
    min-p). Entropix's own ``_sample`` cumulates top-p over ascending probabilities and drops its
    min-p mask; we keep its parameters and quadrants but use the filters as HF defines them.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> tokens, branch, h, v = fd.entropix(np.array([10.0, 0.0, 0.0, 0.0]), seed=0)
    >>> tokens, fd.ENTROPIX_BRANCHES[branch], h  # low entropy, low varentropy: argmax
    (array(0), 'argmax', array(0.0022))
    >>> tokens, branch, h, v = fd.entropix(np.zeros(64), seed=0)
    >>> fd.ENTROPIX_BRANCHES[branch], h, v  # 6 bits, no varentropy: high entropy, low varentropy
    ('helv', array(6.), array(0.))
    """
    lg = as_logits(logits, dtype=dtype)
    b = lg.batch
    cfg = _check_entropix(params)
    pv = _entropix_vector(cfg)
    if cfg["clarify_token"] is not None and cfg["clarify_token"] >= lg.vocab:
        raise ValueError(f"clarify_token {cfg['clarify_token']} is outside the vocabulary of {lg.vocab}")
    last = None
    if last_token is not None:
        last = np.ascontiguousarray(np.broadcast_to(
            row_param(last_token, b, "last_token", integer=True), (b,)).astype(np.int64))
    seeds = ops._seeds(seed, b)
    pos = ops._positions(position, b)
    tokens = np.empty(b, dtype=np.int64)
    branch = np.empty(b, dtype=np.int64)
    h = np.empty(b, dtype=np.float64)
    v = np.empty(b, dtype=np.float64)
    lp = np.empty(b, dtype=np.float64) if return_logprobs else None
    ops._k.entropix(lg.array, pv, last, seeds, pos, tokens, branch, h, v, lp, ops._threads[0])
    out = [lg.wrap_rows(tokens), lg.wrap_rows(branch), lg.wrap_rows(h), lg.wrap_rows(v)]
    if return_logprobs:
        out.append(lg.wrap_rows(lp))
    return tuple(out)


# ------------------------------------------------------------------------------------------------
# configurations for the decoding loops


class _Trace:
    """Per-step values of the active rows, turned into (B, n) arrays at the end."""

    def __init__(self, B: int, names: tuple, dtypes: tuple):
        self.B, self.names, self.dtypes = B, names, dtypes
        self.steps: list = []

    def add(self, rows: np.ndarray, *vals: np.ndarray) -> None:
        self.steps.append((rows.copy(), tuple(np.array(v, copy=True) for v in vals)))

    def arrays(self) -> dict:
        n = len(self.steps)
        out = {}
        for j, (name, dt) in enumerate(zip(self.names, self.dtypes)):
            a = np.full((self.B, n), np.nan if np.dtype(dt).kind == "f" else -1, dtype=dt)
            for s, (rows, vals) in enumerate(self.steps):
                a[rows, s] = vals[j]
            out[name] = a
        return out


class _RowState:
    """What every loop state shares: the original row index of each active row."""

    def __init__(self, B: int):
        self.rows = np.arange(B)

    def _select(self, keep: np.ndarray) -> None:
        self.rows = self.rows[keep]


_POSITIVE = dict(lo=0.0, hi=math.inf, lo_open=True, hi_open=True)
_NONNEG = dict(lo=0.0, hi=math.inf, hi_open=True)


def _row_values(v: Any, B: int, name: str, **kw: Any) -> np.ndarray:
    a = row_param(v, B, name, **kw)
    return np.broadcast_to(a, (B,)).copy()


def _check_penalties(penalties: Any) -> Any:
    """``penalties=`` of the stateful samplers: a Sampler with penalties and constraints only."""
    if penalties is None:
        return None
    from . import processors

    if not isinstance(penalties, processors.Sampler):
        raise TypeError(f"penalties must be a fastdecode.Sampler holding penalties, got {type(penalties).__name__}")
    params, _, _, chain = penalties._plan
    if chain or any(np.any(np.asarray(p) != d) for p, d in zip(params, processors._PICK)):
        raise ValueError("penalties must be a Sampler with penalties and constraints only (repetition, "
                         "presence/frequency, no-repeat n-gram, DRY, bad words, logit bias, ...): its "
                         "temperature must be 1 and its filters off, since the stateful sampler truncates "
                         "and draws itself")
    return penalties


def _apply_penalties(penalties: Any, state: "_RowState", logits: np.ndarray, input_ids: Any,
                     lengths: np.ndarray, prompt_lengths: np.ndarray) -> np.ndarray:
    """The logits after the penalties Sampler's penalties (per-row parameters follow the rows)."""
    if penalties is None or not penalties.edits_logits:
        return logits
    if penalties._batch_size() is not None:
        penalties = penalties._subset(state.rows)
    return penalties._process(as_logits(logits), input_ids, prompt_lengths, lengths)


def _check_penalty_rows(penalties: Any, B: int) -> None:
    n = None if penalties is None else penalties._batch_size()
    if n is not None and n != B:
        raise ValueError(f"penalties has per-row parameters for {n} rows but the batch has {B}")


class Mirostat:
    """Mirostat as a sampler for :func:`fastdecode.generate`, with one ``mu`` per row.

    Parameters
    ----------
    tau, eta, temperature : float or array of B floats
        As :func:`mirostat` (defaults: llama.cpp's 5.0 and 0.1, temperature 1).
    version : {1, 2}, default 2
        Mirostat v1 or v2.
    m : int, default 100
        v1's estimation window (llama.cpp: 100).
    seed : int, array of B ints, or None
        As :class:`~fastdecode.Sampler` (``generate(seed=...)`` overrides it).
    mu : float or array of B floats, optional
        The starting budget (default ``2 * tau``).
    penalties : fastdecode.Sampler, optional
        A Sampler holding only penalties and constraints (``repetition_penalty``,
        ``presence_penalty``/``frequency_penalty``, ``no_repeat_ngram_size``, ``dry_*``,
        ``bad_words_ids``, ``logit_bias``, ...), applied to each row's logits before mirostat, as
        llama.cpp's chain runs its penalties samplers before ``mirostat``. A Sampler with a
        temperature other than 1 or any filter raises ``ValueError`` (mirostat truncates itself).

    Notes
    -----
    The configuration is immutable; every ``generate`` call starts every row at ``mu`` and keeps
    the row's own budget across its steps. ``GenerateResult.sampler_trace`` then holds ``"mu"``
    (B, n): the budget each step started from (NaN past a row's end), ``"kept"`` (B, n): the
    tokens that survived the truncation (-1 past the end), and ``"final_mu"`` (B,).

    Raises
    ------
    ValueError
        As :func:`mirostat`: a bad ``version``, ``m``, ``tau``, ``eta`` or ``temperature``,
        raised by the constructor (naming the argument); ``penalties`` with a temperature or a
        filter; at ``generate`` time, ``penalties`` with per-row parameters for another batch size.
    TypeError
        ``penalties`` that is not a :class:`~fastdecode.Sampler`.

    Examples
    --------
    >>> import fastdecode as fd
    >>> from fastdecode.models import char_model
    >>> m = char_model()
    >>> r = fd.generate(m, [m.encode("Alice ")], max_new_tokens=5, decode=m.decode,
    ...                 sampler=fd.Mirostat(tau=3.0, seed=0))
    >>> r.texts[0], r.sampler_trace["kept"]
    ('to he', array([[11,  3,  3, 13,  3]]))
    """

    def __init__(self, tau: Any = 5.0, eta: Any = 0.1, version: int = 2, m: int = 100,
                 temperature: Any = 1.0, seed: Any = None, mu: Any = None, penalties: Any = None):
        self.penalties = _check_penalties(penalties)
        self.version = _version(version)
        self.m = _m(m)
        for name, val, kw in (("tau", tau, _POSITIVE), ("eta", eta, _NONNEG),
                              ("temperature", temperature, _NONNEG)):
            row_param(val, max(int(np.size(val)), 1), name, **kw)  # errors now, not mid-loop
        self.tau, self.eta, self.temperature, self.seed, self.mu = tau, eta, temperature, seed, mu

    @property
    def needs_history(self) -> bool:
        """True when ``penalties`` reads the token history."""
        return self.penalties is not None and self.penalties.needs_history

    def __repr__(self) -> str:
        pen = "" if self.penalties is None else f", penalties={self.penalties!r}"
        return (f"Mirostat(tau={self.tau!r}, eta={self.eta!r}, version={self.version}, m={self.m}, "
                f"temperature={self.temperature!r}, seed={self.seed!r}{pen})")

    def _start(self, B: int) -> "_MirostatState":
        _check_penalty_rows(self.penalties, B)
        return _MirostatState(self, B)


class _MirostatState(_RowState):
    def __init__(self, cfg: Mirostat, B: int):
        super().__init__(B)
        self.cfg = cfg
        self.tau = _row_values(cfg.tau, B, "tau", lo=0.0, hi=math.inf, lo_open=True, hi_open=True)
        self.eta = _row_values(cfg.eta, B, "eta", lo=0.0, hi=math.inf, hi_open=True)
        self.temperature = _row_values(cfg.temperature, B, "temperature", lo=0.0, hi=math.inf,
                                       hi_open=True)
        self.mu = _mu_array(cfg.mu, B, self.tau)
        self.final_mu = self.mu.copy()
        self.trace = _Trace(B, ("mu", "kept"), (np.float64, np.int64))

    def _select(self, keep: np.ndarray) -> None:
        super()._select(keep)
        self.tau, self.eta, self.temperature, self.mu = (
            self.tau[keep], self.eta[keep], self.temperature[keep], self.mu[keep])

    def _step(self, logits: np.ndarray, input_ids: Any, lengths: np.ndarray,
              prompt_lengths: np.ndarray, seeds: np.ndarray, want_logprobs: bool):
        logits = _apply_penalties(self.cfg.penalties, self, logits, input_ids, lengths, prompt_lengths)
        lg = as_logits(logits)
        A = lg.batch
        tokens = np.empty(A, dtype=np.int64)
        kept = np.empty(A, dtype=np.int64)
        lp = np.empty(A, dtype=np.float64) if want_logprobs else None
        mu = self.mu.copy()
        ops._k.mirostat(lg.array, self.tau, self.eta, self.temperature, self.cfg.version,
                        self.cfg.m, np.ascontiguousarray(seeds, dtype=np.uint64),
                        np.ascontiguousarray(lengths, dtype=np.int64), None, mu, tokens, lp, kept,
                        ops._threads[0])
        self.trace.add(self.rows, self.mu, kept)
        self.mu = mu
        self.final_mu[self.rows] = mu
        return tokens, lp

    def _trace(self) -> dict:
        out = self.trace.arrays()
        out["final_mu"] = self.final_mu.copy()
        return out


class Entropix:
    """The entropix policy as a sampler for :func:`fastdecode.generate`.

    Parameters
    ----------
    seed : int, array of B ints, or None
        As :class:`~fastdecode.Sampler` (``generate(seed=...)`` overrides it).
    penalties : fastdecode.Sampler, optional
        Penalties and constraints applied to the logits before the policy reads them (as
        :class:`Mirostat`'s ``penalties``).
    **params
        As :func:`entropix` (entropix's defaults). With ``clarify_token`` set the loop passes each
        row's history so that the token is not inserted twice in a row.

    Notes
    -----
    ``GenerateResult.sampler_trace`` holds ``"entropy"``, ``"varentropy"`` (B, n) float64 in bits
    (NaN past a row's end) and ``"branch"`` (B, n) int64 codes (-1 past the end; names in
    :data:`ENTROPIX_BRANCHES`).

    Raises
    ------
    TypeError, ValueError
        As :func:`entropix`, raised by the constructor (naming the parameter).

    Examples
    --------
    >>> import fastdecode as fd
    >>> from fastdecode.models import char_model
    >>> m = char_model()
    >>> r = fd.generate(m, [m.encode("Alice ")], max_new_tokens=5, decode=m.decode,
    ...                 sampler=fd.Entropix(seed=0))
    >>> r.texts[0], [fd.ENTROPIX_BRANCHES[b] for b in r.sampler_trace["branch"][0]]
    ('she w', ['adaptive', 'adaptive', 'adaptive', 'adaptive', 'adaptive'])
    """

    def __init__(self, seed: Any = None, penalties: Any = None, **params: Any):
        self.penalties = _check_penalties(penalties)
        self.params = _check_entropix(params)
        self.seed = seed
        self._vec = _entropix_vector(self.params)

    @property
    def needs_history(self) -> bool:
        """True when ``clarify_token`` is set or ``penalties`` reads the token history (the loop
        then passes each row's history)."""
        return self.params["clarify_token"] is not None or (
            self.penalties is not None and self.penalties.needs_history)

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.params.items() if _ENTROPIX_DEFAULTS[k] != v}
        pen = "" if self.penalties is None else f", penalties={self.penalties!r}"
        return f"Entropix(seed={self.seed!r}, {changed!r}{pen})"

    def _start(self, B: int) -> "_EntropixState":
        _check_penalty_rows(self.penalties, B)
        return _EntropixState(self, B)


class _EntropixState(_RowState):
    def __init__(self, cfg: Entropix, B: int):
        super().__init__(B)
        self.cfg = cfg
        self.trace = _Trace(B, ("entropy", "varentropy", "branch"), (np.float64, np.float64, np.int64))

    def _step(self, logits: np.ndarray, input_ids: Any, lengths: np.ndarray,
              prompt_lengths: np.ndarray, seeds: np.ndarray, want_logprobs: bool):
        logits = _apply_penalties(self.cfg.penalties, self, logits, input_ids, lengths, prompt_lengths)
        lg = as_logits(logits)
        A = lg.batch
        ct = self.cfg.params["clarify_token"]
        if ct is not None and ct >= lg.vocab:
            raise ValueError(f"clarify_token {ct} is outside the vocabulary of {lg.vocab}")
        last = None
        if input_ids is not None and ct is not None:
            ids = np.asarray(input_ids)
            last = np.ascontiguousarray(ids[np.arange(A), np.asarray(lengths) - 1], dtype=np.int64)
        tokens = np.empty(A, dtype=np.int64)
        branch = np.empty(A, dtype=np.int64)
        h = np.empty(A, dtype=np.float64)
        v = np.empty(A, dtype=np.float64)
        lp = np.empty(A, dtype=np.float64) if want_logprobs else None
        ops._k.entropix(lg.array, self.cfg._vec, last, np.ascontiguousarray(seeds, dtype=np.uint64),
                        np.ascontiguousarray(lengths, dtype=np.int64), tokens, branch, h, v, lp,
                        ops._threads[0])
        self.trace.add(self.rows, h, v, branch)
        return tokens, lp

    def _trace(self) -> dict:
        return self.trace.arrays()
