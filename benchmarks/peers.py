"""The peers fastdecode is measured against, each doing the same work on the same rows.

  numpy   fastdecode._reference, the plain-NumPy twins the tests check the kernels against (the
          obvious algorithms: full sorts, float64 softmax, Python loops over rows)
  torch   torch with transformers' own warper classes (TemperatureLogitsWarper, TopKLogitsWarper,
          TopPLogitsWarper, MinPLogitsWarper, TypicalLogitsWarper, RepetitionPenaltyLogitsProcessor)
          and torch.multinomial, as ``model.generate(do_sample=True)`` runs them
  llama   llama.cpp's sampler chain through llama-cpp-python's low-level API (llama_sampler_init_*,
          llama_sampler_apply on a llama_token_data_array): the time includes filling the candidate
          array from the logits, as llama.cpp's own sampling does every token

A peer that cannot run a case gives a reason string instead of a callable; the table prints it.
"""

from __future__ import annotations

import ctypes
from typing import Any, Callable

import numpy as np


def load_torch() -> tuple[Any, Any, str]:
    """(torch, transformers.generation.logits_process, "") or (None, None, why not)."""
    try:
        import torch
        from transformers.generation import logits_process as lp
    except Exception as e:  # ImportError, or a broken install
        return None, None, f"torch/transformers not importable ({type(e).__name__}: {e})"
    return torch, lp, ""


def load_llama() -> tuple[Any, str]:
    """(llama_cpp module, "") or (None, why it is skipped)."""
    try:
        import llama_cpp
    except Exception as e:
        return None, (f"llama-cpp-python not importable ({type(e).__name__}: {e}); "
                      "pip install 'fastdecode[llama]'")
    need = ("llama_sampler_chain_init", "llama_sampler_apply", "llama_sampler_init_top_k",
            "llama_token_data_array")
    missing = [n for n in need if not hasattr(llama_cpp, n)]
    if missing:
        return None, f"llama-cpp-python {llama_cpp.__version__} lacks {', '.join(missing)}"
    return llama_cpp, ""


class LlamaChain:
    """A llama.cpp sampler chain applied to rows of logits, one llama_sampler_apply per row.

    spec: a list of (name, args) with name in top_k, top_p, min_p, typical, temp, dist,
    penalties (llama_sampler_init_<name>(*args); penalties: last_n, repeat, freq, present).
    Every call refills the candidate array's ids and logits (two strided NumPy copies, the work
    of llama_sampler_sample's C loop) and marks it unsorted; the samplers reorder and truncate it
    in place. p is left as the last call wrote it: every sampler that reads p computes it first."""

    def __init__(self, ll: Any, spec: list[tuple[str, tuple]], vocab: int,
                 history: np.ndarray | None = None):
        self.ll = ll
        params = ll.llama_sampler_chain_default_params()
        self.chain = ll.llama_sampler_chain_init(params)
        for name, args in spec:
            init = getattr(ll, f"llama_sampler_init_{name}")
            if name == "penalties" and len(getattr(init, "argtypes", ())) == 5:
                args = (vocab, *args)  # llama-cpp-python 0.3.x: (n_vocab, last_n, repeat, ...)
            ll.llama_sampler_chain_add(self.chain, init(*args))
        if history is not None:
            for t in history:
                ll.llama_sampler_accept(self.chain, int(t))
        self.cand = np.zeros(vocab, dtype=np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")]))
        assert self.cand.dtype.itemsize == ctypes.sizeof(ll.llama_token_data)
        self.ids = np.arange(vocab, dtype=np.int32)
        self.arr = ll.llama_token_data_array(
            data=self.cand.ctypes.data_as(ctypes.POINTER(ll.llama_token_data)), size=vocab,
            selected=-1, sorted=False)
        self.ptr = ctypes.pointer(self.arr)

    def fill(self, row: np.ndarray) -> None:
        """The candidate array's ids and logits from one row (timed alone by the suite)."""
        self.cand["id"] = self.ids
        self.cand["logit"] = row

    def __call__(self, x2: np.ndarray) -> list[int]:
        out = []
        V = self.cand.shape[0]
        for row in x2:
            self.fill(row)
            self.arr.size = V
            self.arr.selected = -1
            self.arr.sorted = False
            self.ll.llama_sampler_apply(self.chain, self.ptr)
            out.append(self.arr.selected if self.arr.selected >= 0 else int(self.arr.size))
        return out

    def close(self) -> None:
        if self.chain is not None:
            self.ll.llama_sampler_free(self.chain)
            self.chain = None

    __del__ = close


def torch_chain(torch: Any, warpers: list, sample: bool, batch: int) -> Callable[[Any], Any]:
    """HF warpers applied in order, then (sample) softmax + torch.multinomial, as HF's sampling."""
    ids = torch.zeros((batch, 1), dtype=torch.long)

    def run(xt):
        s = xt
        for w in warpers:
            s = w(ids, s)
        if sample:
            return torch.multinomial(torch.softmax(s.float(), -1), 1)
        return s
    return run
