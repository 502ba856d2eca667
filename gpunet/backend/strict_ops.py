"""``StrictOps``: the simulated device ``"sim"``, a device that is not the host.

It runs the reference ``Ops`` on ``array_api_strict`` arrays placed on that
library's ``no_float64`` device, so the whole training path can be checked on a
machine without a GPU for the mistakes a GPU punishes:

* mixing host and device arrays raises (``array_api_strict`` refuses arrays of
  two devices in one op, and ``numpy.asarray`` of a device array);
* a float64 leak raises: the device has no float64, as many GPUs in practice;
* a hidden device->host read raises. ``array_api_strict`` allows ``float()``,
  ``bool()``, ``int()`` and ``operator.index`` on any device, and CuPy allows them
  too, each a silent synchronisation. Here they raise ``DeviceError`` for arrays
  on the simulated device, so the only reads left are the explicit ones,
  :meth:`StrictOps.to_numpy` and ``to_host``, which count themselves in
  ``host_syncs``. Boolean-mask indexing and data-dependent shapes (also syncs on
  a GPU) are switched off through ``array_api_strict``'s flags;
* ``memory_limit`` makes ``fit`` stream the data as on a GPU too small for it.

Creating the device patches those four dunder methods of ``array_api_strict``'s
array class (arrays of other devices behave as before) and sets its global
flags; it is meant for tests and checks, never for real work.

Example:
    >>> from gpunet.backend.strict_ops import StrictOps
    >>> ops = StrictOps()
    >>> x = ops.asarray([1.0, 2.0], dtype="float32")
    >>> ops.to_numpy(ops.relu(x - 1.5)).tolist(), ops.host_syncs
    ([0.0, 0.5], 1)
"""

from __future__ import annotations

from typing import Any

import numpy

from gpunet import random as grandom
from gpunet.backend.ops import Ops
from gpunet.errors import DeviceError

Array = Any
SIM_DEVICE = "no_float64"
SECOND_SIM_DEVICE = "device1"  # "sim:1": a second device, to catch arrays of two mixed
_READS = ("__bool__", "__float__", "__int__", "__index__")
_GUARDED: set[Any] = set()  # the simulated devices whose implicit reads raise


class StrictOps(Ops):
    """Reference ops on a strict simulated device (see the module docs)."""

    name = "array_api_strict"
    device = "sim"
    is_host = False
    reads_are_free = False
    accum_dtype = "float32"  # no float64 on this device
    lowp_gemm = True  # as a GPU: a mixed policy's GEMMs in its dtype (AmpOps.lowp_matmul)

    def __init__(self, memory_limit: int | None = None, index: int = 0) -> None:
        super().__init__()
        if index not in (0, 1):
            raise DeviceError(f"the simulated devices are 'sim' and 'sim:1', not 'sim:{index}'")
        self.device = "sim" if index == 0 else "sim:1"
        try:
            import array_api_strict
        except ImportError:
            raise DeviceError(
                "the simulated device 'sim' needs array-api-strict: pip install array-api-strict"
            ) from None
        self.xp = array_api_strict
        self.sim_device = array_api_strict.Device(SIM_DEVICE if index == 0 else SECOND_SIM_DEVICE)
        self.device_kw = {"device": self.sim_device}
        self.memory_limit = memory_limit
        self.uploads = 0  # host->device transfers
        self._array_type = type(array_api_strict.asarray(0.0))
        self._dtype_type = type(array_api_strict.float32)
        array_api_strict.set_array_api_strict_flags(
            boolean_indexing=False, data_dependent_shapes=False
        )
        _forbid_implicit_reads(self._array_type, self.sim_device)

    # -- creation and transfer ---------------------------------------------------------
    def dtype(self, name: Any) -> Any:
        if isinstance(name, self._dtype_type):
            return name
        hit = self._dtypes.get(name) if isinstance(name, str) else None
        if hit is None:
            hit = getattr(self.xp, numpy.dtype(name).name)
            if isinstance(name, str):
                self._dtypes[name] = hit
        return hit

    def numpy_dtype(self, dtype: Any) -> numpy.dtype:
        """The NumPy dtype of a dtype object or name of this device."""
        return numpy.dtype(str(dtype).rsplit(".", 1)[-1])

    def asarray(self, X: Any, dtype: Any = None) -> Array:
        """Host data, or an array already on this device; anything else is refused."""
        dt = None if dtype is None else self.dtype(dtype)
        if isinstance(X, self._array_type):
            if X.device != self.sim_device:
                raise DeviceError(
                    f"an array on {X.device} was given to the 'sim' device; transfers "
                    "between devices must be explicit (to_numpy, then asarray)"
                )
            return X if dt is None or X.dtype == dt else self.xp.astype(X, dt)
        self.uploads += 1
        return self.xp.asarray(numpy.asarray(X), dtype=dt, device=self.sim_device)

    def to_numpy(self, X: Array) -> numpy.ndarray:
        if isinstance(X, numpy.ndarray):
            return X
        self.host_syncs += 1
        cpu = self.xp.Device("CPU_DEVICE")
        return numpy.asarray(X.to_device(cpu))

    def random_uniform(self, shape: tuple[int, ...], dtype: Any) -> Array:
        dt = self.numpy_dtype(dtype)
        return self.asarray(grandom.generator("dropout").random(shape, dtype=dt))

    def fits_in_memory(self, nbytes: int) -> bool:
        return self.memory_limit is None or nbytes <= self.memory_limit


def _forbid_implicit_reads(array_type: type, device: Any) -> None:
    _GUARDED.add(device)
    for name in _READS:
        original = getattr(array_type, name)
        if getattr(original, "_gpunet_guard", False):
            continue

        def guard(self: Any, *, _name: str = name, _original: Any = original) -> Any:
            if self.device in _GUARDED:
                raise DeviceError(
                    f"implicit device->host read ({_name}) of an array on the simulated "
                    "device: on a GPU this is a hidden synchronisation; read explicitly "
                    "with ops.to_numpy / ops.to_host, outside the batch loop"
                )
            return _original(self)

        guard._gpunet_guard = True  # type: ignore[attr-defined]
        setattr(array_type, name, guard)
