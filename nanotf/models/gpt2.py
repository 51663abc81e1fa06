"""GPT-2: ``GPT2Model`` (the decoder stack) and ``GPT2LMHeadModel``, with Hugging Face's names.

The module tree, every parameter name and every layout are those of
``transformers.GPT2LMHeadModel``, so a Hugging Face GPT-2 state dict loads as it is::

    model = GPT2LMHeadModel.from_config(hf_model.config.to_dict())
    model.load_state_dict({k: v.numpy() for k, v in hf_model.state_dict().items()})

GPT-2's projections are ``Conv1D``s: the weight is stored (in, out) and used as ``x @ W + b``
(the transpose of ``Linear``), so ``attn.c_attn.weight`` is (C, 3C), its columns the query, key
and value projections side by side. One block (``transformer.h.N``), pre-LN::

    a   = x + attn.resid_dropout(attn.c_proj(attention(ln_1(x))))      # causal self-attention
    out = a + mlp.dropout(mlp.c_proj(act(mlp.c_fc(ln_2(a)))))

and the model::

    h      = drop(wte[ids] + wpe[0..T-1])
    h      = ln_f(h.N(... h.0(h)))
    logits = h @ wte.T                                                # lm_head, tied to wte

Positions are 0..T-1 for every row, padded or not, as Hugging Face 5.x computes them when no
``position_ids`` are given (it does not shift them by the padding): so pad at the end (right
padding) and the real tokens sit at the positions they had in training. ``attention_mask``
(B, T), 1 for real tokens, only hides the padded keys.

Every gradient visible, after a forward and a backward::

    model.intermediate("transformer.h.0.attn.probs")            # (B, H, T, T), causal
    model.intermediate_grad("transformer.h.0.mlp.pre_activation")  # (B, T, n_inner)
    model.intermediate("transformer.ln_f.xhat")

The attention (``GPT2Attention``) runs the functional ops itself (``split_heads``,
``attention_forward`` with ``causal=True``, whose mask is aligned to the bottom right), so keys
and values cached from earlier steps are put in front of this step's keys and values: the
``forward_cached`` methods (inference only, eval mode, no backward afterwards) run the new
positions only against a list of ``KVCache`` (one a layer, ``model.new_cache()``), and
``generate(..., use_cache=True)`` (the default) uses them::

    caches = model.new_cache()
    logits = model.forward_cached(prompt, caches)        # (B, T, V), positions 0..T-1
    logits = model.forward_cached(next_ids, caches)      # (B, 1, V), position T
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ..backend import get_array_module, rng, to_numpy
from ..checks import number_problem
from ..functional import attention_backward, attention_forward, merge_heads, split_heads
from ..functional.sampling import check_sampling_args, next_token
from ..nn import (
    Activation,
    Dropout,
    Embedding,
    LayerNorm,
    Linear,
    Module,
    ModuleList,
    Parameter,
    residual_backward,
    residual_forward,
)
from ..nn import init as nn_init
from ..nn.attention import key_padding_to_mask
from ..nn.checks import check_array, check_float_input, check_positive_int, is_array
from ..nn.kv_cache import KVCache
from .huggingface import (
    check_activation,
    check_model_inputs,
    check_positive,
    check_probability,
    config_value,
    init_like_hf,
)

__all__ = ["Conv1D", "GPT2Config", "GPT2LMHeadModel", "GPT2Model"]


@dataclass(frozen=True)
class GPT2Config:
    """The hyper-parameters nanotf reads from a ``transformers.GPT2Config(...).to_dict()``."""

    vocab_size: int
    n_positions: int
    n_embd: int
    n_layer: int
    n_head: int
    n_inner: int | None  # None: 4 * n_embd
    activation_function: str
    resid_pdrop: float
    embd_pdrop: float
    attn_pdrop: float
    layer_norm_epsilon: float
    initializer_range: float
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    tie_word_embeddings: bool = True

    @property
    def inner_dim(self) -> int:
        return 4 * self.n_embd if self.n_inner is None else self.n_inner

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> GPT2Config:
        """Read and check the keys; unsupported Hugging Face options are a clear error."""
        if not isinstance(cfg, dict):
            raise TypeError(f"GPT-2 config must be a dict (GPT2Config.to_dict()), got {type(cfg)}")
        m = "GPT-2"
        optional = {"scale_attn_weights", "scale_attn_by_inverse_layer_idx", "tie_word_embeddings"}
        values = {
            f.name: config_value(cfg, f.name, m) for f in fields(cls) if f.name not in optional
        }
        for key in optional:
            if key in cfg:
                values[key] = bool(cfg[key])
        if cfg.get("add_cross_attention"):
            raise ValueError(
                f"{m} config add_cross_attention=True is not supported (nanotf's GPT-2 is a "
                "decoder-only language model; expected False)"
            )
        for key in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            check_positive(values[key], key, m)
        if values["n_inner"] is not None:
            check_positive(values["n_inner"], "n_inner", m)
        if values["n_embd"] % values["n_head"]:
            raise ValueError(
                f"{m} config n_embd={values['n_embd']} is not divisible by "
                f"n_head={values['n_head']}"
            )
        check_activation(values["activation_function"], "activation_function", m)
        for key in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
            values[key] = check_probability(values[key], key, m)
        eps = values["layer_norm_epsilon"]
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
            raise ValueError(
                f"{m} config layer_norm_epsilon must be a positive number, got {eps!r}"
            )
        # reorder_and_upcast_attn changes only the order of the scaling and a float32 upcast
        # under mixed precision: the same function in float32 and float64, accepted as is
        return cls(**values)


def _check_inference(module: Module, who: str) -> None:
    if module.training:
        raise RuntimeError(
            f"{who}: forward_cached is inference only (no dropout, no backward): call .eval() "
            "first"
        )


def _refuse_backward(module: Module, who: str) -> None:
    if getattr(module, "_cached_call", False):
        raise RuntimeError(
            f"{who}: backward after forward_cached: the cached path is inference only and keeps "
            "nothing for a backward; run forward first"
        )


# -- the modules, in Hugging Face's tree --------------------------------------------------------


class Conv1D(Module):
    """GPT-2's projection: ``y = x @ W + b`` with W stored (in_features, out_features).

    The transpose of ``Linear``'s layout, kept so that GPT-2 checkpoints load as they are.
    Backward (x flattened to (N, in)): ``dx = dout Wᵀ``, ``dW = xᵀ dout``, ``db = Σ dout``.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        in_features = check_positive_int("Conv1D", "in_features", in_features)
        out_features = check_positive_int("Conv1D", "out_features", out_features)
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(nn_init.normal((in_features, out_features), 0.02))
        self.bias = Parameter(nn_init.zeros((out_features,)))
        self._x: Any = None

    def forward(self, x: Any) -> Any:
        """x: (..., in_features) -> (..., out_features)."""
        n_in, n_out = self.in_features, self.out_features
        check_float_input(
            f"Conv1D({n_in} -> {n_out})",
            "input",
            x,
            like=self.weight.data,
            min_ndim=1,
            last_dim=n_in,
            layout=f"(..., {n_in})",
        )
        self._x = x
        x2 = x.reshape(-1, n_in)  # (N, in): one 2-D GEMM
        out = x2 @ self.weight.data  # (N, out)
        out += self.bias.data
        return out.reshape(*x.shape[:-1], n_out)

    def backward(self, dout: Any) -> Any:
        x = self._x
        n_in, n_out = self.in_features, self.out_features
        d2 = dout.reshape(-1, n_out)  # (N, out)
        self.accumulate(self.weight, x.reshape(-1, n_in).T @ d2)  # (in, N) @ (N, out)
        self.accumulate(self.bias, d2.sum(axis=0))
        return (d2 @ self.weight.data.T).reshape(x.shape)  # (N, out) @ (out, in)

    def _extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}"


