"""Decoding loops over any model: greedy and sampled ``generate``, stop rules and streaming.

The loop is written once against a :class:`~fastdecode.session.Session` (see ``session.py``): a
plain callable is wrapped in a recomputing session, a stateful model brings its own. Per step and
per batch the loop makes one model call and one fused C call (penalties, filters and the seeded
pick), then updates the stop rules; a row that finishes is dropped from the session, so it costs
neither model nor kernel time afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from . import ops
from .processors import Sampler
from .session import as_prompts, declared_vocab, start_session

__all__ = ["GenerateResult", "GenerationStream", "StreamEvent", "generate", "stream"]

_NEG_INF = np.float32(-np.inf)


class _RowsView:
    """Row accessors shared by the loops' results (fields ``sequences``, ``lengths``,
    ``prompt_lengths``, ``offsets``)."""

    @property
    def num_new_tokens(self) -> np.ndarray:
        """int64 array (B,): the tokens each row generated (``lengths - prompt_lengths``)."""
        return self.lengths - self.prompt_lengths

    def sequence(self, row: int) -> np.ndarray:
        """Row ``row``'s real tokens (prompt and new tokens, no padding).

        Parameters
        ----------
        row : int
            Index of the row in the batch.

        Returns
        -------
        int64 array
            A view of ``sequences[row]`` without padding.
        """
        o = int(self.offsets[row])
        return self.sequences[row, o:o + int(self.lengths[row])]

    def new_tokens(self, row: int) -> np.ndarray:
        """Row ``row``'s generated tokens.

        Parameters
        ----------
        row : int
            Index of the row in the batch.

        Returns
        -------
        int64 array
            A view of ``sequences[row]``: the new tokens only (EOS included, stop sequence cut).
        """
        o = int(self.offsets[row]) + int(self.prompt_lengths[row])
        return self.sequences[row, o:o + int(self.num_new_tokens[row])]


@dataclass
class GenerateResult(_RowsView):
    """The output of :func:`generate`.

    Attributes
    ----------
    sequences : int64 array (B, S + n)
        Each row is its prompt in the caller's layout (left-padded input is kept as given, pad
        columns included, like HF; ragged lists and ``lengths=`` input are written from column 0),
        then its new tokens, then ``pad_token_id``. ``n`` is the largest number of new tokens of any row.
    lengths : int64 array (B,)
        Real tokens per row, prompt included (padding excluded).
    prompt_lengths : int64 array (B,)
        Prompt tokens per row.
    offsets : int64 array (B,)
        Column of each row's first real token (non-zero only for left-padded input):
        ``sequences[b, offsets[b]:offsets[b] + lengths[b]]`` is row b's text.
    finish_reasons : list of str
        ``"eos"``, ``"stop"`` (a stop sequence or string) or ``"length"`` (``max_new_tokens``).
        None for a row that did not finish (only in ``exc.partial_result``).
    stop_reasons : list
        What ended each row: the EOS id, the stop string / token tuple that matched, or None.
    token_logprobs : float32 array (B, n), optional
        Log-probability of each chosen token (NaN past a row's end); with ``logprobs``.
    top_logprobs, top_ids : arrays (B, n, N), optional
        The N most likely tokens at each step and their log-probabilities, best first.
    texts : list of str, optional
        The decoded new text per row (with ``decode``), cut at the stop string.
    sampler_trace : dict of arrays, optional
        With a stateful sampler (:class:`~fastdecode.adaptive.Mirostat`,
        :class:`~fastdecode.adaptive.Entropix`): its per-step, per-row trace, arrays (B, n) (NaN /
        -1 past a row's end); each class documents its keys.

    Examples
    --------
    >>> import fastdecode as fd
    >>> from fastdecode.models import char_model
    >>> m = char_model()
    >>> r = fd.generate(m, [m.encode("Alice was ")], max_new_tokens=20, decode=m.decode)
    >>> r.lengths, r.prompt_lengths, r.num_new_tokens, r.finish_reasons
    (array([30]), array([10]), array([20]), ['length'])
    >>> m.decode(r.new_tokens(0)) == r.texts[0]
    True
    """

    sequences: np.ndarray
    lengths: np.ndarray
    prompt_lengths: np.ndarray
    offsets: np.ndarray
    finish_reasons: list
    stop_reasons: list
    token_logprobs: np.ndarray | None = None
    top_logprobs: np.ndarray | None = None
    top_ids: np.ndarray | None = None
    texts: list | None = None
    sampler_trace: dict | None = None


@dataclass
class StreamEvent:
    """One decoding step, as passed to a ``streamer`` callback or yielded by :func:`stream`.

    Attributes
    ----------
    step : int
        The step index, 0 for the first new token.
    rows : int64 array
        The original batch indices of the rows that produced a token this step.
    tokens : int64 array
        Their tokens, in the order of ``rows``.
    texts : list of str, optional
        With ``decode``: the new text of each of those rows (possibly "" while a multi-byte
        character or a possible stop string is held back).
    finished : dict {row: str}
        The rows that ended this step, with their finish reason (``"eos"``, ``"stop"``,
        ``"length"``).

    Examples
    --------
    >>> import fastdecode as fd
    >>> from fastdecode.models import char_model
    >>> m = char_model()
    >>> for ev in fd.stream(m, [m.encode("Alice ")], max_new_tokens=2):
    ...     print(ev.step, ev.token, ev.finished)
    0 53 {}
    1 48 {0: 'length'}
    """

    step: int
    rows: np.ndarray
    tokens: np.ndarray
    texts: list | None = None
    finished: dict = field(default_factory=dict)

    @property
    def token(self) -> int:
        """The token of a single-row batch (``ValueError`` when the step produced several)."""
        if self.rows.size != 1:
            raise ValueError(f"this step produced {self.rows.size} tokens; use .tokens")
        return int(self.tokens[0])

    @property
    def text(self) -> str:
        """The new text of all rows, concatenated (the new text of the row for a batch of one)."""
        return "".join(self.texts) if self.texts else ""


# -- argument normalisation -----------------------------------------------------------------------

def _int_arg(v: Any, name: str, lo: int = 0) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {v!r}")
    if v < lo:
        raise ValueError(f"{name} must be >= {lo}, got {v}")
    return int(v)


def _eos_list(eos: Any) -> np.ndarray:
    """EOS ids in the caller's order; duplicates are kept, as HF counts them in K."""
    if eos is None:
        return np.zeros(0, np.int64)
    a = np.atleast_1d(np.asarray(eos))
    if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
        raise TypeError(f"eos_token_id must be an int or a list of ints, got {eos!r}")
    if a.size and a.min() < 0:
        raise ValueError(f"eos_token_id must be non-negative, got {eos!r}")
    return a.astype(np.int64)


def _eos_ids(eos: Any) -> np.ndarray:
    """The distinct EOS ids (a row ends on any of them)."""
    return np.unique(_eos_list(eos))


def _stops(stop: Any, decode: Any) -> tuple[list[str], list[tuple[int, ...]]]:
    if stop is None:
        return [], []
    if isinstance(stop, (str, int, np.integer)):
        stop = [stop]
    strs, seqs = [], []
    for s in stop:
        if isinstance(s, str):
            if not s:
                raise ValueError("stop: empty stop string")
            strs.append(s)
        elif isinstance(s, (int, np.integer)) and not isinstance(s, bool):
            if s < 0:
                raise ValueError(f"stop: negative token id {s}")
            seqs.append((int(s),))
        else:
            try:
                t = tuple(int(i) for i in s)
            except (TypeError, ValueError):
                raise TypeError(f"stop entries must be strings, token ids or sequences of token ids, got {s!r}") from None
            if not t:
                raise ValueError("stop: empty token sequence")
            if min(t) < 0:
                raise ValueError(f"stop: negative token id in {s!r}")
            seqs.append(t)
    if strs and decode is None:
        raise ValueError("stop strings need a decode function (decode=tokenizer.decode) to be matched")
    return strs, seqs


def _row_seeds(seed: Any, sampler: Sampler | None, B: int) -> np.ndarray:
    if seed is None and sampler is not None:
        seed = sampler.seed
    if seed is None:
        return np.random.SeedSequence().generate_state(B, dtype=np.uint64)
    s = ops._seeds(seed, B)
    return np.broadcast_to(s, (B,)).copy() if s.size == 1 else s


def _hold_back(text: str, stops: list[str]) -> int:
    """Chars at the end of ``text`` that must not be streamed yet: an unfinished multi-byte
    character (U+FFFD from a partial decode) or the start of a possible stop string."""
    n = 0
    while n < len(text) and text[len(text) - 1 - n] == "\ufffd":
        n += 1
    body = text[:len(text) - n]
    hold = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(body)), hold, -1):
            if body.endswith(s[:k]):
                hold = k
                break
    return n + hold


