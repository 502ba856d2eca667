"""The value checkers the model-file schema is built from: each takes a JSON value
and its path in the document, and returns the value or raises a ``ModelFileError``
naming the path and what was expected."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from gpunet.errors import ModelFileError

Check = Callable[[Any, str], Any]
BIG = 2**31
_NAME = re.compile(r"[\w.\- ]{1,128}\Z")


def fail(path: str, why: str, hint: str = "") -> ModelFileError:
    return ModelFileError(f"{why} at {path}" + (f"; {hint}" if hint else ""))


# -- value checkers: each returns the value or raises ------------------------------------
def integer(lo: int = 0, hi: int = BIG) -> Check:
    def check(v: Any, path: str) -> int:
        if type(v) is not int or not lo <= v <= hi:
            raise fail(path, f"expected an int in [{lo}, {hi}], got {_show(v)}")
        return v

    return check


def number(lo: float = -math.inf, hi: float = math.inf, *, above: bool = False) -> Check:
    def check(v: Any, path: str) -> float:
        ok = type(v) in (int, float) and math.isfinite(v) and lo <= v <= hi
        if not ok or (above and v == lo):
            low = f"({lo}" if above else f"[{lo}"
            raise fail(path, f"expected a finite number in {low}, {hi}], got {_show(v)}")
        return v

    return check


def boolean(v: Any, path: str) -> bool:
    if type(v) is not bool:
        raise fail(path, f"expected true or false, got {_show(v)}")
    return v


def name(v: Any, path: str) -> str:
    if not isinstance(v, str) or not _NAME.match(v):
        raise fail(path, f"expected a name of letters, digits, '_', '.', '-', got {_show(v)}")
    return v


def one_of(*allowed: Any, what: str = "value") -> Check:
    def check(v: Any, path: str) -> Any:
        if not isinstance(v, (str, type(None))) or v not in allowed:
            choices = ", ".join(sorted(str(a) for a in allowed))
            raise fail(path, f"unknown {what} {_show(v)}", f"allowed: {choices}")
        return v

    return check


def optional(inner: Check) -> Check:
    def check(v: Any, path: str) -> Any:
        return None if v is None else inner(v, path)

    return check


def array(inner: Check, max_len: int = 64) -> Check:
    def check(v: Any, path: str) -> list[Any]:
        if not isinstance(v, list) or len(v) > max_len:
            raise fail(path, f"expected a list of at most {max_len} items, got {_show(v)}")
        return [inner(x, f"{path}[{i}]") for i, x in enumerate(v)]

    return check


def obj(fields: dict[str, Check], required: tuple[str, ...] = ()) -> Check:
    def check(v: Any, path: str) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise fail(path, f"expected an object, got {_show(v)}")
        for key in v:
            if key not in fields:
                raise fail(path, f"unknown key {_show(key)}")
        for key in required:
            if key not in v:
                raise fail(path, f"missing key {key!r}")
        return {k: fields[k](x, f"{path}.{k}") for k, x in v.items()}

    return check


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."
