"""The sockets: where a stored message reaches the people in the room, live.

``consumers`` is the ``/ws/`` endpoint (one consumer per socket, a switch over frame types);
``handshakes`` and ``routing`` what comes before it; ``layers`` the channel layer and
``fanout`` a room's delivery once per process; ``sockets`` one socket's bounded outbox;
``presence`` and ``online`` who is here; ``throttle`` the sockets' rate limits.

Guarantee of the layer: it may import the domain (services, selectors, the store), and
nothing outside it imports it back, apart from the ASGI entry (``pubsub_site.asgi``) that
mounts it (import-linter's contract in pyproject.toml).
"""
