import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def link_each_message_to_the_one_before(apps, schema_editor):
    """Conversations so far are linear: each message follows the one before it (by id); all are on the path."""
    Message = apps.get_model("chat", "Message")
    previous = Message.objects.filter(conversation_id=OuterRef("conversation_id"), id__lt=OuterRef("id"))
    Message.objects.update(parent_id=Subquery(previous.order_by("-id").values("id")[:1]))


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0010_message_first_sent"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="parent",
            field=models.ForeignKey(
                blank=True,
                help_text="The message this one follows (empty for the first message and its edits).",
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="children",
                to="chat.message",
            ),
        ),
        migrations.AddField(
            model_name="message",
            name="on_path",
            field=models.BooleanField(default=True, help_text="On the branch shown and sent upstream."),
        ),
        migrations.AddField(
            model_name="message",
            name="chosen_at",
            field=models.DateTimeField(
                default=django.utils.timezone.now,
                help_text="When it was last put on the path: going back to a branch shows its most recently chosen versions.",
            ),
        ),
        migrations.RunPython(link_each_message_to_the_one_before, migrations.RunPython.noop),
    ]
