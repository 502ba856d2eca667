"""A corpus of damaged, malformed and hostile model files: every one is refused
with ``ModelFileError`` naming the problem, through every entry point, without
running code, touching other files, or allocating what the file declares."""

from __future__ import annotations

import json
import os
import tracemalloc

import numpy as np
import pytest
from hostile_files import (
    MAGIC,
    good,
    layer,
    npz_with_object,
    parts,
    pickle_file,
    replace_tensor,
    seal,
    st_blob,
    tensors,
    with_doc,
    with_payload,
    with_tensors,
    with_text,
    zip_with_traversal,
)

import gpunet as gn
from gpunet import saving
from gpunet.checkpoint import load_backup
from gpunet.errors import ModelFileError


def _flip(offset_of: object) -> object:
    def build(c: str) -> bytes:
        data = bytearray(good())
        i = offset_of(data) if callable(offset_of) else offset_of  # type: ignore[operator]
        data[i] ^= 0x01
        return bytes(data)

    return build


def _json_at(data: bytearray) -> int:
    return 32 + 10


def _weights_at(data: bytearray) -> int:
    return len(data) - 40


def _hlen(n: int) -> object:
    return lambda c: good()[:16] + n.to_bytes(8, "little") + good()[24:]


def _set(path: list, value: object) -> object:
    def change(d: dict) -> None:
        target = d
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return lambda c: with_doc(change)


L0 = ["model", "config", "layers", 0, "config"]
OPT = ["compile", "optimizer"]


def _two_tensors_same_offsets(h: dict, buf: bytearray) -> bytes:
    for info in h.values():
        info["data_offsets"] = [0, info["data_offsets"][1] - info["data_offsets"][0]]
    return bytes(buf)


def _gap(h: dict, buf: bytearray) -> bytes:
    for info in h.values():
        a, b = info["data_offsets"]
        info["data_offsets"] = [a + 4, b + 4] if a > 0 else [a, b]
    return bytes(buf) + bytes(4)


def _header_info(name: str, **info: object) -> object:
    def change(h: dict, buf: bytearray) -> None:
        h[name] = {**h[name], **info}

    return lambda c: with_tensors(change)


