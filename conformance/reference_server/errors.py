"""The OpenAI error envelope the reference server answers every error with."""

from __future__ import annotations

from starlette.responses import JSONResponse, PlainTextResponse, Response


class ApiError(Exception):
    """An OpenAI error envelope to answer with."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def envelope(self) -> dict[str, dict[str, str | None]]:
        """OpenAI's error body, built here only: `{"error": {"message", "type", "param", "code"}}`."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self, rule_breaks: frozenset[str] = frozenset(), headers: dict[str, str] | None = None) -> Response:
        status = 500 if "error-500-on-invalid" in rule_breaks and self.status == 400 else self.status
        if "error-plain-text" in rule_breaks:
            return PlainTextResponse(self.message, status_code=status, headers=headers)
        return JSONResponse(self.envelope(), status_code=status, headers=headers)


def bad_param(param: str, message: str) -> ApiError:
    return ApiError(400, message, param=param)
