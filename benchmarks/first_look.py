"""First look at speed (issue 2): per-row times at V = 128,256 against NumPy and torch doing the same work.

    python benchmarks/first_look.py [--vocab 128256] [--batch 1] [--repeat 50]

Cases: the fused ``sample(top_k=50, top_p=0.9, temperature=0.8)`` and ``top_p(0.9)`` alone, on a
peaked (LM-like, Zipf-ish) row and a flat row. Peers, in the same run:
  numpy   the HF algorithm in plain NumPy (argpartition for top-k, a full sort for top-p,
          softmax, inverse-CDF draw)
  torch   transformers' TemperatureLogitsWarper -> TopK -> TopP warpers + torch.multinomial
Medians of --repeat calls; ratios are peer / fastdecode. The full suite is a later issue.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import fastdecode as fd


def timeit(fn, repeat):
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def np_top_p(z, p):
    order = np.argsort(z, axis=-1)
    s = np.take_along_axis(z, order, -1)
    e = np.exp(s - s[:, -1:])
    cum = np.cumsum(e / e.sum(-1, keepdims=True), -1)
    remove = cum <= 1 - p
    remove[:, -1] = False
    out = z.copy()
    np.put_along_axis(out, order, np.where(remove, -np.inf, s), -1)
    return out


def np_sample(z, rng, k=50, p=0.9, t=0.8):
    z = z / t
    kth = np.partition(z, -k, axis=-1)[:, -k][:, None]
    z = np.where(z < kth, -np.inf, z)
    z = np_top_p(z, p)
    e = np.exp(z - z.max(-1, keepdims=True))
    cdf = np.cumsum(e, -1)
    u = rng.random((z.shape[0], 1)) * cdf[:, -1:]
    return (cdf <= u).sum(-1)


def rows(kind, b, v, rng):
    """peaked: normal(0, 4.5) logits, an LM-like row whose 0.9 nucleus holds tens to hundreds of
    tokens; flat: normal(0, 1), whose nucleus is most of the vocabulary (the hard case)."""
    scale = 4.5 if kind == "peaked" else 1.0
    return (rng.normal(0, 1, (b, v)) * scale).astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=50)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    try:
        import torch
        from transformers.generation.logits_process import (
            TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)
        torch.set_num_threads(1)
    except ImportError:
        torch = None
    print(f"V = {a.vocab}, B = {a.batch}, float32, median of {a.repeat}; times per row in microseconds")
    print(f"{'case':<34}{'fastdecode':>12}{'numpy':>12}{'torch+HF':>12}{'numpy/fd':>10}{'torch/fd':>10}")
    for kind in ("peaked", "flat"):
        x = rows(kind, a.batch, a.vocab, rng)
        nucleus = int((np.isfinite(fd.top_p(x, 0.9))).sum(-1).mean())
        cases = {
            "sample(k=50,p=.9,T=.8)": (
                lambda: fd.sample(x, top_k=50, top_p=0.9, temperature=0.8, seed=1),
                lambda: np_sample(x, rng),
            ),
            "top_p(0.9)": (lambda: fd.top_p(x, 0.9), lambda: np_top_p(x, 0.9)),
        }
        if torch is not None:
            xt = torch.from_numpy(x)
            ids = torch.zeros((a.batch, 1), dtype=torch.long)
            w = [TemperatureLogitsWarper(0.8), TopKLogitsWarper(50), TopPLogitsWarper(0.9)]

            def t_sample():
                s = xt
                for f in w:
                    s = f(ids, s)
                return torch.multinomial(torch.softmax(s, -1), 1)

            tp = TopPLogitsWarper(0.9)
            torch_fns = {"sample(k=50,p=.9,T=.8)": t_sample, "top_p(0.9)": lambda: tp(ids, xt)}
        for name, (f_fd, f_np) in cases.items():
            t_fd = timeit(f_fd, a.repeat) / a.batch * 1e6
            t_np = timeit(f_np, max(5, a.repeat // 5)) / a.batch * 1e6
            t_t = timeit(torch_fns[name], max(5, a.repeat // 5)) / a.batch * 1e6 if torch else float("nan")
            label = f"{name} {kind} (nucleus {nucleus})"
            print(f"{label:<34}{t_fd:>12.1f}{t_np:>12.1f}{t_t:>12.1f}{t_np / t_fd:>10.1f}{t_t / t_fd:>10.1f}")


if __name__ == "__main__":
    main()
