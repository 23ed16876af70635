"""How the daemons' HTTP endpoint writes an answer: JSON or problem bodies, never a traceback.

Two writers share the encoding: `respond` for the WSGI app (a worker thread answers through
waitress), `raw_problem` for waitress's loop thread, which answers where no task runs (a request
past its deadline, a connection refused at once) with the bytes of a whole HTTP/1.1 answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from pvsim.api.problem import CONTENT_TYPE as PROBLEM_TYPE, problem, reason


def respond(start_response: Callable, status: int, body: object,
            headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    """Answer a WSGI request with `body` as JSON: a problem body (an error with a title) as
    application/problem+json, anything else as application/json; never cached."""
    payload = b"" if body is None else json_bytes(body)
    is_problem = status >= 400 and isinstance(body, dict) and "title" in body
    content_type = PROBLEM_TYPE if is_problem else "application/json"
    start_response(f"{status} {reason(status)}", [("Content-Type", content_type),
                                                  ("Content-Length", str(len(payload))),
                                                  ("Cache-Control", "no-store"), *(headers or [])])
    return [payload]


def json_bytes(body: object) -> bytes:
    """UTF-8 JSON; text UTF-8 cannot hold (a lone surrogate the API let through into an error
    detail) is sent as JSON escapes rather than failing the answer."""
    text = json.dumps(body, ensure_ascii=False, allow_nan=False) + "\n"
    try:
        return text.encode()
    except UnicodeEncodeError:
        return (json.dumps(body, allow_nan=False) + "\n").encode()


def raw_problem(status: int, detail: str) -> bytes:
    """A whole HTTP/1.1 answer with a problem body that closes the connection, for the loop
    thread to send where no task runs (a deadline passed, a connection refused)."""
    body = json_bytes(problem(status, detail))
    head = (f"HTTP/1.1 {status} {reason(status)}\r\nContent-Type: {PROBLEM_TYPE}\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n"
            "Server: pvsim\r\n\r\n")
    return head.encode("latin-1") + body
