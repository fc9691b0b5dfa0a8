from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject


def navigation(request: HttpRequest) -> dict:
    """The signed-in user's rooms and direct conversations with unread counts (the sidebar), and
    unread notifications.

    Lazy: pages that show neither pay nothing.
    """
    user = request.user
    if not user.is_authenticated:
        return {}

    def rooms():
        from rooms.selectors import rooms_of_user

        return rooms_of_user(user=user)

    def directs():
        from rooms.selectors import directs_of_user

        return directs_of_user(user=user)

    my_rooms = SimpleLazyObject(rooms)
    my_directs = SimpleLazyObject(directs)

    def unread():
        from messaging.selectors import unread_counts

        return unread_counts(user_id=user.pk, room_ids=[room.pk for room in [*my_rooms, *my_directs]])

    def notifications():
        from messaging.selectors import notifications_unread_count

        return notifications_unread_count(user=user)

    return {
        "my_rooms": my_rooms,
        "my_directs": my_directs,
        "unread_by_room": SimpleLazyObject(unread),
        "unread_notifications": SimpleLazyObject(notifications),
    }
