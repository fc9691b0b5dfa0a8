import pytest
from channels.db import database_sync_to_async
from django.db import connections

from pubsub_site.redis_client import close_async_clients_for_running_loop


@pytest.fixture
async def async_cleanup():
    """Close what an async test opened on its loop and in the ORM's worker thread."""
    yield
    await close_async_clients_for_running_loop()
    await database_sync_to_async(connections.close_all)()
