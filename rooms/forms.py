from django import forms

from rooms.models import Room


class RoomForm(forms.Form):
    name = forms.CharField(max_length=80, strip=True)
    topic = forms.CharField(max_length=200, required=False, strip=True)
    visibility = forms.ChoiceField(choices=Room.Visibility.choices, initial=Room.Visibility.PUBLIC)


class InviteForm(forms.Form):
    username = forms.CharField(max_length=150, strip=True)
