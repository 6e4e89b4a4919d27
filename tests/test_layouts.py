"""Memory layouts and array types: row-strided views used in place, odd layouts copied (and still
right), overlapping out=, read-only inputs, torch tensors in and out, bit-exact pass-through."""

import numpy as np
import pytest

import fastdecode as fd
from fastdecode import _reference as ref

from conftest import assert_bits_equal, bits, make_rows, needs_torch, torch

B, S, V = 5, 4, 300

OPS = {
    "top_k": lambda x, **k: fd.top_k(x, 7, **k),
    "top_p": lambda x, **k: fd.top_p(x, 0.8, **k),
    "min_p": lambda x, **k: fd.min_p(x, 0.05, **k),
    "typical_p": lambda x, **k: fd.typical_p(x, 0.7, **k),
    "epsilon_cutoff": lambda x, **k: fd.epsilon_cutoff(x, 2e-3, **k),
    "eta_cutoff": lambda x, **k: fd.eta_cutoff(x, 2e-3, **k),
    "top_n_sigma": lambda x, **k: fd.top_n_sigma(x, 1.0, **k),
    "repetition_penalty": lambda x, **k: fd.repetition_penalty(
        x, np.tile(np.arange(0, 60, 3), (x.shape[0], 1)) if x.ndim == 2 else np.arange(0, 60, 3),
        1.3, **k),
    "presence_frequency_penalty": lambda x, **k: fd.presence_frequency_penalty(
        x, np.tile([1, 1, 2, 9], (x.shape[0], 1)) if x.ndim == 2 else np.array([1, 1, 2, 9]),
        presence=0.5, frequency=0.25, **k),
    "logit_bias": lambda x, **k: fd.logit_bias(x, {2: 1.0, 299: -3.0}, **k),
    "suppress_tokens": lambda x, **k: fd.suppress_tokens(x, [0, 17], **k),
    "allowed_tokens": lambda x, **k: fd.allowed_tokens(x, list(range(0, 300, 7)), **k),
    "softmax": lambda x, **k: fd.softmax(x, temperature=0.9, **k),
    "log_softmax": lambda x, **k: fd.log_softmax(x, **k),
}
PROB = ("softmax", "log_softmax")


@pytest.mark.parametrize("op", sorted(OPS))
def test_row_strided_view_in_place(op, rng):
    """x[:, -1, :] of a (B, S, V) array: out= that view writes exactly that slice."""
    big = make_rows(rng, "normal", B * S, V).reshape(B, S, V)
    expected = OPS[op](np.ascontiguousarray(big[:, -1, :]))
    untouched = big[:, :-1, :].copy()
    view = big[:, -1, :]
    assert view.strides == (S * V * 4, 4)
    res = OPS[op](view, out=view)
    assert res is view
    assert_bits_equal(big[:, -1, :], expected, op)
    assert_bits_equal(big[:, :-1, :], untouched, "other positions")


@pytest.mark.parametrize("op", sorted(OPS))
def test_odd_layouts_give_the_contiguous_result(op, rng):
    x = make_rows(rng, "ties", B, V)
    expected = OPS[op](x)
    layouts = {
        "fortran": np.asfortranarray(x),
        "inner_stride": np.repeat(x, 2, axis=1)[:, ::2],
        "negative_row_stride": np.ascontiguousarray(x[::-1])[::-1],
        "byteswapped": x.astype(">f4"),
    }
    for name, a in layouts.items():
        before = a.copy()
        got = OPS[op](a)
        np.testing.assert_array_equal(np.asarray(got, dtype=got.dtype.newbyteorder("=")),
                                      expected, err_msg=name)
        np.testing.assert_array_equal(a, before, err_msg=f"{name}: input modified")
    # a row broadcast to B rows (row stride 0)
    xb = np.broadcast_to(x[0], (B, V))
    np.testing.assert_array_equal(OPS[op](xb), np.broadcast_to(OPS[op](x[:1]), (B, V)))


