"""The central's REST and WebSocket API under `/api/v1` (described in `openapi.json`)."""
