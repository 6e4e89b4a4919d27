"""Concurrency: Python threads sharing inputs get the sequential results, and long kernels let
other Python threads run.

1. ``test_concurrent_calls_equal_sequential``: N Python threads (ThreadPoolExecutor) make M calls
   each, cycling through every kernel with a per-thread offset (so different kernels run at the
   same moment) on the SAME input arrays, each call writing its own outputs; every result must be
   bitwise the one computed sequentially beforehand, errors included (same type and message), and
   the shared inputs must be unchanged afterwards. Batch sizes cover the three execution paths of
   the binding's row runner: below ``GIL_MINSIZE`` (GIL held), between ``GIL_MINSIZE`` and
   ``THREAD_MINSIZE`` (GIL released, one thread), and above ``THREAD_MINSIZE`` (GIL released,
   rows split over internal threads; above ``THREAD_MINSIZE_LIGHT`` for argmax and the bitmask).

   The thread count of the internal split is process-global state: ``fastdecode.set_num_threads``
   writes one module-level value that every Python thread's next call reads (see
   ``test_set_num_threads_is_process_global``). It is not per-thread and not meant to be changed
   while other threads are calling kernels, so these tests set it once before the workers start.

2. ``test_gil_released_kernels_run_in_parallel``: two threads, started together by a barrier,
   each call a long kernel repeatedly (``softmax`` of (64, 128256) float32 as ``fd.softmax``
   calls the binding, ``set_num_threads(1)`` so the kernel itself does not split). Each thread
   times each of its calls with ``time.perf_counter``; the measure is the wall time (first start
   to last end) over the sum of all the call times. The two readings are taken by calls made from
   C right before and right after the kernel (``map`` over the three callables), so no bytecode
   runs inside a timed interval and the thread cannot hand the GIL over there unless the kernel
   releases it. Calls that hold the GIL therefore never overlap, ratio >= 1, while calls that
   release it overlap, ratio ~0.5 — on two free cores and also when other jobs leave the two
   threads one core to share, since both calls are then in progress at once. (Timing a Python
   wrapper instead would not separate the cases: the interpreter may switch threads between the
   kernel's return and the second reading, so GIL-holding calls would seem to overlap too.)
   Control: the same measure of ``sum(range(n))`` of similar duration (one C call holding the
   GIL) must give >= 0.9 and softmax < 0.8, in one of up to 5 attempts.

3. ``test_python_thread_progresses_during_kernel``: a pure-Python counter thread keeps counting
   while the main thread runs long kernels: read from C right before and right after each call,
   the counter has moved in most softmax calls, and in none of the GIL-holding control calls.

Budget: about 2-5 s on a 2-core machine, idle or loaded.
"""

from __future__ import annotations

import functools
import operator
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastdecode as fd
from fastdecode import _kernels as K


@pytest.fixture
def num_threads():
    before = fd.get_num_threads()
    yield fd.set_num_threads
    fd.set_num_threads(before)


# --------------------------------------------------------------------------------------------
# 1. N threads x M calls on shared inputs


