"""Fixtures of the deploy tests: docker-compose.yml resolved (production, and with
docker-compose.dev.yml, development) and deploy/nginx.conf parsed, once for each module."""

from __future__ import annotations

import pytest

from pubsub_site.tests.deploy.files import DEVELOPMENT, PRODUCTION, ROOT, compose_config, nginx_parse, nginx_tokens


@pytest.fixture(scope="module")
def production() -> dict:
    return compose_config(PRODUCTION)


@pytest.fixture(scope="module")
def development() -> dict:
    return compose_config(DEVELOPMENT)


@pytest.fixture(scope="module")
def nginx() -> list:
    return nginx_parse(nginx_tokens((ROOT / "deploy" / "nginx.conf").read_text()))
