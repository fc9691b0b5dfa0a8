import pytest

from outgoing_webhooks.tests.receiver import Receiver


@pytest.fixture
def receiver():
    running = Receiver().start()
    yield running
    running.stop()


@pytest.fixture
def loopback_allowed(settings):
    """Webhooks may go to this machine: the tests' receiver listens on 127.0.0.1."""
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]
