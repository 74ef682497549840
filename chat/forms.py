from django import forms

from .models import Conversation


class RenameForm(forms.ModelForm):
    class Meta:
        model = Conversation
        fields = ["title"]
        error_messages = {"title": {"required": "A title cannot be empty."}}

    def clean_title(self):
        title = " ".join(self.cleaned_data["title"].split())
        if not title:
            raise forms.ValidationError("A title cannot be empty.")
        return title
