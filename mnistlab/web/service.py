"""What the web page does, without the web framework: models, image checks, predict, attack, maps.

Everything here works on one canonical picture of a digit: a (1, 1, 28, 28) float tensor in
[0, 1], white ink on black, MNIST-normalised (what the handwriting pipeline calls a crop). Each
run is loaded as the core's Predictor, which builds that run's own input (no scaling,
sub-sampling, inversion, 3 channels), so that one page, one API and one attack serve every model
on disk.
"""

from __future__ import annotations

import base64
import binascii
import copy
import io
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from mnistlab import runs
from mnistlab.errors import MnistlabError
from mnistlab.handwriting import images, preprocess_digit, read_image
from mnistlab.handwriting.images import ImageInfo
from mnistlab.handwriting.model import default_reader_dir
from mnistlab.predictor import Predictor

log = logging.getLogger("mnistlab.web")

# The image caps are the loader's (mnistlab.handwriting.images), named here for the app and docs.
MAX_UPLOAD_BYTES = images.MAX_UPLOAD_BYTES  # one image, after base64 decoding
MAX_PIXELS = images.MAX_PIXELS
MAX_BODY_BYTES = MAX_UPLOAD_BYTES * 4 // 3 + 64 * 1024  # a data URL of that image, plus JSON/multipart framing
# Images up to the reader's working size (1600 x 1600) are decoded as they are: a light job.
# Bigger ones are decoded at reduced size but still cost their full decoded pixels: a heavy job.
LIGHT_PIXELS = 1600 * 1600
# An attack costs forward+backward passes through the model: steps per attack times the attacks
# a request runs (the eps search: SEARCH_STEPS bisections + 1 probe; C&W: its 6 binary-search
# rounds over c, attacks._carlini_wagner_l2). One request may cost at most MAX_ATTACK_PASSES.
MAX_ATTACK_PASSES = 600
SEARCH_STEPS = 10
_ATTACKS_PER_REQUEST = {"search": SEARCH_STEPS + 1, "cw": 6, "fixed": 1}
DEFAULT_MODEL = "default"  # the handwriting pipeline's default model (trained at start-up by `mnistlab serve`)
MAX_MAPS_SHOWN = 64


def max_attack_steps(method: str, eps: float | None) -> int:
    """The most `steps` one request may ask of `method` (fgsm runs one step whatever it asks)."""
    kind = "cw" if method == "cw" else ("search" if eps is None else "fixed")
    return MAX_ATTACK_PASSES // _ATTACKS_PER_REQUEST[kind]


class WebInputError(MnistlabError):
    """A request the page or an API client can fix; `status` is the HTTP status it answers."""

    status = 422


class TooLarge(WebInputError):
    status = 413


class NotAnImage(WebInputError):
    status = 415


class UnknownModel(WebInputError):
    status = 404


class ModelNotReady(WebInputError):
    """The model exists but cannot answer yet (the default reading model is not trained)."""

    status = 503
    retry_after = 30


class ModelBroken(WebInputError):
    """A run on disk that does not load (damaged files): the server's problem, not the client's."""

    status = 500


@dataclass
class LoadedModel:
    name: str
    model: nn.Module  # the run's own network (layer names for feature maps)
    net: nn.Module  # the same network, taking canonical crops (Predictor.net)
    predictor: Predictor
    info: dict[str, Any]
    # Feature maps hook a layer while they run; a request reading a digit through the same
    # module at that moment would fire the hook too. They get their own copy, one at a time.
    maps_lock: threading.Lock = field(default_factory=threading.Lock)
    _maps_model: nn.Module | None = None

    def maps_model(self) -> nn.Module:
        if self._maps_model is None:
            self._maps_model = copy.deepcopy(self.model).eval()
        return self._maps_model


def _summary(name: str, path: Path | None) -> dict[str, Any]:
    """What the model picker shows, read from the run's JSON files only (no weights loaded)."""
    builtin = path is None
    if builtin:
        path = default_reader_dir()
        if not runs.is_complete(path):
            return {"name": name, "model": "robust", "builtin": True, "complete": False, "trained": False}
    info: dict[str, Any] = {"name": name, "builtin": builtin, "complete": runs.is_complete(path)}
    try:
        config = runs.read_json(path / runs.CONFIG)
        info["model"] = config.get("model")
        info["seed"] = config.get("seed")
        if info["complete"]:
            result = runs.read_json(path / runs.RESULT)
            info["test_acc"] = result.get("test_acc")
            info["epochs"] = result.get("epochs")
    except (MnistlabError, AttributeError):
        info["unreadable"] = True
    return info


