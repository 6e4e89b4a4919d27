"""Contrastive decoding and classifier-free guidance: kernels, loops and their references.

1. ``contrastive_logits`` / ``guidance_logits`` against their NumPy twins in ``_reference.py`` on
   random rows (both formulas, several alpha / tau / beta, per-row parameters, dtypes, strided
   views, -inf entries, ties at the head's boundary), and ``guidance_logits`` against Hugging
   Face's own processor classes.
2. ``contrastive_generate``: greedy decoding on two built-in models equals a hand-written loop of
   the NumPy reference token for token (also with ``amateur_context`` and ragged batches), beam
   search over the summed score equals exhaustive search on a tiny model, sampling is reproducible,
   classifier-free guidance equals HF's processor loop, and bad arguments name themselves.

Float tolerances: the kernel evaluates the float32 log-normalisers with float32 exponentials summed
in float64 (isa.c), the reference with float64 exponentials, so Li scores agree to a few float32
ulps: ``rtol = atol = 4e-6`` (scores are O(10)); the head (which tokens are finite) is compared
exactly, as are the O'Brien scores (no exponentials: one float64 expression rounded once).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import fastdecode as fd
from fastdecode import _reference as ref
from fastdecode import ops

TOL = dict(rtol=4e-6, atol=4e-6)


def _rows(rng, B, V, *, scale=3.0, ninf=0.0, dtype=np.float32):
    x = (rng.standard_normal((B, V)) * scale).astype(dtype)
    if ninf:
        x[rng.random((B, V)) < ninf] = -np.inf
        x[:, 0] = np.where(np.isfinite(x).any(axis=1), x[:, 0], 0.0)  # keep a finite value
    return x


def _same(got, want, exact=False):
    got = np.asarray(got)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    fin = np.isfinite(want)
    if exact:
        np.testing.assert_array_equal(got[fin], want[fin])
    else:
        np.testing.assert_allclose(got[fin], want[fin], **TOL)


# -- 1. kernels ------------------------------------------------------------------------------------

@pytest.mark.parametrize("alpha", [0.0, 1e-3, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("tau", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("beta", [None, 0.0, 0.5, 1.0])
def test_contrastive_matches_reference(alpha, tau, beta):
    rng = np.random.default_rng(hash((alpha, tau, beta)) % 2**32)
    for V in (1, 2, 7, 100, 1000):
        e = _rows(rng, 4, V)
        a = _rows(rng, 4, V, scale=2.0)
        got = fd.contrastive_logits(e, a, alpha=alpha, amateur_temperature=tau, beta=beta)
        want = ref.contrastive_logits(e, a, alpha=alpha, amateur_temperature=tau, beta=beta)
        _same(got, want, exact=beta is not None)
        # the head is the min-p set of the expert, bit for bit
        np.testing.assert_array_equal(np.isfinite(got), np.isfinite(fd.min_p(e, alpha)))


@pytest.mark.parametrize("dtype", [np.float16, np.float64, "bfloat16"])
@pytest.mark.parametrize("beta", [None, 0.5])
def test_contrastive_dtypes(dtype, beta):
    rng = np.random.default_rng(1)
    e = _rows(rng, 3, 300, ninf=0.1)
    a = _rows(rng, 3, 300)
    if dtype == "bfloat16":
        torch = pytest.importorskip("torch", reason="bfloat16 tensors need torch (the test extra)")
        te = torch.from_numpy(e).to(torch.bfloat16)
        ta = torch.from_numpy(a).to(torch.bfloat16)
        got = fd.contrastive_logits(te, ta, beta=beta)
        assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
        want = ref.contrastive_logits(te.float().numpy(), ta.float().numpy(), beta=beta)
        _same(got.numpy(), want, exact=beta is not None)
        bits = fd.contrastive_logits(te.view(torch.int16).numpy().view(np.uint16),
                                     ta.view(torch.int16).numpy().view(np.uint16), beta=beta,
                                     dtype="bfloat16")
        np.testing.assert_array_equal(bits, got.numpy())
        return
    e, a = e.astype(dtype), a.astype(dtype)
    got = fd.contrastive_logits(e, a, beta=beta)
    want = ref.contrastive_logits(e, a, beta=beta)
    assert got.dtype == (np.float64 if dtype == np.float64 else np.float32)
    if dtype == np.float64:
        fin = np.isfinite(want)
        np.testing.assert_array_equal(np.isfinite(got), fin)
        np.testing.assert_allclose(got[fin], want[fin], rtol=1e-13, atol=1e-13)
    else:
        _same(got, want, exact=beta is not None)
    # mixed dtypes: float32 out, the float64 one rounded to float32 on load
    mixed = fd.contrastive_logits(e, a.astype(np.float64) if dtype != np.float64 else a.astype(np.float32),
                                  beta=beta)
    assert mixed.dtype == np.float32


def test_contrastive_per_row_params_strided_and_inf():
    rng = np.random.default_rng(2)
    B, S, V = 5, 3, 257
    big_e = _rows(rng, B * S, V + 9, ninf=0.2).reshape(B, S, V + 9)
    big_a = _rows(rng, B, 2 * V).reshape(B, 2 * V)
    e = big_e[:, -1, 3:3 + V]  # row-strided views, read in place
    a = big_a[:, ::1][:, V:]
    e0, a0 = e.copy(), a.copy()
    # an amateur -inf outside the head is harmless: put some where the expert is far below max
    far = e < e.max(axis=1, keepdims=True) - 20
    a = a.copy()
    a[far] = -np.inf
    a0 = a.copy()
    alpha = np.array([0.0, 0.05, 0.1, 0.9, 1.0])
    tau = np.array([1.0, 0.5, 2.0, 1.0, 0.25])
    for beta in (None, np.array([0.0, 0.5, 1.0, 2.0, 0.1])):
        got = fd.contrastive_logits(e, a, alpha=alpha, amateur_temperature=tau, beta=beta)
        want = ref.contrastive_logits(e, a, alpha=alpha, amateur_temperature=tau, beta=beta)
        _same(got, want, exact=beta is not None)
        for r in range(B):  # a row's result does not depend on the others
            one = fd.contrastive_logits(e[r], a[r], alpha=alpha[r], amateur_temperature=tau[r],
                                        beta=None if beta is None else beta[r])
            np.testing.assert_array_equal(one, got[r])
    np.testing.assert_array_equal(e, e0)  # inputs untouched
    np.testing.assert_array_equal(a, a0)


def test_contrastive_alpha_edges_and_ties():
    e = np.array([[3.0, 3.0, 1.0, -np.inf, 2.0]], np.float32)
    a = np.zeros((1, 5), np.float32)
    # alpha = 1: the tied maxima only; alpha = 0: every finite expert logit, never -inf
    assert np.isfinite(fd.contrastive_logits(e, a, alpha=1.0)).tolist() == [[True, True, False, False, False]]
    assert np.isfinite(fd.contrastive_logits(e, a, alpha=0.0)).tolist() == [[True, True, True, False, True]]
    # the boundary: p = alpha * max p exactly (z - max = ln alpha in float32) is in the head
    z = np.array([0.0, np.float32(math.log(0.25)), -5.0], np.float32)
    alpha = math.exp(float(z[1]))
    got = fd.contrastive_logits(z, np.zeros(3, np.float32), alpha=alpha)
    assert np.isfinite(got).tolist() == [not (float(z[i]) < math.log(alpha)) for i in range(3)]
    # V = 1: the single token is the head; Li's score is 0 - 0
    assert fd.contrastive_logits(np.array([4.0], np.float32), np.array([-2.0], np.float32)).tolist() == [0.0]
    # filter_value
    got = fd.contrastive_logits(e, a, alpha=1.0, filter_value=-100.0)
    assert got[0, 2:].tolist() == [-100.0] * 3


def test_contrastive_li_is_difference_of_log_softmax():
    rng = np.random.default_rng(3)
    e, a = _rows(rng, 3, 50), _rows(rng, 3, 50)
    got = fd.contrastive_logits(e, a, alpha=0.0, amateur_temperature=0.5)
    want = ops.log_softmax(e).astype(np.float64) - ops.log_softmax(a, temperature=0.5)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_contrastive_out_and_aliasing():
    rng = np.random.default_rng(4)
    e, a = _rows(rng, 3, 64), _rows(rng, 3, 64)
    want = fd.contrastive_logits(e, a)
    o = np.empty_like(e)
    r = fd.contrastive_logits(e, a, out=o)
    assert r is o
    np.testing.assert_array_equal(o, want)
    e2 = e.copy()
    fd.contrastive_logits(e2, a, out=e2)  # in place over the expert
    np.testing.assert_array_equal(e2, want)
    with pytest.raises(TypeError, match="out must have dtype float32"):
        fd.contrastive_logits(e, a, out=np.empty((3, 64), np.float64))
    # an error in a later row leaves an aliased out as it was
    bad = a.copy()
    bad[2, 5] = np.nan
    e3 = e.copy()
    with pytest.raises(ValueError, match="amateur_logits row 2 contains NaN"):
        fd.contrastive_logits(e3, bad, out=e3)
    np.testing.assert_array_equal(e3, e)


@pytest.mark.parametrize("kw, match", [
    (dict(alpha=1.5), "alpha"), (dict(alpha=-0.1), "alpha"), (dict(alpha=float("nan")), "alpha"),
    (dict(alpha=np.array([0.1, 2.0])), r"alpha.*\(row 1\)"),
    (dict(amateur_temperature=0.0), "amateur_temperature"),
    (dict(amateur_temperature=-1.0), "amateur_temperature"),
    (dict(amateur_temperature=float("inf")), "amateur_temperature"),
    (dict(beta=-0.5), "beta"), (dict(beta=float("inf")), "beta"),
    (dict(filter_value=float("nan")), "filter_value"),
])
def test_contrastive_bad_parameters(kw, match):
    e = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match=match):
        fd.contrastive_logits(e, e, **kw)
    if match != "filter_value":
        with pytest.raises(ValueError):
            ref.contrastive_logits(e, e, **kw)


def test_contrastive_bad_inputs_name_the_argument():
    e = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"vocabulary mismatch: 4 vs 5"):
        fd.contrastive_logits(e, np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="amateur_logits must have the shape"):
        fd.contrastive_logits(e, np.zeros((3, 4), np.float32))
    for arg, val, match in [(0, np.nan, r"expert_logits row 1 contains NaN \(column 2\)"),
                            (1, np.nan, r"amateur_logits row 1 contains NaN \(column 2\)"),
                            (0, np.inf, r"expert_logits row 1 contains \+inf"),
                            (1, np.inf, r"amateur_logits row 1 contains \+inf")]:
        xs = [e.copy(), e.copy()]
        xs[arg][1, 2] = val
        with pytest.raises(ValueError, match=match):
            fd.contrastive_logits(*xs)
        with pytest.raises(ValueError):
            ref.contrastive_logits(*xs)
    ninf = np.full((2, 4), -np.inf, np.float32)
    with pytest.raises(ValueError, match="expert_logits row 0 has no finite value"):
        fd.contrastive_logits(ninf, e)
    with pytest.raises(ValueError, match="amateur_logits row 0 has no finite value"):
        fd.contrastive_logits(e, ninf)
    a = e.copy()
    a[1, 3] = -np.inf
    for beta in (None, 0.5):
        with pytest.raises(ValueError, match=r"amateur_logits row 1, column 3 is -inf inside"):
            fd.contrastive_logits(e, a, beta=beta)
        with pytest.raises(ValueError, match="plausibility head"):
            ref.contrastive_logits(e, a, beta=beta)
    # a finite amateur that the temperature scales to -inf: an overflow, not the amateur's -inf
    a = np.array([[0.0, 1.0, 0.0, 0.0]], np.float32)
    with pytest.raises(ValueError, match=r"row 0.*overflows|overflows.*row 0"):
        fd.contrastive_logits(e[:1], a, alpha=0.0, amateur_temperature=1e-300)
    with pytest.raises(TypeError, match="expert_logits must be float"):
        fd.contrastive_logits(np.zeros((2, 4), np.int32), e)


# -- guidance ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("g", [0.0, 0.5, 1.0, 1.5, 3.0, -1.0])
def test_guidance_matches_reference(normalize, g):
    rng = np.random.default_rng(5)
    for V in (1, 3, 100, 5000):
        c = _rows(rng, 3, V, ninf=0.1 if V > 1 else 0.0)
        u = _rows(rng, 3, V, ninf=0.1 if V > 1 else 0.0)
        got = fd.guidance_logits(c, u, g, normalize=normalize)
        want = ref.guidance_logits(c, u, g, normalize=normalize)
        _same(got, want, exact=not normalize)
    c64, u64 = c.astype(np.float64), u.astype(np.float64)
    got = fd.guidance_logits(c64, u64, g, normalize=normalize)
    want = ref.guidance_logits(c64, u64, g, normalize=normalize)
    assert got.dtype == np.float64
    fin = np.isfinite(want)
    np.testing.assert_array_equal(np.isfinite(got), fin)
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-13, atol=1e-13)


def test_guidance_per_row_and_errors():
    rng = np.random.default_rng(6)
    c, u = _rows(rng, 4, 30), _rows(rng, 4, 30)
    g = np.array([1.0, 1.5, 2.0, 0.0])
    got = fd.guidance_logits(c, u, g)
    for r in range(4):
        np.testing.assert_array_equal(got[r], fd.guidance_logits(c[r], u[r], g[r]))
    with pytest.raises(ValueError, match="guidance_scale"):
        fd.guidance_logits(c, u, float("inf"))
    with pytest.raises(ValueError, match=r"vocabulary mismatch"):
        fd.guidance_logits(c, u[:, :5], 1.5)
    bad = u.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"uncond_logits row 3 contains NaN"):
        fd.guidance_logits(c, bad, 1.5)
    with pytest.raises(ValueError, match=r"cond_logits row 0 has no finite value"):
        fd.guidance_logits(np.full((1, 3), -np.inf, np.float32), u[:1, :3], 1.5)
    with pytest.raises(ValueError, match="overflows"):
        fd.guidance_logits(c * 1e30, u, 1e10, normalize=False)


def test_guidance_normalize_float32_log_softmax_overflow():
    # In float32, log_softmax's x - max overflows to -inf for x = -FLT_MAX next to max = +FLT_MAX
    # (torch's too): the token is then ruled out (-inf), not an overflow error (the fuzz
    # reproducer csrc/fuzz/corpus/regress-guidance-f32-overflow).
    torch = pytest.importorskip("torch", reason="torch is in the test extra")
    big = np.finfo(np.float32).max
    c = np.array([[-big, big, 0.0, 1.0]], np.float32)
    u = np.array([[0.5, big, -big, 1.0]], np.float32)
    g = 1.0000001
    got = fd.guidance_logits(c, u, g, normalize=True)
    lc = torch.log_softmax(torch.from_numpy(c), -1)
    lu = torch.log_softmax(torch.from_numpy(u), -1)
    want = (g * (lc - lu) + lu).numpy()
    want[np.isnan(want)] = -np.inf  # torch's NaN from u = -inf: excluded (-inf), as documented
    assert np.isneginf(lc[0, 0].item()) and np.isneginf(lu[0, 2].item())
    np.testing.assert_array_equal(np.isneginf(got), [[True, False, True, False]])
    np.testing.assert_array_equal(got, want)
    got64 = fd.guidance_logits(c.astype(np.float64), u.astype(np.float64), g, normalize=True)
    assert np.isfinite(got64).all()  # in double x - max does not overflow


def test_guidance_matches_hf_processors():
    torch = pytest.importorskip("torch", reason="torch is in the test extra")
    lp = pytest.importorskip("transformers.generation.logits_process",
                             reason="transformers is in the test extra")
    rng = np.random.default_rng(7)
    B, V = 4, 1000
    for g in (1.5, 3.0, 7.0):
        c = _rows(rng, B, V, scale=4.0)
        u = _rows(rng, B, V, scale=4.0)
        # batched: scores = cat(cond, uncond), raw logits
        proc = lp.ClassifierFreeGuidanceLogitsProcessor(g)
        want = proc(torch.zeros((B, 1), dtype=torch.long), torch.from_numpy(np.concatenate([c, u]))).numpy()
        got = fd.guidance_logits(c, u, g, normalize=False)
        np.testing.assert_array_equal(got, want)  # same float32 operations, bit for bit
        # unbatched: the unconditional logits come from a model call on the negative prompt
        seen = {}

        def model(input_ids, attention_mask=None, use_cache=None, past_key_values=None, _u=u):
            seen["ids"] = input_ids

            class Out(dict):
                logits = torch.from_numpy(_u[:, None, :])
            return Out()

        proc = lp.UnbatchedClassifierFreeGuidanceLogitsProcessor(g, model, unconditional_ids=torch.zeros((B, 2), dtype=torch.long))
        want = proc(torch.zeros((B, 3), dtype=torch.long), torch.from_numpy(c)).numpy()
        got = fd.guidance_logits(c, u, g)
        # the log-softmax sums differ from torch's in the last bit at most; the guidance arithmetic
        # on top of them is the same float32 sequence
        np.testing.assert_allclose(got, want, rtol=0, atol=4e-5 * g)
    # g == 1: HF returns log_softmax(cond) unchanged
    proc = lp.UnbatchedClassifierFreeGuidanceLogitsProcessor(1.0, None)
    want = proc(torch.zeros((B, 3), dtype=torch.long), torch.from_numpy(c)).numpy()
    np.testing.assert_allclose(fd.guidance_logits(c, u, 1.0), want, rtol=0, atol=4e-6)
    np.testing.assert_array_equal(fd.guidance_logits(c, u, 1.0), fd.log_softmax(c))


# -- 2. the loops ------------------------------------------------------------------------------------

from fastdecode.models import CharModel, NGramModel, char_model  # noqa: E402


def _last(model, ids):
    """The plain-callable form of a built-in model: logits after ``ids`` (one row)."""
    return np.asarray(model(np.asarray([ids], np.int64)))[0, -1]


def _ref_loop(expert, amateur, prompt, n, *, alpha=0.1, tau=1.0, beta=None, W=None, aprompt=None,
              eos=None, pick=None):
    """Hand-written contrastive decoding of one row with the NumPy reference score."""
    seq, aseq, out = list(prompt), list(prompt if aprompt is None else aprompt), []
    for _ in range(n):
        ze = _last(expert, seq)
        za = _last(amateur, aseq[-W:] if W else aseq)
        s = ref.contrastive_logits(ze, za, alpha=alpha, amateur_temperature=tau, beta=beta)
        t = int(np.argmax(s)) if pick is None else pick(s)
        seq.append(t)
        aseq.append(t)
        out.append(t)
        if eos is not None and t == eos:
            break
    return out


@pytest.fixture(scope="module")
def chars():
    return char_model(), CharModel(order=2), CharModel(order=3)


@pytest.mark.parametrize("kw", [dict(), dict(alpha=0.3), dict(amateur_temperature=0.5),
                                dict(beta=0.5), dict(beta=1.0, amateur_temperature=2.0)])
def test_greedy_char_model_equals_reference_loop(chars, kw):
    expert, amateur, _ = chars
    texts = ["Alice was ", "She said to", "Down, down"]
    prompts = [expert.encode(t) for t in texts]  # ragged
    r = fd.contrastive_generate(expert, amateur, prompts, max_new_tokens=60, **kw)
    for b, p in enumerate(prompts):
        want = _ref_loop(expert, amateur, p, 60, alpha=kw.get("alpha", 0.1),
                         tau=kw.get("amateur_temperature", 1.0), beta=kw.get("beta"))
        assert r.new_tokens(b).tolist() == want


def test_greedy_ngram_per_row_params_and_eos():
    V = 40
    expert = NGramModel(vocab_size=V, order=3, seed=0, eos_token_id=7, eos_bias=2.0)
    amateur = NGramModel(vocab_size=V, order=2, seed=1, scale=2.0)
    prompts = [[1, 2, 3], [4], [5, 6, 7, 8, 9, 10], [11, 12]]
    alpha = np.array([0.1, 0.0, 0.5, 0.05])
    tau = np.array([1.0, 0.5, 1.0, 2.0])
    r = fd.contrastive_generate(expert, amateur, prompts, max_new_tokens=40, alpha=alpha,
                                amateur_temperature=tau, eos_token_id=7)
    finished = 0
    for b, p in enumerate(prompts):
        want = _ref_loop(expert, amateur, p, 40, alpha=alpha[b], tau=tau[b], eos=7)
        assert r.new_tokens(b).tolist() == want
        finished += r.finish_reasons[b] == "eos"
    assert finished >= 1  # rows ended at different steps: the session dropped them with select


@pytest.mark.parametrize("W", [1, 2, 4])
def test_amateur_context_equals_reference_loop(chars, W):
    expert, _, _ = chars
    amateur = CharModel(order=5)  # a strong model made weak by its window
    prompts = [expert.encode("Alice was "), expert.encode("It")]
    r = fd.contrastive_generate(expert, amateur, prompts, max_new_tokens=50, amateur_context=W)
    for b, p in enumerate(prompts):
        assert r.new_tokens(b).tolist() == _ref_loop(expert, amateur, p, 50, W=W)
    # a window the amateur cannot see beyond anyway changes nothing: an order-3 model reads 2 tokens
    _, _, a3 = chars
    full = fd.contrastive_generate(expert, a3, prompts, max_new_tokens=50)
    win = fd.contrastive_generate(expert, a3, prompts, max_new_tokens=50, amateur_context=2)
    np.testing.assert_array_equal(full.sequences, win.sequences)
    # the window restarts a plain-callable amateur the same way as a stateful one
    plain = fd.contrastive_generate(expert, lambda ids: amateur(ids), prompts, max_new_tokens=50,
                                    amateur_context=W)
    np.testing.assert_array_equal(plain.sequences, r.sequences)


def test_amateur_prompts(chars):
    expert, amateur, _ = chars
    p = expert.encode("Alice was ")
    neg = expert.encode("The")
    r = fd.contrastive_generate(expert, amateur, [p], max_new_tokens=40, amateur_input_ids=[neg])
    assert r.new_tokens(0).tolist() == _ref_loop(expert, amateur, p, 40, aprompt=neg)


def test_contrastive_reduces_repetition(chars):
    """The issue's claim on the built-in char model: greedy decoding of the expert falls into a
    loop; contrastive decoding repeats measurably less (distinct 4-grams of 300 new characters)."""
    expert, amateur, _ = chars
    prompts = [expert.encode(t) for t in ("Alice was ", "She was ", "said the ")]

    def distinct4(r):
        d = []
        for b in range(len(prompts)):
            t = r.new_tokens(b).tolist()
            grams = [tuple(t[i:i + 4]) for i in range(len(t) - 3)]
            d.append(len(set(grams)) / len(grams))
        return float(np.mean(d))

    g = distinct4(fd.generate(expert, prompts, max_new_tokens=300))
    c = distinct4(fd.contrastive_generate(expert, amateur, prompts, max_new_tokens=300))
    assert g < 0.5 and c > g + 0.2, (g, c)


def _tiny():
    return NGramModel(vocab_size=3, order=2, seed=3, scale=1.5), NGramModel(vocab_size=3, order=2, seed=4, scale=2.0)


@pytest.mark.parametrize("kw", [dict(alpha=0.0), dict(alpha=0.0, beta=0.5), dict(alpha=0.3)])
def test_beam_equals_exhaustive_search(kw):
    expert, amateur = _tiny()
    prompt, T, nb = [1], 3, 9
    # every continuation of T tokens, scored as beam search sums: float32, token by token
    total = {}
    for seq in itertools.product(range(3), repeat=T):
        s = np.float32(0.0)
        ctx = list(prompt)
        for t in seq:
            sc = fd.contrastive_logits(_last(expert, ctx), _last(amateur, ctx), **kw)
            s = np.float32(s + sc[t])
            ctx.append(t)
        total[seq] = s
    ranked = sorted(total, key=lambda q: -total[q])  # stable: ties by lexicographic order
    r = fd.contrastive_generate(expert, amateur, [prompt], max_new_tokens=T, num_beams=nb,
                                num_return_sequences=nb, length_penalty=0.0, early_stopping="never",
                                **kw)
    got = [tuple(r.new_tokens(j).tolist()) for j in range(nb)]
    want_scores = [total[q] for q in ranked[:nb]]
    finite = [s for s in want_scores if np.isfinite(s)]
    assert len(finite) >= 2
    assert total[got[0]] == total[ranked[0]]  # the optimum (equal sums may come in either order)
    assert len(set(got[:len(finite)])) == len(finite)
    # the returned hypotheses are the best nb sequences, with their exact summed scores
    np.testing.assert_array_equal(r.sequences_scores[:len(finite)], np.array(finite, np.float32))
    for j in range(len(finite)):
        assert total[got[j]] == r.sequences_scores[j]


def test_beam_small_width_is_plain_beam_search_over_the_score():
    """num_beams < exhaustive: the result is beam_search(normalize=False) over the model's score."""
    expert, amateur = NGramModel(vocab_size=20, order=3, seed=0), NGramModel(vocab_size=20, order=2, seed=5)
    prompts = [[1, 2], [3]]
    r = fd.contrastive_generate(expert, amateur, prompts, max_new_tokens=8, num_beams=3, beta=0.5)
    m = fd.ContrastiveModel(expert, amateur, beta=0.5)
    r2 = fd.beam_search(m, prompts, num_beams=3, max_new_tokens=8, normalize=False)
    np.testing.assert_array_equal(r.sequences, r2.sequences)
    # and it differs from beam search over log_softmax of the score (the normalisation matters)
    r3 = fd.beam_search(m, prompts, num_beams=3, max_new_tokens=8)
    assert not np.array_equal(r.sequences_scores, r3.sequences_scores)


