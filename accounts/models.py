from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models
from django.utils import timezone


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email, password, **extra_fields):
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email), **extra_fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", False)
        extra_fields.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra_fields)

    def create_superuser(self, email, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", True)
        extra_fields.setdefault("is_superuser", True)
        return self._create_user(email, password, **extra_fields)


class User(AbstractUser):
    """A person who signs in with an email address (no username)."""

    username = None  # type: ignore[assignment]  # the email is the login
    email = models.EmailField("email address", unique=True)
    default_model = models.ForeignKey(
        "chat.AIModel",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The model a new chat starts with; empty means the model of the last chat.",
    )

    class Theme(models.TextChoices):
        SYSTEM = "system", "Auto (as the device)"
        DARK = "dark", "Dark"
        LIGHT = "light", "Light"

    theme = models.CharField(max_length=10, choices=Theme.choices, default=Theme.SYSTEM)
    custom_instructions = models.TextField(
        blank=True, help_text="Sent first with every chat request, before the conversation's own system prompt."
    )
    deleted_at = models.DateTimeField(
        null=True, blank=True, help_text="The person deleted their account: this row is an anonymous tombstone."
    )

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    objects: ClassVar[UserManager] = UserManager()  # type: ignore[assignment]  # email, not username

    def __str__(self):
        return self.email


LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiKey(models.Model):
    """A developer's key for the API. Only a hash of the secret is stored."""

    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, help_text="Shown in lists; used to look the key up.")
    hashed_key = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the whole key.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    allowed_models = models.ManyToManyField("chat.AIModel", blank=True, help_text="Empty means every model.")
    monthly_budget = models.DecimalField("monthly budget (USD)", max_digits=12, decimal_places=2, null=True, blank=True)

    # Set on keys looked up by accounts.api_keys.authenticate: the pks of `allowed_models`.
    allowed_model_ids: frozenset[int]

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    def mark_used(self) -> None:
        """Record a use, at most once a minute: a busy key's row is not rewritten (and locked) by every
        request, and a row that is already fresh is not touched at all."""
        now = timezone.now()
        if self.last_used_at is not None and self.last_used_at >= now - LAST_USED_RESOLUTION:
            return  # this copy (often a cached key) saw a fresh mark: the row is at least as fresh, no query
        # This copy is marked first: the requests sharing it (a cached key) meanwhile send nothing either.
        self.last_used_at = now
        stale = models.Q(last_used_at__isnull=True) | models.Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
        type(self).objects.filter(stale, pk=self.pk).update(last_used_at=now)

    @property
    def status(self) -> str:
        """active, expired or revoked."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return "expired"
        return "active"


class AuditEntry(models.Model):
    """One security-relevant action: who did it, to what, when. Written by accounts.audit.record only;
    read-only in the admin. The target is named by type, id and text, so an entry outlives its target."""

    class Action(models.TextChoices):
        PLAN_CHANGED = "plan.changed", "plan changed"
        PLAN_CHANGE_SCHEDULED = "plan.change_scheduled", "plan change scheduled"
        PLAN_CHANGE_DROPPED = "plan.change_dropped", "scheduled plan change dropped"
        PLAN_REQUESTED = "plan.requested", "plan requested"
        PLAN_REQUEST_APPROVED = "plan_request.approved", "plan request approved"
        PLAN_REQUEST_DECLINED = "plan_request.declined", "plan request declined"
        KEY_ISSUED = "api_key.issued", "API key issued"
        KEY_REVOKED = "api_key.revoked", "API key revoked"
        STAFF_SIGNED_IN = "staff.signed_in", "staff signed in"
        TWO_FACTOR_ADDED = "two_factor.added", "two-factor method added"
        TWO_FACTOR_REMOVED = "two_factor.removed", "two-factor method removed"
        TWO_FACTOR_RESET = "two_factor.reset", "recovery codes regenerated"
        ADMIN_ADDED = "admin.added", "added in the admin"
        ADMIN_CHANGED = "admin.changed", "changed in the admin"
        ADMIN_DELETED = "admin.deleted", "deleted in the admin"
        ACCOUNT_DELETED = "account.deleted", "account deleted"

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        "accounts.User",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Empty: the system (Stripe's webhooks, a period ending, a command).",
    )
    action = models.CharField(max_length=40, choices=Action.choices, db_index=True)
    target_type = models.CharField(max_length=100, blank=True, help_text="app_label.model")
    target_id = models.CharField(max_length=64, blank=True)
    target_repr = models.CharField("target", max_length=200, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "audit log entry"
        verbose_name_plural = "audit log"
        indexes = [models.Index(fields=["target_type", "target_id"], name="audit_target")]

    def __str__(self):
        return f"{self.get_action_display()}: {self.target_repr}"
