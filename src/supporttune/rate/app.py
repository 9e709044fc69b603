"""`supporttune rate SUITE`: the blind side-by-side rating server (FastAPI + one static page).

API (JSON; errors are ``{"error": {"message", "type"}}`` with a 4xx, and write nothing):
  * ``GET  /``             the page (``page.html``: no data in it, so it needs no key)
  * ``GET  /api/config``   the fixed rater name (or null: the page asks for one), the flag names and
    whether a key is needed (the only ``/api/`` path open without the key: it holds no data)
  * ``GET  /api/next?rater=NAME``  the rater's open comparison, or a new one: an opaque ``token``,
    the message (brand, tags, history), reply ``a`` and reply ``b``, and progress. Entry names are
    never sent: the token maps to them on the server only. A reload gets the same open comparison.
  * ``POST /api/vote``  ``{"rater", "token", "choice": "a"|"b"|"tie"|"both_bad", "flags": {"a": [...], "b": [...]}}``
    -> the vote is on disk; answers with the real agent reply (revealed on request) and progress.
  * ``POST /api/skip``  ``{"rater", "token"}`` -> recorded as a skip, so it is not shown again.

Auth (``--api-key``): every ``/api/`` request carries ``Authorization: Bearer KEY`` or
``X-API-Key: KEY``; the page asks for the key when it gets a 401 (or takes ``?key=`` from its own
URL once) and keeps it in the tab's sessionStorage. Headers rather than a cookie: another web
site can make a browser send cookies, not headers. POSTs must be ``application/json`` (a form on
another site cannot send that without a CORS preflight, which this server never grants), and
when bound to loopback the Host header must be a loopback name (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field, ValidationError

from .replies import load_replies
from .schedule import CRITERION, Task, make_scheduler
from .store import FILENAME, FLAG_LABELS, FLAGS, DuplicateVote, Store

MAX_BODY = 16 * 1024
RATER = re.compile(r"^[\w .@+-]{1,40}$")
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


class VoteBody(BaseModel, extra="forbid"):
    rater: str = Field(..., pattern=RATER.pattern)
    token: str = Field(..., min_length=8, max_length=64)
    choice: str = Field(..., pattern="^(a|b|tie|both_bad)$")
    flags: dict[str, list[str]] = Field(default_factory=dict)


class SkipBody(BaseModel, extra="forbid"):
    rater: str = Field(..., pattern=RATER.pattern)
    token: str = Field(..., min_length=8, max_length=64)


@dataclass
class Open:
    """A comparison handed to a page and not answered yet."""

    token: str
    rater: str
    task: Task
    shown: float


class RatingSession:
    """The suite's replies, the store and the scheduler, plus the comparisons now open on pages."""

    def __init__(self, suite_dir: Path, rater: str | None = None, planned: int = 200, overlap: float = 0.25,
                 seed: int | None = None, scheduler: str = "active", pair_rule: str = CRITERION):
        import random

        if rater is not None and not RATER.match(rater):
            raise ValueError(f"rater name '{rater}': use 1-40 letters, digits, spaces or . @ + - _")
        self.suite = load_replies(suite_dir)
        self.store = Store(Path(suite_dir) / FILENAME)
        self.scheduler = make_scheduler(scheduler, self.suite, self.store, planned, overlap, random.Random(seed), pair_rule)
        self.rater = rater
        self.open: dict[str, Open] = {}  # token -> open comparison (one per rater)
        self._lock = threading.Lock()

    def _rater(self, given: str | None) -> str:
        name = given or self.rater
        if not name or not RATER.match(name):
            raise ApiError(422, "rater: give a name of 1-40 letters, digits, spaces or . @ + - _")
        if self.rater and name != self.rater:
            raise ApiError(403, f"this server rates as '{self.rater}' (started with --rater)", "forbidden")
        return name

    def _take(self, rater: str, token: str) -> Open:
        o = self.open.get(token)
        if o is None:
            raise ApiError(404, "unknown or expired comparison token; load the next one", "not_found")
        if o.rater != rater:
            raise ApiError(403, "this comparison was given to another rater", "forbidden")
        return o

    def next(self, rater: str | None) -> dict:
        with self._lock:
            rater = self._rater(rater)
            o = next((x for x in self.open.values() if x.rater == rater), None)
            if o is None:
                busy: dict = {}
                for x in self.open.values():
                    pair = tuple(sorted((x.task.left, x.task.right)))
                    busy[pair] = busy.get(pair, 0) + 1
                task = self.scheduler.next_task(rater, busy)
                if task is None:
                    return {"done": True, "rater": rater, "progress": self.scheduler.progress(rater)}
                o = Open(secrets.token_urlsafe(16), rater, task, time.time())
                self.open[o.token] = o
            m = self.suite.messages[o.task.message_id]
            history = m.get("history") if isinstance(m.get("history"), list) else []
            return {"done": False, "rater": rater, "token": o.token,
                    "message": {"brand": m.get("brand"), "input": m.get("input"), "category": m.get("category"),
                                "sentiment": m.get("sentiment"), "priority": m.get("priority"),
                                "history": [{"role": str(t.get("role", "")), "content": str(t.get("content", ""))}
                                            for t in history if isinstance(t, dict)]},
                    "a": self.suite.replies[o.task.left][o.task.message_id],
                    "b": self.suite.replies[o.task.right][o.task.message_id],
                    "progress": self.scheduler.progress(rater)}

    def _record(self, o: Open, choice: str, flags: dict) -> None:
        vote = {"v": 1, "rater": o.rater, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "message_id": o.task.message_id, "left": o.task.left, "right": o.task.right, "choice": choice,
                "flags": flags, "seconds": round(time.time() - o.shown, 1)}
        try:
            self.store.append(vote)
        except DuplicateVote as e:
            self.open.pop(o.token, None)
            raise ApiError(409, f"{e}; load the next one", "conflict") from None
        except OSError as e:  # a full or read-only disk: the page says so and keeps the comparison open
            raise ApiError(507, f"could not save the vote to {self.store.path}: {e.strerror or e}", "storage_error") from None
        self.open.pop(o.token, None)

    def vote(self, body: VoteBody) -> dict:
        bad = {side for side in body.flags if side not in ("a", "b")}
        bad |= {f for fs in body.flags.values() for f in fs if f not in FLAGS}
        if bad:
            raise ApiError(422, f"flags: unknown {', '.join(sorted(bad))} (sides a, b; flags {', '.join(FLAGS)})")
        with self._lock:
            o = self._take(self._rater(body.rater), body.token)
            choice = {"a": "left", "b": "right"}.get(body.choice, body.choice)
            flags = {"left": sorted(set(body.flags.get("a", []))), "right": sorted(set(body.flags.get("b", [])))}
            self._record(o, choice, flags)
            return {"saved": True, "reference": self.suite.messages[o.task.message_id].get("reference"),
                    "progress": self.scheduler.progress(o.rater)}

    def skip(self, body: SkipBody) -> dict:
        with self._lock:
            o = self._take(self._rater(body.rater), body.token)
            self._record(o, "skip", {})
            return {"saved": True, "progress": self.scheduler.progress(o.rater)}


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind}})


