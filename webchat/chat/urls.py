from django.urls import path

from webchat.chat import views

app_name = "chat"
urlpatterns = [
    path("", views.index, name="index"),
]