class _HFStreamerAdapter:
    """Feeds a Hugging Face ``BaseStreamer`` (``put``/``end``) the way ``model.generate`` does."""

    def __init__(self, streamer: Any, prompts: list[np.ndarray], B: int, pad: int):
        self.s, self.B, self.pad = streamer, B, pad
        if B == 1:
            streamer.put(prompts[0][None, :])

    def __call__(self, ev: StreamEvent) -> None:
        t = np.full(self.B, self.pad, np.int64)
        t[ev.rows] = ev.tokens
        self.s.put(t)

    def end(self) -> None:
        self.s.end()


# -- the loop ---------------------------------------------------------------------------------

def _run(model: Any, input_ids: Any, *, max_new_tokens: int, sampler: Sampler | None = None,
         eos_token_id: Any = None, pad_token_id: int | None = None, min_new_tokens: int = 0,
         stop: Any = None, decode: Callable[[Sequence[int]], str] | None = None, seed: Any = None,
         logprobs: int | bool = 0, logprobs_mode: str = "raw", attention_mask: Any = None,
         lengths: Any = None, include_stop_str_in_output: bool = False,
         stream_text: bool = False, events: bool = True) -> Iterator[StreamEvent | GenerateResult]:
    """The decoding loop as a generator of step events, ending with the result."""
    max_new = _int_arg(max_new_tokens, "max_new_tokens")
    min_new = _int_arg(min_new_tokens, "min_new_tokens")
    # a stateful sampler (fastdecode.adaptive) brings _start(B) -> per-row state with _step,
    # _select and _trace; the loop owns that state
    stateful = sampler is not None and callable(getattr(sampler, "_start", None))
    if sampler is not None and not stateful and not isinstance(sampler, Sampler):
        raise TypeError(f"sampler must be a fastdecode.Sampler, Mirostat, Entropix or None, got {type(sampler).__name__}")
    if isinstance(logprobs, (bool, np.bool_)):
        n_top, want_lp = 0, bool(logprobs)
    else:
        n_top = _int_arg(logprobs, "logprobs")
        want_lp = n_top > 0
    if logprobs_mode not in ("raw", "processed"):
        raise ValueError(f"logprobs_mode must be 'raw' or 'processed', got {logprobs_mode!r}")
    if decode is not None and not callable(decode):
        raise TypeError("decode must be a callable mapping a list of token ids to a string")
    eos = _eos_ids(eos_token_id)
    stop_strs, stop_seqs = _stops(stop, decode)
    if pad_token_id is None:
        pad = int(eos[0]) if eos.size else 0
    else:
        pad = _int_arg(pad_token_id, "pad_token_id")
    prompts, layout = as_prompts(input_ids, attention_mask=attention_mask, lengths=lengths)
    B = len(prompts)
    if layout["left"] and not (layout["offsets"] + np.array([p.size for p in prompts]) == layout["width"]).all():
        raise ValueError("attention_mask mixes left and right padding; pad every row on the same side")
    if stateful and n_top and logprobs_mode == "processed":
        raise ValueError("logprobs_mode='processed' with top logprobs needs a Sampler; "
                         f"{type(sampler).__name__} reports the chosen token's logprob only")
    if sampler is not None and not stateful:
        nb = sampler._batch_size()
        if nb is not None and nb != B:
            raise ValueError(f"the sampler has per-row parameters for {nb} rows but there are {B} prompts")
    seeds = _row_seeds(seed, sampler, B)
    plen = np.array([p.size for p in prompts], np.int64)
    vs = declared_vocab(model)
    if vs is not None:
        from .session import check_ids_in_vocab

        check_ids_in_vocab(prompts, vs)
        # the declared vocabulary also bounds EOS and stop ids: checked before anything runs, so
        # that max_new_tokens=0 raises as any other value does
        _check_loop_ids(eos, stop_seqs, vs)

    # Right-padded history of every row (prompt + new tokens), for penalties and stop checks.
    hist = np.full((B, int(plen.max()) + max_new), pad, np.int64)
    for b, p in enumerate(prompts):
        hist[b, :p.size] = p
    cur = plen.copy()
    gen = np.zeros(B, np.int64)
    reasons: list = [None] * B
    stop_by: list = [None] * B
    text_cut: list = [None] * B
    token_lp = np.full((B, max_new), np.nan, np.float32) if want_lp else None
    top_lp = np.full((B, max_new, n_top), np.nan, np.float32) if n_top else None
    top_id = np.full((B, max_new, n_top), pad, np.int64) if n_top else None
    texts_full = [""] * B
    emitted = [0] * B
    track_text = decode is not None and (bool(stop_strs) or stream_text)
    max_seq = max((len(s) for s in stop_seqs), default=0)
    greedy = sampler is None
    history_needed = sampler is not None and bool(sampler.needs_history)

    if max_new == 0:
        for b in range(B):
            reasons[b] = "length"
        yield _result(prompts, layout, hist, cur, plen, gen, pad, reasons, stop_by, token_lp, top_lp,
                      top_id, decode, text_cut, max_new)
        return

    try:
        sess, logits = start_session(model, prompts)
        V = sess.vocab_size
        _check_loop_ids(eos, stop_seqs, V)
        active = np.arange(B)
        smp = sampler._start(B) if stateful else sampler
        per_row = not stateful and sampler is not None and sampler._batch_size() is not None
        step = 0
        while True:
            x = logits
            A = active.size
            if step < min_new and eos.size:
                x = np.array(x, dtype=np.float64 if x.dtype == np.float64 else np.float32)
                x[:, eos] = _NEG_INF
            # -- pick --
            if greedy:
                tok = np.asarray(ops.argmax(x), np.int64).reshape(A)
                lp_proc = np.zeros(A) if want_lp and logprobs_mode == "processed" else None
            else:
                ids = hist[active] if history_needed else None
                tok, lp_proc = smp._step(x, ids, cur[active], plen[active], seeds[active],
                                             want_lp and logprobs_mode == "processed")
            # -- logprobs --
            if want_lp:
                if logprobs_mode == "raw":
                    lsm = ops.log_softmax(logits)
                    token_lp[active, step] = lsm[np.arange(A), tok]
                    if n_top:
                        _top_n(lsm, n_top, top_lp, top_id, active, step)
                else:
                    token_lp[active, step] = lp_proc
                    if n_top:
                        fl = _final_logits(smp, x, hist, active, cur, plen, seeds)
                        _top_n(ops.log_softmax(fl), n_top, top_lp, top_id, active, step)
            # -- append --
            hist[active, cur[active]] = tok
            cur[active] += 1
            gen[active] += 1
            done = np.zeros(A, bool)
            if eos.size:
                hit = (tok[:, None] == eos[None, :]).any(axis=1)
                if hit.any():
                    for i in np.flatnonzero(hit):
                        b = active[i]
                        reasons[b], stop_by[b] = "eos", int(tok[i])
                    done |= hit
            if stop_seqs:
                for i in np.flatnonzero(~done):
                    b = active[i]
                    g = int(gen[b])
                    tail = hist[b, int(cur[b]) - min(g, max_seq):int(cur[b])]
                    for s in stop_seqs:
                        if len(s) <= g and tuple(tail[len(tail) - len(s):]) == s:
                            reasons[b], stop_by[b] = "stop", s
                            if not include_stop_str_in_output:
                                cur[b] -= len(s)
                                gen[b] -= len(s)
                            done[i] = True
                            break
            deltas = None
            if track_text:
                deltas = []
                for i in range(A):
                    b = active[i]
                    g0 = int(plen[b])
                    full = decode(hist[b, g0:int(cur[b])].tolist())
                    prev = texts_full[b]
                    texts_full[b] = full
                    if stop_strs and not done[i]:
                        start = max(0, len(prev) - max(len(s) for s in stop_strs))
                        hit_at, hit_s = -1, None
                        for s in stop_strs:
                            j = full.find(s, start)
                            if j >= 0 and (hit_at < 0 or j < hit_at):
                                hit_at, hit_s = j, s
                        if hit_s is not None:
                            reasons[b], stop_by[b] = "stop", hit_s
                            done[i] = True
                            end_chr = hit_at + len(hit_s) if include_stop_str_in_output else hit_at
                            text_cut[b] = full[:end_chr]
                            if not include_stop_str_in_output:
                                k = _tokens_before(decode, hist[b, g0:int(cur[b])], hit_at)
                                cur[b] = g0 + k
                                gen[b] = k
                    if done[i] and text_cut[b] is None:
                        text_cut[b] = full
                    if done[i] or step + 1 == max_new:
                        safe = text_cut[b] if text_cut[b] is not None else full
                    else:
                        safe = full[:len(full) - _hold_back(full, stop_strs)]
                    if len(safe) > emitted[b]:
                        deltas.append(safe[emitted[b]:])
                        emitted[b] = len(safe)
                    else:
                        deltas.append("")
            last = step + 1 == max_new
            if last:
                for i in np.flatnonzero(~done):
                    reasons[active[i]] = "length"
                done[:] = True
            any_done = done.any()
            if events:
                fin = {int(active[i]): reasons[active[i]] for i in np.flatnonzero(done)} if any_done else {}
                yield StreamEvent(step, active.copy(), tok, deltas, fin)
            step += 1
            if any_done:
                if done.all():
                    break
                keep = np.flatnonzero(~done)
                sess.select(keep)
                active, tok = active[keep], tok[keep]
                if stateful:
                    smp._select(keep)
                elif per_row:
                    smp = sampler._subset(active)
            logits = sess.extend(tok[:, None])[:, 0]
    except GeneratorExit:
        raise
    except BaseException as exc:
        # The model (or decode, or a KeyboardInterrupt) stopped the loop mid-way: hand the tokens
        # generated so far to the caller; rows not finished have finish reason None.
        try:
            exc.partial_result = _result(prompts, layout, hist, cur, plen, gen, pad, reasons, stop_by,
                                         token_lp, top_lp, top_id, None, text_cut, max_new)
        except Exception:  # pragma: no cover - never mask the original error
            pass
        raise
    res = _result(prompts, layout, hist, cur, plen, gen, pad, reasons, stop_by, token_lp, top_lp, top_id,
                  decode, text_cut, max_new)
    if stateful:
        res.sampler_trace = smp._trace()
    yield res


