"""``GPT2Config``: the GPT-2 hyper-parameters read and checked from a Hugging Face config dict."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ..huggingface import (
    check_activation,
    check_positive,
    check_probability,
    config_value,
)


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
