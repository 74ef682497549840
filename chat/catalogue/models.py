"""The catalogue's rows: one AIModel per model a provider serves, with its prices."""

from __future__ import annotations

from decimal import Decimal

from django.db import models


class Provider(models.TextChoices):
    OPENROUTER = "openrouter", "OpenRouter"
    GEMINI = "gemini", "Google Gemini"
    OPENAI_COMPAT = "openai_compat", "OpenAI-compatible"
    LOCAL = "local", "Local (CPU)"


class ProviderEndpoint(models.Model):
    """A provider an operator added in the admin: any number of OpenAI-compatible servers, OpenRouter or
    Gemini accounts, each under its own name, which is its models' provider and their slugs' prefix.
    Its key is stored encrypted (provider_keys.py). The providers set in the environment still work."""

    class Kind(models.TextChoices):
        OPENAI_COMPAT = "openai_compat", "OpenAI-compatible (Ollama, vLLM, LM Studio...)"
        OPENROUTER = "openrouter", "OpenRouter"
        GEMINI = "gemini", "Google Gemini"

    name = models.SlugField(
        max_length=20, unique=True, help_text="Short, e.g. 'lab-vllm': its models are '<name>/<model id>'."
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    base_url = models.URLField(
        max_length=500,
        help_text="e.g. http://10.0.0.5:8000/v1, https://openrouter.ai/api/v1, "
        "https://generativelanguage.googleapis.com/v1beta",
    )
    api_key_encrypted = models.TextField(blank=True, editable=False)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "provider"

    def __str__(self):
        return self.name

    def clean(self):
        from django.core.exceptions import ValidationError

        if self.name in Provider.values:
            raise ValidationError({"name": "This name belongs to a provider set in the environment."})

    @property
    def api_key(self) -> str:
        from .provider_keys import decrypt

        return decrypt(self.api_key_encrypted) if self.api_key_encrypted else ""

    def set_api_key(self, plain: str) -> None:
        from .provider_keys import encrypt

        self.api_key_encrypted = encrypt(plain) if plain else ""


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
    provider = models.CharField(
        max_length=20, help_text="openrouter, gemini, openai_compat, local, or the name of a provider added here."
    )
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
