from django.urls import path

from . import views, views_api_keys, views_data

urlpatterns = [
    path("", views.profile, name="profile"),
    path("chat-preferences/", views.chat_preferences, name="chat_preferences"),
    path("theme/", views.switch_theme, name="switch_theme"),
    path("export.zip", views_data.export_data, name="export_data"),
    path("delete/", views_data.delete_account, name="delete_account"),
    path("api-keys/", views_api_keys.api_key_list, name="api_keys"),
    path("api-keys/<int:pk>/", views_api_keys.api_key_detail, name="api_key_detail"),
    path("api-keys/<int:pk>/revoke/", views_api_keys.api_key_revoke, name="api_key_revoke"),
]
