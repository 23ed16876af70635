"""Problem bodies (RFC 9457): what every HTTP error of pvsim answers, API and endpoint alike.

`{"title": "Bad Request", "status": 400, "detail": "limit must be a whole number, got 'x'"}`,
served as application/problem+json, plus any extra members a status needs (`allow` on 405).
"""

from __future__ import annotations

import http

CONTENT_TYPE = "application/problem+json"


def problem(status: int, detail: str, **extra: object) -> dict:
    """The body for an error of `status`, its title the standard reason phrase."""
    return {"title": reason(status), "status": status, "detail": detail, **extra}


def reason(status: int) -> str:
    """The reason phrase of `status` ("Error" for a code HTTP does not name)."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"
