"""Drop-in Hugging Face logits processors backed by fastdecode's C kernels.

Each class bears the name of a transformers 5.23 class and subclasses it: the constructor signature,
argument validation (same exceptions, same messages) and attributes are HF's own, so
``LogitsProcessorList`` and ``model.generate(..., logits_processor=LogitsProcessorList([...]))``
take them as they take HF's. Only ``__call__(input_ids, scores)`` is replaced: instead of torch's
sort, softmax and cumsum over the vocabulary it makes one fastdecode kernel call on a zero-copy
NumPy view of the CPU tensor and hands back a new tensor (the input is never modified).

Equality with HF, float32 scores (what ``generate`` feeds processors: it upcasts the logits):

* temperature, repetition penalty, sequence bias: the same float32 arithmetic, bit for bit;
* top-k, no-repeat n-gram, bad words, min length / min new tokens, suppress tokens: the same
  ``-inf`` masks;
* top-p, min-p, typical, epsilon, eta: the same masks, removed tokens set to ``filter_value``,
  except (a) which members of a tie group straddling the cut are kept: HF's choice follows
  ``torch.sort``/``torch.topk``, which are stable only on rows of up to 16 tokens; fastdecode makes
  HF's choice there and a fixed one on longer rows (top-p: the highest ids of the group, the
  ``min_tokens_to_keep`` of min-p and typical: the lowest), and (b) a token whose probability
  lies within float32 rounding of the threshold: HF sums probabilities in float32 in sorted
  order, fastdecode in float64.

float16 / bfloat16 scores: HF's classes compute on them in half precision (softmax, cumsum and
entropy rounded to 11 or 8 significant bits); fastdecode converts each value to float32 exactly,
decides in float32/float64 and writes half-precision results. Temperature, penalties, bias and
every mask that needs no probability (top-k, n-gram, bad words, suppress, min length) are equal
to HF's on half tensors; the probability-based filters equal HF applied to the float32 upcast
(rounded back), and can differ from HF-in-half-precision where the threshold falls within half
precision rounding of a token's probability or cumulative mass.

Tensors on another device (CUDA) raise ``ValueError`` unless the processor was built with
``allow_copy=True``: then scores (and ``input_ids``) are copied to the CPU and the result back to
the scores' device, every step. Histories holding ids ``>= V`` (an embedding table larger than
the LM head) are handled as HF handles them: they penalise, ban or match nothing inside the
vocabulary.

Also here, for what HF lacks: :class:`TopNSigmaLogitsWarper`, :class:`XTCLogitsWarper`,
:class:`DRYLogitsProcessor`, :class:`AdaptiveTemperatureLogitsWarper`,
:class:`DynamicTemperatureLogitsWarper`, :class:`MirostatLogitsProcessor` (a picking, stateful
processor) and :class:`FastdecodeLogitsProcessor` (a whole :class:`fastdecode.Sampler` fused into
one processor); and :func:`from_generation_config`.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch
from transformers import GenerationConfig
from transformers.generation import logits_process as _hf

from .. import ops
from ..adaptive import mirostat as ops_mirostat
from ..processors import Sampler

__all__ = [
    "TemperatureLogitsWarper",
    "TopKLogitsWarper",
    "TopPLogitsWarper",
    "MinPLogitsWarper",
    "TypicalLogitsWarper",
    "EpsilonLogitsWarper",
    "EtaLogitsWarper",
    "TopNSigmaLogitsWarper",
    "RepetitionPenaltyLogitsProcessor",
    "NoRepeatNGramLogitsProcessor",
    "SequenceBiasLogitsProcessor",
    "NoBadWordsLogitsProcessor",
    "MinLengthLogitsProcessor",
    "MinNewTokensLengthLogitsProcessor",
    "SuppressTokensLogitsProcessor",
    "XTCLogitsWarper",
    "DRYLogitsProcessor",
    "AdaptiveTemperatureLogitsWarper",
    "DynamicTemperatureLogitsWarper",
    "MirostatLogitsProcessor",
    "FastdecodeLogitsProcessor",
    "from_generation_config",
]

_NEG_INF = -float("Inf")

_ALLOW_COPY_DOC = """
    allow_copy : bool, default False
        Accept scores on another device (CUDA) by copying them to the CPU and the result back,
        every call. Without it such tensors raise ``ValueError``."""

_FILTER_DOC = """
    filter_value : float, default -inf
        Written to removed tokens (rounded to the scores' dtype).
    min_tokens_to_keep : int, default 1
        At least this many of the highest scores survive.""" + _ALLOW_COPY_DOC


class _KernelProcessor(_hf.LogitsProcessor):
    """The shared ``__call__``: device and shape checks around the subclass's ``_apply``."""

    # fastdecode processors take 2-D (batch, vocab) scores, not continuous batching's 3-D ones
    supports_continuous_batching = False
    allow_copy = False

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Process one step's scores, as ``LogitsProcessorList`` and ``generate`` call it.

        Parameters
        ----------
        input_ids : LongTensor, shape (B, S)
            Each row's history (prompt and the tokens generated so far). Processors that do not
            read the history (temperature, the filters) ignore it.
        scores : FloatTensor, shape (B, V)
            The next-token logits: float32, float64, float16 or bfloat16, on the CPU unless the
            processor was built with ``allow_copy=True``. Never modified.

        Returns
        -------
        FloatTensor, shape (B, V)
            A new tensor of the scores' dtype, on the scores' device.

        Raises
        ------
        ValueError
            ``scores`` is not on the CPU and ``allow_copy`` is False; ``scores`` is not 2-D; or
            an argument the processor checks on the first call (an id beyond the vocabulary in
            ``sequence_bias`` or ``bad_words_ids``, a batch-size mismatch).
        TypeError
            ``scores`` is not a floating-point tensor.

        Examples
        --------
        >>> import torch
        >>> from fastdecode.hf import TopKLogitsWarper
        >>> warper = TopKLogitsWarper(2)
        >>> warper(torch.tensor([[0, 1]]), torch.tensor([[1.0, 4.0, 3.0, 2.0]]))
        tensor([[-inf, 4., 3., -inf]])
        >>> try:  # a tensor on another device (here PyTorch's data-less "meta" device)
        ...     warper(torch.tensor([[0, 1]]), torch.zeros(1, 4, device="meta"))
        ... except ValueError as e:
        ...     print(str(e).split(";")[0])
        scores is on device meta
        """
        device = scores.device
        if device.type != "cpu":
            if not self.allow_copy:
                raise ValueError(
                    f"scores is on device {device}; fastdecode's kernels run on CPU memory. Build "
                    f"{type(self).__name__}(..., allow_copy=True) to copy scores to the CPU and "
                    "back on every call, or use transformers' own class on that device."
                )
            scores = scores.cpu()
            if isinstance(input_ids, torch.Tensor):
                input_ids = input_ids.cpu()
        if scores.dim() != 2:
            raise ValueError(f"scores must be 2-D (batch, vocab), got shape {tuple(scores.shape)}")
        if not scores.is_floating_point():
            raise TypeError(f"scores must be a floating-point tensor, got {scores.dtype}")
        out = self._apply(input_ids, scores)
        return out if device.type == "cpu" else out.to(device)

    def _apply(self, input_ids: Any, scores: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


def _ids(input_ids: Any) -> np.ndarray:
    """The history as a 2-D int64 NumPy array (a view of a CPU tensor where possible)."""
    if isinstance(input_ids, torch.Tensor):
        input_ids = input_ids.detach().cpu().numpy()
    a = np.asarray(input_ids)
    return a.reshape(1, -1) if a.ndim == 1 else a


def _spare_columns(ids: np.ndarray, vocab: int, *, negative: bool = False) -> tuple[np.ndarray, int]:
    """Maps history ids ``>= vocab`` (and negative ones with `negative`) to distinct spare columns
    ``vocab, vocab + 1, ...``, as HF's spare column absorbs ids beyond the LM head. Returns the
    ids (unchanged when all are in range) and the number of spare columns."""
    bad = ids >= vocab
    if negative:
        bad |= ids < 0
    if not bad.any():
        return ids, 0
    uniq, inv = np.unique(ids[bad], return_inverse=True)
    out = ids.astype(np.int64, copy=True)
    out[bad] = vocab + inv.reshape(-1)
    return out, int(uniq.size)


def _with_spares(scores: torch.Tensor, extra: int, fn) -> torch.Tensor:
    """Runs ``fn`` on scores widened by `extra` spare columns and drops them again."""
    if extra == 0:
        return fn(scores)
    vocab = scores.shape[-1]
    return fn(torch.nn.functional.pad(scores, (0, extra)))[:, :vocab].contiguous()


def _filter(op, proc, scores: torch.Tensor, param: Any, min_keep: int | None = None) -> torch.Tensor:
    """One filter kernel call with the processor's ``filter_value`` and ``min_tokens_to_keep``."""
    keep = proc.min_tokens_to_keep if min_keep is None else min_keep
    return op(scores, param, min_tokens_to_keep=keep, filter_value=proc.filter_value)


def _eos_ids(eos: torch.Tensor, vocab: int) -> np.ndarray:
    """EOS ids inside [0, vocab) (HF's ``isin`` over the vocabulary ignores the others)."""
    e = eos.detach().cpu().numpy().reshape(-1).astype(np.int64)
    return e[(e >= 0) & (e < vocab)]


# ------------------------------------------------------------------------------------------------
# warpers


class TemperatureLogitsWarper(_KernelProcessor, _hf.TemperatureLogitsWarper):
    __doc__ = """``scores / temperature`` (HF ``TemperatureLogitsWarper``).

    Parameters
    ----------
    temperature : float
        Strictly positive float; 0 raises ``ValueError`` as in HF (fastdecode's functions read 0
        as greedy, this class does not).""" + _ALLOW_COPY_DOC + """

    Raises
    ------
    ValueError
        ``temperature`` is not a strictly positive float (HF's check and message).

    Notes
    -----
    One IEEE division per element by the temperature rounded to the scores' dtype (float32 for
    float16/bfloat16 scores, then rounded to the half type), which is what torch computes:
    bit-identical to HF on every dtype.

    Examples
    --------
    >>> import torch
    >>> from fastdecode.hf import TemperatureLogitsWarper
    >>> scores = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # probabilities .032 .087 .237 .644
    >>> TemperatureLogitsWarper(0.5)(torch.tensor([[0, 1]]), scores)
    tensor([[2., 4., 6., 8.]])
    >>> TemperatureLogitsWarper(2.0)(None, scores.half())  # the history is not read
    tensor([[0.5000, 1.0000, 1.5000, 2.0000]], dtype=torch.float16)
    """

    def __init__(self, temperature: float, *, allow_copy: bool = False):
        super().__init__(temperature)
        self.allow_copy = bool(allow_copy)

    def _apply(self, input_ids, scores):
        x = scores.detach()
        if x.dtype in (torch.float32, torch.float64):
            a = x.numpy()
            return torch.from_numpy(np.divide(a, a.dtype.type(self.temperature)))
        a = x.float().numpy()
        return torch.from_numpy(np.divide(a, np.float32(self.temperature))).to(x.dtype)


class TopKLogitsWarper(_KernelProcessor, _hf.TopKLogitsWarper):
    __doc__ = """Keep the ``top_k`` highest scores (HF ``TopKLogitsWarper``), by radix selection, no sort.

    Parameters
    ----------
    top_k : int
        Strictly positive (0 raises ``ValueError`` as in HF).
    filter_value : float, default -inf
    min_tokens_to_keep : int, default 1
        ``k = max(top_k, min_tokens_to_keep)``, clipped to the vocabulary.""" + _ALLOW_COPY_DOC + """

    Raises
    ------
    ValueError
        ``top_k`` or ``min_tokens_to_keep`` is not a strictly positive int (HF's checks).

    Notes
    -----
    Every score tied with the k-th highest is kept (HF removes ``scores < topk(scores, k)[-1]``):
    equal to HF on every dtype, ties included.

    Examples
    --------
    >>> import torch
    >>> from fastdecode.hf import TopKLogitsWarper
    >>> scores = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # probabilities .032 .087 .237 .644
    >>> TopKLogitsWarper(2)(torch.tensor([[0, 1]]), scores)
    tensor([[-inf, -inf, 3., 4.]])
    >>> TopKLogitsWarper(2)(None, torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0]]))  # ties with the 2nd stay
    tensor([[-inf, 3., 3., -inf, 3.]])

    In a ``LogitsProcessorList``, as ``generate(..., logits_processor=...)`` runs it:

    >>> from transformers import LogitsProcessorList
    >>> from fastdecode.hf import RepetitionPenaltyLogitsProcessor
    >>> procs = LogitsProcessorList([RepetitionPenaltyLogitsProcessor(2.0), TopKLogitsWarper(2)])
    >>> procs(torch.tensor([[3]]), scores)  # 4 / 2 ties with the second highest: both stay
    tensor([[-inf, 2., 3., 2.]])
    """

    def __init__(self, top_k: int, filter_value: float = _NEG_INF, min_tokens_to_keep: int = 1, *,
                 allow_copy: bool = False):
        super().__init__(top_k, filter_value, min_tokens_to_keep)
        self.allow_copy = bool(allow_copy)

    def _apply(self, input_ids, scores):
        return _filter(ops.top_k, self, scores, self.top_k, min_keep=1)  # top_k holds the max


class TopPLogitsWarper(_KernelProcessor, _hf.TopPLogitsWarper):
    __doc__ = """Nucleus filter (HF ``TopPLogitsWarper``), sort-free.

    Parameters
    ----------
    top_p : float in [0, 1]""" + _FILTER_DOC + """

    Raises
    ------
    ValueError
        ``top_p`` outside [0, 1] or ``min_tokens_to_keep`` not a strictly positive int (HF's
        checks).

    Notes
    -----
    Keeps the smallest top set whose mass reaches ``top_p`` (the token that crosses it is kept);
    ``top_p = 0`` keeps the top ``min_tokens_to_keep``. A tie group split by the cut keeps its
    highest ids (HF's stable-sort choice on rows of up to 16 tokens; beyond that HF's choice is
    whatever ``torch.sort`` returns).

    ``top_p = 1.0`` runs HF's own implementation: there HF removes the tokens whose float32
    softmax probability underflows to 0 (``cumsum <= 0``), an effect of torch's exp and
    normalisation that fastdecode's kernels do not reproduce (``fastdecode.top_p(x, 1.0)`` is a
    no-op). ``generate`` never builds this warper with ``top_p = 1.0``.

    Examples
    --------
    >>> import torch
    >>> from fastdecode.hf import TopPLogitsWarper
    >>> scores = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # probabilities .032 .087 .237 .644
    >>> TopPLogitsWarper(0.7)(torch.tensor([[0, 1]]), scores)  # .644 < .7: the .237 token crosses it
    tensor([[-inf, -inf, 3., 4.]])
    >>> TopPLogitsWarper(0.7, filter_value=-100.0, min_tokens_to_keep=3)(None, scores)
    tensor([[-100.,    2.,    3.,    4.]])
    """

    def __init__(self, top_p: float, filter_value: float = _NEG_INF, min_tokens_to_keep: int = 1, *,
                 allow_copy: bool = False):
        super().__init__(top_p, filter_value, min_tokens_to_keep)
        self.allow_copy = bool(allow_copy)

    def _apply(self, input_ids, scores):
        if self.top_p >= 1.0:
            return _hf.TopPLogitsWarper.__call__(self, input_ids, scores)
        return _filter(ops.top_p, self, scores, self.top_p)


class MinPLogitsWarper(_KernelProcessor, _hf.MinPLogitsWarper):
    __doc__ = """Keep tokens with ``prob >= min_p * max prob`` (HF ``MinPLogitsWarper``), without a softmax.

    Parameters
    ----------
    min_p : float in [0, 1]""" + _FILTER_DOC + """

    Raises
    ------
    ValueError
        ``min_p`` outside [0, 1] or ``min_tokens_to_keep`` not a strictly positive int (HF's
        checks).

    Notes
    -----
    Decided in logit space, ``score - max < ln(min_p)``. The ``min_tokens_to_keep`` highest scores
    survive; among tied scores the lowest ids (HF takes ``torch.topk``'s, which is unspecified).
    ``min_p = 0`` returns the scores unchanged, ``-inf`` entries included, as HF does.

    Examples
    --------
    >>> import torch
    >>> from fastdecode.hf import MinPLogitsWarper
    >>> scores = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # probabilities .032 .087 .237 .644
    >>> MinPLogitsWarper(0.3)(torch.tensor([[0, 1]]), scores)  # keeps p >= 0.3 * .644
    tensor([[-inf, -inf, 3., 4.]])
    >>> MinPLogitsWarper(0.1)(None, scores)
    tensor([[-inf, 2., 3., 4.]])
    """

    def __init__(self, min_p: float, filter_value: float = _NEG_INF, min_tokens_to_keep: int = 1, *,
                 allow_copy: bool = False):
        super().__init__(min_p, filter_value, min_tokens_to_keep)
        self.allow_copy = bool(allow_copy)

    def _apply(self, input_ids, scores):
        if self.min_p == 0:  # HF: probs < 0 never holds, so nothing is written, -inf included
            return scores.clone()
        return _filter(ops.min_p, self, scores, float(self.min_p))


class TypicalLogitsWarper(_KernelProcessor, _hf.TypicalLogitsWarper):
    __doc__ = """Locally typical filter (HF ``TypicalLogitsWarper``), sort-free.

    Parameters
    ----------
    mass : float in (0, 1), default 0.9""" + _FILTER_DOC + """

    Raises
    ------
    ValueError
        ``mass`` outside (0, 1) or ``min_tokens_to_keep`` not a strictly positive int (HF's
        checks).

    Notes
    -----
    With ``H`` the entropy and ``s = |-log p - H|``, the tokens nearest the entropy are kept until
    their mass reaches ``mass``; every token with ``s`` equal to the crossing token's is kept, as in
    HF. ``min_tokens_to_keep`` keeps the first tokens by ``s`` (lowest ids among ties).

    Examples
    --------
    >>> import torch
    >>> from fastdecode.hf import TypicalLogitsWarper
    >>> scores = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # probabilities .032 .087 .237 .644
    >>> TypicalLogitsWarper(0.5)(torch.tensor([[0, 1]]), scores)
    tensor([[-inf, -inf, 3., 4.]])
    >>> TypicalLogitsWarper(0.95)(None, scores)
    tensor([[-inf, 2., 3., 4.]])
    """

    def __init__(self, mass: float = 0.9, filter_value: float = _NEG_INF, min_tokens_to_keep: int = 1,
                 *, allow_copy: bool = False):
        super().__init__(mass, filter_value, min_tokens_to_keep)
        self.allow_copy = bool(allow_copy)

    def _apply(self, input_ids, scores):
        return _filter(ops.typical_p, self, scores, self.mass)


class EpsilonLogitsWarper(_KernelProcessor, _hf.EpsilonLogitsWarper):
    __doc__ = """Remove tokens with probability below ``epsilon`` (HF ``EpsilonLogitsWarper``).

    Parameters
    ----------
    epsilon : float in (0, 1)""" + _FILTER_DOC + """

    Raises
    ------
    ValueError
        ``epsilon`` outside (0, 1) or ``min_tokens_to_keep`` not a strictly positive int (HF's
        checks).

    Notes
    -----
    ``epsilon`` is rounded to float32 first, as torch does when it compares float32 probabilities
    with it. Tokens at or above the ``min_tokens_to_keep``-th highest score always survive.

    Examples
    --------
    >>> import torch
    >>> from fastdecode.hf import EpsilonLogitsWarper
    >>> scores = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # probabilities .032 .087 .237 .644
    >>> EpsilonLogitsWarper(0.05)(torch.tensor([[0, 1]]), scores)
    tensor([[-inf, 2., 3., 4.]])
    >>> EpsilonLogitsWarper(0.9, min_tokens_to_keep=2)(None, scores)
    tensor([[-inf, -inf, 3., 4.]])
    """

    def __init__(self, epsilon: float, filter_value: float = _NEG_INF, min_tokens_to_keep: int = 1, *,
                 allow_copy: bool = False):
        super().__init__(epsilon, filter_value, min_tokens_to_keep)
        self.allow_copy = bool(allow_copy)

    def _apply(self, input_ids, scores):
        return _filter(ops.epsilon_cutoff, self, scores, float(np.float32(self.epsilon)))


class EtaLogitsWarper(_KernelProcessor, _hf.EtaLogitsWarper):
    __doc__ = """Entropy-dependent cutoff ``min(epsilon, sqrt(epsilon) * exp(-H))`` (HF ``EtaLogitsWarper``).

    Parameters
    ----------
    epsilon : float in (0, 1)
    filter_value : float, default -inf
    min_tokens_to_keep : int, default 1
    device : str, default "cpu"
        Where HF keeps its epsilon tensor (kept for signature compatibility).""" + _ALLOW_COPY_DOC + """

    Raises
    ------
    ValueError
        ``epsilon`` outside (0, 1) or ``min_tokens_to_keep`` not a strictly positive int (HF's
        checks).

    Notes
    -----
    ``epsilon`` is HF's float32 tensor value; the entropy is summed in float64.

    Examples
    --------
    >>> import torch
    >>> from fastdecode.hf import EtaLogitsWarper
    >>> scores = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # probabilities .032 .087 .237 .644
    >>> EtaLogitsWarper(0.1)(torch.tensor([[0, 1]]), scores)  # cutoff min(.1, sqrt(.1) * exp(-H))
    tensor([[-inf, -inf, 3., 4.]])
    >>> EtaLogitsWarper(0.01)(None, scores)
    tensor([[1., 2., 3., 4.]])
    """

    def __init__(self, epsilon: float, filter_value: float = _NEG_INF, min_tokens_to_keep: int = 1,
                 device: str = "cpu", *, allow_copy: bool = False):
        super().__init__(epsilon, filter_value, min_tokens_to_keep, device)
        self.allow_copy = bool(allow_copy)

    def _apply(self, input_ids, scores):
        return _filter(ops.eta_cutoff, self, scores, float(self.epsilon))


class TopNSigmaLogitsWarper(_KernelProcessor):
    __doc__ = """Keep scores within ``n`` standard deviations of the maximum (top-n-sigma; HF has none).

    Tang et al. 2024, "Top-nσ: Not All Logits Are You Need" (arXiv 2411.07641); llama.cpp's
    ``top_n_sigma`` sampler.

    Parameters
    ----------
    n : float
        Strictly positive and finite (``ValueError`` otherwise, in HF's style; the functional
        ``fastdecode.top_n_sigma`` reads ``n <= 0`` as "disabled").""" + _FILTER_DOC + """

    Raises
    ------
    ValueError
        ``n`` not strictly positive and finite, or ``min_tokens_to_keep`` not a strictly
        positive int.

    Notes
    -----
    Keeps ``z >= max - n * sigma``, ``sigma`` the population standard deviation of the row's finite
    scores, plus the ``min_tokens_to_keep`` highest. Invariant to temperature, so its place in a
    list before or after ``TemperatureLogitsWarper`` does not matter.

    Examples
    --------
    >>> import torch
    >>> from fastdecode.hf import TopNSigmaLogitsWarper
    >>> scores = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # probabilities .032 .087 .237 .644
    >>> TopNSigmaLogitsWarper(1.0)(torch.tensor([[0, 1]]), scores)  # sigma = 1.118: keeps z >= 2.88
    tensor([[-inf, -inf, 3., 4.]])
    >>> TopNSigmaLogitsWarper(2.0)(None, scores)
    tensor([[-inf, 2., 3., 4.]])
    """

    def __init__(self, n: float, filter_value: float = _NEG_INF, min_tokens_to_keep: int = 1, *,
                 allow_copy: bool = False):
        n = float(n)
        if not (n > 0 and math.isfinite(n)):
            raise ValueError(f"`n` has to be a strictly positive finite float, but is {n}")
        if not isinstance(min_tokens_to_keep, int) or min_tokens_to_keep < 1:
            raise ValueError(
                f"`min_tokens_to_keep` has to be a positive integer, but is {min_tokens_to_keep}")
        self.n = n
        self.filter_value = filter_value
        self.min_tokens_to_keep = min_tokens_to_keep
        self.allow_copy = bool(allow_copy)

    def _apply(self, input_ids, scores):
        return _filter(ops.top_n_sigma, self, scores, self.n)


# ------------------------------------------------------------------------------------------------
# penalties and constraints


class RepetitionPenaltyLogitsProcessor(_KernelProcessor, _hf.RepetitionPenaltyLogitsProcessor):
    __doc__ = """CTRL repetition penalty over the history (HF ``RepetitionPenaltyLogitsProcessor``).

    Parameters
    ----------
    penalty : float
        Strictly positive float; every distinct token of the history gets ``z * penalty`` if
        ``z < 0`` else ``z / penalty``, once however often it repeats.
    prompt_ignore_length : int or 1-D LongTensor, optional
        Leading tokens of the history (per row for a tensor) that are not
        penalised.""" + _ALLOW_COPY_DOC + """

    Raises
    ------
    ValueError
        ``penalty`` not a strictly positive float, or ``prompt_ignore_length`` not a
        non-negative int (HF's checks); when called, a ``prompt_ignore_length`` tensor whose
        length is not the batch size.

    Notes
    -----
    One float32 multiply or divide per penalised token with the penalty rounded to float32, which
    is torch's arithmetic: bit-identical to HF on float32 and on half tensors. History ids
    ``>= V`` are ignored, as in HF. Only 2-D scores (HF's 3-D continuous-batching path is not
    provided).

    Examples
    --------
    >>> import torch
    >>> from fastdecode.hf import RepetitionPenaltyLogitsProcessor
    >>> scores = torch.tensor([[-1.0, 2.0, 3.0, 4.0]])
    >>> history = torch.tensor([[0, 2, 2]])  # token 2 twice: penalised once
    >>> RepetitionPenaltyLogitsProcessor(2.0)(history, scores)
    tensor([[-2.0000,  2.0000,  1.5000,  4.0000]])
    >>> RepetitionPenaltyLogitsProcessor(2.0, prompt_ignore_length=1)(history, scores)
    tensor([[-1.0000,  2.0000,  1.5000,  4.0000]])
    """

    def __init__(self, penalty: float, prompt_ignore_length: int | torch.Tensor | None = None, *,
                 allow_copy: bool = False):
        super().__init__(penalty, prompt_ignore_length)
        self.allow_copy = bool(allow_copy)

    def _apply(self, input_ids, scores):
        ids = _ids(input_ids)
        skip = self.prompt_ignore_length
        if isinstance(skip, torch.Tensor):
            if ids.shape[0] != skip.shape[0]:
                raise ValueError("Incompatible `prompt_ignore_length` batch size")
            skip = skip.detach().cpu().numpy().clip(min=0)
        elif not isinstance(skip, int):  # HF ignores anything but an int or a tensor
            skip = None
        ids, extra = _spare_columns(ids, scores.shape[-1])
        return _with_spares(scores, extra, lambda s: ops.repetition_penalty(
            s, ids, float(self.penalty), prompt_ignore_length=skip))


class NoRepeatNGramLogitsProcessor(_KernelProcessor, _hf.NoRepeatNGramLogitsProcessor):
    __doc__ = """Ban every token that would repeat an n-gram of the history (HF ``NoRepeatNGram...``).

    Parameters
    ----------
    ngram_size : int
        Strictly positive.""" + _ALLOW_COPY_DOC + """

    Raises
    ------
    ValueError
        ``ngram_size`` is not a strictly positive int (HF's check).

    Notes
    -----
    Banned tokens get ``-inf``; nothing is banned while the history is shorter than
    ``ngram_size`` (the scores are returned as they are, as HF returns them). History ids ``>= V``
    take part in the matching but are never banned, as in HF.

    Examples
    --------
    >>> import torch
    >>> from fastdecode.hf import NoRepeatNGramLogitsProcessor
    >>> scores = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # probabilities .032 .087 .237 .644
    >>> history = torch.tensor([[1, 2, 1]])
    >>> NoRepeatNGramLogitsProcessor(2)(history, scores)  # 2 after 1 would repeat (1, 2)
    tensor([[1., 2., -inf, 4.]])
    >>> NoRepeatNGramLogitsProcessor(3)(history, scores)
    tensor([[1., 2., 3., 4.]])
    """

    def __init__(self, ngram_size: int, *, allow_copy: bool = False):
        super().__init__(ngram_size)
        self.allow_copy = bool(allow_copy)

    def _apply(self, input_ids, scores):
        if input_ids.shape[-1] < self.ngram_size:
            return scores
        ids, extra = _spare_columns(_ids(input_ids), scores.shape[-1])
        return _with_spares(scores, extra, lambda s: ops.no_repeat_ngram(s, ids, self.ngram_size))


def _check_vocab(sequences, vocab: int) -> None:
    """HF's first-call check that every biased token lies inside the vocabulary."""
    invalid = [t for seq in sequences for t in seq if t >= vocab]
    if invalid:
        raise ValueError(
            f"The model vocabulary size is {vocab}, but the following tokens were being biased: {invalid}"
        )


class SequenceBiasLogitsProcessor(_KernelProcessor, _hf.SequenceBiasLogitsProcessor):
    __doc__ = """Bias a token when it would complete a given sequence (HF ``SequenceBiasLogitsProcessor``).

    Parameters
    ----------
    sequence_bias : list of [list of int, float]
        ``[[token_ids, bias], ...]`` (or HF's legacy dict ``{tuple(token_ids): bias}``). A
        one-token sequence is always biased; a longer one biases its last token when the history
        ends with the rest of it.""" + _ALLOW_COPY_DOC + """

    Raises
    ------
    ValueError
        A malformed ``sequence_bias`` (HF's checks); when called, a biased id beyond the
        vocabulary, or a ``+inf``/NaN total bias.

    Notes
    -----
    The per-row biases of the biased tokens are accumulated exactly as HF accumulates them (in
    the scores' dtype, one-token sequences first, then the longer ones grouped by prefix length),
    then added by one kernel call: bit-identical to HF on every dtype. A bias of ``+inf`` or NaN
    (also from ``-inf + inf`` of two sequences) raises ``ValueError``: HF would write ``+inf`` or
    NaN scores.

    Examples
    --------
    >>> import torch
    >>> from fastdecode.hf import SequenceBiasLogitsProcessor
    >>> scores = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # probabilities .032 .087 .237 .644
    >>> proc = SequenceBiasLogitsProcessor([[[3], -1.0], [[1, 2], 5.0]])
    >>> proc(torch.tensor([[0, 1]]), scores)  # the history ends with 1: token 2 completes [1, 2]
    tensor([[1., 2., 8., 3.]])
    >>> proc(torch.tensor([[1, 0]]), scores)
    tensor([[1., 2., 3., 3.]])
    """

    def __init__(self, sequence_bias: list[list[list[int] | float]], *, allow_copy: bool = False):
        super().__init__(sequence_bias)
        self.allow_copy = bool(allow_copy)
        items = list(self.sequence_bias.items())
        cols = np.unique(np.array([seq[-1] for seq, _ in items], dtype=np.int64))
        col_of = {int(t): i for i, t in enumerate(cols)}
        singles = [(col_of[seq[0]], b) for seq, b in items if len(seq) == 1]
        groups: dict[int, list] = {}
        for seq, b in items:
            if len(seq) > 1:
                groups.setdefault(len(seq) - 1, []).append((seq, b))
        self._columns = cols
        self._singles = (torch.tensor([c for c, _ in singles], dtype=torch.long),
                         torch.tensor([b for _, b in singles], dtype=torch.float))
        self._groups = [
            (torch.tensor([seq[:-1] for seq, _ in g]),
             torch.tensor([col_of[seq[-1]] for seq, _ in g], dtype=torch.long),
             torch.tensor([b for _, b in g], dtype=torch.float))
            for g in groups.values()
        ]

    def _apply(self, input_ids, scores):
        _check_vocab(self.sequence_bias, scores.shape[-1])
        ids = input_ids.detach().cpu() if isinstance(input_ids, torch.Tensor) else torch.as_tensor(input_ids)
        bias = torch.zeros((scores.shape[0], self._columns.size), dtype=scores.dtype)
        cols, vals = self._singles
        if cols.numel():
            bias[:, cols] += vals
        for prefixes, cols, vals in self._groups:
            n = prefixes.shape[1]
            if n > ids.shape[1]:  # the prefix is longer than the history
                continue
            matching = (ids[:, None, -n:] == prefixes).all(dim=-1)
            bias.index_add_(1, cols, torch.where(matching, vals, 0.0).to(bias.dtype))
        try:
            return ops.logit_bias(scores, (self._columns, bias.double().numpy()))
        except ValueError as exc:
            raise ValueError(f"sequence_bias: {exc}") from None


class NoBadWordsLogitsProcessor(_KernelProcessor, _hf.NoBadWordsLogitsProcessor):
    __doc__ = """Never generate the given token sequences (HF ``NoBadWordsLogitsProcessor``).

    Parameters
    ----------
    bad_words_ids : list of list of int
        A one-token word is always banned; a longer word bans its last token when the history
        ends with the rest of it.
    eos_token_id : int, list of int or tensor, optional
        One-token words equal to an EOS id are dropped, as in transformers 5.23 (longer words
        containing EOS are kept).""" + _ALLOW_COPY_DOC + """

    Raises
    ------
    ValueError
        A malformed ``bad_words_ids`` (HF's checks); when called, an id beyond the vocabulary.

    Notes
    -----
    Banned tokens get ``-inf`` (HF adds a ``-inf`` bias). Words are matched in C; history ids
    outside the vocabulary match nothing, as in HF.

    Examples
    --------
    >>> import torch
    >>> from fastdecode.hf import NoBadWordsLogitsProcessor
    >>> scores = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # probabilities .032 .087 .237 .644
    >>> proc = NoBadWordsLogitsProcessor([[3], [0, 1]])
    >>> proc(torch.tensor([[1, 0]]), scores)  # 3 always; 1 after 0
    tensor([[1., -inf, 3., -inf]])
    >>> proc(torch.tensor([[0, 2]]), scores)
    tensor([[1., 2., 3., -inf]])
    """

    def __init__(self, bad_words_ids: list[list[int]],
                 eos_token_id: int | list[int] | torch.Tensor | None = None, *, allow_copy: bool = False):
        super().__init__(bad_words_ids, eos_token_id)
        self.allow_copy = bool(allow_copy)
        # HF accepts an empty word and bans nothing for it (its dict validation is not run here)
        self._words = [list(seq) for seq in self.sequence_bias if len(seq)]

    def _apply(self, input_ids, scores):
        vocab = scores.shape[-1]
        _check_vocab(self._words, vocab)
        if not self._words:
            return scores.clone()
        ids, extra = _spare_columns(_ids(input_ids), vocab, negative=True)
        return _with_spares(scores, extra, lambda s: ops.bad_words(s, ids, self._words))


def _ban_eos(scores: torch.Tensor, eos: torch.Tensor, active: bool) -> torch.Tensor:
    if not active:
        return scores.clone()  # HF returns a copy either way
    return ops.suppress_tokens(scores, _eos_ids(eos, scores.shape[-1]))


class MinLengthLogitsProcessor(_KernelProcessor, _hf.MinLengthLogitsProcessor):
    __doc__ = """EOS gets ``-inf`` while the history is shorter than ``min_length`` (HF ``MinLength...``).

    Parameters
    ----------
    min_length : int
        Non-negative; counts the prompt.
    eos_token_id : int, list of int or tensor
    device : str, default "cpu"
        Kept for signature compatibility.""" + _ALLOW_COPY_DOC + """

    Raises
    ------
    ValueError
        ``min_length`` not a non-negative int, or an invalid ``eos_token_id`` (HF's checks).

    Examples
    --------
    >>> import torch
    >>> from fastdecode.hf import MinLengthLogitsProcessor
    >>> scores = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # probabilities .032 .087 .237 .644
    >>> proc = MinLengthLogitsProcessor(4, eos_token_id=3)
    >>> proc(torch.tensor([[0, 1, 2]]), scores)
    tensor([[1., 2., 3., -inf]])
    >>> proc(torch.tensor([[0, 1, 2, 0]]), scores)
    tensor([[1., 2., 3., 4.]])
    """

    def __init__(self, min_length: int, eos_token_id: int | list[int] | torch.Tensor,
                 device: str = "cpu", *, allow_copy: bool = False):
        super().__init__(min_length, eos_token_id, device)
        self.allow_copy = bool(allow_copy)

    def _apply(self, input_ids, scores):
        return _ban_eos(scores, self.eos_token_id, input_ids.shape[-1] < self.min_length)


class MinNewTokensLengthLogitsProcessor(_KernelProcessor, _hf.MinNewTokensLengthLogitsProcessor):
    __doc__ = """EOS gets ``-inf`` until ``min_new_tokens`` new tokens (HF ``MinNewTokensLength...``).

    Parameters
    ----------
    prompt_length_to_skip : int
        The prompt length: new tokens are ``input_ids.shape[-1] - prompt_length_to_skip``.
    min_new_tokens : int
    eos_token_id : int, list of int or tensor
        Ids outside the vocabulary are ignored, as HF's ``isin`` ignores them.
    device : str, default "cpu"
        Kept for signature compatibility.""" + _ALLOW_COPY_DOC + """

    Raises
    ------
    ValueError
        ``prompt_length_to_skip`` or ``min_new_tokens`` not a non-negative int, or an invalid
        ``eos_token_id`` (HF's checks).

    Examples
    --------
    >>> import torch
    >>> from fastdecode.hf import MinNewTokensLengthLogitsProcessor
    >>> scores = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # probabilities .032 .087 .237 .644
    >>> proc = MinNewTokensLengthLogitsProcessor(2, 2, eos_token_id=3)  # a 2-token prompt
    >>> proc(torch.tensor([[0, 1, 2]]), scores)  # one new token so far
    tensor([[1., 2., 3., -inf]])
    >>> proc(torch.tensor([[0, 1, 2, 0]]), scores)
    tensor([[1., 2., 3., 4.]])
    """

    def __init__(self, prompt_length_to_skip: int, min_new_tokens: int,
                 eos_token_id: int | list[int] | torch.Tensor, device: str = "cpu", *,
                 allow_copy: bool = False):
        super().__init__(prompt_length_to_skip, min_new_tokens, eos_token_id, device)
        self.allow_copy = bool(allow_copy)

    def _apply(self, input_ids, scores):
        new_tokens = input_ids.shape[-1] - self.prompt_length_to_skip
        return _ban_eos(scores, self.eos_token_id, new_tokens < self.min_new_tokens)


class SuppressTokensLogitsProcessor(_KernelProcessor, _hf.SuppressTokensLogitsProcessor):
    __doc__ = """The given tokens get ``-inf`` in every row (HF ``SuppressTokensLogitsProcessor``).

    Parameters
    ----------
    suppress_tokens : iterable of int
        Ids outside the vocabulary are ignored, as in HF.
    device : str, default "cpu"
        Kept for signature compatibility.""" + _ALLOW_COPY_DOC + """

    Raises
    ------
    TypeError
        ``suppress_tokens`` is not iterable.

    Examples
    --------
    >>> import torch
    >>> from fastdecode.hf import SuppressTokensLogitsProcessor
    >>> scores = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # probabilities .032 .087 .237 .644
    >>> SuppressTokensLogitsProcessor([0, 2, 99])(torch.tensor([[0, 1]]), scores)  # 99: not in V
    tensor([[-inf, 2., -inf, 4.]])
    """

    def __init__(self, suppress_tokens, device: str = "cpu", *, allow_copy: bool = False):
        super().__init__(suppress_tokens, device)
        self.allow_copy = bool(allow_copy)

    def _apply(self, input_ids, scores):
        return ops.suppress_tokens(scores, _eos_ids(self.suppress_tokens, scores.shape[-1]))


# ------------------------------------------------------------------------------------------------
# samplers HF lacks: XTC, DRY, adaptive and dynamic temperature, mirostat


def _torch_uniforms(B: int, generator: Any) -> np.ndarray:
    """B uniforms in [0, 1) from torch's generator (the global one unless given), so that
    ``torch.manual_seed`` makes a processor's coins reproducible as it does HF's multinomial."""
    return torch.rand(B, dtype=torch.float64, generator=generator).numpy()


class XTCLogitsWarper(_KernelProcessor):
    __doc__ = """Exclude Top Choices (llama.cpp's XTC sampler; HF has none).

    With probability ``probability`` per row and step, every token whose probability is at least
    ``threshold`` is removed except the least probable of them (:func:`fastdecode.xtc`).

    Parameters
    ----------
    threshold : float in [0, 1]
        Tokens with probability ``>= threshold`` are the "top choices"; above 0.5 there is at most
        one and XTC does nothing.
    probability : float in [0, 1]
        Chance that the exclusion happens at a step (0 disables).
    seed : int, sequence of B ints, or None
        With a seed, row ``b``'s coin at a step is keyed by (its seed, ``input_ids.shape[1]``), as
        :func:`fastdecode.xtc` with ``position`` = the history length: runs are reproducible and a
        row's coin does not depend on the other rows (so rows sharing a scalar seed flip the same
        coin; give one seed per row for independent coins). None (default): the coins come from
        torch's generator
        (``generator`` or the global one), so ``torch.manual_seed`` fixes them, as it fixes HF's
        sampling.
    generator : torch.Generator, optional
        Used when ``seed`` is None.""" + _FILTER_DOC + """

    Raises
    ------
    ValueError
        ``threshold`` or ``probability`` outside [0, 1], a seed outside [0, 2**64), or
        ``min_tokens_to_keep`` not a strictly positive int.
    TypeError
        A seed that is not an int or a sequence of ints.

    Notes
    -----
    Probabilities are ``softmax(scores)`` in float32 (llama.cpp computes them after its
    temperature: put a ``TemperatureLogitsWarper`` before this one to do the same). The coin of a
    row with ``min_tokens_to_keep`` or fewer candidates is still drawn; nothing is removed.

    Examples
    --------
    >>> import torch
    >>> from fastdecode.hf import XTCLogitsWarper
    >>> scores = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # probabilities .032 .087 .237 .644
    >>> ids = torch.tensor([[0, 1]])
    >>> XTCLogitsWarper(0.1, 1.0, seed=0)(ids, scores)  # .237 and .644 are top choices: .644 goes
    tensor([[1., 2., 3., -inf]])
    >>> XTCLogitsWarper(0.3, 1.0, seed=0)(ids, scores)  # one top choice: nothing to exclude
    tensor([[1., 2., 3., 4.]])
    >>> XTCLogitsWarper(0.1, 0.0, seed=0)(ids, scores)  # the coin never comes up
    tensor([[1., 2., 3., 4.]])
    """

    def __init__(self, threshold: float, probability: float, seed: int | None = None,
                 filter_value: float = _NEG_INF, min_tokens_to_keep: int = 1, *,
                 generator: Any = None, allow_copy: bool = False):
        threshold, probability = float(threshold), float(probability)
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"`threshold` has to be a float in [0, 1], but is {threshold}")
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"`probability` has to be a float in [0, 1], but is {probability}")
        # a list of per-row seeds as an array, once; its checks (type, range) now, not mid-generate
        self._seed = np.asarray(seed) if isinstance(seed, (list, tuple)) else seed
        if seed is not None:
            ops._seeds(self._seed, 1 if np.ndim(seed) == 0 else len(seed))
        if not isinstance(min_tokens_to_keep, int) or min_tokens_to_keep < 1:
            raise ValueError(
                f"`min_tokens_to_keep` has to be a positive integer, but is {min_tokens_to_keep}")
        self.threshold, self.probability, self.seed = threshold, probability, seed
        self.filter_value, self.min_tokens_to_keep = filter_value, min_tokens_to_keep
        self.generator = generator
        self.allow_copy = bool(allow_copy)

    def _apply(self, input_ids, scores):
        B = scores.shape[0]
        if self.seed is None:
            return ops.xtc(scores, self.probability, self.threshold,
                           uniforms=_torch_uniforms(B, self.generator),
                           min_tokens_to_keep=self.min_tokens_to_keep, filter_value=self.filter_value)
        return ops.xtc(scores, self.probability, self.threshold, seed=self._seed,
                       position=_ids(input_ids).shape[1], min_tokens_to_keep=self.min_tokens_to_keep,
                       filter_value=self.filter_value)