def _check_loop_ids(eos: np.ndarray, stop_seqs: list[tuple[int, ...]], V: int) -> None:
    for s in stop_seqs:
        if max(s) >= V:
            raise ValueError(f"stop: token id {max(s)} is outside the model's vocabulary of {V}")
    if eos.size and eos.max() >= V:
        raise ValueError(f"eos_token_id {int(eos.max())} is outside the model's vocabulary of {V}")


def _tokens_before(decode: Callable, gen_ids: np.ndarray, cut: int) -> int:
    """The largest k such that the first k generated tokens decode to at most ``cut`` chars
    (the tokens that carry any part of the stop string are dropped)."""
    for k in range(gen_ids.size - 1, -1, -1):
        if len(decode(gen_ids[:k].tolist())) <= cut:
            return k
    return 0


def _top_n(lsm: np.ndarray, n: int, top_lp: np.ndarray, top_id: np.ndarray, active: np.ndarray,
           step: int) -> None:
    A, V = lsm.shape
    n_eff = min(n, V)
    # the beam step with zero scores and one row per group is exactly "the n best per row"
    sc, _, tk = ops.beam_step(lsm, np.zeros(A, np.float32), n_eff, group_size=1, normalize=False)
    top_lp[active, step, :n_eff] = sc
    top_id[active, step, :n_eff] = tk


