from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "webchat.accounts"
    label = "accounts"