class ModelStore:
    """Runs on disk by name, loaded on first use and kept (a few at a time) for later requests.

    A name is checked with `runs.check_name` and looked up among the folders actually listed under
    the runs root before any path is built from it, so a request cannot point the server at an
    arbitrary file.
    """

    def __init__(
        self,
        runs_root: Path | None = None,
        default_run: str | Path | None = None,
        device: torch.device | str = "cpu",
        cache_size: int = 4,
    ):
        self.root = Path(runs_root) if runs_root is not None else runs.runs_root()
        self.device = torch.device(device)
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, float], LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self.loaded_default = False  # set once the default model has been loaded (for /readyz)
        self._extra: dict[str, Path] = {}  # --run given as a folder outside the runs root
        if default_run is not None:
            self.default = self._register_default(default_run)
        else:
            self.default = DEFAULT_MODEL

    def _register_default(self, ref: str | Path) -> str:
        path = Path(ref)
        if not path.is_dir():
            name = runs.check_name(str(ref), "run name")
            path = self.root / name
            if not path.is_dir():
                raise runs.RunError(f"no run {str(ref)!r} (not a folder, nor a run under {self.root}/)")
        if not (path / runs.CONFIG).is_file():
            raise runs.RunError(f"{path} is not a run folder (no {runs.CONFIG})")
        name = runs.check_name(path.name, "run folder name")
        if path.resolve() != (self.root / name).resolve():
            self._extra[name] = path
        return name

    def _run_paths(self) -> dict[str, Path]:
        found = {p.name: p for p in runs.iter_runs(self.root) if _is_safe_name(p.name)}
        return {**found, **self._extra}

    def list(self) -> list[dict[str, Any]]:
        entries = [_summary(DEFAULT_MODEL, None)]
        entries += [_summary(name, path) for name, path in sorted(self._run_paths().items())]
        for e in entries:
            e["default"] = e["name"] == self.default
        return entries

    def _path_of(self, name: str) -> Path | None:
        if name == DEFAULT_MODEL:
            return None
        try:
            runs.check_name(name, "model name")
        except MnistlabError as e:
            raise UnknownModel(str(e)) from None
        path = self._run_paths().get(name)
        if path is None:  # the runs folder is not named: an answer never shows a server path
            raise UnknownModel(f"unknown model {name!r}: no such run (see GET /api/models)")
        return path

    def readiness(self) -> tuple[bool, str]:
        """(ready, why not): can the default model answer now? Reads no weights."""
        if self.default == DEFAULT_MODEL:
            if not runs.is_complete(default_reader_dir()):
                return False, _NOT_TRAINED
            return True, "ok"
        try:
            path = self._path_of(self.default)
        except WebInputError as e:
            return False, str(e)
        if path is not None and not runs.is_complete(path):
            return False, f"model {self.default!r} is not complete (its run has no result yet)"
        return True, "ok"

    def get(self, name: str | None = None) -> LoadedModel:
        name = name or self.default
        path = self._path_of(name)
        # a run trained again in place (new weights) is loaded again
        stamp = (path / runs.WEIGHTS).stat().st_mtime if path and (path / runs.WEIGHTS).is_file() else 0.0
        key = (name, stamp)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            loaded = self._load(name, path)
            self._cache[key] = loaded
            self.loaded_default |= name == self.default
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return loaded

    def _load(self, name: str, path: Path | None) -> LoadedModel:
        run_path = path
        if run_path is None:  # the handwriting default reader: a robust run, or the one in the cache
            run_path = default_reader_dir()
            # Never trained inside a request: that held every other request for a minute.
            # `mnistlab serve` trains it at start-up; until then it answers 503.
            if not runs.is_complete(run_path):
                raise ModelNotReady(f"model {name!r} is not ready: {_NOT_TRAINED}")
        try:
            predictor = Predictor.load(run_path, self.device)
        except MnistlabError as e:  # the message names files on the server: it goes to the log only
            log.error("model %r cannot be loaded: %s", name, e)
            raise ModelBroken(
                f"model {name!r} cannot be loaded: its run record is damaged (see the server log)"
            ) from None
        for p in predictor.net.parameters():  # attacks take gradients w.r.t. the input only
            p.requires_grad_(False)
        info = _summary(name, path)
        info["input_shape"] = list(getattr(predictor.model, "input_shape", (1, 28, 28)))
        return LoadedModel(name, predictor.model, predictor.net, predictor, info)


# An absolute path of two or more parts (or ~/...), which an answer must never show; the API's
# own URL paths are left alone.
_PATH = re.compile(r"(?<![\w.:/-])(?:~|/(?!(?:api|static|docs|healthz|readyz|openapi)\b))[^\s'\"():,;]*/[^\s'\"():,;]*")


