from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_user_custom_instructions"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="theme",
            field=models.CharField(
                choices=[("system", "Auto (as the device)"), ("dark", "Dark"), ("light", "Light")],
                default="system",
                max_length=10,
            ),
        ),
    ]
