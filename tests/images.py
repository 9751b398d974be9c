"""Photos made on the fly, so no binary test fixtures live in the repository."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw


def photo(
    *,
    size: tuple[int, int] = (640, 480),
    format: str = "JPEG",
    mode: str = "RGB",
    orientation: int | None = None,
) -> bytes:
    """A picture with a distinct top-left corner, so rotations can be checked."""
    image = Image.new("RGB", size, (40, 120, 200))
    draw = ImageDraw.Draw(image)
    draw.rectangle([(0, 0), (size[0] // 4, size[1] // 4)], fill=(255, 0, 0))
    if mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    options = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG file whose header claims ``width`` x ``height`` pixels."""
    real = photo(size=(64, 64), format="PNG")
    import struct
    import zlib

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    ihdr = struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return real[:8] + ihdr + real[8 + 25 :]
