"""Who is calling the API: a Bearer API key, or (for /api/v1 only) the logged-in session with CSRF."""

from __future__ import annotations

from dataclasses import dataclass

from django.middleware.csrf import CsrfViewMiddleware

from accounts import api_keys
from accounts.api_keys import KeyRefused, authenticate
from accounts.models import ApiKey, User
from aihub import shared_state
from billing import rollups
from chat.catalogue import lookup as catalogue
from chat.catalogue.lookup import UnknownModel
from chat.gateway import breaker

from .errors import ApiError

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


@dataclass(frozen=True)
class Caller:
    user: User
    api_key: ApiKey | None = None

    def may_use(self, model) -> bool:
        """The key's model allow-list (empty: every model). 'auto' (None) only without a list."""
        if self.api_key is None or not self.api_key.allowed_model_ids:
            return True
        return model is not None and model.pk in self.api_key.allowed_model_ids


def _bearer_token(request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def from_own_page(request) -> bool:
    """Whether the browser says this request comes from one of this site's own pages (or was typed in):
    Sec-Fetch-Site where it sends it, else an Origin equal to this site's. Neither: not shown to be."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    return origin is not None and origin == f"{request.scheme}://{request.get_host()}"


def _csrf_refusal(request):
    """What CsrfViewMiddleware would answer for this request; None when it passes."""
    check = CsrfViewMiddleware(lambda r: None)
    check.process_request(request)
    return check.process_view(request, None, (), {})


async def authenticate_request(request, *, allow_session: bool = False, spends: bool = False) -> Caller:
    """The caller, or ApiError 401 (403 for a session request failing CSRF). API views are csrf_exempt:
    a Bearer key is not sent by browsers on their own, so CSRF is checked here for sessions only.

    `spends`: a GET that starts a generation (EventSource can only GET) escapes the CSRF check, so
    the session is taken for it only from this site's own pages (`from_own_page`)."""
    if "Authorization" in request.headers:
        token = _bearer_token(request)
        if token is None:
            raise ApiError(401, "The Authorization header must be 'Bearer <API key>'.", "invalid_api_key")
        # The key's version now; at admission the catalogue's (chat.catalogue.lookup.current), the breakers'
        # (chat.gateway.breaker) and the usage sums' (billing.rollups, on plans with a quota): one round trip.
        await shared_state.read_ahead(
            api_keys.VERSION_CACHE_KEY, catalogue.VERSION_CACHE_KEY, breaker.VERSION_KEY, rollups.GENERATION_KEY
        )
        try:
            api_key = await authenticate(token)
        except KeyRefused as exc:
            raise ApiError(401, str(exc), exc.code) from None
        return Caller(user=api_key.user, api_key=api_key)
    if allow_session:
        user = await request.auser()
        if user.is_authenticated:
            if request.method not in SAFE_METHODS and _csrf_refusal(request) is not None:
                raise ApiError(
                    403, "CSRF verification failed: send the X-CSRFToken header with session auth.", "csrf_failed"
                )
            if spends and request.method in SAFE_METHODS and not from_own_page(request):
                raise ApiError(
                    403,
                    "The session is accepted here only from this site's own pages: send "
                    "'Authorization: Bearer <API key>' instead.",
                    "cross_site_session",
                )
            return Caller(user=user)
    raise ApiError(401, "Missing API key: send 'Authorization: Bearer <API key>'.", "missing_api_key")


def allowed_model(caller: Caller, slug: str, models: catalogue.Catalogue | None = None, kind: str = "chat"):
    """The catalogue model (None for 'auto'): 404 when unknown, 403 when the key may not use it, 400
    when it is not of this kind (a chat model for embeddings, or the other way round). Sync."""
    try:
        model = catalogue.active_model(slug, models)
    except UnknownModel:
        raise ApiError(
            404, f"The model '{slug}' does not exist. GET /v1/models lists them.", "model_not_found", param="model"
        ) from None
    if not caller.may_use(model):
        raise ApiError(
            403, f"This API key is not allowed to use the model '{slug}'.", "model_not_allowed", param="model"
        )
    if (model.kind if model is not None else "chat") != kind:
        where = "POST /v1/embeddings" if kind == "embedding" else "chat completions"
        raise ApiError(400, f"The model '{slug}' is not for {where}.", "wrong_model_kind", param="model")
    return model
