"""The FastAPI app behind `mnistlab serve`: one static page and a small JSON API.

Errors reach the client as `{"detail": "<one line>"}` with a status that says whose fault it
is (400 bad Host, 403 cross-origin, 404 unknown model, 408 body too slow, 413 too large, 415 not
an image, 422 bad request, 503 busy or model not ready, with Retry-After); anything unexpected
is a 500 with no stack trace (the traceback goes to the server log only), and no answer names a
server path.

In front of the app, two plain ASGI layers: `Guard` (Host allow-list against DNS rebinding,
same-origin check on every POST against cross-site form posts, security headers) and
`BodyLimit` (size, time and an in-flight budget for request bodies). All CPU work runs in the
bounded lanes of `pool.py`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import torch
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from mnistlab.errors import ImageError, MnistlabError
from mnistlab.handwriting.images import FORMAT_NAMES, ImageTooLarge
from mnistlab.web import service
from mnistlab.web.pool import Lane, trim_memory
from mnistlab.web.service import ModelStore, NotAnImage, WebInputError

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("mnistlab.web")

# The page loads nothing from elsewhere; data: and blob: URLs are the pictures it makes itself.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")  # the names a Host header may carry by default
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


@dataclass(frozen=True)
class Limits:
    """What one server takes on at once. Memory is bounded by the workers of each lane (a heavy
    job holds up to ~4 bytes per pixel of a 40 MP image, ~0.2 GB) plus `bodies_in_flight`."""

    light_workers: int = 4  # drawn digits, photos up to 1600 x 1600, feature maps (4, not 2: see docs/web.md)
    light_waiting: int = 64
    heavy_workers: int = 1  # bigger photos and attacks
    heavy_waiting: int = 3
    job_timeout_s: float = 60.0  # a request waiting longer than this (queue + work) answers 503
    body_timeout_s: float = 30.0  # a request body not fully received by then answers 408
    bodies_in_flight: int = 64 * 2**20  # request bodies held at once, all requests together


class PredictJSON(BaseModel):
    """POST /api/predict as JSON: what the page's canvas sends."""

    model_config = ConfigDict(extra="forbid")
    image: str = Field(description="The image as a data URL: data:image/png;base64,...")
    model: str | None = Field(None, description="A name from GET /api/models (default: the server's).")
    file: str = Field("canvas", max_length=200, description="A label echoed back as `file`.")


class DigitInput(BaseModel):
    """One digit, either as the 28x28 `input` a prediction returned, or as an image of one digit."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(None, description="A name from GET /api/models (default: the server's).")
    input: list[list[float]] | None = Field(
        None, description="28 rows of 28 numbers in [0, 1], white ink on black: a digit's `input` from /api/predict."
    )
    image: str | None = Field(None, description="Or: one digit as an image data URL (it is MNIST-normalised).")


class AttackRequest(DigitInput):
    target: int = Field(ge=0, le=9, description="The digit the model should be made to say.")
    method: Literal["fgsm", "bim", "pgd", "cw"] = "pgd"
    norm: Literal["linf", "l2"] = "linf"
    eps: float | None = Field(None, gt=0, le=28, description="Perturbation budget (default: search the smallest).")
    steps: int = Field(
        50,
        ge=1,
        le=service.MAX_ATTACK_PASSES,
        description=f"Gradient steps per attack; one request may cost at most {service.MAX_ATTACK_PASSES} "
        f"passes: pgd/bim up to {service.max_attack_steps('pgd', None)} steps when eps is searched, "
        f"{service.max_attack_steps('pgd', 0.3)} at a fixed eps; cw up to {service.max_attack_steps('cw', None)}.",
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Random start; the same seed gives the same picture.")


class TaughtDigit(BaseModel):
    """One labelled digit of a lesson: a drawing (data URL) or its 28x28 `input`."""

    model_config = ConfigDict(extra="forbid")
    label: int = Field(ge=0, le=9, description="The digit it is.")
    input: list[list[float]] | None = Field(None, description="28 rows of 28 numbers in [0, 1], white ink on black.")
    image: str | None = Field(None, description="Or: the digit as an image data URL (it is MNIST-normalised).")


class TeachRequest(BaseModel):
    """POST /api/teach: a few of your digits; the model adapted to them is saved as a new run."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(
        None, description="The model to adapt, a name from GET /api/models (default: the server's)."
    )
    name: str | None = Field(None, max_length=128, description="The new model's name (default: BASE-taught-TIME).")
    digits: list[TaughtDigit] = Field(
        default_factory=list,
        max_length=service.MAX_TEACH_DIGITS,
        description="Labelled digits, every digit 0-9 at least once.",
    )
    sheet: str | None = Field(None, description="A photo of a filled `mnistlab template` sheet, as a data URL.")
    seed: int = Field(0, ge=0, le=2**31 - 1)


