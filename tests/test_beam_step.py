"""ops.beam_step: the fused log_softmax + beam score + top-k over each group of beams.

* Bit-exact against fastdecode._reference.beam_step fed the core's own log-probabilities
  (fd.log_softmax, which the kernel must reproduce bit for bit): dtypes (float32, float64, float16,
  bfloat16 as a torch tensor and as uint16 bits with dtype="bfloat16") x layouts (contiguous,
  row-strided view) x group sizes x k (1, 2 * beams, the whole group) x normalize, on rows with
  -inf masks and exact ties, V from 1 to 50257.
* Against the reference's own float64 log-softmax and against torch
  (log_softmax + scores[:, None], topk over the flattened group): the same values within 1e-6
  relative, and the same (row, token) wherever the value is not tied.
* Bad input names the argument; thread counts give bitwise-identical results.
"""

import numpy as np
import pytest

import fastdecode as fd
from fastdecode import _kernels
from fastdecode import _reference as ref
from fastdecode._array import as_logits
from fastdecode.ops import beam_step

from conftest import assert_bits_equal, make_rows, needs_torch, to_numpy, torch

DTYPES = ("float32", "float64", "float16", "bfloat16_torch", "bfloat16_bits")


def _rows(rng, R, V):
    """R rows of assorted characters: spread, peaked, -inf masks, coarse ties, integer ties."""
    kinds = ("normal", "neginf", "ties", "peaked", "zipf", "extreme")
    x = np.concatenate([make_rows(rng, kinds[i % len(kinds)], 1, V) for i in range(R)])
    if R >= 3:
        x[2] = np.round(rng.normal(0.0, 2.0, V))  # integer logits: ties within the row
        x[R - 1] = x[0]  # a copy of row 0: ties across rows (with an equal beam score)
    return x


def _scores(rng, R):
    b = rng.normal(-3.0, 1.0, R).astype(np.float32)
    b[R - 1] = b[0]
    if R >= 4:
        b[1] = -np.inf  # a dead beam
        b[3] = np.round(b[3])
    return b


def _as(x32, dtype):
    """(what beam_step gets, the float32/float64 NumPy array of the same values)."""
    if dtype in ("float32", "float64", "float16"):
        a = x32.astype(dtype)
        return a, a
    t = torch.from_numpy(x32.copy()).to(torch.bfloat16)
    vals = t.float().numpy()
    if dtype == "bfloat16_torch":
        return t, vals
    return t.view(torch.int16).numpy().view(np.uint16), vals


def _strided(a):
    """A row-strided view of the same values (x[:, 1, :] of an (R, 3, V) array)."""
    if isinstance(a, np.ndarray):
        big = np.zeros((a.shape[0], 3, a.shape[1]), dtype=a.dtype)
        big[:, 1, :] = a
        return big[:, 1, :]
    big = torch.zeros((a.shape[0], 3, a.shape[1]), dtype=a.dtype)
    big[:, 1, :] = a
    return big[:, 1, :]


def _np(t):
    return to_numpy(t) if torch is not None and isinstance(t, torch.Tensor) else np.asarray(t)


def _call(x, b, k, dtype, **kw):
    if dtype == "bfloat16_bits":
        kw["dtype"] = "bfloat16"
    return beam_step(x, b, k, **kw)


def _ref_exact(vals, b, k, gs, normalize, x, dtype):
    """The reference fed the core's log-probabilities of the very same input."""
    lp = None
    if normalize:
        lp = _np(fd.log_softmax(x, dtype="bfloat16" if dtype == "bfloat16_bits" else None))
    return ref.beam_step(vals, b, k, group_size=gs, normalize=normalize, logprobs=lp)


def _assert_same(got, exp, msg):
    s, r, t = (_np(a) for a in got)
    assert s.dtype == np.float32 and r.dtype == np.int64 and t.dtype == np.int64, msg
    assert_bits_equal(s, exp[0], msg)
    np.testing.assert_array_equal(r, exp[1], err_msg=msg)
    np.testing.assert_array_equal(t, exp[2], err_msg=msg)