def test_sampling_reproducible_and_in_head(chars):
    expert, amateur, _ = chars
    prompts = [expert.encode("Alice was "), expert.encode("The ")]
    smp = fd.Sampler(temperature=1.0, top_p=0.95)
    a = fd.contrastive_generate(expert, amateur, prompts, max_new_tokens=40, sampler=smp, seed=[1, 2])
    b = fd.contrastive_generate(expert, amateur, prompts, max_new_tokens=40, sampler=smp, seed=[1, 2])
    c = fd.contrastive_generate(expert, amateur, prompts, max_new_tokens=40, sampler=smp, seed=[3, 4])
    np.testing.assert_array_equal(a.sequences, b.sequences)
    assert not np.array_equal(a.sequences, c.sequences)
    # every sampled token lies in the expert's plausibility head
    for b_ in range(2):
        ctx = list(prompts[b_])
        for t in a.new_tokens(b_).tolist():
            s = ref.contrastive_logits(_last(expert, ctx), _last(amateur, ctx), alpha=0.1)
            assert np.isfinite(s[t])
            ctx.append(t)
    # a row's tokens do not depend on its batch neighbour
    one = fd.contrastive_generate(expert, amateur, prompts[1:], max_new_tokens=40, sampler=smp, seed=[2])
    assert one.new_tokens(0).tolist() == a.new_tokens(1).tolist()