class FeatureMapsRequest(DigitInput):
    layer: str | None = Field(None, max_length=100, description="A layer name (default: the first).")


_DIGIT_OUT = {
    "digit": 7,
    "confidence": 0.98,
    "box": [52, 20, 34, 98],
    "line": 0,
    "low_confidence": False,
    "probs": [0.0, 0.0, 0.01, 0.0, 0.0, 0.0, 0.0, 0.98, 0.0, 0.01],
    "input": "[[0.0, ...], ...] 28 x 28",
}
PREDICT_EXAMPLE = {
    "file": "canvas",
    "text": "7",
    "found": True,
    "message": None,
    "ink": "dark",
    "low_confidence": 0,
    "digits": [_DIGIT_OUT],
    "model": "default",
    "width": 140,
    "height": 140,
    "elapsed_ms": 9.1,
}


def _reply(status: int, detail: str, extra: dict[str, str] | None = None) -> tuple[dict, dict]:
    body = json.dumps({"detail": detail}).encode()
    headers = {"content-type": "application/json", "content-length": str(len(body)), **SECURITY_HEADERS}
    headers.update(extra or {})
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }
    return start, {"type": "http.response.body", "body": body}


async def _send_reply(send: Any, status: int, detail: str, extra: dict[str, str] | None = None) -> None:
    start, body = _reply(status, detail, extra)
    await send(start)
    await send(body)


def _host_name(host: str) -> str:
    """'Localhost:8000' -> 'localhost', '[::1]:8000' -> '::1' (no port, lower case, no final dot)."""
    host = host.strip().lower()
    if host.startswith("["):
        name = host[1 : host.find("]")] if "]" in host else host
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name.rstrip(".")


def _netloc(value: str, scheme: str) -> str:
    value = value.strip().lower()
    default = {"http": ":80", "https": ":443"}.get(scheme, "")
    return value[: -len(default)] if default and value.endswith(default) else value


def _same_origin(origin: str, host: str) -> bool:
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False  # "null" (a sandboxed frame, a file:// page) or garbage
    return _netloc(parts.netloc, parts.scheme) == _netloc(host, parts.scheme)


