# Type stubs for the private C module. The public, documented API is in fastdecode.ops; these
# positional entry points are strict: exact dtypes, 2-D logits with unit inner stride, per-row
# float64 parameter vectors of length 1 or B.
import numpy as np
import numpy.typing as npt

GIL_MINSIZE: int
THREAD_MINSIZE: int
THREAD_MINSIZE_LIGHT: int
TOP_K: int
TOP_P: int
MIN_P: int
TYPICAL: int
EPSILON: int
ETA: int
TOP_N_SIGMA: int

_F64 = npt.NDArray[np.float64]
_I64 = npt.NDArray[np.int64]
_Rows = npt.NDArray[np.float32] | npt.NDArray[np.float64] | npt.NDArray[np.float16] | npt.NDArray[np.uint16]

def filter(kind: int, logits: _Rows, out: _Rows, param: _F64, min_keep: _F64, filter_value: float, n_threads: int, /) -> None: ...
def softmax(logits: _Rows, out: npt.NDArray[np.float32] | _F64, temperature: _F64, log: bool, n_threads: int, /) -> None: ...
def entropy(logits: _Rows, entropy: _F64 | None, varentropy: _F64 | None, n_threads: int, /) -> None: ...
def argmax(logits: _Rows, out: _I64, n_threads: int, /) -> None: ...
def sample(
    logits: _Rows, temperature: _F64, top_k: _F64, top_p: _F64, min_p: _F64, typical_p: _F64,
    epsilon: _F64, eta: _F64, top_n_sigma: _F64, order: int, seed: npt.NDArray[np.uint64],
    position: _I64, uniforms: _F64 | None, out: _I64, logprobs: _F64 | None, n_threads: int, /,
) -> None: ...
# kind 0: repetition (a = penalty), 1: presence/frequency (a, b), 2: no-repeat n-gram (a = n, b = filter_value)
def history_penalty(kind: int, logits: _Rows, input_ids: _I64, begin: _I64 | None, end: _I64 | None, a: _F64 | int, b: _F64 | float | None, /) -> None: ...
def logit_bias(logits: _Rows, ids: _I64, values: _F64, /) -> None: ...
def suppress_tokens(logits: _Rows, ids: _I64, filter_value: float, /) -> None: ...
def apply_bitmask(logits: _Rows, bitmask: npt.NDArray[np.int32], filter_value: float, n_threads: int, /) -> None: ...
def bad_words(logits: _Rows, input_ids: _I64, begin: _I64 | None, end: _I64 | None, flat: _I64, offsets: _I64, filter_value: float, /) -> None: ...
# scores float32 (B,); returns (scores float32 (G, k), rows int64 (G, k), tokens int64 (G, k)), G = B / group_size
def beam_step(logits: _Rows, scores: npt.NDArray[np.float32], k: int, group_size: int, normalize: bool, n_threads: int, /) -> tuple[npt.NDArray[np.float32], _I64, _I64]: ...
def uniform(seed: npt.NDArray[np.uint64], position: _I64, draw: int, /) -> _F64: ...

# the benchmark suite's calibration floors (fd_floor): kind 0 one read pass (row maximum), 1 the
# read pass then sum exp(x - max) without a store; hidden, not public API
def _floor(logits: _Rows, kind: int, out: _F64, n_threads: int, /) -> None: ...
# contrastive decoding / classifier-free guidance: out float32 or float64; per-row float64 params
def contrastive(expert: _Rows, amateur: _Rows, out: npt.NDArray[np.float32] | _F64, alpha: _F64, amateur_temperature: _F64, beta: _F64, use_beta: bool, filter_value: float, n_threads: int, /) -> None: ...
def guidance(cond: _Rows, uncond: _Rows, out: npt.NDArray[np.float32] | _F64, guidance_scale: _F64, normalize: bool, n_threads: int, /) -> None: ...
# target (B * (gamma + 1), V), draft (B * gamma, V) or None, tokens (B, gamma) int64; writes out_accepted, out_next (B,)
def spec_verify(
    target: _Rows, draft: _Rows | None, tokens: _I64, gamma: int, n_draft: _I64 | None,
    greedy: npt.NDArray[np.uint8] | None, seed: npt.NDArray[np.uint64] | None, position: _I64 | None,
    out_accepted: _I64, out_next: _I64, n_threads: int, /,
) -> None: ...
# mu float64 (B,) is read and updated in place; version 1 or 2; m >= 1 (v1)
def mirostat(
    logits: _Rows, tau: _F64, eta: _F64, temperature: _F64, version: int, m: int,
    seed: npt.NDArray[np.uint64], position: _I64, uniforms: _F64 | None, mu: _F64, out: _I64,
    logprobs: _F64 | None, kept: _I64 | None, n_threads: int, /,
) -> None: ...
# params float64 (26,) in fd_entropix_params order (fastdecode.adaptive._ENTROPIX_ORDER)
def entropix(
    logits: _Rows, params: _F64, last_token: _I64 | None, seed: npt.NDArray[np.uint64],
    position: _I64, out: _I64, branch: _I64, entropy: _F64 | None, varentropy: _F64 | None,
    logprobs: _F64 | None, n_threads: int, /,
) -> None: ...
