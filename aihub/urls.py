from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.urls import include, path

from billing.urls import usage_urlpatterns
from chat.api.urls import docs_urlpatterns, openai_urlpatterns, rest_urlpatterns
from chat.views_share import shared_attachment, shared_conversation

from . import views, views_ops

# The admin signs in through allauth's login, so with its second factor (its own form would skip it).
admin.site.login = secure_admin_login(admin.site.login)  # type: ignore[method-assign]

urlpatterns = [
    path("", views.landing, name="landing"),
    path("", include("deploy.urls")),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("account/", include("accounts.urls")),
    path("chat/", include("chat.urls")),
    path("s/<str:token>/", shared_conversation, name="shared_conversation"),
    path("s/<str:token>/files/<int:pk>/", shared_attachment, name="shared_attachment"),
    path("billing/", include("billing.urls")),
    path("usage/", include((usage_urlpatterns, "usage"))),
    # The operator overview shows several layers at once (usage, reconciliation, the gateway's breakers).
    path("ops/", include(([path("", views_ops.overview, name="overview")], "ops"))),
    path("v1/", include(openai_urlpatterns)),
    path("api/v1/", include(rest_urlpatterns)),
    path("api/", include(docs_urlpatterns)),
]
