"""Attachments' fixtures: a storage of the test's own (a temporary directory), files to
upload, and a client signed in as each persona."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image


@pytest.fixture(autouse=True)
def attachment_dir(settings, tmp_path):
    """The filesystem storage, in the test's own directory."""
    root = tmp_path / "attachments"
    settings.STORAGES = {
        **settings.STORAGES,
        "attachments": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(root)}},
    }
    settings.ATTACHMENT_X_ACCEL_PREFIX = ""
    return root


def png_bytes(size=(640, 480), color=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def upload_file(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def upload(client: Client, room_slug: str, name: str, data: bytes):
    return client.post(f"/rooms/{room_slug}/attachments/", {"file": upload_file(name, data)})


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """SeaweedFS's S3 (tests/seaweedfs.py), one for the session, stopped after it."""
    from tests.seaweedfs import start_s3_server

    server = start_s3_server(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


@pytest.fixture
def s3_storage(settings, s3_server, attachment_dir):
    """The attachments' storage on S3 (the bucket of the session's SeaweedFS)."""
    settings.STORAGES = {**settings.STORAGES, "attachments": s3_server.storage_settings()}
    return s3_server