def test_guidance_generate_matches_hf_processor_loop():
    torch = pytest.importorskip("torch", reason="torch is in the test extra")
    lp = pytest.importorskip("transformers.generation.logits_process",
                             reason="transformers is in the test extra")
    m = NGramModel(vocab_size=30, order=3, seed=2)
    prompt, neg, g, n = [1, 2, 3, 4], [5, 6], 2.5, 20

    class HFish:  # the model as HF's processor calls it (no cache: use_cache=False)
        def __call__(self, input_ids, attention_mask=None, use_cache=None, past_key_values=None):
            class Out(dict):
                pass
            o = Out()
            o.logits = torch.from_numpy(np.asarray(m(input_ids.numpy())))
            return o

    for uncond_ids in (neg, None):
        proc = lp.UnbatchedClassifierFreeGuidanceLogitsProcessor(
            g, HFish(), unconditional_ids=None if uncond_ids is None else torch.tensor([uncond_ids]),
            use_cache=False)
        seq = list(prompt)
        for _ in range(n):
            scores = torch.from_numpy(_last(m, seq)[None, :].copy())
            s = proc(torch.tensor([seq]), scores)
            seq.append(int(torch.argmax(s, dim=-1)))
        r = fd.contrastive_generate(m, None, [prompt], max_new_tokens=n, guidance_scale=g,
                                    amateur_input_ids=None if uncond_ids is None else [uncond_ids])
        assert r.new_tokens(0).tolist() == seq[len(prompt):]


