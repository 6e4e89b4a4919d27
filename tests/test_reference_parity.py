"""Every public op against its NumPy twin in fastdecode._reference.

Matrix: dtype (float32, float64, float16, bfloat16 via torch) x layout (contiguous (B, V),
row-strided view x[:, 1, :] of a (B, S, V) array, a single (V,) row) x output (out=None, a
separate out=, out= the input itself), plus per-row parameter arrays, V = 1, and
"C raised <=> reference raised" on a matrix of edge inputs. Inputs must be untouched unless they
are the out= array.
"""

import numpy as np
import pytest

import fastdecode as fd
from fastdecode import _reference as ref

from conftest import (FILTERS, assert_bits_equal, assert_filter_match, kept_mask, make_rows,
                      to_numpy, torch)

B, V, T, S = 7, 257, 24, 3
DTYPES = ("float32", "float64", "float16", "bfloat16")
LAYOUTS = ("contig", "strided", "1d")
OUTS = ("none", "separate", "inplace")


# ------------------------------------------------------------------------------------------------
# inputs


def base_rows(rng, b=B, v=V):
    kinds = ("normal", "ties", "neginf", "peaked", "extreme", "zipf", "flat")
    return np.concatenate([make_rows(rng, kinds[i % len(kinds)], 1, v) for i in range(b)])


def to_dtype(x32, dtype):
    """(array as handed to fastdecode, float32 NumPy copy of the exact same values)."""
    if dtype == "bfloat16":
        t = torch.from_numpy(x32.copy()).to(torch.bfloat16)
        return t, t.float().numpy()
    a = x32.astype(dtype)
    return a, a.astype(np.float64) if dtype == "float64" else a.astype(np.float32)


def with_layout(a, layout):
    """Puts a (B, V) array/tensor into the requested layout (a view where asked)."""
    if layout == "contig":
        return a
    if layout == "1d":
        return a[0]
    if isinstance(a, np.ndarray):
        big = np.zeros((a.shape[0], S, a.shape[1]), dtype=a.dtype)
        big[:, 1, :] = a
        view = big[:, 1, :]
        assert not view.flags.c_contiguous
        return view
    big = torch.zeros((a.shape[0], S, a.shape[1]), dtype=a.dtype)
    big[:, 1, :] = a
    return big[:, 1, :]


def snapshot(a):
    return to_numpy(a).copy() if torch is not None and isinstance(a, torch.Tensor) else a.copy()


def as_f(a):
    """Output (array or tensor) -> NumPy float array of identical values (bf16 -> float32)."""
    return to_numpy(a)


def round_to(x, dtype):
    """Round float32/float64 reference results to the storage dtype."""
    if dtype == "bfloat16":
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(
            torch.bfloat16).float().numpy()
    if dtype == "float64":
        return x.astype(np.float64)
    return x.astype(dtype).astype(np.float32)


def histories(rng, b=B, t=T, alphabet=6):
    ids = rng.integers(0, alphabet, (b, t)).astype(np.int64)
    ids[:, ::5] = rng.integers(0, V, (b, len(range(0, t, 5))))
    lengths = rng.integers(0, t + 1, b).astype(np.int64)
    lengths[0] = t
    return ids, lengths


# ------------------------------------------------------------------------------------------------
# one call per op, shared by fastdecode and the reference (which has no out=)


def _fprm(name, per_row):
    scal = {"top_k": 5, "top_p": 0.9, "min_p": 0.1, "typical_p": 0.9, "epsilon_cutoff": 1e-3,
            "eta_cutoff": 1e-3, "top_n_sigma": 1.0}[name]
    rows = {"top_k": [0, 1, 3, 10, V, V + 40, 2],
            "top_p": [0.0, 0.3, 0.5, 0.9, 0.99, 1.0, 0.7],
            "min_p": [0.0, 0.01, 0.1, 0.5, 1.0, 0.2, 0.05],
            "typical_p": [0.1, 0.5, 0.9, 0.95, 0.2, 0.0, 0.7],
            "epsilon_cutoff": [0.0, 1e-4, 1e-3, 1e-2, 0.1, 0.5, 0.9],
            "eta_cutoff": [0.0, 1e-4, 1e-3, 1e-2, 0.1, 0.5, 0.9],
            "top_n_sigma": [-1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 10.0]}[name]
    return np.array(rows) if per_row else scal


def _mk(name, per_row):
    if name == "top_n_sigma":
        return 1  # see test_top_n_sigma_min_tokens_to_keep
    return np.array([1, 3, 1, 2, 1, 3, 5]) if per_row else 3


