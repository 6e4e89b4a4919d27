"""Small built-in models for tests, documentation and notebooks: NumPy only, deterministic.

Every model here speaks both forms of the model protocol (see :mod:`fastdecode.session`):

* the **plain callable** ``model(input_ids) -> logits``: ``input_ids`` an integer ``(B, S)`` array,
  the result float32 ``(B, S, V)``, position ``j`` being the distribution of the token after
  ``input_ids[:, :j + 1]``;
* the **stateful** form ``model.start_session(prompts) -> (session, last_logits)`` with a native,
  cheap session (``extend``, ``truncate``, ``select``, ``lengths``, ``vocab_size``).

The two forms return bitwise-identical logits: both gather rows of one precomputed float32 table,
so no arithmetic happens after the lookup and nothing depends on the batch or the call pattern.

Models
------
:class:`NGramModel`
    A seeded random n-gram LM over an arbitrary vocabulary (up to GPT-2's 50257 tokens in a few
    tens of MiB): peaked rows, so greedy decoding falls into a cycle within tens of tokens.
:class:`CharModel`
    A character 5-gram LM with interpolated Kneser-Ney smoothing, trained in milliseconds on an
    embedded excerpt of *Alice's Adventures in Wonderland*; it writes English-looking text that
    soon repeats itself. :func:`char_model` returns a shared instance.
:class:`ReplayModel`
    Replays precomputed logits rows whatever the input: a model of zero cost for measuring the
    per-token overhead of a decoding loop.
"""

from __future__ import annotations

import re
import threading
from typing import Any, Sequence

import numpy as np

from .session import _as_rows
from .session import _as_truncate as _as_lengths

__all__ = ["CharModel", "NGramModel", "ReplayModel", "char_model"]

_M64 = (1 << 64) - 1


# -- validation -------------------------------------------------------------------------------------

