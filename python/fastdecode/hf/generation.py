"""fastdecode's loops as ``model.generate(..., custom_generate=...)`` decoding methods.

transformers (>= 4.56) lets ``generate`` hand its decoding loop to a callable: it prepares the
inputs, the generation config, the logits processors and the stopping criteria as usual, then
calls ``custom_generate(model, input_ids, logits_processor, stopping_criteria, generation_config,
**extra, **model_kwargs)``; keyword arguments of ``generate`` named in the callable's signature
(and not in HF's own ``_sample``) are passed to it. The three callables here run fastdecode's
loops on the model through :class:`~fastdecode.hf.HFModel`::

    from fastdecode.hf import speculative, contrastive, fastdecode_generate

    out = model.generate(ids, max_new_tokens=64, do_sample=False,
                         custom_generate=speculative, draft="prompt_lookup", num_draft_tokens=4)
    out = model.generate(ids, max_new_tokens=64, custom_generate=contrastive,
                         amateur=8, alpha=0.1)            # amateur: the first 8 layers
    out = model.generate(ids, max_new_tokens=64, do_sample=True, top_p=0.9,
                         custom_generate=fastdecode_generate, fd_seed=0)

They return what ``generate`` returns: a ``LongTensor`` of sequences (prompt as given, left padding
kept, then the new tokens, then ``pad_token_id``), or a ``GenerateDecoderOnlyOutput`` with only
``sequences`` set when ``return_dict_in_generate=True`` (scores and logits are not collected).

What the loop applies comes from the generation config (temperature, top-k/p, min-p, typical,
epsilon, eta, penalties, bad words, sequence bias as a Sampler — :func:`from_generation_config`
— and EOS, ``min_new_tokens``, ``max_new_tokens`` / ``max_length``). Logits processors or stopping
criteria that the config does not describe (ones passed by the caller, stop strings, a time limit)
raise ``ValueError`` instead of being silently dropped. Sampling draws from fastdecode's seeded
generator (``fd_seed=``; the torch RNG is not used), so its tokens differ from HF's for the same
torch seed while the distribution is the same.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..beam import beam_search as _fd_beam_search
from ..generate import generate as _fd_generate
from ..contrastive import contrastive_generate
from ..speculative import PromptLookup, speculative_generate
from .model import HFModel
from .processors import from_generation_config

__all__ = ["speculative", "contrastive", "fastdecode_generate"]

# The processors generate() builds from config fields that the fastdecode loop reproduces.
_CONFIG_PROCESSORS = {
    "TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper", "MinPLogitsWarper",
    "TypicalLogitsWarper", "EpsilonLogitsWarper", "EtaLogitsWarper", "RepetitionPenaltyLogitsProcessor",
    "NoRepeatNGramLogitsProcessor", "NoBadWordsLogitsProcessor", "SequenceBiasLogitsProcessor",
    "MinNewTokensLengthLogitsProcessor", "MinLengthLogitsProcessor", "SuppressTokensLogitsProcessor",
}
_CONFIG_CRITERIA = {"MaxLengthCriteria", "EosTokenCriteria"}


def _check_lists(logits_processor: Any, stopping_criteria: Any) -> None:
    for p in logits_processor or []:
        if type(p).__name__ not in _CONFIG_PROCESSORS:
            raise ValueError(f"custom_generate (fastdecode): the logits processor {type(p).__name__} has no "
                             "fastdecode equivalent in this loop; pass the decoding settings through the "
                             "generation config, or use fastdecode's drop-in processors with HF's own loop")
    for c in stopping_criteria or []:
        if type(c).__name__ not in _CONFIG_CRITERIA:
            raise ValueError(f"custom_generate (fastdecode): the stopping criterion {type(c).__name__} is "
                             "not supported (only max_length / max_new_tokens and EOS)")


def _ids_list(v: Any) -> list[int] | None:
    if v is None:
        return None
    if isinstance(v, torch.Tensor):
        v = v.tolist()
    return [int(v)] if isinstance(v, (int, np.integer)) else [int(x) for x in v]


def _loop_args(model: Any, input_ids: torch.Tensor, generation_config: Any, model_kwargs: dict,
               logits_processor: Any, stopping_criteria: Any, *, need_sampler: bool = True) -> dict:
    """The arguments common to fastdecode's loops, from what ``generate`` prepared."""
    _check_lists(logits_processor, stopping_criteria)
    if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2:
        raise ValueError("custom_generate (fastdecode): decoder-only models with 2-D input_ids only")
    S = int(input_ids.shape[1])
    gc = generation_config
    if gc.max_new_tokens is not None:
        max_new = int(gc.max_new_tokens)
    else:
        max_new = max(int(gc.max_length) - S, 0)
    min_new = int(gc.min_new_tokens or 0)
    if gc.min_length:
        min_new = max(min_new, int(gc.min_length) - S)
    eos = _ids_list(getattr(gc, "_eos_token_tensor", None))
    if eos is None:
        eos = _ids_list(gc.eos_token_id)
    pad = getattr(gc, "_pad_token_tensor", None)
    pad = int(pad) if pad is not None else (int(gc.pad_token_id) if gc.pad_token_id is not None else None)
    if getattr(gc, "stop_strings", None):
        raise ValueError("custom_generate (fastdecode): stop_strings are not supported here")
    mask = model_kwargs.get("attention_mask")
    mask = None if mask is None or bool(mask.all()) else mask.detach().cpu().numpy()
    ids = input_ids.detach().cpu().numpy()
    nb = int(gc.num_beams or 1)
    if nb > 1:
        # generate() repeated every prompt max(num_beams, num_return_sequences) times for its own
        # beam loop; fastdecode's beam search takes each prompt once
        e = max(nb, int(gc.num_return_sequences or 1))
        ids = ids[::e]
        mask = mask[::e] if mask is not None else None
    sampler = None
    if need_sampler:
        cfg = gc.to_dict()
        for k in ("min_new_tokens", "min_length", "num_beams", "length_penalty", "early_stopping",
                  "num_return_sequences"):
            cfg.pop(k, None)
        known = set(type(gc)().to_dict())
        sampler = from_generation_config({k: v for k, v in cfg.items() if k in known})
    return dict(input_ids=ids, attention_mask=mask, max_new_tokens=max_new,
                min_new_tokens=min_new, eos_token_id=eos, pad_token_id=pad, sampler=sampler)


