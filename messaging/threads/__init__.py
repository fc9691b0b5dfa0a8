"""Threads: a message's replies gathered under it, with their own panel, following and unread.

A thread reply is a message of the room like any (its own ``seq``, live, replayed by ``since``,
persisted, moderated) that carries ``thread``, its root's seq; the room's timeline shows it only
with ``also_in_room``. The root's summary (messaging.store.threads, ``summaries``) is a change of
the root by ``rev``. ``selectors`` reads a thread and who follows it; ``services`` writes.
"""