class DRYLogitsProcessor(_KernelProcessor):
    __doc__ = """DRY, "Don't Repeat Yourself" (llama.cpp's DRY sampler, from Koboldcpp; HF has none).

    A token that would extend a repeat of the history's end by a sequence longer than
    ``allowed_length`` loses ``multiplier * base ** (length - allowed_length)`` (:func:`fastdecode.dry`).

    Parameters
    ----------
    multiplier : float >= 0
        0 disables.
    base : float >= 1, default 1.75
    allowed_length : int >= 0, default 2
        Repeats up to this length are free.
    penalty_last_n : int >= -1, default -1
        Only the last ``penalty_last_n`` tokens are searched; -1 the whole history, 0 disables.
    sequence_breakers : list of token-id sequences, default none
        A repeat cannot extend across a breaker (llama.cpp takes strings and tokenizes them: pass
        e.g. ``[tok.encode(s, add_special_tokens=False) for s in ["\\n", ":", '"', "*"]]``).""" + _ALLOW_COPY_DOC + """

    Raises
    ------
    ValueError
        ``multiplier`` negative or not finite, ``base`` below 1 or not finite,
        ``allowed_length`` not a non-negative int, ``penalty_last_n`` not an int >= -1, or a
        ``sequence_breakers`` entry that is empty or holds a negative id.

    Notes
    -----
    The whole ``input_ids`` row is the history (prompt included, as llama.cpp). Ids beyond the
    scores' width (an embedding table larger than the LM head) take part in matching and penalise
    nothing inside the vocabulary.

    Examples
    --------
    >>> import torch
    >>> from fastdecode.hf import DRYLogitsProcessor
    >>> scores = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # probabilities .032 .087 .237 .644
    >>> history = torch.tensor([[0, 1, 2, 0, 1]])  # the end [0, 1] repeats; 2 followed it
    >>> DRYLogitsProcessor(1.0, base=2.0, allowed_length=1)(history, scores)  # 2 loses 1 * 2 ** (2 - 1)
    tensor([[1., 2., 1., 4.]])
    >>> dry = DRYLogitsProcessor(1.0, base=2.0, allowed_length=1, sequence_breakers=[[0]])
    >>> dry(history, scores)  # the repeat cannot span the breaker 0: [1] alone, 2 loses 2 ** 0
    tensor([[1., 2., 2., 4.]])
    """

    def __init__(self, multiplier: float, base: float = 1.75, allowed_length: int = 2,
                 penalty_last_n: int = -1, sequence_breakers: Any = (), *, allow_copy: bool = False):
        multiplier, base = float(multiplier), float(base)
        if not (multiplier >= 0 and math.isfinite(multiplier)):
            raise ValueError(f"`multiplier` has to be a non-negative finite float, but is {multiplier}")
        if not (base >= 1 and math.isfinite(base)):
            raise ValueError(f"`base` has to be a finite float >= 1, but is {base}")
        if isinstance(allowed_length, bool) or not isinstance(allowed_length, int) or allowed_length < 0:
            raise ValueError(f"`allowed_length` has to be a non-negative integer, but is {allowed_length}")
        if isinstance(penalty_last_n, bool) or not isinstance(penalty_last_n, int) or penalty_last_n < -1:
            raise ValueError(f"`penalty_last_n` has to be an integer >= -1, but is {penalty_last_n}")
        breakers = [[int(sequence_breakers)]] if isinstance(sequence_breakers, int) else [
            [int(t)] if isinstance(t, (int, np.integer)) else [int(i) for i in t]
            for t in sequence_breakers]
        if any(len(s) == 0 or min(s) < 0 for s in breakers):
            raise ValueError("`sequence_breakers` has to be a list of non-empty lists of non-negative "
                             f"token ids, but is {sequence_breakers!r}")
        self.multiplier, self.base = multiplier, base
        self.allowed_length, self.penalty_last_n = allowed_length, penalty_last_n
        self.sequence_breakers = breakers
        self.allow_copy = bool(allow_copy)

    def _apply(self, input_ids, scores):
        if self.multiplier == 0 or self.penalty_last_n == 0:
            return scores.clone()
        vocab = scores.shape[-1]
        raw = _ids(input_ids)
        ids, extra = _spare_columns(raw, vocab, negative=True)
        # breakers speak the same ids: one beyond the vocabulary maps to its spare column, and a
        # breaker holding an id the history lacks can never match, so it is dropped
        spare = {int(t): vocab + j for j, t in enumerate(np.unique(raw[(raw >= vocab) | (raw < 0)]))}
        breakers = [[t if t < vocab else spare.get(t, -1) for t in s] for s in self.sequence_breakers]
        breakers = [s for s in breakers if min(s) >= 0]
        return _with_spares(scores, extra, lambda x: ops.dry(
            x, ids, self.multiplier, self.base, self.allowed_length, self.penalty_last_n, breakers))


