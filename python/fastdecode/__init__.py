"""fastdecode: fast, exact, reproducible sampling and search primitives for LLM decoding.

The functional kernels take NumPy logits ``(B, V)`` or ``(V,)`` (or torch CPU tensors) and run in
one C call per batch with the GIL released; :class:`Sampler` chains penalties, filters and a seeded
pick. This module never imports torch or transformers.

Constants
---------
GIL_MINSIZE : int
    A kernel call releases the GIL only when its batch holds at least this many logits (16384);
    smaller calls are cheaper with it held. Exported for tests.
ENTROPIX_BRANCHES : tuple of str
    The names of the branch codes that :func:`entropix` and :class:`Entropix` report
    (``ENTROPIX_BRANCHES[code]``).

Examples
--------
>>> import numpy as np, fastdecode as fd
>>> fd.GIL_MINSIZE
16384
>>> fd.ENTROPIX_BRANCHES[0]
'argmax'
>>> fd.sample(np.array([0.0, 2.0, 1.0]), temperature=0)
array(1)
"""

from ._kernels import GIL_MINSIZE
from .ops import (
    allowed_tokens,
    allowed_tokens_bitmask,
    argmax,
    bad_words,
    beam_step,
    entropy,
    epsilon_cutoff,
    eta_cutoff,
    get_num_threads,
    log_softmax,
    logit_bias,
    min_p,
    no_repeat_ngram,
    pack_bitmask,
    presence_frequency_penalty,
    repetition_penalty,
    sample,
    set_num_threads,
    speculative_verify,
    softmax,
    suppress_tokens,
    top_k,
    top_n_sigma,
    top_p,
    typical_p,
    varentropy,
)
from .ops import adaptive_temperature, dry, dynamic_temperature, xtc
from . import models
from .processors import Sampler
from .beam import BeamSearchResult, beam_search
from .generate import GenerateResult, GenerationStream, StreamEvent, generate, stream
from .speculative import PromptLookup, SpeculativeResult, speculative_generate

__version__ = "0.1.0"

__all__ = [
    "BeamSearchResult",
    "GIL_MINSIZE",
    "GenerateResult",
    "GenerationStream",
    "PromptLookup",
    "StreamEvent",
    "Sampler",
    "SpeculativeResult",
    "allowed_tokens",
    "allowed_tokens_bitmask",
    "argmax",
    "bad_words",
    "beam_search",
    "beam_step",
    "entropy",
    "epsilon_cutoff",
    "eta_cutoff",
    "generate",
    "get_num_threads",
    "log_softmax",
    "logit_bias",
    "min_p",
    "no_repeat_ngram",
    "pack_bitmask",
    "presence_frequency_penalty",
    "repetition_penalty",
    "sample",
    "set_num_threads",
    "softmax",
    "speculative_generate",
    "speculative_verify",
    "stream",
    "suppress_tokens",
    "top_k",
    "top_n_sigma",
    "top_p",
    "typical_p",
    "varentropy",
    # adaptive samplers
    "adaptive_temperature",
    "dry",
    "dynamic_temperature",
    "xtc",
]

# stateful samplers (fastdecode.adaptive)
from .adaptive import ENTROPIX_BRANCHES, Entropix, Mirostat, entropix, mirostat

__all__ += ["ENTROPIX_BRANCHES", "Entropix", "Mirostat", "entropix", "mirostat"]


# contrastive decoding and classifier-free guidance
from .ops import contrastive_logits, guidance_logits

__all__ += ["contrastive_logits", "guidance_logits"]
from .contrastive import ContrastiveModel, contrastive_generate

__all__ += ["ContrastiveModel", "contrastive_generate"]
