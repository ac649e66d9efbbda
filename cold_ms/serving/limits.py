"""Refuse request bodies over a size limit (413) however they arrive, holding at most the limit."""
import anyio

from cold_ms.serving.errors import ApiError

# Before a refusal the rest of the body is read and dropped (never kept), up to these bounds:
# a server that closes with unread bytes resets the connection, and the client loses the answer.
DRAIN_BYTES = 16 << 20
DRAIN_SECONDS = 5


async def refuse(error, scope, receive, send):
    """Answer `error` (an ApiError) and close the connection, after draining the body."""
    with anyio.move_on_after(DRAIN_SECONDS):
        dropped = 0
        while dropped <= DRAIN_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client is gone: nobody to answer
            dropped += len(message.get("body", b""))
            if not message.get("more_body"):
                break
    response = error.response()
    response.headers["connection"] = "close"
    await response(scope, receive, send)


class BodyLimit:
    """ASGI middleware: reads the body (Content-Length or chunked) up to `limit` bytes and hands
    it on; one byte more and the answer is 413, whatever the framework would have said."""

    def __init__(self, app, limit):
        self.app, self.limit = app, limit

    def _too_large(self):
        return ApiError(413, f"request body over {self.limit} bytes", "request_too_large")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return await refuse(self._too_large(), scope, receive, send)
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before its body arrived
            body += message.get("body", b"")
            if len(body) > self.limit:
                del body[:]
                return await refuse(self._too_large(), scope, receive, send)
            if not message.get("more_body"):
                break
        replayed = False

        async def replay():
            """The whole body once, then the connection's own messages (a disconnect)."""
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)
