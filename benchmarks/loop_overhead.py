"""Per-token overhead of fastdecode's generate loop against a plain NumPy loop.

The model returns precomputed logits (V = 50,257, GPT-2's vocabulary), so the time measured is the
loop itself: the model-protocol plumbing, the stop checks and the pick (Python + C). The NumPy loop
does the same steps with NumPy: the same logits, an EOS check, and greedy argmax or seeded
temperature/top-k/top-p sampling.

    OPENBLAS_NUM_THREADS=1 python benchmarks/loop_overhead.py [--steps 200]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fastdecode as fd

V = 50_257


class Replay:
    """A stateful model that hands out precomputed logits (views, no copy), whatever the tokens."""

    def __init__(self, table: np.ndarray):
        self.table = table  # (T, B, V) float32: step j of row b is table[j % T, b]
        self.vocab_size = table.shape[2]

    def start_session(self, prompts):
        s = _ReplaySession(self.table, len(prompts))
        return s, self.table[0]


class _ReplaySession:
    def __init__(self, table, B):
        self.table, self.step = table, 0
        self.rows = None  # None: all rows, in order
        self.vocab_size = table.shape[2]
        self.lengths = np.ones(B, np.int64)

    def extend(self, tokens):
        self.step += 1
        self.lengths = self.lengths + tokens.shape[1]
        x = self.table[self.step % self.table.shape[0]]
        return (x if self.rows is None else x[self.rows])[:, None, :]

    def truncate(self, lengths):
        self.lengths = np.broadcast_to(lengths, self.lengths.shape).copy()

    def select(self, rows):
        self.rows = rows if self.rows is None else self.rows[rows]
        self.lengths = self.lengths[rows]


def numpy_loop(table, B, steps, sample, rng):
    seqs = np.zeros((B, steps), np.int64)
    for t in range(steps):
        x = table[t % table.shape[0]]
        if not sample:
            tok = x.argmax(axis=1)
        else:
            z = x / 0.8
            tok = np.empty(B, np.int64)
            kth = np.argpartition(-z, 49, axis=1)[:, :50]
            for b in range(B):
                ids = kth[b]
                zz = z[b, ids]
                o = np.argsort(-zz, kind="stable")
                ids, zz = ids[o], zz[o]
                p = np.exp(zz - zz[0])
                p /= p.sum()
                c = np.cumsum(p)
                keep = np.searchsorted(c, 0.9) + 1
                p = p[:keep] / p[:keep].sum()
                tok[b] = ids[rng.choice(keep, p=p)]
        seqs[:, t] = tok
        _ = np.isin(tok, [V - 1])
    return seqs


def bench(fn, reps=3):
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    sampler = fd.Sampler(temperature=0.8, top_k=50, top_p=0.9, seed=0)
    print(f"per-token time, V={V}, {args.steps} steps (us per step per batch; lower is better)")
    print(f"{'mode':<8}{'B':>4}{'fastdecode':>13}{'NumPy loop':>13}{'speed-up':>10}")
    for B in (1, 16):
        table = (rng.standard_normal((16, B, V)) * 4.5).astype(np.float32)
        model = Replay(table)
        prompts = np.zeros((B, 1), np.int64)
        for mode, smp in (("greedy", None), ("sample", sampler)):
            t_fd = bench(lambda: fd.generate(model, prompts, max_new_tokens=args.steps, sampler=smp,
                                             eos_token_id=V - 1))
            t_np = bench(lambda: numpy_loop(table, B, args.steps, smp is not None, rng))
            us_fd = t_fd / args.steps * 1e6
            us_np = t_np / args.steps * 1e6
            print(f"{mode:<8}{B:>4}{us_fd:>13.1f}{us_np:>13.1f}{us_np / us_fd:>9.1f}x")


if __name__ == "__main__":
    main()