class Guard:
    """Host allow-list, same-origin POSTs, security headers: in front of everything else.

    A DNS-rebinding page reaches this server under its own host name: only the names in
    `allowed_hosts` are answered (400 otherwise). Any web site can make a visitor's browser post
    a form (an upload) here without CORS: a POST whose Origin is not this server's, or whose
    Sec-Fetch-Site says another site sent it, is refused (403). Clients that send neither
    (curl, scripts) are not browsers and pass.
    """

    def __init__(self, app: Any, allowed_hosts: tuple[str, ...] | list[str] = LOCAL_HOSTS):
        self.app = app
        self.allowed = {_host_name(h) for h in allowed_hosts}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        host = headers.get("host", "")
        if _host_name(host) not in self.allowed:
            shown = host[:100].encode("ascii", "replace").decode() or "(none)"
            await _send_reply(
                send,
                400,
                f"bad Host header {shown!r}: this server answers to {', '.join(sorted(self.allowed))} "
                "(start it with --allow-host NAME to add a name)",
            )
            return
        if scope["method"] not in SAFE_METHODS:
            origin, site = headers.get("origin"), headers.get("sec-fetch-site")
            if origin is not None:
                ok = _same_origin(origin, host)
            else:
                ok = site in (None, "same-origin", "none")
            if not ok:
                await _send_reply(send, 403, "cross-origin request refused: post from this server's own page")
                return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items() if k.encode() not in present]
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """Request bodies: 413 over `limit` bytes (before any of it is parsed), 408 when not received
    within `timeout_s`, 503 when the bodies held by all requests in flight would pass `budget`.

    Checks Content-Length up front and counts the bytes of chunked bodies as they arrive; the
    body (at most `limit` bytes) is then replayed to the app, and counts against the budget
    until the app has answered.
    """

    def __init__(self, app: Any, limit: int, budget: int = 64 * 2**20, timeout_s: float = 30.0):
        self.app = app
        self.limit = limit
        self.budget = budget
        self.timeout_s = timeout_s
        self.in_flight = 0  # bytes held; touched on the event loop only

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > self.limit:
            await self._too_large(send)
            return
        held = 0
        try:
            chunks: list[bytes] = []
            deadline = time.monotonic() + self.timeout_s
            while True:
                try:
                    message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    await _send_reply(send, 408, f"request body not received within {self.timeout_s:.0f} s")
                    return
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                if held + len(chunk) > self.limit:
                    await self._too_large(send)
                    return
                if self.in_flight + len(chunk) > self.budget:
                    await _send_reply(
                        send, 503, "server busy: too many uploads at once; try again in 1 s", {"retry-after": "1"}
                    )
                    return
                chunks.append(chunk)
                held += len(chunk)
                self.in_flight += len(chunk)
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
            del chunks
            replayed = False

            async def replay() -> dict:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send)
        finally:
            self.in_flight -= held

    async def _too_large(self, send: Any) -> None:
        await _send_reply(send, 413, f"request too large: images up to {service.MAX_UPLOAD_BYTES // 2**20} MB")


def create_app(
    runs_root: str | Path | None = None,
    default_run: str | Path | None = None,
    device: str | torch.device = "cpu",
    allowed_hosts: tuple[str, ...] | list[str] = LOCAL_HOSTS,
    limits: Limits | None = None,
) -> FastAPI:
    """The app serving the runs under `runs_root` ($MNISTLAB_RUNS or ./runs), `default_run` first.

    Without `default_run` the default is the handwriting pipeline's default model (answering
    503 until it is trained: this app never trains). Only requests whose Host header names one
    of `allowed_hosts` are answered. Raises a RunError (a MnistlabError) when there is nothing
    to serve or `default_run` is not a run. The routes live in three routers below (the page and
    health checks, predict, and the digit tools); they reach the store and the lanes through
    `request.app.state`.
    """
    limits = limits or Limits()
    store = ModelStore(Path(runs_root) if runs_root else None, default_run, device)
    app = FastAPI(
        title="mnistlab",
        summary="Draw, photograph and fool a handwritten-digit recognizer.",
        version=_version(),
        docs_url=None,  # FastAPI's own /docs loads Swagger UI from a CDN; ours is local (static/docs.html)
        redoc_url=None,
    )
    app.state.store = store
    light = Lane("light", limits.light_workers, limits.light_waiting, limits.job_timeout_s, retry_after=1)
    heavy = Lane(
        "heavy", limits.heavy_workers, limits.heavy_waiting, limits.job_timeout_s, retry_after=5, after_job=trim_memory
    )
    app.state.lanes = {"light": light, "heavy": heavy}
    app.state.limits = limits

    # Starlette adds middleware outside-in in reverse order: Guard runs first, then BodyLimit.
    app.add_middleware(
        BodyLimit, limit=service.MAX_BODY_BYTES, budget=limits.bodies_in_flight, timeout_s=limits.body_timeout_s
    )
    app.add_middleware(Guard, allowed_hosts=tuple(allowed_hosts))
    _add_error_handlers(app)
    app.include_router(pages)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(predicting)
    app.include_router(digit_tools)
    return app


