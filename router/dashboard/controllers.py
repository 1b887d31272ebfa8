"""The operator dashboard (``GET /dashboard``): one static page whose script draws the service's JSON APIs
(``/v1/stats``, ``/v1/thresholds``, ``/v1/routing-logs``) as SVG charts, refreshed every few seconds.

The page, its script, stylesheet and icon are hand-written files in ``router/dashboard/static/``, served by this
controller under a Content-Security-Policy that lets the page run only its own script and styles and call only this
service.
The page holds no secret: when reads need the admin key, the operator gives it in the page's URL (``?key=``) or its
key field; the browser keeps it in sessionStorage and sends it as ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from litestar import Controller, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

MEDIA_TYPES = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
"""The page's assets, by file name in ``router/dashboard/static/``; nothing else there is served."""

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def _static(name: str) -> bytes:
    """A file of ``router/dashboard/static/``, read once (the package's own files: they change only with a release)."""
    return files("router.dashboard").joinpath("static", name).read_bytes()


class DashboardController(Controller):
    path = "/dashboard"
    include_in_schema = False

    @get("", sync_to_thread=False)
    def page(self) -> Response[bytes]:
        return Response(_static("dashboard.html"), media_type="text/html; charset=utf-8", headers=HEADERS)

    @get("/{name:str}", sync_to_thread=False)
    def asset(self, name: FromPath[str]) -> Response[bytes]:
        if name not in MEDIA_TYPES:
            raise NotFoundException(f"no dashboard file {name!r}")
        return Response(_static(name), media_type=MEDIA_TYPES[name], headers=HEADERS)
