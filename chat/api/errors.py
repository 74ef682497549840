"""Errors in OpenAI's shape: {"error": {"message", "type", "param", "code"}} with the matching status."""

from __future__ import annotations

import logging

from django.http import JsonResponse

from billing.limits import LimitExceeded
from chat.gateway.providers.base import ProviderError

logger = logging.getLogger(__name__)

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    502: "api_error",
    504: "api_error",
}


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, code: str, *, param: str | None = None, retry_after: int | None = None
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.retry_after = retry_after

    @property
    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": ERROR_TYPES.get(self.status, "api_error"),
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JsonResponse:
        response = JsonResponse(self.body, status=self.status)
        if self.retry_after is not None:
            response["Retry-After"] = str(self.retry_after)
        return response


def upstream_error(exc: ProviderError) -> ApiError:
    """After the fallback chain: a timeout is 504, any other upstream failure 502. The upstream's own
    text is logged, not passed on."""
    logger.warning("upstream failure answered to an API client: %s", exc)
    if exc.outcome == "timeout":
        return ApiError(504, f"The model did not answer in time: {exc.public_message}.", "upstream_timeout")
    return ApiError(502, f"The model's provider failed: {exc.public_message}.", "upstream_error")


def failure_error(exc: Exception) -> ApiError | None:
    """The API error for a failed generation, or None when the exception is not ours to answer."""
    if isinstance(exc, ProviderError):
        return upstream_error(exc)
    if isinstance(exc, LimitExceeded):  # refused by the plan before any upstream call
        return ApiError(exc.http_status, str(exc), exc.code, retry_after=exc.retry_after)
    return None
