from datetime import timedelta

from django import forms

from rooms.models import Room
from rooms.moderation import MUTE_DURATIONS, REPORT_REASON_MAX, SLOW_MODE_CHOICES


class RoomForm(forms.Form):
    name = forms.CharField(max_length=80, strip=True)
    topic = forms.CharField(max_length=200, required=False, strip=True)
    visibility = forms.ChoiceField(choices=Room.Visibility.choices, initial=Room.Visibility.PUBLIC)


class InviteForm(forms.Form):
    username = forms.CharField(max_length=150, strip=True)


class DirectForm(forms.Form):
    """Who to write to: usernames separated by commas or spaces."""

    usernames = forms.CharField(
        max_length=1200,
        strip=True,
        label="To",
        help_text="Up to 7 usernames, separated by commas or spaces.",
        error_messages={"required": "Name at least one other person."},
    )

    def clean_usernames(self) -> list[str]:
        return [name for name in self.cleaned_data["usernames"].replace(",", " ").split() if name]


class MemberActForm(forms.Form):
    """Who a moderation act is about, and why (the reason goes to the audit log)."""

    username = forms.CharField(max_length=150, strip=True)
    reason = forms.CharField(max_length=500, required=False, strip=True)


class MuteForm(MemberActForm):
    duration = forms.ChoiceField(choices=[(label, label) for label in MUTE_DURATIONS], initial="1 hour")

    def clean_duration(self) -> timedelta:
        return MUTE_DURATIONS[self.cleaned_data["duration"]]


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=500, required=False, strip=True)


class SlowModeForm(ReasonForm):
    seconds = forms.TypedChoiceField(
        coerce=int,
        choices=[(s, f"{s} seconds" if s else "Off") for s in SLOW_MODE_CHOICES],
        label="Slow mode",
    )


class ReportForm(forms.Form):
    reason = forms.CharField(
        max_length=REPORT_REASON_MAX,
        strip=True,
        error_messages={"required": "Say why you report this message."},
    )


class RenameForm(ReasonForm):
    name = forms.CharField(max_length=80, strip=True, label="New name")


class TopicForm(ReasonForm):
    topic = forms.CharField(max_length=200, required=False, strip=True, label="Topic")


class DeleteRoomForm(ReasonForm):
    confirm = forms.CharField(
        max_length=80,
        strip=True,
        label="Type the room's name to confirm",
        error_messages={"required": "Type the room's name to confirm the deletion."},
    )