def public_message(text: str) -> str:
    """`text` with every server path replaced by its last part (`<path>/name`): for error answers."""
    return _PATH.sub(lambda m: "<path>/" + m.group(0).rstrip("/").rsplit("/", 1)[-1], text)


_NOT_TRAINED = (
    "the default reading model is not trained yet (`mnistlab serve` without --run, or `mnistlab predict`, trains it)"
)


def _is_safe_name(name: str) -> bool:
    try:
        runs.check_name(name)
    except MnistlabError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# images in


def decode_data_url(url: str) -> bytes:
    """`data:image/png;base64,...` -> the image's bytes."""
    head, sep, payload = url.partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        raise WebInputError("image must be a base64 data URL, e.g. data:image/png;base64,iVBOR...")
    if len(payload) > MAX_BODY_BYTES:
        raise TooLarge(f"image too large: the limit is {MAX_UPLOAD_BYTES // 2**20} MB")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise WebInputError("image data URL: the base64 payload is not valid") from None
    return data


def probe_upload(data: bytes, name: str = "upload") -> ImageInfo:
    """The loader's header probe with the upload cap: size (after EXIF orientation) and format,
    before any pixel is decoded. ImageTooLarge (413) or UnsupportedImage (415) otherwise."""
    return images.probe(data, name, max_bytes=MAX_UPLOAD_BYTES)


def is_heavy(info: ImageInfo) -> bool:
    return info.pixels > LIGHT_PIXELS


