"""Array coercion: NumPy arrays and torch CPU tensors in, the caller's type and shape out.

The C binding is strict (exact dtypes, unit inner stride, native byte order, aligned); this module
is forgiving, and every copy it makes is deliberate:

* torch CPU tensors are viewed through ``tensor.numpy()`` (no copy); bfloat16 tensors are viewed
  as their ``uint16`` bits. Tensors on another device raise unless the caller converts them.
* Python sequences are converted with :func:`numpy.asarray` (a copy, naturally).
* Arrays whose vocabulary axis is not unit-stride, that are byte-swapped or misaligned, or whose
  rows run backwards are copied once to C order. Row-strided views such as ``x[:, -1, :]`` of a
  ``(B, S, V)`` array are used in place.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

_PY_SCALARS = (int, float, np.float64, np.float32, np.int64, np.int32)

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16))
_U16 = np.dtype(np.uint16)


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "numpy") and hasattr(x, "device")


class Logits:
    """A 2-D NumPy view of the caller's logits and what is needed to hand results back."""

    __slots__ = ("array", "one_d", "torch", "bf16", "restore")

    def __init__(self, array: np.ndarray, one_d: bool, torch: bool, bf16: bool,
                 restore: np.dtype | None = None):
        self.array = array
        self.one_d = one_d
        self.torch = torch
        self.bf16 = bf16
        self.restore = restore  # an ml_dtypes bfloat16 dtype to view uint16 results back as

    @property
    def batch(self) -> int:
        return self.array.shape[0]

    @property
    def vocab(self) -> int:
        return self.array.shape[1]

    def wrap_logits(self, out: np.ndarray) -> Any:
        """Hands a (B, V) result with the input's storage type back in the caller's type/shape."""
        if self.one_d:
            out = out.reshape(out.shape[1])
        if self.torch:
            import torch

            t = torch.from_numpy(out)
            return t.view(torch.bfloat16) if self.bf16 else t
        if self.restore is not None:
            return out.view(self.restore)
        return out

    def wrap_float(self, out: np.ndarray) -> Any:
        """Like wrap_logits for a plain float result (softmax): never bfloat16."""
        if self.one_d:
            out = out.reshape(out.shape[1:])
        if self.torch:
            import torch

            return torch.from_numpy(out)
        return out

    def wrap_rows(self, out: np.ndarray) -> Any:
        """A per-row result (B,): 0-d for a 1-D input; a torch tensor for torch input."""
        if self.one_d:
            out = out.reshape(())
        if self.torch:
            import torch

            return torch.from_numpy(out)
        return out


def _torch_to_numpy(t: Any, name: str) -> tuple[np.ndarray, bool]:
    import torch

    if t.device.type != "cpu":
        raise ValueError(
            f"{name} is on device {t.device}; fastdecode works on CPU memory. Pass "
            f"{name}.cpu() to copy it explicitly."
        )
    t = t.detach()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16), True
    if t.is_complex():
        raise TypeError(f"{name} must be a real floating tensor, got {t.dtype}")
    return t.numpy(), False


