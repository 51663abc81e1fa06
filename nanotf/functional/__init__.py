"""Pure math: every op is a forward function and a backward function, side by side.

``*_forward(...)`` returns ``(out, cache)``; ``*_backward(dout, cache)`` returns the gradients
of the inputs (and parameters) in the order the forward took them.
"""

from .activations import gelu_backward, gelu_forward, relu_backward, relu_forward
from .attention import (
    attention_backward,
    attention_forward,
    causal_mask,
    merge_heads,
    padding_mask,
    split_heads,
)
from .dropout import dropout_backward, dropout_forward
from .embedding import embedding_backward, embedding_forward
from .layernorm import layernorm_backward, layernorm_forward
from .linear import linear_backward, linear_forward
from .loss import cross_entropy_backward, cross_entropy_forward
from .positional import add_positional_backward, add_positional_forward, sinusoidal_encoding
from .softmax import log_softmax_backward, log_softmax_forward, softmax_backward, softmax_forward

__all__ = [
    "add_positional_backward",
    "add_positional_forward",
    "attention_backward",
    "attention_forward",
    "causal_mask",
    "cross_entropy_backward",
    "cross_entropy_forward",
    "dropout_backward",
    "dropout_forward",
    "embedding_backward",
    "embedding_forward",
    "gelu_backward",
    "gelu_forward",
    "layernorm_backward",
    "layernorm_forward",
    "linear_backward",
    "linear_forward",
    "log_softmax_backward",
    "log_softmax_forward",
    "merge_heads",
    "padding_mask",
    "relu_backward",
    "relu_forward",
    "sinusoidal_encoding",
    "softmax_backward",
    "softmax_forward",
    "split_heads",
]
