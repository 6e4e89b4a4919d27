"""fastdecode's benchmark suite: every kernel against its peers and its floor, in one run.

    python -m benchmarks [--quick] [--cases SUBSTR,...] [--json FILE]    (from the repository root)
    python benchmarks/run.py ...                                          (the same)
    fastdecode bench ...                                                  (installed: fastdecode.benchmarks)

For every case (a kernel on B rows of V logits of one dtype and shape of distribution, with 1 or 2
threads) it prints the median time of one fastdecode call, the multiple of that case's floor, and
each peer's median with the ratio peer / fastdecode, all measured in the same run on the same
arrays. Peers (benchmarks/peers.py): the NumPy reference algorithms (fastdecode._reference),
torch with transformers' warper classes and torch.multinomial, llama.cpp's sampler chain via
llama-cpp-python when importable (else the table says why it is skipped).

Floors (csrc/core/floor.c, the hidden ``_kernels._floor``), measured on the same rows with the
same threads and the same ISA copies as the kernels:
  read      one pass over the row (max, the NaN / +inf check); bounds top-k, min-p, penalties
  exp_sum   the read pass, then sum exp(x - max) without a store: what any exact softmax must do;
            bounds softmax, top-p, typical and the fused sampler
A kernel at "1.3x exp_sum" does 30% more work than two passes over its row.

Rows: peaked (normal(0, 1) x 4.5: an LM-like row whose 0.9 nucleus holds tens to hundreds of
tokens), zipf (logit = -1.1 log rank, ranks shuffled: a heavy tail, a nucleus of thousands) and
flat (normal(0, 1): the nucleus is most of the vocabulary, the hard case for top-p). The nucleus
column is the mean number of tokens top_p(0.9) keeps. Times are per call (all B rows), in
microseconds; the torch peer runs with torch.set_num_threads equal to fastdecode's thread count.

Environment: FASTDECODE_ISA=portable|avx2|avx512 forces an instruction set (the default is the
best the CPU has). Run on an idle machine: the medians are robust to a few outliers, not to a
second job sharing the cores.
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import json
import os
import platform
import statistics
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

if __package__ in (None, "", "benchmarks"):  # a source checkout, not the installed fastdecode.benchmarks
    _ROOT = Path(__file__).resolve().parents[1]
    if str(_ROOT) not in sys.path:  # python benchmarks/run.py
        sys.path.insert(0, str(_ROOT))
    try:
        import fastdecode as fd
    except ImportError:  # a source checkout with the extension built in place
        sys.path.insert(0, str(_ROOT / "python"))
        import fastdecode as fd
else:
    import fastdecode as fd

from fastdecode import _kernels as _k
from fastdecode import _reference as ref
from fastdecode._array import as_logits

if __package__:  # python -m benchmarks, or the installed fastdecode.benchmarks
    from . import peers
    from .loop_overhead import Replay, numpy_loop
else:  # python benchmarks/run.py: a script has no package to be relative to
    from benchmarks import peers
    from benchmarks.loop_overhead import Replay, numpy_loop

PEERS = ("numpy", "torch", "llama")
FLOOR_KIND = {"read": 0, "exp_sum": 1}


# --------------------------------------------------------------------------------------------
# inputs


def make_rows(dist: str, b: int, v: int, rng: np.random.Generator) -> np.ndarray:
    if dist == "peaked":
        return (rng.standard_normal((b, v)) * 4.5).astype(np.float32)
    if dist == "flat":
        return rng.standard_normal((b, v)).astype(np.float32)
    if dist == "zipf":
        base = -1.1 * np.log(np.arange(1, v + 1, dtype=np.float64))
        return np.stack([rng.permutation(base) for _ in range(b)]).astype(np.float32)
    raise ValueError(f"unknown distribution {dist!r}")


def to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), rounded to nearest even."""
    u = x.view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


@dataclass
class Rows:
    """One set of logits in every form the implementations take."""
    dist: str
    B: int
    V: int
    dtype: str
    f32: np.ndarray                 # the float32 rows (what bfloat16 / float16 round from)
    fd: np.ndarray                  # what fastdecode gets (uint16 bits for bfloat16)
    fd_kw: dict                     # dtype="bfloat16" for the bits
    np_: np.ndarray | None          # what the NumPy reference gets (None: no such dtype)
    nucleus: int = 0
    _torch: Any = None

    def torch(self, torch: Any) -> Any:
        if self._torch is None:
            t = torch.from_numpy(self.f32)
            self._torch = {"float32": t, "float16": t.half(), "bfloat16": t.bfloat16()}[self.dtype]
        return self._torch


