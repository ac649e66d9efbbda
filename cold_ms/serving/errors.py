"""Every error the server sends, in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.

Statuses: 400 a value this server refuses, 401 no or a wrong API key, 404 an unknown model
or route, 413 a body over the limit, 422 a body that is not the API's shape (malformed
JSON, a missing field, a wrong type), 429 a full queue, 503 still loading.
"""
import json
import logging

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

log = logging.getLogger("cold_ms.serve")

TYPES = {401: "authentication_error", 429: "rate_limit_error", 500: "server_error", 503: "server_error"}
# FastAPI's own refusals (unknown route, wrong method) in OpenAI's words
HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


class ApiError(Exception):
    def __init__(self, status, message, code=None, param=None, headers=None):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.headers = status, message, code, param, headers

    def response(self):
        body = {"error": {"message": self.message, "type": TYPES.get(self.status, "invalid_request_error"),
                          "param": self.param, "code": self.code}}
        # ASCII-escaped: a message quoting the client's text stays valid even for lone surrogates
        return Response(json.dumps(body, ensure_ascii=True), self.status, headers=self.headers,
                        media_type="application/json")


def field_path(loc):
    """('body', 'messages', 0, 'role') -> 'messages[0].role'."""
    path = ""
    for part in loc:
        if part == "body":
            continue
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _validation_error(e: RequestValidationError):
    """422 for the first problem FastAPI found, named by the field, without pydantic's internals."""
    err = e.errors()[0]
    param = field_path(err["loc"]) or None
    if err["type"] == "json_invalid":
        return ApiError(422, f"malformed JSON body ({err.get('ctx', {}).get('error', err['msg'])})", "invalid_json")
    if param is None:
        return ApiError(422, "the request body must be a JSON object (Content-Type: application/json)",
                        "invalid_body")
    if err["type"] == "missing":
        return ApiError(422, f"missing required argument '{param}'", "missing_required_parameter", param)
    if err["type"] == "extra_forbidden":
        return ApiError(422, f"unrecognized request argument '{param}'", "unrecognized_argument", param)
    return ApiError(422, f"{param}: {err['msg']}", "invalid_type", param)


def install(app):
    """Route FastAPI's refusals and any unexpected failure through the OpenAI error shape."""
    @app.exception_handler(ApiError)
    async def _api(_, e: ApiError):
        return e.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_, e: RequestValidationError):
        return _validation_error(e).response()

    @app.exception_handler(HTTPException)
    async def _http(_, e: HTTPException):
        if e.status_code == 400:  # FastAPI's word for a body json.loads failed on other than by syntax
            return ApiError(422, "malformed JSON body (not UTF-8 text, or nested too deeply)", "invalid_json").response()
        return ApiError(e.status_code, str(e.detail), HTTP_CODES.get(e.status_code)).response()

    @app.exception_handler(Exception)
    async def _unexpected(_, e: Exception):
        log.exception("unexpected error")
        return ApiError(500, "internal server error", "internal_error").response()
