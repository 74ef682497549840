from django.urls import path

from . import views

app_name = "chat"

urlpatterns = [
    path("", views.index, name="index"),
    path("new/", views.new_conversation, name="new"),
    path("conversations/", views.conversation_list, name="conversation_list"),
    path("<int:pk>/", views.conversation, name="conversation"),
    path("<int:pk>/rename/", views.rename, name="rename"),
    path("<int:pk>/delete/", views.delete, name="delete"),
]