def _sampler_or_greedy(sampler: Any, generation_config: Any) -> Any:
    # greedy: plain argmax over the (penalised) logits; a Sampler at temperature 0 does exactly that,
    # and None is its fast path when nothing edits the logits
    if not generation_config.do_sample and not sampler.edits_logits:
        return None
    return sampler


def _seed(fd_seed: Any, B: int) -> Any:
    """Per-row seeds: ``fd_seed`` per row as given, or a scalar (default: one drawn from torch's
    generator, so ``torch.manual_seed`` makes runs repeatable) plus the row index, so that the
    copies ``num_return_sequences`` makes of a prompt draw independently."""
    if fd_seed is None:
        fd_seed = int(torch.randint(0, 2**62, ()).item())
    if np.ndim(fd_seed) == 0:
        return (np.uint64(int(fd_seed)) + np.arange(B, dtype=np.uint64)).astype(np.uint64)
    return fd_seed


def _output(seqs: np.ndarray, generation_config: Any, device: Any) -> Any:
    t = torch.from_numpy(np.ascontiguousarray(seqs)).to(device)
    if generation_config.return_dict_in_generate:
        from transformers.generation.utils import GenerateDecoderOnlyOutput

        return GenerateDecoderOnlyOutput(sequences=t)
    return t


def _as_model(m: Any, base: Any, name: str) -> Any:
    """A draft / amateur argument as a fastdecode model: an int k is the first k layers of the
    target, a transformers model is wrapped in HFModel, anything else is used as it is."""
    if isinstance(m, bool):
        raise TypeError(f"{name} must be a model, an int (early layers) or a drafter, got {m!r}")
    if isinstance(m, (int, np.integer)):
        return HFModel(base, num_layers=int(m))
    if isinstance(m, torch.nn.Module):
        return HFModel(m)
    return m


