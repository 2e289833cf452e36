"""The dashboard at /dashboard: one static page (HTML, ES modules, CSS) over the admin API's JSON.

No build step and no CDN: the assets ship in the package next to this module. The page and its
assets hold no data, so they are served without the admin guard (a browser cannot send a bearer key
on navigation); every number comes from the guarded `/faregate/v1/...` endpoints, which the page
calls with `Authorization: Bearer <key>` when the user typed one (kept in sessionStorage).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

Handler = Callable[[Request], Awaitable[Response]]

STATIC = Path(__file__).parent / "static"
PAGES = ("overview", "attribution", "unit-economics", "templates", "anatomy", "prompt-cache", "budgets")
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Scripts and styles from this origin only, no inline code, no eval, no framing, no plug-ins.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'none'"
)
_SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-cache",
}


def dashboard_routes(guarded: Callable[[Handler], Handler]) -> list[Route]:
    """`GET /dashboard[/<page>]` (the single-page shell) and `GET /dashboard/static/<asset>`.

    `guarded` is the admin API's guard; the shell and assets are public on purpose (see the module
    docstring), so it is accepted for symmetry with the other route factories and left unused.
    """
    del guarded
    # Read once here, so serving them does no file I/O on the event loop.
    assets = {p.name: _asset(p) for p in STATIC.iterdir() if p.is_file() and p.suffix in _TYPES}

    async def shell(request: Request) -> Response:
        page = request.path_params.get("page", "")
        if page and page not in PAGES:
            return PlainTextResponse("no such dashboard page", status_code=404)
        return assets["index.html"]()

    async def static(request: Request) -> Response:
        # Only the files shipped in static/ (a fixed name set), so no path can escape the folder.
        asset = assets.get(request.path_params["name"])
        return asset() if asset is not None else PlainTextResponse("not found", status_code=404)

    return [
        Route("/dashboard", shell, methods=["GET"]),
        Route("/dashboard/", shell, methods=["GET"]),
        Route("/dashboard/static/{name}", static, methods=["GET"]),
        Route("/dashboard/{page}", shell, methods=["GET"]),
    ]


def _asset(path: Path) -> Callable[[], Response]:
    body, media_type = path.read_bytes(), _TYPES[path.suffix]
    return lambda: Response(body, media_type=media_type, headers=_SECURITY_HEADERS)