def _final_logits(sampler: Sampler, x: np.ndarray, hist, active, cur, plen, seeds) -> np.ndarray:
    """The logits of the distribution the sampler draws from (penalties, temperature, filters;
    the row seeds key XTC's coin as in the step)."""
    ids = hist[active] if sampler.needs_history else None
    return sampler.final_logits(x, ids, lengths=cur[active], prompt_lengths=plen[active],
                                seed=seeds[active])


def _result(prompts, layout, hist, cur, plen, gen, pad, reasons, stop_by, token_lp, top_lp, top_id,
            decode, text_cut, max_new) -> GenerateResult:
    B = len(prompts)
    n = int(gen.max()) if B else 0
    S = int(layout["width"])
    left = layout["left"]
    seq = np.full((B, S + n), pad, np.int64)
    offsets = layout["offsets"].copy() if left else np.zeros(B, np.int64)
    for b in range(B):
        L = int(cur[b])
        if left:
            # prompt stays where it was (right-aligned at column S); new tokens follow it
            seq[b, :S] = layout["array"][b]
            seq[b, S:S + gen[b]] = hist[b, plen[b]:L]
        else:
            seq[b, :L] = hist[b, :L]
    texts = None
    if decode is not None:
        texts = [text_cut[b] if text_cut[b] is not None else decode(hist[b, plen[b]:cur[b]].tolist())
                 for b in range(B)]
    lp = token_lp[:, :n] if token_lp is not None else None
    if lp is not None:
        lp = lp.copy()
        lp[np.arange(n)[None, :] >= gen[:, None]] = np.nan
    return GenerateResult(
        sequences=seq, lengths=cur.copy(), prompt_lengths=plen, offsets=offsets,
        finish_reasons=list(reasons), stop_reasons=list(stop_by), token_logprobs=lp,
        top_logprobs=top_lp[:, :n].copy() if top_lp is not None else None,
        top_ids=top_id[:, :n].copy() if top_id is not None else None, texts=texts)


