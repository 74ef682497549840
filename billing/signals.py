from django.conf import settings
from django.db.models.signals import post_save, pre_delete
from django.dispatch import receiver

from accounts.models import ApiKey

from . import rollups
from .models import Plan
from .subscriptions import DEFAULT_PLAN, start_subscription


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def subscribe_new_users_to_free(sender, instance, created, raw=False, **kwargs):
    if created and not raw:
        start_subscription(instance, Plan.objects.get(slug=DEFAULT_PLAN))


@receiver(pre_delete, sender=ApiKey)
def fold_deleted_keys_rollups(sender, instance, **kwargs):
    """Its usage rows keep no key once it is gone (SET_NULL): nor do their rollups."""
    rollups.fold_key(instance.pk)
