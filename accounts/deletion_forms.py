from __future__ import annotations

from django import forms

CONFIRMATION = "delete my account"


class DeleteAccountForm(forms.Form):
    """The password again, and the words typed out: deleting cannot be undone."""

    password = forms.CharField(widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}))
    confirmation = forms.CharField(
        label=f"Type “{CONFIRMATION}”", max_length=50, widget=forms.TextInput(attrs={"autocomplete": "off"})
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_password(self):
        password = self.cleaned_data["password"]
        if not self.user.check_password(password):
            raise forms.ValidationError("That is not your password.")
        return password

    def clean_confirmation(self):
        confirmation = self.cleaned_data["confirmation"]
        if confirmation.strip().lower() != CONFIRMATION:
            raise forms.ValidationError(f"Type “{CONFIRMATION}” to confirm.")
        return confirmation
