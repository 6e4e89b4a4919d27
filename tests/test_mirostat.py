"""Stateful samplers (fastdecode.adaptive): mirostat v1/v2 and the entropix policy.

* kernel == NumPy twin (``_reference.mirostat`` / ``entropix``) step by step on random rows:
  tokens, mu, log-probabilities and survivor counts bit for bit (several dtypes, per-row tau /
  eta / temperature / mu, ties, -inf, V = 1);
* per-row state: a row's tokens and mu trace equal its solo run, in any batch order, also after
  other rows finished (llama.cpp #3537 shared one mu between sequences);
* one step's sampling distribution is the truncated distribution (chi-square);
* entropix: crafted rows of known (H, varentropy) hit every branch;
* generate() with both samplers: reproducible with a seed, batch-invariant, traces;
* bad input raises errors that name the argument.

Statistical tests use fixed seeds, so they are deterministic; the stated false-failure rate is the
probability that a correct sampler fails the bound for a random choice of seeds.
"""

import math

import numpy as np
import pytest

import fastdecode as fd
from fastdecode import _kernels as K
from fastdecode import _reference as ref
from fastdecode.models import CharModel, NGramModel

from conftest import chi_square_pvalue, make_rows, needs_torch, torch

P_MIN = 1e-4  # chi-square p-value bound: false-failure rate 1e-4 per check
LN2 = math.log(2.0)
# v2's threshold uses the core's float32 exp-sum (relative error ~1e-7 on Z): a token closer than
# this to the threshold, in logit units, may be decided differently by the float64 twin.
BORDER = 1e-5


def _as_dtype(x, dtype):
    """(array for the kernel, float32/64 array for the twin, dtype kwarg)."""
    if dtype == "bfloat16":
        b = (np.asarray(x, np.float32).view(np.uint32) >> 16).astype(np.uint16)
        return b, (b.astype(np.uint32) << 16).view(np.float32), "bfloat16"
    a = np.asarray(x).astype(dtype)
    return a, a, None


