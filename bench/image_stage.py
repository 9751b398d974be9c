"""The upload stage's image work against a plain Pillow baseline, side by side.

Both sides take the same phone JPEG bytes and produce a JPEG of the same size and
orientation. Ours is :func:`recycle_workers.uploader.prepare_image` (decode in draft
mode, shrink, turn upright, encode, SHA-256 of the original); the baseline opens
the file, converts it to RGB, turns it upright, makes a Lanczos thumbnail and
saves it, without hashing. The two alternate call by call, so a noisy neighbour
slows both alike.
"""

from __future__ import annotations

import io
import math
import statistics
import time

from photos import FOUR_MP, TWELVE_MP, phone_jpeg
from PIL import Image, ImageChops, ImageOps, ImageStat

from recycle_workers.uploader import prepare_image

LIMITS = {
    "max_bytes": 10 * 1024 * 1024,
    "max_pixels": 50_000_000,
    "max_side": 1024,
    "jpeg_quality": 85,
}
GOAL_SPEEDUP = 2.5


def baseline(raw: bytes) -> bytes:
    """What a first version would write: full decode, then a Lanczos thumbnail."""
    image = Image.open(io.BytesIO(raw)).convert("RGB")
    image = ImageOps.exif_transpose(image)
    image.thumbnail((LIMITS["max_side"], LIMITS["max_side"]), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=LIMITS["jpeg_quality"])
    return buffer.getvalue()


def ours(raw: bytes) -> bytes:
    return prepare_image(raw, **LIMITS).model_jpeg


def run(*, rounds: int = 15) -> dict:
    """Median milliseconds per photo for both sides, per photo size."""
    results = []
    for label, size in (("12 MP", TWELVE_MP), ("4 MP", FOUR_MP)):
        raw = phone_jpeg(size)
        ours_out, base_out = ours(raw), baseline(raw)
        ours_image, base_image = _open(ours_out), _open(base_out)
        if ours_image.size != base_image.size:
            raise AssertionError(
                f"sizes differ: {ours_image.size} vs {base_image.size}"
            )

        ours_ms, base_ms = [], []
        for _ in range(rounds):
            ours_ms.append(_time_ms(ours, raw))
            base_ms.append(_time_ms(baseline, raw))
        ours_median, base_median = (
            statistics.median(ours_ms),
            statistics.median(base_ms),
        )
        results.append(
            {
                "photo": label,
                "pixels": f"{size[0]}x{size[1]}",
                "jpeg_bytes": len(raw),
                "output": f"{ours_image.size[0]}x{ours_image.size[1]}",
                "rounds": rounds,
                "ours_ms_p50": round(ours_median, 1),
                "baseline_ms_p50": round(base_median, 1),
                "ours_ms": [round(value, 2) for value in ours_ms],
                "baseline_ms": [round(value, 2) for value in base_ms],
                "speedup": round(base_median / ours_median, 2),
                "psnr_vs_baseline_db": round(_psnr(ours_image, base_image), 1),
                "goal_met": base_median / ours_median >= GOAL_SPEEDUP,
            }
        )
    return {"goal_speedup": GOAL_SPEEDUP, "photos": results}


def _time_ms(function, raw: bytes) -> float:
    started = time.perf_counter()
    function(raw)
    return (time.perf_counter() - started) * 1000


def _open(jpeg: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(jpeg))
    image.load()
    return image


def _psnr(first: Image.Image, second: Image.Image) -> float:
    """Peak signal-to-noise ratio between two RGB images of one size, in dB."""
    difference = ImageChops.difference(first.convert("RGB"), second.convert("RGB"))
    squares = ImageStat.Stat(difference).rms
    mse = statistics.fmean(value * value for value in squares)
    return math.inf if mse == 0 else 10 * math.log10(255 * 255 / mse)
