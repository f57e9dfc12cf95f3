"""Text recognition with a CTC model: line crops in, text, confidence and words out.

Crops from every page of a batch go through one :class:`TextRecognizer` call.
Each crop is padded to its own width rounded up to ``width_step`` and batched
with crops of the same padded width, so padding wastes little compute and a
line reads the same whatever else is in its batch; batches are capped by count
and by padded pixels.

A reading's words carry where they are in the crop: a CTC model emits each
character at the frames where it sees it, so a word spans from its first
character's first frame to its last character's last frame, and a frame is a
fixed number of input pixels wide.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import NamedTuple

import cv2
import numpy as np

from pipeline.config import ClassifierConfig, RecognitionConfig
from pipeline.errors import ModelError
from pipeline.models.engine import Engine
from pipeline.models.lexicon import Lexicon, load_lexicon
from pipeline.models.zoo import ModelFile, model_metadata

__all__ = ["ALTERNATIVES", "CHARSETS", "CTCDecoder", "Reading", "WordSpan", "batch_tensor", "charset_classes",
           "in_charset", "normalise", "padded_width", "resize_to_height",
           "plan_buckets", "TextRecognizer", "LineClassifier"]

log = logging.getLogger(__name__)

#: Widest single crop (48 px high); longer lines are squeezed to fit.
MAX_WIDTH = 3200

#: Next-best classes per frame that lexicon correction may try (recognition.lexicon).
ALTERNATIVES = 4


class WordSpan(NamedTuple):
    """One word of a reading and where it is: from :meth:`CTCDecoder.decode_best`, ``start`` and
    ``end`` are model frames (its first character's first frame, its last character's last frame
    plus one); from :class:`TextRecognizer`, pixels of the crop, left to right."""

    text: str
    confidence: float
    start: float
    end: float
    #: False for a word with a character read below ``min_word_prob``: kept, but not in the reading's text.
    in_text: bool = True


class Reading(NamedTuple):
    """What a line crop reads as: its text, its confidence (mean probability of the characters the
    text is made of) and its words, left to right."""

    text: str
    confidence: float
    words: tuple[WordSpan, ...] = ()


def padded_width(width: int, min_width: int, step: int) -> int:
    """The width a crop is padded to: its own width rounded up to ``step``, at least ``min_width``."""
    return max(min_width, -(-width // step) * step)


def plan_buckets(
    widths: Sequence[int],
    batch_size: int,
    max_batch_pixels: int,
    width_step: int,
    height: int,
    min_width: int = 320,
) -> list[list[int]]:
    """Group crop indices into batches of crops with the same padded width.

    A crop's padded width depends on its own width only (:func:`padded_width`),
    so its recognition does not depend on what else is in the batch: the same
    page reads the same in any runner and any batch. Padding is at most
    ``width_step - 1`` pixels.

    Args:
        widths: resized width of every crop at the model height.
        batch_size: most crops per batch.
        max_batch_pixels: most padded pixels (count x height x width) per batch.
        width_step: padded widths are multiples of this.
        height: model input height.
        min_width: narrowest padded width (short crops are padded up to it).

    Returns:
        Lists of indices into ``widths``; every index appears exactly once.
    """
    classes: dict[int, list[int]] = {}
    for idx in np.argsort(np.asarray(widths), kind="stable").tolist():
        classes.setdefault(padded_width(widths[idx], min_width, width_step), []).append(idx)
    batches: list[list[int]] = []
    for width, members in classes.items():
        per_batch = max(1, min(batch_size, max_batch_pixels // (height * width)))
        batches.extend(members[i : i + per_batch] for i in range(0, len(members), per_batch))
    return batches


#: Unicode ranges of the ``latin`` charset preset: Basic Latin, Latin-1, Latin
#: Extended-A/B and Additional (accented letters, the long s), general
#: punctuation, currency and letterlike symbols, arrows and mathematical
#: operators (the symbols invoices and forms print).
LATIN_RANGES = (
    (0x20, 0x7E), (0xA0, 0x24F), (0x1E00, 0x1EFF), (0x2010, 0x205E), (0x20A0, 0x20C0),
    (0x2100, 0x214F), (0x2190, 0x21FF), (0x2200, 0x22FF),
)

CHARSETS = ("all", "latin", "ascii")


def in_charset(char: str, charset: str) -> bool:
    """Whether ``recognition.charset`` ``charset`` lets decoding emit ``char``."""
    if charset == "all":
        return True
    if len(char) != 1:
        return False
    code = ord(char)
    if charset == "ascii":
        return 0x20 <= code <= 0x7E
    return any(lo <= code <= hi for lo, hi in LATIN_RANGES)


#: Fewest adjacent non-space character pairs a line needs for gap-based spaces (``space_gap``).
SPACE_GAP_MIN_PAIRS = 3
#: Narrowest blank gap, in model frames (8 input pixels at height 48), read as a space.
SPACE_GAP_MIN_FRAMES = 2


class CTCDecoder:
    """Greedy CTC decoding with the charset stored in the model.

    Class 0 is the CTC blank; classes 1..N are the charset lines; the last class
    is a space (PP-OCR's ``use_space_char``). With a restricted ``charset``
    (``latin`` or ``ascii``) the classes outside it are never emitted: at each
    step the best allowed class wins, so a noisy Latin glyph is not read as a
    CJK character the multilingual model also knows.
    """

    def __init__(
        self, charset: Sequence[str], allowed: str = "all", space_gap: float | None = None,
        space_prob: float | None = None, keep_unsure_words: bool = False,
    ):
        if allowed not in CHARSETS:
            raise ValueError(f"unknown charset {allowed!r}; choose one of {', '.join(CHARSETS)}")
        self.characters = np.array(["", *charset, " "], dtype=object)
        self.space = len(self.characters) - 1
        mask = np.array([True] + [in_charset(c, allowed) for c in self.characters[1:]])
        self.disallowed = None if mask.all() else np.flatnonzero(~mask)
        self._kept = np.flatnonzero(mask)
        self.space_gap = space_gap if space_gap and space_gap > 0 else None
        self.space_prob = space_prob if space_prob and space_prob > 0 else None
        self.keep_unsure_words = keep_unsure_words

    @classmethod
    def from_metadata(
        cls,
        metadata: dict[str, str],
        allowed: str = "all",
        space_gap: float | None = None,
        space_prob: float | None = None,
        keep_unsure_words: bool = False,
    ) -> CTCDecoder:
        chars = metadata.get("character")
        if not chars:
            raise ModelError("recognition model has no 'character' metadata: cannot decode its output")
        return cls(chars.splitlines(), allowed, space_gap, space_prob, keep_unsure_words)

    def kept_classes(self) -> list[int] | None:
        """The classes this decoder may emit (blank first, the allowed characters, space last),
        or None when it may emit every class."""
        return None if self.disallowed is None else self._kept.tolist()

    def restricted(self, classes: Sequence[int]) -> CTCDecoder:
        """A decoder for a model whose head outputs only ``classes`` of this one's, in that order
        (see :func:`pipeline.models.engine.select_classes`); they must start with the blank and end
        with the space."""
        classes = list(classes)
        if len(classes) < 2 or classes[0] != 0 or classes[-1] != self.space:
            raise ValueError("kept classes must start with the blank (0) and end with the space")
        return CTCDecoder(list(self.characters[classes[1:-1]]), "all", self.space_gap, self.space_prob,
                          self.keep_unsure_words)

    def _gap_spaces(self, row: np.ndarray, idx: np.ndarray, space_p: np.ndarray) -> np.ndarray:
        """Positions (into the emitted classes ``row[idx]``) after which a space the model did not emit goes.

        The gap after an emitted character is the run of blank frames until the
        next one. With ``space_prob``, a gap in which the space class reaches
        that probability (blank won the argmax, space came close) is a space.
        With ``space_gap``, a gap wider than ``space_gap`` x the line's median
        gap between non-space characters (and at least
        :data:`SPACE_GAP_MIN_FRAMES`) is a space; lines with fewer than
        :data:`SPACE_GAP_MIN_PAIRS` such pairs have no reliable median.
        """
        starts = np.r_[0, np.flatnonzero(row[1:] != row[:-1]) + 1]
        ends = np.r_[starts[1:], len(row)] - 1
        run_end = ends[np.searchsorted(starts, idx)]
        gaps = idx[1:] - run_end[:-1] - 1
        cls = row[idx]
        pairs = (cls[:-1] != self.space) & (cls[1:] != self.space)
        insert = np.zeros(len(gaps), bool)
        if self.space_prob is not None:
            for k in np.flatnonzero(pairs & (gaps > 0)):
                insert[k] = space_p[run_end[k] + 1 : idx[k + 1]].max() >= self.space_prob
        if self.space_gap is not None and pairs.sum() >= SPACE_GAP_MIN_PAIRS:
            ref = max(float(np.median(gaps[pairs])), 1.0)
            insert |= pairs & (gaps > self.space_gap * ref) & (gaps >= SPACE_GAP_MIN_FRAMES)
        return np.flatnonzero(insert)

    def __call__(
        self, probs: np.ndarray, min_word_prob: float | None = None, lexicon: Lexicon | None = None
    ) -> list[Reading]:
        """Decode (N, T, C) class probabilities into a :class:`Reading` per row.

        Confidence is the mean probability of the emitted characters (0.0 for an empty string).
        ``min_word_prob`` and ``lexicon`` are :meth:`decode_best`'s (the alternatives are the
        :data:`ALTERNATIVES` next-best classes of each frame).
        """
        if probs.ndim != 3 or probs.shape[2] != len(self.characters):
            raise ValueError(
                f"expected (N, T, {len(self.characters)}) probabilities, got shape {probs.shape}: "
                "charset and model do not match"
            )
        if self.disallowed is not None:
            probs = probs.copy()
            probs[:, :, self.disallowed] = 0.0
        best = probs.argmax(axis=2)
        best_p = np.take_along_axis(probs, best[..., None], axis=2)[..., 0]
        alternatives = None
        if lexicon is not None:
            order = np.argsort(-probs, axis=2, kind="stable")[:, :, 1 : ALTERNATIVES + 1]
            alternatives = (order, np.take_along_axis(probs, order, axis=2))
        return self.decode_best(best, best_p, probs[:, :, self.space], min_word_prob, alternatives, lexicon)

    def decode_best(
        self,
        best: np.ndarray,
        best_p: np.ndarray,
        space_p: np.ndarray,
        min_word_prob: float | None = None,
        alternatives: tuple[np.ndarray, np.ndarray] | None = None,
        lexicon: Lexicon | None = None,
    ) -> list[Reading]:
        """Decode each frame's best class, its probability and the space class's probability, all (N, T),
        into a :class:`Reading` per row: what :meth:`__call__` reads of the full probabilities, and what
        an engine built with ``best_class`` returns (:func:`~pipeline.models.engine.append_best_class`).

        The best classes must already respect the charset (a cut head, or :meth:`__call__`'s mask).

        With ``lexicon`` and ``alternatives`` (each frame's next-best classes and their
        probabilities, two (N, T, A) arrays), a word not in the lexicon that one of its
        characters' next-best readings (at least the lexicon's ``min_prob``) turns into a word
        is read as that word (:meth:`~pipeline.models.lexicon.Lexicon.correct`).

        With ``min_word_prob``, a word (characters between spaces) with a character read at a lower
        probability is dropped from the text; the words left are joined by single spaces and the
        confidence is the mean over their characters. With ``keep_unsure_words`` the dropped words stay
        in the reading's words, marked ``in_text=False``. A row with every word dropped decodes as
        ``("", 0.0)`` (no words); a row that neither option changes decodes as it does without them.

        Each reading's words (what is left between spaces) span, in frames, from their first
        character's first frame to their last character's last frame plus one.
        """
        if not (best.ndim == 2 and best.shape == best_p.shape == space_p.shape):
            raise ValueError(f"expected three (N, T) arrays, got {best.shape}, {best_p.shape}, {space_p.shape}")
        if best.size and (best.min() < 0 or best.max() >= len(self.characters)):
            raise ValueError(f"class index out of range for a {len(self.characters)}-class decoder: "
                             "charset and model do not match")
        if lexicon is not None and alternatives is not None and alternatives[0].shape[:2] != best.shape:
            raise ValueError(f"alternatives of shape {alternatives[0].shape} do not match {best.shape}")
        keep = best != 0
        keep[:, 1:] &= best[:, 1:] != best[:, :-1]
        results = []
        for r, (row, mask, p, row_space_p) in enumerate(zip(best, keep, best_p, space_p)):
            idx = row[mask]
            if idx.size == 0:
                results.append(Reading("", 0.0))
                continue
            chars = list(self.characters[idx])
            probs = list(p[mask])
            starts = np.flatnonzero(mask)
            # the last frame of each emitted character's run of frames
            run_starts = np.r_[0, np.flatnonzero(row[1:] != row[:-1]) + 1]
            run_ends = np.r_[run_starts[1:], len(row)] - 1
            frames: list[int | None] = [int(f) for f in starts]
            ends: list[int | None] = [int(e) for e in run_ends[np.searchsorted(run_starts, starts)]]
            if (self.space_gap is not None or self.space_prob is not None) and idx.size > 1:
                for k in self._gap_spaces(row, starts, row_space_p)[::-1]:
                    chars.insert(int(k) + 1, " ")
                    probs.insert(int(k) + 1, 1.0)
                    frames.insert(int(k) + 1, None)
                    ends.insert(int(k) + 1, None)
            corrected = False
            if lexicon is not None and alternatives is not None:
                corrected = self._correct(chars, probs, frames, alternatives[0][r], alternatives[1][r], lexicon)
            words = _words(chars, probs, frames, ends)
            if min_word_prob:
                sure = [min(q for _, q, _, _ in w) >= min_word_prob for w in words]
                if not all(sure):
                    kept = [w for w, ok in zip(words, sure) if ok]
                    spans = (_spans(words, sure) if self.keep_unsure_words else _spans(kept)) if kept else ()
                    results.append(Reading(" ".join("".join(c for c, *_ in w) for w in kept),
                                           float(np.mean([q for w in kept for _, q, _, _ in w])) if kept else 0.0,
                                           spans))
                    continue
            if corrected:
                confidence = float(np.mean([q for q, f in zip(probs, frames) if f is not None]))
            else:
                confidence = float(p[mask].mean())
            results.append(Reading("".join(chars), confidence, _spans(words)))
        return results

    def _correct(self, chars: list[str], probs: list[float], frames: list[int | None], alt_class: np.ndarray,
                 alt_p: np.ndarray, lexicon: Lexicon) -> bool:
        """Correct each word of one decoded row in place with the lexicon; True when one changed."""
        changed = False
        start = 0
        for end in [i for i, c in enumerate(chars) if c == " "] + [len(chars)]:
            if end > start and lexicon.wants("".join(chars[start:end])):
                alts = []
                for f in frames[start:end]:
                    alts.append([] if f is None else [
                        (self.characters[c], float(q)) for c, q in zip(alt_class[f], alt_p[f])
                        if q >= lexicon.min_prob and 0 < c < self.space
                    ])
                fixed = lexicon.correct(chars[start:end], probs[start:end], alts)
                if fixed is not None:
                    chars[start:end], probs[start:end] = fixed
                    changed = True
            start = end + 1
        return changed


_Char = tuple[str, float, int, int]


def _words(chars: list[str], probs: list[float], frames: list[int | None],
           ends: list[int | None]) -> list[list[_Char]]:
    """The words of a decoded line: runs of characters between spaces, each character with its
    probability and its first and last frame."""
    words: list[list[_Char]] = [[]]
    for c, q, f, e in zip(chars, probs, frames, ends):
        if c == " ":
            if words[-1]:
                words.append([])
        else:
            words[-1].append((c, float(q), f, e))
    return [w for w in words if w]


def _spans(words: list[list[_Char]], in_text: Sequence[bool] | None = None) -> tuple[WordSpan, ...]:
    flags = in_text if in_text is not None else [True] * len(words)
    return tuple(
        WordSpan("".join(c for c, *_ in w), float(np.mean([q for _, q, _, _ in w])), float(w[0][2]),
                 float(w[-1][3] + 1), bool(ok))
        for w, ok in zip(words, flags)
    )


def charset_classes(model: ModelFile, charset: str) -> list[int] | None:
    """The recognition model's output classes that ``recognition.charset`` lets decoding emit
    (blank, allowed characters, space), or None for ``all``.

    Passed to :func:`~pipeline.models.engine.create_engine`, the model's head
    then computes only these: with ``latin`` 887 of 18,710 classes, which makes
    recognition faster (see docs/benchmarks.md). Their softmax is taken over the
    kept classes alone, so confidences are those of the restricted reading.
    """
    if charset == "all":
        return None
    return CTCDecoder.from_metadata(model_metadata(model), charset).kept_classes()


def resize_to_height(crop: np.ndarray, height: int) -> np.ndarray:
    """A line crop scaled to the model's height, its aspect kept (at most :data:`MAX_WIDTH` wide)."""
    h, w = crop.shape[:2]
    new_w = int(min(MAX_WIDTH, max(1, math.ceil(w * height / h))))
    return cv2.resize(crop, (new_w, height), interpolation=cv2.INTER_AREA if h > height else cv2.INTER_LINEAR)


