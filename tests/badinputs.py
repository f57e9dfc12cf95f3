"""Builders for bad and awkward inputs, as bytes, for decode and pipeline tests.

The builders live in :mod:`measure.hostile` (which also lists them as the
hostile-input corpus of ``folio synth --hostile``); this module re-exports them
under the names the tests have always used.
"""

from __future__ import annotations

from measure.hostile import *  # noqa: F403 (re-export)
from measure.hostile import __all__ as _hostile_all

__all__ = [name for name in _hostile_all if name not in ("HostileCase", "CASES", "generate")]
