"""The upload stage: check the photo, make the model's copy, store both.

:func:`prepare_image` is pure (bytes in, :class:`PreparedImage` out) and raises
:class:`~recycle_workers.errors.JobError` for anything that is not a usable photo.
:func:`store_image` puts the original and the model copy under content-addressed
keys, so a redelivered upload rewrites the same objects instead of adding more.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from recycle_workers.errors import ErrorCode, JobError
from recycle_workers.models import StoredImage
from recycle_workers.storage import Storage


@dataclass(frozen=True, slots=True)
class PreparedImage:
    """A validated photo: its hash, its format and the JPEG the model will see."""

    image_sha256: str
    format: str
    content_type: str
    width: int
    height: int
    model_jpeg: bytes


def check_size(size: int, *, max_bytes: int) -> None:
    """Refuse an image over the cap; callers run this before anything is enqueued."""
    if size == 0:
        raise JobError(ErrorCode.IMAGE_UNREADABLE, "The image file is empty.")
    if size > max_bytes:
        raise JobError(
            ErrorCode.IMAGE_TOO_LARGE,
            f"The image is {size} bytes; the limit is {max_bytes} bytes.",
        )


def prepare_image(
    raw: bytes, *, max_bytes: int, max_pixels: int, max_side: int, jpeg_quality: int
) -> PreparedImage:
    """Validate ``raw`` and return it with a resized, upright JPEG for the model.

    Raises :class:`JobError` when the bytes are not a supported, sane image.
    """
    check_size(len(raw), max_bytes=max_bytes)
    image = _open(raw)

    width, height = image.size
    if width * height > max_pixels:
        raise JobError(
            ErrorCode.IMAGE_TOO_MANY_PIXELS,
            f"The image declares {width}x{height} pixels; the limit is {max_pixels} pixels.",
        )
    if min(width, height) < MIN_IMAGE_SIDE:
        raise JobError(
            ErrorCode.IMAGE_TOO_SMALL,
            f"The image is {width}x{height} pixels; each side needs at least "
            f"{MIN_IMAGE_SIDE} pixels.",
        )

    model_image = _decode_for_model(image, max_side=max_side)
    buffer = io.BytesIO()
    model_image.save(buffer, format="JPEG", quality=jpeg_quality, optimize=False)
    return PreparedImage(
        image_sha256=hashlib.sha256(raw).hexdigest(),
        format=image.format,
        content_type=CONTENT_TYPES[image.format],
        width=width,
        height=height,
        model_jpeg=buffer.getvalue(),
    )


def store_image(prepared: PreparedImage, raw: bytes, storage: Storage) -> StoredImage:
    """Put the original and the model copy in storage under keys named by the hash."""
    digest = prepared.image_sha256
    original_key = f"originals/{digest[:2]}/{digest}{EXTENSIONS[prepared.format]}"
    model_key = f"model/{digest[:2]}/{digest}.jpg"
    storage.put(original_key, raw, content_type=prepared.content_type)
    storage.put(model_key, prepared.model_jpeg, content_type="image/jpeg")
    return StoredImage(
        image_sha256=digest,
        original_key=original_key,
        model_key=model_key,
        content_type=prepared.content_type,
        width=prepared.width,
        height=prepared.height,
    )


def _open(raw: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Pillow warns, then errors, on huge images; we check the pixel count ourselves.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw), formats=None)
    except UnidentifiedImageError:
        raise JobError(
            ErrorCode.IMAGE_UNREADABLE, "The file is not an image this service can read."
        ) from None
    except Image.DecompressionBombError:
        raise JobError(
            ErrorCode.IMAGE_TOO_MANY_PIXELS, "The image declares too many pixels to decode."
        ) from None
    if image.format not in CONTENT_TYPES:
        raise JobError(
            ErrorCode.IMAGE_FORMAT_UNSUPPORTED,
            f"{image.format} images are not supported; send JPEG, PNG or WebP.",
        )
    return image


def _decode_for_model(image: Image.Image, *, max_side: int) -> Image.Image:
    """Decode at the smallest scale that still covers ``max_side``, upright, in RGB."""
    if image.format == "JPEG":
        # JPEG can decode at 1/2, 1/4 or 1/8 scale directly, far cheaper than full size.
        image.draft("RGB", (max_side, max_side))
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise JobError(
            ErrorCode.IMAGE_UNREADABLE, f"The image data is damaged or truncated ({exc})."
        ) from None

    upright = ImageOps.exif_transpose(image)
    if upright.mode in ("RGBA", "LA", "PA") or (
        upright.mode == "P" and "transparency" in upright.info
    ):
        rgba = upright.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        upright = background
    elif upright.mode != "RGB":
        upright = upright.convert("RGB")

    upright.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=2.0)
    return upright


MIN_IMAGE_SIDE = 32

CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}
