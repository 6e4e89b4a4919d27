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
    _generation_tour()
    return 0


def _generation_tour() -> None:
    from fastdecode.models import char_model

    m = char_model()
    prompt = m.encode("Alice was ")
    print("\ngenerate() on the built-in character model (Kneser-Ney 5-gram, 'Alice in Wonderland'):")
    runs = [
        ("greedy", dict()),
        ("greedy, no_repeat_ngram_size=6", dict(sampler=fd.Sampler(temperature=0, no_repeat_ngram_size=6))),
        ("sample T=0.8 top_p=0.9 seed=1", dict(sampler=fd.Sampler(temperature=0.8, top_p=0.9), seed=1)),
        ("  same seed again", dict(sampler=fd.Sampler(temperature=0.8, top_p=0.9), seed=1)),
        ("  seed=2, stop at '.'", dict(sampler=fd.Sampler(temperature=0.8, top_p=0.9), seed=2, stop=["."])),
    ]
    for label, kw in runs:
        r = fd.generate(m, [prompt], max_new_tokens=70, decode=m.decode, eos_token_id=m.eos_token_id, **kw)
        print(f"  {label:<32}{'Alice was ' + r.texts[0]!r} [{r.finish_reasons[0]}]")
    print("  streamed, beam search and more: see README.md")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
