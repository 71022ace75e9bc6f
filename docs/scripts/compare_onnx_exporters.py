"""Both torch.onnx exporters on every registered model: seconds per export, max |p_ort - p_torch|.

Why `mnistlab export` uses the TorchScript-based one (docs/export.md). Needs the export extra,
plus onnxscript for dynamo=True: pip install onnxscript. Run: python docs/scripts/compare_onnx_exporters.py
The example batch is 3, not 1: with 1, torch.export specialises fastnet's channels-last batch
axis and the dynamic-batch export fails ("Invalid ranges [2:1]").
"""

import io
import time
import warnings

import numpy as np
import onnxruntime as ort
import torch

from mnistlab.export import Probabilities
from mnistlab.models import create_model, list_models
from mnistlab.predictor import Predictor
from mnistlab.recipes import resolve_run_config

warnings.simplefilter("ignore")
torch.set_num_threads(1)
x = torch.rand(7, 1, 28, 28, generator=torch.Generator().manual_seed(0))
for name in list_models():
    torch.manual_seed(0)
    cfg = resolve_run_config(name)
    net = Probabilities(Predictor(create_model(cfg.model, cfg.model_config), cfg).net).eval()
    row = [name]
    for dynamo in (False, True):
        t, c, buf = time.perf_counter(), time.process_time(), io.BytesIO()
        if dynamo:
            prog = torch.onnx.export(
                net,
                (x[:3],),
                dynamo=True,
                opset_version=18,
                verbose=False,
                dynamic_shapes={"image": {0: torch.export.Dim("N", min=1)}},
            )
            data = prog.model_proto.SerializeToString()
        else:
            torch.onnx.export(
                net,
                (x[:3],),
                buf,
                dynamo=False,
                opset_version=17,
                input_names=["image"],
                dynamic_axes={"image": {0: "N"}},
            )
            data = buf.getvalue()
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        s = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        got = s.run(None, {s.get_inputs()[0].name: x.numpy()})[0]
        with torch.no_grad():
            diff = np.abs(got - net(x).numpy()).max()
        row.append(f"{'dynamo' if dynamo else 'torchscript'} {wall:.2f} s ({cpu:.2f} s CPU) {diff:.1e}")
    print(" | ".join(row), flush=True)
