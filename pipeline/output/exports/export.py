"""``folio export``: the archive formats of the documents under a Folio output, written beside it.

For each selected document (its newest ``documents`` row, and the ``pages`` rows of that run)
:func:`export` builds an :class:`~pipeline.output.exports.ExportDocument` and writes, per
format, under ``DEST/<format>/``, named after the source's path below ``relative_to``:

- ``alto``, ``page``: one file per page (``name.xml`` for a one-page source, ``name_0001.xml``...
  for each page of a longer one);
- ``hocr`` (``name.hocr``), ``txt`` (``name.txt``) and ``pdf`` (``name.pdf``, the source's pages
  with an invisible text layer): one file per document.

Files are written atomically (local or ``s3://``). A document whose row is an error exports
nothing; one whose pages partly failed exports its good pages (the PDF keeps the failed ones
without text). Both are reported in :class:`ExportReport`.
"""

from __future__ import annotations

import logging
import posixpath
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pipeline.config import StorageConfig
from pipeline.errors import FolioError, StorageError
from pipeline.io.storage import get_storage, join
from pipeline.output.catalog import Selection, pages_of, selected_rows
from pipeline.output.exports import ExportDocument, text_words_only
from pipeline.schema import page_from_row

__all__ = ["FORMATS", "ExportReport", "export", "export_names"]

log = logging.getLogger(__name__)

#: The formats ``folio export --format`` writes, and each one's file extension.
FORMATS = {"alto": ".xml", "page": ".xml", "hocr": ".hocr", "pdf": ".pdf", "txt": ".txt"}
_PER_PAGE = ("alto", "page")


@dataclass
class ExportReport:
    """What an export wrote.

    Attributes:
        documents: documents exported (at least one file each).
        files: files written, by format.
        failed: ``(source_uri, why)`` of the documents that exported nothing (error rows, or a
            writer that failed on them).
        partial: ``(source_uri, [page indices])`` of documents whose failed pages exported nothing.
        seconds: wall time.
    """

    documents: int = 0
    files: dict[str, int] = field(default_factory=dict)
    failed: list[tuple[str, str]] = field(default_factory=list)
    partial: list[tuple[str, list[int]]] = field(default_factory=list)
    seconds: float = 0.0


def export_names(source_uri: str, relative_to: str) -> str:
    """The path (without extension) a document's exports get below ``DEST/<format>/``: the source's path
    below ``relative_to``, or its file name where it lies elsewhere."""
    base = relative_to.rstrip("/") + "/" if relative_to else ""
    rel = source_uri[len(base):] if base and source_uri.startswith(base) else posixpath.basename(source_uri)
    stem, _ = posixpath.splitext(rel.lstrip("/"))
    return stem or "document"


def _common_folder(uris: Sequence[str]) -> str:
    """The longest folder that holds every URI (``s3://bucket/prefix``, ``/data/scans``; '' for none)."""
    folders = [u.split("/")[:-1] for u in uris]
    common = []
    for segments in zip(*folders):
        if any(s != segments[0] for s in segments):
            break
        common.append(segments[0])
    return "/".join(common)


def _writer(fmt: str) -> Callable:
    if fmt == "alto":
        from pipeline.output.exports.alto import alto

        return alto
    if fmt == "page":
        from pipeline.output.exports.pagexml import page_xml

        return page_xml
    if fmt == "hocr":
        from pipeline.output.exports.hocr import hocr

        return hocr
    if fmt == "txt":
        from pipeline.output.exports.text import plain_text

        return plain_text
    if fmt == "pdf":
        from pipeline.output.exports.pdf import searchable_pdf

        return searchable_pdf
    raise ValueError(f"unknown export format {fmt!r}; expected one of: {', '.join(FORMATS)}")


