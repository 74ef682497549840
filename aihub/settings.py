"""AI Hub settings. Every value comes from the environment (see README and .env.example)."""

from __future__ import annotations

from pathlib import Path

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from deploy.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
# development | staging | production. Staging and production refuse to start with DEBUG on or a
# missing / development secret key; production also defaults to JSON logs and long HSTS.
ENVIRONMENT = env.str("ENVIRONMENT", default="development" if DEBUG else "production")
if ENVIRONMENT not in ("development", "staging", "production"):
    raise ImproperlyConfigured(f"ENVIRONMENT must be development, staging or production, not {ENVIRONMENT!r}.")
IS_DEPLOYED = ENVIRONMENT != "development"

# A development key is only acceptable while DEBUG is on; production must set its own.
_DEV_SECRET_KEY = "dev-insecure-key-only-for-debug-never-in-production-0123456789"
SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET_KEY if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
if IS_DEPLOYED and DEBUG:
    raise ImproperlyConfigured(f"DEBUG must be off when ENVIRONMENT={ENVIRONMENT}.")
if IS_DEPLOYED and (SECRET_KEY == _DEV_SECRET_KEY or len(SECRET_KEY) < 50 or SECRET_KEY.startswith("django-insecure")):
    raise ImproperlyConfigured(
        f"ENVIRONMENT={ENVIRONMENT} needs its own SECRET_KEY of at least 50 characters: "
        'python -c "import secrets; print(secrets.token_urlsafe(50))"'
    )

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Browser apps on these origins may call /v1 and /api/v1 with an API key; none by default. No
# credentials: a cross-origin request never carries the session cookie's authority.
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_URLS_REGEX = r"^/(v1|api/v1)/"
CORS_ALLOW_CREDENTIALS = False
CORS_ALLOW_HEADERS = (
    "accept",
    "authorization",
    "content-type",
    "last-event-id",
    # What the official openai JavaScript package sends from a browser.
    "openai-organization",
    "openai-project",
    "x-stainless-arch",
    "x-stainless-lang",
    "x-stainless-os",
    "x-stainless-package-version",
    "x-stainless-retry-count",
    "x-stainless-runtime",
    "x-stainless-runtime-version",
    "x-stainless-timeout",
)
CORS_EXPOSE_HEADERS = ("Retry-After",)

INSTALLED_APPS = [
    "daphne",
    "servestatic",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "corsheaders",
    "django_htmx",
    "template_partials",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "accounts",
    "billing",
    "chat",
    "deploy",
]

MIDDLEWARE = [
    "deploy.middleware.ProbeMiddleware",
    # Before the rest: it answers CORS preflights of the APIs before anything else can refuse them.
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "accounts.middleware.StaffTwoFactorMiddleware",
]

# Content-Security-Policy of every page (django-csp): scripts and styles only from this site's own
# files, so no inline script, handler or style runs, and nothing else loads. The websocket is 'self'
# too. The API reference (/api/docs) sets its own policy for Redoc's worker and styles.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
    }
}

ROOT_URLCONF = "aihub.urls"
ASGI_APPLICATION = "aihub.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "billing.context_processors.payment_overdue",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Under ASGI every request may run in another thread: pooled connections, no persistent ones.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # psycopg's pool holds 4 connections unless told: too few for a process whose requests and streams
    # each take one from a thread (PoolTimeouts seen under load).
    # DATABASE_POOL_TIMEOUT: how long a thread waits for a connection (the database down: before its
    # OperationalError, which the ledger retries, then keeps in its outbox).
    pool = (
        {
            "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=20),
            "timeout": env.float("DATABASE_POOL_TIMEOUT", default=30),
        }
        if env.bool("DATABASE_POOL", default=True)
        else False
    )
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = pool
else:
    # SQLite serialises writers; wait instead of failing with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # channels_redis, messages to this process's own sockets handed over in the process (aihub.channel_layer)
            "BACKEND": "aihub.channel_layer.ProcessLocalRedisChannelLayer",
            # redis-py 8 reads with a 5 s socket timeout by default, which a consumer's blocking 5 s
            # BZPOPMIN outlasts: every socket idle for 5 s would die. Reads may wait longer than that.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}]},
        }
    }
    # Django's Redis cache, its connections shared by the process's threads (aihub/redis_cache.py)
    CACHES = {"default": {"BACKEND": "aihub.redis_cache.SharedPoolRedisCache", "LOCATION": REDIS_URL}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "chat:index"
ACCOUNT_LOGOUT_REDIRECT_URL = "landing"

# allauth: the email address is the login; no usernames.
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = env.str("ACCOUNT_EMAIL_VERIFICATION", default="optional")
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGOUT_ON_GET = False

# Two-factor sign-in (allauth.mfa): an authenticator app (TOTP) and single-use recovery codes,
# optional for everyone (Your account -> Two-factor sign-in). Security keys (WebAuthn) are not offered.
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "AI Hub"
# Staff without two-factor sign-in are sent to set it up before the admin and the ops pages.
REQUIRE_STAFF_MFA = env.bool("REQUIRE_STAFF_MFA", default=IS_DEPLOYED)

EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default="django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="AI Hub <noreply@localhost>")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
# Uploads (chat attachments) go through Django's storage API: local files under MEDIA_ROOT by default,
# any other storage by setting, e.g. an S3-compatible store with django-storages:
# UPLOAD_STORAGE_BACKEND=storages.backends.s3.S3Storage
# UPLOAD_STORAGE_OPTIONS={"bucket_name": "aihub", "endpoint_url": "https://s3.example.com", "querystring_auth": true}
# They are never served from MEDIA_URL: only through chat's authorised view (no public URL).
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "data" / "uploads")
STORAGES = {
    "default": {
        "BACKEND": env.str("UPLOAD_STORAGE_BACKEND", default="django.core.files.storage.FileSystemStorage"),
        "OPTIONS": env.json("UPLOAD_STORAGE_OPTIONS", default={}),
    },
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "servestatic.storage.CompressedManifestStaticFilesStorage"
    },
}
SERVESTATIC_USE_FINDERS = DEBUG

