"""Loop-based ports of Hugging Face's beam searches: the reference for tests/test_beam.py.

:func:`beam_search_hf`
    ``transformers`` 5.x ``GenerationMixin._beam_search``. Its vectorised code (top-K
    continuations, running beams for the next step, finished-beam update, early-stop heuristic,
    global stop test) is the same in 4.50-4.56 and 5.x; 4.56's ``BeamSearchScorer`` is *not* used
    by plain beam search any more (it survives for group and constrained search), and it differs
    from the vectorised code in small ways (its early-stop test uses the best candidate, EOS
    included, not the best running beam; it scores in double precision; it writes
    ``eos_token_id[0]`` after a finished hypothesis).
:func:`group_beam_search_hf`
    ``transformers`` 4.56 ``_group_beam_search`` with ``BeamSearchScorer.process`` /
    ``finalize`` and ``BeamHypotheses`` (HF moved diverse beam search out of the core in 4.57).

Both are written the way the algorithms read: per batch item, per beam, per candidate, with
Python lists and NumPy float32 scalars (one rounding per torch operation), every item stepped
every step as HF does (fastdecode drops finished items; this checks that the shortcut is exact).
Independent of fastdecode's search code; two deliberate couplings, so that results can be
compared bit for bit:

* log-probabilities come from :func:`fastdecode.log_softmax` (torch's float32 log_softmax may
  differ in the last bit; HF itself is compared in test_beam.py, with a tolerance on scores);
* ``torch.topk`` leaves the order of equal scores unspecified: ties go to the lower flat index
  ``beam * V + token`` (fastdecode's documented rule), and in merges to the earlier entry.

``logits_fn(histories)`` maps a list of token-id lists to a float (N, V) array of next-token
logits. Results are one list per prompt of ``(new_tokens, score, beam_indices)``, best first.
"""

from __future__ import annotations

import numpy as np

import fastdecode as fd

NEG = np.float32(-1.0e9)
F32 = np.float32


def _banned_ngram_tokens(history: list[int], n: int) -> list[int]:
    """HF ``_get_ngrams`` + ``_get_generated_ngrams`` for one hypothesis."""
    if len(history) + 1 < n:
        return []
    ngrams: dict[tuple, list[int]] = {}
    for gram in zip(*[history[i:] for i in range(n)]):
        ngrams.setdefault(tuple(gram[:-1]), []).append(gram[-1])
    return ngrams.get(tuple(history[len(history) - n + 1:]), [])


def _log_probs(logits_fn, histories: list[list[int]]) -> np.ndarray:
    x = np.asarray(logits_fn(histories), dtype=np.float32)
    return np.asarray(fd.log_softmax(x), dtype=np.float32)


def _ban(lp: np.ndarray, history: list[int], n: int) -> np.ndarray:
    lp = lp.copy()
    if n > 0:
        for v in _banned_ngram_tokens(history, n):
            lp[v] = -np.inf
    return lp


def _top_k(cands: list[tuple], k: int) -> list[tuple]:
    """cands: (score, flat_index, ...); the k largest scores, ties to the lower flat index."""
    return sorted(cands, key=lambda c: (-c[0], c[1]))[:k]


def _eos_list(eos) -> list[int]:
    if eos is None:
        return []
    return [int(e) for e in np.atleast_1d(eos)]


# ------------------------------------------------------------------------------------------------
# plain beam search (transformers 5.x _beam_search)