# ------------------------------------------------------------------------------------------------
# kernel == twin, step by step


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
def test_kernel_equals_twin_step_by_step(version, dtype, rng):
    """12 steps over 40 rows (5 kinds of rows, new logits each step, mu carried): tokens, mu,
    logprobs and survivor counts equal the twin's bit for bit. v2 rows with a token within BORDER
    of the threshold are left out from that step on (counted; at most 3% of row-steps)."""
    B, V, S = 40, 300, 12
    kinds = ("normal", "peaked", "zipf", "ties", "neginf")
    tau = rng.uniform(0.5, 8.0, B)
    eta = rng.uniform(0.0, 1.0, B)
    temp = rng.choice([0.0, 0.6, 1.0, 1.3], B)
    mu = rng.uniform(-1.0, 14.0, B)
    m = int(rng.integers(2, 150))
    alive = np.ones(B, bool)
    border = compared = 0
    seeds = rng.integers(0, 2**63, B, dtype=np.uint64)
    for step in range(S):
        x = np.concatenate([make_rows(rng, k, B // len(kinds), V) for k in kinds])
        xk, xt, dt = _as_dtype(x, dtype)
        if not np.isfinite(xt).any(axis=1).all():  # float16 overflow of "extreme"-like rows
            xk, xt = np.nan_to_num(xk, posinf=0), np.nan_to_num(xt, posinf=0)
        u = K.uniform(seeds, np.full(B, step, np.int64), 0)
        mu_in = mu.copy()
        tk, mu_k, lp_k, kept_k = fd.mirostat(xk, mu, tau=tau, eta=eta, temperature=temp,
                                             version=version, m=m, seed=seeds, position=step,
                                             return_logprobs=True, return_kept=True, dtype=dt)
        assert mu_k is mu  # a float64 (B,) array is updated in place
        tr, mu_r, lp_r, kept_r, margin = ref.mirostat(xt, mu_in, tau=tau, eta=eta,
                                                      temperature=temp, version=version, m=m,
                                                      uniform=u, return_details=True)
        if version == 2:
            near = margin < BORDER
            border += int((near & alive).sum())
            alive &= ~near
        else:
            assert np.isinf(margin).all()
        ok = alive
        compared += int(ok.sum())
        np.testing.assert_array_equal(tk[ok], tr[ok])
        np.testing.assert_array_equal(mu[ok], mu_r[ok])  # bit for bit
        np.testing.assert_array_equal(lp_k[ok], lp_r[ok])
        np.testing.assert_array_equal(kept_k[ok], kept_r[ok])
        greedy = ok & (temp == 0)
        np.testing.assert_array_equal(kept_k[greedy], 1)
        np.testing.assert_array_equal(mu[greedy], mu_in[greedy] + eta[greedy] * tau[greedy])
        mu[~alive] = mu_r[~alive]  # left-out rows follow the twin (they are not compared)
    assert border <= 0.03 * B * S, border
    assert compared >= 0.9 * B * S


def test_twin_edge_rows():
    """V = 1, a single finite token, all-tied rows, m = 1, tiny and huge mu: exact equality."""
    rows = [
        np.array([[0.5]], np.float32),
        np.array([[-np.inf, 2.0, -np.inf, -np.inf]], np.float32),
        np.zeros((1, 50), np.float32),
        np.array([[3.0, 3.0, 1.0, 1.0, -2.0, -np.inf]], np.float32),
    ]
    for x in rows:
        for version in (1, 2):
            for m in (1, 2, 100):
                for mu0 in (-5.0, 0.0, 0.3, 3.0, 10.0, 40.0):
                    for u in (0.0, 0.37, np.nextafter(1.0, 0.0)):
                        got = fd.mirostat(x, [mu0], tau=2.0, eta=0.3, version=version, m=m,
                                          uniforms=[u], return_logprobs=True, return_kept=True)
                        exp = ref.mirostat(x, [mu0], tau=2.0, eta=0.3, version=version, m=m,
                                           uniform=[u], return_details=True)
                        for a, b in zip(got, exp[:4]):
                            np.testing.assert_array_equal(a, b, err_msg=f"{x} v{version} m{m}")


def test_v2_threshold_and_v1_k_by_hand():
    """p = (.5, .25, .125, .125): surprises 1, 2, 3, 3 bits. v2 with mu = 2.5 keeps the first two
    (renormalised 2/3, 1/3); u = 0.7 picks token 1: surprise log2 3 = 1.585, mu' = 2.5 - 0.5
    (1.585 - 1); with mu = 0.5 only the maximum survives (surprise 0). v1 on the ramp z = -s ln(rank) (Zipf exponent s = 1.2 exactly): s_hat = 1.2,
    k = (0.2 * 2^mu / (1 - V^-0.2))^(1 / 1.2)."""
    x = np.log(np.array([0.5, 0.25, 0.125, 0.125]))
    tok, mu, lp, kept = fd.mirostat(x, 2.5, tau=1.0, eta=0.5, version=2, uniforms=0.7,
                                    return_logprobs=True, return_kept=True)
    assert int(tok) == 1 and int(kept) == 2
    assert lp == pytest.approx(math.log(1 / 3), abs=1e-6)
    assert mu == pytest.approx(2.5 - 0.5 * (math.log2(3) - 1.0), abs=1e-6)
    tok, mu, kept = fd.mirostat(x, 0.5, tau=1.0, eta=0.5, version=2, uniforms=0.99,
                                return_kept=True)
    assert int(tok) == 0 and int(kept) == 1 and float(mu) == 0.5 + 0.5
    V = 1000
    z = (-1.2 * np.log(np.arange(1, V + 1))).astype(np.float32)
    for mu0 in (3.0, 6.0, 9.0):
        k_exp = (0.2 * 2.0**mu0 / (1 - V ** -0.2)) ** (1 / 1.2)
        _, _, kept = fd.mirostat(z, mu0, version=1, m=100, uniforms=0.5, return_kept=True)
        assert abs(int(kept) - math.floor(k_exp)) <= 1, (mu0, int(kept), k_exp)  # float32 ramp
        assert int(kept) == ref.mirostat_v1_k(z, 100, mu0, V)


# ------------------------------------------------------------------------------------------------
# per-row state


def _kernel_run(x_steps, mu0, seeds, version, rows):
    """S steps of the kernel on the given rows (a batch), mu carried; returns tokens and mu (S, n)."""
    mu = mu0[rows].copy()
    toks, mus = [], []
    for s, x in enumerate(x_steps):
        t, mu = fd.mirostat(x[rows], mu, tau=3.0, eta=0.4, version=version, seed=seeds[rows],
                            position=s)
        toks.append(t)
        mus.append(mu.copy())
    return np.array(toks), np.array(mus)


@pytest.mark.parametrize("version", [1, 2])
def test_kernel_rows_are_independent(version, rng):
    B, V, S = 24, 400, 10
    xs = [make_rows(rng, "normal", B, V) for _ in range(S)]
    mu0 = rng.uniform(2.0, 10.0, B)
    seeds = rng.integers(0, 2**63, B, dtype=np.uint64)
    t_all, mu_all = _kernel_run(xs, mu0, seeds, version, np.arange(B))
    perm = rng.permutation(B)
    t_p, mu_p = _kernel_run(xs, mu0, seeds, version, perm)
    np.testing.assert_array_equal(t_p, t_all[:, perm])
    np.testing.assert_array_equal(mu_p, mu_all[:, perm])
    for b in (0, 7, 23):
        t1, mu1 = _kernel_run(xs, mu0, seeds, version, np.array([b]))
        np.testing.assert_array_equal(t1[:, 0], t_all[:, b])
        np.testing.assert_array_equal(mu1[:, 0], mu_all[:, b])
    assert len(np.unique(mu_all[-1])) > B // 2  # rows really have their own state


def _mgen(model, prompts, sampler, seeds, **kw):
    return fd.generate(model, prompts, max_new_tokens=40, sampler=sampler, seed=seeds,
                       eos_token_id=model.eos_token_id, **kw)


@pytest.mark.parametrize("version", [1, 2])
def test_generate_trace_equals_solo_runs(version):
    """Rows end at different steps (EOS); each row's tokens and mu trace equal its solo run and a
    run in reversed batch order: the state of a finished row neither lingers nor shifts."""
    model = NGramModel(vocab_size=48, order=3, seed=5, eos_token_id=0, eos_bias=1.5)
    prompts = [[1 + i % 40, 2 + (7 * i) % 40] for i in range(6)]
    seeds = np.arange(6, dtype=np.uint64) * 7919 + 11
    smp = fd.Mirostat(tau=np.linspace(2.0, 4.5, 6), eta=0.2, version=version, m=30)
    r = _mgen(model, prompts, smp, seeds)
    assert len(set(r.lengths.tolist())) > 1, "rows should finish at different steps"
    tr = r.sampler_trace
    assert tr["mu"].shape == tr["kept"].shape == (6, r.sequences.shape[1] - 2)
    rev = _mgen(model, prompts[::-1], fd.Mirostat(tau=np.linspace(2.0, 4.5, 6)[::-1], eta=0.2,
                                                  version=version, m=30), seeds[::-1])
    for b in range(6):
        n = int(r.num_new_tokens[b])
        assert np.isfinite(tr["mu"][b, :n]).all() and np.isnan(tr["mu"][b, n:]).all()
        assert (tr["kept"][b, :n] >= 1).all() and (tr["kept"][b, n:] == -1).all()
        assert tr["mu"][b, 0] == 2 * smp.tau[b]
        solo = _mgen(model, [prompts[b]], fd.Mirostat(tau=smp.tau[b], eta=0.2, version=version,
                                                      m=30), seeds[b:b + 1])
        np.testing.assert_array_equal(solo.new_tokens(0), r.new_tokens(b))
        np.testing.assert_array_equal(solo.sampler_trace["mu"][0], tr["mu"][b, :n])
        np.testing.assert_array_equal(solo.sampler_trace["final_mu"], tr["final_mu"][b:b + 1])
        np.testing.assert_array_equal(rev.new_tokens(5 - b), r.new_tokens(b))
        np.testing.assert_array_equal(rev.sampler_trace["mu"][5 - b, :n], tr["mu"][b, :n])
        # the trace is the kernel's update rule: mu' = mu - eta (surprise - tau), with surprise
        # the token's -log2 p under the truncated distribution ("processed" logprobs)
    rp = _mgen(model, prompts, smp, seeds, logprobs=True, logprobs_mode="processed")
    np.testing.assert_array_equal(rp.sequences, r.sequences)
    for b in range(6):
        n = int(r.num_new_tokens[b])
        mu_t = np.append(tr["mu"][b, :n], tr["final_mu"][b])
        s = -rp.token_logprobs[b, :n].astype(np.float64) / LN2
        np.testing.assert_allclose(mu_t[1:], mu_t[:-1] - 0.2 * (s - smp.tau[b]), atol=1e-5)


def test_generate_reproducible_and_seed_dependent():
    m = CharModel()
    p = [m.encode("Alice was "), m.encode("The rabbit ")]
    for smp in (fd.Mirostat(tau=3.0, seed=[3, 4]), fd.Mirostat(version=1, seed=[3, 4]),
                fd.Entropix(seed=[3, 4]), fd.Entropix(seed=[3, 4], clarify_token=int(m.encode("?")[0]))):
        a = fd.generate(m, p, max_new_tokens=30, sampler=smp)
        b = fd.generate(m, p, max_new_tokens=30, sampler=smp)  # the configuration is reusable
        np.testing.assert_array_equal(a.sequences, b.sequences)
        for k in a.sampler_trace:
            np.testing.assert_array_equal(a.sampler_trace[k], b.sampler_trace[k])
        c = fd.generate(m, p, max_new_tokens=30, sampler=smp, seed=[5, 6])
        assert not np.array_equal(a.sequences, c.sequences)
        # batch invariance: row 1 alone with its seed
        solo = fd.generate(m, p[1:], max_new_tokens=30, sampler=smp, seed=[4])
        np.testing.assert_array_equal(solo.new_tokens(0), a.new_tokens(1))
        for k in a.sampler_trace:
            if k != "final_mu":
                np.testing.assert_array_equal(solo.sampler_trace[k][0], a.sampler_trace[k][1])


# ------------------------------------------------------------------------------------------------
# distribution of one step


def _truncated(x, mu, version, m=100):
    """The float64 truncated distribution of one mirostat step on row x (T = 1)."""
    z = x.astype(np.float32).astype(np.float64)
    d = z - z.max()
    if version == 2:
        thr = math.log(np.exp(d).sum()) - mu * LN2
        assert np.min(np.abs(d - thr)) > 1e-3  # far from the boundary: the set is unambiguous
        keep = d >= thr
    else:
        k = ref.mirostat_v1_k(x.astype(np.float32), m, mu, x.size)
        keep = z >= np.sort(z)[::-1][k - 1]
    p = np.where(keep, np.exp(d), 0.0)
    return p / p.sum()


@pytest.mark.parametrize("version", [1, 2])
def test_one_step_distribution_chi_square(version):
    """40,000 draws (20,000 seeds at one position, 20,000 positions of one seed) of one row
    (V = 40) with mu = 4.5 bits fit the truncated distribution (three checks: false-failure rate
    <= 3e-4), never draw a removed token, and every mu' is the update rule applied to the drawn
    token's truncated probability."""
    V, N, mu0 = 40, 40_000, 4.5
    x = np.random.default_rng(77 + version).normal(0.0, 1.5, V).astype(np.float32)
    probs = _truncated(x, mu0, version)
    assert 3 <= (probs > 0).sum() < V  # a real truncation
    X = np.tile(x, (N // 2, 1))
    ta, mua = fd.mirostat(X, np.full(N // 2, mu0), tau=3.0, eta=0.1, version=version,
                          seed=np.arange(N // 2, dtype=np.uint64) + 99, position=5)
    tb, mub = fd.mirostat(X, np.full(N // 2, mu0), tau=3.0, eta=0.1, version=version, seed=123,
                          position=np.arange(N // 2) * 5 + 1)
    ca, cb = np.bincount(ta, minlength=V), np.bincount(tb, minlength=V)
    for counts in (ca, cb, ca + cb):
        pv = chi_square_pvalue(counts, probs)
        assert pv > P_MIN, (version, pv)
    t = np.concatenate([ta, tb])
    mus = np.concatenate([mua, mub])
    np.testing.assert_allclose(mus, mu0 - 0.1 * (-np.log2(probs[t]) - 3.0), atol=1e-9)


# ------------------------------------------------------------------------------------------------
# entropix


def _two_level(V, n_tail, p_top=0.5):
    """Logits of: token 0 with p_top, n_tail tokens sharing 1 - p_top, the rest -inf."""
    x = np.full(V, -np.inf)
    x[0] = math.log(p_top)
    x[1:1 + n_tail] = math.log((1 - p_top) / n_tail)
    return x.astype(np.float32)


def test_entropix_branches_on_crafted_rows():
    """Rows with known (H, V) in bits: a spike (0, 0); uniform over 16 (4, 0); p = .5 on one
    token and .5 over 64 (H = 1 + log2(64)/2 = 4, V = (log2 64)^2 / 4 = 9); the same over 4096
    (7, 36); (.5, .25, .25) (1.5, .25)."""
    V = 5000
    spike = np.full(V, -5.0, np.float32)
    spike[17] = 30.0
    uni = np.full(V, -np.inf, np.float32)
    uni[100:116] = 0.0
    mid = np.full(V, -np.inf, np.float32)
    mid[:3] = np.log([0.5, 0.25, 0.25])
    x = np.stack([spike, uni, _two_level(V, 64), _two_level(V, 4096), mid])
    exp_h = [0.0, 4.0, 4.0, 7.0, 1.5]
    exp_v = [0.0, 0.0, 9.0, 36.0, 0.25]
    tok, br, h, v, lp = fd.entropix(x, seed=1, position=3, return_logprobs=True)
    np.testing.assert_allclose(h, exp_h, atol=1e-5)
    np.testing.assert_allclose(v, exp_v, atol=1e-4)
    assert [fd.ENTROPIX_BRANCHES[b] for b in br] == ["argmax", "helv", "lehv", "hehv", "adaptive"]
    assert tok[0] == 17 and lp[0] == 0.0
    assert 100 <= tok[1] < 116
    # the clarifying token: inserted unless it was the row's last token
    tok2, br2, _, _ = fd.entropix(x[1], seed=1, clarify_token=9)
    assert fd.ENTROPIX_BRANCHES[int(br2)] == "clarify" and int(tok2) == 9
    tok3, br3, _, _ = fd.entropix(x[1], seed=1, clarify_token=9, last_token=9)
    assert fd.ENTROPIX_BRANCHES[int(br3)] == "helv" and 100 <= int(tok3) < 116
    # thresholds are parameters: raising low_entropy / low_varentropy above the uniform row's
    # (4, 0) makes it an argmax row (first maximum: token 100)
    tok4, br4, _, _ = fd.entropix(x[1], seed=1, low_entropy=4.5)
    assert int(br4) == 0 and int(tok4) == 100


def test_entropix_branch_parameters_shape_the_draw():
    """HEHV raises the temperature to max(2, 2T): its draws follow softmax(z / 2) after top-k 27
    and top-p .9 (the twin's distribution), checked by chi-square (false-failure rate 1e-4); LEHV
    widens top-k to floor(27 * 1.5) = 40 at T' = min(1.5, 1.2 T)."""
    V, N = 5000, 20_000
    x = _two_level(V, 4096)
    x[1:30] += np.linspace(2.0, 0.0, 29).astype(np.float32)  # a shape inside the top-k
    toks, br, _, _ = fd.entropix(np.tile(x, (N, 1)), seed=np.arange(N, dtype=np.uint64),
                                 position=0)
    assert (br == 4).all()
    probs = ref.sample_distribution(x, temperature=2.0, top_k=27, top_p=0.9)
    assert chi_square_pvalue(np.bincount(toks, minlength=V), probs) > P_MIN
    _, _, _, _, used = ref.entropix(_two_level(V, 64), uniforms=np.zeros((1, 5)))
    assert used == dict(temperature=min(1.5, 0.666 * 1.2), top_k=40, top_p=0.9, min_p=0.0)


def test_entropix_equals_twin(rng):
    """Random rows of every scale (all branches occur): branch and tokens equal the twin's, with
    the same uniforms (draw j of a row: Philox keyed by (seed, position, j)); H and V within
    float32 rounding."""
    seen = set()
    for trial in range(60):
        B, V = 6, int(rng.integers(2, 600))
        scale = [0.01, 0.3, 1.0, 3.0, 10.0, 30.0][trial % 6]
        x = (rng.normal(0.0, scale, (B, V))).astype(np.float32)
        x[2] = _two_level(V, max(1, V // 3))[:V] if V > 3 else x[2]
        seeds = rng.integers(0, 2**63, B, dtype=np.uint64)
        last = rng.integers(0, 2, B)
        t, b, h, v = fd.entropix(x, seed=seeds, position=trial, clarify_token=1, last_token=last)
        U = np.stack([K.uniform(seeds, np.full(B, trial, np.int64), j) for j in range(5)], axis=1)
        t2, b2, h2, v2, _ = ref.entropix(x, uniforms=U, clarify_token=1, last_token=last)
        np.testing.assert_allclose(h, h2, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(v, v2, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(b, b2)
        np.testing.assert_array_equal(t, t2)
        seen |= set(b.tolist())
    assert seen == {0, 1, 2, 3, 4, 5}


def test_entropix_adaptive_picks_highest_logit_draw():
    """The adaptive branch draws n times and keeps the draw with the highest raw logit: with one
    draw it is plain sampling, with 64 draws on a flat-ish row it is (almost always) the top."""
    x = np.log(np.array([0.5, 0.25, 0.25], np.float32))
    seeds = np.arange(2000, dtype=np.uint64)
    X = np.tile(x, (2000, 1))
    t1, b1, _, _ = fd.entropix(X, seed=seeds, adaptive_samples=1)
    t64, b64, _, _ = fd.entropix(X, seed=seeds, adaptive_samples=64)
    assert (b1 == 5).all() and (b64 == 5).all()
    assert 0.3 < np.mean(t1 == 0) < 0.95
    assert np.mean(t64 == 0) > 0.999


# ------------------------------------------------------------------------------------------------
# API details and bad input


def test_shapes_dtypes_and_no_mutation(rng):
    x = make_rows(rng, "normal", 3, 50)
    x0 = x.copy()
    t, mu = fd.mirostat(x, seed=1)  # mu None: 2 tau
    assert t.shape == (3,) and mu.shape == (3,) and mu.dtype == np.float64
    np.testing.assert_array_equal(x, x0)
    t1, mu1 = fd.mirostat(x[0], 10.0, seed=1)
    assert t1.shape == () and mu1.shape == ()
    assert int(t1) == int(t[0]) and float(mu1) == mu[0]
    mu_list = [10.0, 10.0, 10.0]
    _, mu2 = fd.mirostat(x, mu_list, seed=1)
    assert mu_list == [10.0] * 3 and np.array_equal(mu2, mu)  # a list is not updated
    xs = np.zeros((3, 4, 50), np.float32)
    xs[:, -1, :] = x
    t3, _ = fd.mirostat(xs[:, -1, :], 10.0, seed=1)  # row-strided view, no copy needed
    np.testing.assert_array_equal(t3, t)


@needs_torch
def test_torch_input(rng):
    x = make_rows(rng, "normal", 4, 64)
    t_np, mu_np = fd.mirostat(x, 6.0, seed=2, version=1)
    t_t, mu_t = fd.mirostat(torch.from_numpy(x).to(torch.bfloat16), 6.0, seed=2, version=1)
    assert isinstance(t_t, torch.Tensor)
    xb = torch.from_numpy(x).to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(t_t.numpy(), fd.mirostat(xb, 6.0, seed=2, version=1)[0])
    tok, br, h, v = fd.entropix(torch.from_numpy(x), seed=2)
    assert isinstance(tok, torch.Tensor) and isinstance(h, torch.Tensor)


def test_threads_give_sequential_results(rng):
    B, V = 64, 8192  # 2^19 logits: split over threads
    x = make_rows(rng, "normal", B, V)
    seeds = rng.integers(0, 2**63, B, dtype=np.uint64)
    old = fd.get_num_threads()
    try:
        fd.set_num_threads(1)
        a = fd.mirostat(x, 9.0, seed=seeds, version=1)
        ea = fd.entropix(x, seed=seeds)
        fd.set_num_threads(4)
        b = fd.mirostat(x, 9.0, seed=seeds, version=1)
        eb = fd.entropix(x, seed=seeds)
    finally:
        fd.set_num_threads(old)
    for p, q in zip(a + ea, b + eb):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("kw, err, words", [
    (dict(tau=0.0), ValueError, "tau"),
    (dict(tau=-1.0), ValueError, "tau"),
    (dict(tau=[1.0, 2.0, float("nan")]), ValueError, "tau"),
    (dict(eta=-0.1), ValueError, "eta"),
    (dict(eta=float("inf")), ValueError, "eta"),
    (dict(version=3), ValueError, "version"),
    (dict(version=True), ValueError, "version"),
    (dict(m=0), ValueError, "m must"),
    (dict(temperature=-1.0), ValueError, "temperature"),
    (dict(mu=np.zeros(2)), ValueError, "mu"),
    (dict(mu=np.zeros((3, 1))), ValueError, "mu"),
    (dict(mu=[1.0, float("nan"), 1.0]), ValueError, "mu"),
    (dict(mu="a"), TypeError, "mu"),
    (dict(uniforms=[0.5, 1.0, 0.5]), ValueError, "uniforms"),
    (dict(seed=-1), ValueError, "seed"),
])
def test_mirostat_bad_input_names_the_argument(kw, err, words):
    x = np.zeros((3, 10), np.float32)
    mu = kw.pop("mu", 5.0)
    with pytest.raises(err, match=words):
        fd.mirostat(x, mu, **kw)


def test_mirostat_bad_logits_leave_mu_unchanged():
    x = np.zeros((3, 10), np.float32)
    x[2, 4] = np.nan
    mu = np.array([5.0, 6.0, 7.0])
    with pytest.raises(ValueError, match="row 2"):
        fd.mirostat(x, mu, seed=1)
    np.testing.assert_array_equal(mu, [5.0, 6.0, 7.0])
    x[2] = -np.inf
    with pytest.raises(ValueError, match="row 2 has no finite"):
        fd.mirostat(x, mu, seed=1)
    np.testing.assert_array_equal(mu, [5.0, 6.0, 7.0])


@pytest.mark.parametrize("kw, err, words", [
    (dict(top_p=1.5), ValueError, "top_p"),
    (dict(top_k=2.5), ValueError, "top_k"),
    (dict(temperature=-1), ValueError, "temperature"),
    (dict(adaptive_samples=0), ValueError, "adaptive_samples"),
    (dict(low_entropy=float("nan")), ValueError, "low_entropy"),
    (dict(clarify_token=-2), ValueError, "clarify_token"),
    (dict(clarify_token=10), ValueError, "clarify_token"),
    (dict(top_q=0.5), TypeError, "top_q"),
    (dict(min_p="x"), TypeError, "min_p"),
])
def test_entropix_bad_input_names_the_argument(kw, err, words):
    x = np.zeros((2, 10), np.float32)
    with pytest.raises(err, match=words):
        fd.entropix(x, seed=1, **kw)
    if "clarify_token" not in kw or kw["clarify_token"] < 0:
        with pytest.raises(err, match=words):
            fd.Entropix(**kw)


def test_sampler_objects_validate_early_and_check_generate_arguments():
    with pytest.raises(ValueError, match="tau"):
        fd.Mirostat(tau=0)
    with pytest.raises(ValueError, match="eta"):
        fd.Mirostat(eta=[0.1, -1])
    with pytest.raises(ValueError, match="version"):
        fd.Mirostat(version=0)
    m = CharModel()
    with pytest.raises(ValueError, match="tau has 3 values"):
        fd.generate(m, [m.encode("a"), m.encode("b")], max_new_tokens=2,
                    sampler=fd.Mirostat(tau=[1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="logprobs_mode='processed'"):
        fd.generate(m, [m.encode("a")], max_new_tokens=2, sampler=fd.Mirostat(), logprobs=3,
                    logprobs_mode="processed")
    with pytest.raises(TypeError, match="sampler must be"):
        fd.generate(m, [m.encode("a")], max_new_tokens=2, sampler=object())


@pytest.mark.parametrize("version", [1, 2])
def test_temperature_beyond_float32_keeps_removed_tokens_removed(version):
    """T = 1e300 rounds to an infinite float32: finite logits become 0 (uniform over them) and
    -inf stays -inf (it was NaN: fuzz corpus regress-mirostat-infinite-temperature)."""
    x = np.array([[0.5, -np.inf, 2.0, 1.0]] * 3, np.float32)
    mu = np.array([5.0, 5.0, 5.0])
    tok, mu2 = fd.mirostat(x, mu.copy(), tau=3.0, eta=0.1, version=version, temperature=1e300,
                           uniforms=[0.1, 0.5, 0.9])
    assert tok.tolist() == [0, 2, 3]
    np.testing.assert_allclose(mu2, 5.0 - 0.1 * (np.log2(3.0) - 3.0), rtol=0, atol=1e-12)


# -- penalties before the stateful samplers (llama.cpp's chain: penalties, then mirostat) -------


def _penalised_loop(model, prompts, n, pen, step):
    """The reference: per step, the penalties Sampler's own final_logits on the history, then one
    call of the functional sampler ``step(logits, position) -> token`` (a hand-written loop)."""
    hist = [list(p) for p in prompts]
    for _ in range(n):
        for b, h in enumerate(hist):
            z = np.asarray(model(np.array([h]))[0, -1], np.float32)
            z = pen.final_logits(z[None], np.array([h]), prompt_lengths=[len(prompts[b])])[0]
            h.append(step(b, z, len(h)))
    return hist


@pytest.mark.parametrize("version", [1, 2])
def test_mirostat_with_penalties_equals_a_hand_loop(version):
    model = NGramModel(vocab_size=40, order=3, seed=2)
    prompts = [[1, 2, 3, 1, 2], [7, 8], [5, 5, 5, 5]]
    pen = fd.Sampler(repetition_penalty=1.8, presence_penalty=0.4, no_repeat_ngram_size=2)
    r = fd.generate(model, prompts, max_new_tokens=10,
                    sampler=fd.Mirostat(tau=8.0, eta=0.3, version=version, seed=5, penalties=pen))
    mu = [16.0] * 3

    def step(b, z, pos):
        tok, mu[b] = fd.mirostat(z, mu[b], tau=8.0, eta=0.3, version=version, seed=5, position=pos)
        return int(tok)

    want = _penalised_loop(model, prompts, 10, pen, step)
    assert [r.sequence(b).tolist() for b in range(3)] == want
    np.testing.assert_array_equal(r.sampler_trace["final_mu"], mu)
    plain = fd.generate(model, prompts, max_new_tokens=10,
                        sampler=fd.Mirostat(tau=8.0, eta=0.3, version=version, seed=5))
    assert plain.sequences.tolist() != r.sequences.tolist()  # the penalties did bite
    # no 2-gram repeats within a generation (the n-gram ban holds through mirostat)
    for b in range(3):
        s = r.sequence(b).tolist()
        grams = [tuple(s[i:i + 2]) for i in range(len(s) - 1)]
        assert all(grams[i] not in grams[:i] for i in range(len(prompts[b]) - 1, len(grams)))


def test_entropix_with_penalties_equals_a_hand_loop():
    model = NGramModel(vocab_size=40, order=3, seed=4)
    prompts = [[1, 2, 3], [9, 9]]
    pen = fd.Sampler(repetition_penalty=[1.5, 2.5], frequency_penalty=0.3)
    r = fd.generate(model, prompts, max_new_tokens=8, sampler=fd.Entropix(seed=3, penalties=pen))

    def step(b, z, pos):
        return int(fd.entropix(z, seed=3, position=pos)[0])

    rows = [_penalised_loop(model, [p], 8, pen._subset(np.array([b])), step)[0] for b, p in enumerate(prompts)]
    assert [r.sequence(b).tolist() for b in range(2)] == rows


def test_stateful_penalties_arguments():
    with pytest.raises(ValueError, match="penalties must be a Sampler with penalties"):
        fd.Mirostat(penalties=fd.Sampler(top_p=0.9))
    with pytest.raises(ValueError, match="penalties must be a Sampler with penalties"):
        fd.Entropix(penalties=fd.Sampler(temperature=0.7))
    with pytest.raises(TypeError, match="penalties must be a fastdecode.Sampler"):
        fd.Mirostat(penalties={"repetition_penalty": 1.2})
    with pytest.raises(ValueError, match="per-row parameters for 2 rows but the batch has 3"):
        fd.generate(NGramModel(vocab_size=20, order=2, seed=0), [[1], [2], [3]], max_new_tokens=2,
                    sampler=fd.Mirostat(penalties=fd.Sampler(repetition_penalty=[1.2, 1.3]), seed=0))
    assert fd.Mirostat(penalties=fd.Sampler(repetition_penalty=1.2)).needs_history
    assert not fd.Mirostat(penalties=fd.Sampler(logit_bias={3: -1.0})).needs_history
