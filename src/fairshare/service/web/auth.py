"""Signing in with an API token: a signed, http-only session cookie, and CSRF tokens for forms.

The cookie holds the token's SHA-256 (what the store keeps), signed with the server's secret,
so it can neither be forged nor turned back into the token.  Each form carries a CSRF token
derived from the session; a POST without the matching one is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from typing import Any

from fastapi import Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from fairshare import workflow as wf
from fairshare.errors import FairshareError, Forbidden
from fairshare.service.ops.people import actor_by_digest

COOKIE = "fairshare_session"
MAX_AGE = 12 * 3600
log = logging.getLogger("fairshare.service.web")


class NotSignedIn(FairshareError):
    """No valid session: the page redirects to the sign-in page."""


class BadCsrf(Forbidden):
    """A form came back without this session's CSRF token (HTTP 403)."""


def secret_key(configured: str | None = None) -> str:
    """The configured key (FAIRSHARE_SECRET_KEY, see fairshare.settings), or a random key for this
    process (sessions then end on restart, and several workers need the key configured)."""
    if configured:
        return configured
    log.warning("FAIRSHARE_SECRET_KEY is not set: using a random key; sign-ins end when the server restarts")
    return secrets.token_urlsafe(32)


class Sessions:
    def __init__(self, key: str, secure: bool = True):
        self.key = key
        self.secure = secure
        self.signer = URLSafeTimedSerializer(key, salt="fairshare-session")

    def cookie_for(self, digest: str) -> str:
        return self.signer.dumps({"t": digest})

    def digest(self, request: Request) -> str:
        raw = request.cookies.get(COOKIE)
        if not raw:
            raise NotSignedIn()
        try:
            data: Any = self.signer.loads(raw, max_age=MAX_AGE)
        except BadSignature as e:
            raise NotSignedIn() from e
        if not isinstance(data, dict) or not isinstance(data.get("t"), str):  # signed, but not by this version
            raise NotSignedIn()
        return data["t"]

    def actor(self, session: Session, request: Request) -> wf.Actor:
        """The signed-in member, with their roles; a token revoked since sign-in ends the session."""
        actor = actor_by_digest(session, self.digest(request))
        if actor is None:
            raise NotSignedIn()
        return actor

    def csrf(self, request: Request) -> str:
        return hmac.new(self.key.encode(), b"csrf:" + self.digest(request).encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, request: Request, sent: str | None) -> None:
        if not sent or not hmac.compare_digest(sent, self.csrf(request)):
            raise BadCsrf("this form is stale or did not come from fairshare; reload the page and try again")
