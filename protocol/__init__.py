"""The live protocol's two catalogues, a leaf every app may use.

``events`` builds every event sent over the channel layer (and names the groups, and sends
on commit); ``wire`` builds every frame a client receives, the message's wire form first
(docs/protocol.md). Both live outside the apps so that rooms' and accounts' domain code tells
the sockets of a change without importing ``messaging``: this package imports no app but
rooms' models (import-linter's contracts in pyproject.toml; tests/architecture/test_catalogues.py).
"""
