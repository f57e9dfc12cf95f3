"""Reading inputs and writing outputs: local paths (the embedded default) and object stores.

Everything goes through :func:`get_storage`, which picks a backend from the
URI: ``s3://bucket/key`` (AWS S3, MinIO or any S3-compatible store, through
boto3) or a local path. Writes are atomic: a reader sees a whole file or none
(local: write a hidden temporary file beside the target, then ``os.replace``;
S3: one PUT, or a multipart upload that is completed only once every part is
in and aborted on any failure).

Failures are :class:`~pipeline.errors.StorageError`: ``retryable`` when a
rerun may succeed (throttling, timeouts, a store that is down, once botocore's
own retries are spent), not when it cannot (no such bucket or key, access
denied, no credentials).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from pipeline.config import StorageConfig
from pipeline.errors import FileTooLarge, StorageError
from pipeline.types import DocumentRef

__all__ = ["Storage", "LocalStorage", "S3Storage", "get_storage", "is_remote", "join"]

log = logging.getLogger(__name__)


class Storage(Protocol):
    """What runners need from a place that holds documents or output."""

    def list(self, root: str) -> Iterator[DocumentRef]:
        """Every object under ``root`` (a folder/prefix, or one file), sorted by URI."""

    def read(self, uri: str, max_bytes: int | None = None) -> bytes:
        """The object's bytes.

        Raises:
            FileTooLarge: the object is larger than ``max_bytes``, found from its size before
                any byte is read.
            StorageError: it cannot be read.
        """

    def write_atomic(self, uri: str, data: bytes) -> None:
        """Create or replace ``uri`` so that readers never see a partial object."""

    def exists(self, uri: str) -> bool: ...

    def glob(self, root: str, suffix: str) -> list[str]:
        """URIs under ``root`` ending in ``suffix``, skipping names that start with ``_`` or ``.``."""


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def join(root: str, *parts: str) -> str:
    """Join path components for local paths and URIs alike.

    Raises:
        StorageError: a part would leave ``root`` (a ``..`` component, or an
            absolute local path), so an output never lands outside its prefix.
    """
    for part in parts:
        if ".." in part.split("/") or (not is_remote(root) and Path(part).is_absolute()):
            raise StorageError(f"refusing path component {part!r}: it would leave {root!r}", retryable=False)
    if is_remote(root):
        return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(root, *parts))


def _check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise FileTooLarge(f"file is {size} bytes, larger than decode.max_file_bytes={max_bytes}")


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

    def read(self, uri: str, max_bytes: int | None = None) -> bytes:
        path = _local_path(uri)
        try:
            with path.open("rb") as fh:
                if max_bytes is not None:
                    _check_size(os.fstat(fh.fileno()).st_size, max_bytes)
                return fh.read()
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


# -- S3 ---------------------------------------------------------------------------------------

#: S3's smallest part (every part of a multipart upload but the last) and most parts per upload.
_MIN_PART_BYTES = 5 << 20
_MAX_PARTS = 10_000
#: Error codes that name a missing bucket, refused access or credentials the store rejects.
_NO_BUCKET_CODES = {"NoSuchBucket"}
_DENIED_CODES = {
    "AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
    "InvalidToken", "TokenRefreshRequired", "AccountProblem",
}
_MISSING_KEY_CODES = {"NoSuchKey", "404", "NotFound"}
_THROTTLE_CODES = {
    "SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "ServiceUnavailable", "InternalError", "503", "500", "RequestLimitExceeded", "TooManyRequestsException",
}
_CONTENT_TYPES = {".parquet": "application/vnd.apache.parquet", ".json": "application/json"}

_clients: dict[tuple, Any] = {}
_clients_lock = threading.Lock()


def _split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> ``("bucket", "some/key")``."""
    if not uri.startswith("s3://"):
        raise StorageError(f"{uri!r} is not an s3:// URI", retryable=False)
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise StorageError(f"{uri!r} names no bucket (expected s3://bucket/prefix)", retryable=False)
    return bucket, key


