"""The model protocol: plain callables and stateful sessions.

Every decoding loop in fastdecode (``generate``, ``beam_search``, speculative and contrastive
decoding) is written once, against a :class:`Session`. A model is either

* a **plain callable** ``model(input_ids) -> logits``: ``input_ids`` is an int64 ``(B, S)`` NumPy
  array (a torch tensor when the model is a ``torch.nn.Module``) and the result holds logits for
  every position, ``(B, S, V)``, or for the last one only, ``(B, V)``. NumPy arrays, torch CPU
  tensors and objects with a ``.logits`` attribute (Hugging Face model outputs) are accepted.
  :func:`start_session` wraps it in a :class:`RecomputeSession`, which re-runs the model on the
  whole history at every step (correct for any callable; no cache);
* a **stateful model** with a method ``start_session(prompts) -> (session, last_logits)``, where
  ``prompts`` is a list of B non-empty 1-D int64 arrays and ``last_logits`` is ``(B, V)``: the
  logits after each prompt's last token. The session keeps whatever state makes the next step cheap
  (a KV cache) and implements the four members of :class:`Session`.

A session holds B rows, each its own token history, possibly of different lengths:

``lengths``
    ``(B,)`` int64, tokens held per row.
``extend(tokens) -> logits``
    Append ``tokens`` ``(B, n)`` to every row; return ``(B, n, V)`` logits, ``[b, j]`` being the
    distribution of the token after row b's history through ``tokens[b, j]``.
``truncate(lengths)``
    Cut row b back to ``lengths[b]`` tokens (``1 <= lengths[b] <= current``); speculative
    decoding rolls rejected drafts back with it.
``select(rows)``
    The new batch is ``rows`` of the current one (any order, repeats allowed): beams are reordered
    and duplicated with it, and loops drop finished rows with it.

:func:`start_session` also wraps a stateful model's session in a :class:`CheckedSession`, which
validates every result (shape, dtype, vocabulary size) and raises :class:`ModelOutputError` naming
the problem instead of letting a wrong shape turn into garbage tokens.
"""

from __future__ import annotations

import sys
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

__all__ = [
    "CheckedSession",
    "ModelOutputError",
    "RecomputeSession",
    "Session",
    "StatefulModel",
    "as_prompts",
    "start_session",
]


class ModelOutputError(ValueError):
    """A model (or its session) returned logits of the wrong shape, dtype or vocabulary size.

    A ``ValueError``, raised by the decoding loops with a message naming what was expected.

    Examples
    --------
    >>> import numpy as np
    >>> from fastdecode.session import ModelOutputError, start_session
    >>> try:
    ...     start_session(lambda ids: np.zeros(3), [np.array([1])])
    ... except ModelOutputError as e:
    ...     print(e)
    model output: expected logits of shape (B, S, V) or (B, V), got ndim 1
    """


@runtime_checkable
class Session(Protocol):
    """Per-row token state of a model; see the module docstring for the contract.

    A protocol (``isinstance`` works at run time): implement it, do not instantiate it.

    Attributes
    ----------
    vocab_size : int
        V, the width of the logits.

    Examples
    --------
    >>> import numpy as np
    >>> from fastdecode.models import NGramModel
    >>> from fastdecode.session import start_session
    >>> ng = NGramModel(8, order=2, seed=0)
    >>> s, last = start_session(lambda ids: ng(ids), [np.array([1, 2, 3]), np.array([4])])
    >>> type(s).__name__, s.lengths, last.shape
    ('RecomputeSession', array([3, 1]), (2, 8))
    >>> s.extend([[5], [6]]).shape, s.lengths
    ((2, 1, 8), array([4, 2]))
    >>> s.truncate([2, 1]); s.select([1, 1, 0]); s.lengths
    array([1, 1, 2])
    """

    vocab_size: int

    @property
    def lengths(self) -> np.ndarray:
        """int64 (B,): tokens held per row."""
        ...

    def extend(self, tokens: np.ndarray) -> np.ndarray:
        """Append ``tokens`` to every row and return the logits after each of them.

        Parameters
        ----------
        tokens : int64 ndarray, shape (B, n), n >= 1
            One column per new token.

        Returns
        -------
        ndarray, shape (B, n, V)
            ``[b, j]`` is the distribution of the token after row b's history through
            ``tokens[b, j]``.
        """
        ...

    def truncate(self, lengths: Any) -> None:
        """Cut row b back to ``lengths[b]`` tokens (speculative decoding's rollback).

        Parameters
        ----------
        lengths : int or array of B ints
            ``1 <= lengths[b] <=`` the row's current length.
        """
        ...

    def select(self, rows: Any) -> None:
        """Make ``rows`` of the current batch the new batch (any order, repeats allowed).

        Parameters
        ----------
        rows : 1-D int array
            Row indices into the current batch (beam reordering, dropping finished rows).
        """
        ...


