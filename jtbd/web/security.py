"""What stands between the workbench and anyone else: the access token, the Host check, CSRF, headers.

Interviews are sensitive. On loopback (the default) the server answers only requests addressed to a
loopback name, so a web page elsewhere cannot reach it by pointing its own domain at 127.0.0.1 (DNS
rebinding). Bound to any other address it needs a token: `?token=T` once (answered with a cookie and a
redirect that drops it from the address bar), the cookie after that, or `Authorization: Bearer T`.
State-changing requests carry the server's CSRF token, which a page of another site cannot read.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

COOKIE = "jtbd_token"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
# Scripts and styles only from this server (no inline script, no eval: transcript text can never run);
# nothing framed, no form posted elsewhere.
HEADERS = [
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; "
                                 b"img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
                                 b"frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


def is_loopback(host: str) -> bool:
    """Is this bind address or Host header name a loopback one?"""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name of a Host header, without its port ('[::1]:8765' -> '::1')."""
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def csrf_ok(expected: str, given: str) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), given.encode())


class Guard:
    """ASGI middleware: the token or the loopback Host check, then the security headers on every answer."""

    def __init__(self, app: Any, token: str = "") -> None:
        self.app, self.token = app, token
        self.state = getattr(app, "state", None)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        headers = HEADERS if not scope["path"].startswith("/static/") else HEADERS[:-1]  # static files may be cached

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        refusal = self.refusal(Request(scope))
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def refusal(self, request: Request) -> Any:
        if not self.token:
            host = host_name(request.headers.get("host", ""))
            if not is_loopback(host):
                return _page(400, "Not a loopback address",
                             f"this workbench answers only on this computer (localhost), not as {host!r}; "
                             "to serve it to others, start it with --host and --token")
            return None
        given = request.query_params.get("token", "")
        if given and csrf_ok(self.token, given):
            kept = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + ("?" + urlencode(kept) if kept else "")
            answer = RedirectResponse(target, status_code=303)
            answer.set_cookie(COOKIE, self.token, httponly=True, samesite="strict",
                              secure=request.url.scheme == "https")
            return answer
        bearer = request.headers.get("authorization", "")
        if csrf_ok(self.token, request.cookies.get(COOKIE, "")) or \
                (bearer.lower().startswith("bearer ") and csrf_ok(self.token, bearer[7:].strip())):
            return None
        return _page(401, "Token needed", "this workbench needs its access token: open the address `jtbd serve` "
                                          "printed (it ends in ?token=...), or send Authorization: Bearer TOKEN")


def _page(status: int, title: str, message: str) -> HTMLResponse:
    from markupsafe import escape

    html = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{escape(title)}</title></head>"
            f"<body><h1>{escape(title)}</h1><p id=\"error-message\">{escape(message)}</p></body></html>")
    return HTMLResponse(html, status_code=status)
