"""A strict reader and writer of the safetensors layout, in Python and NumPy.

Layout (https://github.com/huggingface/safetensors): an 8-byte little-endian
header length ``N``, ``N`` bytes of JSON ``{name: {"dtype", "shape",
"data_offsets": [begin, end]}}`` (plus an optional string map ``__metadata__``),
then the tensor bytes, little-endian and C-ordered. Every check is ours, so
NumPy stays the only dependency and a hostile file is refused before anything
it declares is allocated: the header is capped, duplicate keys, unknown dtypes,
overflowing shapes, overlapping, gapped or trailing bytes are all errors.

Example:
    >>> import numpy as np
    >>> from gpunet.saving import _safetensors as st
    >>> blob = st.dumps({"w": np.arange(3, dtype="float32")})
    >>> st.loads(blob)["w"]
    array([0., 1., 2.], dtype=float32)
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from gpunet.errors import ModelFileError

MAX_HEADER = 16 * 2**20  # bytes of header JSON; a model needs a few KiB
MAX_RANK = 8
MAX_TENSORS = 100_000
# the only dtypes gpunet stores: weights and optimizer slots are floats
DTYPES: dict[str, np.dtype[Any]] = {
    "F16": np.dtype("<f2"),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
}
# and, in a state dict (gn.save / gn.load) alone, integer buffers such as batch norm's
# num_batches_tracked; a model file's weights are floats and its loaders refuse them
INTS: dict[str, np.dtype[Any]] = {"I64": np.dtype("<i8")}
_CODES = {v.name: k for k, v in (DTYPES | INTS).items()}
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,200}\Z")


def _fail(where: str, why: str) -> ModelFileError:
    return ModelFileError(f"{where}: {why}")


def parse_json(raw: bytes, where: str, what: str) -> Any:
    """Strict JSON: UTF-8, no duplicate keys, no NaN/Infinity, bounded nesting."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise _fail(where, f"duplicate key {key!r} in the {what}")
            out[key] = value
        return out

    def no_constants(name: str) -> Any:
        raise _fail(where, f"the {what} contains {name}, which JSON does not allow")

    try:
        text = raw.decode("utf-8")
        return json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constants)
    except ModelFileError:
        raise
    except UnicodeDecodeError:
        raise _fail(where, f"the {what} is not UTF-8 text") from None
    except RecursionError:
        raise _fail(where, f"the {what} is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, or an integer with too many digits
        raise _fail(where, f"the {what} is not valid JSON ({exc})") from None


def dumps(
    tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None, ints: bool = False
) -> bytes:
    """Serialise NumPy arrays of float16/32/64 (and int64 with ``ints``) in the
    safetensors layout."""
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs, offset = [], 0
    for name, value in tensors.items():
        arr = np.asarray(value)
        code = _CODES.get(arr.dtype.name)
        if code is None or (code in INTS and not ints) or not _NAME.match(name):
            raise ModelFileError(f"cannot store tensor {name!r} of dtype {arr.dtype}")
        data = np.ascontiguousarray(arr, dtype=(DTYPES | INTS)[code]).tobytes()
        header[name] = {"dtype": code, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}  # fmt: skip
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # 8-byte aligned data, as the reference writer does
    return len(head).to_bytes(8, "little") + head + b"".join(blobs)


Index = dict[str, tuple[np.dtype[Any], tuple[int, ...], int, int]]


def _index(where: str, header: Any, n_data: int, ints: bool) -> Index:
    allowed = DTYPES | INTS if ints else DTYPES
    if not isinstance(header, dict):
        raise _fail(where, "the tensor header is not a JSON object")
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _fail(where, "__metadata__ must map strings to strings")
    if len(header) > MAX_TENSORS:
        raise _fail(where, f"{len(header)} tensors exceed the limit of {MAX_TENSORS}")
    index: Index = {}
    for name, info in header.items():
        if not _NAME.match(name):
            raise _fail(where, f"invalid tensor name {name[:80]!r}")
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise _fail(where, f"tensor {name!r} must have exactly dtype, shape, data_offsets")
        code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if code not in allowed:
            raise _fail(
                where,
                f"tensor {name!r} has dtype {str(code)[:20]!r}; allowed: {', '.join(allowed)}",
            )
        if (not isinstance(shape, list) or len(shape) > MAX_RANK
                or not all(type(d) is int and d >= 0 for d in shape)):  # fmt: skip
            raise _fail(where, f"tensor {name!r} has an invalid shape {str(shape)[:80]}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(type(o) is int and 0 <= o for o in offsets)):  # fmt: skip
            raise _fail(where, f"tensor {name!r} has invalid data_offsets {str(offsets)[:80]}")
        begin, end = offsets
        size = allowed[code].itemsize
        for d in shape:  # Python ints do not overflow: compare as we go
            size *= d
            if size > n_data:
                break
        if end < begin or end - begin != size:
            raise _fail(
                where,
                f"tensor {name!r} declares {code}{shape} ({_bytes(size)}) but its data "
                f"offsets span {max(end - begin, 0):,} bytes",
            )
        index[name] = (allowed[code], tuple(shape), begin, end)
    pos = 0
    for name, (_, _, begin, end) in sorted(index.items(), key=lambda kv: kv[1][2:]):
        if begin != pos:
            why = "overlap" if begin < pos else "leave a gap"
            raise _fail(where, f"tensor offsets {why} at tensor {name!r} (byte {begin:,})")
        pos = end
    if pos != n_data:
        raise _fail(
            where,
            f"the tensor data is {n_data:,} bytes but the tensors cover {pos:,} "
            "(truncated, or trailing bytes)",
        )
    return index


def _bytes(n: int) -> str:
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    return f"{n:,} bytes"


def loads(
    data: bytes | memoryview, where: str = "safetensors data", ints: bool = False
) -> dict[str, np.ndarray]:
    """Parse and check a safetensors blob (float tensors, int64 too with ``ints``);
    returns read-only little-endian views.

    Raises:
        ModelFileError: for anything malformed, before any tensor is allocated.
    """
    view = memoryview(data)
    if len(view) < 8:
        raise _fail(where, f"{len(view)} bytes is too short for a safetensors header")
    n = int.from_bytes(view[:8], "little")
    if n > MAX_HEADER:
        raise _fail(where, f"header length {n} exceeds limit {MAX_HEADER}")
    if 8 + n > len(view):
        raise _fail(where, f"header length {n} runs past the end of the data ({len(view):,} bytes)")
    raw = bytes(view[8 : 8 + n])
    if not raw.startswith(b"{"):
        raise _fail(where, "the tensor header does not start with '{'")
    body = view[8 + n :]
    index = _index(where, parse_json(raw, where, "tensor header"), len(body), ints)
    return {
        name: np.frombuffer(
            body, dtype=dt, count=(end - begin) // dt.itemsize, offset=begin
        ).reshape(shape)
        for name, (dt, shape, begin, end) in index.items()
    }
