"""`python -m fastdecode`: a short tour of the filters and the seeded sampler on a synthetic row."""

from __future__ import annotations

import sys

import numpy as np

import fastdecode as fd


def _kept(row: np.ndarray) -> str:
    p = fd.softmax(row)
    ids = np.flatnonzero(np.isfinite(row))
    return " ".join(f"{i}:{p[i]:.3f}" for i in ids)


def main(argv: list[str] | None = None) -> int:
    probs = np.array([0.30, 0.20, 0.15, 0.10, 0.08, 0.06, 0.05, 0.03, 0.02, 0.01])
    z = np.log(probs).astype(np.float32)
    print("fastdecode", fd.__version__, "- what each filter keeps of one 10-token row")
    print(f"  {'input':<28}{_kept(z)}")
    for label, row in [
        ("top_k(k=3)", fd.top_k(z, 3)),
        ("top_p(p=0.6)", fd.top_p(z, 0.6)),
        ("min_p(p=0.3)", fd.min_p(z, 0.3)),
        ("typical_p(mass=0.5)", fd.typical_p(z, 0.5)),
        ("epsilon_cutoff(0.05)", fd.epsilon_cutoff(z, 0.05)),
        ("eta_cutoff(0.05)", fd.eta_cutoff(z, 0.05)),
        ("top_n_sigma(n=1)", fd.top_n_sigma(z, 1.0)),
    ]:
        print(f"  {label:<28}{_kept(row)}")
    print(f"  entropy {float(fd.entropy(z)):.4f} nats, varentropy {float(fd.varentropy(z)):.4f}")

    batch = np.tile(z, (8, 1))
    seeds = np.arange(8)
    toks = fd.sample(batch, temperature=0.8, top_p=0.9, seed=seeds, position=0)
    alone = [int(fd.sample(z, temperature=0.8, top_p=0.9, seed=int(s), position=0)) for s in seeds]
    print("\nsample(temperature=0.8, top_p=0.9), 8 rows with seeds 0..7:", toks.tolist())
    print("the same rows drawn one at a time:                        ", alone)
    draws = fd.sample(np.tile(z, (100_000, 1)), top_k=4, seed=np.arange(100_000))
    freq = np.bincount(draws, minlength=10) / draws.size
    print("top_k=4 frequencies over 100,000 seeds:", np.round(freq[:5], 3).tolist(),
          "expected", np.round(probs[:4] / probs[:4].sum(), 3).tolist())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
