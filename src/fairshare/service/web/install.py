"""Mount the web pages on the service app: templates, static files, sign-in, HTML error pages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

import plotly
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from fairshare.service.web.auth import BadCsrf, NotSignedIn, Sessions, secret_key

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
TITLES = {
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed here",
    409: "Not possible now",
    422: "Check the input",
    503: "Unavailable",
}
# a second line of defence for the pages: no framing (clickjacking), no MIME sniffing, no referrer to other sites
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def install_web(app: FastAPI, secret: str | None = None, secure_cookies: bool = True) -> None:
    from fairshare.service.web.committee import router as committee_router
    from fairshare.service.web.pages import router, templates

    def html_error(request: Request, status: int, detail: str) -> HTMLResponse:
        view = {"status": status, "title": TITLES.get(status, "Error"), "detail": detail, "me": None}
        return templates.TemplateResponse(request, "error.html", view, status_code=status)

    app.state.web_sessions = Sessions(secret or secret_key(), secure=secure_cookies)
    app.mount("/static", StaticFiles(directory=str(Path(__file__).with_name("static"))), name="static")

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_js() -> FileResponse:
        return FileResponse(PLOTLY_JS, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

    app.router.routes.insert(0, app.router.routes.pop())  # before the /static mount
    app.include_router(router)
    app.include_router(committee_router)

    async def to_login(request: Request, exc: Exception) -> Response:
        back_to = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(back_to, safe='/')}", status_code=303)

    async def bad_csrf(request: Request, exc: Exception) -> Response:
        return html_error(request, 403, str(exc))

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    app.add_exception_handler(NotSignedIn, to_login)
    app.add_exception_handler(BadCsrf, bad_csrf)
    app.state.html_error = html_error
