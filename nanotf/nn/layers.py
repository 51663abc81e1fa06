"""The basic layers: Linear, Embedding, LayerNorm, Dropout, Activation, PositionalEncoding.

Each layer calls its functional forward, keeps the cache, and in ``backward`` calls the
functional backward and adds the parameter gradients into ``.grad``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from ..backend import array_module, default_dtype, get_array_module
from ..functional import (
    add_positional_backward,
    add_positional_forward,
    bias_gelu_backward,
    bias_gelu_forward,
    bias_relu_backward,
    bias_relu_forward,
    dropout_backward,
    dropout_forward,
    embedding_backward,
    embedding_forward,
    gelu_backward,
    gelu_forward,
    layernorm_backward,
    layernorm_forward,
    linear_backward,
    linear_forward,
    relu_backward,
    relu_forward,
    sinusoidal_encoding,
)
from ..functional.bias_relu import BiasReluCache
from . import init
from .checks import (
    check_float_input,
    check_ids,
    check_positive_int,
    check_probability,
)
from .module import Module
from .parameter import Parameter


class Linear(Module):
    """``y = x @ W.T + b``; W: (out_features, in_features) as in PyTorch.

    Initialised as PyTorch does: U(-1/√in, 1/√in) for weight and bias.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        # PyTorch allows 0 features (an empty layer); nanotf's initialisation divides by the
        # fan-in, so a layer has at least one input and one output feature (the op itself takes
        # empty sizes, as torch's does)
        in_features = check_positive_int("Linear", "in_features", in_features)
        out_features = check_positive_int("Linear", "out_features", out_features)
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        self.weight = Parameter(init.uniform((out_features, in_features), bound))
        self.bias = Parameter(init.uniform((out_features,), bound)) if bias else None
        self._cache: Any = None

    def forward(self, x: Any) -> Any:
        """x: (..., in_features) -> (..., out_features)."""
        check_float_input(
            self._who(),
            "input",
            x,
            like=self.weight.data,
            min_ndim=1,
            last_dim=self.in_features,
            layout=f"(..., {self.in_features})",
        )
        out, self._cache = linear_forward(x, self.weight.data, self.bias and self.bias.data)
        return out

    def _who(self) -> str:
        return f"Linear({self.in_features} -> {self.out_features})"

    def backward(self, dout: Any) -> Any:
        dx, dw, db = linear_backward(dout, self._cache)
        self.accumulate(self.weight, dw)
        if self.bias is not None:
            self.accumulate(self.bias, db)
        return dx

    def _extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A lookup table (num_embeddings, embedding_dim); ``padding_idx`` row starts at 0 and gets
    no gradient, as in PyTorch. Initialised N(0, 1) as PyTorch does."""

    def __init__(
        self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None
    ) -> None:
        super().__init__()
        num_embeddings = check_positive_int("Embedding", "num_embeddings", num_embeddings)
        embedding_dim = check_positive_int("Embedding", "embedding_dim", embedding_dim)
        if padding_idx is not None:
            if isinstance(padding_idx, bool) or not isinstance(padding_idx, numbers.Integral):
                raise TypeError(
                    f"Embedding: padding_idx must be an integer or None, got {padding_idx!r}"
                )
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(
                    f"Embedding: padding_idx must lie in [-{num_embeddings}, {num_embeddings}) "
                    f"(a row of the table), got {padding_idx}"
                )
            padding_idx = int(padding_idx) % num_embeddings  # -1 is the last row, as in PyTorch
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx = padding_idx
        self.weight = Parameter(init.normal((num_embeddings, embedding_dim), 1.0))
        if padding_idx is not None:
            self.weight.data[padding_idx] = 0
        self._cache: Any = None

    def forward(self, ids: Any) -> Any:
        """ids: (...) integers in [0, num_embeddings) -> (..., embedding_dim)."""
        check_ids(
            f"Embedding({self.num_embeddings}, {self.embedding_dim})",
            "token ids",
            ids,
            self.num_embeddings,
            like=self.weight.data,
        )
        out, self._cache = embedding_forward(ids, self.weight.data, self.padding_idx)
        return out

    def backward(self, dout: Any) -> None:
        """Adds into the table's gradient; token ids have no gradient, so this returns None."""
        self.accumulate(self.weight, embedding_backward(dout, self._cache))
        return None

    def _extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, padding_idx={self.padding_idx}"


