"""Thin views for the chat page: parse, call one service or selector, answer.

The chat turns themselves travel over the websocket (consumers.py); these are the page, the
sidebar's JSON endpoints, exports and the settings page.
"""

import functools
import json
import time

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from modeling.skills import example_prompts
from webchat.accounts import services as accounts
from webchat.chat import selectors, services
from webchat.chat.validation import ChatInputError, limits, param_ranges, user_max_tokens

STATUS = {"not_found": 404, "rate_limited": 429, "busy": 409}

# Defence in depth behind the server-side sanitiser: even if model HTML slipped through, the
# chat page runs no inline script and loads scripts only from this site.
CHAT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)


def _error(exc: ChatInputError) -> JsonResponse:
    return JsonResponse(
        {"error": {"code": exc.code, "detail": exc.detail, **exc.extra}},
        status=STATUS.get(exc.code, 400),
    )


def _json_errors(view):
    """Answer a refused request (ChatInputError) with its code as JSON."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except ChatInputError as exc:
            return _error(exc)

    return wrapper


def _body(request) -> dict:
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        raise ChatInputError("bad_json", "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ChatInputError("bad_frame", "The request body must be a JSON object.")
    return data


def _active_sampling(models: list[dict]) -> dict:
    active = next((m for m in models if m["status"] == "active"), None)
    return active["sampling"] if active else {}


@ensure_csrf_cookie
@login_required
@require_GET
def index(request, conversation_id: int | None = None):
    """The chat page; with an id, that conversation is opened (the page subscribes to it)."""
    if conversation_id is not None:
        try:
            selectors.conversation_get(user=request.user, conversation_id=conversation_id)
        except ChatInputError:
            raise Http404("No such conversation.") from None
    profile = accounts.profile_ensure(user=request.user)
    models = selectors.models_available()
    page = {
        "user": request.user.get_username(),
        "conversation_id": conversation_id,
        "conversations": selectors.conversation_list(user=request.user),
        "params": param_ranges(user_max_tokens(request.user), _active_sampling(models)),
        "models": models,
        # the empty state's suggestions: questions of the skills world the default model answers
        "examples": example_prompts(3, seed=int(time.time()) // 3600),  # new ones every hour
        "limits": {
            "max_message_chars": limits()["max_message_chars"],
            "max_system_prompt_chars": limits()["max_system_prompt_chars"],
        },
        "consent_default": profile.training_consent_default,
        "ws_path": "/ws/chat/",
    }
    response = render(request, "chat/index.html", {"page": page})
    response["Content-Security-Policy"] = CHAT_CSP
    return response


@login_required
@require_GET
def conversation_list(request):
    query = request.GET.get("q", "")[:200]
    return JsonResponse(
        {"conversations": selectors.conversation_list(user=request.user, query=query)}
    )


@login_required
@require_POST
@_json_errors
def conversation_rename(request, conversation_id: int):
    conversation = services.conversation_rename(
        user=request.user, conversation_id=conversation_id, title=_body(request).get("title")
    )
    return JsonResponse({"conversation": selectors.conversation_meta(conversation)})


@login_required
@require_POST
@_json_errors
def conversation_update(request, conversation_id: int):
    body = _body(request)
    conversation = services.conversation_update(
        user=request.user,
        conversation_id=conversation_id,
        system_prompt=body.get("system_prompt"),
        model_version_id=body.get("model_version", ...),
        training_consent=body.get("training_consent"),
    )
    return JsonResponse({"conversation": selectors.conversation_meta(conversation)})


@login_required
@require_POST
@_json_errors
def conversation_delete(request, conversation_id: int):
    services.conversation_delete(user=request.user, conversation_id=conversation_id)
    return JsonResponse({"deleted": conversation_id})


@login_required
@require_GET
def conversation_export(request, conversation_id: int, fmt: str):
    try:
        if fmt == "md":
            body = selectors.conversation_export_markdown(
                user=request.user, conversation_id=conversation_id
            )
            content_type = "text/markdown; charset=utf-8"
        else:
            data = selectors.conversation_export(user=request.user, conversation_id=conversation_id)
            body = selectors.export_json(data)
            content_type = "application/json"
    except ChatInputError:
        raise Http404("No such conversation.") from None
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="conversation-{conversation_id}.{fmt}"'
    return response


@login_required
@require_GET
def data_export(request):
    """Everything the site keeps about the user, as one JSON download."""
    body = selectors.export_json(selectors.user_data_export(user=request.user))
    response = HttpResponse(body, content_type="application/json")
    response["Content-Disposition"] = 'attachment; filename="webchat-my-data.json"'
    return response


@login_required
@require_http_methods(["GET", "POST"])
def settings_page(request):
    """Account settings: the default training consent and API keys."""
    new_key = None
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "consent":
            accounts.profile_update(
                user=request.user,
                training_consent_default=request.POST.get("training_consent_default") == "on",
            )
            messages.success(request, "Saved.")
            return redirect("chat:settings")
        if action == "create_key":
            _key, new_key = accounts.api_key_create(
                user=request.user, name=request.POST.get("name", "")
            )
        elif action == "revoke_key":
            try:
                accounts.api_key_revoke(user=request.user, key_id=request.POST.get("key_id"))
                messages.success(request, "The key was revoked.")
            except (ChatInputError, ValueError):
                messages.error(request, "No such API key.")
            return redirect("chat:settings")
    profile = accounts.profile_ensure(user=request.user)
    context = {
        "profile": profile,
        "keys": request.user.api_keys.all(),
        "new_key": new_key,
        "api_base": request.build_absolute_uri("/v1"),
        "models": selectors.models_available(),
    }
    return render(request, "chat/settings.html", context)
