"""The HTTP API: OpenAI-compatible under /v1, the REST API under /api/v1, their schema and docs."""
