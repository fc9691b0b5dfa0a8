from django.urls import path

from outgoing_webhooks import views

urlpatterns = [
    path("rooms/<slug:slug>/webhooks/", views.webhook_list, name="webhook-list"),
    *(
        path(
            f"rooms/<slug:slug>/webhooks/<int:endpoint_id>/{act}/",
            views.webhook_act,
            {"act": act},
            name=f"webhook-{act}",
        )
        for act in ("enable", "disable", "delete")
    ),
]
