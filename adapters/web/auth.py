"""Signing in and out: two small routes beside the Gradio page, because only an HTTP answer can set a cookie.
Imported only when the web chat is served (it imports FastAPI, whose routes need real annotations).

The page's Sign in button posts the name and password here from the browser (JSON, same origin);
the password never goes through Gradio's queue, its session state or its logs. A right password
gets a fresh session cookie; a wrong one counts against the guesser's address (see
:mod:`adapters.web.throttle`), and a guess made too soon is refused at once, unchecked.
"""

from __future__ import annotations

import asyncio
import logging
import math

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from adapters.web.guard import SIGN_IN, SIGN_OUT, WebGuard, session_cookie
from adapters.web.sessions import Identity, is_https
from adapters.web.throttle import SignInThrottle
from adapters.web.users import WebUsers

log = logging.getLogger(__name__)
MAX_BODY = 4096
WRONG = "Wrong name or password."


class SignIn:
    """The sign-in and sign-out routes, with the users, the sessions and the throttle they share."""

    def __init__(self, guard: WebGuard, users: WebUsers, throttle: SignInThrottle | None = None) -> None:
        self.guard = guard
        self.users = users
        self.throttle = throttle or SignInThrottle()

    def add_routes(self, app: FastAPI) -> None:
        app.add_api_route(SIGN_IN, self.sign_in, methods=["POST"], include_in_schema=False)
        app.add_api_route(SIGN_OUT, self.sign_out, methods=["POST"], include_in_schema=False)

    async def sign_in(self, request: Request) -> JSONResponse:
        if not self.users:
            return JSONResponse({"ok": False, "message": "Nobody can sign in on this page."}, 404)
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"ok": False, "message": "Send the name and password as JSON."}, 415)
        body = await _body(request)
        name = body.get("name") if isinstance(body, dict) else None
        password = body.get("password") if isinstance(body, dict) else None
        if not isinstance(name, str) or not isinstance(password, str) or not name.strip() or len(name) > 200:
            return JSONResponse({"ok": False, "message": "Type a name and a password."}, 400)
        who = self._identify(request)
        wait = self.throttle.wait(name, who.address)
        if wait > 0:
            seconds = math.ceil(wait)
            return JSONResponse({"ok": False, "message": f"Too many wrong passwords; try again in {seconds} s."},
                                429, headers={"Retry-After": str(seconds)})
        if not await asyncio.to_thread(self.users.check, name, password):
            self.throttle.failed(name, who.address)
            return JSONResponse({"ok": False, "message": WRONG})  # an answer, not an error: 200
        self.throttle.succeeded(name, who.address)
        sessions = self.guard.sessions
        token = sessions.sign_in(name.strip(), who)
        log.info("web: %s signed in", name.strip())
        response = JSONResponse({"ok": True, "message": f"Signed in as {name.strip()}."})
        response.headers.append("set-cookie", session_cookie(token, https=self._https(request),
                                                             max_age=int(sessions.ttl_s)))
        return response

    async def sign_out(self, request: Request) -> JSONResponse:
        token = self.guard.sessions.signed_out(self._identify(request))
        response = JSONResponse({"ok": True, "message": "Signed out."})
        response.headers.append("set-cookie", session_cookie(token, https=self._https(request)))
        return response

    def _identify(self, request: Request) -> Identity:
        return self.guard.identify(request.client.host if request.client else None, dict(request.headers))

    def _https(self, request: Request) -> bool:
        peer = request.client.host if request.client else None
        return is_https(request.url.scheme, peer, dict(request.headers), self.guard.proxies)


async def _body(request: Request) -> object:
    import json

    try:
        if int(request.headers.get("content-length", "0")) > MAX_BODY:
            return None
        return json.loads(await request.body())
    except ValueError:
        return None
