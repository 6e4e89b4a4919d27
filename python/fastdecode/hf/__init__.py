"""Hugging Face integration: drop-in logits processors (and, next, a KV-cached model adapter).

Importing this module imports torch and transformers; ``import fastdecode`` never does.

* :mod:`fastdecode.hf.processors` — classes with HF's names and constructor signatures
  (``TopPLogitsWarper``, ``RepetitionPenaltyLogitsProcessor``, ...) backed by the C kernels, for
  ``model.generate(..., logits_processor=LogitsProcessorList([...]))``, and
  ``from_generation_config``.
"""

from __future__ import annotations

from .processors import *  # noqa: F401,F403
from .processors import __all__ as _processors_all

__all__ = list(_processors_all)
