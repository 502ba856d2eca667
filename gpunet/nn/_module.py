"""The ``torch.nn.Module`` surface shared by gpunet's PyTorch-style modules:
``named_parameters``, ``named_modules``, ``children``, ``state_dict`` and
``load_state_dict`` with PyTorch's key names (``0.weight``, ``fc1.bias``), and
``print(model)`` as PyTorch prints the module tree.

Example:
    >>> from gpunet import nn
    >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    >>> list(net.state_dict())
    ['0.weight', '0.bias']
    >>> print(net)
    Sequential(
      (0): Linear(in_features=2, out_features=3, bias=True)
      (1): ReLU()
    )
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, NamedTuple, cast

import numpy as np

from gpunet.autograd import Tensor, as_tensor
from gpunet.layers.base import Layer, Parameter, structure_changed, takes_training

_in_forward = threading.local()  # .ids: modules whose subclass forward runs on this thread
_OWN_FORWARD: dict[type, bool] = {}


def _forward_ids() -> set[int]:
    ids: set[int] | None = getattr(_in_forward, "ids", None)
    if ids is None:
        ids = _in_forward.ids = set()
    return ids


def _marked(module: Any, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``fn(*args, **kwargs)`` with ``module`` marked as inside its forward on this thread."""
    ids = _forward_ids()
    ids.add(id(module))
    try:
        return fn(*args, **kwargs)
    finally:
        ids.discard(id(module))


def overrides_forward(cls: type) -> bool:
    """Whether ``cls`` subclasses one of gpunet's built-in modules (``nn.Linear``,
    ``nn.MultiheadAttention``, ``nn.LSTM``, ...) with a ``forward`` of its own, PyTorch's
    extension point (``nn.Module`` subclasses define ``forward`` as their pass anyway)."""
    known = _OWN_FORWARD.get(cls)
    if known is None:
        from gpunet.models import Model  # whose call itself runs forward

        def own_pass(k: type) -> bool:  # a built-in pass: an array pass, or a layer's call
            gpunet_call = "call" in vars(k) and k.__module__.startswith("gpunet.")
            return "forward_pass" in vars(k) or (gpunet_call and not issubclass(k, Model))

        mro = cls.__mro__
        fwd = next((k for k in mro if "forward" in vars(k)), None)
        passer = next((k for k in mro if own_pass(k)), None)
        known = (
            fwd is not None and passer is not None and mro.index(fwd) < mro.index(passer)
            and not fwd.__module__.startswith("gpunet.")
        )  # fmt: skip
        _OWN_FORWARD[cls] = known
    return known


def named_children(layer: Layer) -> list[tuple[str, Layer]]:
    """Direct sublayers with PyTorch's names: attribute names, or positions in
    a ``Sequential``/``ModuleList``, or keys of a ``ModuleDict``."""
    keys = getattr(layer, "_child_names", None)
    subs = list(layer._layers)
    if keys is not None:
        return list(zip(keys(), subs, strict=True))
    from gpunet.models import Sequential

    if isinstance(layer, Sequential):
        return [(str(i), m) for i, m in enumerate(subs)]
    by_id = {id(v): k for k, v in vars(layer).items() if isinstance(v, Layer) and k != "_parent"}
    own = vars(layer).get("_layers_attr")  # ``self.layers = ...`` (Layer keeps it aside)
    if isinstance(own, Layer):
        by_id[id(own)] = "layers"
    return [(by_id.get(id(m), m.name), m) for m in subs]


def own_params(layer: Layer) -> list[tuple[str, Parameter]]:
    by_id = {id(v): k for k, v in vars(layer).items() if isinstance(v, Parameter)}
    return [(by_id.get(id(p), p.name or str(i)), p) for i, p in enumerate(layer._params)]


def walk(layer: Layer, prefix: str = "") -> Iterator[tuple[str, Layer]]:
    """``(dotted name, layer)`` for ``layer`` and every sublayer, each once."""
    seen: set[int] = set()
    stack = [(prefix, layer)]
    while stack:
        name, m = stack.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        yield name, m
        kids = named_children(m)
        stack.extend((f"{name}.{k}" if name else k, c) for k, c in reversed(kids))