def _answer(status: int, detail: str, exc: Exception | None = None) -> JSONResponse:
    """The one error body: `{"detail": one line}` (no server path in it), Retry-After on a busy 503."""
    headers = {}
    retry = getattr(exc, "retry_after", None)
    if status == 503 and retry:
        headers["retry-after"] = str(retry)
    return JSONResponse({"detail": service.public_message(detail)}, status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    """Library errors, validation errors and HTTP errors as one-line `detail`s; anything else a bare 500."""

    @app.exception_handler(MnistlabError)
    async def library_error(request: Request, exc: MnistlabError) -> JSONResponse:
        if isinstance(exc, ImageTooLarge):
            status = 413
        elif isinstance(exc, ImageError):
            status = 415  # empty, not a format read here, or not decodable
        else:
            status = getattr(exc, "status", 422)
        return _answer(status, str(exc), exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors()[:5]:
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
            parts.append(f"{where}: {e.get('msg', 'invalid')}" if where else str(e.get("msg", "invalid")))
        return _answer(422, "bad request: " + "; ".join(parts))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": service.public_message(str(exc.detail))}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error (see the server log)"}, status_code=500)


def _store(request: Request) -> ModelStore:
    return request.app.state.store


def _lane(request: Request, name: Literal["light", "heavy"]) -> Lane:
    return request.app.state.lanes[name]


# ------------------------------------------------------------------ the page and health checks

pages = APIRouter()


@pages.get("/", include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})


@pages.get("/docs", include_in_schema=False)
def docs() -> FileResponse:
    return FileResponse(STATIC / "docs.html", headers={"cache-control": "no-cache"})


@pages.get("/healthz", tags=["meta"], summary="Liveness")
def healthz(request: Request) -> dict[str, Any]:
    """Liveness: the server answers. `ready` says whether its default model can answer too (see /readyz)."""
    store = _store(request)
    ready, _ = store.readiness()
    return {"status": "ok", "ready": ready, "default_model": store.default, "version": _version()}


@pages.get(
    "/readyz",
    tags=["meta"],
    summary="Readiness",
    responses={503: {"description": "The default model cannot answer yet (not trained, or not complete)"}},
)
def readyz(request: Request) -> JSONResponse:
    """Readiness: 200 when the default model can answer predictions, 503 (with the reason) when not.
    Also how busy the two work lanes are."""
    store = _store(request)
    ready, why = store.readiness()
    body = {
        "ready": ready,
        "default_model": store.default,
        "loaded": store.loaded_default,
        "lanes": {name: lane.stats() for name, lane in request.app.state.lanes.items()},
    }
    if not ready:
        body["detail"] = service.public_message(why)
    return JSONResponse(body, status_code=200 if ready else 503)


@pages.get("/api/models", tags=["models"], summary="List the models")
def models(request: Request) -> dict[str, Any]:
    """The models the page can use: the runs on disk (and the handwriting default model)."""
    store = _store(request)
    return {"default": store.default, "models": store.list()}


# ------------------------------------------------------------------ predict

predicting = APIRouter()