# ------------------------------------------------------------------------------------------------
# bit-exact against the reference


@needs_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["contig", "strided"])
@pytest.mark.parametrize("normalize", [True, False])
def test_matches_reference_bit_exact(rng, dtype, layout, normalize):
    R, V = 8, 300
    x32 = _rows(rng, R, V)
    b = _scores(rng, R)
    x, vals = _as(x32, dtype)
    if layout == "strided":
        x = _strided(x)
    before = _np(x).copy()
    for gs in (1, 2, 4, 8):
        for k in sorted({1, 2 * gs, 7, gs * V}):
            got = _call(x, b, k, dtype, group_size=gs, normalize=normalize)
            exp = _ref_exact(vals, b, k, gs, normalize, x, dtype)
            _assert_same(got, exp, f"{dtype} {layout} gs={gs} k={k} normalize={normalize}")
            if "torch" in dtype:
                assert all(isinstance(a, torch.Tensor) for a in got)
    np.testing.assert_array_equal(_np(x), before)  # inputs untouched


@pytest.mark.parametrize("V", [1, 2, 63, 64, 65, 1000, 50257])
@pytest.mark.parametrize("normalize", [True, False])
def test_vocabulary_sizes(rng, V, normalize):
    R, gs = 6, 3
    x = _rows(rng, R, V)
    x[:, 0] = np.maximum(x[:, 0], -5.0)  # every row keeps a finite logit
    b = _scores(rng, R)
    for k in sorted({1, min(6, gs * V), min(64, gs * V), gs * V} if V < 1000 else {1, 6, 64}):
        exp = _ref_exact(x, b, k, gs, normalize, x, "float32")
        _assert_same(beam_step(x, b, k, group_size=gs, normalize=normalize), exp,
                     f"V={V} k={k} normalize={normalize}")


def test_strided_view_is_read_in_place():
    x = np.zeros((4, 3, 100), dtype=np.float32)
    view = x[:, 1, :]
    assert as_logits(view).array is view  # no copy on the way to the kernel
    view[:] = np.arange(100, dtype=np.float32)
    s, r, t = beam_step(view, np.zeros(4), 3, group_size=2, normalize=False)
    np.testing.assert_array_equal(r, [[0, 1, 0], [2, 3, 2]])
    np.testing.assert_array_equal(t, [[99, 99, 98], [99, 99, 98]])


def test_ties_by_flat_index():
    # four equal rows and equal scores: every candidate of a token is tied across the rows
    x = np.tile(np.array([[0.0, 3.0, 3.0, 1.0]], dtype=np.float32), (4, 1))
    for normalize in (True, False):
        s, r, t = beam_step(x, np.zeros(4), 6, group_size=4, normalize=normalize)
        np.testing.assert_array_equal(r, [[0, 0, 1, 1, 2, 2]])
        np.testing.assert_array_equal(t, [[1, 2, 1, 2, 1, 2]])
        assert len(set(s.ravel().tolist())) == 1


def test_neg_inf_candidates_fill_k():
    x = np.full((2, 5), -np.inf, dtype=np.float32)
    x[0, 3] = 1.0
    x[1, 1] = 0.0
    s, r, t = beam_step(x, [0.0, -1.0], 5, normalize=False)
    np.testing.assert_array_equal(s, [[1.0, -1.0, -np.inf, -np.inf, -np.inf]])
    np.testing.assert_array_equal(r, [[0, 1, 0, 0, 0]])
    np.testing.assert_array_equal(t, [[3, 1, 0, 1, 2]])
    s, r, t = beam_step(x, [0.0, -1.0], 10, normalize=True)
    np.testing.assert_array_equal(s[0, :2], [0.0, -1.0])  # one finite logit: lp = 0
    assert np.isneginf(s[0, 2:]).all()
    np.testing.assert_array_equal(r[0, 2:] * 5 + t[0, 2:], [0, 1, 2, 4, 5, 7, 8, 9])


