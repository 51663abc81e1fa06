"""Module: the base of every layer. It holds parameters and sub-modules, runs ``forward`` (keeping
what its ``backward`` needs) and ``backward`` (returning the input gradient and adding into each
``Parameter.grad``).

Every gradient visible: a module ``save``s its named intermediates in the forward (attention
probabilities, LayerNorm's normalised input, the FFN pre-activation, ...) and the gradients of
those in the backward. After one forward and backward, read them by dotted name from the top:

    model.intermediate("encoder.layers.0.self_attn.probs")
    model.intermediate_grad("encoder.layers.0.self_attn.probs")
    list(model.named_intermediates())   # everything there is to look at
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any

import numpy as np

from ..backend import BACKENDS, get_array_module, module_for, to_numpy
from .checks import check_array, describe
from .parameter import Parameter


def _not_an_array(name: str, value: Any, like: Any) -> str | None:
    """Why ``value`` cannot be read into a parameter ``like``, or None if it is an array
    (NumPy, or of ``like``'s array module) or a plain number (which is a 0-d value and then
    fails the shape check)."""
    if isinstance(value, (np.ndarray, np.generic, int, float)) and not isinstance(value, bool):
        return None
    try:
        check_array("load_state_dict", name, value, like)
    except TypeError as err:
        return str(err).removeprefix("load_state_dict: ")
    return None


def _same_bits(a: Any, b: Any, like: Any) -> bool:
    """``a`` and ``b`` (same shape and dtype as ``like``) hold the same bits: -0.0 differs from
    0.0 and a NaN equals the same NaN, so the tied parameter gets exactly what both names say."""
    if a is b:
        return True
    xp = get_array_module(like)
    bits = np.dtype(f"u{like.dtype.itemsize}")
    return bool(xp.array_equal(xp.asarray(a).view(bits), xp.asarray(b).view(bits)))


def _check_state_values(
    who: str, state: Mapping[str, Any], given: dict[str, Parameter]
) -> dict[int, str]:
    """The value checks of ``Module.load_state_dict`` for the parameters ``given`` by name:
    arrays (1), of each parameter's shape and dtype (2), the same bits under every name of a
    tied parameter (3). Returns ``{id(parameter): its first name}``, each Parameter once."""
    # 1. every value is an array (a number counts as a 0-d array and fails the shape check)
    wrong_type = [
        why
        for name, p in given.items()
        if (why := _not_an_array(name, state[name], p.data)) is not None
    ]
    if wrong_type:
        raise TypeError(f"{who}: " + "; ".join(wrong_type))
    # 2. of the parameter's shape and dtype
    errors = []
    for name, p in given.items():
        value = state[name]
        shape = tuple(getattr(value, "shape", ()))
        dtype = getattr(value, "dtype", None)
        if shape != p.shape:
            errors.append(f"{name}: expected shape {p.shape}, got {shape}")
        elif dtype is None or np.dtype(dtype) != p.dtype:
            errors.append(f"{name}: expected dtype {p.dtype}, got {dtype}")
    if errors:
        raise ValueError(f"{who}: " + "; ".join(errors))
    # 3. one Parameter under several names (tied weights): the arrays must be the same
    first: dict[int, str] = {}
    for name, p in given.items():
        if id(p) not in first:
            first[id(p)] = name
        elif not _same_bits(state[first[id(p)]], state[name], p.data):
            raise ValueError(
                f"{who}: {first[id(p)]} and {name} are one tied parameter in this model, "
                "but the state gives them different arrays (a checkpoint of an untied model "
                "does not load into a tied one)"
            )
    return first


def _is_dtype(value: Any) -> bool:
    try:
        np.dtype(value)
    except TypeError:
        return False
    return value is not None


def _target_of(backend: Any, dtype: Any) -> tuple[ModuleType | None, np.dtype | None]:
    """``Module.to``'s arguments as (array module or None, floating dtype or None)."""
    is_name = isinstance(backend, str) and backend.lower() in BACKENDS
    if not (backend is None or is_name or isinstance(backend, ModuleType)):
        if dtype is not None or not _is_dtype(backend):
            raise ValueError(
                f"Module.to: unknown backend {backend!r}: expected one of {', '.join(BACKENDS)}, "
                "an array module or a floating dtype"
            )
        backend, dtype = None, backend  # model.to(np.float64), model.to("float64")
    target = backend
    if is_name:
        target = module_for(backend)
    if dtype is not None:
        if not _is_dtype(dtype) or np.dtype(dtype).name not in ("float32", "float64"):
            raise ValueError(
                f"Module.to: expected a floating dtype the ops take (float32 or float64), "
                f"got {dtype!r}"
            )
        dtype = np.dtype(dtype)
    return target, dtype


