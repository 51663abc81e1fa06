"""What the Hugging Face ports (BERT, DistilBERT) share: reading and checking a config,
checking the model inputs, Hugging Face's weight initialisation, and the buffers that older
Hugging Face checkpoints save.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..backend import get_array_module
from ..checks import check_int_ids, number_problem
from ..nn import Embedding, LayerNorm, Linear, Module
from ..nn import init as nn_init
from ..nn.checks import check_array, check_mask, describe, is_array
from ..nn.layers import ACTIVATIONS

__all__ = [
    "check_activation",
    "check_model_inputs",
    "check_pad_token_id",
    "check_positive",
    "check_probability",
    "config_value",
    "drop_hf_buffers",
    "init_like_hf",
    "token_types_or_zeros",
]


# -- configuration ----------------------------------------------------------------------------


def config_value(cfg: dict[str, Any], key: str, model: str) -> Any:
    """``cfg[key]``, or a KeyError that names the missing key and the model."""
    if key not in cfg:
        raise KeyError(f"{model} config is missing the key {key!r}")
    return cfg[key]


def check_activation(name: Any, key: str, model: str) -> str:
    if name not in ACTIVATIONS:
        raise ValueError(
            f"{model} config {key}={name!r} is not supported: expected one of "
            f"{', '.join(ACTIVATIONS)}"
        )
    return name


def check_positive(value: Any, key: str, model: str) -> int:
    """A config size: a Python int (not a bool, not a NumPy integer: JSON gives ints) >= 1."""
    if number_problem(value, integer=True, low=1, types=(int,)) is not None:
        raise ValueError(f"{model} config {key} must be a positive integer, got {value!r}")
    return value


def check_probability(value: Any, key: str, model: str) -> float:
    """A config probability: a Python int or float in [0, 1] (as JSON gives it; a bool passes,
    as it always has here), as a float."""
    problem = number_problem(
        value, integer=False, low=0.0, high=1.0, types=(int, float), bool_ok=True
    )
    if problem is not None:
        raise ValueError(f"{model} config {key} must be a probability in [0, 1], got {value!r}")
    return float(value)


def check_pad_token_id(pad: Any, vocab_size: int, model: str) -> None:
    """The config's pad_token_id: None, or a row of the word-embedding table."""
    if pad is not None and not 0 <= pad < vocab_size:
        raise ValueError(
            f"{model} config pad_token_id={pad} must lie in [0, vocab_size={vocab_size})"
        )


# -- inputs, initialisation, checkpoints -------------------------------------------------------


def check_model_inputs(
    model: str,
    input_ids: Any,
    attention_mask: Any,
    vocab_size: int,
    max_positions: int,
    like: Any = None,
) -> tuple[int, int]:
    """input_ids: (B, T) integers in [0, vocab_size), 1 <= T <= max_positions; attention_mask
    None or a boolean / 0-1 array of shape (B, T); both of ``like``'s array module (the
    model's parameters)."""
    if not is_array(input_ids):
        raise TypeError(
            f"{model}: input_ids must be an integer array of shape (batch, length), "
            f"got {describe(input_ids)}"
        )
    check_array(model, "input_ids", input_ids, like)
    shape = tuple(input_ids.shape)
    if len(shape) != 2:
        raise ValueError(f"{model}: input_ids must have shape (batch, length), got {shape}")
    b, t = shape
    if t > max_positions:
        raise ValueError(
            f"{model}: sequence length {t} exceeds max_position_embeddings={max_positions}"
        )
    if t == 0:
        raise ValueError(
            f"{model}: input_ids must hold at least one token per sequence, got shape {shape}"
        )
    check_int_ids(f"{model}: input_ids", input_ids, vocab_size)
    if attention_mask is not None:
        check_mask(
            model,
            "attention_mask",
            attention_mask,
            (b, t),
            "the shape of input_ids (batch, length)",
            like,
        )
    return b, t


def init_like_hf(model: Module, std: float) -> None:
    """Hugging Face's ``_init_weights``: Linear and Embedding weights N(0, std²), biases 0,
    LayerNorm weight 1 and bias 0, the padding row of an embedding 0. Embeddings are drawn last,
    so a decoder weight tied to the word embeddings ends up as the embedding (padding row 0)."""
    for _, m in model.named_modules():
        if isinstance(m, Linear):
            nn_init.normal_(m.weight, std)
            if m.bias is not None:
                m.bias.data[...] = 0
        elif isinstance(m, LayerNorm):
            m.weight.data[...] = 1
            m.bias.data[...] = 0
    for _, m in model.named_modules():
        if isinstance(m, Embedding):
            nn_init.normal_(m.weight, std)
            if m.padding_idx is not None:
                m.weight.data[m.padding_idx] = 0


def drop_hf_buffers(state: dict[str, Any], prefix: str, names: tuple[str, ...]) -> dict[str, Any]:
    """Older Hugging Face checkpoints save the buffers ``embeddings.position_ids`` (0..P-1) and
    ``embeddings.token_type_ids`` (zeros). nanotf computes both on the fly: accept them when they
    hold those default values, refuse anything else."""
    if not isinstance(state, Mapping):
        raise TypeError(
            f"load_state_dict: expected a dict of name -> array, got {type(state).__name__}"
        )
    state = dict(state)
    for name in names:
        key = f"{prefix}embeddings.{name}"
        if key not in state:
            continue
        value = state.pop(key)
        arr = value.numpy() if hasattr(value, "numpy") else value
        xp = get_array_module(arr)
        flat = xp.asarray(arr).reshape(-1)
        want = xp.arange(flat.size) if name == "position_ids" else xp.zeros(flat.size)
        if not bool((flat == want).all()):
            raise ValueError(
                f"load_state_dict: {key} holds non-default values; nanotf uses positions "
                "0..T-1 and token type 0 by default"
            )
    return state


def token_types_or_zeros(
    token_type_ids: Any, input_ids: Any, type_vocab_size: int, like: Any = None
) -> Any:
    """BERT's token_type_ids, checked: None gives zeros; else an integer array of ``like``'s
    array module, of the shape of input_ids (B, T), with ids in [0, type_vocab_size)."""
    if token_type_ids is None:
        token_type_ids = get_array_module(input_ids).zeros(input_ids.shape, dtype=int)
    elif not is_array(token_type_ids):
        raise TypeError(
            f"BERT: token_type_ids must be an integer array of the shape of input_ids "
            f"{tuple(input_ids.shape)}, got {describe(token_type_ids)}"
        )
    else:
        check_array("BERT", "token_type_ids", token_type_ids, like)
    if tuple(token_type_ids.shape) != tuple(input_ids.shape):
        raise ValueError(
            f"BERT: token_type_ids must have the shape of input_ids {tuple(input_ids.shape)}, "
            f"got {tuple(token_type_ids.shape)}"
        )
    check_int_ids("BERT: token_type_ids", token_type_ids, type_vocab_size)
    return token_type_ids
