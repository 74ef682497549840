from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.urls import reverse


class Provider(models.TextChoices):
    OPENROUTER = "openrouter", "OpenRouter"
    GEMINI = "gemini", "Google Gemini"
    OPENAI_COMPAT = "openai_compat", "OpenAI-compatible"
    LOCAL = "local", "Local (CPU)"


class AIModelQuerySet(models.QuerySet):
    def active(self):
        return self.filter(is_active=True)

    def free(self):
        return self.filter(input_price_per_m=0, output_price_per_m=0)


class AIModel(models.Model):
    """One model of the catalogue, as one provider serves it."""

    slug = models.CharField(max_length=200, unique=True, help_text="Public id used by the API and the model picker.")
    provider = models.CharField(max_length=20, choices=Provider.choices)
    upstream_id = models.CharField(max_length=200, help_text="The id the provider knows the model by.")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    context_length = models.PositiveIntegerField(null=True, blank=True)
    input_price_per_m = models.DecimalField(
        "USD per 1M input tokens", max_digits=14, decimal_places=6, default=Decimal(0)
    )
    output_price_per_m = models.DecimalField(
        "USD per 1M output tokens", max_digits=14, decimal_places=6, default=Decimal(0)
    )
    is_active = models.BooleanField(default=True)
    auto_priority = models.PositiveIntegerField(
        default=1000, help_text="Lower is tried first when the user picks 'auto' (free models only)."
    )
    fallback = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        help_text="Tried next when this model's provider fails before the first token.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AIModelQuerySet.as_manager()

    class Meta:
        ordering = ["provider", "name"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "upstream_id"], name="unique_upstream_model"),
        ]
        verbose_name = "AI model"

    def __str__(self):
        return self.slug

    @property
    def is_free(self) -> bool:
        return not self.input_price_per_m and not self.output_price_per_m

    @property
    def is_local(self) -> bool:
        return self.provider == Provider.LOCAL

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        """Price of a request in USD, exact (Decimal), from the catalogue prices."""
        million = Decimal(1_000_000)
        return (
            Decimal(prompt_tokens) * self.input_price_per_m + Decimal(completion_tokens) * self.output_price_per_m
        ) / million


@receiver(post_save, sender=AIModel)
@receiver(post_delete, sender=AIModel)
def _catalogue_row_changed(**kwargs) -> None:
    from .catalogue import catalogue_changed  # catalogue.py imports this module

    catalogue_changed()


class Conversation(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, default="New chat")
    model = models.ForeignKey(AIModel, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["user", "-updated_at"], name="conversation_user_recent")]

    def __str__(self):
        return self.title

    def get_absolute_url(self):
        return reverse("chat:conversation", args=[self.pk])


class Message(models.Model):
    class Role(models.TextChoices):
        SYSTEM = "system"
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        STREAMING = "streaming"
        COMPLETE = "complete"
        STOPPED = "stopped"
        FAILED = "failed"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.COMPLETE)
    error = models.TextField(blank=True)
    model = models.ForeignKey(AIModel, null=True, blank=True, on_delete=models.SET_NULL)
    provider = models.CharField(max_length=20, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal(0))
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"{self.role}: {self.content[:40]}"