def _fix_layout(a: np.ndarray) -> np.ndarray:
    """Returns `a` itself when the binding can read it in place, else a C-ordered copy."""
    if a.size == 0:
        return np.empty(a.shape, dtype=a.dtype.newbyteorder("="))
    isz = a.dtype.itemsize
    ok = a.dtype.isnative and a.flags.aligned
    if ok and a.shape[1] > 1 and a.strides[1] != isz:
        ok = False
    if ok and a.shape[0] > 1 and (a.strides[0] % isz or a.strides[0] // isz < a.shape[1]):
        ok = False
    if ok:
        return a
    # astype(copy=True) always allocates fresh, aligned, C-ordered memory (ascontiguousarray
    # would return a contiguous but misaligned array unchanged).
    return a.astype(a.dtype.newbyteorder("="), order="C", copy=True)


def as_logits(x: Any, name: str = "logits", *, dtype: str | None = None) -> Logits:
    """Coerces `x` to a 2-D logits view (see module docstring)."""
    torch_in = False
    bf16 = False
    restore = None
    if _is_torch(x):
        torch_in = True
        a, bf16 = _torch_to_numpy(x, name)
    elif isinstance(x, np.ndarray):
        a = x
    else:
        try:
            a = np.asarray(x)
        except Exception as exc:  # pragma: no cover - exotic objects
            raise TypeError(f"{name} must be an array of floats, got {type(x).__name__}") from exc
    if dtype is not None:
        if dtype != "bfloat16":
            raise ValueError(f"dtype must be None or 'bfloat16', got {dtype!r}")
        if a.dtype not in (_U16, np.dtype(np.int16)):
            raise TypeError(f"{name} must hold uint16 bits when dtype='bfloat16', got {a.dtype}")
        a = a.view(np.uint16)
        bf16 = True
    elif a.dtype in _FLOAT_DTYPES:
        pass
    elif a.dtype.name == "bfloat16":  # ml_dtypes.bfloat16 (JAX's NumPy dtype)
        restore = a.dtype
        a = a.view(np.uint16)
        bf16 = True
    elif not bf16:
        if a.dtype.kind != "f" or a.dtype.newbyteorder("=") not in _FLOAT_DTYPES:
            raise TypeError(
                f"{name} must be float32, float64, float16 or bfloat16, got {a.dtype}"
            )
    if a.ndim == 1:
        one_d = True
        a = a.reshape(1, a.shape[0])
    elif a.ndim == 2:
        one_d = False
    else:
        raise ValueError(f"{name} must be 1-D (V,) or 2-D (B, V), got shape {a.shape}")
    if a.shape[1] == 0:
        raise ValueError(f"{name} must have at least one column (vocabulary size 0)")
    return Logits(_fix_layout(a), one_d, torch_in, bf16, restore)


def prepare_out(out: Any, lg: Logits, *, dtype: np.dtype | None = None) -> tuple[np.ndarray, Any]:
    """Returns (2-D NumPy view to write, object to return) for an `out=` argument.

    `dtype` is the required dtype (default: the logits' storage dtype).
    """
    want = lg.array.dtype if dtype is None else np.dtype(dtype)
    if out is None:
        o = np.empty(lg.array.shape, dtype=want)
        return o, None
    if _is_torch(out):
        o, _ = _torch_to_numpy(out, "out")
    elif isinstance(out, np.ndarray):
        o = out.view(np.uint16) if out.dtype.name == "bfloat16" else out
    else:
        raise TypeError(f"out must be a numpy.ndarray or torch tensor, got {type(out).__name__}")
    if o.dtype != want:
        raise TypeError(f"out must have dtype {want}, got {o.dtype}")
    o2 = o.reshape(1, o.shape[0]) if (o.ndim == 1 and lg.one_d) else o
    if o2.shape != lg.array.shape:
        raise ValueError(f"out must have shape {lg.array.shape if not lg.one_d else lg.array.shape[1:]}, got {o.shape}")
    if not o.flags.writeable:
        raise ValueError("out is read-only")
    if o2.size and (o2.shape[1] > 1 and o2.strides[1] != o2.dtype.itemsize or (
        o2.shape[0] > 1 and (o2.strides[0] % o2.dtype.itemsize or o2.strides[0] // o2.dtype.itemsize < o2.shape[1])
    )):  # an empty out= has no layout (NumPy gives it zero strides)
        raise ValueError("out must have unit stride along the vocabulary axis and non-overlapping rows")
    return o2, out


def resolve_alias(lg: Logits, o: np.ndarray) -> None:
    """If `o` overlaps the input without being the very same view, read from a copy instead."""
    a = lg.array
    if o is a:
        return
    if np.may_share_memory(a, o):
        same = (
            a.__array_interface__["data"][0] == o.__array_interface__["data"][0]
            and a.strides == o.strides
            and a.dtype == o.dtype
        )
        if not same:
            lg.array = a.copy()


def row_param(value: Any, batch: int, name: str, *, lo: float | None = None, hi: float | None = None,
              lo_open: bool = False, hi_open: bool = False, integer: bool = False,
              hint: str = "") -> np.ndarray:
    """A scalar or per-row parameter as a float64 array of length 1 or `batch`, validated.

    Raises TypeError for non-numbers and ValueError naming `name` (and the row) for NaN or values
    outside the interval.
    """
    if type(value) in _PY_SCALARS:
        # Fast path for the common case, a plain Python number: plain comparisons instead of a
        # handful of NumPy reductions (this runs for every parameter of every call). Anything
        # that fails a check falls through to the general path, which words the error.
        v = float(value)
        if v == v and (not integer or (math.isfinite(v) and v == math.floor(v))) and (
            lo is None or (v > lo if lo_open else v >= lo)) and (
            hi is None or (v < hi if hi_open else v <= hi)):
            return np.array((v,))
    if _is_torch(value):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf" or arr.dtype.kind == "b":
        raise TypeError(f"{name} must be a number or an array of numbers, got {arr.dtype}")
    if arr.ndim > 1:
        raise ValueError(f"{name} must be a scalar or a 1-D array with one value per row")
    if arr.ndim == 1 and arr.shape[0] not in (1, batch):
        raise ValueError(f"{name} has {arr.shape[0]} values but logits has {batch} rows")
    vals = np.ascontiguousarray(arr, dtype=np.float64).reshape(-1)
    if vals.size == 0 and batch != 0:  # one value per row of an empty batch is no value
        raise ValueError(f"{name} is empty")
    bad = np.isnan(vals)
    if integer:
        bad |= ~np.isfinite(vals) | (vals != np.floor(vals))
    if lo is not None:
        bad |= (vals <= lo) if lo_open else (vals < lo)
    if hi is not None:
        bad |= (vals >= hi) if hi_open else (vals > hi)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        lo_s = "" if lo is None else ("(" if lo_open else "[") + f"{lo:g}"
        hi_s = "" if hi is None else f"{hi:g}" + (")" if hi_open else "]")
        rng = f" in {lo_s or '(-inf'}, {hi_s or 'inf)'}" if (lo is not None or hi is not None) else ""
        kind = "an integer" if integer else "a number"
        where = f" (row {i})" if vals.size > 1 else ""
        raise ValueError(f"{name} must be {kind}{rng}{hint}, got {vals[i]!r}{where}")
    return vals


def as_ids_matrix(ids: Any, batch: int, name: str = "input_ids") -> np.ndarray:
    """Token histories as a 2-D int64 array with `batch` rows (1-D means one row)."""
    if _is_torch(ids):
        ids = ids.detach().cpu().numpy()
    a = np.asarray(ids)
    if a.size == 0 and a.dtype.kind == "f":
        a = a.astype(np.int64)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer token ids, got {a.dtype}")
    if a.ndim == 1:
        a = a.reshape(1, -1)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 1-D (T,) or 2-D (B, T), got shape {a.shape}")
    if a.shape[0] != batch:
        raise ValueError(f"{name} has {a.shape[0]} rows but logits has {batch}")
    if a.dtype != np.int64:
        if a.dtype.kind == "u" and a.size and a.max() > np.iinfo(np.int64).max:
            raise ValueError(f"{name} holds ids outside the int64 range")
        a = a.astype(np.int64)
    if a.shape[1] > 1 and a.strides[1] != 8 or a.strides[0] % 8 or not a.flags.aligned or not a.dtype.isnative:
        a = a.astype(np.int64, order="C", copy=True)
    return a


def as_id_list(ids: Any, name: str) -> np.ndarray:
    """A flat int64 list of token ids (a scalar, sequence, array or tensor)."""
    if _is_torch(ids):
        ids = ids.detach().cpu().numpy()
    a = np.asarray(ids)
    if a.size == 0:
        return np.zeros(0, dtype=np.int64)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer token ids, got {a.dtype}")
    return np.ascontiguousarray(a.reshape(-1), dtype=np.int64)


def row_bounds(batch: int, t: int, *, lengths: Any = None, begin: Any = None, last_n: Any = None,
               lengths_name: str = "lengths", begin_name: str = "prompt_lengths") -> tuple[Any, Any]:
    """Per-row [begin, end) bounds over a (B, T) history, or None where the default applies."""
    end = None
    if lengths is not None:
        end = np.broadcast_to(row_param(lengths, batch, lengths_name, lo=0, hi=t, integer=True),
                              (batch,)).astype(np.int64)
    b = None
    if begin is not None:
        b = np.broadcast_to(row_param(begin, batch, begin_name, lo=0, integer=True), (batch,)).astype(np.int64)
    if last_n is not None:
        ln = row_param(last_n, batch, "last_n", lo=0, integer=True).astype(np.int64)
        e = end if end is not None else np.full(batch, t, dtype=np.int64)
        lb = np.maximum(e - ln, 0)
        b = lb if b is None else np.maximum(b, lb)
    if b is not None:
        e = end if end is not None else np.full(batch, t, dtype=np.int64)
        b = np.minimum(b, e)
        b = np.ascontiguousarray(b, dtype=np.int64)
    if end is not None:
        end = np.ascontiguousarray(end, dtype=np.int64)
    return b, end

