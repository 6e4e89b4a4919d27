"""Contrastive decoding (expert vs amateur) and classifier-free guidance as decoding loops.

The two models are wrapped in one stateful model, :class:`ContrastiveModel`, whose session holds a
session of each (see :mod:`fastdecode.session`): ``extend``, ``select`` and ``truncate`` go to
both, and the logits it returns are the per-token score

* contrastive decoding (Li et al. 2022, arXiv 2210.15097; O'Brien & Lewis 2023, arXiv 2309.09117):
  :func:`fastdecode.contrastive_logits` of the expert's and the amateur's next-token logits, -inf
  outside the expert's plausibility head;
* classifier-free guidance (Sanchez et al. 2023, arXiv 2306.17806; HF ``guidance_scale``):
  :func:`fastdecode.guidance_logits` of the expert on the prompt and the "amateur" (the same or
  another model) on a negative prompt, both extended with the same generated tokens.

So the ordinary loops run unchanged over the score: :func:`fastdecode.generate` (greedy: argmax of
the score; sampling: the :class:`~fastdecode.Sampler` treats the score as logits) and
:func:`fastdecode.beam_search` with ``normalize=False`` (a hypothesis scores the *sum* of its
tokens' contrastive scores, the paper's objective; no log-softmax is applied to the score).

The amateur's context window (``amateur_context=W``, the paper's "amateur sees only the last W
tokens") is exact: whenever a row's amateur history would exceed W tokens, the amateur's session
is restarted on the last W tokens of every row. With a stateful (KV-cached) amateur that costs a
prefill of up to W tokens per step instead of one token, i.e. O(W) amateur work per generated
token; a plain callable re-reads its whole input every step anyway (W tokens instead of the full
history).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from . import ops
from ._array import row_param
from .beam import BeamSearchResult, beam_search
from .generate import GenerateResult, generate
from .session import _as_rows, _as_truncate, as_prompts, declared_vocab, start_session

__all__ = ["ContrastiveModel", "contrastive_generate"]


def _context(w: Any) -> int | None:
    if w is None:
        return None
    if isinstance(w, (bool, np.bool_)) or not isinstance(w, (int, np.integer)):
        raise TypeError(f"amateur_context must be an int or None, got {w!r}")
    if w < 1:
        raise ValueError(f"amateur_context must be >= 1 (tokens the amateur sees), got {w}")
    return int(w)


class ContrastiveModel:
    """An expert and an amateur model as one stateful model whose logits are a contrastive score.

    Parameters
    ----------
    expert : callable or stateful model
        The model whose plausibility head is kept (see :mod:`fastdecode.session`).
    amateur : callable or stateful model, optional
        Must have the expert's vocabulary. None: the expert itself (for guidance, or with
        ``amateur_prompts`` / ``amateur_context``).
    alpha, amateur_temperature, beta
        As :func:`fastdecode.contrastive_logits`; scalars or one value per prompt.
    guidance_scale : float or array of floats, optional
        Classifier-free guidance instead of contrastive decoding: the score is
        :func:`fastdecode.guidance_logits` (HF's unbatched processor: log-softmax of both, then
        ``u + g (c - u)``); ``alpha``, ``amateur_temperature`` and ``beta`` do not apply.
    amateur_context : int, optional
        The amateur sees only the last ``amateur_context`` tokens of its history (module docstring).
    amateur_prompts : list of 1-D int arrays, optional
        The amateur's own prompt per row (a negative prompt); it is extended with the same generated
        tokens as the expert. Default: the expert's prompts, or under guidance HF's default, the
        last token of each prompt.

    ``start_session(prompts)`` returns a session with ``extend``, ``select``, ``truncate``,
    ``lengths`` (the expert's) and ``vocab_size``; ``extend`` returns float32 ``(B, n, V)`` scores.

    Raises
    ------
    ValueError
        ``beta`` together with ``guidance_scale``; a parameter out of range (naming it); the
        amateur's vocabulary differs from the expert's; ``amateur_context < 1``.

    Examples
    --------
    >>> import fastdecode as fd
    >>> from fastdecode.models import CharModel, char_model
    >>> expert, amateur = char_model(), CharModel(order=2)
    >>> cm = fd.ContrastiveModel(expert, amateur, alpha=0.1)
    >>> r = fd.generate(cm, [expert.encode("Alice was ")], max_new_tokens=20, decode=expert.decode)
    >>> r.texts[0]  # greedy on the contrastive score
    'very likely were nic'
    """

    def __init__(self, expert: Any, amateur: Any = None, *, alpha: Any = 0.1,
                 amateur_temperature: Any = 1.0, beta: Any = None, guidance_scale: Any = None,
                 amateur_context: int | None = None,
                 amateur_prompts: Sequence[np.ndarray] | None = None):
        self.expert = expert
        self.amateur = expert if amateur is None else amateur
        self.amateur_context = _context(amateur_context)
        self.amateur_prompts = None if amateur_prompts is None else [np.asarray(p, np.int64) for p in amateur_prompts]
        self.guidance = guidance_scale is not None
        if self.guidance and beta is not None:
            raise ValueError("beta does not apply with guidance_scale (classifier-free guidance has "
                             "no contrastive formula to choose)")
        # validated here for the scalar case; per-row arrays are checked against B at the start
        self._params = dict(alpha=alpha, amateur_temperature=amateur_temperature, beta=beta,
                            guidance_scale=guidance_scale)
        self._check_params(None)
        ve, va = declared_vocab(expert), declared_vocab(self.amateur)
        if ve is not None and va is not None and ve != va:
            raise ValueError(f"the amateur's vocabulary ({va} tokens) differs from the expert's ({ve}): "
                             "contrastive decoding needs one vocabulary")
        if ve is not None:
            self.vocab_size = ve

    def _check_params(self, B: int | None) -> dict:
        n = 1 if B is None else B
        p = self._params
        out = {}
        if self.guidance:
            g = p["guidance_scale"]
            if B is None and np.ndim(g) == 1:
                return out
            out["g"] = row_param(g, n, "guidance_scale", lo=-math.inf, hi=math.inf, lo_open=True,
                                 hi_open=True)
            return out
        for name, kw in (("alpha", dict(lo=0.0, hi=1.0)),
                         ("amateur_temperature", dict(lo=0.0, lo_open=True, hi=math.inf, hi_open=True)),
                         ("beta", dict(lo=0.0, hi=math.inf, hi_open=True))):
            v = p[name]
            if v is None or (B is None and np.ndim(v) == 1):
                out[name] = v
                continue
            out[name] = row_param(v, n, name, **kw)
        return out

    def start_session(self, prompts: Sequence[np.ndarray]) -> tuple["ContrastiveSession", np.ndarray]:
        """Start a decoding session (the stateful-model protocol of :mod:`fastdecode.session`).

        Parameters
        ----------
        prompts : sequence of 1-D int arrays
            One prompt per row (each non-empty).

        Returns
        -------
        session : ContrastiveSession
            With ``extend``, ``select``, ``truncate``, ``lengths`` and ``vocab_size``.
        logits : float32 ndarray, shape (B, V)
            The contrastive (or guidance) score after each prompt's last token.

        Raises
        ------
        ValueError
            Per-row parameters or ``amateur_prompts`` whose length is not the number of prompts.
        """
        prompts = [np.asarray(p, np.int64) for p in prompts]
        B = len(prompts)
        params = self._check_params(B)
        if self.amateur_prompts is not None:
            if len(self.amateur_prompts) != B:
                raise ValueError(f"amateur_input_ids has {len(self.amateur_prompts)} prompts but there are "
                                 f"{B} prompts")
            ap = self.amateur_prompts
        elif self.guidance:
            ap = [p[-1:] for p in prompts]  # HF: unconditional_ids default to input_ids[:, -1:]
        else:
            ap = prompts
        sess = ContrastiveSession(self, prompts, ap, params)
        return sess, sess._first


def _per_row(v: Any, B: int) -> Any:
    """A validated per-row parameter as a length-B array (None stays None)."""
    if v is None:
        return None
    return np.broadcast_to(v, (B,)).copy() if v.size == 1 else v


class ContrastiveSession:
    """The session of a :class:`ContrastiveModel`: one session per model plus the amateur's tokens."""

    def __init__(self, model: ContrastiveModel, prompts: list[np.ndarray], amateur_prompts: list[np.ndarray],
                 params: dict):
        self._m = model
        B = len(prompts)
        self._p = {k: _per_row(v, B) for k, v in params.items()}
        self._W = model.amateur_context
        self._e, e_last = start_session(model.expert, prompts)
        self.vocab_size = int(self._e.vocab_size)
        # the amateur's full token history (right-padded) and lengths
        cap = max(16, 2 * max(p.size for p in amateur_prompts))
        self._buf = np.zeros((B, cap), np.int64)
        self._alen = np.zeros(B, np.int64)
        for b, p in enumerate(amateur_prompts):
            self._buf[b, :p.size] = p
            self._alen[b] = p.size
        self._a, a_last = self._restart()
        self._first = self._score(e_last[:, None, :], a_last[:, None, :])[:, 0]

    # -- the amateur --------------------------------------------------------------------------

    def _windows(self, ends: np.ndarray) -> list[np.ndarray]:
        W = self._W
        return [self._buf[b, (0 if W is None else max(0, int(e) - W)):int(e)] for b, e in enumerate(ends)]

    def _restart(self, ends: np.ndarray | None = None) -> tuple[Any, np.ndarray]:
        """A fresh amateur session on each row's window ending at ``ends`` (default: now)."""
        ends = self._alen if ends is None else ends
        sess, last = start_session(self._m.amateur, self._windows(ends))
        if int(sess.vocab_size) != self.vocab_size:
            raise ValueError(f"the amateur's vocabulary ({sess.vocab_size} tokens) differs from the expert's "
                             f"({self.vocab_size}): contrastive decoding needs one vocabulary")
        return sess, last

    def _amateur_extend(self, tokens: np.ndarray) -> np.ndarray:
        B, n = tokens.shape
        need = int(self._alen.max()) + n
        if need > self._buf.shape[1]:
            grown = np.zeros((B, max(need, 2 * self._buf.shape[1])), np.int64)
            grown[:, :self._buf.shape[1]] = self._buf
            self._buf = grown
        for b in range(B):
            L = int(self._alen[b])
            self._buf[b, L:L + n] = tokens[b]
        self._alen += n
        W = self._W
        if self._a is not None and (W is None or int(np.max(self._a.lengths)) + n <= W):
            return self._a.extend(tokens)
        # the window slides (or the session is stale after a truncate): restart per position
        out = None
        for j in range(n):
            self._a, last = self._restart(self._alen - n + j + 1)
            if out is None:
                out = np.empty((B, n, last.shape[1]), last.dtype)
            out[:, j] = last
        return out

    # -- the score ----------------------------------------------------------------------------

    def _score(self, ye: np.ndarray, ya: np.ndarray) -> np.ndarray:
        B, n, V = ye.shape
        if ya.shape[-1] != V:
            raise ValueError(f"the amateur's vocabulary ({ya.shape[-1]} tokens) differs from the expert's "
                             f"({V}): contrastive decoding needs one vocabulary")
        e2, a2 = ye.reshape(B * n, V), ya.reshape(B * n, V)
        p = self._p

        def rows(v):
            return None if v is None else np.repeat(v, n)

        if self._m.guidance:
            s = ops.guidance_logits(e2, a2, rows(p["g"]))
        else:
            s = ops.contrastive_logits(e2, a2, alpha=rows(p["alpha"]),
                                       amateur_temperature=rows(p["amateur_temperature"]),
                                       beta=rows(p["beta"]))
        return np.asarray(s, np.float32).reshape(B, n, V)

    # -- the session protocol ---------------------------------------------------------------------

    @property
    def lengths(self) -> np.ndarray:
        return self._e.lengths

    @property
    def batch_size(self) -> int:
        return self._alen.size

    def extend(self, tokens: Any) -> np.ndarray:
        t = np.asarray(tokens, np.int64)
        if t.ndim == 1:
            t = t[:, None]
        ye = self._e.extend(t)
        ya = self._amateur_extend(t)
        return self._score(ye, ya)

    def select(self, rows: Any) -> None:
        r = _as_rows(rows, self._alen.size)
        self._e.select(r)
        if self._a is not None:
            self._a.select(r)
        self._buf, self._alen = self._buf[r], self._alen[r]
        self._p = {k: (None if v is None else v[r]) for k, v in self._p.items()}

    def truncate(self, lengths: Any) -> None:
        cur = np.asarray(self._e.lengths, np.int64)
        new = _as_truncate(lengths, cur)
        alen = self._alen - (cur - new)
        if (alen < 1).any():
            b = int(np.flatnonzero(alen < 1)[0])
            raise ValueError(f"lengths[{b}] cuts into the amateur's prompt (row {b})")
        self._e.truncate(new)
        self._alen = alen
        if self._W is None and self._a is not None:
            self._a.truncate(alen)
        else:
            self._a = None  # restarted on the next extend, on the right window


_BEAM_ONLY = ("length_penalty", "early_stopping", "num_return_sequences", "no_repeat_ngram_size",
              "do_sample", "num_beam_groups", "diversity_penalty")


def contrastive_generate(expert: Any, amateur: Any, input_ids: Any, *, max_new_tokens: int,
                         alpha: Any = 0.1, amateur_temperature: Any = 1.0, beta: Any = None,
                         amateur_context: int | None = None, amateur_input_ids: Any = None,
                         amateur_attention_mask: Any = None, guidance_scale: Any = None,
                         sampler: Any = None, num_beams: int = 1, eos_token_id: Any = None,
                         pad_token_id: int | None = None, seed: Any = None, attention_mask: Any = None,
                         lengths: Any = None, **kwargs: Any) -> GenerateResult | BeamSearchResult:
    """Contrastive decoding or classifier-free guidance: greedy, sampled or beam search.

    Parameters
    ----------
    expert : callable or stateful model
        The strong model (``model(input_ids) -> logits`` or an object with ``start_session``).
    amateur : callable or stateful model, or None
        The weak model, with the expert's vocabulary (a mismatch raises ``ValueError``). None uses
        the expert itself, which needs ``amateur_input_ids``, ``amateur_context`` or
        ``guidance_scale`` to differ from it.
    input_ids : (B, S) int array, or a list of B token-id sequences (ragged)
    max_new_tokens : int >= 0
    alpha : float or array of B floats in [0, 1], default 0.1
        Plausibility head: only tokens with ``p_exp >= alpha * max p_exp`` can be chosen.
    amateur_temperature : float or array of B floats > 0, default 1.0
        τ: the amateur's logits are divided by it.
    beta : float or array of B floats >= 0, optional
        None: Li et al.'s ``log p_exp - log p_ama``; a number: O'Brien & Lewis's
        ``(1 + β) z_exp - β z_ama``.
    amateur_context : int >= 1, optional
        The amateur sees only the last W tokens of its history (prompt and generated tokens); exact,
        at the cost of re-running the amateur on the window every step once it is full (see the
        module docstring).
    amateur_input_ids : (B, S') int array or list of B sequences, optional
        The amateur's own prompts (HF ``negative_prompt_ids`` for guidance), extended with the same
        generated tokens as the expert. Default: the expert's prompts; under ``guidance_scale`` HF's
        default, the last token of each prompt.
    amateur_attention_mask : (B, S') 0/1 array, optional
        Padding of a 2-D ``amateur_input_ids`` (HF ``negative_prompt_attention_mask``).
    guidance_scale : float or array of B floats, optional
        Classifier-free guidance instead of contrastive decoding: the step's scores are
        ``u + g (c - u)`` of the log-softmax of the expert on the prompt (c) and of the amateur on
        its prompt (u), HF's ``UnbatchedClassifierFreeGuidanceLogitsProcessor``; ``alpha`` and
        ``amateur_temperature`` are not used and ``beta`` must be None.
    sampler : Sampler, optional
        None is greedy over the score. With ``num_beams == 1`` a :class:`~fastdecode.Sampler`
        treats the score as logits (penalties, temperature, filters, seeded pick); with
        ``num_beams > 1`` it is passed to :func:`~fastdecode.beam_search`.
    num_beams : int >= 1
        > 1 runs :func:`~fastdecode.beam_search` with ``normalize=False``: a hypothesis scores the
        sum of its tokens' scores (the paper's objective, beam 5 there), divided by
        ``num_new_tokens ** length_penalty`` as HF does for finished hypotheses.
    eos_token_id, pad_token_id, seed, attention_mask, lengths
        As :func:`~fastdecode.generate`.
    **kwargs
        Passed on to :func:`~fastdecode.generate` (``min_new_tokens``, ``stop``, ``decode``,
        ``logprobs``, ``streamer``, ...) or, with ``num_beams > 1``, to
        :func:`~fastdecode.beam_search` (``length_penalty``, ``early_stopping``,
        ``num_return_sequences``, ``no_repeat_ngram_size``, ``do_sample``, ...).

    Returns
    -------
    GenerateResult or BeamSearchResult
        ``logprobs`` (greedy / sampling) are those of the softmax of the score.

    Raises
    ------
    ValueError, TypeError
        Bad arguments (the message names the argument), a vocabulary mismatch between the models,
        and the errors of :func:`~fastdecode.contrastive_logits` on the models' outputs.

    Notes
    -----
    Greedy decoding picks ``argmax`` of :func:`~fastdecode.contrastive_logits` (the first maximum
    on ties); the expert's and the amateur's logits come from one session call each per step.
    Rows are independent: per-row parameters follow their row when rows finish or beams reorder.

    Examples
    --------
    >>> import fastdecode as fd
    >>> from fastdecode.models import CharModel, char_model
    >>> expert, amateur = char_model(), CharModel(order=2)
    >>> r = fd.contrastive_generate(expert, amateur, [expert.encode("Alice was ")],
    ...                             max_new_tokens=20, decode=expert.decode)
    >>> r.texts[0]
    'very likely were nic'
    """
    nb = num_beams
    if isinstance(nb, (bool, np.bool_)) or not isinstance(nb, (int, np.integer)):
        raise TypeError(f"num_beams must be an int, got {nb!r}")
    if nb < 1:
        raise ValueError(f"num_beams must be >= 1, got {nb}")
    if amateur is None and amateur_input_ids is None and amateur_context is None and guidance_scale is None:
        raise ValueError("amateur=None uses the expert as its own amateur, which needs amateur_input_ids, "
                         "amateur_context or guidance_scale (otherwise every score is 0)")
    if nb == 1:
        bad = [k for k in _BEAM_ONLY if k in kwargs]
        if bad:
            raise TypeError(f"{bad[0]} applies to beam search only (num_beams > 1)")
    aprompts = None
    if amateur_input_ids is not None:
        aprompts, _ = as_prompts(amateur_input_ids, attention_mask=amateur_attention_mask,
                                 name="amateur_input_ids")
    elif amateur_attention_mask is not None:
        raise ValueError("amateur_attention_mask needs amateur_input_ids")
    model = ContrastiveModel(expert, amateur, alpha=alpha, amateur_temperature=amateur_temperature,
                             beta=beta, guidance_scale=guidance_scale, amateur_context=amateur_context,
                             amateur_prompts=aprompts)
    prompts, _ = as_prompts(input_ids, attention_mask=attention_mask, lengths=lengths)
    model._check_params(len(prompts))  # per-row parameters against the batch, before any model call
    if aprompts is not None and len(aprompts) != len(prompts):
        raise ValueError(f"amateur_input_ids has {len(aprompts)} prompts but input_ids has {len(prompts)}")
    if nb == 1:
        return generate(model, input_ids, max_new_tokens=max_new_tokens, sampler=sampler,
                        eos_token_id=eos_token_id, pad_token_id=pad_token_id, seed=seed,
                        attention_mask=attention_mask, lengths=lengths, **kwargs)
    return beam_search(model, input_ids, num_beams=nb, max_new_tokens=max_new_tokens, sampler=sampler,
                       eos_token_id=eos_token_id, pad_token_id=pad_token_id, seed=seed,
                       attention_mask=attention_mask, lengths=lengths, normalize=False, **kwargs)
