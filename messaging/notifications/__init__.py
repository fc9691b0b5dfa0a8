"""What a user hears of outside the room they are in: mentions and the e-mail digests of those missed.

``mentions`` makes a notification for each @username when the persistence job writes the
message; ``digests`` e-mails those left unread. Both run in the worker; neither imports
``messaging.realtime``: a notification reaches open sockets through the channel layer.
"""