@pytest.mark.parametrize("kw, exc, match", [
    (dict(alpha=1.5), ValueError, "alpha"),
    (dict(alpha=[0.1, -0.1]), ValueError, r"alpha.*row 1"),
    (dict(amateur_temperature=0.0), ValueError, "amateur_temperature"),
    (dict(amateur_temperature=-2.0), ValueError, "amateur_temperature"),
    (dict(beta=-1.0), ValueError, "beta"),
    (dict(amateur_context=0), ValueError, "amateur_context"),
    (dict(amateur_context=2.5), TypeError, "amateur_context"),
    (dict(guidance_scale=1.5, beta=0.5), ValueError, "beta"),
    (dict(guidance_scale=float("nan")), ValueError, "guidance_scale"),
    (dict(num_beams=0), ValueError, "num_beams"),
    (dict(length_penalty=1.0), TypeError, "length_penalty"),
    (dict(amateur_input_ids=[[1]]), ValueError, "amateur_input_ids"),
    (dict(alpha=[0.1, 0.2, 0.3]), ValueError, "alpha"),
])
def test_generate_bad_arguments(kw, exc, match):
    expert, amateur = NGramModel(vocab_size=16, seed=0), NGramModel(vocab_size=16, order=2, seed=1)
    calls = []
    with pytest.raises(exc, match=match):
        fd.contrastive_generate(lambda ids: calls.append(1) or expert(ids), amateur, [[1, 2], [3]],
                                max_new_tokens=5, **kw)
    assert not calls  # raised before any model call


