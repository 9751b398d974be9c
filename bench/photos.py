"""Phone-like test photos made on the spot, so the benchmarks need no downloads.

A phone photo is mostly smooth light falling across surfaces, with sensor grain on
top, a few hard edges, an EXIF orientation tag (the sensor is read in landscape
and the viewer turns it) and quality around 90. :func:`phone_jpeg` builds one from
Pillow's gradients and Gaussian noise so the JPEG decoder does as much work as it
does on a real photo of the same size.
"""

from __future__ import annotations

import io

from PIL import Image, ImageChops, ImageDraw, ImageFilter

TWELVE_MP = (4032, 3024)
FOUR_MP = (2304, 1728)
PHONE_QUALITY = 90
ROTATED_90_CW = 6


def phone_jpeg(
    size: tuple[int, int],
    *,
    orientation: int = ROTATED_90_CW,
    quality: int = PHONE_QUALITY,
) -> bytes:
    """A landscape-stored JPEG of ``size`` pixels that a viewer shows turned upright."""
    width, height = size
    light = Image.radial_gradient("L").resize(size, Image.Resampling.BICUBIC)
    fall = (
        Image.linear_gradient("L")
        .rotate(35, expand=False)
        .resize(size, Image.Resampling.BICUBIC)
    )
    tint = ImageChops.invert(fall)
    scene = Image.merge("RGB", (tint, ImageChops.multiply(tint, light), fall))

    # Objects with hard edges, so the blocks are not all smooth.
    draw = ImageDraw.Draw(scene)
    for index in range(12):
        left = (index * 331) % (width - width // 5)
        top = (index * 197) % (height - height // 5)
        shade = (60 + index * 15, 200 - index * 10, 90 + index * 12)
        draw.ellipse(
            [(left, top), (left + width // 6, top + height // 7)],
            fill=shade,
            outline=(20, 20, 20),
        )
    scene = scene.filter(ImageFilter.GaussianBlur(2))

    # Sensor grain, a little coarser than one pixel as after a phone's own denoising.
    grain = Image.effect_noise((width // 2, height // 2), 18).resize(
        size, Image.Resampling.BILINEAR
    )
    fine = Image.effect_noise(size, 6)
    noise = Image.merge("RGB", (grain, fine, grain))
    photo = ImageChops.add(scene, noise, scale=1.0, offset=-128)

    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "bench"
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=quality, exif=exif, subsampling="4:2:0")
    return buffer.getvalue()
