from django.apps import AppConfig


class CurationConfig(AppConfig):
    name = "webchat.curation"
    label = "curation"
