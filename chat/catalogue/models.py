"""The catalogue's rows: one AIModel per model a provider serves, with its prices."""

from __future__ import annotations

from decimal import Decimal

from django.db import models


class Provider(models.TextChoices):
    OPENROUTER = "openrouter", "OpenRouter"
    GEMINI = "gemini", "Google Gemini"
    OPENAI_COMPAT = "openai_compat", "OpenAI-compatible"
    LOCAL = "local", "Local (CPU)"


class AIModelQuerySet(models.QuerySet):
    def active(self):
        return self.filter(is_active=True)

    def chat(self):
        return self.filter(kind=AIModel.Kind.CHAT)

    def free(self):
        return self.filter(input_price_per_m=0, output_price_per_m=0)


class AIModel(models.Model):
    """One model of the catalogue, as one provider serves it."""

    class Kind(models.TextChoices):
        CHAT = "chat"
        EMBEDDING = "embedding", "Embedding (POST /v1/embeddings only)"

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
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.CHAT)
    # Where the provider passes tools / response_format on, not every model takes them: OpenRouter's
    # list says which do (refresh_models); for other servers an operator may clear them in admin.
    supports_tools = models.BooleanField(default=True, help_text="Takes tools (function calling).")
    # Images (uploads in the chat, image parts on /v1) go only to models that take them: OpenRouter's list
    # says which (input_modalities), Gemini's models all do, an OpenAI-compatible server's are named in
    # OPENAI_COMPAT_VISION_MODELS or flagged in admin.
    supports_images = models.BooleanField(default=False, help_text="Takes images (image parts).")
    supports_response_format = models.BooleanField(
        default=True, help_text="Takes response_format (JSON mode, JSON schema)."
    )
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