@predicting.post(
    "/api/predict",
    tags=["predict"],
    summary="Read the digits in an image",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary", "description": "An image file"},
                            "model": {"type": "string", "description": "A name from GET /api/models"},
                        },
                    }
                },
                "application/json": {"schema": PredictJSON.model_json_schema()},
            },
        }
    },
    responses={
        200: {"description": "The digits read", "content": {"application/json": {"example": PREDICT_EXAMPLE}}},
        413: {
            "description": f"Image over {service.MAX_UPLOAD_BYTES // 2**20} MB "
            f"or {service.MAX_PIXELS // 1_000_000} megapixels"
        },
        415: {"description": f"Not an image in a format read here ({FORMAT_NAMES})"},
        404: {"description": "Unknown model"},
        503: {"description": "Busy (Retry-After says when to try again), or the model is not ready"},
    },
)
async def predict(
    request: Request, model: str | None = Query(None, description="A name from GET /api/models")
) -> dict[str, Any]:
    """Read the digits in an image: one digit drawn on a canvas, or a photo of a page.

    Send `multipart/form-data` with a `file` (an upload), or JSON `{"image": "data:image/png;base64,..."}`.
    The answer has the fields of `mnistlab predict --json` (`file`, `text`, `digits` with `digit`,
    `confidence`, `box` [x, y, w, h], `line`), plus per digit `probs` and `input` (the 28x28 picture
    the model saw) and `width`/`height` (the frame of the boxes).
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        async with request.form(max_files=1, max_fields=4) as form:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise WebInputError("multipart upload: put the image in a field named 'file'")
            data = await upload.read(service.MAX_UPLOAD_BYTES + 1)
            name = Path(upload.filename or "upload").name[:200]
            field = form.get("model")
            model = model or (field if isinstance(field, str) and field else None)
    elif kind == "application/json":
        try:
            body = PredictJSON.model_validate_json(await request.body())
        except ValidationError as e:  # JSON syntax and missing/wrong fields alike
            raise RequestValidationError(e.errors()) from None
        data, name = service.decode_data_url(body.image), body.file
        model = model or body.model
    else:
        raise NotAnImage("send multipart/form-data with an image in 'file', or JSON with a data URL in 'image'")
    info = service.probe_upload(data, name)  # 413 / 415 from the header, before any queueing
    lane = _lane(request, "heavy" if service.is_heavy(info) else "light")
    return await lane.run(service.predict, _store(request), data, model, name, is_disconnected=request.is_disconnected)


# ------------------------------------------------------------------ one digit: fool it, teach it, look inside

digit_tools = APIRouter()


def _digit(req: DigitInput) -> tuple[Any, bool]:
    """A job that makes the canonical crop, and whether it is heavy (a big image to decode)."""
    if req.input is not None:
        pixels = service.canonical_from_pixels(req.input)
        return (lambda: pixels), False
    if req.image is not None:
        data = service.decode_data_url(req.image)
        info = service.probe_upload(data, "image")
        return functools.partial(service.canonical_from_image, data), service.is_heavy(info)
    raise WebInputError("give the digit as `input` (28x28 numbers) or as `image` (a data URL)")


@digit_tools.post(
    "/api/attack",
    tags=["fool it"],
    summary="Targeted adversarial example",
    responses={503: {"description": "Busy: attacks run one at a time (Retry-After says when to try again)"}},
)
async def attack(req: AttackRequest, request: Request) -> dict[str, Any]:
    """Make the model say `target`: the adversarial picture, the perturbation and the new probabilities."""
    digit, _ = _digit(req)
    store = _store(request)

    def job() -> dict[str, Any]:
        return service.attack(store, digit(), req.target, req.model, req.method, req.norm, req.eps, req.steps, req.seed)

    return await _lane(request, "heavy").run(job, is_disconnected=request.is_disconnected)


@digit_tools.post(
    "/api/teach",
    tags=["teach"],
    summary="Teach it your handwriting",
    responses={503: {"description": "Busy (one heavy job at a time), or no MNIST on the server to teach with"}},
)
async def teach(req: TeachRequest, request: Request) -> dict[str, Any]:
    """Adapt a model to a few labelled digits (every digit 0-9 at least once: drawings, or the boxes of a
    photographed sheet) and save it as a new run: it is listed by GET /api/models from then on."""
    makers = []
    for d in req.digits:
        maker, _ = _digit(DigitInput(input=d.input, image=d.image))
        makers.append((d.label, maker))
    sheet = service.decode_data_url(req.sheet) if req.sheet is not None else None
    if sheet is not None:
        service.probe_upload(sheet, "sheet")
    store = _store(request)

    def job() -> dict[str, Any]:
        digits = [(label, make()) for label, make in makers]
        return service.teach(store, digits, sheet, req.model, req.name, req.seed)

    return await _lane(request, "heavy").run(job, is_disconnected=request.is_disconnected)


@digit_tools.post("/api/feature-maps", tags=["look inside"], summary="Feature maps of one layer")
async def feature_maps(req: FeatureMapsRequest, request: Request) -> dict[str, Any]:
    """What one layer computes for a digit: a PNG with one tile per channel (at most 64), and the layer names."""
    digit, big = _digit(req)
    store = _store(request)

    def job() -> dict[str, Any]:
        return service.feature_maps(store, digit(), req.layer, req.model)

    return await _lane(request, "heavy" if big else "light").run(job, is_disconnected=request.is_disconnected)


@functools.cache  # importlib.metadata scans site-packages: milliseconds per call
def _version() -> str:
    try:
        from importlib.metadata import version

        return version("mnistlab")
    except Exception:  # not installed as a distribution (a source checkout on sys.path)
        return "dev"
