"""Websocket URL patterns (see docs/websocket.md for the protocol)."""

from django.urls import path

from webchat.chat.consumers import ChatConsumer

websocket_urlpatterns = [
    path("ws/chat/", ChatConsumer.as_asgi()),
]