class AdaptiveTemperatureLogitsWarper(_KernelProcessor):
    __doc__ = """Adaptive temperature of Veličković et al. 2024 ("Softmax is not enough"; HF has none).

    Each row is scaled by ``beta(H)``, a polynomial in its entropy that sharpens high-entropy rows
    (:func:`fastdecode.adaptive_temperature`).

    Parameters
    ----------""" + _ALLOW_COPY_DOC + """

    Examples
    --------
    >>> import torch
    >>> from fastdecode.hf import AdaptiveTemperatureLogitsWarper
    >>> scores = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.1, 0.2, 0.3]])
    >>> AdaptiveTemperatureLogitsWarper()(None, scores)  # the flatter row is sharpened more
    tensor([[1.1824, 2.3648, 3.5472, 4.7296],
            [0.0000, 0.1744, 0.3489, 0.5233]])
    """

    def __init__(self, *, allow_copy: bool = False):
        self.allow_copy = bool(allow_copy)

    def _apply(self, input_ids, scores):
        return ops.adaptive_temperature(scores)


class DynamicTemperatureLogitsWarper(_KernelProcessor):
    __doc__ = """Entropy-driven temperature, llama.cpp's ``temp_ext`` ("dynatemp"; HF has none).

    Parameters
    ----------
    temperature : float >= 0
        The centre temperature ``T``.
    delta : float >= 0
        Half-range: the row's temperature lies in ``[max(0, T - delta), T + delta]``, chosen by its
        normalised entropy (low entropy: low temperature).
    exponent : float >= 0, default 1.0""" + _ALLOW_COPY_DOC + """

    Raises
    ------
    ValueError
        ``temperature``, ``delta`` or ``exponent`` negative or not finite.

    Notes
    -----
    As :func:`fastdecode.dynamic_temperature`; ``delta = 0`` is plain division by ``T``. A row whose
    temperature is 0 becomes the one-hot of its first maximum, so greedy and sampling both pick it.

    Examples
    --------
    >>> import torch
    >>> from fastdecode.hf import DynamicTemperatureLogitsWarper
    >>> scores = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.1, 0.2, 0.3]])
    >>> DynamicTemperatureLogitsWarper(1.0, 0.5)(None, scores)  # temperatures 1.18 and 1.50
    tensor([[0.8449, 1.6899, 2.5348, 3.3798],
            [0.0000, 0.0669, 0.1337, 0.2006]])
    >>> DynamicTemperatureLogitsWarper(2.0, 0.0)(None, scores[:1])
    tensor([[0.5000, 1.0000, 1.5000, 2.0000]])
    """

    def __init__(self, temperature: float, delta: float, exponent: float = 1.0, *,
                 allow_copy: bool = False):
        vals = {"temperature": float(temperature), "delta": float(delta), "exponent": float(exponent)}
        for name, v in vals.items():
            if not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"`{name}` has to be a non-negative finite float, but is {v}")
        self.temperature, self.delta, self.exponent = vals["temperature"], vals["delta"], vals["exponent"]
        self.allow_copy = bool(allow_copy)

    def _apply(self, input_ids, scores):
        return ops.dynamic_temperature(scores, self.temperature, self.delta, self.exponent)