@runtime_checkable
class StatefulModel(Protocol):
    """A model that starts its own :class:`Session` on a list of prompts.

    A protocol (``isinstance`` works at run time): :class:`~fastdecode.models.NGramModel`,
    :class:`~fastdecode.models.CharModel` and ``fastdecode.hf.HFModel`` implement it.

    Examples
    --------
    >>> from fastdecode.models import char_model
    >>> from fastdecode.session import StatefulModel
    >>> isinstance(char_model(), StatefulModel)
    True
    """

    def start_session(self, prompts: Sequence[np.ndarray]) -> tuple[Session, np.ndarray]:
        """Start a session on B prompts.

        Parameters
        ----------
        prompts : list of 1-D int64 arrays
            B non-empty prompts.

        Returns
        -------
        session : Session
            The per-row state.
        last_logits : ndarray, shape (B, V)
            The logits after each prompt's last token.
        """
        ...


# -- conversions --------------------------------------------------------------------------------

_FLOAT_KINDS = (np.float16, np.float32, np.float64)


def _is_torch_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _is_torch_module(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.nn.Module)


def logits_to_numpy(out: Any, what: str = "model output") -> np.ndarray:
    """A model's logits as a NumPy float array (zero-copy for CPU tensors; bfloat16 -> float32)."""
    if hasattr(out, "logits") and not isinstance(out, np.ndarray):
        out = out.logits
    if _is_torch_tensor(out):
        if out.device.type != "cpu":
            raise ModelOutputError(f"{what}: logits are on {out.device}; return CPU tensors or NumPy arrays")
        out = out.detach()
        import torch

        if out.dtype == torch.bfloat16:
            out = out.float()
        out = out.numpy()
    elif isinstance(out, (tuple, list)) and out and not np.isscalar(out[0]):
        out = out[0]  # (logits, cache, ...) tuples
    a = np.asarray(out)
    if a.dtype.type not in _FLOAT_KINDS:
        raise ModelOutputError(f"{what}: logits must be float16/32/64 (or bfloat16 tensors), got dtype {a.dtype}")
    return a