def _folder_prefix(key: str) -> str:
    return key if not key or key.endswith("/") else key + "/"


def _configured_endpoint(config: StorageConfig) -> str | None:
    return config.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def _client_key(config: StorageConfig) -> tuple:
    # What the client is built from: the settings and the (non-secret) environment boto3 reads them
    # from. Credentials are deliberately not part of it; they stay inside botocore's provider chain.
    env = tuple(
        os.environ.get(name)
        for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE")
    )
    return (os.getpid(), config.model_dump_json(), env)


def _make_client(config: StorageConfig):
    try:
        import boto3
        from botocore.config import Config
    except ImportError as e:  # pragma: no cover - boto3 is a dependency; a trimmed image may lack it
        raise StorageError("s3:// URIs need boto3: pip install boto3", retryable=False) from e
    from pipeline import __version__

    addressing = config.addressing_style
    if addressing == "auto" and _configured_endpoint(config):
        addressing = "path"  # MinIO & co. rarely have wildcard DNS for bucket.host
    client_config = Config(
        retries={"total_max_attempts": config.max_attempts, "mode": config.retry_mode},
        connect_timeout=config.connect_timeout_s,
        read_timeout=config.read_timeout_s,
        max_pool_connections=config.max_pool_connections,
        s3={"addressing_style": addressing},
        user_agent_extra=f"folio/{__version__}",
    )
    try:
        # endpoint_url=None lets botocore read AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL itself; botocore
        # reads AWS_DEFAULT_REGION but not AWS_REGION, so that one is passed explicitly.
        return boto3.session.Session().client(
            "s3",
            endpoint_url=config.endpoint_url,
            region_name=config.region or os.environ.get("AWS_REGION") or None,
            config=client_config,
        )
    except ValueError as e:  # botocore: "Invalid endpoint: ..."
        raise StorageError(f"cannot create the S3 client: {e}", retryable=False) from e


def _client(config: StorageConfig):
    """One boto3 S3 client per process and settings (boto3 clients are thread-safe; sessions are not)."""
    key = _client_key(config)
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = _make_client(config)
                log.debug("created S3 client (endpoint %s)", client.meta.endpoint_url)
    return client


def _s3_error(e: Exception, action: str, uri: str) -> StorageError:
    """Translate a botocore exception into a StorageError that names what failed and whether to retry."""
    from botocore import exceptions as bx

    bucket = uri[len("s3://") :].split("/", 1)[0]
    if isinstance(e, bx.ClientError):
        err = e.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        detail = f"{code}: {err.get('Message')}" if err.get("Message") else code or f"HTTP {status}"
        if code in _NO_BUCKET_CODES:
            return StorageError(f"cannot {action} {uri}: bucket {bucket!r} does not exist", retryable=False)
        if code == "InvalidObjectState":
            return StorageError(f"cannot {action} {uri}: the object is archived; restore it first", retryable=False)
        if code in _DENIED_CODES or status == 403:
            return StorageError(
                f"cannot {action} {uri}: access to bucket {bucket!r} denied ({detail}); check the credentials "
                "(standard AWS chain) and the bucket policy",
                retryable=False,
            )
        if code in _MISSING_KEY_CODES or status == 404:
            return StorageError(f"cannot {action} {uri}: no such object", retryable=False)
        retryable = code in _THROTTLE_CODES or status >= 500 or status in (408, 429)
        suffix = " (retries exhausted)" if retryable else ""
        return StorageError(f"cannot {action} {uri}: {detail}{suffix}", retryable=retryable)
    if isinstance(e, (bx.NoCredentialsError, bx.PartialCredentialsError, bx.CredentialRetrievalError)):
        return StorageError(
            f"cannot {action} {uri}: no usable AWS credentials (looked in the environment, the shared "
            f"profile and the instance/pod role): {type(e).__name__}",
            retryable=False,
        )
    if isinstance(e, bx.SSLError):
        return StorageError(f"cannot {action} {uri}: TLS error: {e}", retryable=False)
    if isinstance(e, (bx.ConnectionError, bx.HTTPClientError, bx.IncompleteReadError)):
        return StorageError(f"cannot {action} {uri}: {type(e).__name__}: {e} (retries exhausted)", retryable=True)
    return StorageError(f"cannot {action} {uri}: {type(e).__name__}: {e}", retryable=False)


