from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "webchat.registry"
    label = "registry"