def as_prompts(input_ids: Any, *, attention_mask: Any = None, lengths: Any = None,
               name: str = "input_ids") -> tuple[list[np.ndarray], dict]:
    """Normalise a batch of prompts to a list of 1-D int64 arrays.

    Parameters
    ----------
    input_ids : list of int sequences, 1-D or 2-D int array, torch tensor, or mapping
        A list of token-id sequences (ragged), a 1-D sequence (one prompt), a (B, S) array, or a
        tokenizer's output (a mapping with ``input_ids`` and optionally ``attention_mask``).
    attention_mask : (B, S) 0/1 array, optional
        For a 2-D ``input_ids``: the ones of each row must be contiguous (left or right padding).
    lengths : int or array of B ints, optional
        For a 2-D ``input_ids``: right padding, row b is ``input_ids[b, :lengths[b]]``.
    name : str, default "input_ids"
        The argument name used in error messages.

    Returns
    -------
    prompts : list of int64 ndarray
        B non-empty 1-D prompts.
    layout : dict
        ``width`` (S), ``offsets`` (column of each row's first real token) and ``left`` (left
        padding present), so loops can write results back in the caller's layout.

    Raises
    ------
    TypeError
        Ids that are not integers, a row that is not a 1-D sequence.
    ValueError
        No prompts, an empty prompt, a negative id, a mask of the wrong shape or with a
        non-contiguous row, ``lengths`` beyond S, both ``attention_mask`` and ``lengths``, or
        either with a ragged list (messages name the argument and the row).

    Examples
    --------
    >>> import numpy as np
    >>> from fastdecode.session import as_prompts
    >>> prompts, layout = as_prompts(np.array([[0, 0, 5, 6], [1, 2, 3, 4]]),
    ...                              attention_mask=np.array([[0, 0, 1, 1], [1, 1, 1, 1]]))
    >>> prompts, layout["offsets"]
    ([array([5, 6]), array([1, 2, 3, 4])], array([2, 0]))
    """
    if not isinstance(input_ids, (np.ndarray, list, tuple)) and hasattr(input_ids, "keys") and "input_ids" in input_ids:
        # a tokenizer's output (transformers BatchEncoding or a dict): its ids and mask
        if attention_mask is None and lengths is None and "attention_mask" in input_ids:
            attention_mask = input_ids["attention_mask"]
        input_ids = input_ids["input_ids"]
    if _is_torch_tensor(input_ids):
        input_ids = input_ids.detach().cpu().numpy()
    if _is_torch_tensor(attention_mask):
        attention_mask = attention_mask.detach().cpu().numpy()
    if isinstance(input_ids, np.ndarray) or _rectangular(input_ids):
        a = np.asarray(input_ids)
        if a.dtype == object or a.dtype.kind not in "iub":
            if a.size == 0 and a.dtype.kind == "f":
                a = a.astype(np.int64)
            else:
                raise TypeError(f"{name} must hold integer token ids, got dtype {a.dtype}")
        if a.ndim == 1:
            a = a[None, :]
        if a.ndim != 2:
            raise ValueError(f"{name} must be (B, S) or a list of sequences, got shape {a.shape}")
        B, S = a.shape
        if B == 0:
            raise ValueError(f"{name} holds no prompts")
        a = a.astype(np.int64, copy=False)
        if attention_mask is not None and lengths is not None:
            raise ValueError("pass attention_mask or lengths, not both")
        if attention_mask is not None:
            m = np.asarray(attention_mask)
            if m.shape != a.shape:
                raise ValueError(f"attention_mask must have the shape of {name} {a.shape}, got {m.shape}")
            m = m.astype(bool)
            counts = m.sum(axis=1)
            first = np.where(counts > 0, m.argmax(axis=1), 0)
            cols = np.arange(S)
            contiguous = (m == ((cols >= first[:, None]) & (cols < (first + counts)[:, None]))).all(axis=1)
            if not contiguous.all():
                r = int(np.flatnonzero(~contiguous)[0])
                raise ValueError(f"attention_mask row {r} is not one contiguous block of ones (left or right padding)")
            offsets = first.astype(np.int64)
            lens = counts.astype(np.int64)
        elif lengths is not None:
            lens = np.asarray(lengths)
            if lens.dtype.kind not in "iu" or lens.shape not in ((), (B,)):
                raise ValueError(f"lengths must be an int or {B} ints, got {lengths!r}")
            lens = np.broadcast_to(lens.astype(np.int64), (B,))
            if (lens > S).any():
                r = int(np.flatnonzero(lens > S)[0])
                raise ValueError(f"lengths[{r}] = {lens[r]} exceeds the width of {name} ({S})")
            offsets = np.zeros(B, np.int64)
        else:
            lens = np.full(B, S, np.int64)
            offsets = np.zeros(B, np.int64)
        prompts = [a[b, offsets[b]:offsets[b] + lens[b]] for b in range(B)]
        layout = dict(width=S, offsets=offsets, left=bool((offsets > 0).any()), array=a)
    else:
        if attention_mask is not None or lengths is not None:
            raise ValueError(f"attention_mask/lengths apply to a 2-D {name}; a list of sequences is already ragged")
        try:
            rows = list(input_ids)
        except TypeError:
            raise TypeError(f"{name} must be a (B, S) array or a list of token-id sequences") from None
        if not rows:
            raise ValueError(f"{name} holds no prompts")
        prompts = []
        for b, r in enumerate(rows):
            if _is_torch_tensor(r):
                r = r.detach().cpu().numpy()
            r = np.asarray(r)
            if r.ndim != 1 or (r.size and r.dtype.kind not in "iub"):
                raise TypeError(f"{name}[{b}] must be a 1-D sequence of integer token ids")
            prompts.append(r.astype(np.int64))
        S = max(p.size for p in prompts)
        layout = dict(width=S, offsets=np.zeros(len(prompts), np.int64), left=False)
    for b, p in enumerate(prompts):
        if p.size == 0:
            raise ValueError(f"{name}: prompt {b} is empty (every prompt needs at least one token)")
        if (p < 0).any():
            raise ValueError(f"{name}: prompt {b} holds a negative token id ({int(p.min())})")
    return prompts, layout


