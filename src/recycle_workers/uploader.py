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

from PIL import Image, UnidentifiedImageError
from pillow_heif import register_heif_opener

from recycle_workers.errors import ErrorCode, JobError
from recycle_workers.models import StoredImage
from recycle_workers.storage import Storage

# Phones save HEIC by default; pillow-heif teaches Pillow to open it.
register_heif_opener()


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
            f"The image declares {width}x{height} pixels; "
            f"the limit is {max_pixels} pixels.",
        )
    if min(width, height) < MIN_IMAGE_SIDE:
        raise JobError(
            ErrorCode.IMAGE_TOO_SMALL,
            f"The image is {width}x{height} pixels; each side needs at least "
            f"{MIN_IMAGE_SIDE} pixels.",
        )

    image_format = image.format
    model_image = _decode_for_model(image, max_side=max_side)
    buffer = io.BytesIO()
    model_image.save(buffer, format="JPEG", quality=jpeg_quality, optimize=False)
    return PreparedImage(
        image_sha256=hashlib.sha256(raw).hexdigest(),
        format=image_format,
        content_type=CONTENT_TYPES[image_format],
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
            # Pillow warns, then errors, on huge images; we check the pixel count
            # ourselves.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw), formats=None)
    except UnidentifiedImageError:
        raise JobError(
            ErrorCode.IMAGE_UNREADABLE,
            "The file is not an image this service can read.",
        ) from None
    except Image.DecompressionBombError:
        raise JobError(
            ErrorCode.IMAGE_TOO_MANY_PIXELS,
            "The image declares too many pixels to decode.",
        ) from None
    if image.format not in CONTENT_TYPES:
        raise JobError(
            ErrorCode.IMAGE_FORMAT_UNSUPPORTED,
            f"{image.format} images are not supported; send JPEG, PNG, WebP or HEIC.",
        )
    return image


def _decode_for_model(image: Image.Image, *, max_side: int) -> Image.Image:
    """Decode ``image`` into an upright RGB copy, its longest side ``max_side`` at most.

    Only one decoded image of the upload's size is alive at a time: the photo is
    shrunk first and closed, and the turn and the alpha flattening work on the small
    copy. A JPEG is not even decoded at full size: its decoder scales by 1/2, 1/4
    or 1/8 on the way (draft mode) to the smallest size that still covers
    ``max_side``. Not yet: palette, 16-bit and transparent PNG or WebP images need
    one full-size mode conversion before shrinking, briefly holding two copies.
    Raises :class:`JobError` when the image data is damaged.
    """
    target = _fit(image.size, max_side)
    if image.format == "JPEG":
        # The decoder keeps both sides at or above the size asked for, so ask for the
        # target itself: a square box would keep a 4:3 photo's short side at full scale.
        image.draft("RGB", target)
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise JobError(
            ErrorCode.IMAGE_UNREADABLE,
            f"The image data is damaged or truncated ({exc}).",
        ) from None
    turn = TRANSPOSE_FOR_ORIENTATION.get(image.getexif().get(EXIF_ORIENTATION, 1))

    transparent = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    decoded = image
    if decoded.mode not in ("RGB", "RGBA", "L"):
        decoded = decoded.convert("RGBA" if transparent else "RGB")
        image.close()
    small = decoded
    if decoded.size != target:
        small = decoded.resize(target, MODEL_RESAMPLE, reducing_gap=2.0)
        decoded.close()
        image.close()

    if small.mode == "RGBA":
        background = Image.new("RGB", small.size, (255, 255, 255))
        background.paste(small, mask=small.getchannel("A"))
        small = background
    elif small.mode != "RGB":
        small = small.convert("RGB")
    return small.transpose(turn) if turn is not None else small


def _fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """``size`` scaled down in proportion so that no side exceeds ``max_side``."""
    width, height = size
    scale = max_side / max(width, height)
    if scale >= 1:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


MIN_IMAGE_SIDE = 32

EXIF_ORIENTATION = 0x0112
# EXIF orientation values to the turn that shows the stored pixels upright.
TRANSPOSE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "HEIF": "image/heic",
}
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "HEIF": ".heic"}

# Hamming is a two-tap filter: after the JPEG draft has halved the photo it costs half
# what Lanczos does, and its result stays within 40-43 dB PSNR of a Lanczos thumbnail,
# finer than the quality-85 encoding that follows (bench/image_stage.py).
MODEL_RESAMPLE = Image.Resampling.HAMMING