_ROWS: dict[tuple, Rows] = {}


def rows(dist: str, B: int, V: int, dtype: str) -> Rows:
    key = (dist, B, V, dtype)
    if key not in _ROWS:
        # the same rows every run, and for every dtype (float16 / bfloat16 round these)
        rng = np.random.default_rng(zlib.crc32(repr(key[:3]).encode()))
        x = make_rows(dist, B, V, rng)
        if dtype == "float32":
            r = Rows(dist, B, V, dtype, x, x, {}, x)
        elif dtype == "float16":
            h = x.astype(np.float16)
            r = Rows(dist, B, V, dtype, h.astype(np.float32), h, {}, h)
        else:
            bits = to_bf16_bits(x)
            f = (bits.astype(np.uint32) << 16).view(np.float32)
            r = Rows(dist, B, V, dtype, f, bits, {"dtype": "bfloat16"}, None)
        r.nucleus = int(round(float(np.isfinite(fd.top_p(r.f32, 0.9)).sum(-1).mean())))
        _ROWS[key] = r
    return _ROWS[key]


# --------------------------------------------------------------------------------------------
# timing


def median_us(fn: Callable[[], Any], budget: float, min_reps: int) -> float:
    """Median wall time of fn() in microseconds: one warm-up call, then calls until both
    min_reps and the time budget are used up (at most 1000)."""
    fn()
    ts: list[float] = []
    end = time.perf_counter() + budget
    while len(ts) < min_reps or (len(ts) < 1000 and time.perf_counter() < end):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e6


# --------------------------------------------------------------------------------------------
# cases


@dataclass
class Case:
    name: str
    section: str
    r: Rows | None
    threads: int
    floor: str | None
    fd: Callable[[], Any] | None
    peers: dict[str, Callable[[], Any] | str] = field(default_factory=dict)
    unit: str = "call"              # what the times are per
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.section}/{self.name}"

    def shape(self) -> str:
        if self.r is None:
            return ""
        dt = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}[self.r.dtype]
        return f"{self.r.B}x{self.r.V} {dt} {self.r.dist} t{self.threads}"


class Env:
    def __init__(self, args: argparse.Namespace):
        self.torch, self.lp, self.torch_why = peers.load_torch()
        if args.no_llama:
            self.llama, self.llama_why = None, "--no-llama"
        else:
            self.llama, self.llama_why = peers.load_llama()
        self.args = args
        self.llama_fill_us: dict[int, float] = {}


_HISTS: dict[tuple, np.ndarray] = {}


def _hist(B: int, V: int, n: int = 64) -> np.ndarray:
    """A fixed token history (B, n) for the penalties (cached: not part of the timed call)."""
    key = (B, V, n)
    if key not in _HISTS:
        _HISTS[key] = np.random.default_rng(7).integers(0, V, (B, n)).astype(np.int64)
    return _HISTS[key]


