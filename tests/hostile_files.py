"""Builders of damaged, malformed and hostile model files for the loader tests.

``good()`` is a real file of a small trained model; ``seal`` re-wraps any JSON
text and payload in a container with a valid checksum, so the checks behind the
checksum are reached too.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import pickle
import tempfile
import zipfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

import gpunet as gn
from gpunet import saving
from gpunet.saving import _container

MAGIC = _container.MAGIC


def _trained_model() -> Any:
    gn.utils.set_random_seed(7)
    model = gn.Sequential([gn.layers.Dense(8, activation="relu", input_shape=(4,)),
                           gn.layers.Dense(3, activation="softmax")])  # fmt: skip
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    X = np.random.default_rng(0).normal(size=(12, 4))
    model.fit(X, np.arange(12) % 3, epochs=1, batch_size=4, verbose=0)
    return model


@cache
def good() -> bytes:
    """The bytes of a valid ``.gpunet`` file (2 Dense layers, Adam state)."""
    model = _trained_model()
    with tempfile.TemporaryDirectory() as d:
        model.save(Path(d) / "m.gpunet")
        return (Path(d) / "m.gpunet").read_bytes()


def parts(data: bytes) -> tuple[bytes, bytes]:
    """``(json text, payload)`` of a container."""
    n_json = int.from_bytes(data[16:24], "little")
    n_payload = int.from_bytes(data[24:32], "little")
    return data[32 : 32 + n_json], data[32 + n_json : 32 + n_json + n_payload]


def seal(text: bytes, payload: bytes, version: int = 1, flags: bytes = bytes(4)) -> bytes:
    body = (MAGIC + version.to_bytes(4, "little") + flags + len(text).to_bytes(8, "little")
            + len(payload).to_bytes(8, "little") + text + payload)  # fmt: skip
    return body + hashlib.sha256(body).digest()


def reseal(data: bytes) -> bytes:
    """Fix the lengths and checksum of a mutated file (so the parser is reached)."""
    if len(data) < 64 or data[:8] != MAGIC:
        return data
    text, payload = parts(data)
    return seal(text, payload, int.from_bytes(data[8:12], "little"), data[12:16])


def doc() -> dict[str, Any]:
    return json.loads(parts(good())[0])  # type: ignore[no-any-return]


def with_doc(change: Callable[[dict[str, Any]], Any]) -> bytes:
    d = copy.deepcopy(doc())
    change(d)
    return seal(json.dumps(d).encode(), parts(good())[1])


def with_text(text: bytes) -> bytes:
    return seal(text, parts(good())[1])


def layer(d: dict[str, Any], i: int = 0) -> dict[str, Any]:
    return d["model"]["config"]["layers"][i]["config"]  # type: ignore[no-any-return]


def tensors() -> tuple[dict[str, Any], bytes]:
    """The payload's header (without __metadata__) and its data bytes."""
    payload = parts(good())[1]
    n = int.from_bytes(payload[:8], "little")
    return json.loads(payload[8 : 8 + n]), payload[8 + n :]


def st_blob(header: dict[str, Any] | bytes, data: bytes, length: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    size = len(raw) if length is None else length
    return size.to_bytes(8, "little") + raw + data


def with_payload(payload: bytes) -> bytes:
    return seal(parts(good())[0], payload)


def with_tensors(change: Callable[[dict[str, Any], bytearray], bytes | None]) -> bytes:
    header, data = tensors()
    buf = bytearray(data)
    new = change(header, buf)
    return with_payload(st_blob(header, bytes(buf) if new is None else new))


def replace_tensor(name: str, arr: np.ndarray | None) -> bytes:
    """Re-encode the payload with ``name`` set to ``arr`` (any dtype/shape)."""
    header, data = tensors()
    arrays = {}
    for key, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        a, b = info["data_offsets"]
        dt = {"F32": "<f4", "F64": "<f8", "F16": "<f2"}[info["dtype"]]
        arrays[key] = np.frombuffer(data[a:b], dtype=dt).reshape(info["shape"])
    if arr is None:
        del arrays[name]
    else:
        arrays[name] = arr
    return with_payload(saving._safetensors.dumps(arrays))


class Canary:
    """Unpickling this creates ``path``: proof that pickle ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def pickle_file(canary: str) -> bytes:
    return pickle.dumps({"weights": Canary(canary)})


def npz_with_object(canary: str) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, w=np.array([Canary(canary)], dtype=object))
    return buf.getvalue()


def zip_with_traversal() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../../x.json", "{}")
        z.writestr("/abs/weights.safetensors", "")
    return buf.getvalue()
