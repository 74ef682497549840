from django.conf import settings
from django.db.models.signals import post_save
from django.dispatch import receiver

from .models import Plan
from .subscriptions import DEFAULT_PLAN, start_subscription


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def subscribe_new_users_to_free(sender, instance, created, raw=False, **kwargs):
    if created and not raw:
        start_subscription(instance, Plan.objects.get(slug=DEFAULT_PLAN))
