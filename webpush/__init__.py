"""Web Push and the installable app: the manifest, the service worker, the devices' subscriptions
and the pushes sent to them.

A mention or a direct message reaches a user with no open socket on each device they subscribed
(``services``: who, coalesced per user; ``jobs``: the sending, with pywebpush). The app sits above
``messaging`` (it reads its notifications and store) and nothing in ``messaging`` imports it: the
persistence job and the worker's sweep reach it through the hooks it registers (``apps``).
"""
