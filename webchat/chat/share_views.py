"""Thin views for shared links: the owner's JSON endpoints and the public read-only page."""

from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from webchat.chat import services, share
from webchat.chat.validation import ChatInputError
from webchat.chat.views import _body, _json_errors

# The public page runs only our own scripts (theme toggle, code copy) and talks to nothing.
SHARED_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
SHARED_HEADERS = {
    "Content-Security-Policy": SHARED_CSP,
    # Search engines must not index a private conversation someone shared by link.
    "X-Robots-Tag": "noindex, nofollow",
    # Revocation takes effect at once: no browser or proxy may keep a copy.
    "Cache-Control": "no-store",
    # The token is the only key to the page; it must not leak through the Referer header.
    "Referrer-Policy": "no-referrer",
}


@login_required
@require_http_methods(["GET", "POST"])
@_json_errors
def conversation_shares(request, conversation_id: int):
    """GET: the conversation's working links. POST {message_id}: a new link to the branch that
    ends at that message."""
    if request.method == "POST":
        link = services.shared_link_create(
            user=request.user,
            conversation_id=conversation_id,
            message_id=_body(request).get("message_id"),
        )
        return JsonResponse({"shared_link": share.shared_link_data(link)}, status=201)
    links = share.shared_link_list(user=request.user, conversation_id=conversation_id)
    return JsonResponse({"shared_links": links})


@login_required
@require_POST
@_json_errors
def shared_link_revoke(request, shared_link_id: int):
    link = services.shared_link_revoke(user=request.user, shared_link_id=shared_link_id)
    return JsonResponse({"shared_link": share.shared_link_data(link)})


@require_GET
def shared_page(request, token: str):
    """The read-only snapshot; no login needed. A revoked or unknown link is a plain 404."""
    try:
        snapshot = share.shared_snapshot(token=token)
        response = render(request, "chat/shared.html", {"shared": snapshot})
    except ChatInputError:
        response = render(request, "chat/shared_gone.html", status=404)
    for name, value in SHARED_HEADERS.items():
        response[name] = value
    return response
