from django.urls import path

from . import views, views_statements, views_stripe, views_usage

app_name = "billing"

urlpatterns = [
    path("", views.index, name="index"),
    path("change/<slug:slug>/", views.change, name="change"),
    path("request/<slug:slug>/", views.request_plan, name="request_plan"),
    path("request-withdraw/", views.withdraw_request, name="withdraw_request"),
    path("cancel/", views.cancel, name="cancel"),
    path("keep/", views.keep, name="keep"),
    path("portal/", views.portal, name="portal"),
    path("checkout/done/", views.checkout_done, name="checkout_done"),
    path("stripe/webhook/", views_stripe.webhook, name="stripe_webhook"),
    path("enterprise/", views.enterprise, name="enterprise"),
    path("statements/", views_statements.statements, name="statements"),
    path("statements/<int:year>-<int:month>/", views_statements.statement, name="statement"),
    path("statements/<int:year>-<int:month>.csv", views_statements.statement_csv, name="statement_csv"),
]

# Mounted at /usage/ (namespace "usage").
usage_urlpatterns = [
    path("", views_usage.dashboard, name="dashboard"),
    path("activity/", views_usage.activity, name="activity"),
    path("export.csv", views_usage.export_csv, name="export"),
]
