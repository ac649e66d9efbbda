"""Refuse request bodies over a size limit (413) before they are read into memory."""
from fastapi.responses import JSONResponse


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: checks Content-Length, and counts bytes of chunked bodies as they arrive."""

    def __init__(self, app, limit):
        self.app, self.limit = app, limit

    def _refuse(self):
        return JSONResponse({"error": {"message": f"request body over {self.limit} bytes",
                                       "type": "invalid_request_error", "code": 413}}, 413)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._refuse()(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._refuse()(scope, receive, send)