def canonical_from_pixels(pixels: list[list[float]]) -> torch.Tensor:
    """A 28x28 list of lists (what /api/predict returns as `input`) -> (1, 1, 28, 28) in [0, 1]."""
    x = torch.tensor(pixels, dtype=torch.float32)
    if x.shape != (28, 28):
        raise WebInputError(f"input must be 28 rows of 28 numbers, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise WebInputError("input holds NaN or infinite values")
    return x.clamp(0.0, 1.0).view(1, 1, 28, 28)


def canonical_from_image(data: bytes) -> torch.Tensor:
    """One digit's image (any polarity, any size) -> the canonical (1, 1, 28, 28) crop."""
    probe_upload(data, "image")
    x = preprocess_digit(data)
    return torch.as_tensor(x, dtype=torch.float32).reshape(1, 1, 28, 28).clamp(0.0, 1.0)


def _pixels(x: torch.Tensor, decimals: int = 3) -> list[list[float]]:
    return np.round(x.detach().float().cpu().reshape(28, 28).numpy(), decimals).tolist()


def _probs(p: Any) -> list[float]:
    return [round(float(v), 6) for v in torch.as_tensor(p).flatten().tolist()]


# ---------------------------------------------------------------------------------------------
# the three things the page does


def predict(store: ModelStore, data: bytes, model: str | None = None, filename: str = "upload") -> dict[str, Any]:
    """Read every digit in an image: the fields of `mnistlab predict --json`, plus what the page draws.

    Added per digit: `probs` (10 numbers) and `input` (the 28x28 crop the model saw, 3 decimals);
    added per reading: `model`, `width`/`height` (the frame of the boxes) and `elapsed_ms`.
    """
    start = time.perf_counter()
    info = probe_upload(data, filename)
    loaded = store.get(model)
    reading = read_image(data, loaded.predictor, name=filename)
    out = dict(reading.to_json())
    out["file"] = filename
    digits = []
    for shown, d in zip(out.get("digits", []), reading.digits, strict=False):
        digits.append({"probs": _probs(d.probs), **shown, "input": _pixels(torch.as_tensor(d.crop))})
    out["digits"] = digits
    if not digits:
        out["message"] = out.get("message") or "no digit found"
    out["model"] = loaded.name
    out.setdefault("width", info.width)
    out.setdefault("height", info.height)
    out["elapsed_ms"] = round((time.perf_counter() - start) * 1000, 2)
    return out


def attack(
    store: ModelStore,
    x: torch.Tensor,
    target: int,
    model: str | None = None,
    method: str = "pgd",
    norm: str = "linf",
    eps: float | None = None,
    steps: int = 50,
    seed: int = 0,
) -> dict[str, Any]:
    """A targeted adversarial example for one canonical crop: the picture, the change, the new verdict."""
    from mnistlab.attacks import targeted_attack

    if not 0 <= target <= 9:
        raise WebInputError(f"target must be a digit 0-9, got {target}")
    cap = max_attack_steps(method, eps)
    if not 1 <= steps <= cap:
        how = "with eps searched" if eps is None and method != "cw" else ("" if method == "cw" else "at a fixed eps")
        raise WebInputError(f"steps must be 1..{cap} for {method} {how}".rstrip() + f", got {steps}")
    if method == "fgsm":
        steps = 1  # one step by definition: the number asked changes nothing
    loaded = store.get(model)
    start = time.perf_counter()
    x = x.to(store.device)
    generator = torch.Generator(device=store.device).manual_seed(seed)  # the same request, the same picture
    res = targeted_attack(
        loaded.net,
        x,
        torch.tensor([target], device=store.device),
        method=method,
        norm=norm,
        eps=eps,
        steps=steps,
        generator=generator,
        search_steps=SEARCH_STEPS,
    )
    adv = res.x_adv.detach().reshape(1, 1, 28, 28)
    before, after = torch.as_tensor(res.probs_before)[0], torch.as_tensor(res.probs_after)[0]
    delta = adv - x
    return {
        "model": loaded.name,
        "target": target,
        "method": method,
        "norm": norm,
        "eps": eps,  # as asked: None searched the smallest budget that works
        "eps_used": float(torch.as_tensor(res.eps).flatten()[0]) if getattr(res, "eps", None) is not None else eps,
        "steps": steps,
        "success": bool(torch.as_tensor(res.success).flatten()[0]),
        "predicted_before": int(before.argmax()),
        "predicted_after": int(after.argmax()),
        "probs_before": _probs(before),
        "probs_after": _probs(after),
        "l2": float(torch.as_tensor(res.l2).flatten()[0]),
        "linf": float(torch.as_tensor(res.linf).flatten()[0]),
        "adversarial": _pixels(adv, 4),
        "perturbation": _pixels(delta, 4),
        "elapsed_ms": round((time.perf_counter() - start) * 1000, 2),
    }


def feature_maps(store: ModelStore, x: torch.Tensor, layer: str | None = None, model: str | None = None) -> dict:
    """The activations of one named layer for one crop, as a mosaic PNG (one tile per channel)."""
    from mnistlab.viz.layers import feature_maps as layer_maps
    from mnistlab.viz.layers import layer_names, layer_outputs

    loaded = store.get(model)
    names = list(layer_names(loaded.model))
    if not names:
        raise WebInputError(f"model {loaded.name!r} has no layers to look inside")
    layer = layer or names[0]
    if layer not in names:
        raise WebInputError(f"unknown layer {layer!r}; choose one of {', '.join(names)}")
    with torch.no_grad(), loaded.maps_lock:
        model = loaded.maps_model()
        prepared = loaded.net.prepare(x.to(store.device))
        try:
            maps = layer_maps(model, prepared, layer)
        except MnistlabError:  # a layer after the flatten: a vector, drawn as one tile of cells
            maps = layer_outputs(model, prepared, [layer])[layer][0].reshape(-1, 1, 1)
    maps = maps.detach().float().cpu()
    png, shown = mosaic_png(maps)
    channels, height, width = maps.shape
    return {
        "model": loaded.name,
        "layer": layer,
        "layers": names,
        "channels": channels,
        "height": height,
        "width": width,
        "shown": shown,
        "min": float(maps.min()),
        "max": float(maps.max()),
        "image": "data:image/png;base64," + base64.b64encode(png).decode(),
    }


def _viridis(v: np.ndarray) -> np.ndarray:
    """[0, 1] -> RGB uint8 on matplotlib's viridis, from a 5-stop table (no matplotlib import)."""
    stops = np.array(
        [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float32
    )  # viridis at 0, .25, .5, .75, 1
    t = np.clip(v, 0, 1) * (len(stops) - 1)
    i = np.minimum(t.astype(int), len(stops) - 2)
    f = (t - i)[..., None]
    return (stops[i] * (1 - f) + stops[i + 1] * f).astype(np.uint8)


def mosaic_png(maps: torch.Tensor, tile: int = 56, gap: int = 4) -> tuple[bytes, int]:
    """(C, h, w) -> a PNG grid, each channel scaled to its own range (a flat one shows dark).

    Fully-connected layers arrive as (C, 1, 1): they are drawn as one tile of C cells instead.
    """
    if maps.shape[1:] == (1, 1):
        values = maps.flatten()
        side = math.ceil(math.sqrt(values.numel()))
        grid = torch.full((side * side,), float("nan"))
        grid[: values.numel()] = values
        maps, shown, tile = grid.view(1, side, side), values.numel(), 4 * tile
    else:
        maps, shown = maps[:MAX_MAPS_SHOWN], min(maps.shape[0], MAX_MAPS_SHOWN)
    arr = maps.numpy()
    lo = np.nanmin(arr, axis=(1, 2), keepdims=True)
    hi = np.nanmax(arr, axis=(1, 2), keepdims=True)
    norm = np.where(hi > lo, (arr - lo) / np.where(hi > lo, hi - lo, 1), 0.0)
    n, h, w = norm.shape
    scale = max(1, tile // max(h, w))
    cols = math.ceil(math.sqrt(2 * n))  # twice as wide as tall: the panel spans the page
    rows = math.ceil(n / cols)
    th, tw = h * scale, w * scale
    canvas = np.full((rows * (th + gap) - gap, cols * (tw + gap) - gap, 3), 255, np.uint8)
    for k in range(n):
        r, c = divmod(k, cols)
        rgb = _viridis(np.nan_to_num(norm[k], nan=0.0)).repeat(scale, 0).repeat(scale, 1)
        rgb[np.isnan(norm[k]).repeat(scale, 0).repeat(scale, 1)] = 255  # padding cells of a dense layer
        canvas[r * (th + gap) : r * (th + gap) + th, c * (tw + gap) : c * (tw + gap) + tw] = rgb
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="PNG", optimize=False)
    return buf.getvalue(), shown


# ---------------------------------------------------------------------------------------------
# teach: adapt a model to the digits a person drew (handwriting/adapt.py), saved as a run

MAX_TEACH_DIGITS = 200  # digits in one teach request (10 digits x 20 shots)
TEACH_STEPS = 60  # the adaptation's optimizer steps (AdaptConfig's default): seconds on a CPU


class TeachingUnavailable(WebInputError):
    """Teaching needs MNIST (replay, and to measure what was forgotten) on the server."""

    status = 503
    retry_after = 3600


def _teach_mnist(data_dir: str | Path | None = None):
    from mnistlab.data import load_mnist

    try:
        return load_mnist(data_dir, download_missing=False)  # never a download inside a request
    except MnistlabError as e:
        log.error("teach: MNIST cannot be loaded: %s", e)
        raise TeachingUnavailable("teaching needs the MNIST files on the server (see the server log)") from None


_teach_lock = threading.Lock()  # one adaptation writes into the runs root at a time


def teach(
    store: ModelStore,
    digits: list[tuple[int, torch.Tensor]],
    sheet: bytes | None = None,
    base: str | None = None,
    name: str | None = None,
    seed: int = 0,
    data_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Adapt model `base` to `digits` ((label, canonical crop) pairs) and the filled boxes of a
    `sheet` photo; save it as run `name` under the runs root (listed by GET /api/models from then
    on, and after a restart). Returns the new model's name and what adapting did."""
    from mnistlab.config import AdaptConfig
    from mnistlab.handwriting.adapt import Digits, adapt_run

    start = time.perf_counter()
    xs = [x.reshape(1, 28, 28) for _, x in digits]
    ys = [int(y) for y, _ in digits]
    found = Digits(torch.stack(xs) if xs else torch.zeros(0, 1, 28, 28), torch.tensor(ys, dtype=torch.int64))
    keep = [i for i, x in enumerate(xs) if float(x.max()) > 0]
    found = Digits(found.x[keep], found.y[keep])
    if sheet is not None:
        from mnistlab.handwriting.template import read_sheet

        probe_upload(sheet, "sheet")
        boxes = read_sheet(sheet, name="sheet")
        found = Digits(torch.cat([found.x, boxes.x]), torch.cat([found.y, boxes.y]))
    if len(found) > MAX_TEACH_DIGITS:
        raise WebInputError(f"too many digits: at most {MAX_TEACH_DIGITS} in one lesson, got {len(found)}")
    found.check_classes("teach")
    loaded = store.get(base)
    mnist = _teach_mnist(data_dir)
    base_name = loaded.name if loaded.predictor.path is None else loaded.predictor.path.name
    with _teach_lock:
        if name:
            name = runs.check_name(name, "model name")
        else:
            name = f"{base_name}-taught-{time.strftime('%Y%m%d-%H%M%S')}"
        if name == DEFAULT_MODEL or name in store._run_paths() or (store.root / name).exists():
            raise WebInputError(f"a model named {name!r} exists already: choose another name")
        # adapt_model trains a copy: the served model keeps answering other requests meanwhile
        result = adapt_run(loaded.predictor, found, store.root / name, AdaptConfig(steps=TEACH_STEPS), mnist, seed)
    return {
        "model": name,
        "base": loaded.name,
        "digits": len(found),
        "digits_per_class": found.counts(),
        "mnist_before": result["base_test_acc"],
        "mnist_after": result["test_acc"],
        "seconds": round(time.perf_counter() - start, 2),
    }
