from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    """A client_id is deduplicated per (room, author, client_id): another user's message may
    carry the same one (the persistence job's ON CONFLICT DO NOTHING must not drop it)."""

    dependencies = [
        ("messaging", "0004_message_reply_to_seq"),
        ("rooms", "0004_direct_messages"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="message",
            constraint=models.UniqueConstraint(
                fields=("room", "author", "client_id"), name="message_one_client_id_per_author_and_room"
            ),
        ),
        migrations.RemoveConstraint(
            model_name="message",
            name="message_one_client_id_per_room",
        ),
    ]