def _rectangular(x: Any) -> bool:
    """True for a 1-D or 2-D rectangular nesting of numbers (not a ragged list of prompts)."""
    try:
        a = np.asarray(x)
    except (ValueError, TypeError):
        return False
    return a.dtype != object and a.ndim in (1, 2)


def declared_vocab(model: Any) -> int | None:
    """The vocabulary size a model declares (``vocab_size`` or ``config.vocab_size``), if any:
    loops check prompts against it before calling the model."""
    v = getattr(model, "vocab_size", None)
    if v is None:
        v = getattr(getattr(model, "config", None), "vocab_size", None)
    return int(v) if isinstance(v, (int, np.integer)) and v > 0 else None


def check_ids_in_vocab(prompts: Sequence[np.ndarray], vocab_size: int, name: str = "input_ids") -> None:
    for b, p in enumerate(prompts):
        if p.size and int(p.max()) >= vocab_size:
            raise ValueError(f"{name}: prompt {b} holds token id {int(p.max())}, outside the model's "
                             f"vocabulary of {vocab_size}")


# -- the recomputing wrapper ----------------------------------------------------------------------

class RecomputeSession:
    """A :class:`Session` over a plain callable: every step re-runs the model on the full history.

    Rows of equal length share one model call; rows of different lengths are called in groups of
    equal length, so the callable never sees padding. When the callable returns only the last
    position's logits ``(B, V)``, extending by n > 1 tokens costs n calls.

    Parameters
    ----------
    model : callable
        ``model(input_ids (B, S) int64) -> logits (B, S, V) or (B, V)`` (a torch module gets a
        tensor).
    prompts : sequence of 1-D int64 arrays
        B non-empty prompts; the constructor runs the model once on them.

    Attributes
    ----------
    vocab_size : int
        V, from the first model output.

    Raises
    ------
    TypeError
        ``model`` is not callable.
    ModelOutputError
        The model's output has the wrong shape, dtype or vocabulary size.

    Examples
    --------
    >>> import numpy as np
    >>> from fastdecode.models import NGramModel
    >>> from fastdecode.session import start_session
    >>> ng = NGramModel(8, order=2, seed=0)
    >>> s, last = start_session(lambda ids: ng(ids), [np.array([1, 2, 3]), np.array([4])])
    >>> type(s).__name__, s.lengths, last.shape
    ('RecomputeSession', array([3, 1]), (2, 8))
    >>> s.extend([[5], [6]]).shape, s.lengths
    ((2, 1, 8), array([4, 2]))
    >>> s.truncate([2, 1]); s.select([1, 1, 0]); s.lengths
    array([1, 1, 2])
    """

    def __init__(self, model: Any, prompts: Sequence[np.ndarray]):
        if not callable(model):
            raise TypeError(f"model must be callable or implement start_session, got {type(model).__name__}")
        self._model = model
        self._torch_in = _is_torch_module(model)
        n = len(prompts)
        cap = max(16, 2 * max(p.size for p in prompts))
        self._buf = np.zeros((n, cap), np.int64)
        self._len = np.zeros(n, np.int64)
        for b, p in enumerate(prompts):
            self._buf[b, :p.size] = p
            self._len[b] = p.size
        self.vocab_size = -1
        self._last = self._logits_at(np.arange(n), self._len, 1)[:, 0]

    @property
    def lengths(self) -> np.ndarray:
        """int64 (B,), read-only: tokens held per row."""
        v = self._len.view()
        v.flags.writeable = False
        return v

    @property
    def batch_size(self) -> int:
        """B, the current number of rows."""
        return self._len.size

    def history(self) -> tuple[np.ndarray, np.ndarray]:
        """Every row's tokens.

        Returns
        -------
        ids : int64 ndarray, shape (B, W)
            A right-padded view (W the longest row; what lies past a row's length is arbitrary).
        lengths : int64 ndarray, shape (B,)
            Tokens per row.
        """
        return self._buf[:, :int(self._len.max()) if self._len.size else 0], self.lengths

    def _call(self, ids: np.ndarray) -> np.ndarray:
        x = ids
        if self._torch_in:
            import torch

            x = torch.from_numpy(np.ascontiguousarray(ids))
        return logits_to_numpy(self._model(x))

    def _logits_at(self, rows: np.ndarray, ends: np.ndarray, n: int) -> np.ndarray:
        """Logits (len(rows), n, V) for positions ends-n .. ends-1 of the given rows."""
        out = None
        for L in np.unique(ends):
            sel = rows[ends == L]
            idx = np.flatnonzero(ends == L)
            ids = self._buf[sel, :L]
            y = self._call(ids)
            if y.ndim == 3:
                if y.shape[:2] != (sel.size, L):
                    raise ModelOutputError(f"model output: expected logits of shape ({sel.size}, {L}, V) or "
                                           f"({sel.size}, V) for input_ids of shape {ids.shape}, got {y.shape}")
                part = y[:, L - n:, :]
            elif y.ndim == 2:
                if y.shape[0] != sel.size:
                    raise ModelOutputError(f"model output: expected logits of shape ({sel.size}, {L}, V) or "
                                           f"({sel.size}, V) for input_ids of shape {ids.shape}, got {y.shape}")
                if n == 1:
                    part = y[:, None, :]
                else:
                    cols = [self._call(self._buf[sel, :L - n + j + 1]) for j in range(n - 1)]
                    part = np.stack([c[:, -1] if c.ndim == 3 else c for c in cols] + [y], axis=1)
            else:
                raise ModelOutputError(f"model output: expected logits of shape (B, S, V) or (B, V), got ndim {y.ndim}")
            V = part.shape[-1]
            if V < 1:
                raise ModelOutputError("model output: the vocabulary dimension is empty")
            if self.vocab_size < 0:
                self.vocab_size = int(V)
            elif V != self.vocab_size:
                raise ModelOutputError(f"model output: vocabulary size changed from {self.vocab_size} to {V}")
            if out is None:
                out = np.empty((rows.size, n, V), part.dtype)
            elif out.dtype != part.dtype:
                out = out.astype(np.result_type(out.dtype, part.dtype))
            out[idx] = part
        return out

    def extend(self, tokens: Any) -> np.ndarray:
        """Append ``tokens`` to every row and re-run the model (see :class:`Session`).

        Parameters
        ----------
        tokens : int array, shape (B, n) or (B,)
            The new tokens (a 1-D array is one token per row).

        Returns
        -------
        ndarray, shape (B, n, V)
            The logits after each new token.

        Raises
        ------
        TypeError
            ``tokens`` not integers.
        ValueError
            ``tokens`` of the wrong shape.
        ModelOutputError
            The model's output is malformed.
        """
        t = _as_tokens(tokens, self._len.size)
        n = t.shape[1]
        need = int(self._len.max()) + n
        if need > self._buf.shape[1]:
            grown = np.zeros((self._buf.shape[0], max(need, 2 * self._buf.shape[1])), np.int64)
            grown[:, :self._buf.shape[1]] = self._buf
            self._buf = grown
        if self._len.size and (self._len == self._len[0]).all():
            L = int(self._len[0])
            self._buf[:, L:L + n] = t
        else:
            for b in range(self._len.size):
                L = int(self._len[b])
                self._buf[b, L:L + n] = t[b]
        self._len += n
        return self._logits_at(np.arange(self._len.size), self._len, n)

    def truncate(self, lengths: Any) -> None:
        """Cut each row back (see :class:`Session`).

        Parameters
        ----------
        lengths : int or array of B ints
            ``1 <= lengths[b] <=`` the row's current length.

        Raises
        ------
        ValueError
            A length outside that range (naming the row), or of the wrong shape.
        """
        self._len[:] = _as_truncate(lengths, self._len)

    def select(self, rows: Any) -> None:
        """Make ``rows`` of the current batch the new batch (see :class:`Session`).

        Parameters
        ----------
        rows : 1-D int array
            Indices into the current batch (any order, repeats allowed).

        Raises
        ------
        ValueError
            Non-integer, non-1-D or out-of-range indices.
        """
        r = _as_rows(rows, self._len.size)
        self._buf = self._buf[r]
        self._len = self._len[r]