class MirostatLogitsProcessor(_KernelProcessor):
    __doc__ = """Mirostat v1/v2 (llama.cpp's samplers; HF has none) as a *picking* processor.

    Mirostat draws the token itself (it must, to update each row's surprise budget ``mu`` with
    the token's surprise), so the returned scores keep only that token: its score, ``-inf``
    elsewhere. Whatever ``generate`` does next (greedy or sampling, HF's default warpers) picks it.

    Parameters
    ----------
    tau : float > 0, default 5.0
        Target surprise in bits per token.
    eta : float >= 0, default 0.1
        Learning rate of ``mu``.
    version : {1, 2}, default 2
    m : int >= 1, default 100
        v1: the number of top tokens used to estimate the Zipf exponent.
    temperature : float >= 0, default 1.0
        Applied first, as in llama.cpp's chain (0: greedy).
    seed : int or None
        With a seed, row ``b``'s draw is keyed by (seed, ``input_ids.shape[1]``), as
        :func:`fastdecode.mirostat`: a ``model.generate`` run with this processor on an unpadded
        prompt picks the same tokens as ``fastdecode.generate(HFModel(model), ...,
        sampler=fastdecode.Mirostat(seed=seed, ...))``. None: uniforms from torch's generator
        (``torch.manual_seed`` fixes them).
    generator : torch.Generator, optional
        Used when ``seed`` is None.""" + _ALLOW_COPY_DOC + """

    Attributes
    ----------
    mu : ndarray of float64, shape (B,), or None
        Each row's current budget (None before the first call).

    Raises
    ------
    ValueError
        ``tau``, ``eta``, ``version``, ``m`` or ``temperature`` out of range; when called, an
        ``input_ids`` batch that differs from the scores'.

    Notes
    -----
    Unlike HF's processors this one holds state: one ``mu`` per batch row, for one generation. A
    call whose ``input_ids`` is not the previous call's extended by one token (a new ``generate``
    call, another batch size) starts over at ``mu = 2 * tau``; :meth:`reset` does so explicitly.
    It cannot follow beam search's reordering of rows: use it with ``num_beams=1`` (a list with
    ``num_beams > 1`` raises ``ValueError`` on the first call whose batch is not the previous
    one's). Rows finished by EOS keep being drawn for (HF pads them afterwards).

    Examples
    --------
    >>> import torch
    >>> from fastdecode.hf import MirostatLogitsProcessor
    >>> scores = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # probabilities .032 .087 .237 .644
    >>> proc = MirostatLogitsProcessor(tau=3.0, seed=0)
    >>> print(proc.mu)
    None
    >>> proc(torch.tensor([[0, 1]]), scores)  # the drawn token keeps its score
    tensor([[1., -inf, -inf, -inf]])
    >>> proc.mu  # from 2 * tau = 6, moved by eta * (tau - the drawn token's surprise)
    array([5.8037])
    >>> proc(torch.tensor([[0, 1, 0]]), scores)  # the same generation, one token on
    tensor([[-inf, -inf, -inf, 4.]])
    >>> proc.reset(); print(proc.mu)
    None
    """

    def __init__(self, tau: float = 5.0, eta: float = 0.1, version: int = 2, m: int = 100,
                 temperature: float = 1.0, seed: int | None = None, *, generator: Any = None,
                 allow_copy: bool = False):
        from ..adaptive import Mirostat

        Mirostat(tau=tau, eta=eta, version=version, m=m, temperature=temperature, seed=seed)  # checks
        self.tau, self.eta, self.version, self.m = float(tau), float(eta), int(version), int(m)
        self.temperature, self.seed, self.generator = float(temperature), seed, generator
        self.allow_copy = bool(allow_copy)
        self.reset()

    def reset(self) -> None:
        """Forget every row's ``mu``: the next call starts a new generation."""
        self.mu = None
        self._shape = None

    def _apply(self, input_ids, scores):
        ids = _ids(input_ids)
        B, S = ids.shape[0], ids.shape[1]
        if scores.shape[0] != B:
            raise ValueError(f"input_ids has {B} rows but scores has {scores.shape[0]}")
        if self._shape is None or self._shape != (B, S - 1):
            self.mu = np.full(B, 2.0 * self.tau)
        kw = (dict(uniforms=_torch_uniforms(B, self.generator)) if self.seed is None
              else dict(seed=self.seed, position=S))
        tokens, mu = ops_mirostat(scores.detach(), self.mu, tau=self.tau, eta=self.eta,
                                  version=self.version, m=self.m, temperature=self.temperature, **kw)
        self.mu = np.asarray(mu, dtype=np.float64).reshape(B)
        self._shape = (B, S)
        tok = torch.as_tensor(np.asarray(tokens, dtype=np.int64).reshape(B, 1))
        out = torch.full_like(scores, _NEG_INF)
        out.scatter_(1, tok, scores.gather(1, tok))
        return out