async def _json_body(request: Request, model: type[BaseModel]) -> BaseModel:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "send the body as JSON (content-type: application/json)", "unsupported_media_type")
    data = b""
    async for chunk in request.stream():  # the limit holds while reading, whatever the transfer encoding
        data += chunk
        if len(data) > MAX_BODY:
            raise ApiError(413, f"request body over {MAX_BODY} bytes", "request_too_large")
    try:
        return model.model_validate(json.loads(data))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ApiError(400, f"body is not valid JSON ({getattr(e, 'msg', e)})") from None
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or "body"
        raise ApiError(422, f"{where}: {first.get('msg')}") from None


def create_app(session: RatingSession, api_key: str | None = None, loopback_only: bool = False) -> FastAPI:
    """The rating app; ``loopback_only``: refuse requests whose Host header is not a loopback name."""
    app = FastAPI(title="supporttune rate", version="1", docs_url=None, redoc_url=None, openapi_url=None)
    page = (resources.files("supporttune.rate") / "page.html").read_text(encoding="utf-8")

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if loopback_only and request.url.hostname not in LOOPBACK_HOSTS:
            return _error(421, "this server answers on its loopback address only", "misdirected_request")
        if request.url.path.startswith("/api/") and request.url.path != "/api/config" and api_key:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip() or request.headers.get("x-api-key", "")
            if not hmac.compare_digest(given.encode(), api_key.encode()):
                return _error(401, "missing or wrong key (Authorization: Bearer KEY or X-API-Key)", "authentication_error")
        return await call_next(request)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, e: ApiError):
        return _error(e.status, e.message, e.kind)

    @app.exception_handler(404)
    async def not_found(_request: Request, _e):
        return _error(404, "no such page", "not_found")

    @app.exception_handler(405)
    async def not_allowed(_request: Request, _e):
        return _error(405, "method not allowed", "method_not_allowed")

    @app.get("/", response_class=HTMLResponse)
    def index():
        return HTMLResponse(page, headers={"cache-control": "no-store", "x-frame-options": "DENY",
                                           "content-security-policy": "default-src 'self'; style-src 'unsafe-inline'; "
                                                                      "script-src 'unsafe-inline'; frame-ancestors 'none'"})

    @app.get("/api/config")
    def config():
        return {"rater": session.rater, "flags": [{"name": k, "label": v} for k, v in FLAG_LABELS.items()],
                "planned": session.scheduler.planned, "needs_key": bool(api_key)}

    @app.get("/api/next")
    def next_comparison(rater: str | None = None):
        return session.next(rater)

    @app.post("/api/vote")
    async def vote(request: Request):
        body = await _json_body(request, VoteBody)
        return await asyncio.to_thread(session.vote, body)  # fsync: off the event loop

    @app.post("/api/skip")
    async def skip(request: Request):
        body = await _json_body(request, SkipBody)
        return await asyncio.to_thread(session.skip, body)

    return app


def serve(session: RatingSession, host: str, port: int, api_key: str | None) -> None:
    import uvicorn

    uvicorn.run(create_app(session, api_key, loopback_only=host in LOOPBACK_HOSTS), host=host, port=port,
                log_level="warning")