def test_vocab_mismatch():
    expert = NGramModel(vocab_size=16, seed=0)
    with pytest.raises(ValueError, match=r"amateur's vocabulary \(17 tokens\) differs from the expert's \(16\)"):
        fd.contrastive_generate(expert, NGramModel(vocab_size=17, seed=1), [[1]], max_new_tokens=3)
    # undeclared vocabularies (plain callables) are checked on their first output
    with pytest.raises(ValueError, match=r"vocabulary \(17 tokens\) differs"):
        fd.contrastive_generate(lambda i: expert(i), lambda i: NGramModel(vocab_size=17)(i), [[1]],
                                max_new_tokens=3)
    with pytest.raises(ValueError, match="amateur=None"):
        fd.contrastive_generate(expert, None, [[1]], max_new_tokens=3)


def test_session_truncate_and_select():
    expert, amateur = NGramModel(vocab_size=12, order=3, seed=0), NGramModel(vocab_size=12, order=3, seed=1)
    for W in (None, 2):
        m = fd.ContrastiveModel(expert, amateur, amateur_context=W, beta=0.5)
        s, first = m.start_session([np.array([1, 2, 3]), np.array([4])])
        y1 = s.extend(np.array([[5, 6], [7, 8]]))
        s.truncate(np.array([4, 2]))  # drop the last token of each row
        y2 = s.extend(np.array([[6], [8]]))
        np.testing.assert_array_equal(y2[:, 0], y1[:, 1])
        s.select(np.array([1, 1, 0]))
        y3 = s.extend(np.array([[9], [9], [9]]))
        np.testing.assert_array_equal(y3[0], y3[1])
        # a fresh session on the same histories gives the same scores (the amateur's window too)
        s2, _ = m.start_session([np.array([4, 7, 8]), np.array([1, 2, 3, 5, 6])])
        np.testing.assert_array_equal(s2.extend(np.array([[9], [9]])), y3[1:])
        with pytest.raises(ValueError, match="lengths"):
            s.truncate(np.array([0, 1, 1]))


