"""Pure math: every op is a forward function and a backward function, side by side.

``*_forward(...)`` returns ``(out, cache)``; ``*_backward(dout, cache)`` returns the gradients
of the inputs (and parameters) in the order the forward took them.

Some ops hand their work to a fused kernel for their inputs' array module (on CuPy: GELU, bias +
GELU, LayerNorm, the softmaxes along the last axis; see ``nanotf.functional.fused``), with the
same outputs and cache. ``reference_only()`` (a context manager), ``set_fused_enabled(False)``
or ``NANOTF_FUSED=0`` run the readable reference everywhere; ``fused_enabled()`` tells which.
"""

from . import fused as fused
from .activations import gelu_backward, gelu_forward, relu_backward, relu_forward
from .attention import (
    attention_backward,
    attention_forward,
    causal_mask,
    merge_heads,
    padding_mask,
    split_heads,
)
from .bias_gelu import bias_gelu_backward as bias_gelu_backward
from .bias_gelu import bias_gelu_forward as bias_gelu_forward
from .bias_relu import bias_relu_backward as bias_relu_backward
from .bias_relu import bias_relu_forward as bias_relu_forward
from .dropout import dropout_backward, dropout_forward
from .embedding import embedding_backward, embedding_forward
from .fused import reference_only as reference_only
from .layernorm import layernorm_backward, layernorm_forward
from .linear import linear_backward, linear_forward
from .loss import cross_entropy_backward, cross_entropy_forward
from .packing import TokenPacking as TokenPacking
from .packing import pack_tokens, token_packing, unpack_tokens
from .positional import add_positional_backward, add_positional_forward, sinusoidal_encoding
from .softmax import log_softmax_backward, log_softmax_forward, softmax_backward, softmax_forward
from .softmax import masked_softmax_backward as masked_softmax_backward
from .softmax import masked_softmax_forward as masked_softmax_forward

# The fused-kernel switch (``nanotf.functional.fused``), under names that say what they switch.
fused_enabled = fused.enabled
set_fused_enabled = fused.set_enabled

# ``__all__`` lists the ops: tests/functional/test_dout_shapes.py and test_input_errors.py run
# every op in it, so a new op gets its cases there when it joins. The switch (``fused``,
# ``reference_only``, ``fused_enabled``, ``set_fused_enabled``) is importable by name but is not
# an op, so it stays out.
__all__ = [
    "add_positional_backward",
    "add_positional_forward",
    "attention_backward",
    "attention_forward",
    "bias_gelu_backward",
    "bias_gelu_forward",
    "bias_relu_backward",
    "bias_relu_forward",
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
    "masked_softmax_backward",
    "masked_softmax_forward",
    "merge_heads",
    "pack_tokens",
    "padding_mask",
    "relu_backward",
    "relu_forward",
    "sinusoidal_encoding",
    "softmax_backward",
    "softmax_forward",
    "split_heads",
    "token_packing",
    "unpack_tokens",
]
