"""``Optimizer``: what every optimizer shares, and its checked ``state_dict`` round trip.

The parameter list, the learning rate, the step count, the per-parameter state arrays
(``state["exp_avg"][i]``, ...), the shared scratch space, ``zero_grad``, ``step`` and
``state_dict`` / ``load_state_dict``. A subclass (``SGD``, ``Adam``) names and checks its
hyperparameters, says which state arrays it keeps and writes the update of one parameter.

``state_dict()`` is a flat ``{str: numpy array | int | float}`` dict (``"step"``, ``"lr"``,
``"exp_avg.3"``, ...), host-side, ready for ``numpy.savez`` or safetensors;
``load_state_dict`` checks everything before it changes anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..backend import get_array_module, to_numpy
from ..nn.checks import describe, is_array
from ..nn.parameter import Parameter
from .checks import as_int, as_param_list, as_real

__all__ = ["Optimizer"]


def _host_copy(a: Any) -> np.ndarray:
    """A NumPy copy of ``a`` that later in-place updates cannot change."""
    host = to_numpy(a)
    return host.copy() if host is a else host


def _state_array(who: str, key: str, a: Any, p: Parameter, i: int) -> Any:
    """State array ``a`` (saved for ``params[i]``) as a new array of ``p``'s array module,
    shape and dtype, after checking that it is one: a real floating-point array (NumPy, or of
    the parameter's array module) of the parameter's shape, all finite. Refused, with a
    ``TypeError`` or ``ValueError`` naming ``key``: Python lists and numbers, torch tensors
    (convert with ``.detach().cpu().numpy()``), complex arrays (the imaginary part would be
    dropped), bool, integer, string and object arrays, and NaN or inf (a corrupt state)."""
    xp = get_array_module(p.data)
    shape = tuple(p.data.shape)
    where = f"{who}: {key!r}"
    if not (isinstance(a, np.ndarray) or (is_array(a) and get_array_module(a) is xp)):
        raise TypeError(
            f"{where}: expected a NumPy array (the state of params[{i}]), got {describe(a)}"
        )
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(
            f"{where}: expected a real floating-point array (params[{i}] is {p.data.dtype}), "
            f"got {describe(a)}"
        )
    if tuple(a.shape) != shape:
        raise ValueError(f"{where}: expected shape {shape} (params[{i}]), given {tuple(a.shape)}")
    with np.errstate(over="ignore"):  # float64 values beyond float32's range become inf: refused
        out = xp.array(a, dtype=p.data.dtype)  # a copy, on the parameter's device
    finite = xp.isfinite(out)
    if not bool(to_numpy(finite.all())):
        bad = int(to_numpy((~finite).sum()))
        raise ValueError(
            f"{where}: expected finite values, got {bad} NaN or infinite value(s) (a corrupt "
            f"state{'' if a.dtype == out.dtype else f', or values outside {out.dtype} range'})"
        )
    return out


class Optimizer:
    """What every optimizer shares: the parameter list, ``lr``, the step count, the per-parameter
    state arrays (``self.state[name][i]``), scratch space, ``zero_grad`` and ``state_dict``.

    A subclass names its hyperparameters (``_hyper_names``), checks them (``_check_hyper``), says
    which state arrays it keeps (``_buffer_names``) and writes the update of one parameter
    (``_update``); it may also update all of them at once through a fused kernel
    (``_update_all``).
    """

    _hyper_names: tuple[str, ...] = ("lr",)

    def __init__(self, params: Iterable[Parameter], hyper: dict[str, Any]) -> None:
        self.params: list[Parameter] = as_param_list(params, "params")
        self._set_hyper(self._check_hyper(hyper))
        #: number of updates done so far; update number t (1, 2, ...) uses t in bias corrections
        self.step_count = 0
        #: per-parameter state arrays, e.g. ``state["exp_avg"][i]``, same shape/dtype as ``θ_i``
        self.state: dict[str, list[Any]] = {}
        self._allocate_state()
        self._layout = [(p.data.shape, p.data.dtype) for p in self.params]
        self._scratch = self._make_scratch(2)
        #: what a fused kernel keeps from step to step (``adam_update_many``: its typed lists)
        self._fused_cache: dict[str, Any] = {}

    # -- hyperparameters --------------------------------------------------------------------------
    @property
    def lr(self) -> float:
        """The learning rate of the next step; a schedule may set it between steps."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = as_real("lr", value, low=0.0)

    def _check_hyper(self, hyper: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _set_hyper(self, hyper: dict[str, Any]) -> None:
        for name, value in hyper.items():
            setattr(self, name, value)

    def _hyper(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._hyper_names}

    def _buffer_names(self, hyper: dict[str, Any]) -> tuple[str, ...]:
        """Names of the state arrays kept for each parameter under these hyperparameters."""
        return ()

    # -- memory -----------------------------------------------------------------------------------
    def _allocate_state(self) -> None:
        self.state = {}
        for name in self._buffer_names(self._hyper()):
            self.state[name] = [get_array_module(p.data).zeros_like(p.data) for p in self.params]

    def _make_scratch(self, count: int) -> list[tuple[Any, ...]]:
        """``count`` scratch arrays shaped like each parameter, all views into ``count`` flat
        buffers per (array type, dtype) as long as the largest such parameter: the memory cost
        is that of one parameter, not of the whole model."""
        sizes: dict[tuple[type, Any], int] = {}
        owner: dict[tuple[type, Any], Parameter] = {}
        for p in self.params:
            key = (type(p.data), p.data.dtype)
            sizes[key] = max(sizes.get(key, 0), int(p.data.size))
            owner.setdefault(key, p)
        flat = {
            key: [get_array_module(owner[key].data).empty((n,), dtype=key[1]) for _ in range(count)]
            for key, n in sizes.items()
        }
        views = []
        for p in self.params:
            bufs = flat[(type(p.data), p.data.dtype)]
            views.append(tuple(b[: p.data.size].reshape(p.data.shape) for b in bufs))
        return views

    # -- the training-loop API ------------------------------------------------------------------
    def zero_grad(self) -> None:
        """Set every parameter's gradient to zero (in place)."""
        for p in self.params:
            p.zero_grad()

    def step(self) -> None:
        """Update every parameter from its ``.grad`` (an all-zero gradient still updates, as in
        PyTorch: momentum and weight decay keep acting)."""
        for i, p in enumerate(self.params):
            shape, dtype = self._layout[i]
            if p.data.shape != shape or p.data.dtype != dtype or p.grad.shape != shape:
                raise ValueError(
                    f"params[{i}]: expected data and grad of shape {shape} and dtype {dtype} "
                    f"(as when the optimizer was built), got data {tuple(p.data.shape)} "
                    f"{p.data.dtype} and grad {tuple(p.grad.shape)}; build the optimizer after "
                    "resizing or casting the model"
                )
        self.step_count += 1
        if self._update_all():
            return
        for i, p in enumerate(self.params):
            self._update(i, p)

    def _update(self, i: int, p: Parameter) -> None:
        raise NotImplementedError

    def _update_all(self) -> bool:
        """Update every parameter at once where a fused kernel can (``Adam``'s does), and say
        so; False (the default) leaves it to ``_update``, one parameter at a time."""
        return False

    # -- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The whole optimizer as a flat dict of host values: ``"step"``, ``"num_params"``, the
        hyperparameters (``"lr"``, ...) as Python numbers, and one NumPy array per parameter and
        state (``"exp_avg.0"``, ``"exp_avg.1"``, ...), copies that later steps do not change."""
        out: dict[str, Any] = {"step": self.step_count, "num_params": len(self.params)}
        for name, value in self._hyper().items():
            out[name] = int(value) if isinstance(value, bool) else value
        for name, arrays in self.state.items():
            for i, a in enumerate(arrays):
                out[f"{name}.{i}"] = _host_copy(a)
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a ``state_dict()``: step count, hyperparameters (``lr`` included, as PyTorch
        does) and state arrays, copied to the parameters' device and dtype.

        Everything is checked before anything changes, so a refused load leaves the optimizer
        exactly as it was. A state array must be a real floating-point NumPy array (or one of
        the parameters' array module) of its parameter's shape, with finite values: complex,
        integer, bool, string and object arrays, torch tensors, Python lists and numbers are
        refused (``TypeError``), and so are NaN and inf (``ValueError``: a corrupt state).
        """
        kind = type(self).__name__
        hyper, buffers = self._check_state_layout(state)
        step = as_int("step", state["step"], low=0)
        # every array checked and converted (to the parameter's device and dtype) before any
        # attribute changes: a refused load leaves the optimizer exactly as it was
        new_state = {
            b: [
                _state_array(f"{kind}.load_state_dict", f"{b}.{i}", state[f"{b}.{i}"], p, i)
                for i, p in enumerate(self.params)
            ]
            for b in buffers
        }
        # commit (nothing below can fail)
        self._set_hyper(hyper)
        self.step_count = step
        self.state = new_state

    def _check_state_layout(self, state: Any) -> tuple[dict[str, Any], tuple[str, ...]]:
        """The checks of ``load_state_dict`` that read no arrays: ``state`` is a mapping for as
        many parameters as this optimizer has, with this optimizer's hyperparameters (checked
        values) and exactly the keys they imply. Returns the hyperparameters and the names of
        the state arrays."""
        kind = type(self).__name__
        if not isinstance(state, Mapping):
            raise TypeError(
                f"{kind}.load_state_dict: expected a dict of str -> array or number, "
                f"got {type(state).__name__}"
            )
        if "num_params" not in state:
            raise ValueError(
                f"{kind}.load_state_dict: expected a key 'num_params', "
                f"given keys {sorted(state, key=str)}"
            )
        n = as_int("num_params", state["num_params"], low=0)
        if n != len(self.params):
            raise ValueError(
                f"{kind}.load_state_dict: expected a state for {len(self.params)} parameters, "
                f"given one for {n}"
            )
        missing = [k for k in self._hyper_names if k not in state]
        if missing:
            raise ValueError(
                f"{kind}.load_state_dict: expected the hyperparameters {list(self._hyper_names)}, "
                f"missing {missing} (is this the state of another optimizer?)"
            )
        hyper = self._check_hyper({k: state[k] for k in self._hyper_names})
        buffers = self._buffer_names(hyper)
        expected = {
            "step",
            "num_params",
            *self._hyper_names,
            *(f"{b}.{i}" for b in buffers for i in range(n)),
        }
        if set(state) != expected:
            raise ValueError(
                f"{kind}.load_state_dict: keys do not match; missing "
                f"{sorted(expected - set(state))}, "
                f"unexpected {sorted(set(state) - expected, key=str)}"
            )
        return hyper, buffers

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v!r}" for k, v in self._hyper().items())
        return f"{type(self).__name__}({len(self.params)} parameters, {hyper})"