class Inputs:
    """The shared, read-only inputs of one batch size."""

    def __init__(self, b: int, v: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.x = (rng.normal(size=(b, v)) * rng.uniform(0.5, 4, size=(b, 1))).astype(np.float32)
        self.x[b // 2, rng.random(v) < 0.3] = -np.inf
        self.x16 = self.x.astype(np.float16)
        self.xnan = self.x.copy()
        self.xnan[b - 1, v // 3] = np.nan
        self.ids = rng.integers(0, v, (b, 24))
        self.ids[:, -3:] = self.ids[:, 2:5]  # a repeated n-gram for no_repeat_ngram
        self.rows = np.arange(b)
        self.mask = fd.pack_bitmask([list(range(r, v, 3)) for r in range(b)], v)
        self.scores = np.linspace(0.0, -3.0, b).astype(np.float32)
        self.seeds = np.arange(b, dtype=np.uint64) * 7 + 1
        self.uniforms = np.linspace(0.05, 0.95, b)
        self.sampler = fd.Sampler(temperature=0.9, top_p=0.95, repetition_penalty=1.2,
                                  no_repeat_ngram_size=3, seed=3)
        self.shared = {k: o for k, o in vars(self).items() if isinstance(o, np.ndarray)}
        self.before = {k: o.copy() for k, o in self.shared.items()}


def _fresh(x):
    return np.empty_like(x)


def _gs(b):
    return b // 2 if b % 2 == 0 else b


KERNELS = {
    "top_k": lambda s: fd.top_k(s.x, s.rows * 5 + 1, out=_fresh(s.x)),
    "top_p": lambda s: fd.top_p(s.x, 0.9, min_tokens_to_keep=2),
    "min_p": lambda s: fd.min_p(s.x, 0.05, out=_fresh(s.x)),
    "typical_p": lambda s: fd.typical_p(s.x, 0.8),
    "epsilon_cutoff": lambda s: fd.epsilon_cutoff(s.x, 1e-4),
    "eta_cutoff": lambda s: fd.eta_cutoff(s.x, 1e-3),
    "top_n_sigma": lambda s: fd.top_n_sigma(s.x16, 1.5),
    "softmax": lambda s: fd.softmax(s.x, temperature=0.7, out=_fresh(s.x)),
    "log_softmax_f16": lambda s: fd.log_softmax(s.x16),
    "entropy": lambda s: fd.entropy(s.x),
    "varentropy": lambda s: fd.varentropy(s.x),
    "argmax": lambda s: fd.argmax(s.x),
    "sample": lambda s: fd.sample(s.x, temperature=0.8, top_k=50, top_p=0.9, seed=s.seeds,
                                  position=11, return_logprobs=True),
    "sample_uniforms": lambda s: fd.sample(s.x, min_p=0.02, uniforms=s.uniforms),
    "sample_llama": lambda s: fd.sample(s.x, typical_p=0.9, top_n_sigma=2.0, order="llama.cpp",
                                        seed=5, position=s.rows),
    "repetition_penalty": lambda s: fd.repetition_penalty(s.x, s.ids, 1.3, out=_fresh(s.x)),
    "presence_frequency": lambda s: fd.presence_frequency_penalty(s.x, s.ids, presence=0.4,
                                                                  frequency=0.3),
    "no_repeat_ngram": lambda s: fd.no_repeat_ngram(s.x, s.ids, 3),
    "logit_bias": lambda s: fd.logit_bias(s.x, {1: 2.0, 3: -1.5}),
    "suppress_tokens": lambda s: fd.suppress_tokens(s.x, [0, 2, 4]),
    "allowed_tokens_bitmask": lambda s: fd.allowed_tokens_bitmask(s.x, s.mask),
    "bad_words": lambda s: fd.bad_words(s.x, s.ids, [[7], [int(s.ids[0, -1]), 9]]),
    "beam_step": lambda s: fd.beam_step(s.x, s.scores, 2 * _gs(len(s.x)),
                                        group_size=_gs(len(s.x))),
    "Sampler": lambda s: s.sampler(s.x, s.ids, return_logprobs=True),
    "uniform": lambda s: K.uniform(s.seeds, s.rows, 2),
    "sample_nan_raises": lambda s: fd.sample(s.xnan, seed=1),
    "softmax_nan_raises": lambda s: fd.softmax(s.xnan),
}
# stateful samplers (fastdecode.adaptive): per-row mu arrays are fresh per call
KERNELS.update({
    "mirostat_v2": lambda s: fd.mirostat(s.x, 9.0, tau=4.0, seed=s.seeds, position=3,
                                         return_logprobs=True, return_kept=True),
    "mirostat_v1_f16": lambda s: fd.mirostat(s.x16, np.linspace(4.0, 12.0, len(s.x)), version=1,
                                             seed=s.seeds, position=3),
    "entropix": lambda s: fd.entropix(s.x, seed=s.seeds, position=5, return_logprobs=True),
})
# speculative verification: (B, 3, V) targets made of the shared rows, deterministic drafts
KERNELS.update({
    "spec_verify": lambda s: fd.speculative_verify(np.stack([s.x, s.x[::-1], s.x], 1),
                                                   s.ids[:, :2] % s.x.shape[1], seed=s.seeds,
                                                   position=s.rows, num_drafts=s.rows % 3),
    "spec_verify_greedy": lambda s: fd.speculative_verify(np.stack([s.x16, s.x16, s.x16], 1),
                                                          np.argmax(s.x, 1)[:, None].repeat(2, 1),
                                                          greedy=True),
})
LIGHT = ("argmax", "allowed_tokens_bitmask", "softmax", "entropy")


def _run(name, s):
    """A kernel's result as comparable bytes (or its exception as type and message)."""
    try:
        r = KERNELS[name](s)
    except Exception as e:
        return ("raised", type(e), str(e))
    parts = r if isinstance(r, tuple) else (r,)
    return tuple((p.dtype.str, p.shape, p.tobytes()) for p in map(np.asarray, parts))


# name: (rows, vocab, kernels, Python threads, calls per thread, fastdecode threads)
SIZES = {
    "gil_held": (2, 64, tuple(KERNELS), 8, 200, 4),
    "gil_released": (4, 8192, tuple(KERNELS), 8, 100, 4),
    "split": (8, 40_000, tuple(KERNELS), 4, 60, 4),
    "split_light": (8, 2 ** 18 + 64, LIGHT, 4, 24, 3),
}


@pytest.mark.parametrize("size", sorted(SIZES))
def test_concurrent_calls_equal_sequential(size, num_threads):
    b, v, names, n_threads, m_calls, fd_threads = SIZES[size]
    n = b * v
    if size == "gil_held":
        assert n < K.GIL_MINSIZE
    elif size == "gil_released":
        assert K.GIL_MINSIZE <= n < K.THREAD_MINSIZE
    elif size == "split":
        assert K.THREAD_MINSIZE <= n < K.THREAD_MINSIZE_LIGHT
    else:
        assert n >= K.THREAD_MINSIZE_LIGHT
    num_threads(fd_threads)
    s = Inputs(b, v)
    expected = {name: _run(name, s) for name in names}
    for name in names:
        assert (expected[name][0] == "raised") == name.endswith("_raises"), (name, expected[name])
    start = threading.Barrier(n_threads)

    def worker(t):
        start.wait()
        bad = []
        for j in range(m_calls):
            name = names[(j + t * 3) % len(names)]
            if _run(name, s) != expected[name]:
                bad.append((t, j, name))
        return bad

    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        mismatches = [m for f in [pool.submit(worker, t) for t in range(n_threads)]
                      for m in f.result()]
    assert not mismatches, f"{len(mismatches)} results differ from the sequential ones: " \
                           f"{mismatches[:10]}"
    for k, o in s.shared.items():
        assert o.tobytes() == s.before[k].tobytes(), f"shared input {k} was modified"


def test_set_num_threads_is_process_global(num_threads):
    """The setting is one value for the process: a change in one thread is what the others see."""
    num_threads(3)
    with ThreadPoolExecutor(max_workers=2) as pool:
        assert pool.submit(fd.get_num_threads).result() == 3
        pool.submit(fd.set_num_threads, 2).result()
    assert fd.get_num_threads() == 2


# --------------------------------------------------------------------------------------------
# 2. the GIL is released during long kernels

LONG = (64, 128_256)
_invoke = operator.methodcaller("__call__")


def _long_softmax():
    """A maker of direct binding calls (as fd.softmax makes them, one thread) of about 5-20 ms,
    each with its own out array; the calls are C callables (functools.partial of the builtin)."""
    x = np.random.default_rng(1).normal(size=LONG).astype(np.float32)
    t = np.ones(1)
    return lambda: functools.partial(K.softmax, x, np.empty_like(x), t, False, 1)


def _per_call_seconds(call, reps=3):
    call()
    t0 = time.perf_counter()
    for _ in range(reps):
        call()
    return (time.perf_counter() - t0) / reps


def _gil_holding(seconds):
    """sum(range(n)) taking about `seconds`: one C call that holds the GIL throughout."""
    n = 200_000
    while _per_call_seconds(functools.partial(sum, range(n)), 1) < seconds / 2:
        n *= 2
    n = max(1, int(n * seconds / _per_call_seconds(functools.partial(sum, range(n)), 2)))
    return functools.partial(sum, range(n))


def _timed(call):
    """(start, end) of call(), read by perf_counter calls made from C right before and right
    after it: no bytecode runs in between, so the thread cannot hand the GIL to another Python
    thread inside the interval except by the call itself releasing it."""
    t0, _, t1 = tuple(map(_invoke, (time.perf_counter, call, time.perf_counter)))
    return t0, t1


def _overlap_ratio(make_call, reps, n_threads=2):
    """n_threads threads, released together by a barrier, each make `reps` calls; returns the
    wall time from the first call's start to the last call's end over the sum of all the calls'
    durations. Calls that hold the GIL cannot be in progress at the same time: >= 1. Calls that
    release it overlap: ~1/n_threads, also when the threads must share one core."""
    calls = [make_call() for _ in range(n_threads)]
    barrier = threading.Barrier(n_threads)
    spans = [[] for _ in range(n_threads)]

    def run(i):
        barrier.wait()
        for _ in range(reps):
            spans[i].append(_timed(calls[i]))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [s for per_thread in spans for s in per_thread]
    wall = max(e for _, e in flat) - min(b for b, _ in flat)
    return wall / sum(e - b for b, e in flat)


def test_gil_released_kernels_run_in_parallel(num_threads):
    num_threads(1)
    make_kernel_call = _long_softmax()
    per_call = _per_call_seconds(make_kernel_call())
    reps = max(4, int(0.08 / per_call))
    holding = _gil_holding(per_call)
    attempts = []  # (GIL-holding control, softmax)
    for _ in range(5):
        c = _overlap_ratio(lambda: holding, reps)
        k = _overlap_ratio(make_kernel_call, reps)
        attempts.append((round(c, 2), round(k, 2)))
        if k < 0.8 and c >= 0.9:
            return
    pytest.fail(f"two threads in softmax {LONG} did not overlap in time: wall / sum of call "
                f"times, (GIL-holding control, softmax) per attempt: {attempts}")


def test_python_thread_progresses_during_kernel(num_threads):
    """A counter thread runs pure Python while the main thread makes kernel calls. The counter is
    read from C right before and right after each call (no bytecode in between, as in _timed),
    so it can only have moved if the call itself released the GIL: during a GIL-holding control
    call it never moves; during softmax it must move in most calls."""
    num_threads(1)
    kernel = _long_softmax()()
    per_call = _per_call_seconds(kernel)
    holding = _gil_holding(per_call)
    count = [0]
    stop = threading.Event()
    read = functools.partial(operator.getitem, count, 0)

    def counter():
        while not stop.is_set():
            count[0] += 1

    def progress(call, reps=8):
        """How far the counter moved during each of `reps` calls."""
        out = []
        for _ in range(reps):
            c0, _, c1 = tuple(map(_invoke, (read, call, read)))
            out.append(c1 - c0)
        return out

    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.001)  # the counter hands the GIL back within 1 ms between calls
    th = threading.Thread(target=counter)
    th.start()
    try:
        time.sleep(0.01)
        during_control = progress(holding)
        during_kernel = progress(kernel)
    finally:
        stop.set()
        th.join()
        sys.setswitchinterval(interval)
    assert during_control == [0] * len(during_control), (
        f"the counter moved during GIL-holding calls: {during_control}")
    moved = sum(d > 0 for d in during_kernel)
    assert moved >= len(during_kernel) // 2, (
        f"the counter moved during only {moved} of {len(during_kernel)} softmax {LONG} calls: "
        f"{during_kernel}")
