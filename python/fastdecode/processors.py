"""Configured samplers: penalties and filters set once, applied per decoding step.

A :class:`Sampler` is immutable. It holds no per-sequence state: the token history and the step
position are passed in on every call, so one sampler serves any number of sequences and threads.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from . import ops
from ._array import as_ids_matrix, as_logits, row_param

__all__ = ["Sampler"]


def _to_work_array(lg) -> np.ndarray:
    """A private float32 (float64 stays float64) copy of the logits for in-place penalties."""
    a = lg.array
    if lg.bf16:
        return (a.astype(np.uint32) << 16).view(np.float32)
    if a.dtype == np.float64:
        return np.array(a, dtype=np.float64)
    return np.array(a, dtype=np.float32)


class Sampler:
    """Penalties, filters and a seeded pick, configured once and applied per step.

    Parameters
    ----------
    temperature, top_k, top_p, min_p, typical_p, epsilon_cutoff, eta_cutoff, top_n_sigma, order
        As :func:`fastdecode.sample` (scalars or one value per row).
    repetition_penalty : float, default 1.0
        CTRL/HF penalty over the whole history (prompt included), see
        :func:`fastdecode.repetition_penalty`.
    presence_penalty, frequency_penalty : float, default 0.0
        OpenAI/vLLM penalties over the generated tokens: the history after ``prompt_lengths``
        (the whole history when ``prompt_lengths`` is not given to the call).
    penalty_last_n : int, optional
        Only the last ``penalty_last_n`` tokens count for the three penalties above (llama.cpp).
    no_repeat_ngram_size : int, default 0
        HF ``no_repeat_ngram_size`` (0 disables).
    logit_bias : dict {token_id: value}, optional
        :func:`fastdecode.logit_bias`.
    bad_words_ids : list of lists of token ids, optional
        HF ``bad_words_ids``, see :func:`fastdecode.bad_words`.
    suppress_tokens : list of token ids, optional
        Always removed, see :func:`fastdecode.suppress_tokens`.
    allowed_token_ids : list of token ids, optional
        A whitelist; every other token is removed.
    seed : int, array of ints, or None
        See :func:`fastdecode.sample`. None draws fresh entropy on every call.
    adaptive_temperature : bool, default False
        Replace the temperature by :func:`fastdecode.adaptive_temperature` (Veličković et al.
        2024) on rows with ``temperature > 0``; rows with ``temperature == 0`` stay greedy.
    dynatemp_range, dynatemp_exponent : float, default 0.0 and 1.0
        llama.cpp's dynamic temperature: with ``dynatemp_range > 0`` the temperature becomes
        :func:`fastdecode.dynamic_temperature` ``(temperature, dynatemp_range, dynatemp_exponent)``
        on rows with ``temperature > 0`` (``temperature == 0`` stays greedy). Exclusive with
        ``adaptive_temperature``.
    xtc_probability, xtc_threshold : float, default 0.0 and 0.1
        :func:`fastdecode.xtc` (llama.cpp names); its coin is keyed by the row's seed and position.
    dry_multiplier, dry_base, dry_allowed_length, dry_penalty_last_n : default 0.0, 1.75, 2, -1
        :func:`fastdecode.dry` over the whole history (prompt included, as llama.cpp's server
        feeds the prompt to its sampler); 0 multiplier disables.
    dry_sequence_breakers : list of token-id sequences, optional
        DRY's breakers as token ids (llama.cpp tokenizes its default strings ``"\\n", ":", "\"",
        "*"``; pass your tokenizer's ids for them).

    Raises
    ------
    ValueError
        A parameter outside its range (the message names it), an unknown ``order``, empty
        ``bad_words_ids`` entries, ``adaptive_temperature`` together with ``dynatemp_range``.
    TypeError
        A parameter of the wrong type (``logit_bias`` not a dict, ...), naming it.

    Notes
    -----
    Per step, on a private float32 copy of the logits (only when some penalty is active):
    repetition -> presence/frequency -> DRY -> no-repeat n-gram -> bad words -> logit bias ->
    suppress -> whitelist, then one fused :func:`fastdecode.sample` call. This is the order of
    HF's ``generate`` (penalties before warpers) and equals applying the functional ops one by one.

    When adaptive temperature, dynamic temperature or XTC is active the fused call cannot express
    the chain, so it is composed from the ops and ends in the same seeded pick at temperature 1:
    ``order="hf"``: penalties (DRY among them) -> temperature (adaptive / dynamic replace it) ->
    top-n-sigma -> top-k -> top-p -> min-p -> typical -> epsilon -> eta -> XTC -> pick;
    ``order="llama.cpp"``: penalties -> top-n-sigma -> top-k -> typical -> top-p -> min-p ->
    epsilon -> eta -> XTC -> temperature (adaptive / dynamic replace it) -> pick, llama.cpp's
    ``bias -> penalties -> DRY -> top-n-sigma -> top-k -> typical -> top-p -> min-p -> XTC ->
    temperature`` (here the logit bias comes after the penalties, in both orders). So in the
    llama.cpp order dynamic temperature sees only the surviving candidates and XTC the
    probabilities at temperature 1, as in llama.cpp; in the HF order both see the tempered full
    row. :meth:`final_logits` returns exactly the distribution the pick draws from (pass the same
    ``seed`` when XTC is active). beam_search applies DRY (with the penalties) and refuses the other
    three for beam sampling (HF's beam warpers do not include them).

    A Sampler is immutable; per-sequence state (histories, positions) is passed to each call.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> s = fd.Sampler(temperature=0.7, top_k=2, repetition_penalty=1.3, seed=1)
    >>> x = np.array([[2.0, 1.5, 1.0, -1.0], [0.5, 2.0, 1.8, 0.0]], dtype=np.float32)
    >>> ids = np.array([[0, 3], [1, 1]])
    >>> s.process(x, ids)  # the repetition penalty only
    array([[ 1.5385,  1.5   ,  1.    , -1.3   ],
           [ 0.5   ,  1.5385,  1.8   ,  0.    ]], dtype=float32)
    >>> fd.softmax(s.final_logits(x, ids))  # the distribution the pick draws from
    array([[0.5137, 0.4863, 0.    , 0.    ],
           [0.    , 0.4077, 0.5923, 0.    ]], dtype=float32)
    >>> s(x, ids, return_logprobs=True)  # seeded: position defaults to the history length
    (array([0, 1]), array([-0.6661, -0.8973]))
    """

    __slots__ = ("_cfg", "_plan")

    def __init__(self, *, temperature: Any = 1.0, top_k: Any = 0, top_p: Any = 1.0,
                 min_p: Any = 0.0, typical_p: Any = 1.0, epsilon_cutoff: Any = 0.0,
                 eta_cutoff: Any = 0.0, top_n_sigma: Any = 0.0, repetition_penalty: Any = 1.0,
                 presence_penalty: Any = 0.0, frequency_penalty: Any = 0.0,
                 penalty_last_n: int | None = None, no_repeat_ngram_size: int = 0,
                 logit_bias: Mapping[int, float] | None = None,
                 bad_words_ids: Sequence[Sequence[int]] | None = None,
                 suppress_tokens: Sequence[int] | None = None,
                 allowed_token_ids: Sequence[int] | None = None, order: str = "hf",
                 seed: Any = None, adaptive_temperature: bool = False,
                 dynatemp_range: Any = 0.0, dynatemp_exponent: Any = 1.0,
                 xtc_probability: Any = 0.0, xtc_threshold: Any = 0.1,
                 dry_multiplier: Any = 0.0, dry_base: Any = 1.75, dry_allowed_length: Any = 2,
                 dry_penalty_last_n: Any = -1,
                 dry_sequence_breakers: Sequence[Sequence[int]] | None = None):
        def n(v):
            return np.size(v) if np.ndim(v) == 1 else 1

        # Validate everything now, so a bad configuration fails before any decoding starts; the
        # first eight (the sample() parameters) are kept for the per-step path of the loops.
        checked = [row_param(v, n(v), name, **kw) for name, v, kw in [
            ("temperature", temperature, dict(lo=0.0, hi=math.inf, hi_open=True)),
            ("top_k", top_k, dict(lo=0, integer=True)),
            ("top_p", top_p, dict(lo=0.0, hi=1.0)),
            ("min_p", min_p, dict(lo=0.0, hi=1.0)),
            ("typical_p", typical_p, dict(lo=0.0, hi=1.0)),
            ("epsilon_cutoff", epsilon_cutoff, dict(lo=0.0, hi=1.0, hi_open=True)),
            ("eta_cutoff", eta_cutoff, dict(lo=0.0, hi=1.0, hi_open=True)),
            ("top_n_sigma", top_n_sigma, dict(lo=-math.inf, hi=math.inf, lo_open=True, hi_open=True)),
            ("repetition_penalty", repetition_penalty, dict(lo=0.0, lo_open=True, hi=math.inf, hi_open=True)),
            ("presence_penalty", presence_penalty, dict(lo=-math.inf, hi=math.inf, lo_open=True, hi_open=True)),
            ("frequency_penalty", frequency_penalty, dict(lo=-math.inf, hi=math.inf, lo_open=True, hi_open=True)),
        ]]
        if penalty_last_n is not None:
            row_param(penalty_last_n, 1, "penalty_last_n", lo=0, integer=True)
        row_param(no_repeat_ngram_size, 1, "no_repeat_ngram_size", lo=0, integer=True)
        if order not in ops._ORDERS:
            raise ValueError(f"order must be 'hf' or 'llama.cpp', got {order!r}")
        if seed is not None:
            ops._seeds(seed, n(seed))
        if logit_bias is not None and not isinstance(logit_bias, Mapping):
            raise TypeError("logit_bias must be a dict {token_id: value}")
        if bad_words_ids is not None:
            if any(len(w) == 0 for w in bad_words_ids):
                raise ValueError("bad_words_ids must not contain empty sequences")
        adaptive = _check_adaptive(n, adaptive_temperature, dynatemp_range, dynatemp_exponent,
                                   xtc_probability, xtc_threshold, dry_multiplier, dry_base,
                                   dry_allowed_length, dry_penalty_last_n, dry_sequence_breakers)
        self._cfg = dict(
            temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p,
            epsilon_cutoff=epsilon_cutoff, eta_cutoff=eta_cutoff, top_n_sigma=top_n_sigma,
            repetition_penalty=repetition_penalty, presence_penalty=presence_penalty,
            frequency_penalty=frequency_penalty, penalty_last_n=penalty_last_n,
            no_repeat_ngram_size=int(no_repeat_ngram_size),
            logit_bias=dict(logit_bias) if logit_bias else None,
            bad_words_ids=[list(w) for w in bad_words_ids] if bad_words_ids else None,
            suppress_tokens=list(suppress_tokens) if suppress_tokens is not None and len(suppress_tokens) else None,
            allowed_token_ids=list(allowed_token_ids) if allowed_token_ids is not None else None,
            order=order, seed=seed,
        )
        self._cfg.update(adaptive)
        self._plan = (checked[:8], False, False, False)
        hist = self._needs_history()
        self._plan = (checked[:8], hist, hist or bool(
            self._cfg["logit_bias"] or self._cfg["suppress_tokens"] or self._cfg["allowed_token_ids"] is not None),
            _chain_active(self._cfg))

    def __getattr__(self, name: str) -> Any:
        try:
            return object.__getattribute__(self, "_cfg")[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={v!r}" for k, v in self._cfg.items() if not _is_default(k, v))
        return f"Sampler({items})"

    @property
    def needs_history(self) -> bool:
        """True when some penalty reads the token history (``input_ids`` must then be passed)."""
        return self._plan[1]

    @property
    def edits_logits(self) -> bool:
        """True when some penalty or constraint changes the logits before the filters."""
        return self._plan[2]

    def _needs_history(self) -> bool:
        c = self._cfg
        return bool(
            np.any(np.asarray(c["repetition_penalty"]) != 1.0)
            or np.any(np.asarray(c["presence_penalty"]) != 0.0)
            or np.any(np.asarray(c["frequency_penalty"]) != 0.0)
            or c["no_repeat_ngram_size"] > 0
            or c["bad_words_ids"]
            or np.any(np.asarray(c["dry_multiplier"]) != 0.0)
        )


    def process(self, logits: Any, input_ids: Any = None, *, prompt_lengths: Any = None,
                lengths: Any = None, dtype: str | None = None) -> np.ndarray:
        """The penalised logits before the filters and the pick.

        Parameters
        ----------
        logits : array_like, shape (B, V) or (V,)
            float32, float64, float16 or bfloat16 (see ``dtype``) logits; never modified.
        input_ids : array_like of int, shape (B, T), optional
            The history so far (prompt included); required when a history penalty is set.
        prompt_lengths : int or array of B ints, optional
            Where the generated part of each history starts (for presence/frequency).
        lengths : int or array of B ints, optional
            Valid length of each history row (right padding).
        dtype : {None, "bfloat16"}
            "bfloat16" when ``logits`` is a ``uint16`` array holding bfloat16 bits.

        Returns
        -------
        ndarray
            A new float32 (float64 for float64 input) (B, V) array: the logits after the
            penalties and constraints (repetition -> presence/frequency -> DRY -> no-repeat n-gram
            -> bad words -> logit bias -> suppress -> whitelist).

        Raises
        ------
        ValueError
            ``input_ids`` missing while a history penalty is set; NaN or ``+inf`` logits; bad
            history ids (naming the row and position).
        """
        lg = as_logits(logits, dtype=dtype)
        return self._process(lg, input_ids, prompt_lengths, lengths)

    def _process(self, lg, input_ids, prompt_lengths, lengths) -> np.ndarray:
        c = self._cfg
        x = _to_work_array(lg)
        # Validate before a constraint can overwrite a NaN / +inf (the fused pick would then never
        # see it): one vectorised read of every row, raising ValueError naming the row.
        ops.argmax(x)
        ids = None
        if self.needs_history:
            if input_ids is None:
                raise ValueError("input_ids is required: this Sampler applies history-based penalties")
            ids = as_ids_matrix(input_ids, lg.batch)
        last_n = c["penalty_last_n"]
        if np.any(np.asarray(c["repetition_penalty"]) != 1.0):
            ops.repetition_penalty(x, ids, c["repetition_penalty"], lengths=lengths, last_n=last_n, out=x)
        if np.any(np.asarray(c["presence_penalty"]) != 0.0) or np.any(np.asarray(c["frequency_penalty"]) != 0.0):
            ops.presence_frequency_penalty(x, ids, presence=c["presence_penalty"],
                                           frequency=c["frequency_penalty"], lengths=lengths,
                                           prompt_lengths=prompt_lengths, last_n=last_n, out=x)
        if np.any(np.asarray(c["dry_multiplier"]) != 0.0):
            ops.dry(x, ids, c["dry_multiplier"], c["dry_base"], c["dry_allowed_length"],
                    c["dry_penalty_last_n"], c["dry_sequence_breakers"] or (), lengths=lengths, out=x)
        if c["no_repeat_ngram_size"] > 0:
            ops.no_repeat_ngram(x, ids, c["no_repeat_ngram_size"], lengths=lengths, out=x)
        if c["bad_words_ids"]:
            ops.bad_words(x, ids, c["bad_words_ids"], lengths=lengths, out=x)
        if c["logit_bias"]:
            ops.logit_bias(x, c["logit_bias"], out=x)
        if c["suppress_tokens"]:
            ops.suppress_tokens(x, c["suppress_tokens"], out=x)
        if c["allowed_token_ids"] is not None:
            ops.allowed_tokens(x, c["allowed_token_ids"], out=x)
        return x

    _ROW_PARAMS = ("temperature", "top_k", "top_p", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff",
                   "top_n_sigma", "repetition_penalty", "presence_penalty", "frequency_penalty", "seed",
                   "dynatemp_range", "dynatemp_exponent", "xtc_probability", "xtc_threshold",
                   "dry_multiplier", "dry_base", "dry_allowed_length", "dry_penalty_last_n")

    def _batch_size(self) -> int | None:
        """The batch size its per-row parameters imply (None when every parameter is a scalar)."""
        sizes = {np.size(self._cfg[k]) for k in self._ROW_PARAMS
                 if self._cfg[k] is not None and np.ndim(self._cfg[k]) == 1 and np.size(self._cfg[k]) > 1}
        if len(sizes) > 1:
            raise ValueError(f"the Sampler's per-row parameters have different lengths {sorted(sizes)}")
        return sizes.pop() if sizes else None

    def _subset(self, rows: np.ndarray) -> "Sampler":
        """The same sampler for the rows ``rows`` of the batch (per-row parameters sliced)."""
        cfg = dict(self._cfg)
        for k in self._ROW_PARAMS:
            v = cfg[k]
            if v is not None and np.ndim(v) == 1 and np.size(v) > 1:
                cfg[k] = np.asarray(v)[rows]
        return Sampler(**cfg)

    def _step(self, logits: np.ndarray, input_ids: Any, lengths: np.ndarray, prompt_lengths: np.ndarray,
              seeds: np.ndarray, want_logprobs: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """One decoding step for the loops: ``lengths`` (int64) are both the histories' lengths and
        the positions, ``seeds`` uint64 (one per row). Returns (tokens, logprobs or None)."""
        lg = as_logits(logits)
        x = self._process(lg, input_ids, prompt_lengths, lengths) if self._plan[2] else (
            _to_work_array(lg) if lg.bf16 else lg.array)
        B = x.shape[0]
        params = self._plan[0]
        for p, name in zip(params, _PLAN_NAMES):
            if p.size not in (1, B):
                raise ValueError(f"{name} has {p.size} values but logits has {B} rows")
        tokens = np.empty(B, dtype=np.int64)
        lp = np.empty(B, dtype=np.float64) if want_logprobs else None
        if self._plan[3]:
            x = self._chain(x if x is not lg.array else _to_work_array(lg), seeds, lengths)
            params, order = _PICK, 0
        else:
            order = ops._ORDERS[self._cfg["order"]]
        ops._k.sample(x, *params, order, seeds, lengths, None, tokens, lp, ops._threads[0])
        return tokens, lp

    def final_logits(self, logits: Any, input_ids: Any = None, *, prompt_lengths: Any = None,
                     lengths: Any = None, dtype: str | None = None, seed: Any = None,
                     position: Any = None) -> np.ndarray:
        """The logits of the exact distribution :meth:`__call__` draws from.

        Parameters
        ----------
        logits : array_like, shape (B, V) or (V,)
            float32, float64, float16 or bfloat16 (see ``dtype``) logits; never modified.
        input_ids : array_like of int, shape (B, T), optional
            The history so far (prompt included); required when a history penalty is set.
        prompt_lengths : int or array of B ints, optional
            Where the generated part of each history starts (for presence/frequency).
        lengths : int or array of B ints, optional
            Valid length of each history row (right padding).
        dtype : {None, "bfloat16"}
            "bfloat16" when ``logits`` is a ``uint16`` array holding bfloat16 bits.
        seed : int or array of B ints, optional
            Keys XTC's coin (default: the configured seed); unused without XTC.
        position : int or array of B ints, optional
            Keys XTC's coin (default: the position :meth:`__call__` would use).

        Returns
        -------
        ndarray
            float32 (float64 for float64 input) (B, V) logits: penalties, then temperature and
            the filters in the configured order, removed tokens ``-inf``; ``softmax`` of the result
            is the sampling distribution. A temperature-0 row becomes the one-hot of its first
            maximum (0 there, ``-inf`` elsewhere).

        Raises
        ------
        ValueError
            As :meth:`process`; with XTC active and no seed from the call or the configuration.

        Notes
        -----
        Used for "processed" logprobs and as the ``p``/``q`` of :func:`fastdecode.speculative_verify`.
        """
        lg = as_logits(logits, dtype=dtype)
        x = self._process(lg, input_ids, prompt_lengths, lengths) if self.edits_logits else _to_work_array(lg)
        if self._plan[3]:
            B = x.shape[0]
            seed = self._cfg["seed"] if seed is None else seed
            if seed is None and np.any(np.asarray(self._cfg["xtc_probability"]) > 0):
                raise ValueError("seed is required: XTC's coin depends on the seed of the call and "
                                 "this Sampler has none configured")
            seeds = np.broadcast_to(ops._seeds(seed if seed is not None else 0, B), (B,))
            pos = np.broadcast_to(ops._positions(_default_position(position, lengths, input_ids, B), B), (B,))
            return self._chain(x, np.ascontiguousarray(seeds), np.ascontiguousarray(pos))
        return self._chain(x)

    def _chain(self, x: np.ndarray, seeds: np.ndarray | None = None,
               pos: np.ndarray | None = None) -> np.ndarray:
        """Temperature (or adaptive / dynamic temperature), the filters and XTC on the processed x,
        in place, in the configured order (see the class Notes): the final logits. ``seeds`` and
        ``pos`` (B values each) key XTC's coin."""
        c = self._cfg
        B = x.shape[0]
        t = np.broadcast_to(row_param(c["temperature"], B, "temperature", lo=0.0, hi=math.inf, hi_open=True), (B,))
        greedy = t == 0
        first = ops.argmax(x) if greedy.any() else None

        def temper():
            tt = np.where(greedy, 1.0, t).astype(x.dtype)
            if c["adaptive_temperature"]:
                ops.adaptive_temperature(x, out=x)
            elif np.any(np.asarray(c["dynatemp_range"]) > 0):
                ops.dynamic_temperature(x, np.where(greedy, 1.0, t), c["dynatemp_range"],
                                        c["dynatemp_exponent"], out=x)
            else:
                np.divide(x, tt[:, None], out=x)

        def exclude():
            if np.any(np.asarray(c["xtc_probability"]) > 0):
                ops.xtc(x, c["xtc_probability"], c["xtc_threshold"], seed=seeds, position=pos, out=x)

        chain = [("top_n_sigma", ops.top_n_sigma, 0.0), ("top_k", ops.top_k, 0), ("top_p", ops.top_p, 1.0),
                 ("min_p", ops.min_p, 0.0), ("typical_p", ops.typical_p, 1.0),
                 ("epsilon_cutoff", ops.epsilon_cutoff, 0.0), ("eta_cutoff", ops.eta_cutoff, 0.0)]
        if c["order"] in ("hf", "vllm"):
            temper()
        else:
            chain = [chain[0], chain[1], chain[4], chain[2], chain[3], chain[5], chain[6]]
        for name, fn, off in chain:
            v = np.asarray(c[name])
            active = (v > 0) if name == "top_n_sigma" else (v != off)
            if np.any(active):
                fn(x, v, out=x)
        exclude()
        if c["order"] not in ("hf", "vllm"):
            temper()
        if first is not None:
            rows = np.flatnonzero(greedy)
            x[rows] = -np.inf
            x[rows, np.asarray(first)[rows]] = 0.0
        return x

    def __call__(self, logits: Any, input_ids: Any = None, position: Any = None, *,
                 prompt_lengths: Any = None, lengths: Any = None, seed: Any = None,
                 return_logprobs: bool = False, dtype: str | None = None) -> Any:
        """Pick one token per row.

        Parameters
        ----------
        logits : array_like, shape (B, V) or (V,)
        input_ids : array_like of int, shape (B, T), optional
            The history so far (prompt included); required when a history penalty is set.
        position : int or array of B ints, optional
            Step counter for the random stream; defaults to each row's history length
            (``lengths``, else T, else 0), which advances by itself in a decoding loop.
        prompt_lengths : int or array of B ints, optional
            Where the generated part of each history starts (for presence/frequency).
        lengths : int or array of B ints, optional
            Valid length of each history row (right padding).
        seed : int or array of B ints, optional
            Overrides the configured seed for this call.
        return_logprobs : bool
            Also return each chosen token's log-probability under the final distribution.
        dtype : "bfloat16", optional
            Read ``uint16`` logits as bfloat16 bits.

        Returns
        -------
        tokens : ndarray or torch.Tensor
            int64 token ids, shape (B,) (0-d for a 1-D input).
        logprobs : ndarray or torch.Tensor
            Only with ``return_logprobs``: float64 log-probabilities of the chosen tokens.

        Raises
        ------
        ValueError
            As :meth:`process` and :func:`fastdecode.sample` (a row with no finite logit left,
            a bad ``seed`` or ``position``), naming the argument.

        Notes
        -----
        The draw is :func:`fastdecode.sample`'s: keyed by (seed, position) of each row, so the
        same history, seed and position give the same token whatever the batch.
        """
        lg = as_logits(logits, dtype=dtype)
        c = self._cfg
        if self.edits_logits:
            x = self._process(lg, input_ids, prompt_lengths, lengths)
        else:
            x = lg.array
            if lg.bf16:
                x = _to_work_array(lg)
        position = _default_position(position, lengths, input_ids, lg.batch)
        if self._plan[3]:
            B = lg.batch
            seeds = np.ascontiguousarray(np.broadcast_to(
                ops._seeds(c["seed"] if seed is None else seed, B), (B,)))
            pos = np.ascontiguousarray(np.broadcast_to(ops._positions(position, B), (B,)))
            x = self._chain(x if x is not lg.array else _to_work_array(lg), seeds, pos)
            res = ops.sample(x if not lg.one_d else x[0], seed=seeds, position=pos,
                             return_logprobs=return_logprobs)
        else:
            res = ops.sample(
                x if not lg.one_d else x[0], temperature=c["temperature"], top_k=c["top_k"],
                top_p=c["top_p"], min_p=c["min_p"], typical_p=c["typical_p"],
                epsilon_cutoff=c["epsilon_cutoff"], eta_cutoff=c["eta_cutoff"],
                top_n_sigma=c["top_n_sigma"], seed=c["seed"] if seed is None else seed,
                position=position, order=c["order"], return_logprobs=return_logprobs,
            )
        if lg.torch:
            import torch

            if return_logprobs:
                return torch.from_numpy(np.asarray(res[0])), torch.from_numpy(np.asarray(res[1]))
            return torch.from_numpy(np.asarray(res))
        return res


def _default_position(position: Any, lengths: Any, input_ids: Any, batch: int) -> Any:
    """The position a call uses when none is given: each row's history length."""
    if position is not None:
        return position
    if lengths is not None:  # validated here so that an error names the argument given
        return row_param(lengths, batch, "lengths", lo=0, integer=True)
    if input_ids is not None:
        return np.shape(input_ids)[-1]
    return 0


def _check_adaptive(n, adaptive_temperature, dynatemp_range, dynatemp_exponent, xtc_probability,
                    xtc_threshold, dry_multiplier, dry_base, dry_allowed_length, dry_penalty_last_n,
                    dry_sequence_breakers) -> dict:
    """Validates the adaptive-sampler options of a Sampler; returns them for its configuration."""
    if not isinstance(adaptive_temperature, (bool, np.bool_)):
        raise TypeError(f"adaptive_temperature must be a bool, got {type(adaptive_temperature).__name__}")
    fin = dict(hi=math.inf, hi_open=True)
    for name, v, kw in [
        ("dynatemp_range", dynatemp_range, dict(lo=0.0, **fin)),
        ("dynatemp_exponent", dynatemp_exponent, dict(lo=0.0, **fin)),
        ("xtc_probability", xtc_probability, dict(lo=0.0, hi=1.0)),
        ("xtc_threshold", xtc_threshold, dict(lo=0.0, hi=1.0)),
        ("dry_multiplier", dry_multiplier, dict(lo=0.0, **fin)),
        ("dry_base", dry_base, dict(lo=1.0, **fin)),
        ("dry_allowed_length", dry_allowed_length, dict(lo=0, hi=2.0**31 - 1, integer=True)),
        ("dry_penalty_last_n", dry_penalty_last_n, dict(lo=-1, hi=2.0**62, integer=True)),
    ]:
        row_param(v, n(v), name, **kw)
    if adaptive_temperature and np.any(np.asarray(dynatemp_range) > 0):
        raise ValueError("adaptive_temperature and dynatemp_range > 0 both replace the temperature: "
                         "choose one")
    breakers = None
    if dry_sequence_breakers is not None:
        if isinstance(dry_sequence_breakers, (str, bytes)) or not isinstance(dry_sequence_breakers, Sequence):
            raise TypeError("dry_sequence_breakers must be a list of token-id sequences, e.g. [[13], [25]]")
        breakers = []
        for i, b in enumerate(dry_sequence_breakers):
            if isinstance(b, (int, np.integer)) and not isinstance(b, (bool, np.bool_)):
                b = [b]
            if isinstance(b, (str, bytes)) or not isinstance(b, (Sequence, np.ndarray)):
                raise TypeError(f"dry_sequence_breakers[{i}] must be a sequence of token ids "
                                "(tokenize llama.cpp's strings first)")
            ids = [int(t) for t in b]
            if not ids:
                raise ValueError(f"dry_sequence_breakers[{i}] is empty")
            if min(ids) < 0:
                raise ValueError(f"dry_sequence_breakers[{i}]: token ids must be >= 0")
            breakers.append(ids)
    return dict(adaptive_temperature=bool(adaptive_temperature), dynatemp_range=dynatemp_range,
                dynatemp_exponent=dynatemp_exponent, xtc_probability=xtc_probability,
                xtc_threshold=xtc_threshold, dry_multiplier=dry_multiplier, dry_base=dry_base,
                dry_allowed_length=dry_allowed_length, dry_penalty_last_n=dry_penalty_last_n,
                dry_sequence_breakers=breakers or None)


def _chain_active(c: dict) -> bool:
    """Whether the step needs the composed chain (an option the fused sample() cannot express)."""
    return bool(c["adaptive_temperature"] or np.any(np.asarray(c["dynatemp_range"]) > 0)
                or np.any(np.asarray(c["xtc_probability"]) > 0))


# the fused sampler's parameters for a bare pick from final logits: temperature 1, no filter
_PICK = [np.array([v]) for v in (1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0)]

_PLAN_NAMES = ("temperature", "top_k", "top_p", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff",
               "top_n_sigma")

_DEFAULTS = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0, epsilon_cutoff=0.0,
                 eta_cutoff=0.0, top_n_sigma=0.0, repetition_penalty=1.0, presence_penalty=0.0,
                 frequency_penalty=0.0, penalty_last_n=None, no_repeat_ngram_size=0, logit_bias=None,
                 bad_words_ids=None, suppress_tokens=None, allowed_token_ids=None, order="hf",
                 seed=None, adaptive_temperature=False, dynatemp_range=0.0, dynatemp_exponent=1.0,
                 xtc_probability=0.0, xtc_threshold=0.1, dry_multiplier=0.0, dry_base=1.75,
                 dry_allowed_length=2, dry_penalty_last_n=-1, dry_sequence_breakers=None)


def _is_default(k: str, v: Any) -> bool:
    d = _DEFAULTS.get(k, object())
    try:
        return bool(np.ndim(v) == 0 and v == d) or (v is None and d is None)
    except Exception:
        return False