class LayerNorm(Module):
    """LayerNorm over the last dimension with ``weight`` (γ, ones) and ``bias`` (β, zeros).

    Saves ``xhat`` (the normalised input) and ``rstd`` for inspection.
    """

    def __init__(self, normalized_shape: int, eps: float = 1e-5) -> None:
        super().__init__()
        normalized_shape = check_positive_int("LayerNorm", "normalized_shape", normalized_shape)
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
            raise TypeError(f"LayerNorm: eps must be a positive real number, got {eps!r}")
        if not (math.isfinite(eps) and eps > 0):
            raise ValueError(f"LayerNorm: eps must be a positive real number, got {eps!r}")
        self.normalized_shape, self.eps = normalized_shape, float(eps)
        self.weight = Parameter(init.ones((normalized_shape,)))
        self.bias = Parameter(init.zeros((normalized_shape,)))
        self._cache: Any = None

    def forward(self, x: Any) -> Any:
        """x: (..., normalized_shape) -> the same shape."""
        n = self.normalized_shape
        check_float_input(
            f"LayerNorm({n})",
            "input",
            x,
            like=self.weight.data,
            min_ndim=1,
            last_dim=n,
            layout=f"(..., {n})",
        )
        out, self._cache = layernorm_forward(x, self.weight.data, self.bias.data, self.eps)
        self.save(xhat=self._cache.xhat, rstd=self._cache.rstd)
        return out

    def backward(self, dout: Any) -> Any:
        dx, dgamma, dbeta = layernorm_backward(dout, self._cache)
        self.accumulate(self.weight, dgamma)
        self.accumulate(self.bias, dbeta)
        return dx

    def _extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}"


class Dropout(Module):
    """Inverted dropout; the identity in eval mode. One instance per place it is used: the
    mask of this forward is what the backward applies."""

    def __init__(self, p: float = 0.1) -> None:
        super().__init__()
        self.p = check_probability("Dropout", "dropout probability", p)
        self._cache: Any = None

    def forward(self, x: Any) -> Any:
        """x: any shape, floating point -> the same shape."""
        check_float_input(f"Dropout(p={self.p})", "input", x)
        out, self._cache = dropout_forward(x, self.p, self.training)
        return out

    def backward(self, dout: Any) -> Any:
        return dropout_backward(dout, self._cache)

    def _extra_repr(self) -> str:
        return f"p={self.p}"


ACTIVATIONS = {
    "relu": "relu",
    "gelu": "none",  # exact erf form (BERT's "gelu", torch's default)
    "gelu_new": "tanh",  # tanh approximation (GPT-2's "gelu_new")
    "gelu_pytorch_tanh": "tanh",
}


