import io

import pytest
from PIL import Image

from recycle_workers.errors import ErrorCode, JobError
from recycle_workers.storage import FileStorage
from recycle_workers.uploader import prepare_image, store_image

from images import photo, png_declaring

LIMITS = {
    "max_bytes": 10 * 1024 * 1024,
    "max_pixels": 50_000_000,
    "max_side": 256,
    "jpeg_quality": 85,
}


def model_image(prepared) -> Image.Image:
    return Image.open(io.BytesIO(prepared.model_jpeg))


class TestPrepareImage:
    @pytest.mark.parametrize(
        ("format", "content_type"),
        [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")],
    )
    def test_should_accept_common_formats_and_resize_to_jpeg(
        self, format, content_type
    ):
        prepared = prepare_image(photo(size=(1000, 500), format=format), **LIMITS)

        assert prepared.content_type == content_type
        assert (prepared.width, prepared.height) == (1000, 500)
        resized = model_image(prepared)
        assert resized.format == "JPEG"
        assert resized.size == (256, 128)

    def test_should_hash_the_original_bytes(self):
        raw = photo()
        import hashlib

        assert (
            prepare_image(raw, **LIMITS).image_sha256 == hashlib.sha256(raw).hexdigest()
        )

    def test_should_apply_exif_orientation(self):
        # Orientation 6: the camera was turned, the viewer rotates 90 degrees clockwise.
        prepared = prepare_image(photo(size=(400, 200), orientation=6), **LIMITS)

        upright = model_image(prepared)
        assert upright.size == (128, 256)
        # The red top-left corner of the stored pixels ends up top-right once upright.
        assert upright.getpixel((120, 5))[0] > 200
        assert upright.getpixel((5, 5))[0] < 100

    def test_should_flatten_alpha_onto_white(self):
        prepared = prepare_image(photo(format="PNG", mode="RGBA"), **LIMITS)

        assert model_image(prepared).mode == "RGB"

    @pytest.mark.parametrize(
        ("raw", "code"),
        [
            (b"", ErrorCode.IMAGE_UNREADABLE),
            (b"this is a text file renamed to .jpg", ErrorCode.IMAGE_UNREADABLE),
            (photo()[:2000], ErrorCode.IMAGE_UNREADABLE),
            (photo(size=(1, 1)), ErrorCode.IMAGE_TOO_SMALL),
            (png_declaring(100_000, 100_000), ErrorCode.IMAGE_TOO_MANY_PIXELS),
            (photo(format="GIF"), ErrorCode.IMAGE_FORMAT_UNSUPPORTED),
        ],
        ids=["empty", "text", "truncated", "1x1", "bomb", "gif"],
    )
    def test_should_reject_bad_images_with_a_code(self, raw, code):
        with pytest.raises(JobError) as caught:
            prepare_image(raw, **LIMITS)

        assert caught.value.code == code
        assert caught.value.message.endswith(".") or caught.value.message.endswith(")")

    def test_should_reject_over_the_byte_cap(self):
        with pytest.raises(JobError) as caught:
            prepare_image(photo(), **{**LIMITS, "max_bytes": 100})

        assert caught.value.code == ErrorCode.IMAGE_TOO_LARGE


class TestStoreImage:
    def test_should_store_original_and_model_copy_under_the_hash(self, tmp_path):
        raw = photo(format="PNG")
        prepared = prepare_image(raw, **LIMITS)
        storage = FileStorage(tmp_path)

        stored = store_image(prepared, raw, storage)
        again = store_image(prepared, raw, storage)

        assert stored == again
        assert prepared.image_sha256 in stored.original_key
        assert stored.original_key.endswith(".png")
        assert storage.get(stored.original_key) == raw
        assert storage.get(stored.model_key) == prepared.model_jpeg
        assert len(list(storage.list())) == 2