def _tensors(layer: Layer, buffers: bool) -> Iterator[tuple[str, Parameter]]:
    seen: set[int] = set()
    for name, m in walk(layer):  # a module's parameters, then its buffers, as PyTorch
        for key, p in sorted(own_params(m), key=lambda kp: not kp[1].trainable):
            if id(p) not in seen and (buffers or p.trainable):
                seen.add(id(p))
                yield (f"{name}.{key}" if name else key), p


class _IncompatibleKeys(NamedTuple):
    missing_keys: list[str]
    unexpected_keys: list[str]


def _values(value: Any) -> np.ndarray:
    if isinstance(value, Tensor):
        return value.numpy()
    detach = getattr(value, "detach", None)  # a torch tensor
    return np.asarray(detach().cpu() if callable(detach) else value)


def torch_param(layer: Layer, name: str, values: np.ndarray) -> Parameter:
    """A weight of a PyTorch-style module from host ``values`` (drawn with PyTorch's
    initialization by the caller), on the layer's device and in its dtype."""
    p = Parameter(
        layer.ops.asarray(values, dtype=layer.dtype), layer.ops, name=f"{layer.name}/{name}"
    )
    layer._params.append(p)
    return p


class ParamList(list):  # type: ignore[type-arg]
    """A list of parameters that ``next()`` also walks, as PyTorch's generator."""

    _at = 0

    def __next__(self) -> Any:
        if self._at >= len(self):
            raise StopIteration
        self._at += 1
        return self[self._at - 1]


