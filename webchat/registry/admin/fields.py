"""A JSON form field for the admin's JSON settings that answers every bad text with a form error:
Django's own lets json.loads' RecursionError (deep nesting) and ValueError (an integer of
thousands of digits) through as a server error, when it reads the post and again when it shows
the form with the error."""

from django import forms
from django.db import models
from django.forms.fields import InvalidJSONInput


class StrictJSONFormField(forms.JSONField):
    """forms.JSONField whose every unreadable value is a validation error, never an exception."""

    def to_python(self, value):
        try:
            return super().to_python(value)
        except forms.ValidationError:
            raise
        except (RecursionError, ValueError) as exc:
            raise forms.ValidationError(
                "Enter valid JSON (no deeper nesting, no integers of thousands of digits).",
                code="invalid",
            ) from exc

    def bound_data(self, data, initial):
        # The form shown again with its error re-reads the posted text: the same failures.
        try:
            return super().bound_data(data, initial)
        except (RecursionError, ValueError):
            return InvalidJSONInput(data)


# For a ModelAdmin's formfield_overrides: every JSON model field edits through it.
STRICT_JSON = {models.JSONField: {"form_class": StrictJSONFormField}}
