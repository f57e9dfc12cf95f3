"""Plain text: the document's pages in page order, one form feed between pages.

Each page is its ``text`` (already in reading order) ending in one newline. A
page that failed keeps its place as an empty page, so the n-th form-feed-separated
part is always the n-th page of the source.
"""

from __future__ import annotations

from pipeline.output.exports import ExportDocument

__all__ = ["plain_text"]


def plain_text(doc: ExportDocument) -> bytes:
    """The document's text, UTF-8: pages separated by form feeds (``\\f``), ending with a newline.

    Args:
        doc: the document (its pages and the indices of its failed pages).

    Returns:
        The file's bytes; empty for a document without pages.
    """
    texts = {page.page_index: page.text for page in doc.pages}
    last = max([*texts, *doc.failed_pages], default=-1)
    pages = [texts.get(i, "").rstrip("\n") + "\n" for i in range(last + 1)]
    return "\f".join(pages).encode("utf-8")