# (name, floor, fastdecode(r, kw), numpy reference(x) or None, HF warper factory (lp) or
#  special torch builder, llama chain spec or None or a reason)
def kernel_table() -> dict[str, dict]:
    T: dict[str, dict] = {}

    def add(name, floor, f, npf=None, hf=None, llama=None, sample=False, torch_fn=None):
        T[name] = dict(floor=floor, fd=f, np=npf, hf=hf, llama=llama, sample=sample,
                       torch_fn=torch_fn)

    add("softmax", "exp_sum", lambda x, kw: fd.softmax(x, **kw), ref.softmax,
        torch_fn=lambda torch: (lambda t: torch.softmax(t, -1)),
        llama="no standalone softmax in llama.cpp's sampler API")
    add("log_softmax", "exp_sum", lambda x, kw: fd.log_softmax(x, **kw), ref.log_softmax,
        torch_fn=lambda torch: (lambda t: torch.log_softmax(t, -1)),
        llama="no log-softmax in llama.cpp's sampler API")
    for k in (1, 50, 1000):
        add(f"top_k({k})", "read", lambda x, kw, k=k: fd.top_k(x, k, **kw),
            lambda x, k=k: ref.top_k(x, k), lambda lp, k=k: [lp.TopKLogitsWarper(k)],
            [("top_k", (k,))])
    for p in (0.9, 0.95):
        add(f"top_p({p})", "exp_sum", lambda x, kw, p=p: fd.top_p(x, p, **kw),
            lambda x, p=p: ref.top_p(x, p), lambda lp, p=p: [lp.TopPLogitsWarper(p)],
            [("top_p", (p, 1))])
    add("top_k(50)+top_p(0.95)", "exp_sum",
        lambda x, kw: fd.top_p(fd.top_k(x, 50, **kw), 0.95, **kw),
        lambda x: ref.top_p(ref.top_k(x, 50), 0.95),
        lambda lp: [lp.TopKLogitsWarper(50), lp.TopPLogitsWarper(0.95)],
        [("top_k", (50,)), ("top_p", (0.95, 1))])
    add("min_p(0.05)", "read", lambda x, kw: fd.min_p(x, 0.05, **kw),
        lambda x: ref.min_p(x, 0.05), lambda lp: [lp.MinPLogitsWarper(0.05)],
        [("min_p", (0.05, 1))])
    add("typical_p(0.9)", "exp_sum", lambda x, kw: fd.typical_p(x, 0.9, **kw),
        lambda x: ref.typical_p(x, 0.9), lambda lp: [lp.TypicalLogitsWarper(0.9)],
        [("typical", (0.9, 1))])
    add("sample(k=50,p=.9,T=.8)", "exp_sum",
        lambda x, kw: fd.sample(x, top_k=50, top_p=0.9, temperature=0.8, seed=1, **kw),
        lambda x: ref.sample(x, uniform=0.5, top_k=50, top_p=0.9, temperature=0.8),
        lambda lp: [lp.TemperatureLogitsWarper(0.8), lp.TopKLogitsWarper(50),
                    lp.TopPLogitsWarper(0.9)],
        [("top_k", (50,)), ("top_p", (0.9, 1)), ("temp", (0.8,)), ("dist", (1,))], sample=True)
    add("sample(llama-defaults)", "exp_sum",
        lambda x, kw: fd.sample(x, top_k=40, top_p=0.95, min_p=0.05, temperature=0.8, seed=1,
                                order="llama.cpp", **kw),
        lambda x: ref.sample(x, uniform=0.5, top_k=40, top_p=0.95, min_p=0.05, temperature=0.8,
                             order="llama.cpp"),
        lambda lp: [lp.TopKLogitsWarper(40), lp.TopPLogitsWarper(0.95),
                    lp.MinPLogitsWarper(0.05), lp.TemperatureLogitsWarper(0.8)],
        [("top_k", (40,)), ("top_p", (0.95, 1)), ("min_p", (0.05, 1)), ("temp", (0.8,)),
         ("dist", (1,))], sample=True)
    add("sample(T=1)", "exp_sum", lambda x, kw: fd.sample(x, seed=1, **kw),
        lambda x: ref.sample(x, uniform=0.5), lambda lp: [], [("dist", (1,))], sample=True)
    add("repetition_penalty(1.2)", "read",
        lambda x, kw: fd.repetition_penalty(x, _hist(_b(x), _v(x)), 1.2, **kw),
        lambda x: ref.repetition_penalty(x, _hist(_b(x), _v(x)), 1.2),
        lambda lp: [lp.RepetitionPenaltyLogitsProcessor(1.2)],
        [("penalties", (64, 1.2, 0.0, 0.0))])
    add("presence_frequency(.5,.5)", "read",
        lambda x, kw: fd.presence_frequency_penalty(x, _hist(_b(x), _v(x)), presence=0.5,
                                                    frequency=0.5, **kw),
        lambda x: ref.presence_frequency_penalty(x, _hist(_b(x), _v(x)), presence=0.5,
                                                 frequency=0.5),
        None, [("penalties", (64, 1.0, 0.5, 0.5))])
    return T


def _b(x: np.ndarray) -> int:
    return x.shape[0] if x.ndim == 2 else 1


def _v(x: np.ndarray) -> int:
    return x.shape[-1]


def kernel_case(env: Env, T: dict, name: str, section: str, r: Rows, threads: int) -> Case:
    spec = T[name]
    kw = r.fd_kw
    c = Case(name, section, r, threads, spec["floor"], lambda: spec["fd"](r.fd, kw))
    # numpy
    if r.np_ is None:
        c.peers["numpy"] = "NumPy has no bfloat16"
    else:
        c.peers["numpy"] = (lambda: spec["np"](r.np_)) if spec["np"] else "n/a"
    # torch
    torch = env.torch
    if torch is None:
        c.peers["torch"] = env.torch_why
    elif spec["torch_fn"] is not None:
        f = spec["torch_fn"](torch)
        c.peers["torch"] = lambda: f(r.torch(torch))
    elif spec["hf"] is None:
        c.peers["torch"] = "no such warper in transformers"
    else:
        ws = spec["hf"](env.lp)
        chain = peers.torch_chain(torch, ws, spec["sample"], r.B)
        if name.startswith("repetition"):
            ids = torch.from_numpy(_hist(r.B, r.V))
            chain = (lambda t, w=ws[0]: w(ids, t))
        c.peers["torch"] = lambda: chain(r.torch(torch))
    # llama.cpp
    lspec = spec["llama"]
    if env.llama is None:
        c.peers["llama"] = env.llama_why
    elif isinstance(lspec, str) or lspec is None:
        c.peers["llama"] = lspec or "n/a"
    else:
        try:
            hist = _hist(1, r.V)[0] if name.startswith(("repetition", "presence")) else None
            lc = peers.LlamaChain(env.llama, lspec, r.V, history=hist)
            c.peers["llama"] = lambda: lc(r.f32)
        except Exception as e:  # an API this version lacks
            c.peers["llama"] = f"llama.cpp chain failed: {type(e).__name__}: {e}"
    return c


