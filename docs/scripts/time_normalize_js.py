"""How long normalize.js takes to normalise the static page's 280x280 pad, in Node (the V8 engine
Chromium runs it with): the first call (cold: V8 has not compiled it yet) and warm calls, wall
and CPU milliseconds, for the page's normalize.js and any other versions given.

Run: python docs/scripts/time_normalize_js.py [OTHER.js ...] [--calls 50] [--rounds 3]
e.g. the page before the single-digit port, for a ratio measured in the same run:
  git show 542d64c:mnistlab/web/standalone/normalize.js > old.js
  python docs/scripts/time_normalize_js.py old.js
The versions take turns, `--rounds` times each in a fresh Node, so that a busy machine slows
them alike; the table gives each one's median over the rounds. Needs node on the PATH.
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

PAGE_JS = Path(__file__).resolve().parents[2] / "mnistlab" / "web" / "standalone" / "normalize.js"
SEVEN = [[(70, 60), (215, 60)], [(215, 60), (165, 150), (125, 245)]]  # tests/test_export_web.py's 7

TIMER = """
const N = require(process.argv[2]);
const { w, h, rgba } = require(process.argv[3]);
const calls = Number(process.argv[4]);
const px = Uint8ClampedArray.from(rgba);
const time = (f) => {
  const u = process.cpuUsage();
  const t = process.hrtime.bigint();
  f();
  const du = process.cpuUsage(u);
  return [Number(process.hrtime.bigint() - t) / 1e6, (du.user + du.system) / 1e3];
};
const first = time(() => N.preprocessRGBA(px, w, h));
const warm = time(() => { for (let i = 0; i < calls; i++) N.preprocessRGBA(px, w, h); });
process.stdout.write(JSON.stringify({ first, warm: warm.map((ms) => ms / calls) }));
"""


def pad_rgba() -> dict:
    """The 7 drawn with the page's default 20 px pen on its white 280x280 pad (anti-aliased)."""
    big = Image.new("L", (1120, 1120), 255)
    draw = ImageDraw.Draw(big)
    for stroke in SEVEN:
        draw.line([(4 * x, 4 * y) for x, y in stroke], fill=0, width=80, joint="curve")
    grey = np.asarray(big.resize((280, 280), Image.Resampling.BOX))
    rgba = np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    return {"w": 280, "h": 280, "rgba": rgba.ravel().tolist()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("others", nargs="*", type=Path, help="other normalize.js files to time beside the page's")
    ap.add_argument("--calls", type=int, default=50, help="warm calls per round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    node = shutil.which("node")
    if node is None:
        sys.exit("time_normalize_js: node was not found (apt-get install nodejs)")
    versions = [PAGE_JS, *args.others]
    with tempfile.TemporaryDirectory() as tmp:
        case = Path(tmp) / "pad.json"
        case.write_text(json.dumps(pad_rgba()))
        timer = Path(tmp) / "timer.js"
        timer.write_text(TIMER)
        runs: dict[Path, list[dict]] = {v: [] for v in versions}
        for _ in range(args.rounds):
            for v in versions:
                out = subprocess.run(
                    [node, str(timer), str(v.resolve()), str(case), str(args.calls)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                runs[v].append(json.loads(out.stdout))
    print(f"280x280 pad, {args.calls} warm calls x {args.rounds} rounds, median of the rounds (ms):")
    print(f"{'normalize.js':40s} {'first wall':>10s} {'first CPU':>10s} {'warm wall':>10s} {'warm CPU':>10s}")
    base = None
    for v, rs in runs.items():
        row = [statistics.median(r[k][i] for r in rs) for k in ("first", "warm") for i in (0, 1)]
        base = base or row
        ratio = "" if row is base else f"  warm CPU x{row[3] / base[3]:.2f} of the page's"
        print(f"{str(v)[-40:]:40s} " + " ".join(f"{x:10.1f}" for x in row) + ratio)


if __name__ == "__main__":
    main()