class S3Storage:
    """``s3://bucket/prefix`` on AWS S3 or any S3-compatible store (MinIO, Ceph, moto).

    Holds only its :class:`~pipeline.config.StorageConfig`, so it pickles into
    Ray workers; the boto3 client is created on first use in each process and
    shared by every S3Storage with the same settings there. Credentials come
    from the standard AWS chain and never from Folio's config.
    """

    def __init__(self, config: StorageConfig | None = None):
        self.config = config or StorageConfig()

    def __repr__(self) -> str:
        return f"S3Storage(endpoint_url={self.config.endpoint_url!r}, region={self.config.region!r})"

    @property
    def client(self):
        """The process's boto3 S3 client for these settings."""
        return _client(self.config)

    def _objects(self, bucket: str, prefix: str, uri: str) -> Iterator[dict]:
        """Every listing entry under ``prefix`` (folder markers included), in the store's order."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for page in pages:
                yield from page.get("Contents", ())
        except (BotoCoreError, ClientError) as e:
            raise _s3_error(e, "list", uri) from e

    def _head(self, bucket: str, key: str, uri: str) -> dict | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as e:
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404 or e.response.get("Error", {}).get("Code") in _MISSING_KEY_CODES:
                return None  # HEAD has no body, so a missing bucket reads the same: nothing there
            raise _s3_error(e, "check", uri) from e
        except BotoCoreError as e:
            raise _s3_error(e, "check", uri) from e

    def list(self, root: str) -> Iterator[DocumentRef]:
        """Every object under ``root`` sorted by key, or the one object whose key ``root`` is.

        ``s3://bucket/scans`` means the objects under ``scans/`` (not ``scans2/...``);
        when there are none, the object ``scans`` itself. Folder markers (keys ending
        in ``/``) and names starting with ``.`` are skipped, as LocalStorage skips
        hidden files.

        Raises:
            StorageError: the bucket does not exist or access is denied (not
                retryable, naming the bucket); nothing is under ``root`` (not
                retryable, like a missing local folder); throttling or timeouts
                that outlast the client's retries (retryable).
        """
        bucket, key = _split_s3(root)
        prefix = _folder_prefix(key)
        found: list[tuple[str, int, str]] = []
        marker = False
        for obj in self._objects(bucket, prefix, root):
            name = obj["Key"]
            if name.endswith("/"):
                marker = True
                continue
            if any(part.startswith(".") for part in name[len(prefix) :].split("/")):
                continue
            found.append((name, obj.get("Size"), str(obj.get("ETag", "")).strip('"') or None))
        if not found and key and not key.endswith("/"):
            head = self._head(bucket, key, root)
            if head is not None:
                etag = str(head.get("ETag", "")).strip('"') or None
                yield DocumentRef(f"s3://{bucket}/{key}", head.get("ContentLength"), etag)
                return
        if not found and key and not marker:
            raise StorageError(f"source {root!r} does not exist: no objects under it", retryable=False)
        for name, size, etag in sorted(found):
            yield DocumentRef(f"s3://{bucket}/{name}", size, etag)

    def read(self, uri: str, max_bytes: int | None = None) -> bytes:
        """The object's bytes; with ``max_bytes``, its size is checked from the response's
        ``Content-Length`` before the body is read (the body is then closed unread)."""
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = _split_s3(uri)
        try:
            response = self.client.get_object(Bucket=bucket, Key=key)
            with response["Body"] as body:
                if max_bytes is not None and response.get("ContentLength") is not None:
                    _check_size(int(response["ContentLength"]), max_bytes)
                return body.read()
        except (BotoCoreError, ClientError) as e:
            raise _s3_error(e, "read", uri) from e

    def write_atomic(self, uri: str, data: bytes) -> None:
        """One PUT up to ``multipart_threshold_bytes``, else a multipart upload.

        Both are atomic on S3: a PUT replaces the object whole, and a multipart
        upload's object appears only on ``CompleteMultipartUpload``, which is sent
        after every part is in. Any failure aborts the upload, so its parts do not
        linger (and are never visible as an object either way).
        """
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = _split_s3(uri)
        if not key or any(part in (".", "..") for part in key.split("/")):
            raise StorageError(f"refusing to write {uri!r}: empty key or a '.' or '..' part", retryable=False)
        extra = {}
        content_type = _CONTENT_TYPES.get(PurePosixPath(key).suffix)
        if content_type:
            extra["ContentType"] = content_type
        data = bytes(data)
        try:
            if len(data) <= self.config.multipart_threshold_bytes:
                self.client.put_object(Bucket=bucket, Key=key, Body=data, **extra)
            else:
                self._multipart(bucket, key, data, extra)
        except (BotoCoreError, ClientError) as e:
            raise _s3_error(e, "write", uri) from e

    def _multipart(self, bucket: str, key: str, data: bytes, extra: dict) -> None:
        client = self.client
        part_size = max(self.config.multipart_threshold_bytes, _MIN_PART_BYTES, -(-len(data) // _MAX_PARTS))
        upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="CRC32", **extra)[
            "UploadId"
        ]
        try:
            parts = []
            for number, start in enumerate(range(0, len(data), part_size), start=1):
                response = client.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                    Body=data[start : start + part_size], ChecksumAlgorithm="CRC32",
                )
                part = {"PartNumber": number, "ETag": response["ETag"]}
                if response.get("ChecksumCRC32"):
                    part["ChecksumCRC32"] = response["ChecksumCRC32"]
                parts.append(part)
            client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
            log.debug("wrote s3://%s/%s in %d parts", bucket, key, len(parts))
        except BaseException:
            try:
                client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            except Exception as abort_error:  # the original failure is the one to report
                log.warning(
                    "could not abort multipart upload of s3://%s/%s (%s); its parts stay until a lifecycle "
                    "rule (AbortIncompleteMultipartUpload) removes them",
                    bucket, key, type(abort_error).__name__,
                )
            raise

    def exists(self, uri: str) -> bool:
        bucket, key = _split_s3(uri)
        return self._head(bucket, key, uri) is not None

    def glob(self, root: str, suffix: str) -> list[str]:
        """Objects under ``root`` ending in ``suffix``, skipping any path part starting with ``_`` or ``.``.

        Unlike :meth:`list`, nothing under ``root`` is an empty result (a new
        destination); a missing bucket still raises.
        """
        bucket, key = _split_s3(root)
        prefix = _folder_prefix(key)
        found = []
        for obj in self._objects(bucket, prefix, root):
            name = obj["Key"]
            rel = name[len(prefix) :]
            if not name.endswith(suffix) or name.endswith("/"):
                continue
            if any(part.startswith(("_", ".")) for part in rel.split("/")):
                continue
            found.append(f"s3://{bucket}/{name}")
        return sorted(found)


def get_storage(uri: str, config: StorageConfig | None = None) -> Storage:
    """The backend for ``uri``: S3Storage for ``s3://``, LocalStorage for paths and ``file://``.

    Args:
        uri: where documents are read from or outputs written to.
        config: client settings for object stores (default ``StorageConfig()``).

    Raises:
        StorageError: another scheme (not retryable).
    """
    if uri.startswith("s3://"):
        return S3Storage(config)
    if is_remote(uri):
        scheme = uri.split("://", 1)[0]
        raise StorageError(
            f"{scheme}:// URIs are not supported; use s3://bucket/prefix (any S3-compatible store) or a local path",
            retryable=False,
        )
    return LocalStorage()