# -- 3. properties ---------------------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def _pair_case(draw):
    B, V = draw(st.integers(1, 4)), draw(st.integers(1, 130))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dts = [draw(st.sampled_from([np.float32, np.float64, np.float16])) for _ in range(2)]
    xs = []
    for dt in dts:
        x = rng.normal(0, draw(st.sampled_from([0.1, 1.0, 5.0, 30.0])), (B, V))
        for _ in range(draw(st.integers(0, 4))):  # -inf, and rarely NaN / +inf
            x[rng.integers(B), rng.integers(V)] = draw(st.sampled_from([-np.inf] * 6 + [np.nan, np.inf]))
        if draw(st.integers(0, 9)) == 0:
            x[rng.integers(B)] = -np.inf
        if draw(st.booleans()):  # a row-strided view
            big = np.zeros((B, V + 5), dt)
            big[:, 2:2 + V] = x
            xs.append(big[:, 2:2 + V])
        else:
            xs.append(x.astype(dt))

    def param(vals, bad):
        pool = vals + (bad if draw(st.integers(0, 5)) == 0 else [])
        if draw(st.booleans()):
            return draw(st.sampled_from(pool))
        return np.array([draw(st.sampled_from(pool)) for _ in range(B)])

    kw = dict(alpha=param([0.0, 1e-4, 0.1, 0.5, 1.0], [-0.1, 1.5, np.nan]),
              amateur_temperature=param([0.25, 1.0, 3.0], [0.0, -1.0, np.inf]),
              beta=None if draw(st.booleans()) else param([0.0, 0.5, 2.0], [-0.5, np.inf]))
    return xs[0], xs[1], kw