# ------------------------------------------------------------------------------------------------
# a whole Sampler as one processor


class FastdecodeLogitsProcessor(_KernelProcessor):
    __doc__ = """A :class:`fastdecode.Sampler`'s penalties, temperature and filters as one processor.

    ``scores`` become the logits of the exact distribution the sampler draws from
    (:meth:`fastdecode.Sampler.final_logits`): removed tokens are ``-inf``, and ``softmax`` of the
    result is the sampling distribution. One fused pass replaces a list of HF processors.

    Parameters
    ----------
    sampler : fastdecode.Sampler
        Its ``order`` ("hf" or "llama.cpp") is honoured; its seed is not used (``generate`` draws
        with torch's generator). A temperature-0 row becomes the one-hot of its first maximum, so
        greedy ``generate`` picks the same token.
    prompt_lengths : int or array of B ints, optional
        Where the generated part of each history starts (for presence/frequency penalties, which
        count generated tokens only); default: the whole history counts.""" + _ALLOW_COPY_DOC + """

    Raises
    ------
    TypeError
        ``sampler`` is not a :class:`fastdecode.Sampler`.

    Notes
    -----
    Computed in float32 (float64 scores stay float64) and rounded once to the scores' dtype.
    In ``generate`` put it in ``logits_processor`` and disable HF's own warpers, which run after
    custom processors: ``do_sample=True, top_k=0`` (HF's default ``top_k`` is 50), and leave
    ``temperature``/``top_p`` etc. at their defaults.

    Examples
    --------
    >>> import torch
    >>> import fastdecode as fd
    >>> from fastdecode.hf import FastdecodeLogitsProcessor
    >>> scores = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # probabilities .032 .087 .237 .644
    >>> proc = FastdecodeLogitsProcessor(fd.Sampler(temperature=0.5, top_k=2))
    >>> proc(torch.tensor([[0, 1]]), scores)
    tensor([[-inf, -inf, 6., 8.]])

    The same as the list of HF-style processors it replaces:

    >>> from transformers import LogitsProcessorList
    >>> from fastdecode.hf import TemperatureLogitsWarper, TopKLogitsWarper
    >>> hf = LogitsProcessorList([TemperatureLogitsWarper(0.5), TopKLogitsWarper(2)])
    >>> torch.equal(hf(torch.tensor([[0, 1]]), scores), proc(torch.tensor([[0, 1]]), scores))
    True
    """

    def __init__(self, sampler: Sampler, *, prompt_lengths: Any = None, allow_copy: bool = False):
        if not isinstance(sampler, Sampler):
            raise TypeError(f"sampler must be a fastdecode.Sampler, got {type(sampler).__name__}")
        self.sampler = sampler
        self.prompt_lengths = prompt_lengths
        self.allow_copy = bool(allow_copy)

    def _apply(self, input_ids, scores):
        ids = None if input_ids is None else _ids(input_ids)
        x = torch.from_numpy(self.sampler.final_logits(scores, ids, prompt_lengths=self.prompt_lengths))
        return x if x.dtype == scores.dtype else x.to(scores.dtype)