@pytest.mark.parametrize("op", sorted(OPS))
def test_misaligned_input_is_copied(op, rng):
    """_array.py: misaligned arrays are copied once (the binding itself insists on alignment)."""
    x = make_rows(rng, "normal", B, V)
    raw = np.zeros(x.nbytes + 8, dtype=np.uint8)
    off = next(o for o in (1, 2, 3) if (raw.ctypes.data + o) % 4)
    mis = raw[off:off + x.nbytes].view(np.float32).reshape(x.shape)
    mis[...] = x
    assert not mis.flags.aligned
    np.testing.assert_array_equal(OPS[op](mis), OPS[op](x))


def test_no_reference_leaks(rng):
    """Repeated calls, successful or failing, leave the inputs' reference counts unchanged."""
    import sys

    x = make_rows(rng, "normal", B, V)
    ids = np.tile(np.arange(10), (B, 1))
    bad = ids.copy()
    bad[3, 3] = V
    before = (sys.getrefcount(x), sys.getrefcount(ids), sys.getrefcount(bad))
    out = np.empty_like(x)
    for _ in range(200):
        for f in OPS.values():
            f(x)
        fd.top_p(x, 0.5, out=out)
        fd.sample(x, seed=np.arange(B, dtype=np.uint64), return_logprobs=True)
        fd.repetition_penalty(x, ids, 1.2)
        with pytest.raises(ValueError):
            fd.repetition_penalty(x, bad, 1.2)
        with pytest.raises(ValueError):
            fd.top_p(x, 2.0)
    assert (sys.getrefcount(x), sys.getrefcount(ids), sys.getrefcount(bad)) == before


@pytest.mark.parametrize("op", sorted(set(OPS) - set(PROB)))
def test_overlapping_out_reads_the_original_input(op, rng):
    """out= shifted by one column over the input's memory: the result is computed from the
    input as it was before the call."""
    base = make_rows(rng, "normal", B, V + 1)
    x = base[:, :V]
    expected = OPS[op](x.copy())
    out = base[:, 1:]
    res = OPS[op](x, out=out)
    assert res is out
    assert_bits_equal(base[:, 1:], expected, op)


@pytest.mark.parametrize("op", sorted(OPS))
def test_read_only_input(op, rng):
    x = make_rows(rng, "normal", B, V)
    x.setflags(write=False)
    got = OPS[op](x)
    assert got.flags.writeable and not np.shares_memory(got, x)


@pytest.mark.parametrize("op", sorted(OPS))
def test_one_dimensional_row_equals_batch_of_one(op, rng):
    x = make_rows(rng, "peaked", 1, V)
    a, b = OPS[op](x[0]), OPS[op](x)
    assert a.shape == (V,)
    assert_bits_equal(a, b[0], op)
    out = np.empty(V, dtype=a.dtype)
    assert OPS[op](x[0], out=out) is out
    assert_bits_equal(out, a)


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_kept_values_are_copied_bit_for_bit(dtype, rng):
    """-0.0, subnormals and float64 values that float32 cannot represent pass through filters
    and untouched penalty columns unchanged."""
    x = make_rows(rng, "normal", B, V).astype(dtype)
    x[:, 0] = -0.0
    x[:, 1] = np.finfo(dtype).tiny / 4  # subnormal
    if dtype == "float64":
        x[:, 2:] += 1e-12  # not representable in float32
    x[:, 3] = 50.0  # always kept
    for op in ("top_k", "top_p", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff",
               "top_n_sigma"):
        got = OPS[op](x)
        kept = bits(got) == bits(x)
        removed = np.isneginf(got) & ~np.isneginf(x)
        assert np.all(kept | removed), op
        assert kept[:, 3].all()
    got = fd.logit_bias(x, {5: 1.0})
    cols = np.r_[0:5, 6:V]
    assert_bits_equal(got[:, cols], x[:, cols], "logit_bias untouched columns")


def test_empty_batch(rng):
    """A (0, V) batch (an idle serving step) gives empty results of the right dtype."""
    z = np.zeros((0, V), dtype=np.float32)
    assert fd.top_k(z, 3).shape == (0, V)
    assert fd.softmax(z).shape == (0, V)
    tok = fd.sample(z, seed=1)
    assert tok.shape == (0,) and tok.dtype == np.int64
    assert fd.entropy(z).shape == (0,)
    assert fd.repetition_penalty(z, np.zeros((0, 4), np.int64), 1.2).shape == (0, V)


# ------------------------------------------------------------------------------------------------
# torch