# -- public entry points ------------------------------------------------------------------------

_DOC_PARAMS = """
    Parameters
    ----------
    model : callable or stateful model
        ``model(input_ids) -> logits`` or an object with ``start_session`` (see
        :mod:`fastdecode.session`).
    input_ids : (B, S) int array, or a list of B token-id sequences (ragged)
        The prompts; every prompt needs at least one token.
    max_new_tokens : int >= 0
        The most new tokens per row.
    sampler : Sampler, Mirostat or Entropix, optional
        None is greedy decoding (first maximum). A :class:`~fastdecode.Sampler` applies its
        penalties, temperature, filters and a seeded pick (``Sampler(temperature=0)`` with
        penalties is greedy over the penalised logits). :class:`~fastdecode.Mirostat` and
        :class:`~fastdecode.Entropix` carry per-row state across the steps (owned by this call)
        and report it in ``sampler_trace``.
    eos_token_id : int or list of ints, optional
        A row ends after emitting one of them (the EOS token is kept in ``sequences``).
    pad_token_id : int, optional
        Fills finished rows; defaults to the first EOS id, else 0.
    min_new_tokens : int, default 0
        EOS ids are removed (-inf) until a row has this many new tokens (HF
        ``MinNewTokensLengthLogitsProcessor``); stop sequences still apply.
    stop : str, int, or list of str / int / token-id sequences, optional
        A row ends when its *generated* tokens end with a stop token sequence, or (with ``decode``)
        when its generated text contains a stop string, also one spanning several tokens. The stop
        sequence is cut from ``sequences`` and ``texts``; for a string, every token that carries
        part of it is dropped, and ``texts`` is cut exactly where the string starts (vLLM).
    decode : callable, optional
        ``decode(list_of_ids) -> str`` (e.g. ``tokenizer.decode``), for stop strings and text.
    seed : int or array of B ints, optional
        Overrides the sampler's seed. Row b's draw at each step depends only on its seed, its own
        history and position, never on the other rows of the batch; a scalar seed is shared by
        every row (vLLM's per-request seed), so equal prompts give equal samples — pass one seed
        per row (``seed=np.arange(B)``) for independent samples. None draws fresh entropy.
    logprobs : int or bool
        0 (default): none. True: the chosen token's log-probability per step. N >= 1: also the N
        most likely tokens and their log-probabilities (vLLM ``logprobs``).
    logprobs_mode : {"raw", "processed"}
        "raw" (vLLM's default): log-softmax of the model's logits. "processed": of the final
        distribution the token was drawn from (after penalties, temperature and filters).
    attention_mask : (B, S) 0/1 array, optional
        Marks left (or right) padding of a 2-D ``input_ids``; the model never sees padding.
    lengths : int or array of B ints, optional
        Right padding: row b's prompt is ``input_ids[b, :lengths[b]]``.
    include_stop_str_in_output : bool
        Keep the matched stop sequence / string in the output (vLLM's option).
"""


