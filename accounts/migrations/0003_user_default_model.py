import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_initial"),
        ("chat", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="default_model",
            field=models.ForeignKey(
                blank=True,
                help_text="The model a new chat starts with; empty means the model of the last chat.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="chat.aimodel",
            ),
        ),
    ]