@settings(max_examples=300, deadline=None)
@given(_pair_case())
def test_contrastive_property(case):
    e, a, kw = case
    e0, a0 = e.copy(), a.copy()
    try:
        want = ref.contrastive_logits(e, a, **kw)
    except ValueError as exc:
        with pytest.raises(ValueError):
            fd.contrastive_logits(e, a, **kw)
        assert str(exc)
        return
    finally:
        np.testing.assert_array_equal(e, e0)
        np.testing.assert_array_equal(a, a0)
    got = fd.contrastive_logits(e, a, **kw)
    _same(got, want, exact=kw["beta"] is not None and want.dtype == np.float32)
    np.testing.assert_array_equal(e, e0)
    np.testing.assert_array_equal(a, a0)


@settings(max_examples=200, deadline=None)
@given(_pair_case(), st.sampled_from([0.0, 1.0, 1.5, 4.0, -2.0]), st.booleans())
def test_guidance_property(case, g, normalize):
    c, u, _ = case
    try:
        want = ref.guidance_logits(c, u, g, normalize=normalize)
    except ValueError:
        with pytest.raises(ValueError):
            fd.guidance_logits(c, u, g, normalize=normalize)
        return
    got = fd.guidance_logits(c, u, g, normalize=normalize)
    if want.dtype == np.float64:
        fin = np.isfinite(want)
        np.testing.assert_array_equal(np.isfinite(got), fin)
        np.testing.assert_allclose(got[fin], want[fin], rtol=1e-12, atol=1e-12)
    else:
        _same(got, want, exact=not normalize)


def test_empty_batch():
    e = np.zeros((0, 5), np.float32)
    assert fd.contrastive_logits(e, e).shape == (0, 5)
    assert fd.guidance_logits(e, e, 2.0).shape == (0, 5)
