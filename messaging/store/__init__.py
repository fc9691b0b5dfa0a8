"""Where a message is kept: the room's log in Redis and its copy in the database.

``keys`` names every Redis key of a room; ``lua`` runs the scripts that change them in one
step; ``buffer`` is the log itself (sequence numbers, the append, the replica wait, the
persistence bookkeeping); ``changes`` the edits, deletions, claps and read markers;
``persistence`` what the job copies into PostgreSQL (or SQLite).

Guarantee of the layer: it knows nothing of sockets. Nothing here imports
``messaging.realtime`` (import-linter's contract in pyproject.toml).
"""