def _call(mod, name, x, out, per_row, ctx):
    """Calls op `name` of module `mod` (fastdecode or the reference; the reference has no out=)."""
    kw = {} if out is None else {"out": out}
    n_rows = 1 if ctx["one"] else B
    pr = per_row and not ctx["one"]
    ids, lengths = ctx["ids"], ctx["lengths"]
    if ctx["one"]:
        ids, lengths = ids[0], lengths[0]
    if name in FILTERS:
        return getattr(mod, name)(x, _fprm(name, pr), min_tokens_to_keep=_mk(name, pr), **kw)
    if name in ("softmax", "log_softmax"):
        t = np.array([0.0, 0.5, 1.0, 2.0, 0.7, 1e-3, 10.0])[:n_rows] if pr else 0.7
        return getattr(mod, name)(x, temperature=t, **kw)
    if name == "repetition_penalty":
        th = np.array([0.5, 1.0, 1.3, 2.0, 1.7, 0.9, 3.0]) if pr else 1.3
        extra = dict(prompt_ignore_length=ctx["pil"], last_n=ctx["last_n"]) if pr else {}
        return mod.repetition_penalty(x, ids, th, lengths=lengths, **extra, **kw)
    if name == "presence_frequency_penalty":
        pres = np.array([0.0, 0.5, 1.0, -0.5, 2.0, 0.25, 1.5]) if pr else 0.5
        freq = np.array([0.25, 0.0, 0.1, 1.0, -0.2, 0.3, 0.7]) if pr else 0.3
        extra = dict(prompt_lengths=ctx["pil"], last_n=ctx["last_n"]) if pr else {}
        return mod.presence_frequency_penalty(x, ids, presence=pres, frequency=freq,
                                              lengths=lengths, **extra, **kw)
    if name == "no_repeat_ngram":
        return mod.no_repeat_ngram(x, ids, 2 if pr else 3, lengths=lengths, **kw)
    if name == "logit_bias":
        return mod.logit_bias(x, {0: 1.5, 5: -2.0, V - 1: 3.25, 7: 0.1}, **kw)
    if name == "suppress_tokens":
        return mod.suppress_tokens(x, [0, 3, V - 1, 3], **kw)
    if name == "allowed_tokens":
        return mod.allowed_tokens(x, [1, 2, 3, 100, V - 1], **kw)
    if name == "allowed_tokens_bitmask":
        bm = ctx["bitmask"][0] if (ctx["one"] or not pr) else ctx["bitmask"]
        return mod.allowed_tokens_bitmask(x, bm, **kw)
    if name == "bad_words":
        return mod.bad_words(x, ids, [[1], [2, 3], [4, 5, 0], [V - 1, 2]], lengths=lengths, **kw)
    raise KeyError(name)


LOGIT_OPS = FILTERS + ("repetition_penalty", "presence_frequency_penalty", "no_repeat_ngram",
                       "logit_bias", "suppress_tokens", "allowed_tokens",
                       "allowed_tokens_bitmask", "bad_words")
PROB_OPS = ("softmax", "log_softmax")