def _as_ids(x: Any, name: str, vocab_size: int, ndim: int) -> np.ndarray:
    """``x`` as an int64 array of ``ndim`` dimensions with every id in ``[0, vocab_size)``."""
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        if a.size == 0 and a.dtype.kind == "f":  # ``np.array([])`` is float64; accept it as ids
            a = a.astype(np.int64)
        else:
            raise TypeError(f"{name} must hold integer token ids, got dtype {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    a = a.astype(np.int64, copy=False)
    if a.size:
        bad = (a < 0) | (a >= vocab_size)
        if bad.any():
            pos = tuple(int(i) for i in np.argwhere(bad)[0])
            at = pos[0] if len(pos) == 1 else pos
            raise ValueError(f"{name}: token id {int(a[pos])} at {at} is outside [0, {vocab_size})")
    return a


def _as_prompts(prompts: Any, vocab_size: int) -> list[np.ndarray]:
    if isinstance(prompts, np.ndarray) and prompts.ndim != 2:
        raise ValueError(f"prompts must be a list of 1-D arrays or a 2-D array, got shape {prompts.shape}")
    out = []
    for i, p in enumerate(prompts):
        p = _as_ids(p, f"prompts[{i}]", vocab_size, 1)
        if p.size == 0:
            raise ValueError(f"prompts[{i}] is empty; every prompt needs at least one token")
        out.append(p)
    return out


# -- shared machinery for models whose logits depend on the last ``order - 1`` tokens ---------------

class _ContextModel:
    """Base of :class:`NGramModel` and :class:`CharModel`.

    A subclass sets ``vocab_size``, ``order`` and ``_pad`` (the ``order - 1`` symbols that stand
    before the first token; they may be ids outside the vocabulary) and implements
    ``_table()`` (the float32 logits rows) and ``_rows(windows)``: for context windows
    ``(..., order - 1)`` of ids (pad symbols included), the table row of each.
    """

    vocab_size: int
    order: int
    _pad: np.ndarray

    def _table(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _rows(self, windows: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _logits_ext(self, ext: np.ndarray) -> np.ndarray:
        """``ext`` = ``(B, W + n)``: W context symbols then n tokens; logits after each token."""
        W = self.order - 1
        n = ext.shape[1] - W
        if W == 0:
            rows = np.zeros((ext.shape[0], n), dtype=np.intp)
        else:
            windows = np.lib.stride_tricks.sliding_window_view(ext, W, axis=1)[:, 1:]
            rows = self._rows(windows)
        return self._table()[rows]

    def __call__(self, input_ids: Any) -> np.ndarray:
        """Logits for every position (the stateless model protocol).

        Parameters
        ----------
        input_ids : array_like of int, shape (B, S), S >= 1
            Token ids in ``[0, vocab_size)``.

        Returns
        -------
        float32 ndarray, shape (B, S, V)
            ``[b, j]`` is the logits of the token after ``input_ids[b, :j + 1]``.

        Raises
        ------
        ValueError
            An empty or non-2-D ``input_ids``, or an id outside the vocabulary (naming it).
        """
        ids = _as_ids(input_ids, "input_ids", self.vocab_size, 2)
        if ids.shape[1] == 0:
            raise ValueError("input_ids must have at least one column (token)")
        pad = np.broadcast_to(self._pad, (ids.shape[0], self._pad.size))
        return self._logits_ext(np.concatenate([pad, ids], axis=1))

    def start_session(self, prompts: Sequence[Any]) -> tuple[_ContextSession, np.ndarray]:
        """Start a session on B prompts (the stateful model protocol, :mod:`fastdecode.session`).

        Parameters
        ----------
        prompts : sequence of 1-D integer arrays, or a 2-D array
            B non-empty prompts, lengths may differ.

        Returns
        -------
        session
            With ``extend(tokens)``, ``truncate(lengths)``, ``select(rows)``, ``lengths`` and
            ``batch_size``.
        last_logits : float32 ndarray, shape (B, V)
            The logits after each prompt's last token.

        Raises
        ------
        ValueError
            An empty prompt or an id outside the vocabulary.
        """
        ps = _as_prompts(prompts, self.vocab_size)
        sess = _ContextSession(self, ps)
        W = self.order - 1
        ext = np.empty((len(ps), W + 1), dtype=np.int64)
        for b, p in enumerate(ps):
            ext[b] = np.concatenate([self._pad, p])[-(W + 1):]
        return sess, self._logits_ext(ext)[:, 0]

    def logits_for(self, context: Any) -> np.ndarray:
        """The logits of the token after ``context``.

        Parameters
        ----------
        context : array_like of int, 1-D
            Token ids (may be empty: the distribution of a sequence's first token).

        Returns
        -------
        float32 ndarray, shape (V,)
            A copy; ``logits_for(ids[:j + 1])`` equals ``model(ids[None])[0, j]`` bit for bit.

        Raises
        ------
        ValueError
            ``context`` not 1-D, or an id outside the vocabulary.
        """
        ctx = _as_ids(context, "context", self.vocab_size, 1)
        W = self.order - 1
        ext = np.concatenate([self._pad, ctx])[ctx.size:]  # the last W symbols
        rows = self._rows(ext[None, None, :]) if W else np.zeros((1, 1), dtype=np.intp)
        return self._table()[rows[0, 0]].copy()

    def probs(self, context: Any) -> np.ndarray:
        """``softmax(logits_for(context))`` in float64, for exact computations.

        Parameters
        ----------
        context : array_like of int, 1-D
            Token ids (may be empty).

        Returns
        -------
        float64 ndarray, shape (V,)
            The next-token probabilities, summing to 1.

        Raises
        ------
        ValueError
            As :meth:`logits_for`.
        """
        z = self.logits_for(context).astype(np.float64)
        e = np.exp(z - z.max())
        return e / e.sum()


class _ContextSession:
    """Native session of a :class:`_ContextModel`.

    Holds each row's tokens in a growable int64 buffer (the pad symbols first), because
    :meth:`truncate` may roll a row back past its last ``order - 1`` tokens; a step reads only the
    last ``order - 1`` of them and looks up one table row per new token: no recomputation.
    """

    def __init__(self, model: _ContextModel, prompts: list[np.ndarray]):
        self._model = model
        self.vocab_size = model.vocab_size
        W = model.order - 1
        B = len(prompts)
        self._len = np.array([p.size for p in prompts], dtype=np.int64)
        cap = W + (int(self._len.max()) if B else 0) + 16
        self._buf = np.zeros((B, cap), dtype=np.int64)
        self._buf[:, :W] = model._pad
        for b, p in enumerate(prompts):
            self._buf[b, W:W + p.size] = p

    @property
    def lengths(self) -> np.ndarray:
        """``(B,)`` int64: tokens held per row (a copy)."""
        return self._len.copy()

    @property
    def batch_size(self) -> int:
        return int(self._len.size)

    def extend(self, tokens: Any) -> np.ndarray:
        """Append ``tokens`` ``(B, n)`` to the rows; returns float32 logits ``(B, n, V)``."""
        t = _as_ids(tokens, "tokens", self.vocab_size, 2)
        B, n = t.shape
        if B != self._len.size or n < 1:
            raise ValueError(f"tokens must have shape ({self._len.size}, n) with n >= 1, got {t.shape}")
        W = self._model.order - 1
        need = W + (int(self._len.max()) if B else 0) + n
        if need > self._buf.shape[1]:
            grown = np.zeros((B, max(need, 2 * self._buf.shape[1])), dtype=np.int64)
            grown[:, :self._buf.shape[1]] = self._buf
            self._buf = grown
        r = np.arange(B)[:, None]
        ctx = self._buf[r, self._len[:, None] + np.arange(W)]
        self._buf[r, W + self._len[:, None] + np.arange(n)] = t
        self._len += n
        return self._model._logits_ext(np.concatenate([ctx, t], axis=1))

    def truncate(self, lengths: Any) -> None:
        """Cut row b back to ``lengths[b]`` tokens (an int applies to every row)."""
        self._len = _as_lengths(lengths, self._len)

    def select(self, rows: Any) -> None:
        """Make the batch ``rows`` of the current one (any order, repeats allowed)."""
        r = _as_rows(rows, self._len.size)
        self._buf = self._buf[r]
        self._len = self._len[r]


# -- NGramModel --------------------------------------------------------------------------------------

def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on a uint64 array (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class NGramModel(_ContextModel):
    """A seeded random n-gram language model over ``vocab_size`` tokens.

    The logits of the next token are a fixed pseudo-random float32 row chosen by the last
    ``order - 1`` tokens (the *context*). Rows are ``scale * N(0, 1)`` draws, peaked enough that
    greedy decoding quickly enters a cycle and sampling repeats itself: a cheap stand-in for a
    language model in tests and benchmarks.

    Parameters
    ----------
    vocab_size : int, default 64
    order : int, default 3
        Tokens per n-gram; the context is the last ``order - 1`` tokens (``order=1``: one row for
        every position).
    seed : int, default 0
        Seeds the table (``numpy.random.default_rng(seed)``) and the context hash.
    scale : float, default 3.0
        Standard deviation of the logits; larger is more peaked.
    temperature : float, default 1.0
        The stored rows are ``scale * N(0, 1) / temperature``.
    eos_token_id : int, optional
        An end-of-sequence id, exposed as ``eos_token_id`` for decoding loops; its column gets
        ``eos_bias`` added (before the temperature).
    eos_bias : float, default 0.0
        With the default EOS is exactly as likely as any token a priori (about ``1 / V`` per step
        when sampling); raise it to make sequences end sooner.
    n_buckets : int, optional
        Rows in the table. When the number of contexts ``(V + 1) ** (order - 1)`` is at most
        ``n_buckets`` every context has its own row (exact mode); otherwise contexts are hashed
        into ``n_buckets`` rows and distinct contexts may share one. The default
        ``max(16, 2**23 // V)`` bounds the table to 32 MiB (167 rows for V = 50257).

    Attributes
    ----------
    vocab_size, order, seed, scale, temperature, eos_token_id, eos_bias, n_buckets
        As given (``n_buckets`` resolved).
    exact : bool
        Whether every context has its own row.
    table : numpy.ndarray
        The float32 ``(n_rows, V)`` logits rows (read-only).

    Notes
    -----
    A sequence is preceded by ``order - 1`` copies of a start symbol with id ``V`` (outside the
    vocabulary), so contexts near the start are ordinary contexts that include start symbols:
    the first token's logits are those of the context ``(V, ..., V)``. In exact mode the context
    ``(c_1, ..., c_W)`` reads row ``sum(c_i * (V + 1) ** (W - i))``; in hashed mode row
    ``h % n_buckets`` with ``h`` a SplitMix64 chain over ``seed`` and the context ids.

    Examples
    --------
    >>> import numpy as np
    >>> from fastdecode.models import NGramModel
    >>> m = NGramModel(vocab_size=16, order=2, seed=0)
    >>> ids = np.array([[3]])
    >>> for _ in range(12):
    ...     ids = np.concatenate([ids, m(ids)[:, -1].argmax(-1)[:, None]], axis=1)
    >>> ids[0].tolist()
    [3, 1, 9, 0, 9, 0, 9, 0, 9, 0, 9, 0, 9]
    """

    def __init__(self, vocab_size: int = 64, order: int = 3, seed: int = 0, scale: float = 3.0,
                 temperature: float = 1.0, eos_token_id: int | None = None, eos_bias: float = 0.0,
                 n_buckets: int | None = None):
        if not isinstance(vocab_size, (int, np.integer)) or vocab_size < 1:
            raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}")
        if not isinstance(order, (int, np.integer)) or order < 1:
            raise ValueError(f"order must be a positive integer, got {order!r}")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be positive and finite, got {scale!r}")
        if not (np.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be positive and finite, got {temperature!r}")
        if not np.isfinite(eos_bias):
            raise ValueError(f"eos_bias must be finite, got {eos_bias!r}")
        if eos_token_id is not None and not (isinstance(eos_token_id, (int, np.integer))
                                             and 0 <= eos_token_id < vocab_size):
            raise ValueError(f"eos_token_id must be an id in [0, {vocab_size}), got {eos_token_id!r}")
        V, W = int(vocab_size), int(order) - 1
        if n_buckets is None:
            n_buckets = max(16, 2**23 // V)
        if not isinstance(n_buckets, (int, np.integer)) or n_buckets < 1:
            raise ValueError(f"n_buckets must be a positive integer, got {n_buckets!r}")
        n_contexts = (V + 1) ** W
        self.vocab_size = V
        self.order = int(order)
        self.seed = int(seed)
        self.scale = float(scale)
        self.temperature = float(temperature)
        self.eos_token_id = None if eos_token_id is None else int(eos_token_id)
        self.eos_bias = float(eos_bias)
        self.exact = n_contexts <= n_buckets
        self.n_buckets = int(n_contexts if self.exact else n_buckets)
        self._pad = np.full(W, V, dtype=np.int64)
        self._powers = np.array([(V + 1) ** (W - 1 - i) for i in range(W)], dtype=np.int64) \
            if self.exact else None
        self._hash0 = (0x9E3779B97F4A7C15 * (self.seed + 1)) & _M64
        rng = np.random.default_rng(self.seed)
        t = rng.standard_normal((self.n_buckets, V), dtype=np.float32)
        t *= np.float32(self.scale)
        if self.eos_token_id is not None and self.eos_bias != 0.0:
            t[:, self.eos_token_id] += np.float32(self.eos_bias)
        if self.temperature != 1.0:
            t /= np.float32(self.temperature)
        t.flags.writeable = False
        self.table = t

    def _table(self) -> np.ndarray:
        return self.table

    def _rows(self, windows: np.ndarray) -> np.ndarray:
        if self.exact:
            return windows @ self._powers
        h = np.full(windows.shape[:-1], self._hash0, dtype=np.uint64)
        for i in range(windows.shape[-1]):
            h = _mix64(h ^ windows[..., i].astype(np.uint64))
        return (h % np.uint64(self.n_buckets)).astype(np.intp)

    def __repr__(self) -> str:
        return (f"NGramModel(vocab_size={self.vocab_size}, order={self.order}, seed={self.seed}, "
                f"scale={self.scale}, temperature={self.temperature}, "
                f"eos_token_id={self.eos_token_id}, n_buckets={self.n_buckets})")


# -- CharModel ---------------------------------------------------------------------------------------

# Lewis Carroll, "Alice's Adventures in Wonderland" (1865), the start of Chapter I, "Down the
# Rabbit-Hole"; public domain (Project Gutenberg eBook #11). Blank lines separate paragraphs.
ALICE_TEXT = """\
Alice was beginning to get very tired of sitting by her sister on the bank, and of having nothing
to do: once or twice she had peeped into the book her sister was reading, but it had no pictures or
conversations in it, 'and what is the use of a book,' thought Alice 'without pictures or
conversations?'

So she was considering in her own mind (as well as she could, for the hot day made her feel very
sleepy and stupid), whether the pleasure of making a daisy-chain would be worth the trouble of
getting up and picking the daisies, when suddenly a White Rabbit with pink eyes ran close by her.

There was nothing so VERY remarkable in that; nor did Alice think it so VERY much out of the way to
hear the Rabbit say to itself, 'Oh dear! Oh dear! I shall be late!' (when she thought it over
afterwards, it occurred to her that she ought to have wondered at this, but at the time it all
seemed quite natural); but when the Rabbit actually TOOK A WATCH OUT OF ITS WAISTCOAT-POCKET, and
looked at it, and then hurried on, Alice started to her feet, for it flashed across her mind that
she had never before seen a rabbit with either a waistcoat-pocket, or a watch to take out of it,
and burning with curiosity, she ran across the field after it, and fortunately was just in time to
see it pop down a large rabbit-hole under the hedge.

In another moment down went Alice after it, never once considering how in the world she was to get
out again.

The rabbit-hole went straight on like a tunnel for some way, and then dipped suddenly down, so
suddenly that Alice had not a moment to think about stopping herself before she found herself
falling down a very deep well.

Either the well was very deep, or she fell very slowly, for she had plenty of time as she went down
to look about her and to wonder what was going to happen next. First, she tried to look down and
make out what she was coming to, but it was too dark to see anything; then she looked at the sides
of the well, and noticed that they were filled with cupboards and book-shelves; here and there she
saw maps and pictures hung upon pegs. She took down a jar from one of the shelves as she passed; it
was labelled 'ORANGE MARMALADE', but to her great disappointment it was empty: she did not like to
drop the jar for fear of killing somebody underneath, so managed to put it into one of the
cupboards as she fell past it.

'Well!' thought Alice to herself, 'after such a fall as this, I shall think nothing of tumbling
down stairs! How brave they'll all think me at home! Why, I wouldn't say anything about it, even if
I fell off the top of the house!' (Which was very likely true.)

Down, down, down. Would the fall NEVER come to an end! 'I wonder how many miles I've fallen by this
time?' she said aloud. 'I must be getting somewhere near the centre of the earth. Let me see: that
would be four thousand miles down, I think--' (for, you see, Alice had learnt several things of
this sort in her lessons in the schoolroom, and though this was not a VERY good opportunity for
showing off her knowledge, as there was no one to listen to her, still it was good practice to say
it over) '--yes, that's about the right distance--but then I wonder what Latitude or Longitude
I've got to?' (Alice had no idea what Latitude was, or Longitude either, but thought they were
nice grand words to say.)

Presently she began again. 'I wonder if I shall fall right THROUGH the earth! How funny it'll seem
to come out among the people that walk with their heads downward! The Antipathies, I think--' (she
was rather glad there WAS no one listening, this time, as it didn't sound at all the right word)
'--but I shall have to ask them what the name of the country is, you know. Please, Ma'am, is this
New Zealand or Australia?' (and she tried to curtsey as she spoke--fancy CURTSEYING as you're
falling through the air! Do you think you could manage it?) 'And what an ignorant little girl
she'll think me for asking! No, it'll never do to ask: perhaps I shall see it written up
somewhere.'

Down, down, down. There was nothing else to do, so Alice soon began talking again. 'Dinah'll miss
me very much to-night, I should think!' (Dinah was the cat.) 'I hope they'll remember her saucer of
milk at tea-time. Dinah my dear! I wish you were down here with me! There are no mice in the air,
I'm afraid, but you might catch a bat, and that's very like a mouse, you know. But do cats eat
bats, I wonder?' And here Alice began to get rather sleepy, and went on saying to herself, in a
dreamy sort of way, 'Do cats eat bats? Do cats eat bats?' and sometimes, 'Do bats eat cats?' for,
you see, as she couldn't answer either question, it didn't much matter which way she put it. She
felt that she was dozing off, and had just begun to dream that she was walking hand in hand with
Dinah, and saying to her very earnestly, 'Now, Dinah, tell me the truth: did you ever eat a bat?'
when suddenly, thump! thump! down she came upon a heap of sticks and dry leaves, and the fall was
over.
"""


def _paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, each with its whitespace runs collapsed to one space."""
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]


class CharModel(_ContextModel):
    """A character-level n-gram language model with interpolated Kneser-Ney smoothing.

    Trained (in a few milliseconds, on first use) on a short text: by default the opening of
    Chapter I of Lewis Carroll's *Alice's Adventures in Wonderland* (1865, public domain), about
    5 KB. Each blank-line separated paragraph is one training sequence, its whitespace runs
    collapsed to single spaces, followed by the end-of-text token. Greedy decoding writes
    English-looking text that repeats itself within a few hundred characters.

    Parameters
    ----------
    order : int, default 5
        Characters per n-gram: the context is the last ``order - 1`` characters.
    text : str, optional
        The training text (default: the embedded excerpt, :data:`ALICE_TEXT`).
    discount : float, optional
        The Kneser-Ney absolute discount in (0, 1), one for every order. Default: estimated per
        order as ``n1 / (n1 + 2 n2)`` (Ney, Essen and Kneser 1994), ``n_k`` being the number of
        n-grams of that order whose (adjusted) count is ``k``.

    Attributes
    ----------
    vocab_size : int
        Distinct characters of the text plus one.
    eos_token_id : int
        The end-of-text token, ``vocab_size - 1``; it decodes to ``""``.
    chars : str
        The characters, sorted: ``chars[i]`` is token ``i``.
    order : int
    text : str

    Notes
    -----
    Every sequence starts with an implicit beginning-of-text symbol (not a token: it is never
    predicted and cannot be encoded), so a prompt is read as the start of a paragraph. The model is
    interpolated Kneser-Ney in the formulation of Chen and Goodman (1998), with KenLM's rule for
    n-grams that start at the beginning-of-text symbol (they keep raw counts, having no left
    neighbour): for a context ``h`` with one character fewer ``h'``,

    ``P(w | h) = max(a(h w) - D, 0) / a(h) + D * N1+(h .) / a(h) * P(w | h')``

    where ``a`` is the raw count at the highest order and the continuation count (the number of
    distinct characters seen before ``h w``) below it, and the recursion ends with the uniform
    distribution over the vocabulary, so every token has positive probability. A context never
    seen in training backs off wholly to ``h'``; the logits of a position are the log-probability
    row of its longest seen context, precomputed for all of them (a few thousand rows).

    Examples
    --------
    Greedy decoding settles into a loop after a few words:

    >>> import numpy as np
    >>> from fastdecode.models import char_model
    >>> m = char_model()
    >>> ids = m.encode("Alice was ")
    >>> for _ in range(80):
    ...     ids = np.append(ids, m.logits_for(ids).argmax())
    >>> m.decode(ids)
    'Alice was the tried to her sister it, and the tried to her sister it, and the tried to her'
    """

    def __init__(self, order: int = 5, text: str | None = None, discount: float | None = None):
        if not isinstance(order, (int, np.integer)) or order < 1:
            raise ValueError(f"order must be a positive integer, got {order!r}")
        if discount is not None and not (0.0 < discount < 1.0):
            raise ValueError(f"discount must lie in (0, 1), got {discount!r}")
        self.text = ALICE_TEXT if text is None else text
        if not isinstance(self.text, str):
            raise TypeError(f"text must be a str, got {type(self.text).__name__}")
        self._paras = _paragraphs(self.text)
        if not self._paras:
            raise ValueError("text has no characters to train on")
        self.chars = "".join(sorted(set("".join(self._paras))))
        self.order = int(order)
        self.discount = discount
        V = len(self.chars) + 1
        self.vocab_size = V
        self.eos_token_id = V - 1
        self._index = {c: i for i, c in enumerate(self.chars)}
        # Symbols beyond the vocabulary: V = beginning of text, V + 1 = nothing (before it).
        # A context is keyed as base-(V + 2) digits (symbol + 1, NONE -> 0, never a real digit).
        self._base = V + 2
        if self._base ** self.order >= 2**62:
            raise ValueError(f"order {order} is too large for an alphabet of {V} tokens")
        W = self.order - 1
        self._pad = np.array([V + 1] * (W - 1) + [V], dtype=np.int64) if W else \
            np.zeros(0, dtype=np.int64)
        self._lock = threading.Lock()
        self._trained: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    # -- tokenisation --

    def encode(self, s: str) -> np.ndarray:
        """The int64 token ids of the characters of ``s`` (no EOS is appended).

        Parameters
        ----------
        s : str
            Text made of the model's characters (:attr:`chars`).

        Returns
        -------
        int64 ndarray, shape (len(s),)
            One token per character.

        Raises
        ------
        ValueError
            A character outside the vocabulary (naming it and its index).

        Examples
        --------
        >>> from fastdecode.models import char_model
        >>> m = char_model()
        >>> m.encode("Alice")
        array([11, 45, 42, 36, 38])
        >>> m.decode(m.encode("Alice"))
        'Alice'
        """
        try:
            return np.array([self._index[c] for c in s], dtype=np.int64)
        except KeyError as e:
            c = e.args[0]
            raise ValueError(f"character {c!r} (at {s.index(c)}) is not in the vocabulary "
                             f"of {len(self.chars)} characters") from None

    def decode(self, ids: Any) -> str:
        """The text of token ids ``ids``; the EOS token decodes to ``""``.

        Parameters
        ----------
        ids : int or array_like of int, 1-D
            Token ids in ``[0, vocab_size)``.

        Returns
        -------
        str
            The characters of the ids, in order.

        Raises
        ------
        ValueError
            An id outside the vocabulary.
        """
        a = _as_ids(np.atleast_1d(np.asarray(ids)), "ids", self.vocab_size, 1)
        return "".join(self.chars[i] for i in a.tolist() if i != self.eos_token_id)

    # -- training --

    def _digits(self, syms: np.ndarray) -> np.ndarray:
        return np.where(syms == self.vocab_size + 1, 0, syms + 1)

    def _suffix_keys(self, windows: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """For m = 1..W: (key, valid) of the length-m suffix of each window."""
        d = self._digits(windows)
        W = windows.shape[-1]
        key = np.zeros(windows.shape[:-1], dtype=np.int64)
        valid = np.ones(windows.shape[:-1], dtype=bool)
        out = []
        for m in range(1, W + 1):
            dm = d[..., W - m]
            key = key + dm * self._base ** (m - 1)
            valid = valid & (dm != 0)
            out.append((key, valid))
        return out

    def _train(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        V, W, base = self.vocab_size, self.order - 1, self._base
        seqs = [np.concatenate([self._pad, self.encode(p), [self.eos_token_id]]) for p in self._paras]
        # One training example per character and EOS: (the W symbols before it, it).
        win = np.concatenate([np.lib.stride_tricks.sliding_window_view(s[:-1], W) if W
                              else np.zeros((s.size, 0), dtype=np.int64) for s in seqs])
        tgt = np.concatenate([s[W:] for s in seqs])
        suffixes = [(np.zeros(tgt.size, dtype=np.int64), np.ones(tgt.size, dtype=bool))]
        suffixes += self._suffix_keys(win)

        # Raw counts of every n-gram (context key, next token), per context length m.
        raw = []
        for key, valid in suffixes:
            g, c = np.unique(key[valid] * V + tgt[valid], return_counts=True)
            raw.append((g, c))
        # Adjusted counts: continuation counts below the highest order, except for contexts that
        # start at the beginning of text (their leading digit is BOS + 1 = V + 1), which keep raw
        # counts. The empty context (m = 0) never starts at BOS.
        adjusted = []
        for m in range(W + 1):
            g, c = raw[m]
            if m == W:
                adjusted.append((g, c))
                continue
            longer = raw[m + 1][0]
            ctx_long, tok_long = np.divmod(longer, V)
            shorter = (ctx_long % base ** m) * V + tok_long
            gs, cont = np.unique(shorter, return_counts=True)
            a = c.copy()
            starts_bos = (g // V) // max(base ** (m - 1), 1) == V + 1 if m else np.zeros(g.size, bool)
            pos = np.searchsorted(gs, g)
            has = (pos < gs.size) & (gs[np.minimum(pos, gs.size - 1)] == g)
            a[~starts_bos] = np.where(has[~starts_bos], cont[np.minimum(pos, gs.size - 1)][~starts_bos], 0)
            adjusted.append((g, a))

        keys_all, rows_all = [], []
        prev_keys = prev_probs = None
        for m in range(W + 1):
            g, a = adjusted[m]
            keep = a > 0
            g, a = g[keep], a[keep]
            ctx, tok = np.divmod(g, V)
            ckeys, cidx = np.unique(ctx, return_inverse=True)
            A = np.zeros((ckeys.size, V), dtype=np.float64)
            A[cidx, tok] = a
            if self.discount is not None:
                D = float(self.discount)
            else:
                n1, n2 = int((a == 1).sum()), int((a == 2).sum())
                D = min(max(n1 / (n1 + 2 * n2), 0.05), 0.95) if n1 and n2 else 0.5
            tot = A.sum(axis=1, keepdims=True)
            types = (A > 0).sum(axis=1, keepdims=True)
            if m == 0:
                lower = np.full((1, V), 1.0 / V)
            else:
                lower = prev_probs[np.searchsorted(prev_keys, ckeys % base ** (m - 1))]
            P = np.maximum(A - D, 0.0) / tot + (D * types / tot) * lower
            keys_all.append(ckeys)
            rows_all.append(P)
            prev_keys, prev_probs = ckeys, P
        keys = np.concatenate(keys_all)
        order = np.argsort(keys, kind="stable")
        table = np.log(np.concatenate(rows_all)).astype(np.float32)
        table.flags.writeable = False
        return keys[order], order.astype(np.intp), table

    def _model(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = self._trained
        if t is None:
            with self._lock:
                if self._trained is None:
                    self._trained = self._train()
                t = self._trained
        return t

    def _table(self) -> np.ndarray:
        return self._model()[2]

    def _rows(self, windows: np.ndarray) -> np.ndarray:
        keys, rowids, _ = self._model()
        rows = np.full(windows.shape[:-1], rowids[0], dtype=np.intp)  # key 0: the empty context
        for key, valid in self._suffix_keys(windows):
            pos = np.minimum(np.searchsorted(keys, key), keys.size - 1)
            found = valid & (keys[pos] == key)
            rows = np.where(found, rowids[pos], rows)
        return rows

    @property
    def table(self) -> np.ndarray:
        """The float32 log-probability rows, one per context seen in training (trains if needed)."""
        return self._table()

    def __repr__(self) -> str:
        src = "ALICE_TEXT" if self.text is ALICE_TEXT else f"<{len(self.text)} characters>"
        return f"CharModel(order={self.order}, text={src}, discount={self.discount})"


_CHAR_MODEL: CharModel | None = None
_CHAR_LOCK = threading.Lock()


def char_model() -> CharModel:
    """The shared default :class:`CharModel` (order 5, the embedded Alice excerpt), trained once.

    Returns
    -------
    CharModel
        The same object on every call (thread-safe); 61 tokens, EOS ``60``.

    Examples
    --------
    >>> from fastdecode.models import char_model
    >>> m = char_model()
    >>> m is char_model(), m.vocab_size, m.eos_token_id
    (True, 61, 60)
    >>> m.chars[m.probs(m.encode("Alic")).argmax()]
    'e'
    """
    global _CHAR_MODEL
    if _CHAR_MODEL is None:
        with _CHAR_LOCK:
            if _CHAR_MODEL is None:
                _CHAR_MODEL = CharModel()
    return _CHAR_MODEL


# -- ReplayModel ------------------------------------------------------------------------------------

class ReplayModel:
    """Replays precomputed logits whatever the input: a zero-cost model for loop benchmarks.

    Parameters
    ----------
    logits : array_like, ``(T, V)`` or ``(B, T, V)``
        Float rows, stored as a float32 copy. The logits after the token at (0-based) position
        ``j`` of a row are ``logits[j % T]`` (or ``logits[b, j % T]`` for the row's source ``b``):
        the prompt's positions count, so a prompt of length L gets row ``(L - 1) % T`` and the
        n-th generated token is picked from row ``(L - 1 + n) % T``.

    Notes
    -----
    With a 3-D array the batch given to ``__call__`` or ``start_session`` must have B rows; a
    session's :meth:`select` carries each row's source along. Token ids are validated against V
    and otherwise ignored.

    Raises
    ------
    ValueError
        ``logits`` empty, not 2-D or 3-D, or not numeric.

    Examples
    --------
    >>> import numpy as np, fastdecode as fd
    >>> from fastdecode.models import ReplayModel
    >>> r = ReplayModel(np.log(np.array([[0.1, 0.9], [0.8, 0.2]])))
    >>> fd.generate(r, [[0]], max_new_tokens=4).sequences  # rows 0, 1, 0, 1 of the table
    array([[0, 1, 0, 1, 0]])
    """

    def __init__(self, logits: Any):
        a = np.asarray(logits)
        if a.dtype.kind not in "fiu" or a.ndim not in (2, 3) or 0 in a.shape:
            raise ValueError(f"logits must be a non-empty (T, V) or (B, T, V) array of floats, got "
                             f"shape {a.shape} and dtype {a.dtype}")
        self.logits = np.array(a if a.ndim == 3 else a[None], dtype=np.float32, order="C")
        self.logits.flags.writeable = False
        self._batched = a.ndim == 3
        self.vocab_size = int(a.shape[-1])
        self.eos_token_id = None

    @property
    def steps(self) -> int:
        """T: the number of rows replayed before cycling."""
        return int(self.logits.shape[1])

    def _src(self, batch: int, name: str) -> np.ndarray:
        if self._batched and batch != self.logits.shape[0]:
            raise ValueError(f"{name} has {batch} rows but the replayed logits have "
                             f"{self.logits.shape[0]}")
        return np.arange(batch) if self._batched else np.zeros(batch, dtype=np.intp)

    def _at(self, src: np.ndarray, pos: np.ndarray) -> np.ndarray:
        return self.logits[src[:, None], pos % self.steps]

    def __call__(self, input_ids: Any) -> np.ndarray:
        """Logits for every position: the replayed row ``j % T`` at position j.

        Parameters
        ----------
        input_ids : array_like of int, shape (B, S), S >= 1
            Token ids in ``[0, V)`` (otherwise ignored).

        Returns
        -------
        float32 ndarray, shape (B, S, V)
            ``logits[j % T]`` (or ``logits[b, j % T]``) at position j.

        Raises
        ------
        ValueError
            An empty ``input_ids``, an id outside ``[0, V)``, or (3-D logits) a batch size other
            than B.
        """
        ids = _as_ids(input_ids, "input_ids", self.vocab_size, 2)
        if ids.shape[1] == 0:
            raise ValueError("input_ids must have at least one column (token)")
        src = self._src(ids.shape[0], "input_ids")
        return self._at(src, np.broadcast_to(np.arange(ids.shape[1]), ids.shape))

    def start_session(self, prompts: Sequence[Any]) -> tuple[_ReplaySession, np.ndarray]:
        """Start a session on B prompts (the stateful model protocol).

        Parameters
        ----------
        prompts : sequence of 1-D integer arrays, or a 2-D array
            B non-empty prompts.

        Returns
        -------
        session
            With ``extend``, ``truncate``, ``select``, ``lengths`` and ``batch_size``.
        last_logits : float32 ndarray, shape (B, V)
            Row ``(L - 1) % T`` for a prompt of length L.

        Raises
        ------
        ValueError
            An empty prompt, an id outside ``[0, V)``, or (3-D logits) a batch size other than B.
        """
        ps = _as_prompts(prompts, self.vocab_size)
        src = self._src(len(ps), "prompts")
        lens = np.array([p.size for p in ps], dtype=np.int64)
        return _ReplaySession(self, src, lens), self._at(src, lens[:, None] - 1)[:, 0]


class _ReplaySession:
    """A :class:`ReplayModel` session: per row, its source index and length; nothing else."""

    def __init__(self, model: ReplayModel, src: np.ndarray, lengths: np.ndarray):
        self._model = model
        self.vocab_size = model.vocab_size
        self._src = src
        self._len = lengths

    @property
    def lengths(self) -> np.ndarray:
        return self._len.copy()

    @property
    def batch_size(self) -> int:
        return int(self._len.size)

    def extend(self, tokens: Any) -> np.ndarray:
        t = _as_ids(tokens, "tokens", self.vocab_size, 2)
        if t.shape[0] != self._len.size or t.shape[1] < 1:
            raise ValueError(f"tokens must have shape ({self._len.size}, n) with n >= 1, got {t.shape}")
        pos = self._len[:, None] + np.arange(t.shape[1])
        self._len = self._len + t.shape[1]
        return self._model._at(self._src, pos)

    def truncate(self, lengths: Any) -> None:
        self._len = _as_lengths(lengths, self._len)

    def select(self, rows: Any) -> None:
        r = _as_rows(rows, self._len.size)
        self._src = self._src[r]
        self._len = self._len[r]
