"""The fused sampler: exact distribution (chi-square), exact inverse-CDF pick with explicit
uniforms, counter-based reproducibility and batch invariance, greedy, logprobs, and Sampler.

Statistical tests use fixed seeds, so they are deterministic; the stated false-failure rate is
the probability that a correct sampler fails the bound for a random choice of seeds.
"""

import threading

import numpy as np
import pytest

import fastdecode as fd
from fastdecode import _reference as ref

from conftest import assert_bits_equal, chi_square_pvalue, make_rows, needs_torch, torch

P_MIN = 1e-4  # chi-square p-value bound: false-failure rate 1e-4 per check for a correct sampler

MIXES = {
    "plain_T0.8": dict(temperature=0.8),
    "top_k5": dict(top_k=5),
    "top_p0.9_T0.7": dict(top_p=0.9, temperature=0.7),
    "min_p0.1_typical0.9": dict(min_p=0.1, typical_p=0.9),
    "llama_order": dict(top_k=12, top_p=0.8, min_p=0.05, temperature=1.5, order="llama.cpp"),
    "hf_order_same_params": dict(top_k=12, top_p=0.8, min_p=0.05, temperature=1.5),
    "eps_eta_sigma": dict(epsilon_cutoff=0.01, eta_cutoff=0.02, top_n_sigma=1.5,
                          temperature=1.2),
}


def _row(seed, V):
    return np.random.default_rng(seed).normal(0.0, 1.5, V).astype(np.float32)