class GPT2Attention(Module):
    """Causal self-attention: ``c_attn`` (C -> 3C: q, k, v), the heads, ``c_proj``, dropout.

    ``forward(x, attention_mask=None)``: x (B, T, C) -> (B, T, C); ``attention_mask`` (B, T) is
    1/True for the keys that may be attended (real tokens). Scores are scaled by 1/√head_dim
    (``scale_attn_weights``) and by 1/(layer index + 1) with ``scale_attn_by_inverse_layer_idx``.
    Saves ``scores`` and ``probs`` (B, H, T, T) and their gradients.
    """

    def __init__(self, c: GPT2Config, layer_idx: int) -> None:
        super().__init__()
        self.n_embd, self.n_head = c.n_embd, c.n_head
        self.head_dim = c.n_embd // c.n_head
        scale = 1.0 / math.sqrt(self.head_dim) if c.scale_attn_weights else 1.0
        if c.scale_attn_by_inverse_layer_idx:
            scale /= float(layer_idx + 1)
        self.scale = scale
        self.attn_pdrop = c.attn_pdrop  # dropout on the probabilities, inside the attention op
        self.c_attn = Conv1D(c.n_embd, 3 * c.n_embd)
        self.c_proj = Conv1D(c.n_embd, c.n_embd)
        self.resid_dropout = Dropout(c.resid_pdrop)
        self._cache: Any = None
        self._cached_call = False  # the last call was forward_cached: no backward possible

    def forward(self, x: Any, attention_mask: Any = None) -> Any:
        self._cached_call = False
        b, t, c = x.shape
        mask = None
        if attention_mask is not None:  # (B, Tk) -> (B, 1, 1, Tk), combined with the causal one
            like = self.c_proj.weight.data
            mask = key_padding_to_mask(attention_mask, b, t, "GPT2Attention", like)
        qkv = self.c_attn.forward(x)  # (B, T, 3C)
        q = split_heads(qkv[..., :c], self.n_head)  # (B, H, T, D)
        k = split_heads(qkv[..., c : 2 * c], self.n_head)  # (B, H, T, D)
        v = split_heads(qkv[..., 2 * c :], self.n_head)  # (B, H, T, D)
        out, self._cache = attention_forward(
            q,
            k,
            v,
            mask=mask,
            causal=True,
            dropout_p=self.attn_pdrop,
            training=self.training,
            scale=self.scale,
        )
        self.save(scores=self._cache.scores, probs=self._cache.probs)
        out = self.c_proj.forward(merge_heads(out))  # (B, T, C)
        return self.resid_dropout.forward(out)

    def forward_cached(self, x_new: Any, cache: KVCache, attention_mask: Any = None) -> Any:
        """Incremental causal self-attention, **inference only**: x_new (B, Tn, C), the new
        positions only -> (B, Tn, C).

        Projects the new positions with ``c_attn``, appends their keys and values to ``cache``
        and attends the new queries to every cached key with ``causal=True`` (aligned bottom
        right: a block of new queries sees every earlier key and the new ones up to itself), so
        the rows equal ``forward``'s on the whole sequence at those positions.
        ``attention_mask`` (B, T_cached + Tn) covers every key, cached and new. Dropout is off,
        nothing is kept for a backward (no scores, no probabilities), and ``backward`` after it
        raises. Needs eval mode.
        """
        who = f"GPT2Attention(n_embd={self.n_embd}, n_head={self.n_head})"
        _check_inference(self, who)
        if not isinstance(cache, KVCache):
            raise TypeError(
                f"{who}: forward_cached needs a KVCache, got {type(cache).__name__}"
            )
        like = self.c_proj.weight.data
        check_float_input(
            who, "x_new", x_new, like=like, ndim=3, last_dim=self.n_embd,
            layout=f"(batch, new positions, {self.n_embd})",
        )
        b, _, c = x_new.shape
        self._cached_call, self._cache = True, None
        qkv = self.c_attn.forward(x_new)  # (B, Tn, 3C)
        q = split_heads(qkv[..., :c], self.n_head)  # (B, H, Tn, D)
        k, v = cache.append(
            split_heads(qkv[..., c : 2 * c], self.n_head),
            split_heads(qkv[..., 2 * c :], self.n_head),
        )  # (B, H, T_cached + Tn, D) each
        mask = None
        if attention_mask is not None:
            mask = key_padding_to_mask(attention_mask, b, k.shape[2], who, like)
        out, _ = attention_forward(
            q, k, v, mask=mask, causal=True, training=False, scale=self.scale
        )
        return self.c_proj.forward(merge_heads(out))  # (B, Tn, C); resid_dropout is off

    def backward(self, dout: Any) -> Any:
        _refuse_backward(self, "GPT2Attention")
        d = self.c_proj.backward(self.resid_dropout.backward(dout))  # (B, T, C)
        grads: dict[str, Any] = {}
        dq, dk, dv = attention_backward(split_heads(d, self.n_head), self._cache, grads)
        self.save_grad(**grads)
        xp = get_array_module(d)
        dqkv = xp.concatenate([merge_heads(dq), merge_heads(dk), merge_heads(dv)], axis=-1)
        return self.c_attn.backward(dqkv)  # (B, T, C)

    def _extra_repr(self) -> str:
        return f"n_embd={self.n_embd}, n_head={self.n_head}, causal=True"


