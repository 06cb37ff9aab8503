"""Websocket URL patterns (the chat consumer is added by the chat issue)."""

websocket_urlpatterns: list = []
