"""Tesseract as an alternative engine (``engine.name: tesseract``), for CPU-only fleets: the
``tesseract`` command line program (Debian ``tesseract-ocr``), run on one page at a time.

:class:`TesseractReader` sends a page as a PNG on stdin and reads TSV from
stdout (there is no pytesseract dependency); :func:`parse_tsv` turns it into
lines with their words. :func:`tesseract_model_info` says which program and
language data a run uses. The stage around it is
:class:`pipeline.stages.tesseract.TesseractStage`.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from pipeline.config import FolioConfig, TesseractConfig
from pipeline.errors import ModelError, OcrError
from pipeline.models.zoo import ModelFile, files_sha256

__all__ = ["INSTALL_HINT", "TsvLine", "TesseractReader", "parse_tsv", "tesseract_model_info"]

log = logging.getLogger(__name__)

#: What to do when the program is missing; part of every such error message.
INSTALL_HINT = "install it with the Debian packages tesseract-ocr tesseract-ocr-eng (apt-get install -y tesseract-ocr tesseract-ocr-eng)"

#: Seconds allowed for ``tesseract --version`` and ``--list-langs``.
_PROBE_TIMEOUT_S = 30.0

#: The ``--dpi`` values tesseract accepts; outside them it estimates the resolution itself.
_DPI_RANGE = (70, 2400)

_probe_cache: dict[tuple[str, str | None], tuple[str, Path | None]] = {}
_cache_lock = threading.Lock()


def _find_tesseract() -> str:
    exe = shutil.which("tesseract")
    if exe is None:
        raise ModelError(f"the tesseract program is not on PATH; {INSTALL_HINT}")
    return exe


def _probe(exe: str) -> tuple[str, Path | None]:
    """Tesseract's version and the tessdata folder it reads by default (None when it does not say)."""
    key = (exe, os.environ.get("TESSDATA_PREFIX"))
    with _cache_lock:
        if key in _probe_cache:
            return _probe_cache[key]
    try:
        version_run = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, errors="replace", timeout=_PROBE_TIMEOUT_S
        )
        langs_run = subprocess.run(
            [exe, "--list-langs"], capture_output=True, text=True, errors="replace", timeout=_PROBE_TIMEOUT_S
        )
    except (OSError, subprocess.SubprocessError) as e:
        raise ModelError(f"cannot run {exe}: {e}") from e
    # Tesseract 5 writes both to stdout, 4 wrote the version to stderr.
    match = re.search(r"tesseract\s+v?(\S+)", version_run.stdout + version_run.stderr)
    if version_run.returncode != 0 or match is None:
        raise ModelError(f"{exe} --version failed (status {version_run.returncode}): {_tail(version_run.stderr)}")
    folder = re.search(r'"([^"]+)"', langs_run.stdout + langs_run.stderr)
    tessdata = Path(folder.group(1)) if folder else None
    result = (match.group(1), tessdata)
    with _cache_lock:
        _probe_cache[key] = result
    return result


def _default_tessdata() -> Path | None:
    prefix = os.environ.get("TESSDATA_PREFIX")
    candidates = [Path(prefix)] if prefix else []
    candidates += sorted(Path("/usr/share/tesseract-ocr").glob("*/tessdata"), reverse=True)
    return next((c for c in candidates if c.is_dir()), None)


def tesseract_model_info(config: FolioConfig) -> dict[str, ModelFile]:
    """What the runner records as the models of a tesseract run, without starting a stage.

    Returns:
        ``{"tesseract": ModelFile}`` whose ``name`` is ``tesseract <version> <lang>``,
        ``path`` the tessdata folder and ``sha256`` the digest of the language's
        traineddata file (of the files one after the other, in ``lang`` order,
        when ``lang`` names several).

    Raises:
        ModelError: tesseract is not installed, or a language has no traineddata file.
    """
    lang = config.tesseract.lang
    version, tessdata = _probe(_find_tesseract())
    tessdata = tessdata or _default_tessdata()
    if tessdata is None:
        raise ModelError(f"cannot find tesseract's tessdata folder; set TESSDATA_PREFIX or {INSTALL_HINT}")
    files = []
    for code in lang.split("+"):
        path = tessdata / f"{code}.traineddata"
        if not path.is_file():
            raise ModelError(
                f"tesseract has no traineddata for language {code!r} in {tessdata}; "
                f"install the Debian package tesseract-ocr-{code.lower().replace('_', '-')} "
                "or change tesseract.lang"
            )
        files.append(path)
    return {"tesseract": ModelFile(name=f"tesseract {version} {lang}", path=tessdata, sha256=files_sha256(*files))}


class TsvLine(NamedTuple):
    """One of tesseract's lines: the box around its words (float32 (4, 2) corners, clockwise from
    the top-left), its text, its confidence (0..1) and its words as ``(text, confidence, box)``."""

    quad: np.ndarray
    text: str
    confidence: float
    words: tuple[tuple[str, float, np.ndarray], ...]


