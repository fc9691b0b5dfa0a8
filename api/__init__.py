"""The API for programs: tokens, the REST API under /api/v1, bots and incoming webhooks (docs/api.md)."""