# ------------------------------------------------------------------------------------------------
# GenerationConfig


def _no(v: Any) -> bool:
    return v is None or v is False


# Fields that change the logits or the decoding mode and that fastdecode cannot express, with the
# test for "left at its default".
_UNSUPPORTED = {
    "guidance_scale": lambda v: v is None or v == 1,
    "encoder_repetition_penalty": lambda v: v is None or v == 1.0,
    "encoder_no_repeat_ngram_size": lambda v: not v,
    "forced_bos_token_id": _no,
    "forced_eos_token_id": _no,
    "remove_invalid_values": _no,
    "exponential_decay_length_penalty": _no,
    "begin_suppress_tokens": _no,
    "top_h": _no,
    "watermarking_config": _no,
    "penalty_alpha": lambda v: not v,
    "dola_layers": _no,
    "constraints": _no,
    "force_words_ids": _no,
    "num_beam_groups": lambda v: v is None or v == 1,
    "diversity_penalty": lambda v: not v,
}

# Also unsupported by a Sampler (a one-token-per-row picker); the processors express them.
_SAMPLER_UNSUPPORTED = {
    "num_beams": (lambda v: v is None or v == 1, "a Sampler picks one token per row; use "
                  "fastdecode.beam_search, or as_processors=True"),
    "min_length": (lambda v: not v, "use as_processors=True"),
    "min_new_tokens": (lambda v: not v, "pass min_new_tokens to fastdecode.generate, or use "
                       "as_processors=True"),
}