# Production hardening; `manage.py check --deploy` is clean with DEBUG off.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_PROXY", default=False) else None
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Worker threads for requests' and replies' sync code (aihub/lanes.py), kept for the process's life; past this
# many busy, requests share them. Fewer than the database pool's connections (20): threads outside the lanes
# (the sockets' session lookup, upkeep) need some too.
SYNC_THREADS = env.int("SYNC_THREADS", default=16)
# `manage.py serve` (the image's server): at SIGTERM, how long open requests may take to finish.
DRAIN_SECONDS = env.float("DRAIN_SECONDS", default=600)
# How many more tokens another model's tokenizer may count than tiktoken (cl100k), which stands in for
# tokenizers we do not have: this share of a model's context is kept free, and of a prompt's count reserved
# beyond it, so that the upstream's own count fits what admission reserved (billing.metering.tokenizer_margin).
TOKENIZER_MARGIN = env.float("TOKENIZER_MARGIN", default=0.10)

# The ledger's crash safety (billing.inflight, billing.outbox). Each server process refreshes the heartbeat of
# its requests in flight every HEARTBEAT_SECONDS (0: no heartbeat and no sweeper in this process); every
# SWEEP_SECONDS (and at start) it settles the requests of processes silent for HEARTBEAT_TIMEOUT_SECONDS
# from their last checkpoint, and drains the outbox.
HEARTBEAT_SECONDS = env.float("HEARTBEAT_SECONDS", default=5)
HEARTBEAT_TIMEOUT_SECONDS = env.float("HEARTBEAT_TIMEOUT_SECONDS", default=20)
SWEEP_SECONDS = env.float("SWEEP_SECONDS", default=5)
# A usage row the database refuses is retried SETTLE_RETRIES times, SETTLE_RETRY_SECONDS apart (doubling),
# then kept in the outbox: Redis when configured, else files in LEDGER_OUTBOX_DIR (on a persistent volume).
SETTLE_RETRIES = env.int("SETTLE_RETRIES", default=4)
SETTLE_RETRY_SECONDS = env.float("SETTLE_RETRY_SECONDS", default=0.5)
LEDGER_OUTBOX_DIR = env.path("LEDGER_OUTBOX_DIR", default=BASE_DIR / "data" / "ledger-outbox")

# /metrics answers these client networks, or a request with "Authorization: Bearer $METRICS_TOKEN".
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=["127.0.0.1/32", "::1/128"])
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

# JSON lines in staging and production (one object a line, with the request id); secrets masked.
LOG_FORMAT = env.str("LOG_FORMAT", default="json" if IS_DEPLOYED else "text")
LOGGING = logging_config(LOG_FORMAT, env.str("LOG_LEVEL", default="INFO"))

