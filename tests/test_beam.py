"""fastdecode.beam_search: exhaustive optimality, parity with loop-based ports of Hugging Face's
beam searches (tests/_hf_beam_reference.py), parity with transformers' own ``generate`` on a tiny
random Llama, beam-sample statistics, layouts and argument errors."""

import itertools
import math
import os
import warnings

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fastdecode import Sampler  # noqa: E402
from fastdecode.beam import BeamSearchResult, beam_search  # noqa: E402

from _hf_beam_reference import beam_search_hf, group_beam_search_hf  # noqa: E402
from conftest import chi_square_pvalue  # noqa: E402


# ------------------------------------------------------------------------------------------------
# a tiny deterministic model whose sequence probabilities can be enumerated


class TableModel:
    """An n-gram LM: the next-token logits are a seeded random table row keyed by the last
    ``order - 1`` tokens (a shorter history has rows of its own). Plain callable: (B, S) -> (B, V)."""

    def __init__(self, V, order, seed, scale=2.0):
        rng = np.random.default_rng(seed)
        self.V, self.order = V, order
        self.table = rng.normal(0.0, scale, ((V + 1) ** (order - 1), V)).astype(np.float32)

    def key(self, ids):
        ids = np.asarray(ids, np.int64)
        k = np.zeros(ids.shape[0], np.int64)
        for i in range(self.order - 1):
            col = ids.shape[1] - 1 - i
            tok = ids[:, col] if col >= 0 else np.full(ids.shape[0], self.V)
            k = k * (self.V + 1) + tok
        return k

    def __call__(self, ids):
        return self.table[self.key(ids)]

    def histories(self, hists):
        """Next-token logits of each history (a list of token lists), for the reference."""
        return np.stack([self(np.asarray([h], np.int64))[0] for h in hists])

    def log_probs(self, history):
        z = self.table[self.key([history])[0]].astype(np.float64)
        return z - (z.max() + np.log(np.exp(z - z.max()).sum()))


class _TableSession:
    def __init__(self, model, prompts):
        self.model, self.vocab_size = model, model.V
        self.rows = [list(map(int, p)) for p in prompts]

    @property
    def lengths(self):
        return np.array([len(r) for r in self.rows], np.int64)

    def extend(self, tokens):
        out = []
        for r, ts in zip(self.rows, np.asarray(tokens)):
            step = []
            for t in ts:
                r.append(int(t))
                step.append(self.model.histories([r])[0])
            out.append(step)
        return np.asarray(out, np.float32)

    def truncate(self, lengths):
        self.rows = [r[:int(n)] for r, n in zip(self.rows, lengths)]

    def select(self, rows):
        self.rows = [list(self.rows[int(i)]) for i in rows]


class StatefulTable(TableModel):
    """The same model speaking the stateful protocol (``start_session``), with a native session."""

    def start_session(self, prompts):
        s = _TableSession(self, prompts)
        return s, self.histories(s.rows)


# ------------------------------------------------------------------------------------------------
# helpers


def _new_tokens(r: BeamSearchResult):
    return [r.new_tokens(i).tolist() for i in range(r.sequences.shape[0])]


def _assert_same_as_reference(r: BeamSearchResult, ref, what):
    rows = [h for item in ref for h in item]
    assert r.sequences.shape[0] == len(rows), what
    for i, (tokens, score, bidx) in enumerate(rows):
        assert r.new_tokens(i).tolist() == list(tokens), f"{what}: row {i} tokens"
        assert r.sequences_scores[i] == np.float32(score), (
            f"{what}: row {i} score {r.sequences_scores[i]!r} != {score!r}")
        assert r.beam_indices[i, :len(bidx)].tolist() == list(bidx), f"{what}: row {i} beam_indices"
        assert (r.beam_indices[i, len(bidx):] == -1).all(), what


def _random_prompts(rng, V, B):
    return [rng.integers(0, V, int(rng.integers(1, 5))).tolist() for _ in range(B)]


EOS_CHOICES = [None, 0, [0, 1], [2, 0, 1]]