def _config_fields(config: Any) -> dict:
    """The config's fields with ``generate``'s global defaults filled in where unset (None)."""
    known = GenerationConfig().to_dict()
    if isinstance(config, GenerationConfig):
        fields = {k: getattr(config, k, None) for k in known}
    elif isinstance(config, Mapping):
        unknown = sorted(set(config) - set(known))
        if unknown:
            raise ValueError(f"unknown GenerationConfig field(s): {', '.join(map(str, unknown))}")
        fields = {k: config.get(k) for k in known}
    else:
        raise TypeError(f"config must be a transformers GenerationConfig or a dict of its fields, "
                        f"got {type(config).__name__}")
    defaults = getattr(GenerationConfig, "_get_default_generation_params", dict)()
    for k, v in defaults.items():
        if fields.get(k) is None:
            fields[k] = v
    return fields


def _hf_processors(f: dict, input_ids_seq_length: int | None, allow_copy: bool) -> list:
    """The drop-in processors ``generate`` would build from the fields, in its order."""
    eos = f["eos_token_id"]
    eos = [] if eos is None else ([int(eos)] if isinstance(eos, (int, np.integer)) else [int(e) for e in eos])
    kw = dict(allow_copy=allow_copy)
    procs: list = []
    if f["sequence_bias"] is not None:
        procs.append(SequenceBiasLogitsProcessor(f["sequence_bias"], **kw))
    if f["repetition_penalty"] is not None and f["repetition_penalty"] != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(f["repetition_penalty"], **kw))
    if f["no_repeat_ngram_size"] is not None and f["no_repeat_ngram_size"] > 0:
        procs.append(NoRepeatNGramLogitsProcessor(f["no_repeat_ngram_size"], **kw))
    if f["bad_words_ids"] is not None:
        procs.append(NoBadWordsLogitsProcessor(f["bad_words_ids"], eos or None, **kw))
    if eos and f["min_length"] is not None and f["min_length"] > 0:
        procs.append(MinLengthLogitsProcessor(f["min_length"], eos, **kw))
    if eos and f["min_new_tokens"] is not None and f["min_new_tokens"] > 0:
        if input_ids_seq_length is None:
            raise ValueError("min_new_tokens needs input_ids_seq_length (the prompt length) to "
                             "build MinNewTokensLengthLogitsProcessor")
        procs.append(MinNewTokensLengthLogitsProcessor(input_ids_seq_length, f["min_new_tokens"], eos, **kw))
    if f["suppress_tokens"] is not None:
        procs.append(SuppressTokensLogitsProcessor(f["suppress_tokens"], **kw))
    if not f["do_sample"]:
        return procs
    keep = 1
    if f["num_beams"] is not None and f["num_beams"] > 1:
        keep = len(eos) + 1 if eos else 2  # a beam must keep one non-EOS continuation
    if f["temperature"] is not None and f["temperature"] != 1.0:
        procs.append(TemperatureLogitsWarper(f["temperature"], **kw))
    if f["top_k"] is not None and f["top_k"] != 0:
        procs.append(TopKLogitsWarper(top_k=f["top_k"], min_tokens_to_keep=keep, **kw))
    if f["top_p"] is not None and f["top_p"] < 1.0:
        procs.append(TopPLogitsWarper(top_p=f["top_p"], min_tokens_to_keep=keep, **kw))
    if f["min_p"] is not None:
        procs.append(MinPLogitsWarper(min_p=f["min_p"], min_tokens_to_keep=keep, **kw))
    if f["typical_p"] is not None and f["typical_p"] < 1.0:
        procs.append(TypicalLogitsWarper(mass=f["typical_p"], min_tokens_to_keep=keep, **kw))
    if f["epsilon_cutoff"] is not None and 0.0 < f["epsilon_cutoff"] < 1.0:
        procs.append(EpsilonLogitsWarper(epsilon=f["epsilon_cutoff"], min_tokens_to_keep=keep, **kw))
    if f["eta_cutoff"] is not None and 0.0 < f["eta_cutoff"] < 1.0:
        procs.append(EtaLogitsWarper(epsilon=f["eta_cutoff"], min_tokens_to_keep=keep, **kw))
    return procs


