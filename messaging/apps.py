from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out

        from messaging.events import session_logged_out

        user_logged_out.connect(session_logged_out, dispatch_uid="messaging.session_logged_out")
