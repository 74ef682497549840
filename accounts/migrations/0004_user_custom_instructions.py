from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_user_default_model"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="custom_instructions",
            field=models.TextField(
                blank=True,
                help_text="Sent first with every chat request, before the conversation's own system prompt.",
            ),
        ),
    ]