# ------------------------------------------------------------------------------------------------
# 1. enough beams find the exact optimum


def _enumerate(model, prompt, T, eos, lp):
    """Every hypothesis (ends with EOS, or reaches T new tokens) with its HF score, best first."""
    out = []
    for L in range(1, T + 1):
        for seq in itertools.product(range(model.V), repeat=L):
            if eos is None and L < T:
                continue
            if eos is not None and (eos in seq[:-1] or (L < T and seq[-1] != eos)):
                continue
            hist, s = list(prompt), 0.0
            for tok in seq:
                s += model.log_probs(hist)[tok]
                hist.append(tok)
            out.append((s / L ** lp, list(seq)))
    out.sort(key=lambda x: -x[0])
    return out


@pytest.mark.parametrize("eos,lp", [(None, 1.0), (0, 0.0), (0, 1.0), (0, -1.0)])
@pytest.mark.parametrize("early_stopping", [False, "never"])
def test_enough_beams_find_the_best_sequences(eos, lp, early_stopping):
    V, T = 5, 3
    model = TableModel(V, 2, seed=11)
    prompts = [[1, 3], [4]]
    r = beam_search(model, prompts, num_beams=V ** T, max_new_tokens=T, length_penalty=lp,
                    early_stopping=early_stopping, num_return_sequences=6, eos_token_id=eos)
    for b, p in enumerate(prompts):
        best = _enumerate(model, p, T, eos, lp)[:6]
        for j, (score, seq) in enumerate(best):
            assert r.new_tokens(b * 6 + j).tolist() == seq
            assert math.isclose(r.sequences_scores[b * 6 + j], score, rel_tol=1e-5)


# ------------------------------------------------------------------------------------------------
# 2. parity with the loop-based port of HF's beam search


