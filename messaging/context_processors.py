from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from messaging.selectors import notifications_unread_count, unread_counts, unread_mention_seqs
from rooms.selectors import directs_of_user, notify_settings_of_user, rooms_of_user


def navigation(request: HttpRequest) -> dict:
    """The signed-in user's rooms and direct conversations with unread counts, unread mentions
    and notification settings (the sidebar), and unread notifications.

    Lazy: pages that show neither pay nothing (nothing is read until a template asks).
    """
    user = request.user
    if not user.is_authenticated:
        return {}

    def rooms():
        return rooms_of_user(user=user)

    def directs():
        return directs_of_user(user=user)

    my_rooms = SimpleLazyObject(rooms)
    my_directs = SimpleLazyObject(directs)

    def unread():
        return unread_counts(user_id=user.pk, room_ids=[room.pk for room in [*my_rooms, *my_directs]])

    def notifications():
        return notifications_unread_count(user=user)

    def notify_settings():
        return notify_settings_of_user(user=user, room_ids=[room.pk for room in [*my_rooms, *my_directs]])

    def mentions():
        return unread_mention_seqs(user_id=user.pk, room_ids=[room.pk for room in my_rooms])

    return {
        "my_rooms": my_rooms,
        "my_directs": my_directs,
        "unread_by_room": SimpleLazyObject(unread),
        "unread_notifications": SimpleLazyObject(notifications),
        # Each room's notification settings and unread mentions: the sidebar's badges.
        "notify_by_room": SimpleLazyObject(notify_settings),
        "mentions_by_room": SimpleLazyObject(mentions),
    }
