"""Speculative decoding: a cheap draft proposes, the target verifies several tokens per call.

Per step and per batch: the drafter proposes up to ``gamma`` tokens per row (a draft model
sampling from its processed distribution ``q``, or a deterministic drafter such as prompt
lookup); the target scores the pending token and every draft in **one** call, giving its
processed distributions ``p_1 .. p_{gamma+1}``; one C call (:func:`fastdecode.speculative_verify`)
accepts a prefix of the drafts per row and draws the next token, so each row advances by
``accepted + 1`` tokens. Rejected tokens are truncated from both sessions. Rows advance by
different amounts (Hugging Face's assisted generation is batch-1 only).

Exactness: the target's and the draft's logits go through the same processing a plain
:func:`fastdecode.generate` step applies (EOS masking for ``min_new_tokens``, the
:class:`~fastdecode.Sampler`'s penalties on the history *including* the earlier drafts,
temperature and filters: :meth:`Sampler.final_logits`), the draft token is drawn from exactly the
``q`` used in the acceptance test, and the verification is Leviathan et al.'s rule. The output is
therefore distributed exactly as plain sampling from the target, and in greedy mode it is token for
token the target's greedy output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from . import ops
from ._kernels import uniform as _uniform
from .generate import (GenerateResult, StreamEvent, _check_loop_ids, _eos_ids, _hold_back,
                       _HFStreamerAdapter, _int_arg, _result, _row_seeds, _stops)
from .processors import Sampler
from .session import as_prompts, check_ids_in_vocab, declared_vocab, start_session

__all__ = ["Drafter", "PromptLookup", "SpeculativeResult", "SpeculativeStats", "speculative_generate"]

_NEG_INF = np.float32(-np.inf)
# fd.h FD_DRAW_SPEC_DRAFT: the draft's own draw at a position (distinct from the verifier's streams)
_DRAW_DRAFT = 0x5350454344


@runtime_checkable
class Drafter(Protocol):
    """A deterministic drafter: proposes tokens from the token history alone.

    ``propose(histories, num_tokens)`` receives one 1-D int64 array per row (prompt and generated
    tokens so far) and returns, per row, a sequence of at most ``num_tokens`` token ids (possibly
    empty: the step then makes one plain target call for that row). The drafts are treated as
    certain (``q`` is their one-hot), which keeps sampling exact whatever the drafter does.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> from fastdecode.speculative import Drafter
    >>> class Repeat:  # drafts the last token again
    ...     def propose(self, histories, num_tokens):
    ...         return [np.repeat(h[-1:], num_tokens) for h in histories]
    >>> isinstance(Repeat(), Drafter), isinstance(fd.PromptLookup(), Drafter)
    (True, True)
    """

    def propose(self, histories: Sequence[np.ndarray], num_tokens: int) -> Sequence[Sequence[int]]:
        """Draft tokens for each row.

        Parameters
        ----------
        histories : sequence of 1-D int64 arrays
            Each row's tokens so far (prompt and generated tokens).
        num_tokens : int
            The most tokens to propose per row.

        Returns
        -------
        sequence of int sequences
            Per row, at most ``num_tokens`` token ids (possibly none).
        """
        ...


class PromptLookup:
    """Prompt-lookup drafts (Hugging Face ``prompt_lookup_num_tokens``, vLLM's ngram proposer).

    The last ``n`` tokens of a row (n from ``max_ngram_size`` down to ``min_ngram_size``) are
    searched for in the row's history (prompt and generated tokens); at the earliest occurrence
    that has at least one token after it, the tokens that followed are proposed. This is HF's
    ``PromptLookupCandidateGenerator`` rule (first match in the history, longest n-gram first).
    Cheap and effective on input-grounded tasks (summaries, edits, code, extraction).

    Parameters
    ----------
    max_ngram_size : int >= 1, default 2
        The longest suffix searched for (HF ``max_matching_ngram_size``).
    min_ngram_size : int >= 1, default 1
        The shortest suffix searched for; at most ``max_ngram_size``.

    Raises
    ------
    ValueError
        A size below 1, or ``min_ngram_size > max_ngram_size`` (naming the argument).
    TypeError
        A size that is not an int.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> fd.PromptLookup(max_ngram_size=2).propose([np.array([1, 2, 3, 4, 1, 2])], 3)
    [array([3, 4, 1])]
    """

    def __init__(self, max_ngram_size: int = 2, min_ngram_size: int = 1):
        self.max_ngram_size = _int_arg(max_ngram_size, "max_ngram_size", 1)
        self.min_ngram_size = _int_arg(min_ngram_size, "min_ngram_size", 1)
        if self.min_ngram_size > self.max_ngram_size:
            raise ValueError(f"min_ngram_size ({min_ngram_size}) must be <= max_ngram_size "
                             f"({max_ngram_size})")

    def __repr__(self) -> str:
        return f"PromptLookup(max_ngram_size={self.max_ngram_size}, min_ngram_size={self.min_ngram_size})"

    def propose(self, histories: Sequence[np.ndarray], num_tokens: int) -> list[np.ndarray]:
        """Draft up to ``num_tokens`` tokens for each history (the ``Drafter`` protocol).

        Parameters
        ----------
        histories : sequence of int arrays
            Each row's tokens so far, prompt included.
        num_tokens : int
            The most tokens to propose per row.

        Returns
        -------
        list of int64 arrays
            One per row, of length 0 .. ``num_tokens`` (empty when no n-gram matches, or when
            ``num_tokens <= 0``); the proposal never runs past the end of the history.
        """
        out = []
        for h in histories:
            out.append(self._one(np.asarray(h, np.int64), num_tokens))
        return out

    def _one(self, h: np.ndarray, num_tokens: int) -> np.ndarray:
        L = h.size
        if num_tokens <= 0:
            return h[:0]
        for n in range(min(self.max_ngram_size, L - 1), self.min_ngram_size - 1, -1):
            win = np.lib.stride_tricks.sliding_window_view(h[:L - 1], n)  # windows ending before the suffix's last token
            hits = np.flatnonzero((win == h[L - n:]).all(axis=1))
            if hits.size:
                start = int(hits[0]) + n  # earliest match; it always has a continuation (start <= L - 1)
                return h[start:min(start + num_tokens, L)]
        return h[:0]


@dataclass
class SpeculativeStats:
    """What speculative decoding did.

    Attributes
    ----------
    drafted, accepted : int64 arrays (B,)
        Drafts verified and drafts accepted, per row.
    target_calls : int
        Calls of the target, the prompt's prefill included: one per step (scoring the pending
        token and the drafts of the whole batch), plus the prefill. The first step verifies
        against the prefill's last logits, so it makes a call only when it has drafts.
    draft_calls : int
        Calls of the draft model, its prefill included (0 for a deterministic drafter).
    steps : int
        Verification rounds: each row advances by its accepted drafts plus one token per round,
        so with every draft accepted, n tokens take ``ceil(n / (gamma + 1))`` rounds.
    new_tokens : int
        Tokens generated, all rows.
    num_draft_tokens : list of int arrays
        The draft length of each row at each step (adaptive gamma trace).

    Examples
    --------
    >>> import fastdecode as fd
    >>> from fastdecode.models import char_model
    >>> m = char_model()
    >>> r = fd.speculative_generate(m, "prompt_lookup", [m.encode("the cat and the cat and the ")],
    ...                             max_new_tokens=12)
    >>> s = r.stats
    >>> int(s.drafted[0]), int(s.accepted[0]), s.target_calls, s.steps, s.new_tokens
    (19, 3, 10, 9, 12)
    >>> round(s.acceptance_rate, 4), s.tokens_per_target_call
    (0.1579, 1.2)
    """

    drafted: np.ndarray
    accepted: np.ndarray
    target_calls: int
    draft_calls: int
    steps: int
    new_tokens: int
    num_draft_tokens: list

    @property
    def acceptance_rate(self) -> float:
        """Accepted / drafted over all rows (NaN when nothing was drafted)."""
        d = int(self.drafted.sum())
        return float(self.accepted.sum()) / d if d else math.nan

    @property
    def tokens_per_target_call(self) -> float:
        """New tokens per row and target call, prefill included (plain decoding: 1)."""
        B = self.drafted.size
        return self.new_tokens / (self.target_calls * B) if B else math.nan

    @property
    def tokens_per_step(self) -> float:
        """New tokens per row and verification round (at most gamma + 1)."""
        B = self.drafted.size
        return self.new_tokens / (self.steps * B) if B and self.steps else math.nan

    def __repr__(self) -> str:
        return (f"SpeculativeStats(acceptance_rate={self.acceptance_rate:.3f}, drafted="
                f"{int(self.drafted.sum())}, accepted={int(self.accepted.sum())}, target_calls="
                f"{self.target_calls}, draft_calls={self.draft_calls}, new_tokens={self.new_tokens}, "
                f"tokens_per_target_call={self.tokens_per_target_call:.2f})")


@dataclass
class SpeculativeResult(GenerateResult):
    """:class:`~fastdecode.GenerateResult` plus ``stats`` (:class:`SpeculativeStats`).

    Attributes
    ----------
    sequences, lengths, prompt_lengths, offsets, finish_reasons, stop_reasons
        As :class:`~fastdecode.GenerateResult`.
    token_logprobs, top_logprobs, top_ids, sampler_trace
        Always None here (speculative decoding does not report them).
    texts : list of str, optional
        The decoded new text per row, with ``decode``.
    stats : SpeculativeStats
        Drafted and accepted counts, model calls, acceptance rate.

    Examples
    --------
    >>> import fastdecode as fd
    >>> from fastdecode.models import char_model
    >>> m = char_model()
    >>> r = fd.speculative_generate(m, "prompt_lookup", [m.encode("the cat and the cat and the ")],
    ...                             max_new_tokens=12, decode=m.decode)
    >>> r.texts[0], r.stats.new_tokens, r.stats.target_calls
    ('tried to her', 12, 10)
    """

    stats: SpeculativeStats | None = None


def _is_model(x: Any) -> bool:
    return hasattr(x, "start_session") or callable(x)


def speculative_generate(target: Any, draft: Any, input_ids: Any, *, max_new_tokens: int,
                         num_draft_tokens: int = 4, sampler: Sampler | None = None,
                         eos_token_id: Any = None, pad_token_id: int | None = None,
                         min_new_tokens: int = 0, stop: Any = None, seed: Any = None,
                         adaptive: bool = False, max_draft_tokens: int | None = None,
                         attention_mask: Any = None, lengths: Any = None, streamer: Any = None,
                         decode: Any = None) -> SpeculativeResult:
    """Speculative decoding: the output of :func:`fastdecode.generate` on ``target``, faster.

    Parameters
    ----------
    target : callable or stateful model
        The model whose distribution is sampled (see :mod:`fastdecode.session`).
    draft : model, :class:`Drafter`, or "prompt_lookup"
        A model with the target's vocabulary (a callable, a stateful model, ``HFModel`` of a
        smaller model or of the target's early layers), or a deterministic drafter such as
        :class:`PromptLookup` (``"prompt_lookup"`` is ``PromptLookup()``).
    input_ids, max_new_tokens, sampler, eos_token_id, pad_token_id, min_new_tokens, seed,
    attention_mask, lengths
        As :func:`fastdecode.generate`. The sampler (penalties, temperature, filters) is applied
        to the target and to the draft exactly as a plain step applies it; None is greedy.
    stop : int, sequence of ints, or list of them
        Stop token sequences (as generate; stop *strings* are not supported here).
    num_draft_tokens : int >= 1
        Drafts per step (gamma), the initial value when ``adaptive``.
    adaptive : bool
        Hugging Face's "heuristic" schedule, per row: +2 after a step whose drafts were all
        accepted, -1 (never below 1) otherwise; capped by ``max_draft_tokens`` (default 4 *
        num_draft_tokens). With a batch, the draft model drafts for the longest row's gamma.
    max_draft_tokens : int >= num_draft_tokens, optional
        The cap of the adaptive schedule (default ``4 * num_draft_tokens``).
    streamer : callable or Hugging Face streamer, optional
        As :func:`fastdecode.generate`: called with a :class:`~fastdecode.StreamEvent` after every
        verification round (several tokens per row at once).
    decode : callable, optional
        ``decode(list_of_ids) -> str``, for ``texts`` and streamed text (not for stop strings).

    Returns
    -------
    SpeculativeResult
        The fields of :class:`~fastdecode.GenerateResult` and ``stats``.

    Raises
    ------
    TypeError
        ``sampler`` not a :class:`~fastdecode.Sampler`, ``draft`` not a model or drafter,
        ``adaptive`` not a bool, ``decode`` or ``streamer`` of the wrong kind.
    ValueError
        Bad counts (``max_new_tokens``, ``num_draft_tokens``, ``max_draft_tokens``), stop strings,
        an unknown ``draft`` string, mixed padding, and every argument error of
        :func:`fastdecode.generate`; messages name the argument.

    Notes
    -----
    Greedy (``sampler=None``, or temperature-0 rows): drafts are accepted while they equal the
    target's first maximum, so the output equals greedy ``generate`` on the target token for
    token. Sampling: Leviathan et al.'s rule (see :func:`fastdecode.speculative_verify`); the
    output sequence is distributed exactly as sampling from the target with the same sampler
    (not the same tokens for a seed: the random streams differ). Row results do not depend on
    the batch. An EOS or stop sequence inside an accepted block ends the row there. Rollback:
    the target and draft sessions are truncated to the accepted tokens (``truncate`` of the
    session protocol; ``HFModel`` crops its ``DynamicCache``).

    Examples
    --------
    >>> import fastdecode as fd
    >>> from fastdecode.models import char_model
    >>> m = char_model()
    >>> prompt = [m.encode("the cat and the cat and the ")]
    >>> r = fd.speculative_generate(m, "prompt_lookup", prompt, max_new_tokens=12)
    >>> g = fd.generate(m, prompt, max_new_tokens=12)
    >>> bool((r.sequences == g.sequences).all())  # greedy: token for token the plain output
    True
    >>> r.stats.drafted.sum(), r.stats.accepted.sum()
    (np.int64(19), np.int64(3))
    """
    max_new = _int_arg(max_new_tokens, "max_new_tokens")
    min_new = _int_arg(min_new_tokens, "min_new_tokens")
    gamma0 = _int_arg(num_draft_tokens, "num_draft_tokens", 1)
    gmax = 4 * gamma0 if max_draft_tokens is None else _int_arg(max_draft_tokens, "max_draft_tokens", 1)
    if gmax < gamma0:
        raise ValueError(f"max_draft_tokens ({gmax}) must be >= num_draft_tokens ({gamma0})")
    if not isinstance(adaptive, (bool, np.bool_)):
        raise TypeError(f"adaptive must be a bool, got {adaptive!r}")
    if sampler is not None and not isinstance(sampler, Sampler):
        raise TypeError(f"sampler must be a fastdecode.Sampler or None, got {type(sampler).__name__}")
    if isinstance(draft, str):
        if draft != "prompt_lookup":
            raise ValueError(f"draft must be a model, a Drafter or 'prompt_lookup', got {draft!r}")
        draft = PromptLookup()
    drafter = draft if isinstance(draft, Drafter) and not hasattr(draft, "start_session") else None
    if drafter is None and not _is_model(draft):
        raise TypeError("draft must be a model (callable or stateful), an object with "
                        f"propose(histories, num_tokens), or 'prompt_lookup'; got {type(draft).__name__}")
    eos = _eos_ids(eos_token_id)
    if isinstance(stop, str) or (isinstance(stop, (list, tuple)) and any(isinstance(s, str) for s in stop)):
        raise ValueError("stop: speculative_generate supports stop token sequences, not stop strings")
    _, stop_seqs = _stops(stop, None)
    pad = (int(eos[0]) if eos.size else 0) if pad_token_id is None else _int_arg(pad_token_id, "pad_token_id")
    prompts, layout = as_prompts(input_ids, attention_mask=attention_mask, lengths=lengths)
    B = len(prompts)
    if layout["left"] and not (layout["offsets"] + np.array([p.size for p in prompts]) == layout["width"]).all():
        raise ValueError("attention_mask mixes left and right padding; pad every row on the same side")
    if sampler is not None:
        nb = sampler._batch_size()
        if nb is not None and nb != B:
            raise ValueError(f"the sampler has per-row parameters for {nb} rows but there are {B} prompts")
    seeds = _row_seeds(seed, sampler, B)
    plen = np.array([p.size for p in prompts], np.int64)
    if decode is not None and not callable(decode):
        raise TypeError("decode must be a callable mapping a list of token ids to a string")
    hf_streamer = None
    if streamer is not None and not callable(streamer):
        if not (hasattr(streamer, "put") and hasattr(streamer, "end")):
            raise TypeError("streamer must be a callable or an object with put() and end()")
        hf_streamer = streamer = _HFStreamerAdapter(streamer, prompts, B, pad)
    emitted = [0] * B
    n_events = [0]

    def emit(active: np.ndarray, before: np.ndarray, done: np.ndarray) -> None:
        # one event per new token position, as a plain loop would have produced them
        new = gen[active] - before
        for j in range(int(new.max()) if new.size else 0):
            sel = np.flatnonzero(new > j)
            rows = active[sel]
            toks = hist[rows, plen[rows] + before[sel] + j]
            texts = [] if decode is not None else None
            fin = {}
            for i in sel:
                b = int(active[i])
                last = j + 1 == new[i]
                if last and done[i]:
                    fin[b] = reasons[b]
                if texts is not None:
                    k = int(before[i]) + j + 1
                    full = decode(hist[b, plen[b]:plen[b] + k].tolist())
                    safe = full if last and done[i] else full[:len(full) - _hold_back(full, [])]
                    texts.append(safe[emitted[b]:] if len(safe) > emitted[b] else "")
                    emitted[b] = max(emitted[b], len(safe))
            streamer(StreamEvent(n_events[0], rows, toks, texts, fin))
            n_events[0] += 1

    for m, nm in ((target, "target"), (draft if drafter is None else None, "draft")):
        vs = declared_vocab(m) if m is not None else None
        if vs is not None:
            check_ids_in_vocab(prompts, vs)
            _check_loop_ids(eos, stop_seqs, vs)
    if drafter is None:
        vt, vd = declared_vocab(target), declared_vocab(draft)
        if vt is not None and vd is not None and vt != vd:
            raise ValueError(f"vocabulary mismatch: the target has {vt} tokens, the draft {vd}")

    width = int(plen.max()) + max_new + 1 if B else 1
    hist = np.full((B, width), pad, np.int64)
    for b, p in enumerate(prompts):
        hist[b, :p.size] = p
    cur = plen.copy()
    gen = np.zeros(B, np.int64)
    reasons: list = [None] * B
    stop_by: list = [None] * B
    drafted = np.zeros(B, np.int64)
    accepted = np.zeros(B, np.int64)
    gam = np.full(B, gamma0, np.int64)
    trace: list = []
    calls = dict(target=1, draft=int(drafter is None), steps=0)  # the prompts' prefill calls
    max_seq = max((len(s) for s in stop_seqs), default=0)

    def stats() -> SpeculativeStats:
        return SpeculativeStats(drafted.copy(), accepted.copy(), calls["target"], calls["draft"],
                                calls["steps"], int(gen.sum()), trace)

    def result(final: bool = True) -> SpeculativeResult:
        r = _result(prompts, layout, hist, cur, plen, gen, pad, reasons, stop_by, None, None, None,
                    decode if final else None, [None] * B, max_new)
        return SpeculativeResult(**r.__dict__, stats=stats())

    if max_new == 0:
        for b in range(B):
            reasons[b] = "length"
        if hf_streamer is not None:
            hf_streamer.end()
        return result()

    try:
        tsess, tlog = start_session(target, prompts)
        V = tsess.vocab_size
        _check_loop_ids(eos, stop_seqs, V)
        dsess = dlog = None
        if drafter is None:
            dsess, dlog = start_session(draft, prompts)
            if dsess.vocab_size != V:
                raise ValueError(f"vocabulary mismatch: the target has {V} tokens, the draft "
                                 f"{dsess.vocab_size}")
        active = np.arange(B)
        per_row = sampler is not None and sampler._batch_size() is not None
        temps = None
        if sampler is not None:
            temps = np.broadcast_to(np.asarray(sampler.temperature, np.float64), (B,))
        step = 0
        refeed = 2
        while True:
            A = active.size
            ca, ga = cur[active], gen[active]
            gam_eff = np.minimum(gam[active], max_new - ga - 1)
            # -- drafts --
            if drafter is not None:
                props = drafter.propose([hist[b, :cur[b]] for b in active], int(gam_eff.max()))
                d, nd = _proposals(props, A, gam_eff, V)
                G = d.shape[1]
                Q = None
            else:
                G = int(gam_eff.max())
                nd = gam_eff.copy()
                d = np.zeros((A, G), np.int64)
                Q = None
                if G > 0:
                    if step == 0:
                        q_raw = dlog
                    else:
                        # The draft holds the accepted tokens but at most the last `refeed` - 1 of
                        # them and not the new one: truncate and feed `refeed` tokens (one uniform
                        # call for rows that accepted everything and rows that did not).
                        dsess.truncate(ca - refeed)
                        toks = np.stack([hist[active, ca - refeed + j] for j in range(refeed)], axis=1)
                        q_raw = dsess.extend(toks)[:, -1]
                        calls["draft"] += 1
                    Q = np.empty((A, G, V), np.float32)
                    for i in range(G):
                        ql = _process(q_raw, None if i == 0 else d[:, :i], np.arange(A), i, hist, active,
                                      ca, ga, plen, sampler, per_row, eos, min_new)
                        Q[:, i] = ql
                        if sampler is None:
                            d[:, i] = ops.argmax(ql)
                        else:
                            u = _uniform(seeds[active], ca + i, _DRAW_DRAFT)
                            tok = np.empty(A, np.int64)
                            ops._k.sample(Q[:, i], *_PLAIN, 0, seeds[active], ca + i, u, tok, None,
                                          ops._threads[0])
                            d[:, i] = tok
                        if i + 1 < G:
                            q_raw = dsess.extend(d[:, i:i + 1])[:, 0]
                            calls["draft"] += 1
                    refeed = 2
                    if (ca - 1 + G < 2).any() or (step == 0 and (plen[active] == 1).any()):
                        # a later truncation to ca - 2 could reach 0 tokens (sessions keep >= 1):
                        # feed the last draft too, so that one token is re-fed next time
                        dsess.extend(d[:, G - 1:G])
                        calls["draft"] += 1
                        refeed = 1
            # -- target: the pending token and the drafts in one call --
            if step == 0:
                T = tlog[:, None] if G == 0 else np.concatenate([tlog[:, None], tsess.extend(d)], axis=1)
                calls["target"] += int(G > 0)
            else:
                feed = np.concatenate([hist[active, ca - 1][:, None], d], axis=1)
                T = tsess.extend(feed)
                calls["target"] += 1
            calls["steps"] += 1
            R = A * (G + 1)
            rows = np.repeat(np.arange(A), G + 1)
            offs = np.tile(np.arange(G + 1), A)
            P = _process(T.reshape(R, V), d, rows, offs, hist, active, ca, ga, plen, sampler, per_row,
                         eos, min_new)
            greedy = True if sampler is None else (temps[active] == 0)
            acc, nxt = ops.speculative_verify(P.reshape(A, G + 1, V), d, Q, num_drafts=nd,
                                              greedy=greedy, seed=seeds[active], position=ca)
            trace.append(nd.copy())
            # -- commit --
            done = np.zeros(A, bool)
            before = gen[active].copy()
            for i in range(A):
                b = active[i]
                new = list(d[i, :acc[i]]) + [int(nxt[i])]
                drafted[b] += nd[i]
                accepted[b] += acc[i]
                for t in new:
                    hist[b, cur[b]] = t
                    cur[b] += 1
                    gen[b] += 1
                    if eos.size and t in eos:
                        reasons[b], stop_by[b] = "eos", int(t)
                        done[i] = True
                        break
                    if stop_seqs and _stop_hit(hist[b, :cur[b]], int(gen[b]), stop_seqs, max_seq, reasons,
                                               stop_by, b):
                        s = stop_by[b]
                        cur[b] -= len(s)
                        gen[b] -= len(s)
                        done[i] = True
                        break
                if not done[i] and gen[b] >= max_new:
                    reasons[b] = "length"
                    done[i] = True
                if adaptive and nd[i] > 0:
                    gam[b] = min(gam[b] + 2, gmax) if acc[i] == nd[i] else max(1, gam[b] - 1)
            step += 1
            if streamer is not None:
                emit(active, before, done)
            if done.all():
                break
            # -- rollback and drop finished rows --
            tsess.truncate(cur[active] - 1)
            keep = np.flatnonzero(~done)
            if keep.size < A:
                tsess.select(keep)
                if dsess is not None:
                    dsess.select(keep)
                active = active[keep]
    except BaseException as exc:
        try:
            exc.partial_result = result(False)
        except Exception:  # pragma: no cover - never mask the original error
            pass
        raise
    finally:
        if hf_streamer is not None:
            hf_streamer.end()
    return result()


# the sample() parameters of a plain draw (temperature 1, no filter): the draft's processed logits
# already carry its temperature and filters
_PLAIN = tuple(np.array([v], np.float64) for v in (1.0, 0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0))


def _process(x: np.ndarray, drafts: np.ndarray | None, rows: np.ndarray, offs: Any, hist: np.ndarray,
             active: np.ndarray, ca: np.ndarray, ga: np.ndarray, plen: np.ndarray,
             sampler: Sampler | None, per_row: bool, eos: np.ndarray, min_new: int) -> np.ndarray:
    """The logits a plain generate step would draw from, for rows ``rows`` (indices into the
    active set) at draft offsets ``offs``: float32 (R, V)."""
    R = x.shape[0]
    offs = np.broadcast_to(np.asarray(offs, np.int64), (R,))
    if min_new and eos.size:
        m = ga[rows] + offs < min_new
        if m.any():
            x = np.array(x, dtype=np.float64 if x.dtype == np.float64 else np.float32)
            x[np.ix_(np.flatnonzero(m), eos)] = _NEG_INF
    if sampler is None:
        return x
    smp = sampler._subset(active[rows]) if per_row else sampler
    ids = None
    lens = ca[rows] + offs
    if smp.needs_history:
        W = int(lens.max())
        ids = np.zeros((R, W), np.int64)
        for r in range(R):
            a = rows[r]
            c = int(ca[a])
            ids[r, :c] = hist[active[a], :c]
            o = int(offs[r])
            if o:
                ids[r, c:c + o] = drafts[a, :o]
    fl = smp.final_logits(x, ids, lengths=lens, prompt_lengths=plen[active[rows]])
    return np.ascontiguousarray(fl, dtype=np.float32)


def _proposals(props: Any, A: int, gam_eff: np.ndarray, V: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        n_rows = len(props)
    except TypeError:
        raise ValueError("the drafter's propose() must return one sequence of token ids per row") from None
    if n_rows != A:
        raise ValueError(f"the drafter's propose() returned {n_rows} rows for {A} histories")
    out = []
    for i, p in enumerate(props):
        a = np.asarray(p)
        if a.size == 0:
            a = np.zeros(0, np.int64)
        if a.ndim != 1 or a.dtype.kind not in "iu":
            raise ValueError(f"the drafter's propose() row {i}: expected a 1-D sequence of token ids, "
                             f"got {a.dtype} array of shape {a.shape}")
        if a.size > max(int(gam_eff.max()), 0):
            raise ValueError(f"the drafter's propose() row {i}: {a.size} tokens for num_tokens = "
                             f"{int(gam_eff.max())}")
        if a.size and (a.min() < 0 or a.max() >= V):
            raise ValueError(f"the drafter's propose() row {i}: token id outside [0, {V})")
        out.append(a.astype(np.int64)[:max(int(gam_eff[i]), 0)])
    nd = np.array([o.size for o in out], np.int64)
    G = int(nd.max()) if A else 0
    d = np.zeros((A, G), np.int64)
    for i, o in enumerate(out):
        d[i, :o.size] = o
        if o.size and o.size < G:
            d[i, o.size:] = o[-1]
    return d, nd


def _stop_hit(h: np.ndarray, g: int, stop_seqs: list, max_seq: int, reasons: list, stop_by: list,
              b: int) -> bool:
    tail = h[h.size - min(g, max_seq):]
    for s in stop_seqs:
        if len(s) <= g and tuple(tail[len(tail) - len(s):]) == s:
            reasons[b], stop_by[b] = "stop", s
            return True
    return False