@needs_torch
@pytest.mark.parametrize("tdtype", ["float32", "float64", "float16", "bfloat16"])
@pytest.mark.parametrize("op", sorted(OPS))
def test_torch_in_torch_out(op, tdtype, rng):
    x = make_rows(rng, "normal", B, V)
    t = torch.from_numpy(x).to(getattr(torch, tdtype))
    before = t.clone()
    got = OPS[op](t)
    assert isinstance(got, torch.Tensor)
    if op in PROB:
        assert got.dtype == (torch.float64 if tdtype == "float64" else torch.float32)
    else:
        assert got.dtype == t.dtype
    assert tuple(got.shape) == (B, V)
    assert torch.equal(t, before)
    if tdtype != "bfloat16":
        np.testing.assert_array_equal(got.numpy(), OPS[op](t.numpy()))
    # a row-strided tensor view, written in place
    big = torch.zeros((B, S, V), dtype=t.dtype)
    big[:, 1, :] = t
    view = big[:, 1, :]
    if op in PROB and tdtype not in ("float32", "float64"):
        return
    res = OPS[op](view, out=view)
    assert res is view
    assert torch.equal(big[:, 1, :], got)
    assert not big[:, 0, :].any() and not big[:, 2:, :].any()


@needs_torch
def test_torch_one_dimensional_reductions_are_0d():
    """Per-row results of a 1-D input are 0-d, for NumPy and torch input alike."""
    x = np.array([0.5, 2.0, 1.0], dtype=np.float32)
    for inp in (x, torch.from_numpy(x), torch.from_numpy(x).to(torch.bfloat16)):
        for f in (fd.argmax, fd.entropy, fd.varentropy, lambda a: fd.sample(a, seed=3)):
            assert tuple(f(inp).shape) == (), (type(inp), f)


@needs_torch
def test_torch_bfloat16_values(rng):
    x = make_rows(rng, "ties", B, V)
    t = torch.from_numpy(x).to(torch.bfloat16)
    got = fd.top_p(t, 0.7)
    vals = t.float().numpy()
    np.testing.assert_array_equal(np.isfinite(got.float().numpy()),
                                  ref.filter_mask("top_p", vals, 0.7) & np.isfinite(vals))
    np.testing.assert_array_equal(fd.argmax(t).numpy(), np.argmax(vals, axis=1))
    np.testing.assert_allclose(fd.softmax(t).numpy(), ref.softmax(vals), rtol=1e-5, atol=1e-7)


def test_uint16_bits_with_dtype_bfloat16_equal_torch_bfloat16():
    """SPEC 1: bfloat16 arrives as a torch tensor or as uint16 bits with dtype="bfloat16"."""
    torch = pytest.importorskip("torch", reason="torch provides the bfloat16 reference tensors")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 300, generator=g).bfloat16()
    bits = x.view(torch.int16).numpy().view(np.uint16)
    as_bits = lambda t: t.view(torch.int16).numpy().view(np.uint16)  # noqa: E731
    for name, kw in [("top_k", dict(k=7)), ("top_p", dict(p=0.8)), ("min_p", dict(p=0.2)),
                     ("typical_p", dict(mass=0.7)), ("epsilon_cutoff", dict(epsilon=3e-3))]:
        got = getattr(fd, name)(bits, dtype="bfloat16", **kw)
        assert got.dtype == np.uint16
        np.testing.assert_array_equal(got, as_bits(getattr(fd, name)(x, **kw)))
    np.testing.assert_array_equal(fd.softmax(bits, dtype="bfloat16"), fd.softmax(x).numpy())
    np.testing.assert_array_equal(fd.sample(bits, dtype="bfloat16", seed=[1, 2, 3, 4], position=5),
                                  fd.sample(x, seed=[1, 2, 3, 4], position=5).numpy())
    np.testing.assert_array_equal(fd.Sampler(top_k=5, seed=9)(bits, dtype="bfloat16"),
                                  fd.Sampler(top_k=5, seed=9)(x).numpy())
    with pytest.raises(TypeError, match="logits"):
        fd.top_k(bits.astype(np.float32), 3, dtype="bfloat16")
    with pytest.raises(ValueError, match="dtype"):
        fd.top_k(bits, 3, dtype="float8")
