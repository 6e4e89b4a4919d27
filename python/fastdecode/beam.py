"""Beam search with Hugging Face semantics: plain, sampled (beam-sample) and diverse (group).

Two algorithms, each pinned to the Hugging Face code that users compare with:

* ``num_beam_groups == 1`` (plain beam search and beam-sample) follows ``transformers`` 5.x
  ``GenerationMixin._beam_search``, the vectorised rewrite of 4.50 (``_get_top_k_continuations``,
  ``_get_running_beams_for_next_iteration``, ``_update_finished_beams``,
  ``_check_early_stop_heuristic``). Per step: ``log_softmax`` of the float32 logits, processors
  on the log-probabilities (no renormalisation), ``+`` the running beam score, then the
  ``K = max(2, 1 + n_eos) * num_beams`` best continuations over the flattened ``beams x V`` (one
  C call, :func:`fastdecode.ops.beam_step`). A continuation that ends in an EOS id, or reaches
  ``max_new_tokens``, is finished; only the best ``num_beams`` of the K may enter the finished set,
  scored ``sum_logprobs / generated_len ** length_penalty`` (``generated_len`` counts the new
  tokens, EOS included, not the prompt). The ``num_beams`` best unfinished continuations run on.
  At the first step only beam 0 is live (the others start at -1e9), so the beams do not all pick
  the same token.
* ``num_beam_groups > 1`` (diverse beam search, Vijayakumar et al. 2016) follows 4.56
  ``_group_beam_search`` with its ``BeamSearchScorer`` / ``BeamHypotheses`` (HF removed it from
  the core library in 4.57): the groups are searched one after the other within a step, each
  penalised by ``diversity_penalty`` times the number of times a token was chosen by the earlier
  groups at this step (``HammingDiversityLogitsProcessor``), each with its own n-best list of
  ``num_beams / num_beam_groups`` finished hypotheses, scored in double precision.

The HF arithmetic is reproduced, not approximated: scores are float32 with one rounding per torch
operation (the 4.56 hypothesis lists in double, as there), the -1e9 sentinels are added where HF
adds them and rounded as HF rounds them (they order the filler beams and candidates of the first
steps when ``num_beams`` is close to V), and the early-stopping heuristic uses the same lengths. Where HF leaves an order unspecified (``torch.topk`` on equal
scores) the lower flat index ``beam * V + token`` wins, and among equal merged scores the
hypothesis found earlier stays first.

Two departures, both deliberate. A batch item whose finished set can no longer change is dropped
from the model session (HF keeps computing it and discards the result), so it costs nothing
afterwards; the item is only dropped when its stored scores and its best running score are real
(> -1e8), which guarantees that HF's -1e9 masks turn every later update into a no-op. And the output is
padded with ``pad_token_id`` as given (HF 5.x's ``pad_token_id or eos_token_id[0]`` fills with the
EOS id when the pad id is 0).
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import ops
from .generate import _eos_list, _int_arg, _row_seeds, _RowsView
from .processors import _PLAN_NAMES, Sampler
from .session import as_prompts, check_ids_in_vocab, declared_vocab, start_session

__all__ = ["BeamSearchResult", "beam_search"]

_NEG = np.float32(-1.0e9)  # HF's "impossible" beam score
_REAL = -1.0e8  # scores above this are sums of log-probabilities, below it carry a sentinel


@dataclass
class BeamSearchResult(_RowsView):
    """The output of :func:`beam_search`.

    Row ``b * num_return_sequences + j`` holds the ``j``-th best hypothesis of prompt ``b``.

    Attributes
    ----------
    sequences : int64 array (B * num_return_sequences, S + n)
        Each row is its prompt in the caller's layout (left-padded input is kept as given, pad
        columns included, like HF; ragged lists and ``lengths=`` input are written from column 0),
        then its new tokens (an EOS that ended it included), then ``pad_token_id``. ``n`` is the
        largest number of new tokens of any row.
    sequences_scores : float32 array (B * num_return_sequences,)
        HF's ``sequences_scores``: the sum of the (processed) log-probabilities of the new tokens
        divided by ``num_new_tokens ** length_penalty``; best first within each prompt.
    lengths : int64 array (B * num_return_sequences,)
        Real tokens per row, prompt included (padding excluded).
    prompt_lengths : int64 array (B * num_return_sequences,)
        Prompt tokens per row.
    offsets : int64 array (B * num_return_sequences,)
        Column of each row's first real token (non-zero only for left-padded input).
    beam_indices : int64 array (B * num_return_sequences, n)
        For every new token, the beam it extended, as an index into the ``B * num_beams``
        flattened beams (HF's ``beam_indices`` of beam search; diverse search uses the same
        convention here, not 4.56's group-local one); -1 past a row's end.

    Examples
    --------
    >>> import fastdecode as fd
    >>> from fastdecode.models import char_model
    >>> m = char_model()
    >>> r = fd.beam_search(m, [m.encode("Alice was ")], max_new_tokens=8, num_beams=3,
    ...                    num_return_sequences=2)
    >>> [m.decode(r.new_tokens(i)) for i in range(2)]
    ['nothing ', 'nothink ']
    >>> r.sequences_scores
    array([-0.5394, -0.5416], dtype=float32)
    """

    sequences: np.ndarray
    sequences_scores: np.ndarray
    lengths: np.ndarray
    prompt_lengths: np.ndarray
    offsets: np.ndarray
    beam_indices: np.ndarray



# -- arguments ------------------------------------------------------------------------------------

def _real(v: Any, name: str) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {v!r}")
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"{name} must be finite, got {v!r}")
    return f


_WARPERS = _PLAN_NAMES
_WARPER_OFF = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0, epsilon_cutoff=0.0,
                   eta_cutoff=0.0, top_n_sigma=0.0)


@dataclass
class _Config:
    num_beams: int
    max_new: int
    length_penalty: float
    early_stopping: Any
    nrs: int
    ngram: int
    eos: np.ndarray
    pad: int
    do_sample: bool
    sampler: Sampler | None
    groups: int
    diversity: float
    min_keep: int  # per-beam floor of the warpers (HF: n_eos + 1, at least 2)
    normalize: bool = True  # log_softmax the model's outputs (False: they are scores already)

    @property
    def k(self) -> int:
        """Continuations kept per batch item (or group) and step: HF's ``beams_to_keep``."""
        return max(2, 1 + self.eos.size) * (self.num_beams // self.groups)


def _config(num_beams, max_new_tokens, length_penalty, early_stopping, num_return_sequences,
            no_repeat_ngram_size, eos_token_id, pad_token_id, do_sample, sampler, num_beam_groups,
            diversity_penalty) -> _Config:
    nb = _int_arg(num_beams, "num_beams", 1)
    max_new = _int_arg(max_new_tokens, "max_new_tokens", 0)
    lp = _real(length_penalty, "length_penalty")
    if not (isinstance(early_stopping, (bool, np.bool_)) or early_stopping == "never"):
        raise ValueError(f"early_stopping must be True, False or 'never', got {early_stopping!r}")
    early = early_stopping if early_stopping == "never" else bool(early_stopping)
    nrs = _int_arg(num_return_sequences, "num_return_sequences", 1)
    if nrs > nb:
        raise ValueError(f"num_return_sequences ({nrs}) has to be smaller or equal to num_beams ({nb})")
    ngram = _int_arg(no_repeat_ngram_size, "no_repeat_ngram_size", 0)
    eos = _eos_list(eos_token_id)
    if pad_token_id is None:
        pad = int(eos[0]) if eos.size else 0
    else:
        pad = _int_arg(pad_token_id, "pad_token_id", 0)
    if not isinstance(do_sample, (bool, np.bool_)):
        raise TypeError(f"do_sample must be a bool, got {do_sample!r}")
    groups = _int_arg(num_beam_groups, "num_beam_groups", 1)
    if groups > nb or nb % groups:
        raise ValueError(f"num_beam_groups ({groups}) must divide num_beams ({nb})")
    div = _real(diversity_penalty, "diversity_penalty")
    if div < 0:
        raise ValueError(f"diversity_penalty must be >= 0, got {diversity_penalty!r}")
    if div > 0 and groups == 1:
        # HF: HammingDiversityLogitsProcessor refuses num_beam_groups < 2
        raise ValueError("diversity_penalty > 0 needs num_beam_groups > 1 (diverse beam search); "
                         f"got num_beam_groups={groups}")
    if groups > 1 and div == 0:
        raise ValueError("num_beam_groups > 1 needs diversity_penalty > 0, otherwise the groups are "
                         "identical (Hugging Face raises here too)")
    if groups > 1 and do_sample:
        raise ValueError("do_sample=True cannot be combined with num_beam_groups > 1 (diverse beam "
                         "search is deterministic in Hugging Face as well)")
    if sampler is not None:
        if not isinstance(sampler, Sampler):
            raise TypeError(f"sampler must be a fastdecode.Sampler or None, got {type(sampler).__name__}")
        for name in _WARPERS + ("repetition_penalty", "presence_penalty", "frequency_penalty"):
            if np.ndim(getattr(sampler, name)) != 0:
                raise ValueError(f"sampler.{name}: beam_search takes scalar sampler parameters only")
        warping = any(getattr(sampler, n) != _WARPER_OFF[n] for n in _WARPERS)
        # the adaptive samplers (processors.py): DRY is a penalty and applies; the rest are not
        # part of HF's beam warpers
        for name in ("dry_multiplier", "dry_base", "dry_allowed_length", "dry_penalty_last_n"):
            if np.ndim(getattr(sampler, name)) != 0:
                raise ValueError(f"sampler.{name}: beam_search takes scalar sampler parameters only")
        if sampler._plan[3]:
            if do_sample:
                raise ValueError("beam sampling does not support the sampler's adaptive_temperature, "
                                 "dynatemp_range or xtc_probability")
            warping = True
        if do_sample:
            if sampler.order not in ("hf", "vllm"):
                raise ValueError("sampler.order must be 'hf' for beam sampling (HF applies the warpers "
                                 "in its own order)")
            if sampler.temperature <= 0:
                raise ValueError("sampler.temperature must be > 0 for beam sampling (use do_sample=False "
                                 "for deterministic beam search)")
        elif warping:
            warnings.warn("do_sample is False: the sampler's temperature and filters are ignored "
                          "(only its penalties apply), as in Hugging Face", UserWarning, stacklevel=3)
    return _Config(nb, max_new, lp, early, nrs, ngram, eos, pad, bool(do_sample), sampler, groups, div,
                   max(2, eos.size + 1))


# -- per-step scores --------------------------------------------------------------------------------

class _History:
    """Right-padded token history (prompt + new tokens) of every session row."""

    def __init__(self, prompts: list[np.ndarray], rows: np.ndarray, max_new: int, pad: int):
        plen = np.array([p.size for p in prompts], np.int64)
        self.ids = np.full((rows.size, int(plen.max()) + max_new), pad, np.int64)
        for r, b in enumerate(rows):
            self.ids[r, :plen[b]] = prompts[b]
        self.len = plen[rows].copy()
        self.plen = plen[rows].copy()

    def take(self, rows: np.ndarray) -> None:
        self.ids, self.len, self.plen = self.ids[rows], self.len[rows], self.plen[rows]

    def append(self, tokens: np.ndarray) -> None:
        self.ids[np.arange(self.len.size), self.len] = tokens
        self.len += 1


def _log_probs(logits: np.ndarray, c: _Config, hist: _History, rows: np.ndarray | None = None,
               diversity_ids: np.ndarray | None = None) -> np.ndarray | None:
    """HF's ``logits_processor(input_ids, log_softmax(logits))`` for the given session rows, or
    None when there is nothing to process (the beam kernel then normalises by itself)."""
    s = c.sampler
    edits = s is not None and s.edits_logits
    if not (c.ngram or edits or c.do_sample or diversity_ids is not None):
        return None
    x = logits if rows is None else logits[rows]
    lp = ops.log_softmax(np.asarray(x, dtype=np.float32)) if c.normalize else np.array(x, dtype=np.float32)
    ids = hist.ids if rows is None else hist.ids[rows]
    ln = hist.len if rows is None else hist.len[rows]
    if diversity_ids is not None:  # HammingDiversityLogitsProcessor: z -= penalty * count, float32
        ops.presence_frequency_penalty(lp, diversity_ids, frequency=c.diversity, out=lp)
    if edits:
        pl = hist.plen if rows is None else hist.plen[rows]
        lp = s.process(lp, ids, lengths=ln, prompt_lengths=pl)
    if c.ngram:
        ops.no_repeat_ngram(lp, ids, c.ngram, lengths=ln, out=lp)
    if c.do_sample and s is not None:
        _warp(lp, s, c.min_keep)
    return lp


def _warp(x: np.ndarray, s: Sampler, mk: int) -> None:
    """HF's warpers in HF order on log-probabilities, in place; beam methods keep at least
    ``n_eos + 1`` (at least 2) tokens per beam."""
    if s.temperature != 1.0:
        np.divide(x, np.float32(s.temperature), out=x)  # torch: float32 tensor / python float
    if s.top_n_sigma > 0:
        ops.top_n_sigma(x, s.top_n_sigma, min_tokens_to_keep=mk, out=x)
    if s.top_k != 0:
        ops.top_k(x, s.top_k, min_tokens_to_keep=mk, out=x)
    if s.top_p < 1.0:
        ops.top_p(x, s.top_p, min_tokens_to_keep=mk, out=x)
    if s.min_p > 0.0:
        ops.min_p(x, s.min_p, min_tokens_to_keep=mk, out=x)
    if s.typical_p < 1.0:
        ops.typical_p(x, s.typical_p, min_tokens_to_keep=mk, out=x)
    if s.epsilon_cutoff > 0.0:
        ops.epsilon_cutoff(x, s.epsilon_cutoff, min_tokens_to_keep=mk, out=x)
    if s.eta_cutoff > 0.0:
        ops.eta_cutoff(x, s.eta_cutoff, min_tokens_to_keep=mk, out=x)


def _draw(acc: np.ndarray, k: int, seeds: np.ndarray, step: int, items: np.ndarray) -> np.ndarray:
    """``torch.multinomial(softmax(acc), k)`` without replacement, row by row: k successive seeded
    draws, each from the softmax of the candidates not drawn yet. Returns flat indices in draw
    order; draw j of step t uses position ``t * k + j`` of the row's Philox stream."""
    A = acc.shape[0]
    short = np.isfinite(acc).sum(axis=1) < k
    if short.any():
        a = int(items[np.flatnonzero(short)[0]])
        raise ValueError(f"beam sampling: prompt {a} has fewer than {k} candidates with a finite "
                         "score (the processors removed too many tokens for num_beams)")
    work = acc.copy()
    out = np.empty((A, k), np.int64)
    ar = np.arange(A)
    for j in range(k):
        idx = np.asarray(ops.sample(work, seed=seeds, position=step * k + j), np.int64).reshape(A)
        out[:, j] = idx
        work[ar, idx] = -np.inf
    return out


# -- beam search (HF 5.x) -------------------------------------------------------------------------

def _search(sess, logits: np.ndarray, prompts: list[np.ndarray], c: _Config, seeds: np.ndarray):
    B, nb, M, K, V = len(prompts), c.num_beams, c.max_new, c.k, sess.vocab_size
    lpen, early = c.length_penalty, c.early_stopping
    sess.select(np.repeat(np.arange(B), nb))
    logits = np.repeat(logits, nb, axis=0)
    hist = _History(prompts, np.repeat(np.arange(B), nb), M, c.pad)

    # finished set of every item (HF's `sequences`, `beam_scores`, `is_sent_finished`)
    fin_score = np.full((B, nb), _NEG, np.float32)
    fin_flag = np.zeros((B, nb), bool)
    fin_len = np.zeros((B, nb), np.int64)
    fin_tok = np.full((B, nb, M), c.pad, np.int64)
    fin_bidx = np.full((B, nb, M), -1, np.int64)
    unsat = np.ones(B, bool)  # HF's is_early_stop_heuristic_unsatisfied

    active = np.arange(B)  # items still in the session, in session order
    run_score = np.zeros((B, nb), np.float32)
    run_score[:, 1:] = _NEG
    run_tok = np.full((B, nb, M), c.pad, np.int64)
    run_bidx = np.full((B, nb, M), -1, np.int64)
    top_mask = np.arange(K) < nb

    for t in range(M):
        A = active.size
        base = np.arange(A) * nb
        logits = np.asarray(logits, dtype=np.float32)  # HF: logits.to(torch.float32) first
        lp = _log_probs(logits, c, hist)
        if c.do_sample:
            acc = (lp.reshape(A, nb, V) + run_score[:, :, None]).reshape(A, nb * V)
            flat = _draw(acc, K, seeds[active], t, active)
            scores = np.take_along_axis(acc, flat, 1)
            par, tok = flat // V, flat % V
        else:
            x = lp if lp is not None else logits
            scores, rows, tok = ops.beam_step(x, run_score.reshape(-1), K, group_size=nb,
                                              normalize=lp is None and c.normalize)
            par = rows - base[:, None]
        hits = np.isin(tok, c.eos) if c.eos.size else np.zeros((A, K), bool)
        if t + 1 == M:
            hits[:] = True  # MaxLengthCriteria: every candidate reaches max_length

        ai = np.arange(A)[:, None]
        cand_tok = run_tok[ai, par]
        cand_tok[:, :, t] = tok
        cand_bidx = run_bidx[ai, par]
        cand_bidx[:, :, t] = active[:, None] * nb + par

        # _get_running_beams_for_next_iteration
        run_lp = scores + hits.astype(np.float32) * _NEG
        o = np.argsort(-run_lp, axis=1, kind="stable")[:, :nb]
        run_score = np.take_along_axis(run_lp, o, 1)
        new_par = np.take_along_axis(par, o, 1)
        new_tok = np.take_along_axis(tok, o, 1)
        run_tok = cand_tok[ai, o]
        run_bidx = cand_bidx[ai, o]

        # _update_finished_beams (the three sentinel additions in HF's order)
        did = hits & top_mask
        cand = scores / np.float32(float(t + 1) ** lpen)
        full = fin_flag[active].all(axis=1) & (early is True)
        cand += full[:, None].astype(np.float32) * _NEG
        cand += (~unsat[active])[:, None].astype(np.float32) * _NEG
        cand += (~did).astype(np.float32) * _NEG
        m_score = np.concatenate([fin_score[active], cand], axis=1)
        o = np.argsort(-m_score, axis=1, kind="stable")[:, :nb]
        fin_score[active] = np.take_along_axis(m_score, o, 1)
        fin_flag[active] = np.take_along_axis(np.concatenate([fin_flag[active], did], 1), o, 1)
        m_len = np.concatenate([fin_len[active], np.full((A, K), t + 1, np.int64)], 1)
        fin_len[active] = np.take_along_axis(m_len, o, 1)
        fin_tok[active] = np.concatenate([fin_tok[active], cand_tok], 1)[ai, o]
        fin_bidx[active] = np.concatenate([fin_bidx[active], cand_bidx], 1)[ai, o]

        # _check_early_stop_heuristic, after cur_len += 1
        hyp_len = M if (early == "never" and lpen > 0.0) else t + 1
        best = run_score[:, :1] / np.float32(float(hyp_len) ** lpen)
        worst = np.where(fin_flag[active], fin_score[active].min(axis=1, keepdims=True), _NEG)
        unsat[active] &= (best > worst).any(axis=1)

        # _beam_search_has_unfinished_sequences
        all_full = fin_flag.all(axis=1)
        if t + 1 == M or not unsat.any() or (early is True and all_full.all()):
            break
        blocked = ~unsat[active] | (all_full[active] & (early is True))
        real = (fin_score[active].min(axis=1) > _REAL) & (run_score[:, 0] > _REAL)
        keep = np.flatnonzero(~(blocked & real))
        if keep.size == 0:
            break
        rows = (base[:, None] + new_par)[keep].reshape(-1)
        sess.select(rows)
        hist.take(rows)
        nxt = new_tok[keep].reshape(-1)
        hist.append(nxt)
        logits = sess.extend(nxt[:, None])[:, 0]
        active = active[keep]
        run_score, run_tok, run_bidx = run_score[keep], run_tok[keep], run_bidx[keep]

    n = c.nrs
    return fin_tok[:, :n], fin_len[:, :n], fin_score[:, :n], fin_bidx[:, :n]


# -- diverse beam search (HF 4.56) ----------------------------------------------------------------

class _Hypotheses:
    """HF 4.56 ``BeamHypotheses``: the n best finished hypotheses of one (item, group), scored in
    double precision; ``beams`` keeps HF's list order (it decides ties in the final sort)."""

    __slots__ = ("n", "lpen", "early", "max_new", "beams", "worst")

    def __init__(self, n: int, lpen: float, early: Any, max_new: int):
        self.n, self.lpen, self.early, self.max_new = n, lpen, early, max_new
        self.beams: list[tuple[float, np.ndarray, np.ndarray]] = []
        self.worst = 1e9

    def add(self, tokens: np.ndarray, bidx: np.ndarray, sum_logprobs: float, gen_len: int) -> None:
        score = sum_logprobs / (gen_len ** self.lpen)
        if len(self.beams) < self.n or score > self.worst:
            self.beams.append((score, tokens, bidx))
            if len(self.beams) > self.n:
                ranked = sorted((s, i) for i, (s, _, _) in enumerate(self.beams))
                del self.beams[ranked[0][1]]
                self.worst = ranked[1][0]
            else:
                self.worst = min(score, self.worst)

    def is_done(self, best_sum_logprobs: float, gen_len: int) -> bool:
        if len(self.beams) < self.n:
            return False
        if self.early is True:
            return True
        length = self.max_new if (self.early == "never" and self.lpen > 0.0) else gen_len
        return self.worst >= best_sum_logprobs / length ** self.lpen


def _group_search(sess, logits: np.ndarray, prompts: list[np.ndarray], c: _Config):
    B, nb, M, G = len(prompts), c.num_beams, c.max_new, c.groups
    gs, K = nb // G, c.k
    eos = set(c.eos.tolist())
    sess.select(np.repeat(np.arange(B), nb))
    logits = np.repeat(logits, nb, axis=0)
    hist = _History(prompts, np.repeat(np.arange(B), nb), M, c.pad)
    hyps = [[_Hypotheses(gs, c.length_penalty, c.early_stopping, M) for _ in range(G)] for _ in range(B)]
    done = np.zeros((B, G), bool)
    active = np.arange(B)
    score = np.full((B, nb), _NEG, np.float32)
    score[:, ::gs] = 0.0
    run_tok = np.full((B, nb, M), c.pad, np.int64)
    run_bidx = np.full((B, nb, M), -1, np.int64)
    t = 0
    for t in range(M):
        A = active.size
        x32 = np.asarray(logits, dtype=np.float32)
        new_score = np.zeros((A, nb), np.float32)
        new_tok = np.full((A, nb), c.pad, np.int64)
        new_par = np.tile(np.arange(nb), (A, 1))
        for g in range(G):
            cols = g * gs + np.arange(gs)
            rows = (np.arange(A)[:, None] * nb + cols).reshape(-1)
            div_ids = np.repeat(new_tok[:, :g * gs], gs, axis=0) if g else None
            lp = _log_probs(x32, c, hist, rows, div_ids)
            s, r, tk = ops.beam_step(lp if lp is not None else x32[rows], score[:, cols].reshape(-1), K,
                                     group_size=gs, normalize=lp is None and c.normalize)
            par = r - (np.arange(A) * gs)[:, None]
            for a in range(A):
                b = int(active[a])
                if done[b, g]:
                    continue  # HF pads a finished group: token pad_token_id, score 0
                h = hyps[b][g]
                j = 0
                for rank in range(K):
                    tok, p = int(tk[a, rank]), int(par[a, rank])
                    if tok in eos:
                        if rank < gs:
                            h.add(run_tok[a, g * gs + p, :t].copy(),
                                  np.append(run_bidx[a, g * gs + p, :t], b * nb + g * gs + p),
                                  float(s[a, rank]), t + 1)
                    else:
                        new_score[a, g * gs + j] = s[a, rank]
                        new_tok[a, g * gs + j] = tok
                        new_par[a, g * gs + j] = g * gs + p
                        j += 1
                        if j == gs:
                            break
                done[b, g] = h.is_done(float(s[a].max()), t + 1)
        ai = np.arange(A)[:, None]
        run_tok = run_tok[ai, new_par]
        run_tok[:, :, t] = new_tok
        run_bidx = run_bidx[ai, new_par]
        run_bidx[:, :, t] = active[:, None] * nb + new_par
        score = new_score
        if t + 1 == M or done.all():
            break
        keep = np.flatnonzero(~done[active].all(axis=1))
        rows = (ai * nb + new_par)[keep].reshape(-1)
        sess.select(rows)
        hist.take(rows)
        nxt = new_tok[keep].reshape(-1)
        hist.append(nxt)
        logits = sess.extend(nxt[:, None])[:, 0]
        active = active[keep]
        score, run_tok, run_bidx = score[keep], run_tok[keep], run_bidx[keep]

    # BeamSearchScorer.finalize: open groups add their running beams, then the best of all groups
    for a, b in enumerate(active):
        for g in range(G):
            if not done[b, g]:
                for j in range(g * gs, (g + 1) * gs):
                    hyps[b][g].add(run_tok[a, j, :t + 1].copy(), run_bidx[a, j, :t + 1].copy(),
                                   float(score[a, j]), t + 1)
    n = c.nrs
    out_tok = np.full((B, n, M), c.pad, np.int64)
    out_len = np.zeros((B, n), np.int64)
    out_score = np.zeros((B, n), np.float32)
    out_bidx = np.full((B, n, M), -1, np.int64)
    for b in range(B):
        pool = [h for g in range(G) for h in hyps[b][g].beams]
        # sorted(key=score) then pop() from the end: among equal scores the later one first
        order = sorted(range(len(pool)), key=lambda i: (pool[i][0], i), reverse=True)
        for j in range(n):
            sc, tk, bi = pool[order[j]]
            L = tk.size
            out_tok[b, j, :L] = tk
            out_bidx[b, j, :bi.size] = bi
            if bi.size > L:  # ended by an EOS id: HF 4.56 writes eos_token_id[0] after the hypothesis
                out_tok[b, j, L] = c.eos[0]
                L += 1
            out_len[b, j] = L
            out_score[b, j] = sc
    return out_tok, out_len, out_score, out_bidx


# -- the public entry point ------------------------------------------------------------------------

def beam_search(model: Any, input_ids: Any, *, num_beams: int, max_new_tokens: int,
                length_penalty: float = 1.0, early_stopping: bool | str = False,
                num_return_sequences: int = 1, no_repeat_ngram_size: int = 0,
                eos_token_id: Any = None, pad_token_id: int | None = None, do_sample: bool = False,
                sampler: Sampler | None = None, seed: Any = None, num_beam_groups: int = 1,
                diversity_penalty: float = 0.0, attention_mask: Any = None,
                lengths: Any = None, normalize: bool = True) -> BeamSearchResult:
    """Beam search, beam sampling or diverse beam search with Hugging Face semantics.

    Parameters
    ----------
    model : callable or stateful model
        ``model(input_ids) -> logits`` or an object with ``start_session`` (see
        :mod:`fastdecode.session`). Each prompt's session is duplicated into ``num_beams`` rows
        with ``select``; beams are reordered with ``select`` and extended by one token per step.
    input_ids : (B, S) int array, or a list of B token-id sequences (ragged)
        The prompts; every prompt has its own beams.
    num_beams : int >= 1
        Beams per prompt. (HF runs greedy search or sampling for 1; here 1 is a beam search with
        one beam and two candidates per step.)
    max_new_tokens : int >= 0
        Every hypothesis is cut at this many new tokens (HF ``max_length = S + max_new_tokens``).
        0 returns the prompts with score 0 and calls no model.
    length_penalty : float, default 1.0
        A finished hypothesis scores ``sum_logprobs / num_new_tokens ** length_penalty``, where
        ``sum_logprobs`` sums the processed log-probabilities of its new tokens (EOS included) and
        ``num_new_tokens`` does not count the prompt. > 0 favours longer sequences, < 0 shorter.
    early_stopping : {False, True, "never"}
        When a prompt's search ends (HF ``early_stopping``). True: as soon as ``num_beams``
        hypotheses are finished. False (HF's default): when the best running beam, scored as if
        it finished now (``running_score / num_new_tokens ** length_penalty``), cannot beat the
        worst of ``num_beams`` finished hypotheses — a heuristic, not exact for
        ``length_penalty > 0``. "never": the same test with the most optimistic length
        (``max_new_tokens`` when ``length_penalty > 0``), i.e. canonical beam search (exact with
        ``length_penalty = 0``).
    num_return_sequences : int, 1 <= n <= num_beams
        Hypotheses returned per prompt, best first.
    no_repeat_ngram_size : int
        Bans, per beam, every token that would repeat an n-gram of its own history (prompt
        included): HF ``NoRepeatNGramLogitsProcessor`` on the log-probabilities (-inf, no
        renormalisation). 0 disables.
    eos_token_id : int or list of ints, optional
        A continuation ending in one of them is finished (the EOS is part of the hypothesis).
        Each extra id adds ``num_beams`` candidates per step, as in HF.
    pad_token_id : int, optional
        Fills rows past their end; defaults to the first EOS id, else 0.
    do_sample : bool
        HF beam sampling: the ``K`` candidates are drawn without replacement from
        ``softmax`` of the processed log-probabilities plus the beam scores over all
        ``beams x V`` (instead of taken as the top K); the first ``num_beams`` drawn may finish.
    sampler : Sampler, optional
        Its penalties (repetition, presence/frequency, n-gram, bad words, bias, suppress,
        whitelist) are applied to the log-probabilities every step. With ``do_sample`` its
        temperature and filters follow, in HF order, with ``min_tokens_to_keep =
        max(2, n_eos + 1)`` per beam as HF uses for beam methods; without ``do_sample`` they are
        ignored with a warning (as HF does). Parameters must be scalars; ``order`` must be "hf".
        HF's ``generate`` defaults ``top_k`` to 50: pass ``Sampler(top_k=50)`` to reproduce it.
    seed : int or array of B ints, optional
        Seeds beam sampling (overrides ``sampler.seed``): draw j of step t for prompt b uses
        position ``t * K + j`` of the Philox stream of its seed, so a prompt's result does not
        depend on the rest of the batch; a scalar seed is shared by every prompt. None draws fresh
        entropy. (HF uses torch's global generator; the tokens differ, the distribution is the same.)
    num_beam_groups : int, divides num_beams
        > 1 runs diverse beam search (HF 4.56 ``_group_beam_search``): the beams split into groups
        searched one after the other within each step.
    diversity_penalty : float >= 0
        Subtracted from a token's log-probability in a group once for every time an earlier group
        chose it at this step (Hamming diversity). Must be > 0 exactly when ``num_beam_groups > 1``
        (HF raises otherwise).
    attention_mask : (B, S) 0/1 array, optional
        Marks left (or right) padding of a 2-D ``input_ids``; the model never sees padding.
    lengths : int or array of B ints, optional
        Right padding: row b's prompt is ``input_ids[b, :lengths[b]]``.
    normalize : bool, default True
        True (HF): each step scores ``log_softmax`` of the model's logits. False: the model's
        outputs are taken as per-token scores as they are (float32), so a hypothesis scores the
        sum of its tokens' outputs: beam search over any additive score, such as the contrastive
        score (:func:`fastdecode.contrastive_generate`). Processors, length penalty and early
        stopping apply unchanged.

    Returns
    -------
    BeamSearchResult
        ``sequences`` (B * num_return_sequences rows), ``sequences_scores``, ``lengths``,
        ``prompt_lengths``, ``offsets``, ``beam_indices``.

    Raises
    ------
    ValueError
        Bad arguments (the message names the argument), an empty prompt, an EOS id outside the
        vocabulary, or a vocabulary smaller than ``max(2, 1 + n_eos)``.

    Notes
    -----
    Plain search and beam sampling reproduce ``transformers`` 5.x ``_beam_search``; diverse
    search reproduces 4.56 ``_group_beam_search`` with ``BeamSearchScorer`` (see the module
    docstring for the step and the arithmetic). The tests compare plain search token for token
    with ``model.generate`` of the installed ``transformers`` and both searches with loop-based
    ports of HF's code (diverse search was also compared with 4.56's ``generate``, which the test
    environment no longer has). The differences: equal scores
    are ordered by the lower ``beam * V + token`` (torch leaves that order open); the n-gram and
    penalty histories exclude left padding; the output is padded with ``pad_token_id`` as given;
    a finished 4.56 group hypothesis ends with ``eos_token_id[0]``, whichever EOS id ended it (as
    in 4.56); and with ``do_sample`` the candidates come from fastdecode's counter-based
    generator, and where fewer than K candidates have a finite score a ``ValueError`` is raised
    (HF's ``torch.multinomial`` fails there too).

    Examples
    --------
    >>> import fastdecode as fd
    >>> from fastdecode.models import char_model
    >>> m = char_model()
    >>> r = fd.beam_search(m, [m.encode("Alice was ")], max_new_tokens=8, num_beams=3)
    >>> m.decode(r.new_tokens(0))  # the best hypothesis
    'nothing '
    """
    c = _config(num_beams, max_new_tokens, length_penalty, early_stopping, num_return_sequences,
                no_repeat_ngram_size, eos_token_id, pad_token_id, do_sample, sampler, num_beam_groups,
                diversity_penalty)
    if not isinstance(normalize, (bool, np.bool_)):
        raise TypeError(f"normalize must be a bool, got {normalize!r}")
    c.normalize = bool(normalize)
    prompts, layout = as_prompts(input_ids, attention_mask=attention_mask, lengths=lengths)
    B = len(prompts)
    plen = np.array([p.size for p in prompts], np.int64)
    if layout["left"] and not (layout["offsets"] + plen == layout["width"]).all():
        raise ValueError("attention_mask mixes left and right padding; pad every row on the same side")
    vs = declared_vocab(model)
    if vs is not None:  # before any work, and also when there are no steps (as generate)
        check_ids_in_vocab(prompts, vs)
        if c.eos.size and c.eos.max() >= vs:
            raise ValueError(f"eos_token_id {int(c.eos.max())} is outside the model's vocabulary of {vs}")
    seeds = _row_seeds(seed, c.sampler, B) if c.do_sample else np.zeros(B, np.uint64)
    n, M = c.nrs, c.max_new
    if M == 0:
        res = (np.full((B, n, 0), c.pad, np.int64), np.zeros((B, n), np.int64),
               np.zeros((B, n), np.float32), np.full((B, n, 0), -1, np.int64))
    else:
        sess, last = start_session(model, prompts)
        V = int(sess.vocab_size)
        if c.eos.size and c.eos.max() >= V:
            raise ValueError(f"eos_token_id {int(c.eos.max())} is outside the model's vocabulary of {V}")
        if c.groups > 1 and c.pad >= V:
            raise ValueError(f"pad_token_id {c.pad} is outside the model's vocabulary of {V}: diverse beam "
                             "search feeds it to the model for finished groups (as HF does)")
        if V < max(2, 1 + c.eos.size):
            raise ValueError(f"the vocabulary ({V} tokens) is too small for beam search with "
                             f"{c.eos.size} eos_token_id(s): it needs at least {max(2, 1 + c.eos.size)}")
        if c.groups > 1:
            res = _group_search(sess, last, prompts, c)
        else:
            res = _search(sess, last, prompts, c, seeds)
    return _result(res, prompts, layout, plen, c)


def _result(res, prompts, layout, plen, c: _Config) -> BeamSearchResult:
    tok, glen, score, bidx = res
    B, n = glen.shape
    g = int(glen.max()) if glen.size else 0
    left = layout["left"]
    S = int(layout["width"])
    rows_plen = np.repeat(plen, n)
    width = S + g if left else int((rows_plen + glen.reshape(-1)).max())
    seq = np.full((B * n, width), c.pad, np.int64)
    offsets = np.repeat(layout["offsets"], n) if left else np.zeros(B * n, np.int64)
    for b in range(B):
        for j in range(n):
            r = b * n + j
            L = int(glen[b, j])
            if left:
                seq[r, :S] = layout["array"][b]
                seq[r, S:S + L] = tok[b, j, :L]
            else:
                P = int(plen[b])
                seq[r, :P] = prompts[b]
                seq[r, P:P + L] = tok[b, j, :L]
    bi = bidx.reshape(B * n, -1)[:, :g].copy()
    return BeamSearchResult(sequences=seq, sequences_scores=score.reshape(-1).copy(),
                            lengths=rows_plen + glen.reshape(-1), prompt_lengths=rows_plen,
                            offsets=offsets, beam_indices=bi)
