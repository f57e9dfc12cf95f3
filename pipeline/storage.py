"""Reading inputs and writing outputs: local paths (the embedded default) and object stores.

Everything goes through :func:`get_storage`, which picks a backend from the
URI. Writes are atomic: a reader sees a whole file or none (local: write a
hidden temporary file beside the target, then ``os.replace``).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from pipeline.errors import StorageError
from pipeline.types import DocumentRef

__all__ = ["Storage", "LocalStorage", "get_storage", "is_remote", "join"]

log = logging.getLogger(__name__)


class Storage(Protocol):
    """What runners need from a place that holds documents or output."""

    def list(self, root: str) -> Iterator[DocumentRef]:
        """Every object under ``root`` (a folder/prefix, or one file), sorted by URI."""

    def read(self, uri: str) -> bytes: ...

    def write_atomic(self, uri: str, data: bytes) -> None:
        """Create or replace ``uri`` so that readers never see a partial object."""

    def exists(self, uri: str) -> bool: ...


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def join(root: str, *parts: str) -> str:
    """Join path components for local paths and URIs alike."""
    if is_remote(root):
        return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(root, *parts))


def _local_path(uri: str) -> Path:
    return Path(uri[len("file://") :] if uri.startswith("file://") else uri)


class LocalStorage:
    """A local folder (or a single file)."""

    def list(self, root: str) -> Iterator[DocumentRef]:
        path = _local_path(root)
        if path.is_file():
            st = path.stat()
            yield DocumentRef(str(path.resolve()), st.st_size, f"{st.st_mtime_ns:x}-{st.st_size:x}")
            return
        if not path.is_dir():
            raise StorageError(f"source {root!r} does not exist", retryable=False)
        files = []
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            files.extend(Path(dirpath, f) for f in filenames if not f.startswith("."))
        for f in sorted(files):
            try:
                st = f.stat()
            except OSError as e:
                log.warning("cannot stat %s: %s", f, e)
                continue
            if not f.is_file():
                continue
            yield DocumentRef(str(f.resolve()), st.st_size, f"{st.st_mtime_ns:x}-{st.st_size:x}")

    def read(self, uri: str) -> bytes:
        try:
            return _local_path(uri).read_bytes()
        except OSError as e:
            raise StorageError(f"cannot read {uri}: {e.strerror or e}", retryable=False) from e

    def write_atomic(self, uri: str, data: bytes) -> None:
        path = _local_path(uri)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as e:
            raise StorageError(f"cannot write {uri}: {e.strerror or e}") from e

    def exists(self, uri: str) -> bool:
        return _local_path(uri).exists()

    def glob(self, root: str, suffix: str) -> list[str]:
        """Files under ``root`` ending in ``suffix``, skipping hidden and ``_``-prefixed names."""
        base = _local_path(root)
        if not base.is_dir():
            return []
        found = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
            found.extend(
                str(Path(dirpath, f)) for f in filenames if f.endswith(suffix) and not f.startswith((".", "_"))
            )
        return sorted(found)


def get_storage(uri: str) -> LocalStorage:
    """The backend for ``uri``."""
    if is_remote(uri):
        scheme = uri.split("://", 1)[0]
        raise StorageError(f"{scheme}:// URIs are not supported yet; use a local path", retryable=False)
    return LocalStorage()