class GPT2MLP(Module):
    """``dropout(c_proj(act(c_fc(x))))``: C -> n_inner -> C. Saves ``pre_activation``."""

    def __init__(self, c: GPT2Config) -> None:
        super().__init__()
        self.c_fc = Conv1D(c.n_embd, c.inner_dim)
        self.c_proj = Conv1D(c.inner_dim, c.n_embd)
        self.act = Activation(c.activation_function)
        self.dropout = Dropout(c.resid_pdrop)

    def forward(self, x: Any) -> Any:
        pre = self.c_fc.forward(x)  # (B, T, n_inner)
        self.save(pre_activation=pre)
        return self.dropout.forward(self.c_proj.forward(self.act.forward(pre)))

    def backward(self, dout: Any) -> Any:
        dpre = self.act.backward(self.c_proj.backward(self.dropout.backward(dout)))
        self.save_grad(pre_activation=dpre)
        return self.c_fc.backward(dpre)


class GPT2Block(Module):
    """``a = x + attn(ln_1(x))``, ``out = a + mlp(ln_2(a))`` (the dropouts sit inside attn and
    mlp, as in Hugging Face)."""

    def __init__(self, c: GPT2Config, layer_idx: int) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(c.n_embd, c.layer_norm_epsilon)
        self.attn = GPT2Attention(c, layer_idx)
        self.ln_2 = LayerNorm(c.n_embd, c.layer_norm_epsilon)
        self.mlp = GPT2MLP(c)

    def forward(self, x: Any, attention_mask: Any = None) -> Any:
        """x: (B, T, C) -> (B, T, C)."""
        self._cached_call = False
        a = residual_forward(
            x, lambda h: self.attn.forward(h, attention_mask), self.ln_1, None, True
        )
        return residual_forward(a, self.mlp.forward, self.ln_2, None, True)

    def forward_cached(self, x_new: Any, cache: KVCache, attention_mask: Any = None) -> Any:
        """The block on the new positions only, **inference only**: x_new (B, Tn, C) ->
        (B, Tn, C), with ``GPT2Attention.forward_cached`` (``cache`` is this layer's)."""
        _check_inference(self, "GPT2Block")
        self._cached_call = True
        a = residual_forward(
            x_new,
            lambda h: self.attn.forward_cached(h, cache, attention_mask),
            self.ln_1,
            None,
            True,
        )
        return residual_forward(a, self.mlp.forward, self.ln_2, None, True)

    def backward(self, dout: Any) -> Any:
        _refuse_backward(self, "GPT2Block")
        da = residual_backward(dout, self.mlp.backward, self.ln_2, None, True)
        return residual_backward(da, self.attn.backward, self.ln_1, None, True)


