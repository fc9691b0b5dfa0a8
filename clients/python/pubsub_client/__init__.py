"""A client of the pubsub site's API (/api/v1) and its WebSocket: see README.md."""

from pubsub_client.client import Client
from pubsub_client.errors import ApiError, PubsubError, SubscriptionEnded
from pubsub_client.subscriber import Subscription

__all__ = ["ApiError", "Client", "PubsubError", "Subscription", "SubscriptionEnded"]
__version__ = "0.1.0"