# processor class -> (Sampler argument, the processor attribute holding its value)
_AS_SAMPLER_ARG = {
    RepetitionPenaltyLogitsProcessor: ("repetition_penalty", "penalty"),
    NoRepeatNGramLogitsProcessor: ("no_repeat_ngram_size", "ngram_size"),
    TemperatureLogitsWarper: ("temperature", "temperature"),
    TopKLogitsWarper: ("top_k", "top_k"),
    TopPLogitsWarper: ("top_p", "top_p"),
    MinPLogitsWarper: ("min_p", "min_p"),
    TypicalLogitsWarper: ("typical_p", "mass"),
    EpsilonLogitsWarper: ("epsilon_cutoff", "epsilon"),
    EtaLogitsWarper: ("eta_cutoff", "epsilon"),  # HF's float32 tensor
}


def _sampler_from(procs: list, do_sample: bool) -> Sampler:
    """Translates the processor list into one Sampler (the processors validated the values)."""
    kw: dict[str, Any] = {"temperature": 1.0 if do_sample else 0.0}
    bad_words: list = []
    bias: dict = {}
    for p in procs:
        if type(p) in _AS_SAMPLER_ARG:
            name, attr = _AS_SAMPLER_ARG[type(p)]
            value = getattr(p, attr)
            kw[name] = value.item() if isinstance(value, torch.Tensor) else value
        elif isinstance(p, SequenceBiasLogitsProcessor):
            for seq, b in p.sequence_bias.items():
                if b == _NEG_INF:
                    bad_words.append(list(seq))  # a -inf bias is a bad word, whatever its length
                elif len(seq) == 1 and math.isfinite(b):
                    bias[seq[0]] = b
                else:
                    raise ValueError(
                        f"sequence_bias entry {list(seq)}: {b} has no Sampler equivalent (only "
                        "one-token sequences with a finite bias, and -inf bans); use "
                        "as_processors=True")
        elif isinstance(p, NoBadWordsLogitsProcessor):
            bad_words.extend(p._words)
        elif isinstance(p, SuppressTokensLogitsProcessor):
            kw["suppress_tokens"] = [int(t) for t in p.suppress_tokens.tolist()]
        else:  # pragma: no cover - _hf_processors builds nothing else for a Sampler
            raise AssertionError(type(p).__name__)
    if bias and kw.get("repetition_penalty", 1.0) != 1.0:
        # HF adds the bias before the penalty, a Sampler after it: (z + b) / t != z / t + b
        raise ValueError("sequence_bias with a finite bias together with repetition_penalty has no "
                         "Sampler equivalent (HF biases before penalising, a Sampler after); use "
                         "as_processors=True")
    return Sampler(**kw, logit_bias=bias or None, bad_words_ids=bad_words or None)


def from_generation_config(config: Any, *, as_processors: bool = False,
                           input_ids_seq_length: int | None = None,
                           allow_copy: bool = False) -> Sampler | list:
    """A fastdecode :class:`~fastdecode.Sampler` (or drop-in processors) from a ``GenerationConfig``.

    Parameters
    ----------
    config : transformers.GenerationConfig or dict
        Fields left unset (None) take ``generate``'s global defaults (``do_sample=False``,
        ``top_k=50``, ...), as ``model.generate`` does for a model without its own defaults. A
        dict may hold only ``GenerationConfig`` field names.
    as_processors : bool, default False
        Return the list of this module's drop-in processors that ``generate`` would build, in its
        order (sequence bias, repetition penalty, no-repeat n-gram, bad words, min length, min new
        tokens, suppress tokens, then with ``do_sample`` temperature, top-k, top-p, min-p,
        typical, epsilon, eta; ``min_tokens_to_keep = len(eos) + 1`` for beam sampling).
    input_ids_seq_length : int, optional
        The prompt length, needed for ``min_new_tokens`` with ``as_processors``.
    allow_copy : bool, default False
        Passed to every processor.

    Returns
    -------
    fastdecode.Sampler or list of LogitsProcessor
        The Sampler's ``final_logits`` give the distribution HF's processors give;
        ``do_sample=False`` gives temperature 0 (greedy on the penalised logits).

    Raises
    ------
    ValueError
        Naming the field, for a field that changes the logits or the decoding mode and has no
        fastdecode equivalent (``guidance_scale``, ``forced_bos_token_id``, ``top_h``,
        ``penalty_alpha``, ``num_beam_groups``, ...) set to a non-default value; for a Sampler
        also ``num_beams > 1``, ``min_length``, ``min_new_tokens``, a multi-token or infinite
        ``sequence_bias`` entry other than a ``-inf`` ban, and a finite ``sequence_bias`` with
        ``repetition_penalty`` (HF biases before penalising, a Sampler after); for a dict, a
        key that is not a ``GenerationConfig`` field. Invalid values raise what HF's processors
        raise.
    TypeError
        ``config`` is neither a ``GenerationConfig`` nor a mapping.

    Notes
    -----
    Fields of the generation loop (lengths, stopping, EOS/pad ids, caching, outputs, assisted
    decoding) do not change the distribution and are not part of a sampler; they are ignored.
    ``renormalize_logits`` does not change a Sampler's distribution (it is ignored there) and has
    no drop-in processor (it raises with ``as_processors``). HF's ``generate`` gives its repetition
    penalty the left-padding length of each row as ``prompt_ignore_length``; neither the Sampler
    nor the processor list know the attention mask, so left padding is penalised like any token.

    Examples
    --------
    >>> import numpy as np
    >>> from transformers import GenerationConfig
    >>> from fastdecode.hf import from_generation_config
    >>> cfg = GenerationConfig(do_sample=True, temperature=0.7, top_p=0.9, repetition_penalty=1.2)
    >>> s = from_generation_config(cfg)
    >>> s  # HF's default top_k=50 is part of the config
    Sampler(temperature=0.7, top_k=50, top_p=0.9, repetition_penalty=1.2)
    >>> x, history = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32), np.array([[3]])
    >>> s.final_logits(x, history)  # 4 / 1.2, then / 0.7, then top-p
    array([[  -inf, 2.8571, 4.2857, 4.7619]], dtype=float32)
    >>> s(x, history, seed=0)
    array([3])
    >>> from_generation_config({"do_sample": False})  # greedy
    Sampler(temperature=0.0)
    >>> [type(p).__name__ for p in from_generation_config(cfg, as_processors=True)]
    ['RepetitionPenaltyLogitsProcessor', 'TemperatureLogitsWarper', 'TopKLogitsWarper', 'TopPLogitsWarper']
    >>> try:
    ...     from_generation_config(GenerationConfig(guidance_scale=2.0))
    ... except ValueError as e:
    ...     print(e)
    GenerationConfig.guidance_scale=2.0 has no fastdecode equivalent
    """
    f = _config_fields(config)
    for name, is_default in _UNSUPPORTED.items():
        if not is_default(f[name]):
            raise ValueError(f"GenerationConfig.{name}={f[name]!r} has no fastdecode equivalent")
    if as_processors:
        if f["renormalize_logits"]:
            raise ValueError("GenerationConfig.renormalize_logits=True has no fastdecode processor")
        return _hf_processors(f, input_ids_seq_length, allow_copy)
    for name, (is_default, hint) in _SAMPLER_UNSUPPORTED.items():
        if not is_default(f[name]):
            raise ValueError(f"GenerationConfig.{name}={f[name]!r} has no Sampler equivalent: {hint}")
    return _sampler_from(_hf_processors(f, None, allow_copy), bool(f["do_sample"]))