def generate(model: Any, input_ids: Any, *, max_new_tokens: int, sampler: Sampler | None = None,
             eos_token_id: Any = None, pad_token_id: int | None = None, min_new_tokens: int = 0,
             stop: Any = None, decode: Callable[[Sequence[int]], str] | None = None, seed: Any = None,
             streamer: Any = None, logprobs: int | bool = 0, logprobs_mode: str = "raw",
             attention_mask: Any = None, lengths: Any = None,
             include_stop_str_in_output: bool = False) -> GenerateResult:
    """Generate up to ``max_new_tokens`` tokens per prompt: greedy, or sampled with a Sampler.
    {params}
    streamer : callable or Hugging Face streamer, optional
        Called with a :class:`StreamEvent` after every step; an object with ``put``/``end``
        (``transformers.TextStreamer``) is fed like ``model.generate`` feeds it.

    Returns
    -------
    GenerateResult

    Raises
    ------
    ValueError, TypeError
        Bad arguments, before the model is called; ``ModelOutputError`` (a ValueError) when the
        model returns logits of the wrong shape, dtype or vocabulary size. An exception raised
        by the model (or ``KeyboardInterrupt``) mid-way propagates with the tokens generated so
        far attached as ``exc.partial_result`` (a :class:`GenerateResult`; unfinished rows have
        finish reason None).

    Examples
    --------
    >>> import fastdecode as fd
    >>> from fastdecode.models import char_model
    >>> m = char_model()
    >>> r = fd.generate(m, [m.encode("Alice was ")], max_new_tokens=20, decode=m.decode)
    >>> r.texts[0]  # greedy: the first maximum at every step
    'the tried to her sis'
    >>> s = fd.Sampler(temperature=0.8, top_k=5, seed=0)
    >>> r = fd.generate(m, [m.encode("Alice was ")], max_new_tokens=20, decode=m.decode, sampler=s)
    >>> r.texts[0]  # the same seed gives the same text on every machine and thread count
    'the could be labout '
    """
    hf = None
    if streamer is not None and not callable(streamer):
        if hasattr(streamer, "put") and hasattr(streamer, "end"):
            prompts, _ = as_prompts(input_ids, attention_mask=attention_mask, lengths=lengths)
            eos = _eos_ids(eos_token_id)
            pad = pad_token_id if pad_token_id is not None else (int(eos[0]) if eos.size else 0)
            hf = _HFStreamerAdapter(streamer, prompts, len(prompts), pad)
            streamer = hf
        else:
            raise TypeError("streamer must be a callable or an object with put() and end()")
    result = None
    try:
        for item in _run(model, input_ids, max_new_tokens=max_new_tokens, sampler=sampler,
                         eos_token_id=eos_token_id, pad_token_id=pad_token_id,
                         min_new_tokens=min_new_tokens, stop=stop, decode=decode, seed=seed,
                         logprobs=logprobs, logprobs_mode=logprobs_mode,
                         attention_mask=attention_mask, lengths=lengths,
                         include_stop_str_in_output=include_stop_str_in_output,
                         stream_text=streamer is not None, events=streamer is not None):
            if isinstance(item, GenerateResult):
                result = item
            elif streamer is not None:
                streamer(item)
    finally:
        if hf is not None:
            hf.end()
    return result


