"""GET /api/v1/search?q=: a web search through the configured backend, metered and limited per plan."""

from __future__ import annotations

from django.http import JsonResponse

from billing.limits import LimitExceeded
from chat.gateway import search

from .auth import authenticate_request
from .decorators import api_view
from .errors import ApiError


@api_view("GET")
async def web_search(request):
    caller = await authenticate_request(request, allow_session=True)
    raw = request.GET.get("q", "")
    query = raw.strip()
    if not query:
        raise ApiError(400, "'q' is required: the words to search for.", "missing_required_parameter", param="q")
    if len(raw) > search.MAX_QUERY_CHARS:  # as sent, as the schema's maxLength reads it
        raise ApiError(400, f"'q' is longer than {search.MAX_QUERY_CHARS} characters.", "invalid_value", param="q")
    try:
        results = await search.web_search(user=caller.user, query=query, api_key=caller.api_key)
    except search.SearchUnavailable as exc:
        raise ApiError(503, str(exc), "search_unavailable") from None
    except LimitExceeded as exc:
        raise ApiError(exc.http_status, str(exc), exc.code, retry_after=exc.retry_after) from None
    except search.SearchTimeout as exc:
        raise ApiError(504, f"The web search timed out: {exc}.", "search_timeout") from None
    except search.SearchFailed as exc:
        raise ApiError(502, f"The web search failed: {exc}.", "search_failed") from None
    return JsonResponse({"object": "search", "query": query, "results": [r.as_dict() for r in results]})