# Upstream providers. A provider without its key (or base URL) is simply not offered.
OPENROUTER_API_KEY = env.str("OPENROUTER_API_KEY", default="")
OPENROUTER_BASE_URL = env.str("OPENROUTER_BASE_URL", default="https://openrouter.ai/api/v1")
GEMINI_API_KEY = env.str("GEMINI_API_KEY", default="")
GEMINI_BASE_URL = env.str("GEMINI_BASE_URL", default="https://generativelanguage.googleapis.com/v1beta")
OPENAI_COMPAT_BASE_URL = env.str("OPENAI_COMPAT_BASE_URL", default="")
OPENAI_COMPAT_API_KEY = env.str("OPENAI_COMPAT_API_KEY", default="")
# The OpenAI-compatible server's models that take images (ids as its /models lists them, e.g. llava).
OPENAI_COMPAT_VISION_MODELS = env.list("OPENAI_COMPAT_VISION_MODELS", default=[])
# Fernet key(s) encrypting the keys of providers added in the admin; comma-separated, the first
# encrypts (rotation: put the new key first). Generate: Fernet.generate_key().
PROVIDER_KEYS_SECRET = env.str("PROVIDER_KEYS_SECRET", default="")
# Order in which providers are tried when a model's own provider fails before its first token.
PROVIDER_CHAIN = env.list("PROVIDER_CHAIN", default=["openrouter", "gemini", "openai_compat", "local"])
LOCAL_MODEL_ENABLED = env.bool("LOCAL_MODEL_ENABLED", default=True)
# One thread: measured as fast as two on 2 cores, and it leaves a core to the event loop.
LOCAL_MODEL_THREADS = env.int("LOCAL_MODEL_THREADS", default=1)
# Model instances, each serving one chat at a time (memory per instance: README, "Local model").
LOCAL_MODEL_WORKERS = env.int("LOCAL_MODEL_WORKERS", default=2)
# Context in tokens: SmolLM2's own 8,192 (requests are fitted to it); lower it to save memory.
LOCAL_MODEL_CONTEXT = env.int("LOCAL_MODEL_CONTEXT", default=8192)
# The model that titles new conversations after their first reply ('auto': the best free model; only free
# models are used). Empty: no title requests, the first message cut short stays the title.
CHAT_TITLE_MODEL = env.str("CHAT_TITLE_MODEL", default="auto")
UPSTREAM_CONNECT_TIMEOUT = env.float("UPSTREAM_CONNECT_TIMEOUT", default=5.0)
# Longest silence tolerated between two chunks (and before the first) of an upstream reply.
UPSTREAM_READ_TIMEOUT = env.float("UPSTREAM_READ_TIMEOUT", default=60.0)
# Before the first token, a retryable failure is retried on the same model this many times, with
# jittered backoff (BACKOFF x 2^n at most), while the BUDGET (seconds per model) lasts; then fallback.
UPSTREAM_RETRIES = env.int("UPSTREAM_RETRIES", default=2)
UPSTREAM_RETRY_BUDGET = env.float("UPSTREAM_RETRY_BUDGET", default=4.0)
UPSTREAM_RETRY_BACKOFF = env.float("UPSTREAM_RETRY_BACKOFF", default=0.25)
# Circuit breakers (chat/gateway/breaker.py): after this many consecutive failures a provider (or
# model) is skipped for the cooldown (seconds), then one request probes it.
BREAKER_FAILURES = env.int("BREAKER_FAILURES", default=5)
BREAKER_COOLDOWN = env.float("BREAKER_COOLDOWN", default=30.0)
BREAKER_PROBE_TIMEOUT = env.int("BREAKER_PROBE_TIMEOUT", default=30)

# Payments. Both set: upgrades go through Stripe Checkout and take effect on its signed webhook;
# otherwise an operator assigns plans in admin.
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="https://api.stripe.com")
# Without Stripe, people request paid plans and operators approve them in admin. A demo server may
# let anyone take a paid plan for free instead; never on by default.
BILLING_SELF_SERVICE_UPGRADES = env.bool("BILLING_SELF_SERVICE_UPGRADES", default=False)
# Days a Stripe renewal may stay unpaid (past due, a banner shows) before the account moves to Free.
BILLING_PAYMENT_GRACE_DAYS = env.int("BILLING_PAYMENT_GRACE_DAYS", default=7)
# Operators mailed about plan requests and Enterprise enquiries (comma-separated addresses).
ADMINS = [(address, address) for address in env.list("ADMINS", default=[])]
SERVER_EMAIL = env.str("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)

# Request bodies: the APIs take images inline (data: URLs), so their bodies may be this large; any body
# larger than its path's limit is refused at the ASGI edge (aihub/body_limit.py) before Django reads it.
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=16 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES
# Uploads (chat attachments): the largest file any plan allows; each plan has its own limit below it.
UPLOAD_MAX_BYTES = env.int("UPLOAD_MAX_BYTES", default=20 * 1024 * 1024)
# Other pages (forms): Django's own default.
PAGE_MAX_BODY_BYTES = env.int("PAGE_MAX_BODY_BYTES", default=2_621_440)

# Web search ("Search the web" in the composer, GET /api/v1/search). WEB_SEARCH_BACKEND picks
# "searxng" or "brave"; unset, whichever is configured (SearXNG first); neither: no web search.
WEB_SEARCH_BACKEND = env.str("WEB_SEARCH_BACKEND", default="")
SEARXNG_URL = env.str("SEARXNG_URL", default="")
BRAVE_SEARCH_API_KEY = env.str("BRAVE_SEARCH_API_KEY", default="")
BRAVE_SEARCH_BASE_URL = env.str("BRAVE_SEARCH_BASE_URL", default="https://api.search.brave.com/res/v1")
WEB_SEARCH_TIMEOUT = env.float("WEB_SEARCH_TIMEOUT", default=8.0)
WEB_SEARCH_RESULTS = env.int("WEB_SEARCH_RESULTS", default=5)