def export(
    src: str,
    dest: str,
    formats: Sequence[str],
    *,
    selection: Selection | None = None,
    run_ids: Sequence[str] | None = None,
    relative_to: str | None = None,
    storage_config: StorageConfig | None = None,
    on_document: Callable[[ExportReport], None] | None = None,
    words: str = "text",
) -> ExportReport:
    """Write ``formats`` of the documents under the Folio output ``src`` to ``dest``.

    Args:
        src: a Folio output (local folder or ``s3://`` prefix).
        dest: where ``<format>/`` folders go (local or ``s3://``).
        formats: names from :data:`FORMATS`.
        selection: which documents (as the reprocess flow selects them); None: every document.
        run_ids: only the documents these runs (or run id prefixes) wrote, each from its newest row
            among them.
        relative_to: exports are named after the source's path below this; default: the folder
            the selected sources share.
        storage_config: object-store client settings.
        on_document: called with the report after each document.
        words: ``text``: the words of the page text; ``all``: every word read (``output.export_words``).

    Raises:
        FolioError: ``src`` holds no Folio output.
        ValueError: an unknown format.
    """
    if words not in ("text", "all"):
        raise ValueError(f"words must be text or all, not {words!r}")
    started = time.perf_counter()
    formats = list(dict.fromkeys(formats))
    writers = {fmt: _writer(fmt) for fmt in formats}
    rows = selected_rows(src, selection, run_ids, storage_config)
    report = ExportReport(files=dict.fromkeys(formats, 0))
    if relative_to is None:
        relative_to = _common_folder([r["source_uri"] for r in rows])
    pages_by_run = pages_of(src, rows, storage_config)
    out = get_storage(dest, storage_config)
    for row in rows:
        uri = row["source_uri"]
        if row["status"] == "error":
            report.failed.append((uri, f"{row['error_code']}: {row['error_message']}"))
            _notify(on_document, report)
            continue
        page_rows = sorted(pages_by_run.get((row["doc_id"], row["run_id"]), []), key=lambda p: p["page_index"])
        pages = tuple(page_from_row(p, key=uri) for p in page_rows if p["status"] == "ok")
        if words == "text":
            pages = tuple(text_words_only(page) for page in pages)
        failed_pages = tuple(int(p["page_index"]) for p in page_rows if p["status"] != "ok")
        if not pages:
            report.failed.append((uri, "no page was read"))
            _notify(on_document, report)
            continue
        name = export_names(uri, relative_to)
        doc = ExportDocument(
            doc_id=row["doc_id"], source_uri=uri, name=posixpath.basename(name), mime=row.get("mime"),
            pipeline_version=row.get("pipeline_version") or "", config_fingerprint=row.get("config_fingerprint") or "",
            engine=row.get("engine") or "", models=tuple(row.get("models") or ()), run_id=row["run_id"],
            processed_at=row.get("processed_at"), pages=pages, failed_pages=failed_pages,
        )
        try:
            for fmt, write in writers.items():
                if fmt in _PER_PAGE:
                    single = int(row.get("page_count") or len(page_rows)) <= 1
                    for page in pages:
                        suffix = "" if single else f"_{page.page_index + 1:04d}"
                        out.write_atomic(join(dest, fmt, f"{name}{suffix}{FORMATS[fmt]}"), write(doc, page))
                        report.files[fmt] += 1
                elif fmt == "pdf":
                    source = get_storage(uri, storage_config).read(uri)
                    out.write_atomic(join(dest, fmt, f"{name}.pdf"), write(doc, source))
                    report.files[fmt] += 1
                else:
                    out.write_atomic(join(dest, fmt, f"{name}{FORMATS[fmt]}"), write(doc))
                    report.files[fmt] += 1
        except StorageError:
            raise
        except Exception as e:
            log.warning("export of %s failed", uri, exc_info=True)
            report.failed.append((uri, f"{type(e).__name__}: {e}"))
            _notify(on_document, report)
            continue
        report.documents += 1
        if failed_pages:
            report.partial.append((uri, list(failed_pages)))
        _notify(on_document, report)
    report.seconds = time.perf_counter() - started
    return report


def _notify(callback, report: ExportReport) -> None:
    if callback is not None:
        callback(report)
