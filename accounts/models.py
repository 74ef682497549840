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
        stale = models.Q(last_used_at__isnull=True) | models.Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
        if type(self).objects.filter(stale, pk=self.pk).update(last_used_at=now):
            self.last_used_at = now

    @property
    def status(self) -> str:
        """active, expired or revoked."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return "expired"
        return "active"
