from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from accounts import views
from accounts.forms import VerifiedPasswordResetForm

urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path("settings/", views.account_settings, name="account-settings"),
    path("profile/", views.profile_edit, name="profile-edit"),
    path("users/<int:user_id>/card/", views.profile_card, name="profile-card"),
    path("delete/", views.account_delete_view, name="account-delete"),
    path("email/verify/<str:token>/", views.email_verify_view, name="email-verify"),
    path("email/resend/", views.email_verify_resend, name="email-verify-resend"),
    path("login/", views.log_in, name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "password/reset/",
        views.PasswordResetView.as_view(form_class=VerifiedPasswordResetForm),
        name="password_reset",
    ),
    path("password/reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "password/reset/<uidb64>/<token>/",
        views.PasswordResetConfirmView.as_view(success_url=reverse_lazy("password_reset_complete")),
        name="password_reset_confirm",
    ),
    path("password/reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("password/change/", views.PasswordChangeView.as_view(), name="password_change"),
    path("password/change/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
]