def make_ctx(rng):
    ids, lengths = histories(rng)
    return dict(ids=ids, lengths=lengths, one=False,
                pil=rng.integers(0, T // 2, B).astype(np.int64),
                last_n=rng.integers(0, T, B).astype(np.int64),
                bitmask=ref.bool_to_bitmask(rng.random((B, V)) < 0.5))


def compare(name, dtype, x_vals, got, exp, ctx, per_row):
    """x_vals: float32/float64 NumPy values of the input; got: fastdecode's output; exp: the
    reference output on x_vals (float32/float64)."""
    g = as_f(got)
    if dtype == "float16" and name not in PROB_OPS:
        g = g.astype(np.float32)  # exact
    if name in PROB_OPS:
        want = np.float64 if dtype == "float64" else np.float32
        assert g.dtype == want
        fin = np.isfinite(exp)
        assert np.array_equal(fin, np.isfinite(g))
        # log_softmax: z - logsumexp(z) in float32 carries an absolute error of a few ulps of the
        # row's magnitude (up to ~1e3 for the "extreme" rows)
        np.testing.assert_allclose(g[fin], exp[fin], rtol=2e-5,
                                   atol=2e-6 if name == "softmax" else 1e-4)
        return
    assert g.dtype == x_vals.dtype and g.shape == x_vals.shape
    if name in FILTERS:
        gk = kept_mask(x_vals, g)
        ek = kept_mask(x_vals, exp)
        pr = per_row and x_vals.ndim == 2
        # max_borderline_frac=0: at most 2 rows may sit within rounding of a threshold
        assert_filter_match(name, x_vals, gk, ek, _fprm(name, pr), _mk(name, pr),
                            allow_tie_choice=False, max_borderline_frac=0.0, what=dtype)
        return
    # penalties: float32 arithmetic with float32-rounded parameters (double for float64 rows),
    # one rounding to the storage dtype (penalty.c) -- the reference does the same, bit for bit
    exp = round_to(exp, dtype)
    assert_bits_equal(g, exp.astype(g.dtype), f"{name} {dtype}")


# softmax writes float32, so out= a float16/bfloat16 input is a dtype error (test_bad_input)
MATRIX = [(n, d, lay, o) for n in LOGIT_OPS + PROB_OPS for d in DTYPES for lay in LAYOUTS
          for o in OUTS if not (n in PROB_OPS and o == "inplace" and d in ("float16", "bfloat16"))]


@pytest.mark.parametrize("name,dtype,layout,out_mode", MATRIX)
def test_op_matrix(name, dtype, layout, out_mode, rng):
    if dtype == "bfloat16" and torch is None:
        pytest.skip("bfloat16 input needs torch (test extra)")
    x32 = base_rows(rng)
    ctx = make_ctx(rng)
    ctx["one"] = layout == "1d"
    arr, vals = to_dtype(x32, dtype)
    x = with_layout(arr, layout)
    vals = vals[0] if layout == "1d" else vals
    before = snapshot(x)

    out = None
    if out_mode == "separate":
        if name in PROB_OPS:
            want = np.float64 if dtype == "float64" else np.float32
            out = np.full(vals.shape, 7.0, dtype=want)
            if dtype == "bfloat16":
                out = torch.from_numpy(out)
        elif dtype == "bfloat16":
            out = torch.full(tuple(vals.shape), 7.0, dtype=torch.bfloat16)
        else:
            out = np.full(vals.shape, 7.0, dtype=dtype)
    elif out_mode == "inplace":
        out = x

    got = _call(fd, name, x, out, per_row=True, ctx=ctx)
    exp = _call(ref, name, vals.copy(), None, per_row=True, ctx=ctx)

    # the caller's type and shape come back; out= is the returned object
    if dtype == "bfloat16":
        assert isinstance(got, torch.Tensor)
        if name not in PROB_OPS:
            assert got.dtype == torch.bfloat16
    else:
        assert isinstance(got, np.ndarray)
    assert tuple(got.shape) == vals.shape
    if out is not None:
        assert got is out
    compare(name, dtype, vals, got, exp, ctx, per_row=True)
    if out_mode != "inplace":
        assert_bits_equal(to_numpy(x), before, "input was modified")


@pytest.mark.parametrize("name", LOGIT_OPS + PROB_OPS)
def test_scalar_parameters(name, rng):
    """The scalar-parameter branch (the matrix above uses per-row arrays)."""
    x = base_rows(rng)
    ctx = make_ctx(rng)
    got = _call(fd, name, x, None, per_row=False, ctx=ctx)
    exp = _call(ref, name, x.copy(), None, per_row=False, ctx=ctx)
    compare(name, "float32", x, got, exp, ctx, per_row=False)


@pytest.mark.parametrize("name", LOGIT_OPS + PROB_OPS)
def test_per_row_equals_row_by_row(name, rng):
    """A per-row parameter array gives, on every row, what that row alone with its scalar
    parameters gives (rows are independent)."""
    x = base_rows(rng)
    ctx = make_ctx(rng)
    whole = as_f(_call(fd, name, x, None, per_row=True, ctx=ctx))
    for r in range(B):
        sub = {k: (v[r:r + 1] if isinstance(v, np.ndarray) else v) for k, v in ctx.items()}
        got_r = as_f(_call_row(fd, name, x[r:r + 1], sub, r))
        assert_bits_equal(whole[r:r + 1], got_r, f"{name} row {r}")


def _call_row(mod, name, xr, ctx, r):
    """Like _call(per_row=True) restricted to row r, passing row r's parameters as scalars."""
    if name in FILTERS:
        return getattr(mod, name)(xr, np.asarray(_fprm(name, True))[r].item(),
                                  min_tokens_to_keep=int(np.broadcast_to(_mk(name, True), B)[r]))
    if name in PROB_OPS:
        t = [0.0, 0.5, 1.0, 2.0, 0.7, 1e-3, 10.0][r]
        return getattr(mod, name)(xr, temperature=t)
    if name == "repetition_penalty":
        th = [0.5, 1.0, 1.3, 2.0, 1.7, 0.9, 3.0][r]
        return mod.repetition_penalty(xr, ctx["ids"], th, lengths=int(ctx["lengths"][0]),
                                      prompt_ignore_length=int(ctx["pil"][0]),
                                      last_n=int(ctx["last_n"][0]))
    if name == "presence_frequency_penalty":
        pres = [0.0, 0.5, 1.0, -0.5, 2.0, 0.25, 1.5][r]
        freq = [0.25, 0.0, 0.1, 1.0, -0.2, 0.3, 0.7][r]
        return mod.presence_frequency_penalty(xr, ctx["ids"], presence=pres, frequency=freq,
                                              lengths=int(ctx["lengths"][0]),
                                              prompt_lengths=int(ctx["pil"][0]),
                                              last_n=int(ctx["last_n"][0]))
    return _call(mod, name, xr, None, per_row=True, ctx=dict(ctx, one=False))


SMALL_CALLS = {
    "top_k": lambda m, x, c: m.top_k(x, 3),
    "top_p": lambda m, x, c: m.top_p(x, 0.5),
    "min_p": lambda m, x, c: m.min_p(x, 0.5),
    "typical_p": lambda m, x, c: m.typical_p(x, 0.5),
    "epsilon_cutoff": lambda m, x, c: m.epsilon_cutoff(x, 0.5),
    "eta_cutoff": lambda m, x, c: m.eta_cutoff(x, 0.5),
    "top_n_sigma": lambda m, x, c: m.top_n_sigma(x, 1.0),
    "softmax": lambda m, x, c: m.softmax(x, temperature=np.array([0.0, 1.0, 2.0, 0.5])),
    "log_softmax": lambda m, x, c: m.log_softmax(x, temperature=np.array([0.0, 1.0, 2.0, 0.5])),
    "repetition_penalty": lambda m, x, c: m.repetition_penalty(x, c["ids"], 2.0,
                                                               lengths=c["lengths"]),
    "presence_frequency_penalty": lambda m, x, c: m.presence_frequency_penalty(
        x, c["ids"], presence=0.5, frequency=0.25, lengths=c["lengths"]),
    "no_repeat_ngram": lambda m, x, c: m.no_repeat_ngram(x, c["ids"], 2, lengths=c["lengths"]),
    "logit_bias": lambda m, x, c: m.logit_bias(x, {0: 0.5}),
    "suppress_tokens": lambda m, x, c: m.suppress_tokens(x, [0]),
    "allowed_tokens": lambda m, x, c: m.allowed_tokens(x, [0]),
    "allowed_tokens_bitmask": lambda m, x, c: m.allowed_tokens_bitmask(
        x, np.array([[1], [0], [1], [0]], np.int32)),
    "bad_words": lambda m, x, c: m.bad_words(x, c["ids"], [[0, 0]], lengths=c["lengths"]),
}


@pytest.mark.parametrize("dtype", ("float32", "float64", "float16"))
@pytest.mark.parametrize("name", LOGIT_OPS + PROB_OPS)
def test_vocab_of_one(name, dtype, rng):
    x = rng.normal(0, 1, (4, 1)).astype(dtype)
    ctx = dict(ids=np.zeros((4, 3), np.int64), lengths=np.array([3, 0, 1, 2]))
    got = SMALL_CALLS[name](fd, x, ctx)
    exp = SMALL_CALLS[name](ref, x.copy(), ctx)
    assert got.dtype == (exp.dtype if name in PROB_OPS else x.dtype)
    if name in PROB_OPS:
        np.testing.assert_allclose(got, exp, rtol=1e-6)
        np.testing.assert_array_equal(got if name == "softmax" else np.exp(got), 1.0)
    else:
        assert_bits_equal(got, exp)


@pytest.mark.parametrize("name", FILTERS)
def test_filters_many_rows(name, rng):
    """700 rows (100 of each kind, V in [300, 1500]) with per-row parameters and min_keep:
    the exact reference masks, lowest ids on ties (at most 2 rows within rounding per batch)."""
    draw = {"top_k": lambda n: rng.choice([0, 1, 2, 5, 20, 100, 2000], n),
            "top_p": lambda n: rng.choice([0.0, 0.1, 0.5, 0.8, 0.9, 0.95, 0.999, 1.0], n),
            "min_p": lambda n: rng.choice([0.0, 1e-3, 0.01, 0.05, 0.1, 0.3, 0.9, 1.0], n),
            "typical_p": lambda n: rng.choice([0.0, 0.05, 0.2, 0.5, 0.9, 0.95, 0.999], n),
            "epsilon_cutoff": lambda n: rng.choice([0.0, 1e-5, 1e-4, 1e-3, 0.01, 0.3], n),
            "eta_cutoff": lambda n: rng.choice([0.0, 1e-5, 1e-4, 1e-3, 0.01, 0.3], n),
            "top_n_sigma": lambda n: rng.choice([-1.0, 0.0, 0.1, 0.5, 1.0, 2.0, 4.0], n)}[name]
    for kind in ("flat", "normal", "peaked", "zipf", "ties", "neginf", "extreme"):
        n, v = 100, int(rng.integers(300, 1501))
        x = make_rows(rng, kind, n, v)
        prm = draw(n)
        mk = rng.choice([1, 1, 2, 3, 10], n) if name != "top_n_sigma" else 1
        got = getattr(fd, name)(x, prm, min_tokens_to_keep=mk)
        exp = ref.filter_mask(name, x, prm, min_tokens_to_keep=mk)
        assert_filter_match(name, x, kept_mask(x, got), exp, prm, mk, allow_tie_choice=False,
                            max_borderline_frac=0.0, what=kind)


# ------------------------------------------------------------------------------------------------
# reductions and argmax


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_entropy_varentropy_argmax(dtype, layout, rng):
    if dtype == "bfloat16" and torch is None:
        pytest.skip("bfloat16 input needs torch (test extra)")
    arr, vals = to_dtype(base_rows(rng), dtype)
    x = with_layout(arr, layout)
    vals = vals[0] if layout == "1d" else vals
    before = snapshot(x)
    h, v, a = fd.entropy(x), fd.varentropy(x), fd.argmax(x)
    hn, vn, an = to_numpy(h), to_numpy(v), to_numpy(a)
    assert hn.dtype == np.float64 and vn.dtype == np.float64 and an.dtype == np.int64
    assert hn.shape == vals.shape[:-1] and an.shape == vals.shape[:-1]
    np.testing.assert_allclose(hn, ref.entropy(vals), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(vn, ref.varentropy(vals), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(an, ref.argmax(vals))
    np.testing.assert_array_equal(an, np.argmax(vals, axis=-1))
    assert_bits_equal(to_numpy(x), before)


def test_argmax_first_of_ties():
    x = np.array([[0, 3, 1, 3, 3], [-np.inf, -np.inf, 2, 2, -np.inf], [5, 5, 5, 5, 5]],
                 dtype=np.float32)
    np.testing.assert_array_equal(fd.argmax(x), [1, 2, 0])
    assert fd.argmax(x[0]).shape == () and int(fd.argmax(x[0])) == 1


def test_entropy_known_values():
    x = np.array([[np.log(0.25)] * 4, [np.log(0.5)] * 2 + [-np.inf] * 2], dtype=np.float64)
    np.testing.assert_allclose(fd.entropy(x), [np.log(4), np.log(2)], rtol=1e-12)
    np.testing.assert_allclose(fd.varentropy(x), [0.0, 0.0], atol=1e-12)
    p = np.array([0.1, 0.2, 0.3, 0.4])
    h = -(p * np.log(p)).sum()
    np.testing.assert_allclose(fd.entropy(np.log(p)), h, rtol=1e-6)
    np.testing.assert_allclose(fd.varentropy(np.log(p)), (p * (np.log(p) + h) ** 2).sum(),
                               rtol=1e-5)
    assert fd.entropy(np.log(p)).shape == ()


def test_softmax_temperature_zero_is_one_hot_first_max():
    x = np.array([[1.0, 4.0, 4.0, -np.inf], [0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    np.testing.assert_array_equal(fd.softmax(x, temperature=0.0), [[0, 1, 0, 0], [1, 0, 0, 0]])
    ls = fd.log_softmax(x, temperature=0.0)
    np.testing.assert_array_equal(ls, [[-np.inf, 0, -np.inf, -np.inf], [0, -np.inf, -np.inf,
                                                                        -np.inf]])


# ------------------------------------------------------------------------------------------------
# conformance vectors (SPEC.md section 2, llama.cpp tests/test-sampling.cpp)


def _probs_after(f, p, *a, **k):
    out = f(np.log(np.array(p, dtype=np.float32)), *a, **k)
    return fd.softmax(out).astype(np.float64)


def test_conformance_vectors():
    np.testing.assert_allclose(_probs_after(fd.top_k, [.1, .2, .3, .4], 3),
                               [0, .222222, .333333, .444444], atol=1e-6)
    np.testing.assert_allclose(_probs_after(fd.top_p, [.1, .2, .3, .4], .7),
                               [0, 0, .428571, .571429], atol=1e-6)
    np.testing.assert_allclose(_probs_after(fd.min_p, [.1, .2, .3, .4], .51),
                               [0, 0, .3 / .7, .4 / .7], atol=1e-6)
    np.testing.assert_allclose(_probs_after(fd.top_n_sigma, [.1, .2, .3, .4], 1.0),
                               [0, 0, .428571, .571429], atol=1e-6)
    # typical {.4,.2,.2,.2} mass .5: H = 1.3322; s = |-ln p - H| = .416 for .4 and .277 for the
    # .2 tokens, which come first; their inclusive mass reaches .5 at the second .2 token, and HF
    # keeps every token with s <= s(crossing), i.e. all three tied .2 tokens (llama.cpp: same here).
    np.testing.assert_allclose(_probs_after(fd.typical_p, [.4, .2, .2, .2], .5),
                               [0, 1 / 3, 1 / 3, 1 / 3], atol=1e-6)


# ------------------------------------------------------------------------------------------------
# tie rules: m of a tied group at the boundary -> the m lowest ids, except top-p, which keeps the
# m highest ids (HF's stable ascending sort removes the lower ids first)


def test_tie_rules_at_the_boundary():
    x = np.zeros((1, 40), np.float32)  # 40 equal logits: every boundary is inside the tie
    for p in (0.05, 0.3, 0.51, 0.99):
        kept = np.isfinite(fd.top_p(x, p))[0]
        n = int(kept.sum())
        assert n == int(np.ceil(p * 40 - 1e-9)) or n == int(np.ceil(p * 40)), (p, n)
        assert kept[40 - n:].all() and not kept[:40 - n].any(), (p, np.nonzero(kept)[0])
    for mk in (1, 3, 7):
        kept = np.isfinite(fd.top_p(x, 0.0, min_tokens_to_keep=mk))[0]
        assert np.array_equal(np.nonzero(kept)[0], np.arange(40 - mk, 40))
        kept = np.isfinite(fd.min_p(np.r_[x[0], -5.0][None], 1.0, min_tokens_to_keep=mk))[0]
        assert kept[:40].all()  # all tied with the max: min_p keeps them all
    y = np.r_[np.zeros(10), np.full(30, -1.0)].astype(np.float32)
    # typical: a uniform-ish group; min_tokens_to_keep picks the lowest ids of the walk
    kept = np.isfinite(fd.typical_p(y, 0.01, min_tokens_to_keep=4))
    np.testing.assert_array_equal(kept, ref.filter_mask("typical_p", y, 0.01,
                                                        min_tokens_to_keep=4))
    # top_k keeps every token tied with the k-th value
    z = np.array([3, 1, 2, 2, 2, 0], np.float32)
    np.testing.assert_array_equal(np.isfinite(fd.top_k(z, 2)), [1, 0, 1, 1, 1, 0])


def test_top_n_sigma_min_tokens_to_keep():
    """SPEC 1: min_tokens_to_keep keeps at least that many of the highest logits in every
    filter."""
    x = np.array([[5.0, 1.0, 0.9, 0.8, 0.0, -1.0]], np.float32)
    got = np.isfinite(fd.top_n_sigma(x, 0.01, min_tokens_to_keep=3))
    np.testing.assert_array_equal(got, [[1, 1, 1, 0, 0, 0]])


def test_filter_value_is_written_and_rounded(rng):
    x = base_rows(rng)
    for dtype in ("float32", "float64", "float16"):
        xa = x.astype(dtype)
        got = fd.top_k(xa, 3, filter_value=-1e4)
        keep = kept_mask(xa, got, filter_value=-1e4)
        ek = ref.filter_mask("top_k", xa, 3)
        assert np.array_equal(keep | np.isneginf(xa), ek | np.isneginf(xa))
        assert (got[~keep] == np.asarray(-1e4, dtype=dtype)).all()
    got = fd.top_p(x.astype(np.float16), 0.5, filter_value=-1e6)  # rounds to -inf in float16
    assert np.isneginf(got[~kept_mask(x.astype(np.float16), got,
                                      filter_value=-np.inf)]).all()


# ------------------------------------------------------------------------------------------------
# penalties: details the matrix does not pin


def test_repetition_penalty_each_token_once():
    x = np.array([[2.0, -2.0, 1.0, 0.0]], np.float32)
    got = fd.repetition_penalty(x, np.array([[0, 0, 0, 1, 1]]), 2.0)
    np.testing.assert_array_equal(got, [[1.0, -4.0, 1.0, 0.0]])


def test_repetition_penalty_windows():
    x = np.arange(1, 11, dtype=np.float32)[None].repeat(2, 0)
    ids = np.array([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]])
    got = fd.repetition_penalty(x, ids, 2.0, lengths=[6, 4], prompt_ignore_length=[2, 1])
    exp = x.copy()
    exp[0, [3, 4, 5, 6]] /= 2
    exp[1, [2, 3, 4]] /= 2
    np.testing.assert_array_equal(got, exp)
    got = fd.repetition_penalty(x, ids, 2.0, lengths=[6, 4], last_n=2)
    exp = x.copy()
    exp[0, [5, 6]] /= 2
    exp[1, [3, 4]] /= 2
    np.testing.assert_array_equal(got, exp)


def test_presence_frequency_counts_generated_part():
    x = np.zeros((1, 6), np.float32)
    ids = np.array([[0, 1, 1, 2, 2, 2, 5]])
    got = fd.presence_frequency_penalty(x, ids, presence=1.0, frequency=0.5, prompt_lengths=2,
                                        lengths=6)
    np.testing.assert_allclose(got, [[0, -1.5, -2.5, 0, 0, 0]])
    got = fd.presence_frequency_penalty(x, ids, presence=1.0, frequency=0.5)
    np.testing.assert_allclose(got, [[-1.5, -2.0, -2.5, 0, 0, -1.5]])


def test_no_repeat_ngram_and_bad_words_small():
    x = np.zeros((2, 6), np.float32)
    ids = np.array([[1, 2, 3, 1, 2, 9], [1, 2, 3, 1, 2, 4]])
    ids[0, 5] = 0
    got = fd.no_repeat_ngram(x, ids, 3, lengths=[5, 6])
    # row 0: history 1 2 3 1 2 -> the trigram (1, 2, 3) bans 3; row 1: suffix (2, 4) never seen
    np.testing.assert_array_equal(np.isneginf(got), [[0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0]])
    got = fd.no_repeat_ngram(x, ids, 1, lengths=[2, 0])
    np.testing.assert_array_equal(np.isneginf(got), [[0, 1, 1, 0, 0, 0], [0] * 6])
    got = fd.bad_words(x, ids, [[5], [1, 2, 4], [2, 3]], lengths=[5, 6])
    # row 0 ends "... 1 2": (1, 2, 4) bans 4 and (2, 3) bans 3; row 1 ends "... 2 4": only the
    # single-token word 5 is banned
    np.testing.assert_array_equal(np.isneginf(got), [[0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 1]])


def test_logit_bias_forms(rng):
    x = base_rows(rng)
    ids = [3, 9, 3]
    vals = rng.normal(size=(B, 3))
    got = fd.logit_bias(x, (ids, vals))
    exp = x.copy()
    for j, t in enumerate(ids):
        exp[:, t] = (exp[:, t] + vals[:, j].astype(np.float32)).astype(np.float32)
    np.testing.assert_allclose(got, exp, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fd.logit_bias(x, (ids, vals[0])),
                               ref.logit_bias(x, (ids, vals[0])), rtol=1e-6, atol=1e-6)


def test_allowed_tokens_per_row_and_pack_bitmask(rng):
    x = base_rows(rng)
    lists = [list(rng.choice(V, size=rng.integers(1, 20), replace=False)) for _ in range(B)]
    assert_bits_equal(fd.allowed_tokens(x, lists), ref.allowed_tokens(x, lists))
    allowed = rng.random((B, V)) < 0.3
    packed = fd.pack_bitmask([list(np.nonzero(a)[0]) for a in allowed], V)
    np.testing.assert_array_equal(packed, ref.bool_to_bitmask(allowed))
    np.testing.assert_array_equal(ref.bitmask_to_bool(packed, V), allowed)
    assert_bits_equal(fd.allowed_tokens_bitmask(x, packed.view(np.uint32)),
                      ref.allowed_tokens_bitmask(x, packed))


# ------------------------------------------------------------------------------------------------
# "C raised <=> reference raised"


def _edge_inputs():
    good = np.random.default_rng(5).normal(size=(3, 40)).astype(np.float32)
    nan = good.copy()
    nan[1, 7] = np.nan
    pinf = good.copy()
    pinf[2, 0] = np.inf
    allneg = good.copy()
    allneg[1] = -np.inf
    ids = np.random.default_rng(6).integers(0, 40, (3, 8))
    bad_ids = ids.copy()
    bad_ids[2, 3] = 40
    neg_ids = ids.copy()
    neg_ids[0, 1] = -1
    return dict(good=good, nan=nan, pinf=pinf, allneg=allneg, one=good[:, :1].copy(),
                ids=ids, bad_ids=bad_ids, neg_ids=neg_ids)


E = _edge_inputs()

EDGE_CALLS = {
    "softmax": lambda m, x: m.softmax(x, temperature=0.5),
    "softmax_t0": lambda m, x: m.softmax(x, temperature=0.0),
    "log_softmax": lambda m, x: m.log_softmax(x),
    "entropy": lambda m, x: m.entropy(x),
    "argmax": lambda m, x: m.argmax(x),
    "top_k": lambda m, x: m.top_k(x, 3),
    "top_k_0": lambda m, x: m.top_k(x, 0),
    "top_p": lambda m, x: m.top_p(x, 0.5),
    "min_p": lambda m, x: m.min_p(x, 0.2),
    "typical_p": lambda m, x: m.typical_p(x, 0.5),
    "epsilon": lambda m, x: m.epsilon_cutoff(x, 0.01),
    "eta": lambda m, x: m.eta_cutoff(x, 0.01),
    "top_n_sigma": lambda m, x: m.top_n_sigma(x, 1.0),
    "repetition": lambda m, x: m.repetition_penalty(x, E["ids"][:x.shape[0]] % x.shape[1], 1.2),
    "presence": lambda m, x: m.presence_frequency_penalty(x, E["ids"] % x.shape[1],
                                                         presence=0.5),
    "ngram": lambda m, x: m.no_repeat_ngram(x, E["ids"] % x.shape[1], 2),
    "bias": lambda m, x: m.logit_bias(x, {0: 1.0}),
    "suppress": lambda m, x: m.suppress_tokens(x, [0]),
    "allowed": lambda m, x: m.allowed_tokens(x, [0]),
    "bitmask": lambda m, x: m.allowed_tokens_bitmask(x, np.ones(2, np.int32)),
    "bad_words": lambda m, x: m.bad_words(x, E["ids"] % x.shape[1], [[0]]),
    "sample_dist": lambda m, x: (m.sample(x, seed=1) if m is fd
                                 else m.sample_distribution(x)),
}

RAISE_PARAMS = {
    "top_k_neg": (lambda m, x: m.top_k(x, -1)),
    "top_k_frac": (lambda m, x: m.top_k(x, 2.5)),
    "top_p_hi": (lambda m, x: m.top_p(x, 1.5)),
    "top_p_neg": (lambda m, x: m.top_p(x, -0.1)),
    "top_p_rows_len": (lambda m, x: m.top_p(x, np.array([0.5, 0.6]))),
    "top_p_row_bad": (lambda m, x: m.top_p(x, np.array([0.5, 0.6, 1.1]))),
    "min_p_hi": (lambda m, x: m.min_p(x, 2.0)),
    "typical_neg": (lambda m, x: m.typical_p(x, -0.5)),
    "epsilon_hi": (lambda m, x: m.epsilon_cutoff(x, 1.0)),
    "eta_neg": (lambda m, x: m.eta_cutoff(x, -1e-3)),
    "min_keep_0": (lambda m, x: m.top_k(x, 2, min_tokens_to_keep=0)),
    "temp_neg": (lambda m, x: m.softmax(x, temperature=-1.0)),
    "temp_nan": (lambda m, x: m.softmax(x, temperature=np.nan)),
    "penalty_0": (lambda m, x: m.repetition_penalty(x, E["ids"], 0.0)),
    "penalty_neg": (lambda m, x: m.repetition_penalty(x, E["ids"], -1.0)),
    "ids_hi": (lambda m, x: m.repetition_penalty(x, E["bad_ids"], 1.2)),
    "ids_neg": (lambda m, x: m.presence_frequency_penalty(x, E["neg_ids"], presence=1.0)),
    "ids_rows": (lambda m, x: m.no_repeat_ngram(x, E["ids"][:2], 2)),
    "ids_float": (lambda m, x: m.repetition_penalty(x, E["ids"].astype(float), 1.2)),
    "ngram_0": (lambda m, x: m.no_repeat_ngram(x, E["ids"], 0)),
    "lengths_hi": (lambda m, x: m.no_repeat_ngram(x, E["ids"], 2, lengths=[8, 9, 1])),
    "bias_id": (lambda m, x: m.logit_bias(x, {40: 1.0})),
    "suppress_id": (lambda m, x: m.suppress_tokens(x, [-1])),
    "allowed_id": (lambda m, x: m.allowed_tokens(x, [40])),
    "bad_word_id": (lambda m, x: m.bad_words(x, E["ids"], [[1, 40]])),
    "bad_word_empty": (lambda m, x: m.bad_words(x, E["ids"], [[]])),
    "bitmask_short": (lambda m, x: m.allowed_tokens_bitmask(x, np.ones(1, np.int32))),
    "int_logits": (lambda m, x: m.top_k(x.astype(np.int32), 2)),
    "ndim3": (lambda m, x: m.top_p(x[None], 0.5)),
    "ndim0": (lambda m, x: m.softmax(np.float32(1.0))),
    "empty_vocab": (lambda m, x: m.softmax(x[:, :0])),
}


@pytest.mark.parametrize("data", ["good", "nan", "pinf", "allneg", "one"])
@pytest.mark.parametrize("call", sorted(EDGE_CALLS))
def test_raises_iff_reference_raises(call, data):
    x = E[data]
    outcomes = []
    for m in (fd, ref):
        try:
            EDGE_CALLS[call](m, x.copy())
            outcomes.append(None)
        except (ValueError, TypeError) as e:
            outcomes.append(type(e))
    assert outcomes[0] == outcomes[1], f"fastdecode: {outcomes[0]}, reference: {outcomes[1]}"


@pytest.mark.parametrize("case", sorted(RAISE_PARAMS))
def test_bad_parameters_raise_in_both(case):
    x = E["good"]
    outcomes = []
    for m in (fd, ref):
        try:
            RAISE_PARAMS[case](m, x.copy())
            outcomes.append(None)
        except (ValueError, TypeError) as e:
            outcomes.append(type(e))
    assert outcomes[1] is not None, "the reference accepted it"
    assert outcomes[0] == outcomes[1], f"fastdecode: {outcomes[0]}, reference: {outcomes[1]}"
