"""Response headers every page gets: the Content-Security-Policy.

The policy is defence in depth behind the server-side sanitiser (webchat/chat/markdown.py): even
if model HTML slipped through, no page runs inline script, loads script from elsewhere, or
connects anywhere but this site. `connect-src 'self'` covers the chat's ws:/wss: socket to the
same host in current browsers (Chrome 71+, Firefox, Safari 16+), so no other socket host is
allowed. A view that needs another policy sets the header itself; this only fills it in.
"""

from django.utils.deprecation import MiddlewareMixin

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


class ContentSecurityPolicyMiddleware(MiddlewareMixin):
    """Set CONTENT_SECURITY_POLICY on every response that has none (sync and async views)."""

    def process_response(self, request, response):
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response