def batch_tensor(crops: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """Normalised crops as one ``(N, 3, height, width)`` float32 batch, each padded on the right."""
    # Padding stays 0 in normalised space, as PP-OCR pads during training.
    batch = np.zeros((len(crops), 3, height, width), np.float32)
    for i, crop in enumerate(crops):
        batch[i, :, :, : crop.shape[1]] = crop.transpose(2, 0, 1)
    return batch


def normalise(crop: np.ndarray) -> np.ndarray:
    """Pixel values 0..255 to the model's -1..1, as float32."""
    out = crop.astype(np.float32)
    out *= 2.0 / 255.0
    out -= 1.0
    return out


class TextRecognizer:
    """Line crops to ``(text, confidence)``, batched and bucketed by width."""

    def __init__(self, engine: Engine, config: RecognitionConfig):
        self.engine = engine
        self.config = config
        decoder = CTCDecoder.from_metadata(engine.metadata(), config.charset, config.space_gap, config.space_prob,
                                           config.low_confidence_words == "keep")
        # An engine built with charset_classes() computes only the classes the charset allows.
        classes = getattr(engine, "classes", None)
        self.decode = decoder if classes is None else decoder.restricted(classes)
        # An engine built with best_class returns each frame's best class, not every class's probability.
        self.best_class = bool(getattr(engine, "best_class", False))
        if self.best_class and self.decode.disallowed is not None:
            raise ModelError(
                f"recognition.charset={config.charset} needs the engine's head cut to the charset "
                "(create_engine(..., classes=charset_classes(...))) when it returns best classes"
            )
        try:
            self.lexicon = load_lexicon(config.lexicon, config.lexicon_min_prob)
        except ValueError as e:
            raise ModelError(f"recognition.lexicon: {e}") from e
        if self.lexicon is not None and self.best_class and not getattr(engine, "alternatives", 0):
            raise ModelError(
                "recognition.lexicon needs the engine to return each frame's next-best classes "
                "(create_engine(..., best_class=True, alternatives=ALTERNATIVES))"
            )

    def __call__(self, crops: Sequence[np.ndarray], word_steps: bool = False) -> list[Reading]:
        """A :class:`Reading` per crop, its words' ``start`` and ``end`` in pixels of the crop.

        With ``word_steps``, the readings go through the word-level steps the config asks for
        (:meth:`CTCDecoder.decode_best`): words outside ``recognition.lexicon`` that one
        next-best character makes a word are corrected, then words with a character read
        below ``recognition.min_word_confidence`` are left out. Without it, each crop's reading
        is the model's alone (the dewarp step's orientation check compares those).
        """
        if not crops:
            return []
        height = self.config.image_height
        resized = [normalise(resize_to_height(c, height)) for c in crops]
        batches = plan_buckets(
            [r.shape[1] for r in resized],
            # On a GPU (engine.batch_by_pixels) batches are sized by max_batch_pixels alone.
            len(resized) if getattr(self.engine, "batch_by_pixels", False) else self.config.batch_size,
            self.config.max_batch_pixels,
            self.config.width_step,
            height,
            self.config.min_width,
        )
        min_word = self.config.min_word_confidence if word_steps else None
        lexicon = self.lexicon if word_steps else None
        results: list[Reading] = [Reading("", 0.0)] * len(crops)
        for batch in batches:
            width = padded_width(resized[batch[0]].shape[1], self.config.min_width, self.config.width_step)
            out = self.engine(batch_tensor([resized[i] for i in batch], height, width))
            if self.best_class:
                best, best_p, space_p, *alternatives = out
                frames = best.shape[1]
                decoded = self.decode.decode_best(
                    best, best_p, space_p, min_word, tuple(alternatives) if alternatives and lexicon else None, lexicon
                )
            else:
                frames = out.shape[1]
                decoded = self.decode(out, min_word, lexicon)
            for i, reading in zip(batch, decoded):
                # frame -> input pixels of the padded batch -> pixels of the crop as it came in
                scale = width / max(frames, 1) * crops[i].shape[1] / resized[i].shape[1]
                words = tuple(w._replace(start=w.start * scale, end=w.end * scale) for w in reading.words)
                results[i] = reading._replace(words=words)
        return results


class LineClassifier:
    """PP-OCR's 0/180 degree line classifier; flips crops it finds upside down."""

    HEIGHT, WIDTH = 48, 192

    def __init__(self, engine: Engine, config: ClassifierConfig):
        self.engine = engine
        self.thresh = config.thresh

    def upside_down(self, crops: list[np.ndarray]) -> np.ndarray:
        """The model's probability that each line crop is upside down."""
        if not crops:
            return np.zeros(0, np.float32)
        batch = np.zeros((len(crops), 3, self.HEIGHT, self.WIDTH), np.float32)
        for i, crop in enumerate(crops):
            h, w = crop.shape[:2]
            new_w = min(self.WIDTH, max(1, math.ceil(w * self.HEIGHT / h)))
            batch[i, :, :, :new_w] = normalise(cv2.resize(crop, (new_w, self.HEIGHT))).transpose(2, 0, 1)
        return np.asarray(self.engine(batch))[:, 1]

    def orient(self, crops: list[np.ndarray]) -> tuple[list[np.ndarray], list[bool]]:
        """The crops with those it finds upside down turned by 180 degrees, and which were turned."""
        out = list(crops)
        turned = [False] * len(crops)
        for i, p in enumerate(self.upside_down(crops)):
            if p > 0.5 and p >= self.thresh:
                out[i] = np.ascontiguousarray(crops[i][::-1, ::-1])
                turned[i] = True
        return out, turned

    def __call__(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        return self.orient(crops)[0]
