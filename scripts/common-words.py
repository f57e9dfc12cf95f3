"""Write pipeline/io/data/common_words.txt.gz: the most frequent words of each language whose
word-frequency list ships in the pyspellchecker wheel (MIT licence).

Folio uses them to tell a PDF text layer that reads as words from one whose Unicode mapping is
wrong (pipeline.io.pdftext). Rerun it only to change the list; the file is versioned in the repo:

    .venv/bin/python scripts/common-words.py
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import spellchecker

PER_LANGUAGE = 3000
OUT = Path(__file__).resolve().parent.parent / "pipeline" / "io" / "data" / "common_words.txt.gz"


def main() -> None:
    resources = Path(spellchecker.__file__).parent / "resources"
    words: set[str] = set()
    for path in sorted(resources.glob("*.json.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            counts = json.load(fh)
        ranked = sorted((w.lower() for w in counts if len(w) >= 3 and w.isalpha()),
                        key=lambda w: (-counts.get(w, 0), w))
        kept = list(dict.fromkeys(ranked))[:PER_LANGUAGE]
        words.update(kept)
        print(f"{path.name}: {len(kept)}")
    data = "\n".join(sorted(words)).encode() + b"\n"
    with gzip.GzipFile(OUT, "wb", mtime=0) as fh:  # mtime 0: the same list gives the same bytes
        fh.write(data)
    print(f"{OUT}: {len(words)} words, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
