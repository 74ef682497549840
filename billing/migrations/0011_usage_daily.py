import django.db.models.deletion
from decimal import Decimal
from django.conf import settings
from django.db import migrations, models


def backfill(apps, schema_editor):
    """The rollups of the usage rows there are already (later rows add themselves as they settle)."""
    connection = schema_editor.connection
    day = "DATE(created_at)" if connection.vendor == "sqlite" else "(created_at AT TIME ZONE 'UTC')::date"
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO billing_usagedaily (user_id, day, api_key_id, model_slug, provider, request_count, "
            f"prompt_tokens, completion_tokens, total_cost) SELECT user_id, {day}, api_key_id, model_slug, provider, "
            "COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost) FROM billing_usagerecord "
            f"GROUP BY user_id, {day}, api_key_id, model_slug, provider"
        )


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0001_initial"),
        ("billing", "0010_usage_reported_cost"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="UsageDaily",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("day", models.DateField()),
                ("model_slug", models.CharField(max_length=200)),
                ("provider", models.CharField(blank=True, max_length=20)),
                ("request_count", models.PositiveIntegerField(default=0)),
                ("prompt_tokens", models.PositiveBigIntegerField(default=0)),
                ("completion_tokens", models.PositiveBigIntegerField(default=0)),
                ("total_cost", models.DecimalField(decimal_places=8, default=Decimal("0"), max_digits=18)),
                (
                    "api_key",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="usage_daily",
                        to="accounts.apikey",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to=settings.AUTH_USER_MODEL
                    ),
                ),
            ],
            options={
                "verbose_name_plural": "usage per day",
                "indexes": [models.Index(fields=["api_key", "day"], name="usage_daily_key_day")],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("api_key__isnull", False)),
                        fields=("user", "day", "api_key", "model_slug", "provider"),
                        name="usage_daily_key_unique",
                    ),
                    models.UniqueConstraint(
                        condition=models.Q(("api_key__isnull", True)),
                        fields=("user", "day", "model_slug", "provider"),
                        name="usage_daily_keyless_unique",
                    ),
                ],
            },
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
