from django.urls import path

from attachments import views

urlpatterns = [
    path("rooms/<slug:slug>/attachments/", views.upload, name="attachment-upload"),
    path("attachments/<uuid:attachment_id>/thumb", views.thumb, name="attachment-thumb"),
    path("attachments/<uuid:attachment_id>/<str:name>", views.file, name="attachment-file"),
]
