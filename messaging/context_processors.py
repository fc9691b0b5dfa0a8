from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject


def navigation(request: HttpRequest) -> dict:
    """The signed-in user's rooms with unread counts (the sidebar) and unread notifications.

    Lazy: pages that show neither pay nothing.
    """
    user = request.user
    if not user.is_authenticated:
        return {}

    def rooms():
        from rooms.models import Room

        return list(
            Room.objects.filter(memberships__user=user, memberships__banned=False).order_by("name").only("name", "slug")
        )

    my_rooms = SimpleLazyObject(rooms)

    def unread():
        from messaging.selectors import unread_counts

        return unread_counts(user_id=user.pk, room_ids=[room.pk for room in my_rooms])

    def notifications():
        from messaging.models import Notification

        return Notification.objects.filter(user=user, read_at__isnull=True).count()

    return {
        "my_rooms": my_rooms,
        "unread_by_room": SimpleLazyObject(unread),
        "unread_notifications": SimpleLazyObject(notifications),
    }
