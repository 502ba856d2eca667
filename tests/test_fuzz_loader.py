"""Fuzzing the model-file loader: whatever the bytes, ``load_model`` either loads
or raises ``ModelFileError``; no other exception, warning or crash escapes.

Mutated files are resealed (lengths and checksum fixed) so the fuzzer reaches
the JSON, schema and tensor checks behind the checksum, not only the checksum.
The example count scales with ``GPUNET_FUZZ_EXAMPLES`` (CI: bounded time;
nightly: raise it).
"""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest
from hostile_files import MAGIC, doc, good, parts, reseal, seal, st_blob
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpunet as gn
from gpunet import saving
from gpunet.checkpoint import load_backup, save_backup
from gpunet.errors import ModelFileError
from gpunet.saving import _safetensors

N = int(os.environ.get("GPUNET_FUZZ_EXAMPLES", "1500"))
FUZZ = settings(max_examples=N, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
RUNS: dict[str, int] = {}


def _load(data: bytes, kind: str) -> None:
    RUNS[kind] = RUNS.get(kind, 0) + 1
    try:
        gn.models.load_model(data)
    except ModelFileError:
        pass


@FUZZ
@given(st.binary(max_size=2048) | st.binary(max_size=256).map(lambda b: MAGIC + b))
def test_random_bytes(data):
    _load(data, "random bytes")


_edits = st.lists(
    st.tuples(st.sampled_from(["flip", "set", "insert", "delete"]),
              st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
    min_size=1, max_size=8,
)  # fmt: skip


def _mutate(data: bytes, edits: list) -> bytes:
    buf = bytearray(data)
    for op, where, value in edits:
        i = int(where * max(len(buf), 1))
        if op == "flip" and buf:
            buf[i] ^= 1 << (value % 8)
        elif op == "set" and buf:
            buf[i] = value
        elif op == "insert":
            buf[i:i] = bytes([value])
        elif buf:
            del buf[i]
    return bytes(buf)


@FUZZ
@given(_edits, st.booleans())
def test_mutated_real_file(edits, fix_checksum):
    data = _mutate(good(), edits)
    _load(reseal(data) if fix_checksum else data, "mutated file")


@FUZZ
@given(st.integers(0, 2), _edits)
def test_mutated_section(section, edits):
    """Mutate only the JSON text or only the tensor payload, then reseal."""
    text, payload = parts(good())
    if section == 0:
        text = _mutate(text, edits)
    else:
        payload = _mutate(payload, edits)
    _load(seal(text, payload), "mutated section")


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.sampled_from(["Dense", "relu", "float16", "/etc/passwd", "adam"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=12,
)  # fmt: skip


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


PATHS = list(_paths(doc()))


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(PATHS), _json, st.booleans()), min_size=1, max_size=3))
def test_structured_json_changes(changes):
    """Replace or delete values anywhere in a valid document (keeps the payload)."""
    d = copy.deepcopy(doc())
    for path, value, delete in changes:
        target, ok = d, bool(path)
        for key in path[:-1]:
            try:
                target = target[key]
            except (KeyError, IndexError, TypeError):
                ok = False
                break
        if not ok or not isinstance(target, (dict, list)):
            d = value if not path else d
            continue
        try:
            if delete:
                del target[path[-1]]
            else:
                target[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            pass
    text = json.dumps(d, allow_nan=True).encode()
    _load(seal(text, parts(good())[1]), "structured JSON")


_dims = st.lists(st.integers(-2, 2**64) | st.integers(0, 16), max_size=4)
_info = st.fixed_dictionaries({
    "dtype": st.sampled_from(["F16", "F32", "F64", "I64", "BF16", "U8", "x"]),
    "shape": _dims | _json,
    "data_offsets": st.lists(st.integers(-1, 2**64) | st.integers(0, 64), max_size=3) | _json,
})  # fmt: skip


@FUZZ
@given(st.dictionaries(st.text(max_size=12), _info | _json, max_size=4), st.binary(max_size=64),
       st.integers(0, 2**64 - 1) | st.none())  # fmt: skip
def test_random_tensor_headers(header, data, length):
    blob = st_blob(json.dumps(header).encode(), data, length)
    RUNS["tensor header"] = RUNS.get("tensor header", 0) + 1
    try:
        tensors = _safetensors.loads(blob)
    except ModelFileError:
        return
    for name, arr in tensors.items():  # what was accepted is exactly what was declared
        assert arr.dtype.name in ("float16", "float32", "float64")
        assert list(arr.shape) == header[name]["shape"]
    _load(seal(parts(good())[0], blob), "tensor header")


@pytest.fixture(scope="module")
def backup(tmp_path_factory):
    model = gn.models.load_model(good())
    path = tmp_path_factory.mktemp("backup") / "latest.gpunet"
    save_backup(model, path, epoch=3)
    return model, path.read_bytes()


@settings(FUZZ, max_examples=max(N // 3, 10))
@given(_edits, st.booleans())
def test_mutated_backup(backup, tmp_path_factory, edits, fix_checksum):
    model, data = backup
    data = _mutate(data, edits)
    path = tmp_path_factory.mktemp("b") / "latest.gpunet"
    path.write_bytes(reseal(data) if fix_checksum else data)
    RUNS["backup"] = RUNS.get("backup", 0) + 1
    try:
        load_backup(model, path)
    except ModelFileError:
        pass


@pytest.fixture(scope="module")
def estimator_file(tmp_path_factory):
    sklearn = pytest.importorskip("gpunet.sklearn")
    est = sklearn.MLPClassifier(hidden_layer_sizes=(3,), random_state=0)
    est.partial_fit(np.eye(4), ["a", "b", "a", "c"], classes=["a", "b", "c"])
    path = tmp_path_factory.mktemp("est") / "e.gpunet"
    est.save(path)
    return path.read_bytes()


@settings(FUZZ, max_examples=max(N // 3, 10))
@given(_edits, st.integers(0, 2))
def test_mutated_estimator_file(estimator_file, edits, section):
    text, payload = parts(estimator_file)
    data = (
        seal(_mutate(text, edits), payload)
        if section == 0
        else (
            seal(text, _mutate(payload, edits)) if section == 1 else _mutate(estimator_file, edits)
        )
    )
    RUNS["estimator"] = RUNS.get("estimator", 0) + 1
    try:
        saving.load_estimator(data)
    except ModelFileError:
        pass


def test_truncation_and_bit_flips_at_every_offset():
    data = good()
    for n in range(len(data)):
        with pytest.raises(ModelFileError):
            gn.models.load_model(data[:n])
    for i in range(len(data)):
        buf = bytearray(data)
        buf[i] ^= 0x80
        with pytest.raises(ModelFileError):
            gn.models.load_model(bytes(buf))
    RUNS["every offset"] = 2 * len(data)


def test_resealed_truncations_of_each_section_are_rejected():
    text, payload = parts(good())
    for n in range(len(text)):
        with pytest.raises(ModelFileError):
            gn.models.load_model(seal(text[:n], payload))
    for n in range(0, len(payload), 3):
        with pytest.raises(ModelFileError):
            gn.models.load_model(seal(text, payload[:n]))


def test_the_fuzz_targets_accept_the_valid_file():
    assert gn.models.load_model(reseal(good())).count_params() == 67
    assert np.isfinite(gn.models.load_model(good()).get_weights()[0]).all()