def speculative(model: Any, input_ids: torch.Tensor, logits_processor: Any, stopping_criteria: Any,
                generation_config: Any, draft: Any = "prompt_lookup", num_draft_tokens: int | None = None,
                adaptive: bool = False, fd_seed: Any = None, **model_kwargs: Any) -> Any:
    """``custom_generate`` running :func:`fastdecode.speculative_generate` (batched, exact).

    ``generate`` passes the first five arguments; the others are ``generate`` keywords. Greedy
    decoding gives HF's greedy tokens exactly, and sampling the distribution of plain sampling
    (rejection sampling), whatever the draft.

    Parameters
    ----------
    model : transformers ``PreTrainedModel``
        The decoder-only causal LM ``generate`` was called on (wrapped in :class:`HFModel`).
    input_ids : LongTensor, shape (B, S)
        The prompts as ``generate`` prepared them (left-padded where ``attention_mask`` says so).
    logits_processor : LogitsProcessorList
        What ``generate`` built from the config (and the caller's ``logits_processor=``): only
        processors the config describes are accepted; the settings are read from the config.
    stopping_criteria : StoppingCriteriaList
        Likewise: only ``max_length`` / ``max_new_tokens`` and EOS.
    generation_config : transformers.GenerationConfig
        The merged config of the call (sampling settings, lengths, EOS and pad ids, beams).
    draft : "prompt_lookup", int, transformers model, or fastdecode model / drafter
        "prompt_lookup" (default): n-grams of the history (HF's ``max_matching_ngram_size``
        is honoured, default 2); an int k: the model's own first k layers; another
        transformers model with the same vocabulary; or any fastdecode model or drafter.
    num_draft_tokens : int, optional
        Tokens drafted per round; default: the config's ``prompt_lookup_num_tokens`` if set,
        else 4.
    adaptive : bool, default False
        Adapt the number of draft tokens each round with HF's heuristic schedule.
    fd_seed : int or sequence of B ints, optional
        Seeds of fastdecode's generator when sampling: an int gives row b ``fd_seed + b``
        (independent copies for ``num_return_sequences``); default: one drawn from torch's
        generator, so ``torch.manual_seed`` makes runs repeatable.
    **model_kwargs
        ``generate``'s model inputs; ``attention_mask`` gives the left padding, the others are
        not used.

    Returns
    -------
    LongTensor or GenerateDecoderOnlyOutput
        ``(B', S + new)`` sequences: the prompts as given, the new tokens, then ``pad_token_id``
        after a row's EOS; a ``GenerateDecoderOnlyOutput`` with only ``sequences`` set when
        ``return_dict_in_generate=True``.

    Raises
    ------
    ValueError
        A logits processor or stopping criterion the config does not describe (a caller's
        processor, ``stop_strings``, ``max_time``), non-2-D ``input_ids``, or a config field
        with no fastdecode equivalent (see :func:`from_generation_config`);
        ``num_beams > 1``.
    TypeError
        ``draft`` is a bool.

    Examples
    --------
    >>> import torch
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> _ = torch.manual_seed(0)
    >>> cfg = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
    ...                   num_attention_heads=2, num_key_value_heads=1)
    >>> net = LlamaForCausalLM(cfg).eval()  # a tiny random Llama
    >>> ids = torch.tensor([[5, 6, 7, 8, 5, 6]])
    >>> kw = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    >>> from fastdecode.hf import speculative
    >>> net.generate(ids, **kw)
    tensor([[ 5,  6,  7,  8,  5,  6, 23, 11, 12, 20, 30, 13]])
    >>> net.generate(ids, custom_generate=speculative, **kw)  # prompt lookup drafts
    tensor([[ 5,  6,  7,  8,  5,  6, 23, 11, 12, 20, 30, 13]])
    >>> net.generate(ids, custom_generate=speculative, draft=1, num_draft_tokens=3, **kw)
    tensor([[ 5,  6,  7,  8,  5,  6, 23, 11, 12, 20, 30, 13]])
    >>> try:
    ...     net.generate(ids, custom_generate=speculative, num_beams=2, **kw)
    ... except ValueError as e:
    ...     print(e)
    custom_generate=speculative: num_beams > 1 is not supported
    """
    a = _loop_args(model, input_ids, generation_config, model_kwargs, logits_processor, stopping_criteria)
    if generation_config.num_beams not in (None, 1):
        raise ValueError("custom_generate=speculative: num_beams > 1 is not supported")
    gc = generation_config
    if num_draft_tokens is None:
        num_draft_tokens = int(gc.prompt_lookup_num_tokens or 0) or 4
    if isinstance(draft, str) and draft == "prompt_lookup":
        draft = PromptLookup(max_ngram_size=int(getattr(gc, "max_matching_ngram_size", None) or 2))
    target = HFModel(model)
    d = _as_model(draft, model, "draft")
    smp = _sampler_or_greedy(a.pop("sampler"), gc)
    r = speculative_generate(target, d, num_draft_tokens=num_draft_tokens, adaptive=adaptive, sampler=smp,
                             seed=_seed(fd_seed, input_ids.shape[0]) if smp is not None else None, **a)
    return _output(r.sequences, gc, input_ids.device)