class TorchModule:
    """Mixin: the ``torch.nn.Module`` methods, on any gpunet ``Layer``."""

    __slots__ = ()
    # PyTorch has no Keras masks: a ``mask`` argument of a module is its own (an
    # attention mask, say), never filled in or checked as a (batch, time) mask
    keras_masks = False
    training = True  # torch.nn.Module starts in training mode

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """PyTorch's ``forward``: the module's own pass. A subclass overrides it, and
        reaches the built-in pass with ``super().forward(x)``."""
        me = cast(Any, self)
        if id(self) in _forward_ids():
            return me(*args, **kwargs)
        return _marked(self, me, args, kwargs)  # the module's call must not come back here

    @property
    def keeps_input_dtype(self) -> bool:
        """PyTorch never casts a module's input: one without weights of its own (an
        activation, a container such as ``nn.Sequential``) passes a tensor on in its
        dtype, so a float64 layer inside keeps float64; one with weights casts a float
        input to theirs (where PyTorch raises)."""
        return not cast(Any, self)._params

    def _convert(self, x: Any) -> Any:
        if isinstance(x, Tensor) and self.keeps_input_dtype:
            return as_tensor(x, cast(Any, self).ops)
        return super()._convert(x)  # type: ignore[misc]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The module's own call, or the ``forward`` a subclass gave it; inside that
        ``forward``, ``super().forward(x)`` (which calls the module) is the own pass.
        Forward hooks run around it (``register_forward_hook``)."""
        hooks = cast(Any, self).__dict__.get("_hooks_fwd")
        if hooks and id(self) not in _forward_ids():
            return _hooked(self, hooks, args, kwargs)
        return self._own_call(args, kwargs)

    def _own_call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        ids = _forward_ids()
        if id(self) in ids or not overrides_forward(type(self)):
            return super().__call__(*args, **kwargs)  # type: ignore[misc]
        forward = cast(Any, self).forward
        if "training" in kwargs and not takes_training(forward):
            del kwargs["training"]
        return _marked(self, forward, args, kwargs)

    def register_forward_pre_hook(self, hook: Any) -> Any:
        """``hook(module, args)`` before each call; a value it returns replaces the
        positional inputs (a tuple, or one input). Returns a handle with ``remove()``."""
        return _add_hook(self, "pre", hook)

    def register_forward_hook(self, hook: Any) -> Any:
        """``hook(module, args, output)`` after each call; a value it returns replaces
        the output (feature extraction). Returns a handle with ``remove()``."""
        return _add_hook(self, "post", hook)

    @property
    def runs_on_arrays(self) -> bool:
        """As the layer's, unless a subclass's ``forward`` replaced its pass or hooks
        watch its calls."""
        if cast(Any, self).__dict__.get("_hooks_fwd"):
            return False
        return not overrides_forward(type(self)) and bool(super().runs_on_arrays)  # type: ignore[misc]

    def __setattr__(self, key: str, value: Any) -> None:
        old = self.__dict__.get(key)
        if isinstance(old, Parameter) and not old.trainable and type(value) is Tensor:
            # a buffer given a new tensor (self.pe = ...) stays the buffer, as in PyTorch
            value = Parameter(value.data, value.ops, name=old.name or key, trainable=False)
            transient = self.__dict__.get("_transient", set())
            if id(old) in transient:
                transient.discard(id(old))
                transient.add(id(value))
        if isinstance(value, Parameter) and isinstance(old, Parameter) and old is not value:
            # a weight replaced (tied: decoder.weight = encoder.weight) takes the old
            # one's place, as PyTorch re-registers it: the old weight is gone
            params = self._params  # type: ignore[attr-defined]
            for i, p in enumerate(params):
                if p is old:
                    params[i] = value
                    object.__setattr__(self, key, value)
                    return
        super().__setattr__(key, value)

    def apply(self, fn: Any) -> Any:
        """Call ``fn`` on every submodule, children first, then on this one."""

        def visit(m: Layer) -> None:
            for _, child in named_children(m):
                visit(child)
            fn(m)

        visit(self)  # type: ignore[arg-type]
        return self

    def parameters(self, recurse: bool = True) -> ParamList:
        """Every parameter (buffers aside), in PyTorch's order, whether or not it needs
        a gradient now (``requires_grad_(False)`` then ``(True)`` finds them again): a
        list that is also an iterator, so both ``len(net.parameters())`` and PyTorch's
        ``next(net.parameters())`` work."""
        return ParamList(p for _, p in self.named_parameters(recurse=recurse))

    def named_parameters(
        self, prefix: str = "", recurse: bool = True
    ) -> Iterator[tuple[str, Parameter]]:
        pairs = _tensors(self, buffers=False) if recurse else (  # type: ignore[arg-type]
            (k, p) for k, p in own_params(self) if p.trainable)  # type: ignore[arg-type]  # fmt: skip
        for name, p in pairs:
            yield (f"{prefix}.{name}" if prefix else name), p

    def requires_grad_(self, requires_grad: bool = True) -> Any:
        """Whether autograd records gradients for every parameter; returns ``self``."""
        for p in self.parameters():
            p.requires_grad = bool(requires_grad)
        return self

    def register_buffer(self, name: str, tensor: Any, persistent: bool = True) -> None:
        """A tensor the module keeps (moved and cast with it, in ``state_dict`` unless
        not ``persistent``) but never trains, as ``self.pe`` of a positional encoding."""
        if tensor is None:
            object.__setattr__(self, name, None)
            return
        me = cast(Any, self)
        data = tensor.data if isinstance(tensor, Tensor) else np.asarray(_values(tensor))
        buf = Parameter(me.ops.asarray(data), me.ops, name=f"{me.name}/{name}", trainable=False)
        setattr(self, name, buf)
        if not persistent:
            me.__dict__.setdefault("_transient", set()).add(id(buf))

    def register_parameter(self, name: str, param: Any) -> None:
        setattr(self, name, param) if param is not None else object.__setattr__(self, name, None)

    def add_module(self, name: str, module: Any) -> None:
        setattr(self, name, module)

    def get_submodule(self, target: str) -> Any:
        m: Any = self
        for part in filter(None, target.split(".")):
            if part not in dict(named_children(m)):
                raise AttributeError(f"{type(m).__name__} has no submodule {part!r}")
            m = (
                getattr(m, part)
                if not part.isdigit() or not hasattr(m, "__getitem__")
                else m[int(part)]
            )
        return m

    def get_parameter(self, target: str) -> Any:
        """The parameter at the dotted path ``target`` (``"encoder.0.weight"``)."""
        mod, _, name = target.rpartition(".")
        owner = self.get_submodule(mod)
        found = dict(owner.named_parameters(recurse=False)).get(name)
        if found is None:
            raise AttributeError(f"{type(owner).__name__} has no parameter {name!r}")
        return found

    def buffers(self) -> Iterator[Parameter]:
        return (p for _, p in self.named_buffers())

    def to(self, *args: Any, **kwargs: Any) -> Any:
        """PyTorch's ``to(device)``, ``to(dtype)``, ``to(device, dtype)``, ``to(tensor)``
        (its device and dtype), or keywords; floating weights and buffers change dtype.
        Returns ``self``."""
        device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
        kwargs.pop("non_blocking", None)
        if kwargs:
            raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
        for a in args:
            if isinstance(a, Tensor):
                device, dtype = a.device, a.dtype
            elif a is not None and _dtype_of(a) is not None:
                dtype = a  # gn.float64, "float64"
            else:
                device = a  # "cuda", gn.device("cuda:1")
        if device is not None:
            super().to(device)  # type: ignore[misc]
        return self if dtype is None else self._cast(dtype)

    def cuda(self, device: Any = None) -> Any:
        index = getattr(device, "index", device)
        return self.to("cuda" if index is None else f"cuda:{int(index)}")

    def cpu(self) -> Any:
        return self.to("cpu")

    def double(self) -> Any:
        return self._cast("float64")

    def float(self) -> Any:
        return self._cast("float32")

    def half(self) -> Any:
        return self._cast("float16")

    def type(self, dst_type: Any) -> Any:
        """Every floating weight and buffer cast to ``dst_type`` (a dtype), as ``to``."""
        return self._cast(dst_type)

    def _cast(self, dtype: Any) -> Any:
        """Every floating weight and buffer of every submodule in ``dtype``, and the
        modules computing in it (their inputs cast to it, as Keras layers do)."""
        dt = _dtype_of(dtype)
        if dt is None or dt.kind != "f":
            raise TypeError(f"nn.Module.to: dtype must be a floating type, got {dtype!r}")
        for ops in {id(p.ops): p.ops for _, m in walk(self) for p in m._params}.values():  # type: ignore[arg-type]
            try:  # every device first: nothing is cast unless all of it can be
                ops.dtype(dt.name)
            except (AttributeError, TypeError):
                raise TypeError(f"device {ops.device!r} has no {dt.name}") from None
        structure_changed()
        for _, m in walk(self):  # type: ignore[arg-type]
            for p in m._params:
                xp = p.ops.xp  # (any backend's dtype objects: the simulated device's too)
                if xp.isdtype(p.data.dtype, "real floating") and p.data.dtype != p.ops.dtype(
                    dt.name
                ):
                    grad = p._grad
                    p.data = p.ops.asarray(p.data, dtype=dt.name)
                    p._gbuf = None
                    p._grad = None if grad is None else p.ops.asarray(grad, dtype=dt.name)
            if not m.dtype_policy.is_mixed:
                m.dtype_policy = dt.name
        return self

    def named_buffers(self) -> Iterator[tuple[str, Parameter]]:
        for name, p in _tensors(self, buffers=True):  # type: ignore[arg-type]
            if not p.trainable:
                yield name, p

    def named_modules(self) -> Iterator[tuple[str, Layer]]:
        return walk(self)  # type: ignore[arg-type]

    def modules(self) -> Iterator[Layer]:
        return (m for _, m in walk(self))  # type: ignore[arg-type]

    def named_children(self) -> Iterator[tuple[str, Layer]]:
        return iter(named_children(self))  # type: ignore[arg-type]

    def children(self) -> Iterator[Layer]:
        return (m for _, m in named_children(self))  # type: ignore[arg-type]

    def state_dict(self) -> OrderedDict[str, Tensor]:
        """Every parameter and buffer by PyTorch's dotted name, in registration
        order; the tensors share memory with the model (detached), as in PyTorch."""
        skip = _transient(self)
        return OrderedDict(
            (k, p.detach())
            for k, p in _tensors(self, buffers=True)  # type: ignore[arg-type]
            if id(p) not in skip
        )

    def load_state_dict(self, state_dict: Any, strict: bool = True) -> _IncompatibleKeys:
        """Copy values in place by name (tensors, NumPy arrays or torch tensors).

        Raises:
            RuntimeError: with ``strict``, on missing or unexpected keys, as PyTorch
                does; always, on a shape mismatch. Nothing is copied then.
        """
        skip = _transient(self)
        own = {k: p for k, p in _tensors(self, buffers=True) if id(p) not in skip}  # type: ignore[arg-type]
        state_dict = _renamed(state_dict, own)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        errors = []
        if strict and unexpected:
            errors.append(
                "Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected)
            )
        if strict and missing:
            errors.append("Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing))
        values = {k: _values(v) for k, v in state_dict.items() if k in own}
        for k, v in values.items():
            if tuple(v.shape) != own[k].shape:
                errors.append(
                    f"size mismatch for {k}: copying a param with shape {tuple(v.shape)} from "
                    f"checkpoint, the shape in current model is {own[k].shape}."
                )
        if errors:
            raise RuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                + "\n\t".join(errors)
            )
        for k, v in values.items():
            own[k].assign(v)
        return _IncompatibleKeys(missing, unexpected)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return module_repr(self)  # type: ignore[arg-type]


class RemovableHandle:
    """What ``register_forward_hook`` returns: ``remove()`` takes the hook away."""

    def __init__(self, hooks: dict[int, tuple[str, Any]], key: int) -> None:
        self.hooks, self.id = hooks, key

    def remove(self) -> None:
        self.hooks.pop(self.id, None)


_HOOK_IDS = iter(range(1 << 62))  # next() on it is atomic under the GIL


def _add_hook(module: Any, when: str, hook: Any) -> RemovableHandle:
    if not callable(hook):
        raise TypeError(f"a forward hook must be callable, got {type(hook).__name__}")
    hooks = module.__dict__.get("_hooks_fwd")
    if hooks is None:
        hooks = {}
        object.__setattr__(module, "_hooks_fwd", hooks)
        structure_changed()  # a graph-free step planned for the model must see them
    key = next(_HOOK_IDS)
    hooks[key] = (when, hook)
    return RemovableHandle(hooks, key)


def _hooked(module: Any, hooks: dict[int, tuple[str, Any]], args: tuple[Any, ...],
            kwargs: dict[str, Any]) -> Any:  # fmt: skip
    for when, hook in list(hooks.values()):
        if when == "pre":
            new = hook(module, args)
            if new is not None:
                args = new if isinstance(new, tuple) else (new,)
    out = module._own_call(args, kwargs)
    for when, hook in list(hooks.values()):
        if when == "post":
            new = hook(module, args, out)
            if new is not None:
                out = new
    return out


def _dtype_of(x: Any) -> np.dtype[Any] | None:
    """NumPy's dtype for a dtype given as NumPy, gn or by name; None for anything else
    (a device: "cpu", "cuda:1")."""
    try:
        return np.dtype(getattr(x, "name", x))
    except (TypeError, ValueError):
        return None


def _transient(module: Any) -> set[int]:
    """The ids of the buffers registered with ``persistent=False`` (no state_dict)."""
    return set().union(*(m.__dict__.get("_transient", ()) for _, m in walk(module)))


# the Keras names nn.LayerNorm and nn.BatchNorm1d saved their tensors under before they
# took PyTorch's: a state_dict of that time loads into the modules of now
LEGACY_KEYS = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
               "moving_variance": "running_var"}  # fmt: skip


def _renamed(state_dict: Any, own: dict[str, Any]) -> Any:
    """``state_dict`` with each legacy key (``LEGACY_KEYS``) the module lacks under
    the name the module has and the dict does not hold."""
    renames = {}
    for k in state_dict:
        head, _, last = k.rpartition(".")
        new = LEGACY_KEYS.get(last)
        if new is not None and k not in own:
            new = f"{head}.{new}" if head else new
            if new in own and new not in state_dict:
                renames[k] = new
    if not renames:
        return state_dict
    return {renames.get(k, k): v for k, v in state_dict.items()}


def module_repr(m: Layer) -> str:
    """PyTorch's module tree: ``Name(extra)`` or ``Name(\\n  (child): ...\\n)``."""
    extra = m.extra_repr() if hasattr(m, "extra_repr") else ""
    kids = named_children(m)
    if not kids:
        return f"{type(m).__name__}({extra})"
    lines = [f"{type(m).__name__}(" + (extra if extra else "")]
    for name, c in kids:
        body = (repr(c) if isinstance(c, TorchModule) else module_repr(c)).replace("\n", "\n  ")
        lines.append(f"  ({name}): {body}")
    return "\n".join(lines) + "\n)"