def _as_tokens(tokens: Any, batch: int) -> np.ndarray:
    t = np.asarray(tokens)
    if t.dtype.kind not in "iu":
        raise TypeError(f"tokens must be integer token ids, got dtype {t.dtype}")
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2 or t.shape[0] != batch or t.shape[1] < 1:
        raise ValueError(f"tokens must be (B, n) with B = {batch} rows and n >= 1, got shape {np.shape(tokens)}")
    return t.astype(np.int64, copy=False)


def _as_truncate(lengths: Any, current: np.ndarray) -> np.ndarray:
    a = np.asarray(lengths)
    if a.dtype.kind not in "iu" or a.shape not in ((), current.shape):
        raise ValueError(f"lengths must be an int or {current.size} ints, got {lengths!r}")
    a = np.broadcast_to(a.astype(np.int64), current.shape)
    bad = (a < 1) | (a > current)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise ValueError(f"lengths[{r}] = {int(a[r])} must lie between 1 and the row's current "
                         f"length {int(current[r])}")
    return a.copy()


def _as_rows(rows: Any, batch: int) -> np.ndarray:
    r = np.asarray(rows)
    if r.dtype.kind not in "iu":
        if r.size == 0 and r.dtype.kind == "f":
            r = r.astype(np.int64)
        else:
            raise ValueError(f"rows must hold integer row indices, got dtype {r.dtype}")
    if r.ndim != 1:
        raise ValueError(f"rows must be 1-D, got shape {r.shape}")
    r = r.astype(np.int64, copy=False)
    if r.size and (r.min() < 0 or r.max() >= batch):
        v = int(r[(r < 0) | (r >= batch)][0])
        raise ValueError(f"rows: index {v} is outside [0, {batch}) (the current batch size)")
    return r