def _init_gpt2(model: Module, c: GPT2Config) -> None:
    """Hugging Face's GPT-2 initialisation: Linear, Conv1D and Embedding weights N(0, std²),
    biases 0, LayerNorms 1 and 0, and the residual projections (``c_proj``) N(0, std²/(2 n_layer))
    (GPT-2's scaled initialisation)."""
    std = c.initializer_range
    init_like_hf(model, std)
    for name, m in model.named_modules():
        if isinstance(m, Conv1D):
            scaled = name.endswith("c_proj")
            nn_init.normal_(m.weight, std / math.sqrt(2 * c.n_layer) if scaled else std)
            m.bias.data[...] = 0


class GPT2Model(Module):
    """The decoder stack: ``wte``, ``wpe``, ``drop``, ``h.0 .. h.N-1``, ``ln_f``.

    ``forward(input_ids, attention_mask=None)`` -> hidden states (B, T, C), after ``ln_f``.
    Positions are 0..T-1 (see the module docstring on padding); ``backward(dhidden)`` adds into
    every ``Parameter.grad`` and returns None.
    """

    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        c = self.config = config
        self.wte = Embedding(c.vocab_size, c.n_embd)
        self.wpe = Embedding(c.n_positions, c.n_embd)
        self.drop = Dropout(c.embd_pdrop)
        self.h = ModuleList([GPT2Block(c, i) for i in range(c.n_layer)])
        self.ln_f = LayerNorm(c.n_embd, c.layer_norm_epsilon)
        self._cached_call = False
        _init_gpt2(self, c)

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> GPT2Model:
        """Build from ``transformers.GPT2Config(...).to_dict()``."""
        return cls(GPT2Config.from_dict(cfg))

    def forward(self, input_ids: Any, attention_mask: Any = None) -> Any:
        c = self.config
        like = self.wte.weight.data
        if is_array(input_ids) and input_ids.ndim == 2 and input_ids.shape[1] > c.n_positions:
            raise ValueError(
                f"GPT-2: sequence length {input_ids.shape[1]} is longer than the position table "
                f"(n_positions={c.n_positions}): a prompt longer than the position table cannot "
                f"be embedded; give at most {c.n_positions} tokens"
            )
        check_model_inputs("GPT-2", input_ids, attention_mask, c.vocab_size, c.n_positions, like)
        self._cached_call = False
        t = input_ids.shape[1]
        xp = get_array_module(like)
        e = self.wte.forward(input_ids)  # (B, T, C)
        e = e + self.wpe.forward(xp.arange(t))  # (T, C), broadcast over the batch
        h = self.drop.forward(e)
        for block in self.h:
            h = block.forward(h, attention_mask)  # (B, T, C)
        return self.ln_f.forward(h)

    def new_cache(self) -> list[KVCache]:
        """One empty ``KVCache`` per block, for ``forward_cached``."""
        return [KVCache() for _ in self.h]

    def forward_cached(
        self, input_ids_new: Any, caches: list[KVCache], attention_mask: Any = None
    ) -> Any:
        """The stack on the new positions only, **inference only** (eval mode, no backward
        afterwards): input_ids_new (B, Tn) -> hidden states (B, Tn, C) after ``ln_f``.

        ``caches``: one ``KVCache`` per block (``new_cache()``), holding the keys and values of
        the positions read so far; the new positions continue from there (``wpe`` rows
        past_len .. past_len + Tn - 1, past_len the cached length), so the rows equal
        ``forward``'s on the whole sequence. ``attention_mask`` (B, past_len + Tn) covers every
        position read so far, new ones included.
        """
        c = self.config
        who = "GPT-2 forward_cached"
        _check_inference(self, who)
        if not isinstance(caches, (list, tuple)) or len(caches) != len(self.h) or not all(
            isinstance(k, KVCache) for k in caches
        ):
            raise TypeError(
                f"{who}: caches must be a list of {len(self.h)} KVCache (one a layer, "
                f"model.new_cache()), got {type(caches).__name__}"
                + (f" of length {len(caches)}" if isinstance(caches, (list, tuple)) else "")
            )
        past = caches[0].length
        if any(k.length != past for k in caches):
            raise ValueError(f"{who}: the layers' caches hold different lengths")
        like = self.wte.weight.data
        check_array(who, "input_ids_new", input_ids_new, like)
        if input_ids_new.ndim != 2 or input_ids_new.shape[1] == 0:
            raise ValueError(
                f"{who}: input_ids_new expected (B, Tn) with Tn >= 1, got shape "
                f"{tuple(input_ids_new.shape)}"
            )
        b, tn = (int(n) for n in input_ids_new.shape)
        if past and caches[0].batch != b:
            raise ValueError(
                f"{who}: input_ids_new has {b} rows, the caches {caches[0].batch}"
            )
        if past + tn > c.n_positions:
            raise ValueError(
                f"{who}: {past} cached + {tn} new positions = {past + tn} is longer than the "
                f"position table (n_positions={c.n_positions})"
            )
        xp = get_array_module(like)
        self._cached_call = True
        e = self.wte.forward(input_ids_new)  # (B, Tn, C)
        h = e + self.wpe.forward(xp.arange(past, past + tn))  # (Tn, C); drop is off
        for block, cache in zip(self.h, caches, strict=True):
            h = block.forward_cached(h, cache, attention_mask)  # (B, Tn, C)
        return self.ln_f.forward(h)

    def backward(self, dout: Any) -> None:
        _refuse_backward(self, "GPT2Model")
        d = self.ln_f.backward(dout)
        for block in reversed(self.h):
            d = block.backward(d)
        d = self.drop.backward(d)  # (B, T, C)
        self.wte.backward(d)
        self.wpe.backward(d.sum(axis=0))  # every row used positions 0..T-1
        return None

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> dict[str, list[str]]:
        """As ``Module.load_state_dict``; the causal-mask buffers older Hugging Face versions
        saved (``h.N.attn.bias``, ``h.N.attn.masked_bias``) are checked and skipped."""
        return super().load_state_dict(drop_gpt2_buffers(state, ""), strict)