@pytest.mark.parametrize("mix", sorted(MIXES))
def test_chi_square_against_exact_distribution(mix):
    """50,000 draws of one row (V = 24): 25,000 seeds at a fixed position and 25,000 positions
    of a fixed seed. Both halves and their union must fit the float64 filtered distribution
    (three checks: false-failure rate <= 3e-4 for a correct sampler)."""
    params = MIXES[mix]
    V, N = 24, 50_000
    x = _row(sum(map(ord, mix)), V)
    probs = ref.sample_distribution(x, **params)
    assert (probs > 0).sum() >= 3  # a non-trivial distribution
    X = np.tile(x, (N // 2, 1))
    a = fd.sample(X, seed=np.arange(N // 2, dtype=np.uint64) + 1000, position=17, **params)
    b = fd.sample(X, seed=987654321, position=np.arange(N // 2) * 3 + 1, **params)
    assert a.dtype == np.int64 and a.shape == (N // 2,)
    ca, cb = np.bincount(a, minlength=V), np.bincount(b, minlength=V)
    for counts in (ca, cb, ca + cb):
        pv = chi_square_pvalue(counts, probs)  # also: no removed token was ever drawn
        assert pv > P_MIN, (mix, pv, counts.tolist(), np.round(probs * counts.sum()).tolist())


def test_orders_give_different_distributions():
    """The llama.cpp order applies temperature last, so its filters see the raw logits: on this
    row the two orders keep different sets (the chi-square mixes above pin each one)."""
    x = _row(sum(map(ord, "llama_order")), 24)
    p_hf = ref.sample_distribution(x, **MIXES["hf_order_same_params"])
    p_ll = ref.sample_distribution(x, **MIXES["llama_order"])
    assert not np.allclose(p_hf, p_ll, atol=1e-3)


# ------------------------------------------------------------------------------------------------
# exact pick with explicit uniforms


def _perturbed(params, more, tol=2e-5):
    q = dict(params)
    s = 1 if more else -1

    def rel(v, sign):
        return np.clip(np.asarray(v, float) * (1 + sign * 10 * tol), 0.0, 1.0 - 1e-12)

    if "top_p" in q:
        q["top_p"] = np.where(np.asarray(q["top_p"]) < 1,
                              np.clip(np.asarray(q["top_p"]) + s * tol, 0, 1), 1.0)
    if "typical_p" in q:
        q["typical_p"] = np.where(np.asarray(q["typical_p"]) < 1,
                                  np.clip(np.asarray(q["typical_p"]) + s * tol, 0, 1), 1.0)
    for k in ("min_p", "epsilon_cutoff", "eta_cutoff"):
        if k in q:
            q[k] = rel(q[k], -s)
    if "top_n_sigma" in q:
        q["top_n_sigma"] = np.asarray(q["top_n_sigma"], float) * (1 + s * 10 * tol)
    return q


def _random_params(rng, B):
    return dict(
        temperature=rng.choice([0.0, 0.5, 0.8, 1.0, 1.7], B),
        top_k=rng.choice([0, 0, 1, 5, 40], B),
        top_p=rng.choice([1.0, 1.0, 0.95, 0.8, 0.5], B),
        min_p=rng.choice([0.0, 0.0, 0.02, 0.1], B),
        typical_p=rng.choice([1.0, 1.0, 0.9, 0.5], B),
        epsilon_cutoff=rng.choice([0.0, 0.0, 1e-3], B),
        eta_cutoff=rng.choice([0.0, 0.0, 1e-3], B),
        top_n_sigma=rng.choice([0.0, 0.0, 1.0, 2.5], B),
    )


@pytest.mark.parametrize("order", ["hf", "llama.cpp"])
@pytest.mark.parametrize("dtype", ["float32", "float16", "float64"])
def test_pick_with_uniforms_matches_reference(order, dtype, rng):
    """Inverse CDF over the survivors in ascending id order, per-row parameters, both orders.
    Rows where a threshold or the uniform sits within float32 rounding of a boundary may differ
    from the float64 reference: they must then match the reference at slightly perturbed
    parameters, and there may be at most 1% of them."""
    B, V = 600, 300
    kinds = ("normal", "ties", "neginf", "peaked", "zipf", "flat")
    x = np.concatenate([make_rows(rng, kinds[i % 6], B // 6, V) for i in range(6)]).astype(dtype)
    params = _random_params(rng, B)
    u = rng.random(B)
    got, lp = fd.sample(x, uniforms=u, order=order, return_logprobs=True, **params)
    exp, elp = ref.sample(x, uniform=u, order=order, return_logprobs=True, **params)
    bad = np.nonzero(got != exp)[0]
    borderline = 0
    for r in bad:
        prm_r = {k: v[r] for k, v in params.items()}
        alts = {int(ref.sample(x[r], uniform=u[r], order=order, **_perturbed(prm_r, m)))
                for m in (False, True)}
        probs = ref.sample_distribution(x[r], order=order, **prm_r)
        cdf = np.cumsum(probs)
        near_u = np.min(np.abs(cdf - u[r])) < 1e-5
        assert got[r] in alts or near_u, (r, prm_r, u[r], got[r], exp[r])
        borderline += 1
    assert borderline <= 2 + B // 100, borderline
    ok = got == exp
    np.testing.assert_allclose(lp[ok], elp[ok], rtol=1e-5, atol=2e-6)


def test_uniform_extremes_pick_first_and_last_survivor():
    x = np.array([[0.0, -np.inf, 1.0, 2.0, -np.inf, 0.5]], dtype=np.float32)
    assert int(fd.sample(x, uniforms=[0.0])[0]) == 0
    assert int(fd.sample(x, uniforms=[np.nextafter(1.0, 0.0)])[0]) == 5
    assert int(fd.sample(x, uniforms=[np.nextafter(1.0, 0.0)], top_k=2)[0]) == 3
    assert int(fd.sample(x, uniforms=[0.0], top_k=2)[0]) == 2


# ------------------------------------------------------------------------------------------------
# counter-based randomness


def test_reproducible_and_batch_invariant(rng):
    B, V = 257, 1000
    x = np.concatenate([make_rows(rng, k, B // 4 + 1, V) for k in ("normal", "ties", "zipf",
                                                                    "neginf")])[:B]
    seeds = rng.integers(0, 2**63, B, dtype=np.uint64)
    pos = rng.integers(0, 10**6, B)
    kw = dict(temperature=0.9, top_k=50, top_p=0.95)
    t1 = fd.sample(x, seed=seeds, position=pos, **kw)
    t2 = fd.sample(x, seed=seeds, position=pos, **kw)
    np.testing.assert_array_equal(t1, t2)
    perm = rng.permutation(B)
    np.testing.assert_array_equal(fd.sample(x[perm], seed=seeds[perm], position=pos[perm], **kw),
                                  t1[perm])
    np.testing.assert_array_equal(fd.sample(x[:37], seed=seeds[:37], position=pos[:37], **kw),
                                  t1[:37])
    for i in range(0, B, 16):
        assert int(fd.sample(x[i:i + 1], seed=seeds[i:i + 1], position=pos[i:i + 1], **kw)[0]) \
            == t1[i]
        one = fd.sample(x[i], seed=int(seeds[i]), position=int(pos[i]), **kw)
        assert one.shape == () and int(one) == t1[i]
    # per-row parameters: the same as calling each row with its own scalars
    params = _random_params(rng, B)
    tb = fd.sample(x, seed=seeds, position=pos, **params)
    for i in range(0, B, 23):
        prm_i = {k: v[i].item() for k, v in params.items()}
        assert int(fd.sample(x[i], seed=int(seeds[i]), position=int(pos[i]), **prm_i)) == tb[i]


def test_threads_give_sequential_results(rng):
    """Large batches release the GIL; concurrent calls must equal sequential ones."""
    B, V = 64, 4096
    assert B * V >= fd.GIL_MINSIZE
    xs = [make_rows(rng, "normal", B, V) for _ in range(4)]
    seeds = np.arange(B, dtype=np.uint64)
    expect = [fd.sample(x, seed=seeds, position=5, top_p=0.9) for x in xs]
    results = [None] * 4

    def work(i):
        for _ in range(10):
            results[i] = fd.sample(xs[i], seed=seeds, position=5, top_p=0.9)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e, r in zip(expect, results):
        np.testing.assert_array_equal(e, r)


def test_position_and_seed_change_the_draw():
    """Uniform row over V = 1000: two draws coincide with probability 1e-3, so among 200
    consecutive positions (or seeds) the number of equal neighbours is ~Poisson(0.2);
    P(more than 4) < 1e-5 (the false-failure rate of each check)."""
    x = np.zeros(1000, dtype=np.float32)
    X = np.tile(x, (201, 1))
    by_pos = fd.sample(X, seed=42, position=np.arange(201))
    by_seed = fd.sample(X, seed=np.arange(201, dtype=np.uint64), position=9)
    for t in (by_pos, by_seed):
        assert np.sum(t[1:] == t[:-1]) <= 4
        assert len(np.unique(t)) > 150
    # a scalar seed is shared by every row: equal rows at equal positions draw equal tokens
    same = fd.sample(np.tile(x, (8, 1)), seed=7, position=3)
    assert len(np.unique(same)) == 1


def test_seed_none_draws_fresh_entropy():
    """64 uniform rows over V = 1000: two seed=None calls agree on a row with probability 1e-3;
    more than 5 agreeing rows has probability < 1e-9."""
    X = np.zeros((64, 1000), dtype=np.float32)
    a, b = fd.sample(X), fd.sample(X)
    assert np.sum(a == b) <= 5
    assert len(np.unique(a)) > 40  # rows get distinct seeds


# ------------------------------------------------------------------------------------------------
# greedy and logprobs


def test_temperature_zero_is_argmax(rng):
    x = np.concatenate([make_rows(rng, k, 50, 513) for k in ("ties", "normal", "neginf",
                                                             "flat")])
    x[0, :] = 1.0  # all tied: first id
    np.testing.assert_array_equal(
        fd.sample(x, temperature=0.0, seed=np.arange(200, dtype=np.uint64)), fd.argmax(x))
    # greedy ignores every other filter (vLLM / llama.cpp convention: the raw argmax)
    np.testing.assert_array_equal(
        fd.sample(x, temperature=0.0, top_k=3, top_p=0.1, min_p=0.9, typical_p=0.2, seed=1),
        np.argmax(x, axis=1))
    t = np.where(np.arange(200) % 2 == 0, 0.0, 1.0)
    got = fd.sample(x, temperature=t, seed=np.arange(200, dtype=np.uint64), position=4)
    np.testing.assert_array_equal(got[::2], np.argmax(x[::2], axis=1))
    tok, lp = fd.sample(x, temperature=0.0, seed=1, return_logprobs=True)
    np.testing.assert_array_equal(lp, np.zeros(200))


@pytest.mark.parametrize("order", ["hf", "llama.cpp"])
def test_logprobs_are_log_of_filtered_distribution(order, rng):
    B, V = 300, 400
    x = np.concatenate([make_rows(rng, k, B // 3, V) for k in ("normal", "zipf", "ties")])
    params = dict(temperature=np.linspace(0.3, 2.0, B), top_k=40, top_p=0.9, min_p=0.02)
    tok, lp = fd.sample(x, seed=np.arange(B, dtype=np.uint64), position=11, order=order,
                        return_logprobs=True, **params)
    assert lp.dtype == np.float64 and lp.shape == (B,)
    probs = ref.sample_distribution(x, order=order, **params)
    assert np.all(probs[np.arange(B), tok] > 0)
    np.testing.assert_allclose(lp, np.log(probs[np.arange(B), tok]), rtol=1e-5, atol=1e-5)
    tok1, lp1 = fd.sample(x[5], seed=5, position=11, order=order, return_logprobs=True,
                          **{k: (v[5] if np.ndim(v) else v) for k, v in params.items()})
    assert tok1.shape == () and lp1.shape == ()
    assert int(tok1) == tok[5] and float(lp1) == lp[5]


@needs_torch
@pytest.mark.parametrize("tdtype", ["float32", "float16", "bfloat16"])
def test_torch_input(tdtype, rng):
    x = make_rows(rng, "normal", 40, 300)
    t = torch.from_numpy(x).to(getattr(torch, tdtype))
    seeds = np.arange(40, dtype=np.uint64)
    got = fd.sample(t, seed=seeds, position=2, top_p=0.9)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.int64 and got.shape == (40,)
    same = fd.sample(t.float().numpy(), seed=seeds, position=2, top_p=0.9)
    np.testing.assert_array_equal(got.numpy(), same)


# ------------------------------------------------------------------------------------------------
# Sampler


SAMPLER_CONFIGS = [
    dict(temperature=0.8, top_k=20, repetition_penalty=1.3),
    dict(top_p=0.9, presence_penalty=0.5, frequency_penalty=0.25, no_repeat_ngram_size=2),
    dict(min_p=0.05, logit_bias={3: 2.5, 7: -1.0}, suppress_tokens=[0, 1],
         bad_words_ids=[[4], [2, 5]]),
    dict(temperature=1.3, typical_p=0.9, repetition_penalty=0.9, presence_penalty=-0.3,
         no_repeat_ngram_size=3, bad_words_ids=[[1, 2, 3]], order="llama.cpp"),
]


def _functional(cfg, x, ids, prompt_lengths, lengths):
    """What Sampler documents: the penalties one by one on a float32 copy, in its order."""
    z = x.astype(np.float32)
    rp = cfg.get("repetition_penalty", 1.0)
    if rp != 1.0:
        z = fd.repetition_penalty(z, ids, rp, lengths=lengths)
    pres, freq = cfg.get("presence_penalty", 0.0), cfg.get("frequency_penalty", 0.0)
    if pres or freq:
        z = fd.presence_frequency_penalty(z, ids, presence=pres, frequency=freq, lengths=lengths,
                                          prompt_lengths=prompt_lengths)
    if cfg.get("no_repeat_ngram_size"):
        z = fd.no_repeat_ngram(z, ids, cfg["no_repeat_ngram_size"], lengths=lengths)
    if cfg.get("bad_words_ids"):
        z = fd.bad_words(z, ids, cfg["bad_words_ids"], lengths=lengths)
    if cfg.get("logit_bias"):
        z = fd.logit_bias(z, cfg["logit_bias"])
    if cfg.get("suppress_tokens"):
        z = fd.suppress_tokens(z, cfg["suppress_tokens"])
    return z


_SAMPLE_KEYS = ("temperature", "top_k", "top_p", "min_p", "typical_p", "epsilon_cutoff",
                "eta_cutoff", "top_n_sigma", "order")


@pytest.mark.parametrize("ci", range(len(SAMPLER_CONFIGS)))
def test_sampler_equals_functional_chain(ci, rng):
    cfg = SAMPLER_CONFIGS[ci]
    B, V, T = 64, 50, 20
    x = make_rows(rng, "normal", B, V)
    ids = rng.integers(0, 8, (B, T)).astype(np.int64)
    lengths = rng.integers(3, T + 1, B)
    prompt_lengths = rng.integers(0, 3, B)
    seeds = rng.integers(0, 2**32, B).astype(np.uint64)
    s = fd.Sampler(seed=seeds, **cfg)
    z = _functional(cfg, x, ids, prompt_lengths, lengths)
    # the penalised logits equal the reference twin's
    zr = ref.Sampler(**cfg).penalized(x, ids, prompt_lengths=prompt_lengths, lengths=lengths)
    assert_bits_equal(z, zr, "functional chain vs reference")
    assert_bits_equal(s.process(x, ids, prompt_lengths=prompt_lengths, lengths=lengths), z,
                      "Sampler.process")
    kw = {k: cfg[k] for k in _SAMPLE_KEYS if k in cfg}
    for position in (0, 7, np.arange(B)):
        got = s(x, ids, position, prompt_lengths=prompt_lengths, lengths=lengths)
        exp = fd.sample(z, seed=seeds, position=position, **kw)
        np.testing.assert_array_equal(got, exp)
    # banned tokens are never drawn, over many positions
    draws = np.stack([s(x, ids, p, prompt_lengths=prompt_lengths, lengths=lengths)
                      for p in range(30)])
    assert np.all(np.isfinite(z[np.arange(B)[None, :], draws]))


def test_sampler_distribution_chi_square():
    """Sampler with penalties on one row (V = 16), 40,000 draws over seeds: the counts fit the
    reference's penalised, filtered distribution (false-failure rate 1e-4)."""
    cfg = dict(temperature=0.9, top_p=0.95, repetition_penalty=1.4, presence_penalty=0.3,
               frequency_penalty=0.2, logit_bias={5: 1.0}, suppress_tokens=[2],
               bad_words_ids=[[1, 3]])
    x = _row(77, 16)
    ids = np.array([1, 4, 4, 9, 1], dtype=np.int64)
    N = 40_000
    s = fd.Sampler(seed=np.arange(N, dtype=np.uint64), **cfg)
    tok = s(np.tile(x, (N, 1)), np.tile(ids, (N, 1)), 5)
    probs = ref.Sampler(**cfg).distribution(x, ids)
    assert probs[2] == 0 and probs[3] == 0  # suppressed, and banned after "... 1"
    assert chi_square_pvalue(np.bincount(tok, minlength=16), probs) > P_MIN


def test_sampler_default_position_is_history_length(rng):
    """Sampler documents position=None as each row's history length (lengths, else T)."""
    x = make_rows(rng, "normal", 16, 100)
    ids = rng.integers(0, 100, (16, 9))
    lengths = rng.integers(1, 10, 16)
    s = fd.Sampler(top_p=0.9, repetition_penalty=1.2, seed=np.arange(16, dtype=np.uint64))
    np.testing.assert_array_equal(s(x, ids), s(x, ids, 9))
    np.testing.assert_array_equal(s(x, ids, lengths=lengths), s(x, ids, lengths, lengths=lengths))
    np.testing.assert_array_equal(fd.Sampler(seed=3)(x), fd.Sampler(seed=3)(x, None, 0))


@needs_torch
def test_sampler_torch_in_torch_out(rng):
    x = make_rows(rng, "normal", 8, 64)
    ids = rng.integers(0, 64, (8, 5))
    s = fd.Sampler(temperature=0.7, repetition_penalty=1.3, seed=np.arange(8, dtype=np.uint64))
    for dt in (torch.float32, torch.bfloat16):
        t = torch.from_numpy(x).to(dt)
        got = s(t, torch.from_numpy(ids), 5)
        assert isinstance(got, torch.Tensor) and got.dtype == torch.int64
        np.testing.assert_array_equal(got.numpy(), s(t.float().numpy(), ids, 5))
    tok, lp = s(torch.from_numpy(x), ids, 5, return_logprobs=True)
    assert isinstance(tok, torch.Tensor) and isinstance(lp, torch.Tensor)