def _configs(seed, n):
    """Random settings, small vocabularies included: with num_beams close to V the first steps
    keep -1e9 "filler" beams and candidates, whose arithmetic must match HF's too."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        nb = int(rng.choice([1, 2, 3, 4, 5, 6, 8]))
        yield dict(
            V=int(rng.choice([5, 6, 8])), order=int(rng.choice([2, 3])), seed=int(rng.integers(1 << 30)),
            scale=float(rng.choice([1.0, 3.0])), eos_boost=float(rng.choice([0.0, 1.5])),
            num_beams=nb, max_new_tokens=int(rng.integers(1, 7)),
            length_penalty=float(rng.choice([-1.0, 0.0, 0.7, 2.0])),
            early_stopping=[True, False, "never"][int(rng.integers(3))],
            num_return_sequences=int(rng.integers(1, nb + 1)),
            no_repeat_ngram_size=int(rng.choice([0, 0, 1, 2, 3])),
            eos_token_id=EOS_CHOICES[int(rng.integers(len(EOS_CHOICES)))],
            pad_token_id=[None, 3][int(rng.integers(2))], B=int(rng.integers(1, 4)))


def _model_and_prompts(cfg):
    """Pops the model settings from cfg; EOS id 0 gets a boost so that hypotheses end early."""
    V, order, seed = cfg.pop("V"), cfg.pop("order"), cfg.pop("seed")
    model = TableModel(V, order, seed, scale=cfg.pop("scale"))
    model.table[:, 0] += cfg.pop("eos_boost")
    return model, _random_prompts(np.random.default_rng(seed), V, cfg.pop("B"))


@pytest.mark.parametrize("cfg", list(_configs(2024, 120)), ids=lambda c: f"V{c['V']}nb{c['num_beams']}")
def test_matches_reference_beam_search(cfg):
    cfg = dict(cfg)
    model, prompts = _model_and_prompts(cfg)
    r = beam_search(model, prompts, **cfg)
    ref = beam_search_hf(model.histories, prompts, **cfg)
    _assert_same_as_reference(r, ref, str(cfg))


def test_reference_parity_on_peaked_model_with_frequent_eos():
    """Many hypotheses finish early: exercises the finished-set merge and every stop rule."""
    for seed, es, lp in itertools.product(range(4), [True, False, "never"], [-1.0, 0.0, 0.7, 2.0]):
        model = TableModel(6, 2, seed, scale=4.0)
        model.table[:, :2] += 1.5  # tokens 0 and 1 (the EOS ids) are often likely
        prompts = [[2, 3, 4], [5], [3, 3]]
        kw = dict(num_beams=3, max_new_tokens=6, length_penalty=lp, early_stopping=es,
                  num_return_sequences=3, eos_token_id=[0, 1], pad_token_id=5)
        r = beam_search(model, prompts, **kw)
        _assert_same_as_reference(r, beam_search_hf(model.histories, prompts, **kw), str(kw))


def test_stateful_session_gives_the_same_result():
    model, stateful = TableModel(8, 3, 5), StatefulTable(8, 3, 5)
    prompts = [[1, 2, 3], [4], [7, 7]]
    for kw in [dict(num_beams=3, eos_token_id=[0, 1]),
               dict(num_beams=4, num_beam_groups=2, diversity_penalty=0.8),
               dict(num_beams=3, do_sample=True, seed=3, no_repeat_ngram_size=2)]:
        a = beam_search(model, prompts, max_new_tokens=6, num_return_sequences=2, **kw)
        b = beam_search(stateful, prompts, max_new_tokens=6, num_return_sequences=2, **kw)
        np.testing.assert_array_equal(a.sequences, b.sequences)
        np.testing.assert_array_equal(a.sequences_scores, b.sequences_scores)


# ------------------------------------------------------------------------------------------------
# 3. diverse (group) beam search against the port of HF 4.56


def _group_configs(seed, n):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        nb, G = [(2, 2), (4, 2), (6, 3), (6, 2), (4, 4), (8, 4), (8, 2)][int(rng.integers(7))]
        yield dict(
            V=int(rng.choice([5, 6, 8])), order=int(rng.choice([2, 3])), seed=int(rng.integers(1 << 30)),
            scale=float(rng.choice([1.0, 3.0])), eos_boost=float(rng.choice([0.0, 1.5])),
            num_beams=nb, num_beam_groups=G, diversity_penalty=float(rng.choice([0.3, 1.0, 3.0])),
            max_new_tokens=int(rng.integers(1, 7)),
            length_penalty=float(rng.choice([-1.0, 0.0, 0.7, 2.0])),
            early_stopping=[True, False, "never"][int(rng.integers(3))],
            num_return_sequences=int(rng.integers(1, nb + 1)),
            no_repeat_ngram_size=int(rng.choice([0, 0, 2])),
            eos_token_id=EOS_CHOICES[1 + int(rng.integers(len(EOS_CHOICES) - 1))],
            B=int(rng.integers(1, 4)))


# found by mutation testing: the worst score a hypothesis list keeps after an eviction decides
# when a group is done
_GROUP_REGRESSIONS = [
    dict(V=6, order=3, seed=339432845, scale=1.0, eos_boost=1.5, num_beams=8, num_beam_groups=4,
         diversity_penalty=0.3, max_new_tokens=5, length_penalty=2.0, early_stopping=False,
         num_return_sequences=3, no_repeat_ngram_size=0, eos_token_id=[2, 0, 1], B=3),
]


@pytest.mark.parametrize("cfg", list(_group_configs(7, 80)) + _GROUP_REGRESSIONS,
                         ids=lambda c: f"nb{c['num_beams']}g{c['num_beam_groups']}")
def test_matches_reference_group_beam_search(cfg):
    cfg = dict(cfg)
    model, prompts = _model_and_prompts(cfg)
    r = beam_search(model, prompts, **cfg)
    ref = group_beam_search_hf(model.histories, prompts, **cfg)
    rows = [h for item in ref for h in item]
    assert r.sequences.shape[0] == len(rows)
    for i, (tokens, score, _) in enumerate(rows):
        assert r.new_tokens(i).tolist() == tokens, f"{cfg}: row {i}"
        assert r.sequences_scores[i] == score, f"{cfg}: row {i} score"


def test_diversity_penalty_changes_the_groups():
    model = TableModel(16, 2, 3, scale=1.0)
    kw = dict(num_beams=4, num_beam_groups=4, max_new_tokens=4, num_return_sequences=4)
    weak = beam_search(model, [[1]], diversity_penalty=1e-6, **kw)
    strong = beam_search(model, [[1]], diversity_penalty=50.0, **kw)
    plain = beam_search(model, [[1]], num_beams=1, max_new_tokens=4)
    # a negligible penalty: every group of one beam follows the same (greedy-like) path
    assert len({tuple(t) for t in _new_tokens(weak)}) == 1
    assert _new_tokens(weak)[0] == _new_tokens(plain)[0]
    # a large penalty: the four groups start with four different tokens
    assert len({t[0] for t in _new_tokens(strong)}) == 4


# ------------------------------------------------------------------------------------------------
# 4. transformers' own generate() on a tiny random Llama


@pytest.fixture(scope="module")
def tiny_llama():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(30.0)  # peaked distributions: real decisions, EOS hits

    def call(ids):
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(ids))).logits.float().numpy()

    return torch, model, call


HF_CASES = [
    dict(num_beams=2, length_penalty=1.0, early_stopping=False),
    dict(num_beams=4, length_penalty=1.0, early_stopping=True, num_return_sequences=3),
    dict(num_beams=4, length_penalty=0.0, early_stopping="never", no_repeat_ngram_size=2),
    dict(num_beams=4, length_penalty=-1.0, early_stopping=False, num_return_sequences=4),
    dict(num_beams=2, length_penalty=2.0, early_stopping="never", num_return_sequences=2),
    dict(num_beams=4, length_penalty=0.7, early_stopping=True, no_repeat_ngram_size=2),
    dict(num_beams=3, length_penalty=2.0, early_stopping=False, num_return_sequences=2),
]


@pytest.mark.parametrize("left_pad", [False, True])
@pytest.mark.parametrize("case", HF_CASES)
def test_matches_transformers_generate(tiny_llama, case, left_pad):
    torch, model, call = tiny_llama
    rng = np.random.default_rng(len(str(case)) + left_pad)
    ids = rng.integers(8, 64, (2, 5))
    mask = np.ones_like(ids)
    if left_pad:
        mask[1, :2] = 0
        ids[1, :2] = 7
    kw = dict(max_new_tokens=10, eos_token_id=[1, 2, 3, 4, 5], pad_token_id=6, **case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.no_grad():
            out = model.generate(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                                 do_sample=False, return_dict_in_generate=True, output_scores=True, **kw)
    r = beam_search(call, ids, attention_mask=mask, **kw)
    np.testing.assert_array_equal(r.sequences, out.sequences.numpy())
    np.testing.assert_array_equal(r.beam_indices, out.beam_indices.numpy())
    # same tokens; scores differ by torch-vs-fastdecode log_softmax rounding and the KV cache
    np.testing.assert_allclose(r.sequences_scores, out.sequences_scores.numpy(), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# 5. beam sampling


def test_beam_sample_first_draw_distribution():
    """nb = 1, one new token: the hypothesis is the first draw, from softmax of the warped
    log-probabilities (temperature, then top-k with min_tokens_to_keep = 2). One prompt per seed;
    the false-failure rate of the bound is 1e-3."""
    model = TableModel(8, 2, 21, scale=1.0)
    N = 4000
    s = Sampler(temperature=0.7, top_k=5)
    r = beam_search(model, [[3]] * N, num_beams=1, max_new_tokens=1, do_sample=True, sampler=s,
                    seed=np.arange(N))
    lp = model.log_probs([3]) / 0.7
    keep = lp >= np.sort(lp)[-5]
    p = np.where(keep, np.exp(lp - lp.max()), 0.0)
    p /= p.sum()
    counts = np.bincount(r.sequences[:, 1], minlength=8)
    assert chi_square_pvalue(counts, p) > 1e-3


def test_beam_sample_draws_without_replacement():
    """nb = 2, one new token: the two hypotheses are the first two draws (without replacement,
    all from beam 0), so {a, b} has probability p_a p_b / (1 - p_a) + p_b p_a / (1 - p_b).
    False-failure rate of the bound: 1e-3."""
    model = TableModel(5, 2, 8, scale=0.8)
    N = 4000
    r = beam_search(model, [[2]] * N, num_beams=2, max_new_tokens=1, num_return_sequences=2,
                    do_sample=True, seed=np.arange(N) + 10**6)
    p = np.exp(model.log_probs([2]))
    pairs = list(itertools.combinations(range(5), 2))
    probs = [p[a] * p[b] / (1 - p[a]) + p[b] * p[a] / (1 - p[b]) for a, b in pairs]
    got = np.sort(r.sequences[:, 1].reshape(N, 2), axis=1)
    counts = [int(((got[:, 0] == a) & (got[:, 1] == b)).sum()) for a, b in pairs]
    assert sum(counts) == N
    assert chi_square_pvalue(counts, probs) > 1e-3
    # the two hypotheses are sorted by score
    sc = r.sequences_scores.reshape(N, 2)
    assert (sc[:, 0] >= sc[:, 1]).all()


def test_beam_sample_is_reproducible_and_batch_invariant():
    model = TableModel(8, 3, 4)
    prompts = [[1, 2], [3], [5, 6, 7]]
    kw = dict(num_beams=3, max_new_tokens=6, do_sample=True, eos_token_id=0, num_return_sequences=2,
              sampler=Sampler(temperature=1.3, top_p=0.9))
    a = beam_search(model, prompts, seed=123, **kw)
    b = beam_search(model, prompts, seed=123, **kw)
    np.testing.assert_array_equal(a.sequences, b.sequences)
    np.testing.assert_array_equal(a.sequences_scores, b.sequences_scores)
    # a prompt's result depends on its seed only, not on the rest of the batch
    c = beam_search(model, prompts[2:], seed=123, **kw)
    assert _new_tokens(a)[4:] == _new_tokens(c)
    np.testing.assert_array_equal(a.sequences_scores[4:], c.sequences_scores)
    # other seeds give other samples
    outs = {tuple(map(tuple, _new_tokens(beam_search(model, prompts, seed=s, **kw)))) for s in range(6)}
    assert len(outs) > 1


# ------------------------------------------------------------------------------------------------
# 6. layouts and small cases


def test_ragged_right_and_left_padding_give_the_same_hypotheses():
    model = TableModel(8, 3, 6)
    prompts = [[1, 2, 3, 4], [5], [6, 7]]
    kw = dict(num_beams=3, max_new_tokens=5, eos_token_id=0, pad_token_id=7, num_return_sequences=2)
    ragged = beam_search(model, prompts, **kw)
    right = np.full((3, 4), 7)
    for b, p in enumerate(prompts):
        right[b, :len(p)] = p
    rp = beam_search(model, right, lengths=[4, 1, 2], **kw)
    left = np.full((3, 4), 7)
    mask = np.zeros((3, 4), np.int64)
    for b, p in enumerate(prompts):
        left[b, 4 - len(p):] = p
        mask[b, 4 - len(p):] = 1
    lp = beam_search(model, left, attention_mask=mask, **kw)
    for r in (rp, lp):
        assert _new_tokens(r) == _new_tokens(ragged)
        np.testing.assert_array_equal(r.sequences_scores, ragged.sequences_scores)
        np.testing.assert_array_equal(r.lengths, ragged.lengths)
    np.testing.assert_array_equal(ragged.sequences, rp.sequences)
    # left padding keeps the caller's layout: prompt columns as given, new tokens after column S
    assert (lp.sequences[:, :4] == np.repeat(left, 2, axis=0)).all()
    np.testing.assert_array_equal(lp.offsets, np.repeat(4 - np.array([4, 1, 2]), 2))
    for i in range(6):
        assert lp.sequence(i).tolist() == ragged.sequence(i).tolist()
        n = int(ragged.num_new_tokens[i])
        assert (lp.sequences[i, 4 + n:] == 7).all()


def test_zero_new_tokens_returns_the_prompts():
    r = beam_search(lambda ids: 1 / 0, [[1, 2], [3]], num_beams=2, max_new_tokens=0, num_return_sequences=2)
    np.testing.assert_array_equal(r.sequences, [[1, 2], [1, 2], [3, 0], [3, 0]])
    np.testing.assert_array_equal(r.lengths, [2, 2, 1, 1])
    np.testing.assert_array_equal(r.sequences_scores, np.zeros(4, np.float32))
    assert r.beam_indices.shape == (4, 0)


def test_finished_items_leave_the_session():
    """An item whose finished set can no longer change costs no more model rows."""
    calls = []
    model = TableModel(6, 2, 1, scale=4.0)
    model.table[:, 0] += 3.0

    def counting(ids):
        calls.append(ids.shape[0])
        return model(ids)

    r = beam_search(counting, [[1], [2, 3], [4]], num_beams=2, max_new_tokens=30, eos_token_id=0,
                    early_stopping=True)
    assert (r.num_new_tokens < 30).all()
    assert len(calls) < 30


# ------------------------------------------------------------------------------------------------
# 7. argument errors


def _model():
    return TableModel(6, 2, 0)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(num_beams=0), ValueError, "num_beams"),
    (dict(num_beams=2.0), TypeError, "num_beams"),
    (dict(num_beams=2, num_return_sequences=3), ValueError, "num_return_sequences"),
    (dict(num_beams=4, num_beam_groups=3, diversity_penalty=1.0), ValueError, "num_beam_groups"),
    (dict(num_beams=4, num_beam_groups=8, diversity_penalty=1.0), ValueError, "num_beam_groups"),
    (dict(num_beams=4, diversity_penalty=1.0), ValueError, "diversity_penalty"),
    (dict(num_beams=4, num_beam_groups=2), ValueError, "diversity_penalty"),
    (dict(num_beams=4, num_beam_groups=2, diversity_penalty=-1.0), ValueError, "diversity_penalty"),
    (dict(num_beams=4, num_beam_groups=2, diversity_penalty=1.0, do_sample=True), ValueError, "do_sample"),
    (dict(num_beams=2, max_new_tokens=-1), ValueError, "max_new_tokens"),
    (dict(num_beams=2, early_stopping="sometimes"), ValueError, "early_stopping"),
    (dict(num_beams=2, length_penalty=float("nan")), ValueError, "length_penalty"),
    (dict(num_beams=2, no_repeat_ngram_size=-1), ValueError, "no_repeat_ngram_size"),
    (dict(num_beams=2, eos_token_id=6), ValueError, "eos_token_id"),
    (dict(num_beams=2, eos_token_id=[0, -1]), ValueError, "eos_token_id"),
    (dict(num_beams=2, pad_token_id=-1), ValueError, "pad_token_id"),
    (dict(num_beams=2, eos_token_id=list(range(6))), ValueError, "vocabulary"),
    (dict(num_beams=2, do_sample=True, sampler=Sampler(temperature=0.0)), ValueError, "temperature"),
    (dict(num_beams=2, sampler="greedy"), TypeError, "sampler"),
    (dict(num_beams=4, num_beam_groups=2, diversity_penalty=1.0, eos_token_id=0, pad_token_id=6),
     ValueError, "pad_token_id"),
])
def test_bad_arguments(kwargs, exc, match):
    kwargs = dict(kwargs)
    kwargs.setdefault("max_new_tokens", 3)
    with pytest.raises(exc, match=match):
        beam_search(_model(), [[1, 2]], **kwargs)


@pytest.mark.parametrize("prompts", [[[1, 2], []], [[]], []])
def test_empty_prompts_are_rejected(prompts):
    with pytest.raises(ValueError, match="input_ids"):
        beam_search(_model(), prompts, num_beams=2, max_new_tokens=3)


def test_sampler_warpers_without_do_sample_warn():
    with pytest.warns(UserWarning, match="do_sample"):
        beam_search(_model(), [[1]], num_beams=2, max_new_tokens=2, sampler=Sampler(temperature=0.5))