def test_all_neg_inf_row():
    x = np.zeros((2, 4), dtype=np.float32)
    x[1] = -np.inf
    with pytest.raises(ValueError, match=r"logits row 1 has no finite value"):
        beam_step(x, [0.0, 0.0], 2)
    with pytest.raises(ValueError, match=r"logits row 1"):
        fd.log_softmax(x)  # the same rule as log_softmax
    s, r, t = beam_step(x, [0.0, 0.0], 8, normalize=False)
    assert np.isneginf(s[0, 4:]).all() and (r[0, 4:] == 1).all()


def test_hf_first_step_scores():
    """HF starts beams 1.. at -1e9 so that the first step expands beam 0 only."""
    rng = np.random.default_rng(3)
    beams, V = 4, 1000
    x = np.tile(rng.normal(size=(1, V)).astype(np.float32), (2 * beams, 1))
    b = np.tile(np.array([0.0] + [-1e9] * (beams - 1), dtype=np.float32), 2)
    s, r, t = beam_step(x, b, 2 * beams, group_size=beams)
    np.testing.assert_array_equal(r, [[0] * 8, [4] * 8])
    lp = _np(fd.log_softmax(x[0]))
    np.testing.assert_array_equal(t[0], np.argsort(-lp, kind="stable")[:8])


# ------------------------------------------------------------------------------------------------
# against independent computations


def _untied_positions(vals, extra, tol):
    """Positions j of the best-first values whose neighbours (and the next value after the k-th)
    are more than tol away: there the (row, token) is determined."""
    v = np.concatenate([vals, [extra]]).astype(np.float64)
    gap = np.abs(np.diff(v)) > tol * np.maximum(1.0, np.abs(v[1:]))
    left = np.concatenate([[True], gap[:-1]])
    return np.nonzero(left & gap)[0]


@needs_torch
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16_torch", "float64"])
@pytest.mark.parametrize("beams,V", [(1, 50257), (4, 50257), (8, 1000), (3, 7)])
def test_matches_torch(rng, dtype, beams, V):
    G = 2
    x32 = (rng.normal(size=(G * beams, V)) * rng.uniform(1, 5, (G * beams, 1))).astype(np.float32)
    x32[0, rng.random(V) < 0.2] = -np.inf
    x32[0, 0] = 1.0
    x, vals = _as(x32, dtype)
    b = rng.normal(-2.0, 1.0, G * beams).astype(np.float32)
    k = min(2 * beams, beams * V)
    s, r, t = (_np(a) for a in beam_step(x, b, k, group_size=beams))
    xt = torch.from_numpy(np.asarray(vals, dtype=np.float32))
    full = (torch.log_softmax(xt, -1) + torch.from_numpy(b)[:, None]).view(G, -1)
    tv, ti = torch.topk(full, k + 1, dim=1) if beams * V > k else torch.topk(full, k, dim=1)
    tv, ti = tv.numpy(), ti.numpy()
    for g in range(G):
        # torch sums exp in float32: its log-softmax is off by up to ~7e-6 on 50k-token rows
        # (fastdecode's by < 2e-6, the float32 rounding of values down to -40), hence the atol
        np.testing.assert_allclose(s[g], tv[g, :k], rtol=1e-6, atol=2e-5)
        extra = tv[g, k] if tv.shape[1] > k else -np.inf
        for j in _untied_positions(tv[g, :k], extra, 5e-5):
            assert r[g, j] == g * beams + ti[g, j] // V and t[g, j] == ti[g, j] % V, (g, j)


