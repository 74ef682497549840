from decimal import Decimal

from django.db import migrations

PLANS = [
    dict(slug="free", name="Free", monthly_price=Decimal("0"), monthly_token_quota=200_000,
         monthly_credit_quota=Decimal("0"), requests_per_minute=10, tokens_per_minute=20_000,
         max_concurrent_streams=1, max_api_keys=1, max_output_tokens=1024, free_models_only=True, sort_order=0),
    dict(slug="developer", name="Developer", monthly_price=Decimal("29"), monthly_token_quota=5_000_000,
         monthly_credit_quota=Decimal("25"), requests_per_minute=60, tokens_per_minute=200_000,
         max_concurrent_streams=4, max_api_keys=5, max_output_tokens=4096, sort_order=1),
    dict(slug="pro", name="Pro", monthly_price=Decimal("99"), monthly_token_quota=25_000_000,
         monthly_credit_quota=Decimal("90"), requests_per_minute=300, tokens_per_minute=1_000_000,
         max_concurrent_streams=16, max_api_keys=25, max_output_tokens=8192, sort_order=2),
    dict(slug="enterprise", name="Enterprise", monthly_price=None, monthly_token_quota=None,
         monthly_credit_quota=None, requests_per_minute=None, tokens_per_minute=None,
         max_concurrent_streams=None, max_api_keys=None, max_output_tokens=None, sort_order=3),
]


def seed_plans(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    for plan in PLANS:
        Plan.objects.update_or_create(slug=plan["slug"], defaults=plan)


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]

    operations = [migrations.RunPython(seed_plans, migrations.RunPython.noop)]
