"""A push service for the tests: a real HTTP server on 127.0.0.1 standing in for the browser
vendor's endpoint, and a device's subscription keys, to decrypt and verify what it receives."""

from __future__ import annotations

import base64
import json
import os
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import http_ece
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class PushService:
    """Records every POST; answers ``statuses[path]`` (a list: one status per request, the
    last one repeated), 201 by default."""

    server: ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)
    statuses: dict[str, list[int]] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def endpoint(self, name: str) -> str:
        return f"{self.origin}/push/{name}"


@dataclass
class Device:
    """A browser's push subscription: its ECDH key pair and auth secret (RFC 8291)."""

    endpoint: str
    private_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    auth_secret: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def p256dh(self) -> str:
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return b64url(point)

    @property
    def auth(self) -> str:
        return b64url(self.auth_secret)

    def decrypt(self, body: bytes) -> dict:
        """The payload, decrypted as the browser does (aes128gcm: the sender's key is in the body)."""
        plain = http_ece.decrypt(body, private_key=self.private_key, auth_secret=self.auth_secret, version="aes128gcm")
        return json.loads(plain)


def start_push_service() -> PushService:
    service: PushService

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            service.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            statuses = service.statuses.get(self.path, [201])
            status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    service = PushService(server=server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return service


def verify_vapid(authorization: str) -> tuple[str, dict]:
    """Check a ``vapid t=<JWT>, k=<key>`` header (RFC 8292): the JWT is ES256, signed by ``k``.
    Returns the public key and the claims; raises InvalidSignature if it does not verify."""
    scheme, _, params = authorization.partition(" ")
    assert scheme == "vapid", authorization
    values = dict(part.strip().split("=", 1) for part in params.split(","))
    token, key = values["t"], values["k"]
    header_b64, claims_b64, signature_b64 = token.split(".")
    header = json.loads(b64url_decode(header_b64))
    assert header == {"typ": "JWT", "alg": "ES256"}, header
    signature = b64url_decode(signature_b64)
    assert len(signature) == 64  # JWS: r and s, 32 bytes each
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(key))
    public.verify(der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    return key, json.loads(b64url_decode(claims_b64))