def beam_search_hf(logits_fn, prompts, *, num_beams, max_new_tokens, length_penalty=1.0,
                   early_stopping=False, num_return_sequences=1, no_repeat_ngram_size=0,
                   eos_token_id=None, pad_token_id=None):
    prompts = [list(map(int, p)) for p in prompts]
    eos = _eos_list(eos_token_id)
    nb, M, lp_exp = num_beams, max_new_tokens, length_penalty
    B = len(prompts)
    K = max(2, 1 + len(eos)) * nb  # beams_to_keep

    # running beams: generated tokens, beam indices, float32 score (beam 0 live, others -1e9)
    run_tokens = [[[] for _ in range(nb)] for _ in range(B)]
    run_bidx = [[[] for _ in range(nb)] for _ in range(B)]
    run_score = [[F32(0.0)] + [NEG] * (nb - 1) for _ in range(B)]
    # finished slots (HF's `sequences`, `beam_scores`, `is_sent_finished`)
    fin = [[dict(score=NEG, tokens=[], bidx=[], finished=False) for _ in range(nb)] for _ in range(B)]
    unsatisfied = [True] * B

    for t in range(M):
        histories = [prompts[b] + run_tokens[b][j] for b in range(B) for j in range(nb)]
        lps = _log_probs(logits_fn, histories)
        V = lps.shape[1]
        for b in range(B):
            # a. scores of every (beam, token) continuation
            cands = []
            for j in range(nb):
                lp = _ban(lps[b * nb + j], prompts[b] + run_tokens[b][j], no_repeat_ngram_size)
                for v in range(V):
                    cands.append((F32(lp[v] + run_score[b][j]), j * V + v, j, v))
            top = _top_k(cands, K)
            # b. which continuations stop (EOS, or max_length reached)
            hits = [(v in eos) or (t + 1 == M) for (_, _, _, v) in top]
            # c. next running beams: the best non-stopped ones (stopped ones get -1e9)
            running_scores = [F32(s + (NEG if h else F32(0.0))) for (s, _, _, _), h in zip(top, hits)]
            pick = sorted(range(K), key=lambda i: (-running_scores[i], i))[:nb]
            # d. finished update: only the top num_beams may finish
            full = early_stopping is True and all(f["finished"] for f in fin[b])
            entries = []
            for i, (s, _, j, v) in enumerate(top):
                did = hits[i] and i < nb
                score = F32(s / F32(float(t + 1) ** lp_exp))
                if full:
                    score = F32(score + NEG)
                if not unsatisfied[b]:
                    score = F32(score + NEG)
                if not did:
                    score = F32(score + NEG)
                entries.append(dict(score=score, tokens=run_tokens[b][j] + [v],
                                    bidx=run_bidx[b][j] + [b * nb + j], finished=did))
            merged = fin[b] + entries
            best = sorted(range(len(merged)), key=lambda i: (-merged[i]["score"], i))[:nb]
            fin[b] = [merged[i] for i in best]
            # running beams for the next step
            new_tokens = [run_tokens[b][top[i][2]] + [top[i][3]] for i in pick]
            new_bidx = [run_bidx[b][top[i][2]] + [b * nb + top[i][2]] for i in pick]
            run_tokens[b], run_bidx[b] = new_tokens, new_bidx
            run_score[b] = [running_scores[i] for i in pick]
            # e. early-stop heuristic (after cur_len += 1)
            length = M if (early_stopping == "never" and lp_exp > 0.0) else t + 1
            best_possible = F32(run_score[b][0] / F32(float(length) ** lp_exp))
            worst = min(f["score"] for f in fin[b])
            can_improve = any(best_possible > (worst if f["finished"] else NEG) for f in fin[b])
            unsatisfied[b] = unsatisfied[b] and can_improve
        # f. global stop test (_beam_search_has_unfinished_sequences)
        all_full = all(f["finished"] for row in fin for f in row)
        if t + 1 == M or not any(unsatisfied) or (early_stopping is True and all_full):
            break

    return [[(f["tokens"], f["score"], f["bidx"]) for f in fin[b][:num_return_sequences]]
            for b in range(B)]


# ------------------------------------------------------------------------------------------------
# diverse (group) beam search (transformers 4.56 _group_beam_search + BeamSearchScorer)


class BeamHypotheses:
    """HF 4.56 ``BeamHypotheses`` (scores in Python floats, i.e. double precision)."""

    def __init__(self, num_beams, length_penalty, early_stopping, max_new_tokens):
        self.length_penalty = length_penalty
        self.early_stopping = early_stopping
        self.max_new_tokens = max_new_tokens
        self.num_beams = num_beams
        self.beams = []
        self.worst_score = 1e9

    def __len__(self):
        return len(self.beams)

    def add(self, hyp, sum_logprobs, beam_indices, generated_len):
        score = sum_logprobs / (generated_len ** self.length_penalty)
        if len(self) < self.num_beams or score > self.worst_score:
            self.beams.append((score, hyp, beam_indices))
            if len(self) > self.num_beams:
                sorted_next_scores = sorted([(s, idx) for idx, (s, _, _) in enumerate(self.beams)])
                del self.beams[sorted_next_scores[0][1]]
                self.worst_score = sorted_next_scores[1][0]
            else:
                self.worst_score = min(score, self.worst_score)

    def is_done(self, best_sum_logprobs, generated_len):
        if len(self) < self.num_beams:
            return False
        if self.early_stopping is True:
            return True
        if self.early_stopping is False:
            highest = best_sum_logprobs / generated_len ** self.length_penalty
            return self.worst_score >= highest
        if self.length_penalty > 0.0:
            highest = best_sum_logprobs / self.max_new_tokens ** self.length_penalty
        else:
            highest = best_sum_logprobs / generated_len ** self.length_penalty
        return self.worst_score >= highest