if generate.__doc__:  # None under python -OO
    generate.__doc__ = generate.__doc__.format(params=_DOC_PARAMS.rstrip())


class GenerationStream:
    """An iterator of :class:`StreamEvent`; after it is exhausted, ``result`` holds the result.

    Made by :func:`stream`, not by users.

    Parameters
    ----------
    it : iterator
        The decoding loop: step events, then the :class:`GenerateResult`.

    Attributes
    ----------
    result : GenerateResult or None
        None until the iteration ends; then the result (or, after an exception, the partial
        result attached to it).

    Examples
    --------
    >>> import fastdecode as fd
    >>> from fastdecode.models import char_model
    >>> m = char_model()
    >>> s = fd.stream(m, [m.encode("Alice ")], max_new_tokens=12, decode=m.decode)
    >>> "".join(s.text())
    'to her siste'
    >>> s.result.finish_reasons
    ['length']
    """

    def __init__(self, it: Iterator):
        self._it = it
        self.result: GenerateResult | None = None

    def __iter__(self) -> Iterator[StreamEvent]:
        """Run the loop, one step per iteration.

        Yields
        ------
        StreamEvent
            One per decoding step.
        """
        try:
            for item in self._it:
                if isinstance(item, GenerateResult):
                    self.result = item
                else:
                    yield item
        except BaseException as exc:
            self.result = getattr(exc, "partial_result", None)
            raise

    def text(self) -> Iterator[str]:
        """Iterate over the text deltas only (a batch of one, with ``decode``).

        Yields
        ------
        str
            The non-empty new text of each step.
        """
        for ev in self:
            if ev.text:
                yield ev.text


