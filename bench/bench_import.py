"""Import cost of ``gpunet``: fresh ``python -c`` wall times against ``import numpy``,
and the modules ``import gpunet`` loads.

    python bench/bench_import.py          # table
    pytest bench/bench_import.py          # pytest-benchmark entry points

Each command runs in a new interpreter, interleaved with the others, median of
``repeats``. Bytecode: the checkout runs with ``PYTHONDONTWRITEBYTECODE`` set on
some machines, which would make every gpunet import compile its sources while
NumPy's wheel ships compiled files; so the children write and read bytecode in
a private ``PYTHONPYCACHEPREFIX`` (warmed once, untimed), as an installed
package would. The goal of issue #4 is judged net of interpreter start-up
(``python -c pass``), the stricter reading; the raw ratio is shown too.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

COMMANDS = {"pass": "pass", "numpy": "import numpy", "gpunet": "import gpunet"}
HEAVY = ("cupy", "sklearn", "scipy", "torch", "pandas", "matplotlib", "cupy_backends")
GOAL = 1.5


def _env(cache: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = cache
    return env


def _run(code: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return time.perf_counter() - start


def modules(code: str, env: dict[str, str]) -> list[str]:
    probe = f"{code}; import sys, json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, check=True, capture_output=True, text=True
    ).stdout
    return list(json.loads(out))


def importtime_top(env: dict[str, str], n: int = 8) -> list[tuple[str, float]]:
    """The slowest gpunet modules by cumulative import time (``-X importtime``)."""
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import gpunet"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stderr
    rows = []
    for line in err.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[2].strip().startswith("gpunet"):
            try:
                rows.append((parts[2].strip(), int(parts[1]) / 1e3))
            except ValueError:
                continue
    return sorted(rows, key=lambda r: -r[1])[:n]


def measure(repeats: int = 9) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="gpunet-pycache-") as cache:
        env = _env(cache)
        for code in COMMANDS.values():  # warm the bytecode and page caches, untimed
            _run(code, env)
        times: dict[str, list[float]] = {k: [] for k in COMMANDS}
        names = list(COMMANDS)
        for r in range(repeats):
            for name in names[r % 3 :] + names[: r % 3]:
                times[name].append(_run(COMMANDS[name], env))
        mods = modules("import gpunet", env)
        base = set(modules("import numpy", env))
        top = importtime_top(env)
    ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    net = (ms["gpunet"] - ms["pass"]) / max(ms["numpy"] - ms["pass"], 1e-9)
    heavy = sorted({m.split(".")[0] for m in mods} & set(HEAVY))
    extra = sorted({m.split(".")[0] for m in mods} - {m.split(".")[0] for m in base})
    return {
        "ms": ms,
        "blocks_ms": {k: [1e3 * t for t in v] for k, v in times.items()},
        "ratio_raw": ms["gpunet"] / ms["numpy"],
        "ratio_net": net,
        "goal": GOAL,
        "met": net <= GOAL and not heavy,
        "heavy_modules": heavy,
        "n_modules": len(mods),
        "n_modules_numpy": len(base),
        "new_top_level": extra,
        "slowest_gpunet_modules_ms": top,
    }


def goal_lines(r: dict[str, Any]) -> list[str]:
    met = "yes" if r["met"] else "**no**"
    return [
        f"Import: `import gpunet` / `import numpy` = {r['ratio_net']:.2f} net of start-up "
        f"({r['ratio_raw']:.2f} raw), goal <= {r['goal']}; heavy modules imported: "
        f"{', '.join(r['heavy_modules']) or 'none'}; met: {met}"
    ]


def markdown(r: dict[str, Any]) -> list[str]:
    lines = ["| command | median ms |", "|---|---:|"]
    lines += [f'| `python -c "{COMMANDS[k]}"` | {v:.0f} |' for k, v in r["ms"].items()]
    lines += [
        "",
        f"`import gpunet` loads {r['n_modules']} modules ({r['n_modules_numpy']} "
        f"after `import numpy`); new top-level packages: {', '.join(r['new_top_level'])}",
        "",
        "Slowest gpunet modules (cumulative, -X importtime): "
        + ", ".join(f"{m} {t:.1f} ms" for m, t in r["slowest_gpunet_modules_ms"]),
    ]
    return lines


# -- pytest-benchmark entry points (pytest bench/bench_import.py) -------------------------
def _bench(benchmark: Any, code: str) -> None:
    with tempfile.TemporaryDirectory(prefix="gpunet-pycache-") as cache:
        env = _env(cache)
        _run(code, env)
        benchmark.pedantic(_run, args=(code, env), rounds=7, iterations=1)


def test_import_numpy(benchmark: Any) -> None:
    _bench(benchmark, COMMANDS["numpy"])


def test_import_gpunet(benchmark: Any) -> None:
    _bench(benchmark, COMMANDS["gpunet"])


if __name__ == "__main__":
    result = measure()
    print("\n".join([*goal_lines(result), "", *markdown(result)]))