K = "layers.0.kernel"
A = np.ones((4, 8), dtype="float32")
CASES = [
    # -- not a gpunet file at all -------------------------------------------------------
    ("empty file", lambda c: b"", "empty"),
    ("7 bytes of the magic", lambda c: MAGIC[:7], "truncated"),
    ("4 KiB of random bytes", lambda c: np.random.default_rng(1).bytes(4096), "bad magic"),
    ("PNG renamed", lambda c: b"\x89PNG\r\n\x1a\n" + bytes(100), "bad magic"),
    ("pickle with a code payload", pickle_file, "bad magic"),
    ("npz with an object array", npz_with_object, "bad magic"),
    ("zip with ../ members", lambda c: zip_with_traversal(), "bad magic"),
    ("bare safetensors file", lambda c: parts(good())[1], "bad magic"),
    # -- truncated, padded or damaged: caught by sizes and the checksum -----------------
    ("truncated after the magic", lambda c: good()[:8], "truncated"),
    ("truncated at 50%", lambda c: good()[: len(good()) // 2], "truncated"),
    ("truncated at N-1", lambda c: good()[:-1], "truncated"),
    ("8 trailing bytes", lambda c: good() + bytes(8), "trailing bytes"),
    ("JSON length 2**63", _hlen(2**63), "header length 9223372036854775808 exceeds limit 16777216"),
    ("JSON length 200 MB", _hlen(200_000_000), "header length 200000000 exceeds limit"),
    ("payload length 2**63", lambda c: good()[:24] + (2**63).to_bytes(8, "little") + good()[32:],
     "truncated or has trailing bytes"),
    ("container version 2", lambda c: good()[:8] + (2).to_bytes(4, "little") + good()[12:],
     "container version 2 is not supported"),
    ("unknown flags", lambda c: good()[:12] + b"\x01\x00\x00\x00" + good()[16:], "unknown flags"),
    ("a flipped bit in the JSON", _flip(_json_at), "checksum mismatch"),
    ("a flipped bit in a weight", _flip(_weights_at), "checksum mismatch"),
    ("a flipped bit in the checksum", _flip(-1), "checksum mismatch"),
    # -- the JSON document (with a valid checksum) --------------------------------------
    ("JSON not UTF-8", lambda c: with_text(b'{"a": "\xff\xfe"}'), "not UTF-8"),
    ("JSON syntax error", lambda c: with_text(b'{"format": '), "not valid JSON"),
    ("JSON duplicate key", lambda c: with_text(b'{"kind": "model", "kind": "weights"}'),
     "duplicate key 'kind'"),
    ("JSON NaN", lambda c: with_text(b'{"x": NaN}'), "NaN, which JSON does not allow"),
    ("JSON nested 100000 deep", lambda c: with_text(b"[" * 100_000 + b"]" * 100_000),
     "nested too deeply"),
    ("JSON huge integer", lambda c: with_text(b'{"x": ' + b"9" * 5000 + b"}"), "not valid JSON"),
    ("JSON array at the top", lambda c: with_text(b"[]"), "not an object"),
    ("format 'keras'", _set(["format"], "keras"), "unknown format 'keras'"),
    ("format_version 2", _set(["format_version"], 2), r"expected an int in \[1, 1\]"),
    ("kind 'weights' to load_model", _set(["kind"], "weights"), "this is a 'weights' file"),
    ("kind 'pickle'", _set(["kind"], "pickle"), "unknown file kind 'pickle'"),
    ("layer type os.system", _set(["model", "config", "layers", 0, "class_name"], "os.system"),
     r"unknown layer type 'os.system' at \$.model.config.layers\[0\].class_name; allowed: "),
    ("Lambda layer", _set(["model", "config", "layers", 0, "class_name"], "Lambda"),
     "unknown layer type 'Lambda'"),
    ("activation builtins.eval", _set([*L0, "activation", "name"], "builtins.eval"),
     "unknown activation 'builtins.eval'"),
    ("key 'module' in a layer entry", _set(["model", "config", "layers", 0, "module"],
                                           "subprocess"), "unknown key 'module'"),
    ("global settings key", _set(["gpunet_config"], {"unsafe": True}),
     r"unknown key 'gpunet_config' at \$$"),
    ("a path in the config", _set([*L0, "vocabulary"], "/etc/passwd"),
     r"'/etc/passwd' looks like a path or URL"),
    ("a URL as a layer name", _set([*L0, "name"], "http://127.0.0.1:8000/x"), "path or URL"),
    ("a file URL as initializer", _set([*L0, "kernel_initializer", "name"], "file:///x"),
     "path or URL"),
    ("a Windows path", _set([*L0, "name"], "C:\\Windows\\x"), "path or URL"),
    ("a home path", _set([*L0, "name"], "~root"), "path or URL"),
    ("units as a string", _set([*L0, "units"], "8"), r"expected an int in \[1, 2147483648\]"),
    ("units as a bool", _set([*L0, "units"], True), "expected an int"),
    ("units negative", _set([*L0, "units"], -8), "got -8"),
    ("units 1e400 (inf)",
     lambda c: with_text(parts(good())[0].replace(b'"units":8', b'"units":1e400')),
     "expected an int"),
    ("dtype complex64", _set([*L0, "dtype"], "complex64"), "unknown dtype 'complex64'"),
    ("missing units", lambda c: with_doc(lambda d: layer(d).pop("units")), "missing key 'units'"),
    ("empty input_shape", _set(["model", "input_shape"], []), "non-empty list"),
    ("input_shape not matching a layer", _set(["model", "input_shape"], [5]),
     "does not match the shape"),
    ("unknown initializer option", _set([*L0, "kernel_initializer", "config"], {"path": 1}),
     "unknown key 'path'"),
    ("regularizer with code", _set([*L0, "kernel_regularizer"], {"fn": "os.system"}),
     "unknown key 'fn'"),
    ("unknown optimizer", _set([*OPT, "class_name"], "Evil"), "unknown optimizer 'Evil'"),
    ("negative learning rate", _set([*OPT, "config", "learning_rate"], -1.0),
     r"expected a finite number in \(0.0"),
    ("unknown schedule", _set([*OPT, "config", "learning_rate"],
                              {"class_name": "os.system", "config": {}}), "unknown schedule"),
    ("negative iterations", _set([*OPT, "iterations"], -1), "got -1"),
    ("unknown loss", _set(["compile", "loss", "class_name"], "Evil"), "unknown loss 'Evil'"),
    ("unknown metric", _set(["compile", "metrics"], ["os.system"]), "unknown metric 'os.system'"),
    ("sequential config as a graph", _set(["model", "class_name"], "Functional"),
     "expected a Functional model.s graph"),
    ("unknown model type", _set(["model", "class_name"], "os.system"), "unknown model type"),
    # -- the tensor payload (valid checksum) ---------------------------------------------
    ("payload of 3 bytes", lambda c: with_payload(b"abc"), "too short"),
    ("payload header length 2**63", lambda c: with_payload(st_blob(b"{}", b"", 2**63)),
     "header length 9223372036854775808 exceeds limit 16777216"),
    ("payload header past the end", lambda c: with_payload(st_blob(b"{}", b"", 100)),
     "runs past the end"),
    ("payload header not an object", lambda c: with_payload(st_blob(b"[1]", b"")),
     "does not start with"),
    ("payload duplicate tensor", lambda c: with_payload(st_blob(
        b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
        b'"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', bytes(4))),
     "duplicate key 'a'"),
    ("dtype I64", _header_info(K, dtype="I64"), "dtype 'I64'; allowed: F16, F32, F64"),
    ("dtype object", _header_info(K, dtype="O"), "dtype 'O'"),
    ("size not matching the shape", _header_info(K, shape=[4, 9]), "declares F32"),
    ("shape bomb 2**31 floats", _header_info(K, shape=[2**31]),
     r"declares F32\[2147483648\] \(8.0 GiB\)"),
    ("shape overflow", _header_info(K, shape=[2, 2**63 - 1]), "declares F32"),
    ("dim 2**64", _header_info(K, shape=[2**64]), "declares F32"),
    ("negative dim", _header_info(K, shape=[-4, 8]), "invalid shape"),
    ("rank 9", _header_info(K, shape=[1] * 9), "invalid shape"),
    ("overlapping offsets", lambda c: with_tensors(_two_tensors_same_offsets), "overlap"),
    ("a gap between tensors", lambda c: with_tensors(_gap), "leave a gap"),
    ("trailing payload bytes", lambda c: with_tensors(lambda h, b: bytes(b) + bytes(8)),
     "trailing bytes"),
    ("missing payload bytes", lambda c: with_tensors(lambda h, b: bytes(b)[:-2]), "truncated"),
    ("tensor named ../../x", lambda c: with_tensors(lambda h, b: h.update({"../../x": h.pop(K)})),
     "invalid tensor name '../../x'"),
    ("nested __metadata__", lambda c: with_tensors(lambda h, b: h.update(
        {"__metadata__": {"a": {"b": "c"}}})), "__metadata__ must map strings to strings"),
    ("extra key in tensor info", _header_info(K, exec="x"), "must have exactly"),
    # -- tensors that do not match the architecture ------------------------------------
    ("missing bias", lambda c: replace_tensor("layers.1.bias", None),
     "missing tensor 'layers.1.bias'"),
    ("extra tensor", lambda c: replace_tensor("layers.9.kernel", A),
     "unexpected tensor 'layers.9.kernel'"),
    ("transposed kernel", lambda c: replace_tensor(K, A.T.copy()),
     r"tensor 'layers.0.kernel': expected float32 \(4, 8\), got float32 \(8, 4\)"),
    ("float64 kernel", lambda c: replace_tensor(K, A.astype("float64")), r"got float64 \(4, 8\)"),
    ("float16 kernel", lambda c: replace_tensor(K, A.astype("float16")), r"got float16 \(4, 8\)"),
    ("NaN weights", lambda c: replace_tensor(K, np.where(np.eye(4, 8) > 0, np.nan, A)
                                             .astype("float32")),
     "tensor 'layers.0.kernel' contains 4 non-finite values .pass allow_nonfinite=True"),
    ("inf weight", lambda c: replace_tensor("layers.1.bias", np.array([1, np.inf, 1], "float32")),
     "contains 1 non-finite value "),
    ("config claims 2**30 units", _set([*L0, "units"], 2**30),
     r"expected float32 \(4, 1073741824\), got float32 \(4, 8\)"),
    ("optimizer slot of the wrong size",
     lambda c: replace_tensor("optimizer.m.0", np.ones(3, "f4")),
     r"tensor 'optimizer.m.0': expected float32 \(67,\), got float32 \(3,\)"),
    ("optimizer slot missing", lambda c: replace_tensor("optimizer.v.0", None),
     "missing tensor 'optimizer.v.0'"),
    ("optimizer slot of an uncompiled model", lambda c: with_doc(
        lambda d: d.update(compile=None)), "unexpected tensor 'optimizer."),
]  # fmt: skip


@pytest.mark.parametrize(("build", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_file_is_rejected_with_a_clear_message(tmp_path, build, message):
    canary = str(tmp_path / "canary")
    data = build(canary)
    path = tmp_path / "m.gpunet"
    path.write_bytes(data)
    with pytest.raises(ModelFileError, match=message) as info:
        gn.models.load_model(path)
    assert repr(str(path)) in str(info.value)  # names the file
    with pytest.raises(ModelFileError, match=message):
        gn.models.load_model(data)  # the same from bytes
    assert sorted(os.listdir(tmp_path)) == ["m.gpunet"]  # no canary, nothing extracted


def test_the_corpus_covers_at_least_the_documented_cases():
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)
    gn.models.load_model(good())  # and the unmodified file loads


def _model():
    return gn.models.load_model(good())


def _restore(data):
    model = _model()
    model._build_optimizer()
    return lambda path: load_backup(model, path)


GENERIC = [c for c in CASES if c[0] in {
    "empty file", "4 KiB of random bytes", "pickle with a code payload", "truncated at 50%",
    "JSON length 2**63", "a flipped bit in a weight", "JSON duplicate key", "a path in the config",
    "global settings key", "payload header length 2**63", "shape bomb 2**31 floats",
    "overlapping offsets", "dtype I64", "NaN weights",
}]  # fmt: skip
ENTRY_POINTS = {
    "load_model": lambda: gn.models.load_model,
    "load_weights": lambda: _model().load_weights,
    "restore_backup": lambda: _restore(None),
    "load_estimator": lambda: saving.load_estimator,
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("build", [c[1] for c in GENERIC], ids=[c[0] for c in GENERIC])
def test_every_entry_point_applies_the_same_checks(tmp_path, entry, build):
    load = ENTRY_POINTS[entry]()
    path = tmp_path / "f.gpunet"
    path.write_bytes(build(str(tmp_path / "canary")))
    with pytest.raises(ModelFileError):
        load(path)
    assert not (tmp_path / "canary").exists()


def test_nonfinite_weights_load_when_allowed():
    data = replace_tensor(K, np.full((4, 8), np.nan, "float32"))
    model = gn.models.load_model(data, allow_nonfinite=True)
    assert np.isnan(model.get_weights()[0]).all()


def test_a_rejected_file_leaves_the_model_unchanged():
    model = _model()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ModelFileError, match="non-finite"):
        model.load_weights(replace_tensor("layers.1.bias", np.array([1, np.nan, 1], "float32")))
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


@pytest.mark.parametrize(
    "build",
    [_hlen(2**63), _header_info(K, shape=[2**31]), _set([*L0, "units"], 2**30),
     _header_info(K, shape=[2**40, 2**20]), _set(["model", "input_shape"], [2**31])],
    ids=["JSON length 2**63", "shape bomb", "2**30 units", "shape 2**60", "input 2**31"],
)  # fmt: skip
def test_declared_sizes_are_never_allocated(build):
    data = build("")
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError):
            gn.models.load_model(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(data) + 2**20  # a few copies of the real file, never gigabytes


def test_a_file_that_is_not_ours_is_refused_after_reading_its_header(tmp_path):
    big = tmp_path / "video.mp4"
    with open(big, "wb") as f:
        f.write(b"\x00\x00\x00\x18ftypmp42")
        f.truncate(2**30)  # sparse: 1 GiB that is never read
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match="bad magic"):
            gn.models.load_model(big)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20


def test_an_unknown_json_key_is_named_with_its_path():
    where = r"\$.model.config.layers\[1\]"
    with pytest.raises(ModelFileError, match=rf"unknown key 'colour' at {where}"):
        gn.models.load_model(with_doc(lambda d: layer(d, 1).update(colour="red")))
    header, _ = tensors()
    assert K in header and json.loads(parts(good())[0])["kind"] == "model"
    assert seal(b"{}", b"")[:8] == MAGIC
