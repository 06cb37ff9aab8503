from django import forms
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.contrib.auth.models import User


class RefusableForm:
    """A form the view can refuse before it checks anything: `refusal` (a sentence) becomes
    the form's error and the form's own checks (a password check, an account made) never run."""

    refusal: str = ""

    def clean(self):
        if self.refusal:
            raise forms.ValidationError(self.refusal, code="throttled")
        return super().clean()


class LoginForm(RefusableForm, AuthenticationForm):
    pass


class SignupForm(RefusableForm, UserCreationForm):
    email = forms.EmailField(required=False, help_text="Optional; only used for password help.")

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")