class Activation(Module):
    """An activation by its Hugging Face name: ``relu``, ``gelu`` (exact erf form),
    ``gelu_new`` / ``gelu_pytorch_tanh`` (tanh approximation)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        if not isinstance(name, str) or name not in ACTIVATIONS:
            known = ", ".join(ACTIVATIONS)
            raise ValueError(f"unknown activation {name!r}: expected one of {known}")
        self.name = name
        self._cache: Any = None

    def forward(self, x: Any) -> Any:
        """x: any shape, floating point -> the same shape."""
        check_float_input(f"Activation({self.name!r})", "input", x)
        if self.name == "relu":
            out, self._cache = relu_forward(x)
        else:
            out, self._cache = gelu_forward(x, ACTIVATIONS[self.name])
        return out

    def backward(self, dout: Any) -> Any:
        if self.name == "relu":
            return relu_backward(dout, self._cache)
        return gelu_backward(dout, self._cache)

    def _extra_repr(self) -> str:
        return repr(self.name)


class PositionalEncoding(Module):
    """``x · √d_model + PE[:T]`` with the fixed sinusoidal table of the paper (no parameters).

    x: (B, T, d_model) token embeddings. ``scale=False`` leaves out the √d_model factor.
    """

    def __init__(self, d_model: int, max_len: int = 5000, scale: bool = True) -> None:
        super().__init__()
        d_model = check_positive_int("PositionalEncoding", "d_model", d_model)
        max_len = check_positive_int("PositionalEncoding", "max_len", max_len)
        self.d_model, self.max_len = d_model, max_len
        self.scale = math.sqrt(d_model) if scale else 1.0
        table = sinusoidal_encoding(max_len, d_model, dtype=default_dtype(), xp=array_module())
        self.register_buffer("table", table)  # (max_len, d_model); moved and cast by ``to``
        self._cache: Any = None

    def forward(self, x: Any) -> Any:
        """x: (batch, length, d_model) with length <= max_len -> the same shape."""
        who = f"PositionalEncoding(d_model={self.d_model}, max_len={self.max_len})"
        check_float_input(
            who,
            "input",
            x,
            ndim=3,
            last_dim=self.d_model,
            layout=f"(batch, length, {self.d_model})",
        )
        out, self._cache = add_positional_forward(x, self.table_like(x), self.scale)
        return out

    def table_like(self, x: Any) -> Any:
        """The position table on ``x``'s array module and in its dtype, after checking that
        ``x``'s length fits in it (for callers that run the functional pair themselves)."""
        if x.shape[1] > self.max_len:
            who = f"PositionalEncoding(d_model={self.d_model}, max_len={self.max_len})"
            raise ValueError(
                f"{who}: sequence length {x.shape[1]} exceeds the position table "
                f"(max_len={self.max_len})"
            )
        table = self.table
        xp = get_array_module(x)
        if xp is get_array_module(table) and table.dtype == x.dtype:
            return table
        # moved or cast once, then kept: not uploaded again at every forward
        key = (id(table), xp, x.dtype)
        cached = self.__dict__.get("_table_copy")
        if cached is None or cached[0] != key or cached[1] is not table:
            cached = (key, table, xp.asarray(table, dtype=x.dtype))
            object.__setattr__(self, "_table_copy", cached)
        return cached[2]

    def backward(self, dout: Any) -> Any:
        return add_positional_backward(dout, self._cache)

    def _extra_repr(self) -> str:
        return f"d_model={self.d_model}, max_len={self.max_len}"


def linear_activation_forward(
    linear: Linear, activation: Activation, x: Any
) -> tuple[Any, Any, Any]:
    """``pre = x Wᵀ + b`` and ``hidden = act(pre)`` with the bias added by the activation's op.

    ``x Wᵀ`` is ``linear_forward`` without the bias, then ``bias_relu_forward`` or
    ``bias_gelu_forward`` adds it (one pass fewer over the activations than ``linear.forward``
    then ``activation.forward``, and a fused kernel where there is one; the same values).
    ``linear`` must have a bias. Returns ``(pre, hidden, state)``; ``state`` is what
    ``linear_activation_backward`` needs.
    """
    mm, linear_cache = linear_forward(x, linear.weight.data, None)  # x Wᵀ: (..., out)
    form = ACTIVATIONS[activation.name]  # "relu", or GELU's "none" / "tanh"
    if form == "relu":
        hidden, cache = bias_relu_forward(mm, linear.bias.data)
        pre = cache.z
    else:
        hidden, cache = bias_gelu_forward(mm, linear.bias.data, form)
        pre = cache.gelu.x
    return pre, hidden, (linear_cache, cache)


def linear_activation_backward(linear: Linear, dhidden: Any, state: Any) -> tuple[Any, Any]:
    """``(dpre, dx)`` of ``linear_activation_forward``; dW and db are added into ``linear``'s
    ``.grad``, as ``Linear.backward`` adds them."""
    linear_cache, cache = state
    if isinstance(cache, BiasReluCache):
        dpre, dbias = bias_relu_backward(dhidden, cache)  # (..., out), (out,)
    else:
        dpre, dbias = bias_gelu_backward(dhidden, cache)
    dx, dweight, _ = linear_backward(dpre, linear_cache)  # dx: (..., in)
    linear.accumulate(linear.weight, dweight)
    linear.accumulate(linear.bias, dbias)
    return dpre, dx
