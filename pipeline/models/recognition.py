"""Text recognition with a CTC model: line crops in, strings and confidences out.

Crops from every page of a batch go through one :class:`TextRecognizer` call.
Each crop is padded to its own width rounded up to ``width_step`` and batched
with crops of the same padded width, so padding wastes little compute and a
line reads the same whatever else is in its batch; batches are capped by count
and by padded pixels.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import cv2
import numpy as np

from pipeline.config import ClassifierConfig, RecognitionConfig
from pipeline.errors import ModelError
from pipeline.models.engine import Engine
from pipeline.models.lexicon import Lexicon, load_lexicon
from pipeline.models.zoo import ModelFile, model_metadata

__all__ = ["ALTERNATIVES", "CHARSETS", "CTCDecoder", "charset_classes", "crop_quad", "split_at_gaps", "padded_width", "plan_buckets", "TextRecognizer", "LineClassifier"]

log = logging.getLogger(__name__)

#: Widest single crop (48 px high); longer lines are squeezed to fit.
MAX_WIDTH = 3200

#: Next-best classes per frame that lexicon correction may try (recognition.lexicon).
ALTERNATIVES = 4


def crop_quad(image: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """Straighten one quadrilateral of ``image`` into an upright rectangle.

    The output size follows the quad's longer edges; a crop that comes out much
    taller than wide is vertical text and is turned 90 degrees.
    """
    quad = np.asarray(quad, np.float32).reshape(4, 2)
    width = int(round(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[3] - quad[2]))))
    height = int(round(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2]))))
    width, height = max(width, 1), max(height, 1)
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    matrix = cv2.getPerspectiveTransform(quad, target)
    crop = cv2.warpPerspective(image, matrix, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    if height >= 1.5 * width:
        crop = np.ascontiguousarray(np.rot90(crop))
    return crop


def split_at_gaps(crop: np.ndarray, quad: np.ndarray, min_gap: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cut a straightened line crop where its ink has a gap wider than ``min_gap`` x its height.

    Detectors join fields that share a baseline (``Date: ____ 12-4-87`` on a
    form, columns of a table row); read as one line, the wide gap comes out as
    no space at all and the fields run together. Ink is measured in the middle
    band of the crop, so underlines and rules along the bottom do not bridge
    the gap. Normal word spaces (about half the line height) are far below the
    threshold.

    Args:
        crop: (h, w, 3) upright crop from :func:`crop_quad`.
        quad: the page quadrilateral it came from (clockwise from top-left).
        min_gap: gap width, in multiples of the crop height, that splits; 0 disables.

    Returns:
        ``(crop, quad)`` pieces, left to right; the input alone when nothing splits.
    """
    h, w = crop.shape[:2]
    if min_gap <= 0 or w < 3 * h or h < 8:
        return [(crop, quad)]
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    band = gray[h // 4 : h - h // 4]
    _, ink = cv2.threshold(band, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    cols = ink.sum(axis=0) > 0
    if not cols.any():
        return [(crop, quad)]
    gap = int(min_gap * h)
    # runs of empty columns between the first and last inked column
    first, last = int(np.argmax(cols)), int(w - 1 - np.argmax(cols[::-1]))
    cuts = []
    run_start = None
    for x in range(first, last + 1):
        if not cols[x]:
            if run_start is None:
                run_start = x
        elif run_start is not None:
            if x - run_start >= gap:
                cuts.append((run_start, x))
            run_start = None
    if not cuts:
        return [(crop, quad)]
    pad = max(2, h // 6)
    bounds = []
    start = max(0, first - pad)
    for a, b in cuts:
        bounds.append((start, min(w, a + pad)))
        start = max(0, b - pad)
    bounds.append((start, min(w, last + 1 + pad)))
    q = np.asarray(quad, np.float32).reshape(4, 2)
    pieces = []
    for x0, x1 in bounds:
        t0, t1 = x0 / w, x1 / w
        top0, top1 = q[0] + (q[1] - q[0]) * t0, q[0] + (q[1] - q[0]) * t1
        bot0, bot1 = q[3] + (q[2] - q[3]) * t0, q[3] + (q[2] - q[3]) * t1
        pieces.append((crop[:, x0:x1], np.stack([top0, top1, bot1, bot0])))
    return pieces


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


def _allowed(char: str, charset: str) -> bool:
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
        self, charset: Sequence[str], allowed: str = "all", space_gap: float | None = None, space_prob: float | None = None
    ):
        if allowed not in CHARSETS:
            raise ValueError(f"unknown charset {allowed!r}; choose one of {', '.join(CHARSETS)}")
        self.characters = np.array(["", *charset, " "], dtype=object)
        self.space = len(self.characters) - 1
        mask = np.array([True] + [_allowed(c, allowed) for c in self.characters[1:]])
        self.disallowed = None if mask.all() else np.flatnonzero(~mask)
        self._kept = np.flatnonzero(mask)
        self.space_gap = space_gap if space_gap and space_gap > 0 else None
        self.space_prob = space_prob if space_prob and space_prob > 0 else None

    @classmethod
    def from_metadata(
        cls,
        metadata: dict[str, str],
        allowed: str = "all",
        space_gap: float | None = None,
        space_prob: float | None = None,
    ) -> CTCDecoder:
        chars = metadata.get("character")
        if not chars:
            raise ModelError("recognition model has no 'character' metadata: cannot decode its output")
        return cls(chars.splitlines(), allowed, space_gap, space_prob)

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
        return CTCDecoder(list(self.characters[classes[1:-1]]), "all", self.space_gap, self.space_prob)

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
    ) -> list[tuple[str, float]]:
        """Decode (N, T, C) class probabilities into ``(text, confidence)`` per row.

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
    ) -> list[tuple[str, float]]:
        """Decode each frame's best class, its probability and the space class's probability, all (N, T),
        into ``(text, confidence)`` per row: what :meth:`__call__` reads of the full probabilities, and what
        an engine built with ``best_class`` returns (:func:`~pipeline.models.engine.append_best_class`).

        The best classes must already respect the charset (a cut head, or :meth:`__call__`'s mask).

        With ``lexicon`` and ``alternatives`` (each frame's next-best classes and their
        probabilities, two (N, T, A) arrays), a word not in the lexicon that one of its
        characters' next-best readings (at least the lexicon's ``min_prob``) turns into a word
        is read as that word (:meth:`~pipeline.models.lexicon.Lexicon.correct`).

        With ``min_word_prob``, a word (characters between spaces) with a character read at a lower
        probability is dropped; the words left are joined by single spaces and the confidence is the
        mean over their characters. A row with every word dropped decodes as ``("", 0.0)``; a row
        that neither option changes decodes as it does without them.
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
                results.append(("", 0.0))
                continue
            chars = list(self.characters[idx])
            probs = list(p[mask])
            frames: list[int | None] = list(np.flatnonzero(mask))
            if (self.space_gap is not None or self.space_prob is not None) and idx.size > 1:
                for k in self._gap_spaces(row, np.flatnonzero(mask), row_space_p)[::-1]:
                    chars.insert(int(k) + 1, " ")
                    probs.insert(int(k) + 1, 1.0)
                    frames.insert(int(k) + 1, None)
            corrected = False
            if lexicon is not None and alternatives is not None:
                corrected = self._correct(chars, probs, frames, alternatives[0][r], alternatives[1][r], lexicon)
            if min_word_prob:
                kept = _sure_words(chars, probs, min_word_prob)
                if kept is not None:
                    results.append((" ".join("".join(c for c, _ in w) for w in kept),
                                    float(np.mean([q for w in kept for _, q in w])) if kept else 0.0))
                    continue
            if corrected:
                results.append(("".join(chars), float(np.mean([q for q, f in zip(probs, frames) if f is not None]))))
            else:
                results.append(("".join(chars), float(p[mask].mean())))
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


def _sure_words(chars: list[str], probs: list[float], min_prob: float) -> list[list[tuple[str, float]]] | None:
    """The words of a decoded line (runs of characters between spaces, each character with its
    probability) whose every character reaches ``min_prob``; None when that is all of them."""
    words: list[list[tuple[str, float]]] = [[]]
    for c, q in zip(chars, probs):
        if c == " ":
            if words[-1]:
                words.append([])
        else:
            words[-1].append((c, float(q)))
    words = [w for w in words if w]
    sure = [w for w in words if min(q for _, q in w) >= min_prob]
    return None if len(sure) == len(words) else sure


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


def _resize_to_height(crop: np.ndarray, height: int) -> np.ndarray:
    h, w = crop.shape[:2]
    new_w = int(min(MAX_WIDTH, max(1, math.ceil(w * height / h))))
    return cv2.resize(crop, (new_w, height), interpolation=cv2.INTER_AREA if h > height else cv2.INTER_LINEAR)


def _batch_tensor(crops: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    # Padding stays 0 in normalised space, as PP-OCR pads during training.
    batch = np.zeros((len(crops), 3, height, width), np.float32)
    for i, crop in enumerate(crops):
        batch[i, :, :, : crop.shape[1]] = crop.transpose(2, 0, 1)
    return batch


def _normalise(crop: np.ndarray) -> np.ndarray:
    out = crop.astype(np.float32)
    out *= 2.0 / 255.0
    out -= 1.0
    return out


class TextRecognizer:
    """Line crops to ``(text, confidence)``, batched and bucketed by width."""

    def __init__(self, engine: Engine, config: RecognitionConfig):
        self.engine = engine
        self.config = config
        decoder = CTCDecoder.from_metadata(engine.metadata(), config.charset, config.space_gap, config.space_prob)
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

    def __call__(self, crops: Sequence[np.ndarray], words: bool = False) -> list[tuple[str, float]]:
        """``(text, confidence)`` per crop.

        With ``words``, the readings go through the word-level steps the config asks for
        (:meth:`CTCDecoder.decode_best`): words outside ``recognition.lexicon`` that one
        next-best character makes a word are corrected, then words with a character read
        below ``recognition.min_word_confidence`` are left out. Without it, each crop's reading
        is the model's alone (the dewarp step's orientation check compares those).
        """
        if not crops:
            return []
        height = self.config.image_height
        resized = [_normalise(_resize_to_height(c, height)) for c in crops]
        batches = plan_buckets(
            [r.shape[1] for r in resized],
            # On a GPU (engine.batch_by_pixels) batches are sized by max_batch_pixels alone.
            len(resized) if getattr(self.engine, "batch_by_pixels", False) else self.config.batch_size,
            self.config.max_batch_pixels,
            self.config.width_step,
            height,
            self.config.min_width,
        )
        min_word = self.config.min_word_confidence if words else None
        lexicon = self.lexicon if words else None
        results: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        for batch in batches:
            width = padded_width(resized[batch[0]].shape[1], self.config.min_width, self.config.width_step)
            out = self.engine(_batch_tensor([resized[i] for i in batch], height, width))
            if self.best_class:
                best, best_p, space_p, *alternatives = out
                decoded = self.decode.decode_best(
                    best, best_p, space_p, min_word, tuple(alternatives) if alternatives and lexicon else None, lexicon
                )
            else:
                decoded = self.decode(out, min_word, lexicon)
            for i, res in zip(batch, decoded):
                results[i] = res
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
            batch[i, :, :, :new_w] = _normalise(cv2.resize(crop, (new_w, self.HEIGHT))).transpose(2, 0, 1)
        return np.asarray(self.engine(batch))[:, 1]

    def __call__(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        out = list(crops)
        for i, p in enumerate(self.upside_down(crops)):
            if p > 0.5 and p >= self.thresh:
                out[i] = np.ascontiguousarray(crops[i][::-1, ::-1])
        return out