def stream(model: Any, input_ids: Any, *, max_new_tokens: int, **kwargs: Any) -> GenerationStream:
    """:func:`generate` as an iterator of per-step events (for notebooks and servers).

    Parameters
    ----------
    model : callable or stateful model
        As for :func:`generate`.
    input_ids : (B, S) int array, or a list of B token-id sequences
        The prompts.
    max_new_tokens : int >= 0
        The most new tokens per row.
    **kwargs
        Every other keyword argument of :func:`generate` except ``streamer``.

    Returns
    -------
    GenerationStream
        Iterate over it for :class:`StreamEvent` objects (or over ``.text()`` for text deltas);
        afterwards ``.result`` is the :class:`GenerateResult` that :func:`generate` would return.

    Raises
    ------
    TypeError
        A ``streamer`` argument (iterate instead). Every other argument error is raised by the
        first iteration, as :func:`generate` raises it.

    Notes
    -----
    The loop runs lazily, one step per iteration; the tokens are those :func:`generate` gives
    for the same arguments (same seeds, same tokens).

    Examples
    --------
    >>> import fastdecode as fd
    >>> from fastdecode.models import char_model
    >>> m = char_model()
    >>> for piece in fd.stream(m, [m.encode("Alice ")], max_new_tokens=6, decode=m.decode).text():
    ...     print(piece, end="")
    to her
    """
    if "streamer" in kwargs:
        raise TypeError("stream() does not take a streamer; iterate over it instead")
    return GenerationStream(_run(model, input_ids, max_new_tokens=max_new_tokens, stream_text=True, **kwargs))
