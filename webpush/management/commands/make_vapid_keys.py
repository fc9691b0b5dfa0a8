"""Print a new VAPID key pair, in the form the environment takes (pubsub_site/vapid.py)."""

from django.core.management.base import BaseCommand

from pubsub_site.vapid import vapid_pair_new


class Command(BaseCommand):
    help = "Print a new VAPID key pair for Web Push (WEBPUSH_VAPID_PUBLIC_KEY, WEBPUSH_VAPID_PRIVATE_KEY)."

    def handle(self, *args, **options):
        public, private = vapid_pair_new()
        self.stdout.write(f"WEBPUSH_VAPID_PUBLIC_KEY={public}")
        self.stdout.write(f"WEBPUSH_VAPID_PRIVATE_KEY={private}")
        self.stdout.write("WEBPUSH_VAPID_SUBJECT=mailto:you@example.com")