def contrastive(model: Any, input_ids: torch.Tensor, logits_processor: Any, stopping_criteria: Any,
                generation_config: Any, amateur: Any = None, alpha: Any = 0.1,
                amateur_temperature: Any = 1.0, beta: Any = None, amateur_context: int | None = None,
                fd_seed: Any = None, **model_kwargs: Any) -> Any:
    """``custom_generate`` running :func:`fastdecode.contrastive_generate`.

    ``generate`` passes the first five arguments; the others are ``generate`` keywords.
    ``num_beams > 1`` in the config runs beam search over the summed contrastive score (with the
    config's ``length_penalty``, ``early_stopping``, ``num_return_sequences``); ``do_sample``
    samples from the score with the config's sampler. The other keywords are those of
    :func:`fastdecode.contrastive_generate`, which has the details.

    Parameters
    ----------
    model : transformers ``PreTrainedModel``
        The decoder-only causal LM ``generate`` was called on (wrapped in :class:`HFModel`).
    input_ids : LongTensor, shape (B, S)
        The prompts as ``generate`` prepared them (left-padded where ``attention_mask`` says so).
    logits_processor : LogitsProcessorList
        What ``generate`` built from the config (and the caller's ``logits_processor=``): only
        processors the config describes are accepted; the settings are read from the config.
    stopping_criteria : StoppingCriteriaList
        Likewise: only ``max_length`` / ``max_new_tokens`` and EOS.
    generation_config : transformers.GenerationConfig
        The merged config of the call (sampling settings, lengths, EOS and pad ids, beams).
    amateur : int, transformers model, fastdecode model, or None
        An int k: the model's first k layers (DoLa-style); a transformers model with the same
        vocabulary; any fastdecode model; None (default): the model itself on a short context,
        which needs ``amateur_context``.
    alpha : float or array of B floats, default 0.1
        The plausibility head: only tokens with ``p >= alpha * max p`` under the model compete.
    amateur_temperature : float > 0, default 1.0
        The amateur's logits are divided by it.
    beta : float >= 0, optional
        None (default): the score is ``log p_exp - log p_ama``; a number: ``(1 + beta) z_exp -
        beta z_ama``.
    amateur_context : int, optional
        The amateur sees only the last ``amateur_context`` tokens.
    fd_seed : int or sequence of B ints, optional
        Seeds of fastdecode's generator when sampling: an int gives row b ``fd_seed + b``
        (independent copies for ``num_return_sequences``); default: one drawn from torch's
        generator, so ``torch.manual_seed`` makes runs repeatable.
    **model_kwargs
        ``generate``'s model inputs; ``attention_mask`` gives the left padding, the others are
        not used.

    Returns
    -------
    LongTensor or GenerateDecoderOnlyOutput
        ``(B', S + new)`` sequences: the prompts as given, the new tokens, then ``pad_token_id``
        after a row's EOS; a ``GenerateDecoderOnlyOutput`` with only ``sequences`` set when
        ``return_dict_in_generate=True``.

    Raises
    ------
    ValueError
        A logits processor or stopping criterion the config does not describe (a caller's
        processor, ``stop_strings``, ``max_time``), non-2-D ``input_ids``, or a config field
        with no fastdecode equivalent (see :func:`from_generation_config`);
        ``min_new_tokens`` with ``num_beams > 1``; invalid contrastive settings (as
        :func:`fastdecode.contrastive_generate` raises).
    TypeError
        ``amateur`` is a bool.

    Examples
    --------
    >>> import torch
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> _ = torch.manual_seed(0)
    >>> cfg = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
    ...                   num_attention_heads=2, num_key_value_heads=1)
    >>> net = LlamaForCausalLM(cfg).eval()  # a tiny random Llama
    >>> ids = torch.tensor([[5, 6, 7, 8, 5, 6]])
    >>> kw = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    >>> import fastdecode as fd
    >>> from fastdecode.hf import HFModel, contrastive
    >>> net.generate(ids, custom_generate=contrastive, amateur=1, alpha=0.1, **kw)
    tensor([[ 5,  6,  7,  8,  5,  6, 21, 12, 12, 12, 12, 12]])
    >>> r = fd.contrastive_generate(HFModel(net), HFModel(net, num_layers=1), ids.numpy(),
    ...                             alpha=0.1, max_new_tokens=6)  # the same, called directly
    >>> r.sequences
    array([[ 5,  6,  7,  8,  5,  6, 21, 12, 12, 12, 12, 12]])
    """
    gc = generation_config
    a = _loop_args(model, input_ids, gc, model_kwargs, logits_processor, stopping_criteria)
    smp = a.pop("sampler")
    expert = HFModel(model)
    am = _as_model(amateur, model, "amateur")
    nb = int(gc.num_beams or 1)
    kw: dict = {}
    if nb > 1:
        kw = dict(num_beams=nb, length_penalty=float(gc.length_penalty if gc.length_penalty is not None else 1.0),
                  early_stopping=gc.early_stopping if gc.early_stopping is not None else False,
                  num_return_sequences=int(gc.num_return_sequences or 1))
        if a.pop("min_new_tokens"):
            raise ValueError("custom_generate=contrastive: min_new_tokens with num_beams > 1 is not supported")
        smp = None
    else:
        smp = _sampler_or_greedy(smp, gc)
    r = contrastive_generate(expert, am, alpha=alpha, amateur_temperature=amateur_temperature, beta=beta,
                             amateur_context=amateur_context, sampler=smp,
                             seed=_seed(fd_seed, input_ids.shape[0]) if smp is not None else None, **a, **kw)
    return _output(r.sequences, gc, input_ids.device)


