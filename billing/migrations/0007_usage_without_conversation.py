from django.db import migrations


class Migration(migrations.Migration):
    """Billing no longer points at chat's conversations: a reply finds its usage row by request id."""

    dependencies = [
        ("billing", "0006_usage_request_id"),
        ("chat", "0003_reply_usage_by_request_id"),
    ]

    operations = [
        migrations.RemoveField(model_name="usagerecord", name="conversation"),
    ]
