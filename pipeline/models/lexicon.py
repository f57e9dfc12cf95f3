"""Word lists, and the one-character correction recognition makes with them.

A recognition model reads each character on its own; where a glyph is smudged
or broken it picks the wrong one (``Maruscript``, ``COMPOUNO``, ``OATE``) while
the right one is among its next-best classes for that frame. When a word is
not in the lexicon and replacing one character by one of those near-misses
turns it into a word that is, Folio reads that word (of several, the one the
model found most likely): a greedy reader with a dictionary, as Tesseract
reads with its word lists.

The word lists are the word-frequency lists that ship inside the
``pyspellchecker`` wheel (MIT licence), read from the installed package:
nothing is downloaded at run time.
"""

from __future__ import annotations

import functools
import gzip
import json
import re
from collections.abc import Sequence

from pipeline.config import LEXICON_LANGUAGES as LANGUAGES
from pipeline.config import parse_languages
from pipeline.errors import ModelError
from pipeline.models.zoo import package_folder

__all__ = ["LANGUAGES", "Lexicon", "load_lexicon", "parse_languages"]

#: A word's leading and trailing punctuation, kept as it is around the corrected core.
_EDGES = re.compile(r"^(\W*)(.*?)(\W*)$", re.DOTALL)

#: Words shorter than this are left alone: too many short strings are words.
MIN_LENGTH = 3


@functools.cache
def _words(lang: str) -> frozenset[str]:
    path = package_folder(
        "spellchecker",
        "resources",
        "recognition.lexicon needs the pyspellchecker package, which ships the word lists: "
        "`pip install pyspellchecker`, or set recognition.lexicon to null",
    ) / f"{lang}.json.gz"
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            return frozenset(word.lower() for word in json.load(fh))
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read the {lang} word list {path}: {e}") from e


class Lexicon:
    """The union of some languages' word lists, compared case-insensitively.

    ``min_prob``: the least probability a next-best reading needs to be tried.
    """

    def __init__(self, languages: Sequence[str], words: frozenset[str], min_prob: float = 0.05):
        self.languages = tuple(languages)
        self.min_prob = float(min_prob)
        self._words = words

    def __contains__(self, word: str) -> bool:
        return word.lower() in self._words

    def wants(self, word: str) -> bool:
        """Whether :meth:`correct` would look for a replacement in ``word``: its core (without
        leading and trailing punctuation) has :data:`MIN_LENGTH` characters or more, no digit,
        and is not a word."""
        core = _EDGES.match(word).group(2)
        return len(core) >= MIN_LENGTH and not any(c.isdigit() for c in core) and core not in self

    def correct(
        self, chars: Sequence[str], probs: Sequence[float], alternatives: Sequence[Sequence[tuple[str, float]]]
    ) -> tuple[list[str], list[float]] | None:
        """One word with one character replaced by a near-miss of the model's, if that makes it a word.

        Args:
            chars: the word's characters as read (no spaces).
            probs: the probability the model gave each.
            alternatives: per character, the model's next-best ``(character, probability)``
                readings of that frame.

        Returns:
            ``(chars, probs)`` of the corrected word, or None when the word is left as it
            is: it is a word already, it holds a digit, its core (without leading and
            trailing punctuation) is shorter than :data:`MIN_LENGTH`, or no single
            replacement makes a word. Of several replacements that do, the one the model
            found most likely against the character it replaces wins. The replaced
            character's probability becomes the sum of both readings': the model's
            belief that the glyph is one of the two, between which the lexicon chose.
        """
        word = "".join(chars)
        if not self.wants(word):
            return None
        lead, core, _ = _EDGES.match(word).groups()
        start = len(lead)
        best: tuple[float, int, str, float] | None = None
        for j in range(start, start + len(core)):
            for alt, p in alternatives[j]:
                if alt == chars[j] or not alt.strip():
                    continue
                candidate = core[: j - start] + alt + core[j - start + 1 :]
                score = p / max(probs[j], 1e-9)
                if candidate in self and (best is None or score > best[0]):
                    best = (score, j, alt, p)
        if best is None:
            return None
        _, j, alt, p = best
        out_chars, out_probs = list(chars), list(probs)
        out_chars[j] = alt
        out_probs[j] = min(1.0, float(probs[j]) + float(p))
        return out_chars, out_probs


def load_lexicon(value: str | None, min_prob: float = 0.05) -> Lexicon | None:
    """The lexicon ``recognition.lexicon`` names (``"en"``, ``"en+fr"``), or None for none;
    ``min_prob`` is ``recognition.lexicon_min_prob``.

    Raises:
        ModelError: pyspellchecker is not installed, or a word list cannot be read.
        ValueError: a language with no word list.
    """
    langs = parse_languages(value)
    if not langs:
        return None
    return Lexicon(langs, _union(langs), min_prob)


@functools.cache
def _union(langs: tuple[str, ...]) -> frozenset[str]:
    """One set per combination of languages, shared by every recognizer a process builds."""
    return _words(langs[0]) if len(langs) == 1 else frozenset().union(*(_words(lang) for lang in langs))