def group_beam_search_hf(logits_fn, prompts, *, num_beams, num_beam_groups, diversity_penalty,
                         max_new_tokens, length_penalty=1.0, early_stopping=False,
                         num_return_sequences=1, no_repeat_ngram_size=0, eos_token_id=None,
                         pad_token_id=None):
    prompts = [list(map(int, p)) for p in prompts]
    eos = _eos_list(eos_token_id)
    pad = pad_token_id if pad_token_id is not None else (eos[0] if eos else 0)
    nb, G, M = num_beams, num_beam_groups, max_new_tokens
    gs = nb // G
    B = len(prompts)
    K = max(2, 1 + len(eos)) * gs
    penalty = F32(diversity_penalty)

    # generated tokens and beam indices of every beam; scores: beam 0 of each group live
    gen = [[[] for _ in range(nb)] for _ in range(B)]
    bidx = [[[] for _ in range(nb)] for _ in range(B)]
    beam_scores = [[F32(0.0) if j % gs == 0 else NEG for j in range(nb)] for _ in range(B)]
    hyps = [[BeamHypotheses(gs, length_penalty, early_stopping, M) for _ in range(G)] for _ in range(B)]
    done = [[False] * G for _ in range(B)]

    cur = 0
    while True:
        histories = [prompts[b] + gen[b][j] for b in range(B) for j in range(nb)]
        lps = _log_probs(logits_fn, histories)
        V = lps.shape[1]
        current_tokens = [[0] * nb for _ in range(B)]
        new_gen = [[None] * nb for _ in range(B)]
        new_bidx = [[None] * nb for _ in range(B)]
        new_scores = [[F32(0.0)] * nb for _ in range(B)]
        for g in range(G):
            lo = g * gs
            # every item's candidates for this group (logits processors, then topk)
            tops = []
            for b in range(B):
                counts = np.bincount(current_tokens[b][:lo], minlength=V) if g > 0 else None
                cands = []
                for jj in range(gs):
                    j = lo + jj
                    lp = lps[b * nb + j].copy()
                    if counts is not None:  # HammingDiversityLogitsProcessor
                        for v in range(V):
                            lp[v] = F32(lp[v] - F32(penalty * F32(counts[v])))
                    lp = _ban(lp, prompts[b] + gen[b][j], no_repeat_ngram_size)
                    for v in range(V):
                        cands.append((F32(lp[v] + beam_scores[b][j]), jj * V + v, jj, v))
                tops.append(_top_k(cands, K))
            # BeamSearchScorer.process
            for b in range(B):
                if done[b][g]:
                    for jj in range(gs):  # pad; HF points the rows at beam 0 of item 0's group
                        new_gen[b][lo + jj] = gen[0][lo] + [pad]
                        new_bidx[b][lo + jj] = bidx[0][lo] + [lo]
                        new_scores[b][lo + jj] = F32(0.0)
                        current_tokens[b][lo + jj] = pad
                    continue
                jn = 0
                for rank, (s, _, jj, v) in enumerate(tops[b]):
                    j = lo + jj
                    if v in eos:
                        if rank >= gs:
                            continue
                        hyps[b][g].add(list(gen[b][j]), float(s), bidx[b][j] + [b * nb + j], cur + 1)
                    else:
                        new_gen[b][lo + jn] = gen[b][j] + [v]
                        new_bidx[b][lo + jn] = bidx[b][j] + [b * nb + j]
                        new_scores[b][lo + jn] = s
                        current_tokens[b][lo + jn] = v
                        jn += 1
                    if jn == gs:
                        break
                assert jn == gs, "HF raises: too many EOS candidates"
                best = max(float(c[0]) for c in tops[b])
                done[b][g] = done[b][g] or hyps[b][g].is_done(best, cur + 1)
        gen, bidx, beam_scores = new_gen, new_bidx, new_scores
        cur += 1
        if all(all(d) for d in done) or cur == M:
            break

    # BeamSearchScorer.finalize
    for b in range(B):
        for g in range(G):
            if done[b][g]:
                continue
            for j in range(g * gs, (g + 1) * gs):
                hyps[b][g].add(list(gen[b][j]), float(beam_scores[b][j]), list(bidx[b][j]), cur)
    best = []
    for b in range(B):
        candidate_beams = [beam for g in range(G) for beam in hyps[b][g].beams]
        sorted_hyps = sorted(candidate_beams, key=lambda x: x[0])
        best.append([sorted_hyps.pop() for _ in range(num_return_sequences)])
    # "prepare for adding eos": a hypothesis shorter than the longest (+1, capped at max_length)
    # gets eos_token_id[0] appended (lengths counted in new tokens; HF counts the common prompt too)
    longest = max(len(h[1]) for row in best for h in row)
    cap = min(longest + 1, M)
    out = []
    for b in range(B):
        row = []
        for score, hyp, bi in best[b]:
            tokens = list(hyp) + ([eos[0]] if len(hyp) < cap else [])
            row.append((tokens, F32(score), list(bi)))
        out.append(row)
    return out
