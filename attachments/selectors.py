"""Reads of attachments with their permission check: the one place that decides who may
fetch a file (``attachment_get_for_reader``)."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.http import Http404

from attachments.models import Attachment
from messaging.selectors import message_get, message_seq_of_send
from rooms.selectors import membership_get, room_can_read


def attachment_get_for_reader(*, attachment_id: str, user: AbstractBaseUser) -> Attachment:
    """The attachment, when ``user`` may read it now; Http404 otherwise, the same answer for
    a file that never existed (an outsider learns nothing).

    Its uploader may fetch it before it is sent (the composer's preview); everyone else,
    once it went out with a message, under the room page's rules (rooms.selectors), and
    only while that message is neither deleted nor hidden: its current state is read from
    the live store (messaging.selectors.message_get), so a deletion takes effect at once,
    before the persistence job and the purge have run. A claimed file whose message is
    stored but not yet marked sent (its readers may ask before the sender's socket has
    written the seq: attachments_mark_sent follows the broadcast) is found by its send's
    ``client_id``.
    """
    attachment = Attachment.objects.filter(id=attachment_id, deleted_at__isnull=True).select_related("room").first()
    if attachment is None:
        raise Http404("No such file.")
    seq = attachment.seq
    if seq is None:
        if attachment.uploader_id == user.pk:
            return attachment
        if attachment.client_id is not None:
            seq = message_seq_of_send(
                room_id=attachment.room_id, author_id=attachment.uploader_id, client_id=str(attachment.client_id)
            )
        if seq is None:
            raise Http404("No such file.")
    if not room_can_read(room=attachment.room, membership=membership_get(room=attachment.room, user=user)):
        raise Http404("No such file.")
    found = message_get(room_id=attachment.room_id, seq=seq)
    if found is None or found[1].deleted:
        raise Http404("No such file.")
    return attachment
