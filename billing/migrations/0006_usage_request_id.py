import uuid

from django.db import migrations, models


def give_each_row_a_request_id(apps, schema_editor):
    UsageRecord = apps.get_model("billing", "UsageRecord")
    for record in UsageRecord.objects.only("pk").iterator():
        UsageRecord.objects.filter(pk=record.pk).update(request_id=uuid.uuid4())


class Migration(migrations.Migration):
    """Every usage row is one request's, under its request id (rows from before get ids of their own)."""

    dependencies = [
        ("billing", "0005_stripe_lifecycle"),
    ]

    operations = [
        migrations.AddField(
            model_name="usagerecord",
            name="request_id",
            field=models.UUIDField(null=True, editable=False),
        ),
        migrations.RunPython(give_each_row_a_request_id, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="usagerecord",
            name="request_id",
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
    ]
