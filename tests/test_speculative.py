"""Speculative decoding: the verification kernel against its NumPy twin, greedy speculative output
equal to greedy generate token for token, the sampled sequence distribution equal to plain
sampling from the target (chi-square against the exact distribution), draft = target accepting
everything in ceil(n / (gamma + 1)) rounds, prompt lookup, adaptive gamma, rollback, and bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import fastdecode as fd
import fastdecode._kernels as K
from fastdecode import _reference as ref
from fastdecode.models import CharModel, NGramModel, char_model
from fastdecode.speculative import PromptLookup, speculative_generate

from conftest import chi_square_pvalue

ACCEPT, NEXT, DRAFT = 0x5350454341, 0x535045434E, 0x5350454344


# -- the kernel ------------------------------------------------------------------------------

def _uniforms(seeds, pos, G):
    ua = np.stack([K.uniform(seeds, pos + i, ACCEPT) for i in range(G)], 1) if G else np.zeros((seeds.size, 0))
    un = np.stack([K.uniform(seeds, pos + i, NEXT) for i in range(G + 1)], 1)
    return ua, un


def _draw_drafts(q, seeds, pos):
    B, G, _ = q.shape
    d = np.zeros((B, G), np.int64)
    for i in range(G):
        d[:, i] = fd.sample(q[:, i], uniforms=K.uniform(seeds, pos + i, DRAFT))
    return d


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("G", [0, 1, 3, 6])
def test_verify_matches_reference(rng, dtype, G):
    B, V = 40, 37
    mism = 0
    for trial in range(6):
        t = (rng.standard_normal((B, G + 1, V)) * rng.uniform(0.5, 4)).astype(dtype)
        t[rng.random(t.shape) < 0.1] = -np.inf
        t[..., 0] = 0.5  # every row keeps a finite value
        q = (t[:, :G].astype(np.float32) + rng.standard_normal((B, G, V)).astype(np.float32) * 0.8).astype(dtype)
        seeds = rng.integers(0, 2**63, B).astype(np.uint64)
        pos = rng.integers(0, 10**6, B)
        d = _draw_drafts(q.astype(np.float32), seeds, pos)
        nd = rng.integers(0, G + 1, B)
        ua, un = _uniforms(seeds, pos, G)
        for draft in (q, None):
            for greedy in (False, True, rng.random(B) < 0.5):
                got = fd.speculative_verify(t, d, draft, num_drafts=nd, greedy=greedy, seed=seeds, position=pos)
                want = ref.speculative_verify(t, d, draft, accept_uniforms=ua, next_uniforms=un,
                                              num_drafts=nd, greedy=greedy)
                mism += int((got.num_accepted != want[0]).sum() + (got.next_token != want[1]).sum())
                assert ((got.num_accepted >= 0) & (got.num_accepted <= nd)).all()
    # float64 twin vs float32-weight kernel: a borderline u vs p/q comparison could differ in the
    # last bit; on these rows none does
    assert mism == 0


def test_verify_greedy_rule_exactly():
    t = np.full((1, 4, 5), -1.0, np.float32)
    t[0, 0, 2] = t[0, 1, 3] = t[0, 2, 1] = t[0, 3, 4] = 1.0
    t[0, 2, 0] = 1.0  # tie: the first maximum (0) wins
    r = fd.speculative_verify(t, [[2, 3, 1]], greedy=True)
    assert r.num_accepted.shape == (1,) and (r.num_accepted[0], r.next_token[0]) == (2, 0)
    r = fd.speculative_verify(t[0], [2, 3, 0], greedy=True)  # one row as 2-D
    assert r.num_accepted.shape == () and (int(r.num_accepted), int(r.next_token)) == (3, 4)
    r = fd.speculative_verify(t, [[2, 3, 0]], greedy=True, num_drafts=1)
    assert (r.num_accepted[0], r.next_token[0]) == (1, 3)


def test_verify_deterministic_draft_of_probability_zero_is_always_rejected():
    t = np.array([[[0.0, 0.0, -np.inf], [0.2, 0.3, 0.5]]], np.float32)
    for s in range(200):
        r = fd.speculative_verify(t, [[2]], seed=s, position=3)
        assert r.num_accepted[0] == 0 and r.next_token[0] in (0, 1)


def test_verify_certain_target_accepts_and_equal_p_q_never_rejects(rng):
    V = 9
    t = rng.standard_normal((64, 3, V)).astype(np.float32)
    seeds = np.arange(64, dtype=np.uint64)
    d = _draw_drafts(t[:, :2], seeds, np.zeros(64, np.int64))
    r = fd.speculative_verify(t, d, t[:, :2], seed=seeds, position=0)  # q == p: u < 1 always
    assert (r.num_accepted == 2).all()


def test_verify_single_step_distribution(rng):
    """One draft position: the next token (accepted draft or residual) is distributed as p."""
    V, N = 7, 60000
    zp = rng.standard_normal(V).astype(np.float32) * 1.5
    zq = rng.standard_normal(V).astype(np.float32) * 1.5
    t = np.broadcast_to(np.stack([zp, zp])[None], (N, 2, V))
    q = np.broadcast_to(zq[None, None], (N, 1, V))
    seeds = np.arange(N, dtype=np.uint64) + 12345
    pos = np.zeros(N, np.int64)
    d = _draw_drafts(np.ascontiguousarray(q), seeds, pos)
    r = fd.speculative_verify(t, d, q, seed=seeds, position=pos)
    first = np.where(r.num_accepted == 1, d[:, 0], r.next_token)
    p = ref.softmax(zp.astype(np.float64))
    assert chi_square_pvalue(np.bincount(first, minlength=V), p) > 1e-4
    # acceptance rate = sum min(p, q)
    qq = ref.softmax(zq.astype(np.float64))
    rate = np.minimum(p, qq).sum()
    assert abs(r.num_accepted.mean() - rate) < 5 * math.sqrt(rate * (1 - rate) / N)


def test_verify_is_batch_invariant_and_thread_invariant(rng):
    B, G, V = 48, 3, 3000
    t = rng.standard_normal((B, G + 1, V)).astype(np.float32)
    q = t[:, :G] + rng.standard_normal((B, G, V)).astype(np.float32)
    seeds = rng.integers(0, 2**63, B).astype(np.uint64)
    pos = rng.integers(0, 1000, B)
    d = _draw_drafts(q, seeds, pos)
    full = fd.speculative_verify(t, d, q, seed=seeds, position=pos)
    for b in (0, 17, 47):
        one = fd.speculative_verify(t[b], d[b], q[b], seed=int(seeds[b]), position=int(pos[b]))
        assert (int(one.num_accepted), int(one.next_token)) == (full.num_accepted[b], full.next_token[b])
    perm = rng.permutation(B)
    rev = fd.speculative_verify(t[perm], d[perm], q[perm], seed=seeds[perm], position=pos[perm])
    assert (rev.num_accepted == full.num_accepted[perm]).all() and (rev.next_token == full.next_token[perm]).all()
    old = fd.get_num_threads()
    try:
        for n in (1, 2, 4):
            fd.set_num_threads(n)
            big = np.repeat(t, 30, axis=0)  # enough logits to split across threads
            r = fd.speculative_verify(big, np.repeat(d, 30, 0), np.repeat(q, 30, 0),
                                      seed=np.repeat(seeds, 30), position=np.repeat(pos, 30))
            assert (r.num_accepted == np.repeat(full.num_accepted, 30)).all()
            assert (r.next_token == np.repeat(full.next_token, 30)).all()
    finally:
        fd.set_num_threads(old)


def test_verify_torch_and_bfloat16(rng):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    B, G, V = 5, 2, 20
    t = torch.randn(B, G + 1, V)
    d = torch.randint(0, V, (B, G))
    a = fd.speculative_verify(t, d, greedy=True)
    assert isinstance(a.num_accepted, torch.Tensor)
    b = fd.speculative_verify(t.numpy(), d.numpy(), greedy=True)
    assert (a.num_accepted.numpy() == b.num_accepted).all() and (a.next_token.numpy() == b.next_token).all()
    tb = t.to(torch.bfloat16)
    c = fd.speculative_verify(tb, d, greedy=True)
    e = fd.speculative_verify(tb.float().numpy(), d.numpy(), greedy=True)
    assert (c.num_accepted.numpy() == e.num_accepted).all() and (c.next_token.numpy() == e.next_token).all()


def test_verify_bad_input():
    t = np.zeros((2, 3, 5), np.float32)
    d = np.zeros((2, 2), np.int64)
    with pytest.raises(ValueError, match="draft_tokens must have shape"):
        fd.speculative_verify(t, np.zeros((2, 3), np.int64), greedy=True)
    with pytest.raises(ValueError, match=r"draft_tokens\[1, 0\] is outside"):
        fd.speculative_verify(t, [[0, 1], [5, 0]], greedy=True)
    with pytest.raises(ValueError, match="draft_logits must have shape"):
        fd.speculative_verify(t, d, np.zeros((2, 2, 6), np.float32), seed=0)
    with pytest.raises(ValueError, match="num_drafts"):
        fd.speculative_verify(t, d, num_drafts=3, greedy=True)
    bad = t.copy()
    bad[1, 0, 2] = np.nan
    with pytest.raises(ValueError, match=r"target_logits\[1, 0\] contains NaN"):
        fd.speculative_verify(bad, d, seed=0)
    bad = t.copy()
    bad[0, 0] = -np.inf
    with pytest.raises(ValueError, match=r"target_logits\[0, 0\] has no finite value"):
        fd.speculative_verify(bad, d, seed=0)
    q = np.zeros((2, 2, 5), np.float32)
    q[0, 0, 1] = -np.inf
    with pytest.raises(ValueError, match=r"draft_tokens\[0, 0\] has probability 0 under draft_logits\[0, 0\]"):
        fd.speculative_verify(t, [[1, 0], [0, 0]], q, seed=0)
    with pytest.raises(TypeError, match="draft_tokens must be integer"):
        fd.speculative_verify(t, d.astype(np.float32), greedy=True)
    with pytest.raises(ValueError, match="target_logits must be 3-D"):
        fd.speculative_verify(np.zeros(5, np.float32), [], greedy=True)
    with pytest.raises(TypeError, match="target_logits must be float32"):
        fd.speculative_verify(t.astype(np.int32), d, greedy=True)


# -- the loop: greedy equals greedy generate ------------------------------------------------------

def _pairs():
    cm5 = char_model()
    return {
        "ngram": (NGramModel(50, order=3, seed=1), NGramModel(50, order=3, seed=1, temperature=1.7)),
        "ngram-unrelated": (NGramModel(40, order=2, seed=2), NGramModel(40, order=3, seed=9)),
        "char": (cm5, CharModel(order=3)),
    }


def _prompts(m, name):
    if name == "char":
        return [m.encode(s) for s in ("Alice was ", "The Rabbit", "and she said ", "Down")]
    rng = np.random.default_rng(3)
    return [list(rng.integers(0, m.vocab_size, n)) for n in (1, 4, 2, 7)]


@pytest.mark.parametrize("name", ["ngram", "ngram-unrelated", "char"])
@pytest.mark.parametrize("gamma", [1, 3, 6])
def test_greedy_equals_greedy_generate(name, gamma):
    tgt, drf = _pairs()[name]
    prompts = _prompts(tgt, name)
    want = fd.generate(tgt, prompts, max_new_tokens=40)
    for bs in (1, len(prompts)):
        for lo in range(0, len(prompts), bs):
            ps = prompts[lo:lo + bs]
            w = fd.generate(tgt, ps, max_new_tokens=40)
            for d in (drf, "prompt_lookup", tgt):
                r = speculative_generate(tgt, d, ps, max_new_tokens=40, num_draft_tokens=gamma)
                assert (r.sequences == w.sequences).all(), (name, gamma, bs, d)
                assert r.finish_reasons == w.finish_reasons
    r = speculative_generate(tgt, drf, prompts, max_new_tokens=40, num_draft_tokens=gamma, adaptive=True)
    assert (r.sequences == want.sequences).all()


def test_greedy_with_eos_stop_min_new_and_callable_models():
    tgt = NGramModel(30, order=2, seed=5, eos_token_id=3, eos_bias=2.0)
    drf = NGramModel(30, order=2, seed=5, temperature=2.0, eos_token_id=3, eos_bias=2.0)
    prompts = [[1, 2], [4], [7, 8, 9, 10]]
    for kw in (dict(eos_token_id=3), dict(eos_token_id=3, min_new_tokens=5), dict(eos_token_id=[3, 11]),
               dict(stop=[[12, 13]], eos_token_id=3), dict(stop=[14])):
        want = fd.generate(tgt, prompts, max_new_tokens=30, **kw)
        for d in (drf, "prompt_lookup", tgt, lambda ids: drf(ids)):
            for gamma in (2, 5):
                r = speculative_generate(tgt, d, prompts, max_new_tokens=30, num_draft_tokens=gamma, **kw)
                assert (r.sequences == want.sequences).all(), kw
                assert r.finish_reasons == want.finish_reasons and r.stop_reasons == want.stop_reasons
                assert (r.lengths == want.lengths).all()
    # the target as a plain callable (recomputing session)
    want = fd.generate(tgt, prompts, max_new_tokens=12)
    r = speculative_generate(lambda ids: tgt(ids), drf, prompts, max_new_tokens=12, num_draft_tokens=3)
    assert (r.sequences == want.sequences).all()


def test_greedy_layouts_and_temperature_zero_sampler():
    tgt, drf = _pairs()["ngram"]
    ids = np.array([[0, 0, 5, 6, 7], [0, 8, 9, 10, 11], [1, 2, 3, 4, 5]])
    mask = (np.arange(5)[None] >= np.array([2, 1, 0])[:, None]).astype(np.int64)
    want = fd.generate(tgt, ids, attention_mask=mask, max_new_tokens=20)
    r = speculative_generate(tgt, drf, ids, attention_mask=mask, max_new_tokens=20, num_draft_tokens=3)
    assert (r.sequences == want.sequences).all() and (r.offsets == want.offsets).all()
    want = fd.generate(tgt, ids, lengths=[3, 5, 2], max_new_tokens=20)
    r = speculative_generate(tgt, drf, ids, lengths=[3, 5, 2], max_new_tokens=20, num_draft_tokens=3)
    assert (r.sequences == want.sequences).all()
    # temperature 0 with penalties: greedy over the penalised logits, as generate
    s = fd.Sampler(temperature=0.0, repetition_penalty=1.5, no_repeat_ngram_size=2)
    want = fd.generate(tgt, ids, sampler=s, max_new_tokens=25)
    r = speculative_generate(tgt, drf, ids, sampler=s, max_new_tokens=25, num_draft_tokens=4)
    assert (r.sequences == want.sequences).all()


def test_draft_equal_to_target_accepts_everything():
    tgt = NGramModel(50, order=3, seed=4)
    prompts = [[1, 2, 3], [4, 5], [6]]
    for gamma in (1, 2, 3, 5):
        for n in (1, 2, 7, 12, 30):
            r = speculative_generate(tgt, tgt, prompts, max_new_tokens=n, num_draft_tokens=gamma)
            st = r.stats
            assert (st.accepted == st.drafted).all() and st.acceptance_rate in (1.0,) or n == 1
            assert st.steps == math.ceil(n / (gamma + 1)), (gamma, n, st)
            # one target call per round, plus the prefill (the first round verifies against it)
            assert st.target_calls == 1 + st.steps - (1 if n == 1 else 0)
            assert (r.num_new_tokens == n).all()
    # sampling too: q == p, so u < p/q = 1 always
    s = fd.Sampler(temperature=0.7, top_k=10)
    r = speculative_generate(tgt, tgt, prompts, sampler=s, seed=[1, 2, 3], max_new_tokens=20, num_draft_tokens=4)
    assert r.stats.acceptance_rate == 1.0 and r.stats.steps == 4


def test_prompt_lookup_rule_and_stats():
    pl = PromptLookup(max_ngram_size=2)
    h = np.array([5, 6, 7, 8, 9, 5, 6, 1, 2, 5, 6])
    # suffix (5, 6): earliest occurrence at 0, continuation 7, 8, 9
    assert list(pl.propose([h], 3)[0]) == [7, 8, 9]
    assert list(pl.propose([h], 20)[0]) == [7, 8, 9, 5, 6, 1, 2, 5, 6]
    # no bigram match -> the unigram 4 is not found either -> nothing
    assert pl.propose([np.array([1, 2, 3, 4])], 3)[0].size == 0
    # unigram fallback
    assert list(pl.propose([np.array([3, 1, 2, 3])], 2)[0]) == [1, 2]
    assert list(PromptLookup(3, 3).propose([np.array([1, 2, 3, 9, 1, 2, 3])], 2)[0]) == [9, 1]
    m = char_model()
    text = "Alice was beginning to get very tired of sitting by her sister on the bank"
    p = [m.encode(text)]
    want = fd.generate(m, p, max_new_tokens=120)
    r = speculative_generate(m, PromptLookup(3), p, max_new_tokens=120, num_draft_tokens=6)
    assert (r.sequences == want.sequences).all()
    # greedy output repeats itself, so lookup drafts are often right
    assert r.stats.acceptance_rate > 0.3 and r.stats.target_calls < 80
    assert r.stats.draft_calls == 0


def test_adaptive_gamma_schedule():
    tgt = NGramModel(50, order=3, seed=4)
    r = speculative_generate(tgt, tgt, [[1, 2]], max_new_tokens=60, num_draft_tokens=2, adaptive=True,
                             max_draft_tokens=9)
    tr = [int(x[0]) for x in r.stats.num_draft_tokens]
    # all accepted: +2 each round up to the cap (then clipped by the tokens left)
    assert tr[:5] == [2, 4, 6, 8, 9]
    drf = NGramModel(50, order=2, seed=99)  # unrelated: nearly everything rejected
    r = speculative_generate(tgt, drf, [[1, 2]], max_new_tokens=30, num_draft_tokens=4, adaptive=True)
    tr = [int(x[0]) for x in r.stats.num_draft_tokens]
    assert tr[0] == 4 and min(tr[:-2]) >= 1 and tr[3] <= 2


class _CountingDrafter:
    def __init__(self, out):
        self.out = out

    def propose(self, histories, num_tokens):
        return self.out(histories, num_tokens)


def test_custom_drafter_and_bad_drafts():
    tgt = NGramModel(20, order=2, seed=0)
    want = fd.generate(tgt, [[1], [2]], max_new_tokens=10)
    r = speculative_generate(tgt, _CountingDrafter(lambda h, n: [[1] * n for _ in h]), [[1], [2]],
                             max_new_tokens=10, num_draft_tokens=3)
    assert (r.sequences == want.sequences).all()
    for bad, msg in [(lambda h, n: [[1]], "returned 1 rows for 2"),
                     (lambda h, n: [[1] * (n + 1)] * 2, "tokens for num_tokens"),
                     (lambda h, n: [[25], []], "outside"),
                     (lambda h, n: [[[1]], []], "1-D sequence"),
                     (lambda h, n: 7, "one sequence of token ids per row")]:
        with pytest.raises(ValueError, match=msg):
            speculative_generate(tgt, _CountingDrafter(bad), [[1], [2]], max_new_tokens=10)


def test_bad_arguments():
    tgt = NGramModel(20, order=2, seed=0)
    with pytest.raises(ValueError, match="num_draft_tokens must be >= 1"):
        speculative_generate(tgt, tgt, [[1]], max_new_tokens=5, num_draft_tokens=0)
    with pytest.raises(ValueError, match="vocabulary mismatch"):
        speculative_generate(tgt, NGramModel(21, order=2), [[1]], max_new_tokens=5)

    class Other:  # a stateful draft without a declared vocabulary: caught at session start
        def start_session(self, prompts):
            m = NGramModel(25, order=2)
            return m.start_session(prompts)

    with pytest.raises(ValueError, match="vocabulary mismatch: the target has 20 tokens, the draft 25"):
        speculative_generate(tgt, Other(), [[1]], max_new_tokens=5)
    with pytest.raises(ValueError, match="draft must be"):
        speculative_generate(tgt, "lookup", [[1]], max_new_tokens=5)
    with pytest.raises(TypeError, match="draft must be a model"):
        speculative_generate(tgt, 3, [[1]], max_new_tokens=5)
    with pytest.raises(ValueError, match="stop strings"):
        speculative_generate(tgt, tgt, [[1]], max_new_tokens=5, stop=["ab"])
    with pytest.raises(ValueError, match="max_draft_tokens"):
        speculative_generate(tgt, tgt, [[1]], max_new_tokens=5, num_draft_tokens=4, max_draft_tokens=2)
    with pytest.raises(TypeError, match="sampler"):
        speculative_generate(tgt, tgt, [[1]], max_new_tokens=5, sampler={"temperature": 1})
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        speculative_generate(tgt, tgt, [[1]], max_new_tokens=5, eos_token_id=20)

    def wrong_shape(ids):
        return np.zeros((ids.shape[0], ids.shape[1], 19), np.float32)

    with pytest.raises(ValueError, match="vocabulary mismatch|19"):
        speculative_generate(tgt, wrong_shape, [[1]], max_new_tokens=5)


def test_model_error_mid_way_has_partial_result():
    tgt = NGramModel(20, order=2, seed=0)
    calls = [0]

    def flaky(ids):
        calls[0] += 1
        if calls[0] > 4:
            raise RuntimeError("boom")
        return tgt(ids)

    with pytest.raises(RuntimeError, match="boom") as ei:
        speculative_generate(tgt, flaky, [[1, 2]], max_new_tokens=30, num_draft_tokens=2)
    pr = ei.value.partial_result
    assert pr.finish_reasons == [None] and pr.num_new_tokens[0] >= 1
    want = fd.generate(tgt, [[1, 2]], max_new_tokens=30)
    n = int(pr.lengths[0])
    assert (pr.sequences[0, :n] == want.sequences[0, :n]).all()


# -- the loop: sampling is exact --------------------------------------------------------------

def _exact_prefix_dist(model, prompt, sampler, n, V):
    """P(first n new tokens) under plain sampling from `model` with `sampler` (float64)."""
    probs = np.zeros((V,) * n)
    for seq in itertools.product(range(V), repeat=n):
        p = 1.0
        h = list(prompt)
        for t in seq:
            x = model(np.array([h]))[:, -1]
            fl = sampler.final_logits(x, np.array([h]), lengths=[len(h)], prompt_lengths=[len(prompt)])
            pr = ref.softmax(fl[0].astype(np.float64))
            p *= pr[t]
            if p == 0:
                break
            h.append(t)
        probs[seq] = p
    return probs.ravel()


@pytest.mark.parametrize("setting", ["topk", "topp-penalty", "minp-llama"])
def test_sampled_sequences_follow_the_target(setting):
    V, N, n = 6, 24000, 3
    tgt = NGramModel(V, order=2, seed=11, scale=1.5)
    drf = NGramModel(V, order=2, seed=11, scale=1.5, temperature=2.5)  # related, often rejected
    s = {"topk": fd.Sampler(temperature=0.9, top_k=4),
         "topp-penalty": fd.Sampler(top_p=0.85, repetition_penalty=1.4, temperature=1.2),
         "minp-llama": fd.Sampler(min_p=0.1, temperature=0.8, order="llama.cpp")}[setting]
    prompt = [2, 5]
    exact = _exact_prefix_dist(tgt, prompt, s, n, V)
    r = speculative_generate(tgt, drf, [prompt] * N, sampler=s, seed=np.arange(N) + 7, max_new_tokens=n,
                             num_draft_tokens=2)
    assert 0.2 < r.stats.acceptance_rate < 0.95  # both branches exercised
    new = r.sequences[:, len(prompt):len(prompt) + n]
    idx = np.ravel_multi_index(new.T, (V,) * n)
    pv = chi_square_pvalue(np.bincount(idx, minlength=V ** n), exact)
    # false-failure rate 1e-4 per setting under the null
    assert pv > 1e-4, (setting, pv)
    # the same with a deterministic drafter (q one-hot) and adaptive gamma
    r = speculative_generate(tgt, "prompt_lookup", [prompt] * N, sampler=s, seed=np.arange(N) + 99,
                             max_new_tokens=n, num_draft_tokens=2, adaptive=True)
    idx = np.ravel_multi_index(r.sequences[:, len(prompt):len(prompt) + n].T, (V,) * n)
    assert chi_square_pvalue(np.bincount(idx, minlength=V ** n), exact) > 1e-4


def test_sampling_is_reproducible_and_batch_invariant():
    tgt, drf = _pairs()["char"]
    prompts = _prompts(tgt, "char")
    s = fd.Sampler(temperature=0.8, top_p=0.95, presence_penalty=0.3)
    seeds = [10, 20, 30, 40]
    a = speculative_generate(tgt, drf, prompts, sampler=s, seed=seeds, max_new_tokens=40, num_draft_tokens=3)
    b = speculative_generate(tgt, drf, prompts, sampler=s, seed=seeds, max_new_tokens=40, num_draft_tokens=3)
    assert (a.sequences == b.sequences).all()
    for i in (0, 2, 3):
        solo = speculative_generate(tgt, drf, [prompts[i]], sampler=s, seed=seeds[i], max_new_tokens=40,
                                    num_draft_tokens=3)
        assert (solo.sequence(0) == a.sequence(i)).all()
    # per-row sampler parameters follow their rows
    s2 = fd.Sampler(temperature=[0.0, 0.8, 0.0, 1.0], top_k=[0, 5, 0, 0])
    c = speculative_generate(tgt, drf, prompts, sampler=s2, seed=seeds, max_new_tokens=30, num_draft_tokens=3)
    g = fd.generate(tgt, prompts, max_new_tokens=30)
    for i in (0, 2):  # temperature 0: greedy
        assert (c.sequence(i) == g.sequence(i)).all()


def test_hf_model_rollback_across_steps():
    """A draft with a real session (CharModel's) is rolled back per row over many rounds and
    prompts of one token (the truncation never goes below one token)."""
    tgt, drf = _pairs()["char"]
    prompts = [tgt.encode("A"), tgt.encode("Th"), tgt.encode("Alice")]
    want = fd.generate(tgt, prompts, max_new_tokens=50)
    for gamma in (1, 2, 4):
        r = speculative_generate(tgt, drf, prompts, max_new_tokens=50, num_draft_tokens=gamma, adaptive=True)
        assert (r.sequences == want.sequences).all()
