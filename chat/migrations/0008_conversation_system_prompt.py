from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0007_attachments_and_images"),
    ]

    operations = [
        migrations.AddField(
            model_name="conversation",
            name="system_prompt",
            field=models.TextField(blank=True, help_text="Sent first with every request of this conversation."),
        ),
    ]
