from django.urls import path

from . import views, views_attachments, views_share

app_name = "chat"

urlpatterns = [
    path("", views.index, name="index"),
    path("new/", views.new_conversation, name="new"),
    path("conversations/", views.conversation_list, name="conversation_list"),
    path("<int:pk>/", views.conversation, name="conversation"),
    path("<int:pk>/messages/", views.older_messages, name="older_messages"),
    path("<int:pk>/messages/<int:message_pk>/version/", views.show_version, name="show_version"),
    path("<int:pk>/rename/", views.rename, name="rename"),
    path("<int:pk>/delete/", views.delete, name="delete"),
    path("<int:pk>/pin/", views.pin, name="pin"),
    path("<int:pk>/archive/", views.archive, name="archive"),
    path("<int:pk>/export.md", views_share.export_markdown, name="export_markdown"),
    path("<int:pk>/export.json", views_share.export_json, name="export_json"),
    path("export.zip", views_share.export_all, name="export_all"),
    path("attachments/", views_attachments.upload, name="upload"),
    path("attachments/<int:pk>/", views_attachments.attachment, name="attachment"),
    path("attachments/<int:pk>/remove/", views_attachments.remove, name="remove_attachment"),
    path("<int:pk>/share/", views_share.share, name="share"),
    path("shares/<int:pk>/revoke/", views_share.revoke_share, name="revoke_share"),
]