@pytest.mark.parametrize("normalize", [True, False])
def test_matches_reference_own_log_softmax(rng, normalize):
    """The reference's float64 log-softmax: the same values within 1e-6, the same ids off ties."""
    R, V, gs = 6, 5000, 3
    x = _rows(rng, R, V)
    b = _scores(rng, R)
    for k in (1, 6, 100):
        s, r, t = beam_step(x, b, k, group_size=gs, normalize=normalize)
        es, er, et = ref.beam_step(x, b, k + 1, group_size=gs, normalize=normalize)
        np.testing.assert_allclose(s, es[:, :k], rtol=1e-6, atol=1e-6)
        for g in range(R // gs):
            for j in _untied_positions(es[g, :k], es[g, k], 1e-5):
                assert (r[g, j], t[g, j]) == (er[g, j], et[g, j]), (k, g, j)


# ------------------------------------------------------------------------------------------------
# bad input

X = np.random.default_rng(0).normal(size=(4, 40)).astype(np.float32)
Z4 = np.zeros(4, dtype=np.float32)


def _with(x, r, c, v):
    y = x.copy()
    y[r, c] = v
    return y


BAD = [
    ("k0", lambda: beam_step(X, Z4, 0), ValueError, r"\bk\b"),
    ("k_neg", lambda: beam_step(X, Z4, -3), ValueError, r"\bk\b"),
    ("k_big", lambda: beam_step(X, Z4, 161), ValueError, r"\bk\b"),
    ("k_big_group", lambda: beam_step(X, Z4, 81, group_size=2), ValueError, r"\bk\b"),
    ("k_float", lambda: beam_step(X, Z4, 2.0), TypeError, r"\bk\b"),
    ("k_bool", lambda: beam_step(X, Z4, True), TypeError, r"\bk\b"),
    ("gs_3", lambda: beam_step(X, Z4, 2, group_size=3), ValueError, "group_size"),
    ("gs_0", lambda: beam_step(X, Z4, 2, group_size=0), ValueError, "group_size"),
    ("gs_float", lambda: beam_step(X, Z4, 2, group_size=2.0), TypeError, "group_size"),
    ("nan_logits", lambda: beam_step(_with(X, 2, 7, np.nan), Z4, 2), ValueError,
     r"logits row 2 contains NaN \(column 7\)"),
    ("inf_logits", lambda: beam_step(_with(X, 3, 1, np.inf), Z4, 2, normalize=False),
     ValueError, r"logits row 3 contains \+inf \(column 1\)"),
    ("nan_scores", lambda: beam_step(X, [0, 0, np.nan, 0], 2), ValueError, r"beam_scores\[2\]"),
    ("inf_scores", lambda: beam_step(X, [0, np.inf, 0, 0], 2), ValueError, r"beam_scores\[1\]"),
    ("big_scores", lambda: beam_step(X, [0, 0, 0, 1e39], 2), ValueError, r"beam_scores\[3\]"),
    ("scores_short", lambda: beam_step(X, [0, 0, 0], 2), ValueError, "beam_scores"),
    ("scores_2d", lambda: beam_step(X, np.zeros((4, 1)), 2), ValueError, "beam_scores"),
    ("scores_scalar", lambda: beam_step(X, 0.0, 2), ValueError, "beam_scores"),
    ("scores_str", lambda: beam_step(X, ["a"] * 4, 2), TypeError, "beam_scores"),
    ("logits_1d", lambda: beam_step(X[0], Z4[:1], 2), ValueError, "logits"),
    ("logits_3d", lambda: beam_step(X[None], Z4, 2), ValueError, "logits"),
    ("logits_int", lambda: beam_step(X.astype(np.int64), Z4, 2), TypeError, "logits"),
    ("logits_empty", lambda: beam_step(X[:0], Z4[:0], 2), ValueError, "logits"),
]


@pytest.mark.parametrize("call,exc,match", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("args,exc,match", [
    ((X, Z4.astype(np.float64), 2, 4, True, 1), TypeError, "beam_scores"),
    ((X, Z4[:3], 2, 4, True, 1), ValueError, "beam_scores"),
    ((X, np.array([0, np.nan, 0, 0], np.float32), 2, 4, True, 1), ValueError, "beam_scores"),
    ((X, Z4, 0, 4, True, 1), ValueError, r"\bk\b"),
    ((X, Z4, 161, 4, True, 1), ValueError, r"\bk\b"),
    ((X, Z4, 2, 3, True, 1), ValueError, "group_size"),
    ((X, Z4, 2, 0, True, 1), ValueError, "group_size"),
    ((X[:, ::2], Z4, 2, 4, True, 1), ValueError, "logits"),
    ((X, Z4, 2, 4, True), TypeError, "beam_step"),
])
def test_binding_is_strict(args, exc, match):
    with pytest.raises(exc, match=match):
        _kernels.beam_step(*args)


def test_no_reference_leaks():
    """Successful and failing calls (before and after the results are allocated) leave the
    reference counts of the inputs unchanged; the results are referenced by the tuple only."""
    import sys

    x, b, xn = X.copy(), Z4.copy(), _with(X, 3, 3, np.nan)
    before = [sys.getrefcount(a) for a in (x, b, xn)]
    for _ in range(200):
        res = _kernels.beam_step(x, b, 3, 2, True, 1)
        with pytest.raises(ValueError):
            _kernels.beam_step(x, b, 0, 2, True, 1)
        with pytest.raises(ValueError):
            _kernels.beam_step(xn, b, 3, 2, True, 1)
    assert [sys.getrefcount(a) for a in (x, b, xn)] == before
    s = res[0]
    del res
    assert sys.getrefcount(s) == 2


def test_empty_batch_with_group_size():
    s, r, t = beam_step(X[:0], Z4[:0], 3, group_size=2)
    assert s.shape == r.shape == t.shape == (0, 3)


@needs_torch
def test_torch_inputs():
    xt = torch.from_numpy(X.copy())
    s, r, t = beam_step(xt, torch.zeros(4, dtype=torch.bfloat16), 3, group_size=2)
    assert isinstance(s, torch.Tensor) and s.dtype == torch.float32 and r.dtype == torch.int64
    es, er, et = beam_step(X, Z4, 3, group_size=2)
    assert_bits_equal(s.numpy(), es)
    np.testing.assert_array_equal(r.numpy(), er)
    with pytest.raises(ValueError, match=r"logits row 1 contains NaN"):
        beam_step(torch.from_numpy(_with(X, 1, 0, np.nan)), torch.zeros(4), 3)


# ------------------------------------------------------------------------------------------------
# threads


@pytest.fixture
def threads():
    before = fd.get_num_threads()
    yield fd.set_num_threads
    fd.set_num_threads(before)


@pytest.mark.parametrize("normalize", [True, False])
def test_thread_count_invariance(threads, normalize):
    rng = np.random.default_rng(11)
    R, V, gs = 16, 50257, 4
    x = (rng.normal(size=(R, V)) * 3).astype(np.float32)
    x[5, rng.random(V) < 0.5] = -np.inf
    x[9] = np.round(x[9])
    b = rng.normal(-1, 1, R).astype(np.float32)
    assert R * V >= _kernels.THREAD_MINSIZE
    threads(1)
    one = beam_step(x, b, 2 * gs, group_size=gs, normalize=normalize)
    for n in (2, 3, 8):
        threads(n)
        got = beam_step(x, b, 2 * gs, group_size=gs, normalize=normalize)
        for a, c in zip(one, got):
            assert_bits_equal(a, c, f"{n} threads")
    x[13, 7] = np.nan
    x[6, 2] = np.nan
    for n in (1, 2, 4):
        threads(n)
        with pytest.raises(ValueError, match=r"logits row 6 contains NaN \(column 2\)"):
            beam_step(x, b, 2 * gs, group_size=gs)
