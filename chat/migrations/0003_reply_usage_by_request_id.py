import django.db.models.deletion
from django.db import migrations, models


def link_replies_to_their_usage(apps, schema_editor):
    """Replies stored before request ids: each takes the id of the usage row its figures were copied from
    (same conversation, figures and status, written after the reply), in order; a reply without one
    (refused, or still streaming) keeps none."""
    Message = apps.get_model("chat", "Message")
    UsageRecord = apps.get_model("billing", "UsageRecord")
    replies = Message.objects.filter(role="assistant").exclude(status="streaming").order_by("conversation_id", "id")
    by_conversation: dict[int, list] = {}
    for record in UsageRecord.objects.exclude(conversation=None).order_by("created_at", "id").iterator():
        by_conversation.setdefault(record.conversation_id, []).append(record)
    for reply in replies.iterator():
        records = by_conversation.get(reply.conversation_id, [])
        for index, record in enumerate(records):
            same = (record.prompt_tokens, record.completion_tokens, record.cost, record.status) == (
                reply.prompt_tokens,
                reply.completion_tokens,
                reply.cost,
                reply.status,
            )
            if same and record.created_at >= reply.created_at:
                Message.objects.filter(pk=reply.pk).update(usage_id=record.request_id)
                del records[index]
                break


class Migration(migrations.Migration):
    """A reply no longer copies its usage figures: it keeps its request id and joins the usage row by it."""

    dependencies = [
        ("chat", "0002_shared_link"),
        ("billing", "0006_usage_request_id"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="usage",
            field=models.ForeignKey(
                blank=True,
                db_column="request_id",
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="billing.usagerecord",
                to_field="request_id",
            ),
        ),
        migrations.RunPython(link_replies_to_their_usage, migrations.RunPython.noop),
        migrations.RemoveField(model_name="message", name="provider"),
        migrations.RemoveField(model_name="message", name="prompt_tokens"),
        migrations.RemoveField(model_name="message", name="completion_tokens"),
        migrations.RemoveField(model_name="message", name="cost"),
        migrations.RemoveField(model_name="message", name="ttft_ms"),
        migrations.RemoveField(model_name="message", name="latency_ms"),
    ]
