"""``import gpunet`` stays light: no CuPy, scikit-learn, SciPy or PyTorch (each
costs 0.3-1.7 s of start-up; CuPy is imported only when a CUDA device is asked
for). A fresh interpreter, since this test process has imported them already."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = {"cupy", "cupy_backends", "cupyx", "sklearn", "scipy", "torch"}


def test_import_gpunet_imports_no_heavy_dependency():
    code = (
        "import gpunet, gpunet.cli, gpunet.cli.quickbench, sys, json; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    loaded = {name.split(".")[0] for name in json.loads(out)}
    assert "gpunet" in loaded
    assert not loaded & HEAVY, f"import gpunet pulled in {sorted(loaded & HEAVY)}"


def test_torch_style_modules_load_on_first_use():
    # gn.nn is ~12 modules a Keras or scikit-learn user never needs: it loads when asked for
    code = (
        "import gpunet, sys; before = 'gpunet.nn' in sys.modules; "
        "gpunet.nn.Linear(2, 3); print(before, 'gpunet.nn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.split() == ["False", "True"]
