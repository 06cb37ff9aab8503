import math

from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from webchat.accounts import throttle
from webchat.accounts.forms import LoginForm, SignupForm
from webchat.accounts.services import profile_ensure


def _refusal(decision) -> str:
    if decision.allowed:
        return ""
    if math.isinf(decision.retry_after):  # the site set the rate to 0
        return "This is switched off on this site."
    seconds = max(1, math.ceil(decision.retry_after))
    return f"Too many attempts. Try again in {seconds} second{'s' if seconds != 1 else ''}."


class LoginView(auth_views.LoginView):
    """Django's login, throttled per client address and per username (accounts.throttle)."""

    form_class = LoginForm
    redirect_authenticated_user = True

    def get_form(self, form_class=None):
        form = super().get_form(form_class)
        if self.request.method == "POST":
            decision = throttle.login_attempt_take(
                request=self.request, username=self.request.POST.get("username", "")
            )
            form.refusal = _refusal(decision)
        return form

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if form.refusal:
            response.status_code = 429
        return response


@require_http_methods(["GET", "POST"])
def signup(request):
    if request.user.is_authenticated:
        return redirect("chat:index")
    form = SignupForm(request.POST or None)
    if request.method == "POST":
        form.refusal = _refusal(throttle.signup_attempt_take(request=request))
        if form.is_valid():
            user = form.save()
            profile_ensure(user=user)
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("chat:index")
    status = 429 if form.refusal else 200
    return render(request, "registration/signup.html", {"form": form}, status=status)