def beam_case(env: Env, r: Rows, threads: int, k: int) -> Case:
    s = np.zeros(r.B, np.float32)
    s[1:] = -np.arange(1, r.B, dtype=np.float32)
    c = Case(f"beam_step(k={k})", "beam", r, threads, "exp_sum",
             lambda: fd.beam_step(r.fd, s, k, **r.fd_kw))
    c.peers["numpy"] = (lambda: ref.beam_step(r.np_, s, k)) if r.np_ is not None else "n/a"
    torch = env.torch
    if torch is None:
        c.peers["torch"] = env.torch_why
    else:
        st = torch.from_numpy(s)

        def tb():
            x = r.torch(torch)
            sc = torch.log_softmax(x, -1) + st[:, None]
            v, i = sc.view(1, -1).topk(k)
            return v, i // r.V, i % r.V
        c.peers["torch"] = tb
    c.peers["llama"] = "llama.cpp's beam search is not in its sampler API"
    return c


def _softmax_np(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def speculative_case(env: Env, B: int, V: int, gamma: int, threads: int) -> Case:
    c = Case(f"speculative_verify(gamma={gamma})", "speculative", None, threads, None, None)
    f = getattr(fd, "speculative_verify", None)
    rng = np.random.default_rng(3)
    target = (rng.standard_normal((B, gamma + 1, V)) * 4.5).astype(np.float32)
    draft_logits = target[:, :gamma] + rng.standard_normal((B, gamma, V)).astype(np.float32)
    q = _softmax_np(draft_logits).astype(np.float32)
    toks = np.stack([[int(np.argmax(q[b, j])) for j in range(gamma)] for b in range(B)])
    c.r = Rows("peaked", B, V, "float32", target[:, 0], target[:, 0], {}, target[:, 0])
    c.r.nucleus = 0

    def np_verify():
        p = _softmax_np(target)
        out = np.empty((B, 2), np.int64)
        for b in range(B):
            n = 0
            while n < gamma:
                d = toks[b, n]
                if 0.5 > min(1.0, p[b, n, d] / q[b, n, d]):
                    break
                n += 1
            if n < gamma:
                res = np.maximum(p[b, n] - np.pad(q[b, n], 0), 0)
                res = res / res.sum() if res.sum() > 0 else p[b, n]
            else:
                res = p[b, gamma]
            out[b] = n, int(np.searchsorted(np.cumsum(res), 0.5 * res.sum()))
        return out
    c.peers["numpy"] = np_verify
    c.peers["torch"] = "n/a (HF's assisted generation has no standalone verify step)"
    c.peers["llama"] = "n/a"
    if f is None:
        c.note = "not available (fastdecode.speculative_verify is not in this build)"
        return c
    # map the arguments by name: the kernel's exact signature is its own branch's business
    vals = {"tokens": toks.astype(np.int64), "q": q, "target": target}
    try:
        sig = inspect.signature(f)
        args, kwargs = [], {}
        for pname, prm in sig.parameters.items():
            n = pname.lower()
            if "token" in n or "ids" in n:
                v = vals["tokens"]
            elif "target" in n or n in ("logits", "p", "target_logits"):
                v = vals["target"]
            elif "draft" in n or "prob" in n or n == "q":
                v = vals["q"]
            elif "seed" in n:
                v = 1
            else:
                continue
            if prm.kind == prm.POSITIONAL_ONLY or (prm.kind == prm.POSITIONAL_OR_KEYWORD
                                                   and prm.default is prm.empty):
                args.append(v)
            else:
                kwargs[pname] = v
        call = (lambda: f(*args, **kwargs))
        call()
        c.fd = call
    except Exception as e:
        c.note = f"signature not recognised ({type(e).__name__}: {e})"
    return c


def contrastive_case(env: Env, r: Rows, threads: int) -> Case:
    c = Case("contrastive_logits(a=.1)", "contrastive", r, threads, "exp_sum", None)
    f = getattr(fd, "contrastive_logits", None)
    ama = rows("flat", r.B, r.V, r.dtype)

    def np_c():
        ze = r.np_.astype(np.float64)
        za = ama.np_.astype(np.float64)
        le = ze - ze.max(-1, keepdims=True)
        le -= np.log(np.exp(le).sum(-1, keepdims=True))
        la = za - za.max(-1, keepdims=True)
        la -= np.log(np.exp(la).sum(-1, keepdims=True))
        head = le >= np.log(0.1) + le.max(-1, keepdims=True)
        return np.where(head, le - la, -np.inf)
    c.peers["numpy"] = np_c if r.np_ is not None else "n/a"
    torch = env.torch
    if torch is None:
        c.peers["torch"] = env.torch_why
    else:
        def tc():
            le = torch.log_softmax(r.torch(torch), -1)
            la = torch.log_softmax(ama.torch(torch), -1)
            head = le >= le.max(-1, keepdim=True).values + np.log(0.1)
            return torch.where(head, le - la, torch.tensor(float("-inf")))
        c.peers["torch"] = tc
    c.peers["llama"] = "n/a"
    if f is None:
        c.note = "not available (fastdecode.contrastive_logits is not in this build)"
        return c
    try:
        f(r.fd, ama.fd, alpha=0.1, **r.fd_kw)
        c.fd = lambda: f(r.fd, ama.fd, alpha=0.1, **r.fd_kw)
    except Exception as e:
        c.note = f"signature not recognised ({type(e).__name__}: {e})"
    return c


def generate_cases(env: Env, V: int, steps: int) -> list[Case]:
    out = []
    rng = np.random.default_rng(0)
    table = (rng.standard_normal((16, 1, V)) * 4.5).astype(np.float32)
    model = Replay(table)
    prompts = np.zeros((1, 1), np.int64)
    for mode in ("greedy", "sample"):
        smp = fd.Sampler(temperature=0.8, top_k=50, top_p=0.9, seed=0) if mode == "sample" else None
        r = Rows("peaked", 1, V, "float32", table[0], table[0], {}, table[0])
        c = Case(f"generate({mode})", "generate", r, 1, None,
                 lambda smp=smp: fd.generate(model, prompts, max_new_tokens=steps, sampler=smp,
                                             eos_token_id=V - 1), unit="token")
        nrng = np.random.default_rng(1)
        c.peers["numpy"] = lambda smp=smp: numpy_loop(table, 1, steps, smp is not None, nrng)
        c.peers["torch"] = "n/a (HF generate needs a model; see benchmarks/loop_overhead.py)"
        c.peers["llama"] = "n/a"
        c.steps = steps  # type: ignore[attr-defined]
        out.append(c)
    return out


def build_cases(env: Env) -> list[Case]:
    a = env.args
    T = kernel_table()
    q = a.quick
    V0 = a.vocab[0] if a.vocab else (4096 if q else 128256)
    vocabs = a.vocab or ([4096] if q else [50257, 128256, 256000])
    batches = a.batch or ([4] if q else [8, 64])
    dists = ("peaked", "flat") if q else ("peaked", "zipf", "flat")
    cases: list[Case] = []
    # every kernel, V = 128,256, B = 1, float32, each distribution
    for name in T:
        for dist in dists:
            cases.append(kernel_case(env, T, name, "kernels", rows(dist, 1, V0, "float32"), 1))
    # other vocabularies
    vk = ["softmax", "top_k(50)", "top_p(0.95)", "min_p(0.05)", "typical_p(0.9)",
          "sample(k=50,p=.9,T=.8)", "sample(llama-defaults)"]
    for V in vocabs:
        if V == V0:
            continue
        for name in vk:
            cases.append(kernel_case(env, T, name, "vocab", rows("peaked", 1, V, "float32"), 1))
        cases.append(kernel_case(env, T, "top_p(0.95)", "vocab", rows("flat", 1, V, "float32"), 1))
    # storage dtypes
    for dt in ("float16", "bfloat16"):
        for name in ("softmax", "top_k(50)", "top_p(0.95)", "sample(k=50,p=.9,T=.8)"):
            cases.append(kernel_case(env, T, name, "dtype", rows("peaked", 1, V0, dt), 1))
    # batches, 1 and 2 threads
    for B in batches:
        for name in ("softmax", "top_p(0.95)", "min_p(0.05)", "sample(k=50,p=.9,T=.8)"):
            for th in (1, 2):
                cases.append(kernel_case(env, T, name, "batch", rows("peaked", B, V0, "float32"), th))
    # beam step 8 x V
    for th in (1, 2):
        cases.append(beam_case(env, rows("peaked", 8, V0, "float32"), th, 16))
    cases.append(speculative_case(env, 1 if q else 4, V0, 4, 1))
    cases.append(contrastive_case(env, rows("peaked", 1, V0, "float32"), 1))
    cases += generate_cases(env, 2048 if q else 50257, 8 if q else 200)
    if a.cases:
        keys = [s.strip().lower() for s in a.cases.split(",") if s.strip()]
        cases = [c for c in cases if any(k in f"{c.label} {c.shape()}".lower() for k in keys)]
    return cases


# --------------------------------------------------------------------------------------------
# running and printing


_FLOORS: dict[tuple, float] = {}


def floor_us(c: Case, budget: float, min_reps: int) -> float | None:
    if c.floor is None or c.r is None:
        return None
    key = (c.r.dist, c.r.B, c.r.V, c.r.dtype, c.threads, c.floor)
    if key not in _FLOORS:
        arr = as_logits(c.r.fd, **c.r.fd_kw).array
        out = np.empty(arr.shape[0] if arr.ndim == 2 else 1)
        a2 = arr if arr.ndim == 2 else arr[None]
        kind = FLOOR_KIND[c.floor]
        _FLOORS[key] = median_us(lambda: _k._floor(a2, kind, out, c.threads), budget, min_reps)
    return _FLOORS[key]


def run_case(env: Env, c: Case) -> dict:
    a = env.args
    budget = 0.02 if a.quick else a.budget
    min_reps = 2 if a.quick else 3
    per = getattr(c, "steps", 1)
    res: dict[str, Any] = {"case": c.label, "section": c.section, "kernel": c.name,
                           "shape": c.shape(), "unit": c.unit, "threads": c.threads,
                           "B": c.r.B if c.r else None, "V": c.r.V if c.r else None,
                           "dtype": c.r.dtype if c.r else None, "dist": c.r.dist if c.r else None,
                           "nucleus": c.r.nucleus if c.r and c.r.nucleus else None,
                           "floor_kind": c.floor, "note": c.note}
    fd.set_num_threads(c.threads)
    if env.torch is not None:
        env.torch.set_num_threads(c.threads)
    t_fd = None
    if c.fd is not None:
        t_fd = median_us(c.fd, budget, min_reps) / per
    res["fastdecode_us"] = t_fd
    fl = floor_us(c, budget, min_reps) if c.fd is not None else None
    res["floor_us"] = fl
    res["floor_x"] = t_fd / fl if t_fd and fl else None
    for p in PEERS:
        f = c.peers.get(p, "n/a")
        if isinstance(f, str):
            res[f"{p}_us"], res[f"{p}_x"], res[f"{p}_why"] = None, None, f
            continue
        pb = budget if not a.quick else 0.01
        try:
            t = median_us(f, pb, 1 if a.quick else 3) / per
        except Exception as e:
            res[f"{p}_us"], res[f"{p}_x"], res[f"{p}_why"] = None, None, f"failed: {e}"
            continue
        res[f"{p}_us"], res[f"{p}_x"], res[f"{p}_why"] = t, (t / t_fd if t_fd else None), ""
    return res


def _fmt_t(t: float | None) -> str:
    if t is None:
        return "-"
    return f"{t:.1f}" if t < 1000 else f"{t:,.0f}"


def _fmt_x(x: float | None) -> str:
    if x is None:
        return ""
    return f"{x:.2f}x" if x < 10 else f"{x:,.0f}x"


COLS = [("case", 42, "<"), ("shape", 24, "<"), ("nucl", 6, ">"), ("fd us", 9, ">"),
        ("floor", 7, ">"), ("numpy us", 10, ">"), ("/fd", 7, ">"), ("torch us", 10, ">"),
        ("/fd", 7, ">"), ("llama us", 10, ">"), ("/fd", 7, ">")]


def header() -> str:
    return "".join(f"{n:{al}{w}}" for n, w, al in COLS)


def row_text(r: dict) -> str:
    vals = [r["case"], r["shape"], str(r["nucleus"] or ""), _fmt_t(r["fastdecode_us"]),
            _fmt_x(r["floor_x"])]
    for p in PEERS:
        vals += [_fmt_t(r[f"{p}_us"]), _fmt_x(r[f"{p}_x"])]
    line = "".join(f"{v:{al}{w}}" for v, (n, w, al) in zip(vals, COLS))
    if r["note"]:
        line += f"  {r['note']}"
    return line


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        ncpu = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        ncpu = os.cpu_count()
    info = {"cpu": cpu, "cpus": ncpu, "python": platform.python_version(),
            "numpy": np.__version__, "fastdecode": fd.__version__,
            "isa": os.environ.get("FASTDECODE_ISA", "best available"),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    return info


def _find(results: list[dict], section: str, kernel: str, **kw) -> list[dict]:
    return [r for r in results if r["section"] == section and r["kernel"] == kernel
            and all(r.get(k) == v for k, v in kw.items())]


def targets(env: Env, results: list[dict]) -> list[dict]:
    """Issue 7's targets, each from rows of this run (skipped when its cases were not run):
    [{target, measured, goal, ok}], where measured is the worst case over the rows named."""
    out: list[dict] = []
    V0 = env.args.vocab[0] if env.args.vocab else (4096 if env.args.quick else 128256)

    def add(name, rows, key, goal, higher=True, fmt="{:.1f}x"):
        vals = [r[key] for r in rows if r.get(key) is not None]
        if not vals:
            return
        worst = min(vals) if higher else max(vals)
        out.append({"target": name, "measured": worst, "goal": goal,
                    "ok": worst >= goal if higher else worst <= goal,
                    "text": fmt.format(worst), "goal_text": ("≥ " if higher else "≤ ") +
                    fmt.format(goal)})

    k = dict(V=V0, B=1, dtype="float32")
    sm = _find(results, "kernels", "sample(k=50,p=.9,T=.8)", **k)
    add("sample(k=50,p=.9,T=.8) vs torch + HF warpers", sm, "torch_x", 300)
    add("sample(llama defaults) vs llama.cpp's default chain",
        _find(results, "kernels", "sample(llama-defaults)", **k), "llama_x", 10)
    if sm:
        # a plain float32 NumPy softmax of the same row (what a user writes), measured here
        x = rows("peaked", 1, V0, "float32").f32

        def np_softmax():
            e = np.exp(x - x.max(-1, keepdims=True))
            return e / e.sum(-1, keepdims=True)
        fd.set_num_threads(1)
        t_np = median_us(np_softmax, 0.02 if env.args.quick else env.args.budget, 3)
        ratios = [{"x": t_np / r["fastdecode_us"]} for r in sm if r["dist"] == "peaked"]
        add(f"sample(k=50,p=.9,T=.8) vs a NumPy float32 softmax ({t_np:.0f} us)", ratios, "x", 8)
    for kern in ("top_p(0.95)", "typical_p(0.9)"):
        for dist in ("peaked", "flat"):
            add(f"{kern} vs llama.cpp, {dist}", _find(results, "kernels", kern, dist=dist, **k),
                "llama_x", 100)
    fill = env.llama_fill_us.get(V0)
    if fill is not None:
        # the same, with llama.cpp's time less our NumPy refill of its candidate array (which
        # llama.cpp does in C): the ratio for its samplers alone, the conservative reading
        for name, kern, goal in (("sample(llama defaults)", "sample(llama-defaults)", 10),
                                 ("top_p(0.95), peaked", "top_p(0.95)", 100),
                                 ("top_p(0.95), flat", "top_p(0.95)", 100),
                                 ("typical_p(0.9), peaked", "typical_p(0.9)", 100),
                                 ("typical_p(0.9), flat", "typical_p(0.9)", 100)):
            dist = name.rsplit(", ", 1)[1] if ", " in name else None
            rs = _find(results, "kernels", kern, **k)
            rs = [{"x": (r["llama_us"] - fill) / r["fastdecode_us"]} for r in rs
                  if r["llama_us"] is not None and (dist is None or r["dist"] == dist)]
            add(f"{name} vs llama.cpp, its refill subtracted", rs, "x", goal)
    add("top_p(0.95), flat row: multiple of the exp-sum floor",
        _find(results, "kernels", "top_p(0.95)", dist="flat", **k), "floor_x", 2.0, False,
        "{:.2f}x")
    add("softmax: multiple of the exp-sum floor", _find(results, "kernels", "softmax", **k),
        "floor_x", 1.3, False, "{:.2f}x")
    add(f"beam step 8x{V0} vs torch log_softmax + topk",
        _find(results, "beam", "beam_step(k=16)", threads=1), "torch_x", 25)
    scal = []
    for r1 in [r for r in results if r["section"] == "batch" and r["B"] == 64
               and r["threads"] == 1]:
        r2 = _find(results, "batch", r1["kernel"], B=64, threads=2)
        if r2 and r2[0]["fastdecode_us"]:
            scal.append({"x": r1["fastdecode_us"] / r2[0]["fastdecode_us"]})
    add("B = 64: 2 threads vs 1 thread (worst kernel)", scal, "x", 1.7, True, "{:.2f}x")
    add("generate overhead per token, B = 1 (greedy and sample)",
        [r for r in results if r["section"] == "generate"], "fastdecode_us", 30.0, False,
        "{:.1f} us")
    return out


def main(argv: list[str] | None = None, *, prog: str = "python -m benchmarks",
         progress: Callable[[int, int, str | None], None] | None = None) -> int:
    """Run the suite; ``progress(done, total, label)`` is called before each case (with its label)
    and after it (label None), before its row is printed (``fastdecode bench`` draws a bar)."""
    ap = argparse.ArgumentParser(prog=prog, description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="CI-sized: V = 4096, B = 1 and 4, short time budgets")
    ap.add_argument("--cases", default="",
                    help="comma-separated substrings; run the cases whose name or shape holds one "
                         "(e.g. 'top_p,beam' or 'kernels/softmax')")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    ap.add_argument("--vocab", type=int, action="append", default=None,
                    help="override the vocabulary sizes (repeatable; the first is the main one)")
    ap.add_argument("--batch", type=int, action="append", default=None,
                    help="override the batch sizes of the batch section (repeatable)")
    ap.add_argument("--budget", type=float, default=0.25,
                    help="seconds of calls per median (default 0.25; at least 3 calls)")
    ap.add_argument("--no-llama", action="store_true", help="skip the llama.cpp peer")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    args = ap.parse_args(argv)
    env = Env(args)
    cases = build_cases(env)
    if args.list:
        for c in cases:
            print(f"{c.label:<40}{c.shape()}")
        return 0
    info = machine()
    print(f"fastdecode {info['fastdecode']} benchmark suite, {info['date']}")
    print(f"machine: {info['cpu']}, {info['cpus']} CPUs; Python {info['python']}, NumPy "
          f"{info['numpy']}; ISA {info['isa']}")
    if env.torch is not None:
        import transformers
        info["torch"], info["transformers"] = env.torch.__version__, transformers.__version__
        print(f"torch {info['torch']} + transformers {info['transformers']} (torch threads = "
              f"fastdecode threads)")
    else:
        print(f"torch peer skipped: {env.torch_why}")
    if env.llama is not None:
        info["llama_cpp"] = env.llama.__version__
        V0 = args.vocab[0] if args.vocab else (4096 if args.quick else 128256)
        lc = peers.LlamaChain(env.llama, [("top_k", (1,))], V0)
        fill = median_us(lambda: lc.fill(rows("peaked", 1, V0, "float32").f32[0]),
                         0.02 if args.quick else args.budget, 3)
        env.llama_fill_us[V0] = fill
        info["llama_fill_us"] = fill
        print(f"llama.cpp via llama-cpp-python {info['llama_cpp']}; its times include refilling "
              f"the candidate array from NumPy, {fill:.0f} us at V = {V0} (llama.cpp does it in C)")
    else:
        print(f"llama.cpp peer skipped: {env.llama_why}")
    print("times: median us per call (generate: per token); floor: fd / floor kernel on the same "
          "rows; /fd: peer / fastdecode")
    print(header())
    results = []
    threads0 = fd.get_num_threads()
    try:
        for i, c in enumerate(cases):
            if progress is not None:
                progress(i, len(cases), f"{c.label} {c.shape()}")
            r = run_case(env, c)
            if progress is not None:
                progress(i + 1, len(cases), None)
            results.append(r)
            print(row_text(r), flush=True)
    finally:
        fd.set_num_threads(threads0)
    tg = targets(env, results)
    if tg:
        print("targets (issue 7; worst case over the rows above" +
              ("; stated for V = 128,256, so --quick rows do not test them):" if args.quick
               else "):"))
        for t in tg:
            print(f"  {'met    ' if t['ok'] else 'NOT met'} {t['target']:<72}{t['text']:>10}  "
                  f"(goal {t['goal_text']})")
    skipped = sorted({(p, r[f"{p}_why"]) for r in results for p in PEERS
                      if r[f"{p}_why"] and r[f"{p}_why"] != "n/a"
                      and (p != "llama" or env.llama is not None)})
    if skipped:
        print("peers not run on some cases:")
        for p, why in skipped:
            print(f"  {p}: {why}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": info, "argv": sys.argv[1:] if argv is None else argv,
                       "results": results, "targets": tg}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
