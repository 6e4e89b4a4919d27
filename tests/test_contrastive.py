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
