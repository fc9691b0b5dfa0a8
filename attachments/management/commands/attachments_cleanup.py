"""Remove the attachments no message may show: uploads never sent, claims whose message
never came, the files of deleted or hidden messages (attachments.services.attachments_cleanup).
Run it periodically (cron, a systemd timer: docs/deploy.md "Attachments")."""

from django.core.management.base import BaseCommand

from attachments.services import attachments_cleanup


class Command(BaseCommand):
    help = "Remove the stored files of attachments that no message shows any more."

    def handle(self, *args, **options) -> None:
        removed = attachments_cleanup()
        self.stdout.write(f"Removed the files of {removed} attachments.")
