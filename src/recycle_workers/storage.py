"""Where images are kept: a local folder or an S3 bucket.

Both backends take keys relative to the storage URL's prefix. Writes are
idempotent: putting the same key twice leaves one object.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Protocol
from urllib.parse import unquote, urlsplit

from recycle_workers.settings import Settings


class StorageError(Exception):
    """The store refused or lost an object."""


class Storage(Protocol):
    """The operations the stages and the scheduler need from an object store."""

    def put(self, key: str, data: bytes, *, content_type: str) -> None: ...

    def get(self, key: str) -> bytes: ...

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str = "") -> Iterator[tuple[str, datetime]]:
        """Yield (key, last modified) for every object under ``prefix``."""
        ...

    def presigned_url(self, key: str, *, expires_s: int) -> str:
        """A URL that reads ``key`` without credentials, for ``expires_s`` seconds."""
        ...


class FileStorage:
    """Objects as files under one folder; for embedded mode and single-host setups."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a reader never sees half an image.
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise StorageError(f"No stored object at key {key!r}") from None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str = "") -> Iterator[tuple[str, datetime]]:
        if not self.root.exists():
            return
        for path in sorted(self.root.rglob("*")):
            key = path.relative_to(self.root).as_posix()
            if (
                path.is_file()
                and not path.name.startswith(".part-")
                and key.startswith(prefix)
            ):
                modified = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
                yield key, modified

    def presigned_url(self, key: str, *, expires_s: int) -> str:
        # A local file needs no signature; the URL is only good on this host.
        return self._path(key).as_uri()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise StorageError(f"Key {key!r} points outside the storage folder")
        return path


class S3Storage:
    """Objects in an S3 (or S3-compatible) bucket under a key prefix."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        client,
        *,
        sse: str = "",
        sse_kms_key_id: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.encryption: dict[str, str] = {}
        if sse:
            self.encryption["ServerSideEncryption"] = sse
        if sse == "aws:kms" and sse_kms_key_id:
            self.encryption["SSEKMSKeyId"] = sse_kms_key_id

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        self.client.put_object(
            Bucket=self.bucket,
            Key=self._key(key),
            Body=data,
            ContentType=content_type,
            **self.encryption,
        )

    def get(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey:
            raise StorageError(f"No stored object at key {key!r}") from None
        return response["Body"].read()

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def list(self, prefix: str = "") -> Iterator[tuple[str, datetime]]:
        paginator = self.client.get_paginator("list_objects_v2")
        start = len(self.prefix) + 1 if self.prefix else 0
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            for entry in page.get("Contents", ()):
                yield entry["Key"][start:], entry["LastModified"]

    def presigned_url(self, key: str, *, expires_s: int) -> str:
        return self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self._key(key)},
            ExpiresIn=expires_s,
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key


def storage_from_settings(settings: Settings) -> Storage:
    """Build the backend that ``RECYCLE_STORAGE_URL`` names."""
    parts = urlsplit(settings.storage_url)
    if parts.scheme == "file":
        return FileStorage(Path(unquote(parts.path)))
    return S3Storage(
        parts.netloc,
        unquote(parts.path),
        _s3_client(settings),
        sse=settings.s3_sse,
        sse_kms_key_id=settings.s3_sse_kms_key_id,
    )


def _s3_client(settings: Settings):
    import boto3
    from botocore.config import Config

    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path" if settings.s3_path_style else "auto"},
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=5,
        read_timeout=30,
    )
    credentials = {}
    if settings.s3_access_key_id and settings.s3_secret_access_key:
        credentials = {
            "aws_access_key_id": settings.s3_access_key_id.get_secret_value(),
            "aws_secret_access_key": settings.s3_secret_access_key.get_secret_value(),
        }
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        config=config,
        **credentials,
    )