def _moved(a: Any, target: ModuleType | None, dtype: np.dtype | None) -> Any:
    """``a`` on the array module ``target`` (through the host) and in ``dtype``; None keeps
    what ``a`` has. An array already there in that dtype is returned as is."""
    if target is not None and get_array_module(a) is not target:
        a = target.asarray(to_numpy(a))
    if dtype is not None and a.dtype != dtype:
        a = a.astype(dtype)
    return a


class Module:
    """Base class: sub-modules and parameters are registered by attribute assignment."""

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_saved", {})
        object.__setattr__(self, "_saved_grads", {})

    # -- registration -------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"call Module.__init__() in {type(self).__name__} before assigning")
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if name in self._buffers:
            self._buffers[name] = value
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no forward")

    def backward(self, dout: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no backward")

    # -- traversal ----------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module and every sub-module, depth first, with dotted names."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def children(self) -> Iterator[Module]:
        yield from self._modules.values()

    def _named_parameters_all(self) -> Iterator[tuple[str, Parameter]]:
        for mod_name, mod in self.named_modules():
            for name, p in mod._parameters.items():
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """Every parameter once (a tied parameter under its first name), like PyTorch."""
        seen: set[int] = set()
        for name, p in self._named_parameters_all():
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def num_parameters(self) -> int:
        return sum(p.data.size for p in self.parameters())

    # -- state ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{dotted name: array}`` for every parameter, tied ones under each of their names
        (as Hugging Face's ``state_dict()``). The arrays are the live ones, not copies."""
        return {name: p.data for name, p in self._named_parameters_all()}

    def load_state_dict(
        self, state: Mapping[str, Any], strict: bool = True
    ) -> dict[str, list[str]]:
        """Copy arrays into the parameters by name, in place (optimizers keep their references).

        Every value must be an array (NumPy, or of the parameters' array module) of exactly the
        parameter's shape and dtype: a Python list, a number or a torch tensor is refused (a
        ``TypeError`` naming the key and how to convert it), and so is a complex, integer or
        float64-for-float32 array (a ``ValueError``). A parameter that appears under several
        names (tied embeddings) must be given equal arrays (bitwise) under all the names that
        the state holds, else ``ValueError`` naming both keys.

        With ``strict`` (default) missing and unexpected keys are an error naming them;
        otherwise they are returned as ``{"missing_keys": [...], "unexpected_keys": [...]}``.
        Nothing is written unless every key checks out.
        """
        who = f"load_state_dict into {type(self).__name__}"
        if not isinstance(state, Mapping):
            raise TypeError(f"{who}: expected a dict of name -> array, got {describe(state)}")
        own = dict(self._named_parameters_all())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys: {', '.join(missing)}")
            if unexpected:
                parts.append(f"unexpected keys: {', '.join(unexpected)}")
            raise KeyError(f"{who}: " + "; ".join(parts))
        given = {name: p for name, p in own.items() if name in state}
        first = _check_state_values(who, state, given)
        # everything checked: write each Parameter once, in place
        for name in first.values():
            p = given[name]
            p.data[...] = get_array_module(p.data).asarray(state[name])
        return {"missing_keys": missing, "unexpected_keys": unexpected}

    # -- buffers, devices and dtypes ---------------------------------------------------------
    def register_buffer(self, name: str, array: Any) -> None:
        """Keep ``array`` as the attribute ``name``: state that is not trained (a position
        table), so not a parameter and not in ``state_dict()``, but moved and cast by ``to``."""
        self._buffers[name] = array
        object.__setattr__(self, name, array)

    def named_buffers(self) -> Iterator[tuple[str, Any]]:
        """Every buffer of this module and those below it, by dotted name."""
        for mod_name, mod in self.named_modules():
            for name, array in mod._buffers.items():
                yield (f"{mod_name}.{name}" if mod_name else name), array

    def to(self, backend: Any = None, dtype: Any = None) -> Module:
        """Move and/or cast every parameter (data and grad) and buffer, in place; returns self.

        As in PyTorch: ``model.to("cupy")``, ``model.to(np.float64)``,
        ``model.to("numpy", "float32")``. ``backend`` is ``"numpy"``, ``"cupy"`` or an array
        module (such as the CPU stand-in for CuPy, ``nanotf.testing.strict.strict``); a dtype in
        its place is taken as ``dtype``. ``dtype`` is a floating dtype (float16, float32,
        float64). A tied parameter is one Parameter and moves once. Build the optimizer after
        moving (as in PyTorch), and run a forward before the next backward: the caches of the
        last forward are not moved.
        """
        target, dtype = _target_of(backend, dtype)
        for p in self.parameters():
            p.data, p.grad = _moved(p.data, target, dtype), _moved(p.grad, target, dtype)
        for _, mod in self.named_modules():
            for name, array in mod._buffers.items():
                mod.register_buffer(name, _moved(array, target, dtype))
        return self

    def train(self, mode: bool = True) -> Module:
        """Training mode (dropout on) for this module and all below it."""
        for _, m in self.named_modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode: dropout is the identity."""
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    def accumulate(self, param: Parameter, grad: Any) -> None:
        """``param.grad += grad`` (backward passes add, so shared parameters sum up)."""
        if grad is not None:
            param.grad += grad

    # -- every gradient visible ------------------------------------------------------------
    def save(self, **arrays: Any) -> None:
        """Keep named intermediates of this forward (references, not copies)."""
        self._saved.update(arrays)

    def save_grad(self, **arrays: Any) -> None:
        """Keep the gradients of named intermediates computed in this backward."""
        self._saved_grads.update(arrays)

    def _resolve(self, dotted: str) -> tuple[Module, str]:
        parts = dotted.split(".")
        mod: Module = self
        for i, part in enumerate(parts[:-1]):
            if part not in mod._modules:
                known = ", ".join(mod._modules) or "none"
                where = ".".join(parts[:i]) or type(self).__name__
                raise KeyError(f"{dotted!r}: {where} has no sub-module {part!r} (has: {known})")
            mod = mod._modules[part]
        return mod, parts[-1]

    def intermediate(self, dotted: str) -> Any:
        """The intermediate activation saved under a dotted name in the last forward."""
        return self._lookup_saved(dotted, grads=False)

    def intermediate_grad(self, dotted: str) -> Any:
        """The gradient of the loss with respect to a saved intermediate (after a backward)."""
        return self._lookup_saved(dotted, grads=True)

    def _lookup_saved(self, dotted: str, grads: bool) -> Any:
        mod, key = self._resolve(dotted)
        saved = mod._saved_grads if grads else mod._saved
        if key not in saved:
            what, run = ("has gradients of", "backward") if grads else ("saved", "forward")
            have = ", ".join(saved) or f"nothing (run a {run} first)"
            raise KeyError(f"{dotted!r}: {type(mod).__name__} {what} {have}")
        return saved[key]

    def named_intermediates(self) -> Iterator[tuple[str, Any]]:
        """Every saved intermediate by dotted name."""
        for mod_name, mod in self.named_modules():
            for key, value in mod._saved.items():
                yield (f"{mod_name}.{key}" if mod_name else key), value

    def _extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self._extra_repr()}"]
        for name, child in self._modules.items():
            sub = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        return "\n".join(lines) + (")" if len(lines) == 1 else "\n)")


class ModuleList(Module):
    """A list of modules registered under "0", "1", ... (as PyTorch names layer stacks)."""

    def __init__(self, modules: list[Module]) -> None:
        super().__init__()
        for i, m in enumerate(modules):
            setattr(self, str(i), m)

    def __getitem__(self, i: int) -> Module:
        return self._modules[str(i if i >= 0 else len(self) + i)]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __reversed__(self) -> Iterator[Module]:
        """Last to first: the order in which a backward pass walks a stack of layers."""
        return reversed(self._modules.values())
