"""The instantiation lists in ``_kernels.INSTANTIATIONS`` agree with ``kernels/``.

A kernel added to a ``.cu`` file without an instantiation, an instantiation of a
kernel that does not exist, or one with the wrong number of template arguments
fails here, on the CPU, before any GPU sees it.
"""

from __future__ import annotations

import re
from pathlib import Path

from gpunet.backend import _kernels

ROOT = Path(__file__).resolve().parents[2]
_TEMPLATE = re.compile(
    r"template\s*<([^<>]*)>\s*__global__\s+(?:__launch_bounds__\([^()]*\)\s+)?void\s+(\w+)\s*\("
)


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def kernel_templates(text: str) -> dict[str, int]:
    """``{kernel name: number of template parameters}`` of the ``__global__`` templates."""
    found = {}
    for params, name in _TEMPLATE.findall(_strip_comments(text)):
        found[name] = len([p for p in params.split(",") if p.strip()])
    return found


def _split_args(expr: str) -> tuple[str, list[str]]:
    name, _, rest = expr.partition("<")
    assert rest.endswith(">"), expr
    return name.strip(), [a.strip() for a in rest[:-1].split(",")]


def disagreements(text: str, names: tuple[str, ...]) -> list[str]:
    """Every way the instantiation list ``names`` and the source ``text`` disagree."""
    templates = kernel_templates(text)
    problems = []
    listed: dict[str, int] = {}
    for expr in names:
        kernel, args = _split_args(expr)
        listed[kernel] = listed.get(kernel, 0) + 1
        if kernel not in templates:
            problems.append(f"{expr}: no __global__ template {kernel} in the source")
        elif len(args) != templates[kernel]:
            problems.append(f"{expr}: {len(args)} template arguments for {templates[kernel]}")
    for kernel in templates:
        if kernel not in listed:
            problems.append(f"{kernel}: a __global__ template without instantiations")
    if len(set(names)) != len(names):
        problems.append("an instantiation is listed twice")
    return problems


def test_every_source_has_one_list_and_every_list_a_source():
    sources = {p.name for p in _kernels.KERNEL_DIR.glob("*.cu")}
    assert sources == set(_kernels.INSTANTIATIONS)


def test_instantiation_lists_match_the_sources():
    for file, names in _kernels.INSTANTIATIONS.items():
        assert disagreements(_kernels.source(file), names) == [], file


def test_the_check_catches_a_kernel_missing_from_the_list():
    text = _kernels.source("optimizers.cu") + (
        "\ntemplate <typename P>\n__global__ void gpunet_lion(P* p, long long n) {}\n"
    )
    names = _kernels.INSTANTIATIONS["optimizers.cu"]
    assert disagreements(text, names) == [
        "gpunet_lion: a __global__ template without instantiations"
    ]
    wrong = (*names, "gpunet_adam<float, float>", "gpunet_rmsprop<float>")
    problems = disagreements(_kernels.source("optimizers.cu"), wrong)
    assert problems == [
        "gpunet_adam<float, float>: 2 template arguments for 1",
        "gpunet_rmsprop<float>: no __global__ template gpunet_rmsprop in the source",
    ]


def test_every_fast_dtype_and_functor_is_instantiated():
    names = set(_kernels.INSTANTIATIONS["fused.cu"])
    for ctype in _kernels.CTYPE.values():
        for functor in _kernels.FUNCTOR.values():
            assert f"gpunet_bias_act<{ctype}, gpunet::{functor}>" in names
            if functor != "Linear":
                assert f"gpunet_backprop_act<{ctype}, gpunet::{functor}>" in names
    functors = set(re.findall(r"struct (\w+) \{", _kernels.source("fused.cu")))
    assert set(_kernels.FUNCTOR.values()) <= functors
    assert _kernels.NEEDS_X == {
        f
        for f in functors
        if f"struct {f} {{\n    static constexpr bool kNeedsX = true;"
        in _kernels.source("fused.cu")
    }


def test_sources_inline_their_headers_once_with_line_marks():
    text = _kernels.source("fused.cu")
    assert '#include "' not in text and "#pragma once" not in text
    assert text.count('#line 1 "gpunet_hd.cuh"') == 1
    assert '#line 1 "activations.cuh"' in text and '#line 1 "losses.cuh"' in text


def test_kernel_dir_ships_in_the_wheel():
    # a checkout reads <repo>/kernels, an installed wheel gpunet/kernels
    assert _kernels.KERNEL_DIR.name == "kernels" and (_kernels.KERNEL_DIR / "fused.cu").is_file()
    if not (ROOT / "pyproject.toml").is_file():
        return  # running against an installed wheel, outside the checkout
    # tomllib is 3.11+; the one line is enough to check
    pyproject = (ROOT / "pyproject.toml").read_text()
    section = pyproject.split("[tool.hatch.build.targets.wheel.force-include]")[1]
    assert re.match(r'\s*"kernels"\s*=\s*"gpunet/kernels"', section)
