"""The API key, checked before anything else reads the request (its body included)."""
import hmac

from cold_ms.serving.errors import ApiError
from cold_ms.serving.limits import refuse

OPEN_PATHS = ("/health",)  # the platform's health check carries no key


class ApiKey:
    """ASGI middleware: every path but OPEN_PATHS needs `Authorization: Bearer <key>` (401 otherwise)."""

    def __init__(self, app, key):
        self.app, self.expected = app, f"Bearer {key}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):  # constant time: no key by timing
                error = ApiError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                                 "invalid_api_key")
                return await refuse(error, scope, receive, send)
        await self.app(scope, receive, send)