# -- validation of user sessions ------------------------------------------------------------------

class CheckedSession:
    """Wraps a user :class:`Session`: validates arguments and results, tracks lengths.

    Made by :func:`start_session` for a stateful model; other attributes are forwarded to the
    wrapped session.

    Parameters
    ----------
    inner : Session
        The model's own session (must have ``extend``, ``truncate`` and ``select``).
    batch : int
        B, the number of rows.
    vocab_size : int
        V, the expected width of the logits.

    Raises
    ------
    TypeError
        ``inner`` lacks one of the three methods.

    Examples
    --------
    >>> import numpy as np
    >>> from fastdecode.models import NGramModel
    >>> from fastdecode.session import start_session
    >>> s, last = start_session(NGramModel(8, order=2, seed=0), [np.array([1, 2, 3])])
    >>> type(s).__name__, s.lengths, s.extend([[4, 5]]).shape
    ('CheckedSession', array([3]), (1, 2, 8))
    """

    def __init__(self, inner: Any, batch: int, vocab_size: int):
        for m in ("extend", "truncate", "select"):
            if not callable(getattr(inner, m, None)):
                raise TypeError(f"the session returned by start_session has no {m}() method")
        self._inner = inner
        self.vocab_size = vocab_size
        self._n = batch

    @property
    def lengths(self) -> np.ndarray:
        """int64 (B,): the wrapped session's lengths."""
        return np.asarray(self._inner.lengths, dtype=np.int64)

    @property
    def batch_size(self) -> int:
        """B, the current number of rows."""
        return self._n

    @property
    def inner(self) -> Any:
        """The wrapped session."""
        return self._inner

    def extend(self, tokens: Any) -> np.ndarray:
        """Append ``tokens`` through the wrapped session and check the logits it returns.

        Parameters
        ----------
        tokens : int array, shape (B, n) or (B,)
            The new tokens.

        Returns
        -------
        ndarray, shape (B, n, V)
            The logits (a ``(B, V)`` answer to a one-token step is accepted and reshaped).

        Raises
        ------
        TypeError
            ``tokens`` not integers.
        ValueError
            ``tokens`` of the wrong shape.
        ModelOutputError
            Logits of the wrong shape or dtype.
        """
        t = _as_tokens(tokens, self._n)
        y = logits_to_numpy(self._inner.extend(t), "session.extend")
        expect = (self._n, t.shape[1], self.vocab_size)
        if y.shape != expect:
            if y.ndim == 2 and t.shape[1] == 1 and y.shape == (self._n, self.vocab_size):
                return y[:, None, :]
            raise ModelOutputError(f"session.extend: expected logits of shape {expect}, got {y.shape}")
        return y

    def truncate(self, lengths: Any) -> None:
        """Validate ``lengths`` and cut the wrapped session's rows back.

        Parameters
        ----------
        lengths : int or array of B ints
            ``1 <= lengths[b] <=`` the row's current length.

        Raises
        ------
        ValueError
            A length outside that range (naming the row), or of the wrong shape.
        """
        self._inner.truncate(_as_truncate(lengths, self.lengths))

    def select(self, rows: Any) -> None:
        """Validate ``rows`` and select them in the wrapped session.

        Parameters
        ----------
        rows : 1-D int array
            Indices into the current batch (any order, repeats allowed).

        Raises
        ------
        ValueError
            Non-integer, non-1-D or out-of-range indices.
        """
        r = _as_rows(rows, self._n)
        self._inner.select(r)
        self._n = r.size

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def start_session(model: Any, prompts: Sequence[np.ndarray]) -> tuple[Any, np.ndarray]:
    """Start a session on ``prompts`` for any model: the entry point of every decoding loop.

    Parameters
    ----------
    model : callable or StatefulModel
        A plain callable ``model(input_ids) -> logits``, or an object with ``start_session``.
    prompts : sequence of 1-D int arrays
        B non-empty prompts.

    Returns
    -------
    session : CheckedSession or RecomputeSession
        The model's native session validated by :class:`CheckedSession` when it has
        ``start_session``, else a :class:`RecomputeSession` over the callable.
    last_logits : ndarray, shape (B, V)
        The logits after each prompt's last token (NumPy).

    Raises
    ------
    TypeError
        ``model`` is neither callable nor a stateful model.
    ModelOutputError
        ``start_session`` or the model returned something malformed.
    ValueError
        A prompt id outside the model's vocabulary.

    Examples
    --------
    >>> import numpy as np
    >>> from fastdecode.models import NGramModel
    >>> from fastdecode.session import start_session
    >>> ng = NGramModel(8, order=2, seed=0)
    >>> s, last = start_session(lambda ids: ng(ids), [np.array([1, 2, 3]), np.array([4])])
    >>> type(s).__name__, s.lengths, last.shape
    ('RecomputeSession', array([3, 1]), (2, 8))
    >>> s.extend([[5], [6]]).shape, s.lengths
    ((2, 1, 8), array([4, 2]))
    >>> s.truncate([2, 1]); s.select([1, 1, 0]); s.lengths
    array([1, 1, 2])
    """
    prompts = [np.asarray(p, dtype=np.int64) for p in prompts]
    B = len(prompts)
    if hasattr(model, "start_session"):
        res = model.start_session(prompts)
        if not isinstance(res, tuple) or len(res) != 2:
            raise ModelOutputError("start_session must return (session, last_logits)")
        inner, last = res
        last = logits_to_numpy(last, "start_session")
        if last.ndim == 3 and last.shape[1] >= 1:
            last = last[:, -1]
        if last.ndim != 2 or last.shape[0] != B or last.shape[1] < 1:
            raise ModelOutputError(f"start_session: expected last_logits of shape ({B}, V), got {last.shape}")
        vs = getattr(inner, "vocab_size", None)
        if vs is not None and int(vs) != last.shape[1]:
            raise ModelOutputError(f"start_session: session.vocab_size is {vs} but the logits have {last.shape[1]} columns")
        sess = CheckedSession(inner, B, int(last.shape[1]))
    else:
        sess = RecomputeSession(model, prompts)
        last = sess._last
        del sess._last
    check_ids_in_vocab(prompts, sess.vocab_size)
    return sess, last