def _box(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array(((x0, y0), (x1, y0), (x1, y1), (x0, y1)), np.float32)


def parse_tsv(tsv: str, min_confidence: float = 0.0) -> list[TsvLine]:
    """Turn tesseract's TSV output into lines.

    Words (level 5 rows) are grouped by (page, block, paragraph, line). A line's
    polygon is the box around its words, in the pixels of the image tesseract
    read; its text is the words joined by spaces and its confidence the mean
    word confidence scaled to 0..1. Words below ``min_confidence`` and lines
    left without words are dropped.

    Args:
        tsv: what ``tesseract ... tsv`` wrote, header row included.
        min_confidence: word confidence floor, 0..1.

    Returns:
        The lines in tesseract's order.

    Raises:
        OcrError: a word row is not made of numbers where TSV has them.
    """
    lines: dict[tuple[int, int, int, int], list[tuple[int, int, int, int, float, str]]] = {}
    for number, row in enumerate(tsv.splitlines(), start=1):
        fields = row.split("\t", 11)
        if fields[0] != "5":  # page, block, paragraph and line rows, the header, blank lines
            continue
        try:
            page, block, par, line = (int(v) for v in fields[1:5])
            left, top, width, height = (int(v) for v in fields[6:10])
            conf = float(fields[10])
        except (ValueError, IndexError) as e:
            raise OcrError(f"tesseract wrote a TSV word row that cannot be parsed (line {number}): {row!r}") from e
        text = fields[11].strip() if len(fields) > 11 else ""
        if not text or conf < 0 or conf / 100 < min_confidence:
            continue
        lines.setdefault((page, block, par, line), []).append((left, top, left + width, top + height, conf, text))
    out = []
    for words in lines.values():
        x0, y0 = min(w[0] for w in words), min(w[1] for w in words)
        x1, y1 = max(w[2] for w in words), max(w[3] for w in words)
        out.append(TsvLine(
            _box(x0, y0, x1, y1), " ".join(w[5] for w in words),
            min(max(float(np.mean([w[4] for w in words])) / 100, 0.0), 1.0),
            tuple((w[5], min(max(w[4] / 100, 0.0), 1.0), _box(*w[:4])) for w in words),
        ))
    return out


def _tail(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else "..." + text[-limit:]


class TesseractReader:
    """Runs the ``tesseract`` program on one page at a time, with ``OMP_THREAD_LIMIT`` from
    ``tesseract.threads`` and a time limit of ``tesseract.timeout_s``.

    ``models`` is :func:`tesseract_model_info`'s result (empty when tesseract is
    not usable: every page then fails saying what to install).
    """

    def __init__(self, settings: TesseractConfig, models: dict[str, ModelFile]):
        self.settings = settings
        self.models = models

    def read(self, image: np.ndarray, dpi=None) -> list[TsvLine]:
        """The lines tesseract reads on an RGB page.

        Raises:
            OcrError: the program is missing, fails, is killed or runs out of time.
        """
        return parse_tsv(self._run(image, dpi), self.settings.min_confidence)

    def _command(self, exe: str, dpi) -> list[str]:
        s = self.settings
        cmd = [exe, "stdin", "stdout", "-l", s.lang, "--psm", str(s.psm), "--oem", str(s.oem)]
        if "tesseract" in self.models:
            # The folder whose traineddata was hashed, so the recorded sha256 is what ran.
            cmd += ["--tessdata-dir", str(self.models["tesseract"].path)]
        try:
            dpi = float(dpi) if dpi is not None else math.nan
        except (TypeError, ValueError):
            dpi = math.nan
        if _DPI_RANGE[0] <= dpi <= _DPI_RANGE[1]:  # False for NaN
            cmd += ["--dpi", str(round(dpi))]
        return cmd + ["tsv"]

    def _run(self, image: np.ndarray, dpi) -> str:
        exe = shutil.which("tesseract")
        if exe is None:
            raise OcrError(f"the tesseract program is not on PATH; {INSTALL_HINT}")
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
        env = dict(os.environ, OMP_THREAD_LIMIT=str(self.settings.threads))
        timeout = self.settings.timeout_s
        try:
            done = subprocess.run(
                self._command(exe, dpi), input=buffer.getvalue(), capture_output=True, env=env, timeout=timeout
            )
        except subprocess.TimeoutExpired as e:
            raise OcrError(f"tesseract took longer than {timeout:g} s on the page (tesseract.timeout_s)") from e
        except FileNotFoundError as e:
            raise OcrError(f"cannot run {exe}: {e}; {INSTALL_HINT}") from e
        except OSError as e:
            raise OcrError(f"cannot run {exe}: {e}") from e
        stderr = done.stderr.decode("utf-8", errors="replace")
        if done.returncode < 0:  # the OOM killer, usually
            try:
                name = signal.Signals(-done.returncode).name
            except ValueError:
                name = str(-done.returncode)
            raise OcrError(f"tesseract was killed by signal {name}: {_tail(stderr)}")
        if done.returncode != 0:
            message = f"tesseract exited with status {done.returncode}: {_tail(stderr)}"
            if "Failed loading language" in stderr or "couldn't load any languages" in stderr:
                message += (
                    f" (tesseract.lang is {self.settings.lang!r}; install its traineddata, on Debian "
                    "the package tesseract-ocr-<lang>)"
                )
            raise OcrError(message)
        return done.stdout.decode("utf-8", errors="replace")
