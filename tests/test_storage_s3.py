"""S3 storage through boto3 against moto's HTTP server."""

import httpx
import pytest

from recycle_workers.settings import load_settings
from recycle_workers.storage import S3Storage, StorageError, storage_from_settings
from recycle_workers.uploader import prepare_image, store_image

from images import photo


class TestS3Storage:
    def test_should_store_original_and_model_copy_with_content_types(self, s3_settings):
        storage = storage_from_settings(s3_settings)
        raw = photo(format="PNG")
        prepared = prepare_image(
            raw, max_bytes=10**7, max_pixels=10**8, max_side=128, jpeg_quality=80
        )

        stored = store_image(prepared, raw, storage)

        assert isinstance(storage, S3Storage)
        assert storage.get(stored.original_key) == raw
        head = storage.client.head_object(
            Bucket=storage.bucket, Key=f"recycle/{stored.original_key}"
        )
        assert head["ContentType"] == "image/png"
        model_head = storage.client.head_object(
            Bucket=storage.bucket, Key=f"recycle/{stored.model_key}"
        )
        assert model_head["ContentType"] == "image/jpeg"

    def test_should_keep_keys_under_the_prefix_and_list_them(self, s3_settings):
        storage = storage_from_settings(s3_settings)
        storage.put("model/aa/one.jpg", b"1", content_type="image/jpeg")
        storage.put("originals/aa/one.jpg", b"2", content_type="image/jpeg")

        listed = dict(storage.list("model/"))

        assert list(listed) == ["model/aa/one.jpg"]
        assert listed["model/aa/one.jpg"].tzinfo is not None

    def test_should_delete_and_then_report_missing(self, s3_settings):
        storage = storage_from_settings(s3_settings)
        storage.put("x.jpg", b"x", content_type="image/jpeg")

        storage.delete("x.jpg")

        with pytest.raises(StorageError, match="x.jpg"):
            storage.get("x.jpg")

    def test_should_ask_for_server_side_encryption_when_set(self, s3_settings):
        settings = load_settings(**{**s3_settings.model_dump(), "s3_sse": "AES256"})
        storage = storage_from_settings(settings)

        storage.put("secret.jpg", b"x", content_type="image/jpeg")

        head = storage.client.head_object(
            Bucket=storage.bucket, Key="recycle/secret.jpg"
        )
        assert head["ServerSideEncryption"] == "AES256"

    def test_should_hand_out_a_time_limited_url_that_reads_the_object(
        self, s3_settings
    ):
        storage = storage_from_settings(s3_settings)
        storage.put("shared.jpg", b"photo bytes", content_type="image/jpeg")

        url = storage.presigned_url("shared.jpg", expires_s=120)

        assert "X-Amz-Expires=120" in url
        response = httpx.get(url)
        assert response.status_code == 200
        assert response.content == b"photo bytes"
