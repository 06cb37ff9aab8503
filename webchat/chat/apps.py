from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "webchat.chat"
    label = "chat"
