"""Batch threading: a batched call split over threads gives exactly the single-thread result.

Batches of at least 2 rows and fastdecode._kernels.THREAD_MINSIZE logits are split into contiguous
chunks of rows, one per thread. Every row is computed by the same code whichever chunk it lands in,
so results must be bitwise identical for any thread count, and an error must name the lowest
failing row.
"""

import numpy as np
import pytest

import fastdecode as fd
from fastdecode import _kernels

B, V = 13, 40_000  # 520k logits: split whenever more than one thread is allowed
assert B * V >= _kernels.THREAD_MINSIZE


@pytest.fixture
def threads():
    before = fd.get_num_threads()
    yield fd.set_num_threads
    fd.set_num_threads(before)


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(B, V)) * rng.uniform(0.5, 5, size=(B, 1))).astype(np.float32)
    x[3, rng.random(V) < 0.5] = -np.inf
    return x


CALLS = {
    "top_k": lambda x: fd.top_k(x, np.arange(1, B + 1) * 7),
    "top_p": lambda x: fd.top_p(x, np.linspace(0.1, 0.99, B)),
    "min_p": lambda x: fd.min_p(x, 0.05, min_tokens_to_keep=3),
    "typical_p": lambda x: fd.typical_p(x, 0.9),
    "epsilon_cutoff": lambda x: fd.epsilon_cutoff(x, 1e-5),
    "eta_cutoff": lambda x: fd.eta_cutoff(x, 1e-4),
    "top_n_sigma": lambda x: fd.top_n_sigma(x, 1.5),
    "softmax": lambda x: fd.softmax(x, temperature=np.linspace(0.5, 2.0, B)),
    "log_softmax": lambda x: fd.log_softmax(x),
    "entropy": lambda x: fd.entropy(x),
    "varentropy": lambda x: fd.varentropy(x),
    "argmax": lambda x: fd.argmax(x),
    "sample": lambda x: fd.sample(x, temperature=0.8, top_p=0.95, seed=np.arange(B) * 11,
                                  position=np.arange(B), return_logprobs=True),
    "sample_top_k": lambda x: fd.sample(x, top_k=40, seed=5, position=9),
    "allowed_tokens_bitmask": lambda x: fd.allowed_tokens(x, list(range(0, V, 3))),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_threaded_equals_single_thread(name, threads):
    x = _batch()
    threads(1)
    one = CALLS[name](x)
    for n in (2, 3, 5, 64):
        threads(n)
        got = CALLS[name](x)
        for a, b in zip(one if isinstance(one, tuple) else (one,),
                        got if isinstance(got, tuple) else (got,)):
            np.testing.assert_array_equal(a.view(np.uint8) if a.dtype.kind == "f" else a,
                                          b.view(np.uint8) if b.dtype.kind == "f" else b,
                                          err_msg=f"{name} with {n} threads")


@pytest.mark.parametrize("n", [1, 2, 4])
def test_error_names_lowest_failing_row(n, threads):
    x = _batch()
    x[11, 5] = np.nan
    x[7, 2] = np.nan
    threads(n)
    for call in (lambda: fd.top_p(x, 0.9), lambda: fd.sample(x, seed=1), lambda: fd.softmax(x)):
        with pytest.raises(ValueError, match=r"logits row 7 contains NaN \(column 2\)"):
            call()


def test_set_num_threads_validates():
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="n must be a positive integer"):
            fd.set_num_threads(bad)
    assert fd.get_num_threads() >= 1


@pytest.mark.parametrize("name", ["argmax", "allowed_tokens_bitmask"])
def test_memory_bound_kernels_split_only_large_batches(threads, name):
    """argmax and the bitmask stream through the row once, so they split only from
    THREAD_MINSIZE_LIGHT logits; above it the split result is the single-thread one."""
    assert _kernels.THREAD_MINSIZE_LIGHT > _kernels.THREAD_MINSIZE
    rows = _kernels.THREAD_MINSIZE_LIGHT // V + 3
    rng = np.random.default_rng(5)
    x = rng.normal(size=(rows, V)).astype(np.float32)
    x[rows - 2, 123] = 50.0
    threads(1)
    one = CALLS[name](x)
    threads(2)
    two = CALLS[name](x)
    assert np.array_equal(one, two)

