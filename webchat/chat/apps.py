from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "webchat.chat"
    label = "chat"

    def ready(self):
        from webchat import startup
        from webchat.chat import signals

        signals.connect()
        startup.register()