def fastdecode_generate(model: Any, input_ids: torch.Tensor, logits_processor: Any, stopping_criteria: Any,
                        generation_config: Any, fd_seed: Any = None, **model_kwargs: Any) -> Any:
    """``custom_generate`` running fastdecode's own loops on the model's KV cache.

    :func:`fastdecode.generate` (greedy or sampled with the config's sampler, one fused C call
    per step) or, with ``num_beams > 1``, :func:`fastdecode.beam_search` (HF's beam search
    semantics, the same tokens). ``generate`` passes the first five arguments.

    Parameters
    ----------
    model : transformers ``PreTrainedModel``
        The decoder-only causal LM ``generate`` was called on (wrapped in :class:`HFModel`).
    input_ids : LongTensor, shape (B, S)
        The prompts as ``generate`` prepared them (left-padded where ``attention_mask`` says so).
    logits_processor : LogitsProcessorList
        What ``generate`` built from the config (and the caller's ``logits_processor=``): only
        processors the config describes are accepted; the settings are read from the config.
    stopping_criteria : StoppingCriteriaList
        Likewise: only ``max_length`` / ``max_new_tokens`` and EOS.
    generation_config : transformers.GenerationConfig
        The merged config of the call (sampling settings, lengths, EOS and pad ids, beams).
    fd_seed : int or sequence of B ints, optional
        Seeds of fastdecode's generator when sampling: an int gives row b ``fd_seed + b``
        (independent copies for ``num_return_sequences``); default: one drawn from torch's
        generator, so ``torch.manual_seed`` makes runs repeatable.
    **model_kwargs
        ``generate``'s model inputs; ``attention_mask`` gives the left padding, the others are
        not used.

    Returns
    -------
    LongTensor or GenerateDecoderOnlyOutput
        ``(B', S + new)`` sequences: the prompts as given, the new tokens, then ``pad_token_id``
        after a row's EOS; a ``GenerateDecoderOnlyOutput`` with only ``sequences`` set when
        ``return_dict_in_generate=True``.

    Raises
    ------
    ValueError
        A logits processor or stopping criterion the config does not describe (a caller's
        processor, ``stop_strings``, ``max_time``), non-2-D ``input_ids``, or a config field
        with no fastdecode equivalent (see :func:`from_generation_config`);
        beam sampling (``num_beams > 1`` with ``do_sample``), or ``min_new_tokens`` with
        ``num_beams > 1``.

    Examples
    --------
    >>> import torch
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> _ = torch.manual_seed(0)
    >>> cfg = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
    ...                   num_attention_heads=2, num_key_value_heads=1)
    >>> net = LlamaForCausalLM(cfg).eval()  # a tiny random Llama
    >>> ids = torch.tensor([[5, 6, 7, 8, 5, 6]])
    >>> kw = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    >>> from fastdecode.hf import HFModel, fastdecode_generate
    >>> net.generate(ids, custom_generate=fastdecode_generate, **kw)  # = net.generate(ids, **kw)
    tensor([[ 5,  6,  7,  8,  5,  6, 23, 11, 12, 20, 30, 13]])
    >>> net.generate(ids, num_beams=2, **kw)
    tensor([[ 5,  6,  7,  8,  5,  6, 23, 11,  0, 30, 13, 13]])
    >>> net.generate(ids, custom_generate=fastdecode_generate, num_beams=2, **kw)
    tensor([[ 5,  6,  7,  8,  5,  6, 23, 11,  0, 30, 13, 13]])

    Sampling draws from fastdecode's seeded generator: the tokens of ``fastdecode.generate``
    with the config's sampler and the same seed.

    >>> import fastdecode as fd
    >>> sk = dict(max_new_tokens=6, do_sample=True, top_k=10, pad_token_id=0)
    >>> net.generate(ids, custom_generate=fastdecode_generate, fd_seed=1, **sk)
    tensor([[ 5,  6,  7,  8,  5,  6, 17, 13, 26,  9,  3, 25]])
    >>> r = fd.generate(HFModel(net), ids.numpy(), sampler=fd.Sampler(top_k=10), seed=1,
    ...                 max_new_tokens=6)
    >>> r.sequences
    array([[ 5,  6,  7,  8,  5,  6, 17, 13, 26,  9,  3, 25]])
    """
    gc = generation_config
    nb = int(gc.num_beams or 1)
    a = _loop_args(model, input_ids, gc, model_kwargs, logits_processor, stopping_criteria, need_sampler=nb == 1)
    M = HFModel(model)
    if nb > 1:
        a.pop("sampler")
        if gc.do_sample:
            raise ValueError("custom_generate=fastdecode_generate: beam sampling is not supported here")
        if a.pop("min_new_tokens"):
            raise ValueError("custom_generate=fastdecode_generate: min_new_tokens with num_beams > 1 is "
                             "not supported")
        r = _fd_beam_search(M, a.pop("input_ids"), num_beams=nb,
                            length_penalty=float(gc.length_penalty if gc.length_penalty is not None else 1.0),
                            early_stopping=gc.early_stopping if gc.early_stopping is not None else False,
                            num_return_sequences=int(gc.num_return_sequences or 1),
                            no_repeat_ngram_size=int(gc.no_repeat_ngram_size or 0), **a)
        return _output(r.sequences, gc, input_ids.device)
    smp = _sampler_or_greedy(a.pop("sampler"), gc)
    r = _fd_generate(M, sampler=smp, seed=_seed(fd_seed, input_ids.shape[0]) if smp is not None else None, **a)
    return _output(r.sequences, gc, input_ids.device)
