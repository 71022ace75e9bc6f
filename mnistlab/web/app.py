"""The FastAPI app behind `mnistlab serve`: one static page and a small JSON API.

Errors reach the client as `{"detail": "<one line>"}` with a status that says whose fault it
is (404 unknown model, 413 too large, 415 not an image, 422 bad request); anything unexpected
is a 500 with no stack trace (the traceback goes to the server log only).
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Any, Literal

import torch
from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from mnistlab.errors import MnistlabError
from mnistlab.web import service
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
    eps: float | None = Field(None, gt=0, le=28, description="Perturbation budget (default: the method's).")
    steps: int = Field(50, ge=1, le=service.MAX_ATTACK_STEPS)
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Random start; the same seed gives the same picture.")


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


class BodyLimit:
    """Answer 413 to a request body over `limit` bytes, before any of it is parsed.

    Checks Content-Length up front and counts the bytes of chunked bodies as they arrive; the
    body (at most `limit` bytes) is then replayed to the app.
    """

    def __init__(self, app: Any, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > self.limit:
            await self._too_large(send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.limit:
                await self._too_large(send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Any) -> None:
        body = json.dumps({"detail": f"request too large: images up to {service.MAX_UPLOAD_BYTES // 2**20} MB"})
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body.encode()})


def create_app(
    runs_root: str | Path | None = None,
    default_run: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> FastAPI:
    """The app serving the runs under `runs_root` ($MNISTLAB_RUNS or ./runs), `default_run` first.

    Without `default_run` the default is the handwriting pipeline's default model. Raises a
    RunError (a MnistlabError) when there is nothing to serve or `default_run` is not a run.
    """
    store = ModelStore(Path(runs_root) if runs_root else None, default_run, device)
    app = FastAPI(
        title="mnistlab",
        summary="Draw, photograph and fool a handwritten-digit recognizer.",
        version=_version(),
        docs_url=None,  # FastAPI's own /docs loads Swagger UI from a CDN; ours is local (static/docs.html)
        redoc_url=None,
    )
    app.state.store = store

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    app.add_middleware(BodyLimit, limit=service.MAX_BODY_BYTES)

    @app.exception_handler(MnistlabError)
    async def library_error(request: Request, exc: MnistlabError) -> JSONResponse:
        status = exc.status if isinstance(exc, WebInputError) else 422
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors()[:5]:
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
            parts.append(f"{where}: {e.get('msg', 'invalid')}" if where else str(e.get("msg", "invalid")))
        return JSONResponse({"detail": "bad request: " + "; ".join(parts)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error (see the server log)"}, status_code=500)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    def docs() -> FileResponse:
        return FileResponse(STATIC / "docs.html", headers={"cache-control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/healthz", tags=["meta"], summary="Health check")
    def healthz() -> dict[str, Any]:
        """Liveness: the server answers and knows which model it serves by default."""
        return {"status": "ok", "default_model": store.default, "version": _version()}

    @app.get("/api/models", tags=["models"], summary="List the models")
    def models() -> dict[str, Any]:
        """The models the page can use: the runs on disk (and the handwriting default model)."""
        return {"default": store.default, "models": store.list()}

    @app.post(
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
            413: {"description": "Image over 10 MB or 50 megapixels"},
            415: {"description": "Not an image"},
            404: {"description": "Unknown model"},
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
        return await run_in_threadpool(service.predict, store, data, model, name)

    def _digit(req: DigitInput):
        if req.input is not None:
            return service.canonical_from_pixels(req.input)
        if req.image is not None:
            return service.canonical_from_image(service.decode_data_url(req.image))
        raise WebInputError("give the digit as `input` (28x28 numbers) or as `image` (a data URL)")

    @app.post("/api/attack", tags=["fool it"], summary="Targeted adversarial example")
    def attack(req: AttackRequest) -> dict[str, Any]:
        """Make the model say `target`: the adversarial picture, the perturbation and the new probabilities."""
        return service.attack(
            store, _digit(req), req.target, req.model, req.method, req.norm, req.eps, req.steps, req.seed
        )

    @app.post("/api/feature-maps", tags=["look inside"], summary="Feature maps of one layer")
    def feature_maps(req: FeatureMapsRequest) -> dict[str, Any]:
        """What one layer computes for a digit: a PNG with one tile per channel (at most 64), and the layer names."""
        return service.feature_maps(store, _digit(req), req.layer, req.model)

    return app


@functools.cache  # importlib.metadata scans site-packages: milliseconds per call
def _version() -> str:
    try:
        from importlib.metadata import version

        return version("mnistlab")
    except Exception:  # not installed as a distribution (a source checkout on sys.path)
        return "dev"