def drop_gpt2_buffers(state: Any, prefix: str) -> Any:
    """Older GPT-2 checkpoints hold, per block, ``attn.bias`` (1, 1, P, P), the lower-triangular
    causal mask, and ``attn.masked_bias`` (the constant -1e4 it filled with). nanotf builds the
    causal mask on the fly: the mask is accepted when it is lower triangular, refused otherwise."""
    if not hasattr(state, "items"):
        return state  # Module.load_state_dict says what it expected
    out = {}
    for key, value in state.items():
        rest = key[len(prefix) :] if key.startswith(prefix) else None
        parts = rest.split(".") if rest is not None else []
        is_buffer = (
            len(parts) == 4 and parts[0] == "h" and parts[2] == "attn"
            and parts[3] in ("bias", "masked_bias")
        )
        if not is_buffer:
            out[key] = value
            continue
        if parts[3] == "bias":
            arr = value.numpy() if hasattr(value, "numpy") else value
            xp = get_array_module(arr)
            arr = xp.asarray(arr)
            ok = arr.ndim >= 2 and arr.shape[-1] == arr.shape[-2]
            if ok:
                tri = xp.tril(xp.ones(arr.shape[-2:], dtype=bool))
                ok = bool(((arr != 0) == tri).all())
            if not ok:
                raise ValueError(
                    f"load_state_dict: {key} is not the lower-triangular causal mask; nanotf's "
                    "GPT-2 always attends causally"
                )
    return out


