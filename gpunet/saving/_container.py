"""The ``.gpunet`` container: one file, checked end to end before it is parsed.

::

    offset  size  field
    0       8     magic  b"\\x89GPUNET\\n"  (the 0x89 and \\n catch 7-bit and
                                           text-mode transfers, as in PNG)
    8       4     container version, little-endian u32 (1)
    12      4     flags, u32, must be 0
    16      8     J: length of the JSON document, u64
    24      8     P: length of the tensor payload, u64
    32      J     JSON document (UTF-8)
    32+J    P     tensors in the safetensors layout
    32+J+P  32    SHA-256 of every byte before it

The file size must equal ``32 + J + P + 32`` exactly, and the checksum is
verified before the JSON or the tensors are looked at, so a damaged byte
anywhere is caught and a file never loads with silently wrong weights.

Example:
    >>> import numpy as np
    >>> from gpunet.saving import _container
    >>> blob = _container.pack({"kind": "weights"}, {"w": np.ones(2, "float32")})
    >>> doc, tensors = _container.unpack(blob)
    >>> doc["kind"], tensors["w"].tolist()
    ('weights', [1.0, 1.0])
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from gpunet.errors import ModelFileError
from gpunet.saving import _safetensors

MAGIC = b"\x89GPUNET\n"
VERSION = 1
FIXED = 32  # magic, version, flags, J, P
DIGEST = 32  # SHA-256
MAX_JSON = 16 * 2**20


def pack(doc: Mapping[str, Any], tensors: Mapping[str, Any]) -> bytes:
    """Serialise a JSON document and named arrays into one checksummed blob."""
    text = json.dumps(doc, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()
    payload = _safetensors.dumps(tensors)
    head = (
        MAGIC
        + VERSION.to_bytes(4, "little")
        + bytes(4)
        + len(text).to_bytes(8, "little")
        + len(payload).to_bytes(8, "little")
    )
    body = head + text + payload
    return body + hashlib.sha256(body).digest()


def check_head(head: bytes, size: int, where: str) -> tuple[int, int]:
    """Check the fixed header against the real size; returns ``(J, P)``."""
    if size == 0:
        raise ModelFileError(f"{where}: the file is empty, not a gpunet model file")
    if head[:8] != MAGIC[: len(head[:8])]:
        raise ModelFileError(f"{where}: not a gpunet model file (bad magic)")
    if size < FIXED + DIGEST:
        raise ModelFileError(
            f"{where}: truncated or not a gpunet file ({size:,} bytes; the smallest "
            f"possible file is {FIXED + DIGEST} bytes)"
        )
    version = int.from_bytes(head[8:12], "little")
    if version != VERSION:
        raise ModelFileError(
            f"{where}: container version {version} is not supported (this gpunet reads {VERSION})"
        )
    if head[12:16] != bytes(4):
        raise ModelFileError(f"{where}: unknown flags {head[12:16].hex()} in the header")
    n_json = int.from_bytes(head[16:24], "little")
    n_payload = int.from_bytes(head[24:32], "little")
    if n_json > MAX_JSON:
        raise ModelFileError(f"{where}: header length {n_json} exceeds limit {MAX_JSON}")
    expected = FIXED + n_json + n_payload + DIGEST
    if expected != size:
        raise ModelFileError(
            f"{where}: truncated or has trailing bytes (the header declares {expected:,} "
            f"bytes, found {size:,})"
        )
    return n_json, n_payload


def unpack(data: bytes, where: str = "model data") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Verify and split a blob into its JSON document and tensors.

    Raises:
        ModelFileError: naming the first problem found; nothing the file declares
            is allocated before the sizes and the checksum are known to be right.
    """
    n_json, _ = check_head(bytes(data[:FIXED]), len(data), where)
    view = memoryview(data)
    if hashlib.sha256(view[:-DIGEST]).digest() != bytes(view[-DIGEST:]):
        raise ModelFileError(
            f"{where}: checksum mismatch: the file is damaged (a byte changed or it was "
            "cut and padded)"
        )
    doc = _safetensors.parse_json(bytes(view[FIXED : FIXED + n_json]), where, "JSON document")
    if not isinstance(doc, dict):
        raise ModelFileError(f"{where}: the JSON document is not an object")
    tensors = _safetensors.loads(view[FIXED + n_json : -DIGEST], where)
    return doc, tensors


def read(path: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify the file at ``path`` (the header is checked before the rest
    is read, so a huge file that is not ours is refused after 32 bytes)."""
    where = repr(os.fspath(path))
    with open(path, "rb") as f:  # a missing file is a FileNotFoundError, as usual
        size = os.fstat(f.fileno()).st_size
        check_head(f.read(FIXED), size, where)
        f.seek(0)
        data = f.read()
    if len(data) != size:  # changed while we read it
        raise ModelFileError(f"{where}: the file changed size while it was read")
    return unpack(data, where)