class GPT2LMHeadModel(Module):
    """``transformer`` (a GPT2Model) and ``lm_head``: logits = hidden @ wteᵀ, (B, T, V).

    ``lm_head.weight`` is ``transformer.wte.weight`` (one Parameter: its gradient sums the input
    and the output use; ``state_dict`` lists it under both names) unless the config says
    ``tie_word_embeddings: False``. ``forward(input_ids, attention_mask=None)`` -> logits;
    ``backward(dlogits)``.
    """

    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.config = config
        self.transformer = GPT2Model(config)
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.transformer.wte.weight
        else:
            nn_init.normal_(self.lm_head.weight, config.initializer_range)
        self._cached_call = False

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> GPT2LMHeadModel:
        """Build from ``transformers.GPT2Config(...).to_dict()``."""
        return cls(GPT2Config.from_dict(cfg))

    def forward(self, input_ids: Any, attention_mask: Any = None) -> Any:
        self._cached_call = False
        h = self.transformer.forward(input_ids, attention_mask)  # (B, T, C)
        return self.lm_head.forward(h)  # (B, T, V)

    def new_cache(self) -> list[KVCache]:
        """One empty ``KVCache`` per block, for ``forward_cached``."""
        return self.transformer.new_cache()

    def forward_cached(
        self, input_ids_new: Any, caches: list[KVCache], attention_mask: Any = None
    ) -> Any:
        """Logits (B, Tn, V) of the new positions only, **inference only** (eval mode; backward
        afterwards raises): see ``GPT2Model.forward_cached``. The first call may give the whole
        prompt, later ones one token per row."""
        _check_inference(self, "GPT2LMHeadModel.forward_cached")
        h = self.transformer.forward_cached(input_ids_new, caches, attention_mask)
        self._cached_call = True
        return self.lm_head.forward(h)  # (B, Tn, V)

    def backward(self, dlogits: Any) -> None:
        _refuse_backward(self, "GPT2LMHeadModel")
        self.transformer.backward(self.lm_head.backward(dlogits))
        return None

    def generate(
        self,
        input_ids: Any,
        max_new_tokens: int,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        eos_token_id: int | None = None,
        seed: int | None = None,
        pad_token_id: int | None = None,
        use_cache: bool = True,
    ) -> Any:
        """Continue every prompt by up to ``max_new_tokens`` tokens, as Hugging Face's
        ``generate``; returns the prompt followed by the new tokens, (B, T + n) int64,
        ``n <= max_new_tokens``. ``nanotf.generation.generate(model, ...)`` is the same call.

        ``input_ids`` (B, T): equal-length prompts (no padding), T + max_new_tokens at most
        ``n_positions``. With ``use_cache=True`` (the default) the first step runs
        ``forward_cached`` on the whole prompt and every later step on the one new token per row
        (the keys and values of the earlier positions are kept in ``new_cache()``); with
        ``use_cache=False`` each step runs the forward on the whole prefix (step t recomputes
        all T + t positions). Both in eval mode, taking the last position's logits; the
        next token is chosen on the host in float64 by ``functional.sampling.next_token``:
        greedy ``argmax`` (``do_sample=False``), or ``logits / temperature``, top-k, top-p and a
        draw from ``numpy.random.default_rng(seed)`` (``seed=None``: a seed drawn from nanotf's
        generator, so ``nanotf.manual_seed`` makes it repeat). The model's mode is restored.

        The EOS rule (Hugging Face's ``_sample`` with an EOS stopping criterion): a row is
        finished once it has produced ``eos_token_id`` (that EOS is kept); every later token of
        a finished row is ``pad_token_id`` (``eos_token_id`` where ``pad_token_id`` is None),
        whatever the model predicts; the loop stops as soon as every row is finished (so the
        result may be shorter than T + max_new_tokens) or after ``max_new_tokens`` steps.
        ``max_new_tokens=0`` returns (a copy of) the prompt.
        """
        c = self.config
        like = self.transformer.wte.weight.data
        xp = get_array_module(like)
        who = "GPT2LMHeadModel.generate"
        if not is_array(input_ids):
            raise TypeError(
                f"{who}: input_ids must be an integer array of shape (B, T), got "
                f"{type(input_ids).__name__}"
            )
        check_array(who, "input_ids", input_ids, like)
        if input_ids.ndim != 2:
            raise ValueError(
                f"{who}: input_ids expected (B, T) (a batch of prompts; one prompt is ids[None]), "
                f"got shape {tuple(input_ids.shape)}"
            )
        if input_ids.dtype.kind not in "iu":
            raise TypeError(f"{who}: input_ids must be integer ids, got dtype {input_ids.dtype}")
        b, t = (int(n) for n in input_ids.shape)
        if b == 0 or t == 0:
            raise ValueError(
                f"{who}: input_ids must hold at least one prompt of at least one token, got "
                f"shape {(b, t)}"
            )
        lo, hi = int(input_ids.min()), int(input_ids.max())
        if lo < 0 or hi >= c.vocab_size:
            raise ValueError(
                f"{who}: input_ids must lie in [0, vocab_size={c.vocab_size}), got a value of "
                f"{lo if lo < 0 else hi}"
            )
        problem = number_problem(max_new_tokens, integer=True, low=0)
        if problem is not None:
            raise problem.error(f"{who}: max_new_tokens {problem.words}, got {max_new_tokens!r}")
        if t + max_new_tokens > c.n_positions:
            raise ValueError(
                f"{who}: prompt length {t} + max_new_tokens {max_new_tokens} = "
                f"{t + max_new_tokens} is longer than the position table "
                f"(n_positions={c.n_positions}); give at most {c.n_positions - t} new tokens"
            )
        check_sampling_args(do_sample, temperature, top_k, top_p)
        for name, value in (("eos_token_id", eos_token_id), ("pad_token_id", pad_token_id)):
            if value is None:
                continue
            problem = number_problem(value, integer=True, low=0, high=c.vocab_size, high_open=True)
            if problem is not None:
                raise problem.error(f"{who}: {name} {problem.words}, got {value!r}")
        if seed is not None:
            problem = number_problem(seed, integer=True, low=0)
            if problem is not None:
                raise problem.error(f"{who}: seed {problem.words}, got {seed!r}")
        if not isinstance(use_cache, bool):
            raise TypeError(f"{who}: use_cache must be a bool, got {use_cache!r}")

        ids = input_ids.astype(np.int64)  # a copy: the caller's array is never touched
        if max_new_tokens == 0:
            return ids
        gen = None
        if do_sample:
            if seed is None:
                seed = int(rng().integers(0, 2**62))
            gen = np.random.default_rng(int(seed))
        fill = pad_token_id if pad_token_id is not None else eos_token_id
        unfinished = np.ones(b, dtype=bool)
        was_training = self.training
        self.train(False)
        caches = self.new_cache() if use_cache else None
        step_ids = ids  # what the cached path reads next: the prompt, then one token a row
        try:
            for _ in range(max_new_tokens):
                if caches is not None:
                    last = self.forward_cached(step_ids, caches)[:, -1]  # (B, V)
                else:
                    last = self.forward(ids)[:, -1]
                logits = to_numpy(last).astype(np.float64)  # (B, V)
                nxt = next_token(logits, do_sample, temperature, top_k, top_p, gen)  # (B,)
                if eos_token_id is not None:
                    nxt = np.where(unfinished, nxt, fill)
                    unfinished &= nxt != eos_token_id
                step_ids = xp.asarray(nxt)[:, None]  # (B, 1)
                ids = xp.concatenate([ids, step_ids], axis=1)
                if not unfinished.any():
                    break
        finally:
            self.train(was_training)
        return ids

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> dict[str, list[str]]:
        """As ``Module.load_state_dict``, skipping the old causal-mask buffers (see
        ``GPT2Model.load_state_dict``). ``lm_head.weight`` and ``transformer.wte.weight`` are one
        tied parameter: a state with different arrays under the two names is refused."""
        return super().load_state_dict(drop_gpt2_buffers(state, "transformer."), strict)
