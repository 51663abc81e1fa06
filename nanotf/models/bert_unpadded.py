"""``BertModel.forward_unpadded``: BERT's evaluation forward with the padding left out.

The reference is ``BertModel.forward``, which runs every layer on the padded batch (B, T, H). Here
every step that works token by token (the linear layers, LayerNorms, GELU and the residual sums)
runs on the N real tokens alone, as rows (N, H), through the same modules; only attention puts them
back in the padded layout (B, heads, T, D), where the mask keeps the padding out. So padding costs
attention alone. The feed-forward's bias and GELU run as ``bias_gelu_forward(...,
need_backward=False)``: nothing is kept for a backward, so its kernel writes the output alone.
``SentenceEncoder.encode`` runs it; tests/models/test_bert_unpadded.py checks it against
``forward`` and against Hugging Face on the real tokens.
"""

from __future__ import annotations

from typing import Any

from ..backend import get_array_module
from ..functional import attention_forward, bias_gelu_forward, linear_forward
from ..nn import residual_forward
from ..nn.attention import key_padding_to_mask
from ..nn.layers import ACTIVATIONS

__all__ = ["forward_unpadded"]


def forward_unpadded(
    model: Any, input_ids: Any, attention_mask: Any, token_type_ids: Any = None
) -> Any:
    """``model.forward_unpadded(input_ids, attention_mask, token_type_ids)`` of a ``BertModel``
    (not imported here: it imports this): (B, T) -> (B, T, H), the real tokens' states as
    ``forward``'s, zeros at the padding (see the method)."""
    if model.training:
        raise RuntimeError(
            "BertModel.forward_unpadded runs in evaluation only (it applies no dropout): "
            "call model.eval() first"
        )
    if attention_mask is None:
        raise ValueError(
            "BertModel.forward_unpadded needs the attention_mask (B, T), 1 for real tokens"
        )
    h = model._embed(input_ids, attention_mask, token_type_ids)  # (B, T, H), checked
    xp = get_array_module(h)
    b, t, width = h.shape
    real = xp.nonzero(attention_mask != 0)  # (b, t) of the N real tokens, in row order
    pads = xp.nonzero(attention_mask == 0)
    mask = key_padding_to_mask(attention_mask, b, t, "BERT", h)  # (B, 1, 1, T)

    def to_heads(rows: Any, heads: int) -> Any:  # (N, H) -> (B, heads, T, D), 0 at pads
        d = width // heads
        out = xp.empty((b, heads, t, d), dtype=rows.dtype)
        tokens = out.transpose(0, 2, 1, 3)  # a view (B, T, heads, D): rows go straight in
        tokens[pads] = 0  # finite values (0 · garbage could be NaN where the mask is 0)
        tokens[real] = rows.reshape(rows.shape[0], heads, d)
        return out

    x = h[real]  # (N, H)
    for layer in model.encoder.layer:
        att, out = layer.attention, layer.output

        def attention(rows: Any, att: Any = att) -> Any:  # att: a BertAttention
            sa = att.self
            q, k, v = (to_heads(p.forward(rows), sa.n_heads)  # (B, heads, T, D)
                       for p in (sa.query, sa.key, sa.value))
            a, _ = attention_forward(q, k, v, mask=mask)  # (B, heads, T, D)
            a = a.transpose(0, 2, 1, 3)[real].reshape(-1, width)  # (N, H)
            return att.output.dense.forward(a)

        def feed_forward(rows: Any, layer: Any = layer, out: Any = out) -> Any:  # a BertLayer's FFN
            dense, act = layer.intermediate.dense, layer.intermediate.intermediate_act_fn
            form = ACTIVATIONS[act.name]  # "relu", or GELU's "none" / "tanh"
            if form == "relu" or dense.bias is None:
                return out.dense.forward(layer.intermediate.forward(rows))
            mm, _ = linear_forward(rows, dense.weight.data)  # x W1ᵀ: (N, d_ff)
            # the bias and GELU with nothing kept for a backward: one array written, not three
            hidden, _ = bias_gelu_forward(mm, dense.bias.data, form, need_backward=False)
            return out.dense.forward(hidden)  # (N, H)

        x = residual_forward(x, attention, att.output.LayerNorm, None, layer.norm_first)
        x = residual_forward(x, feed_forward, out.LayerNorm, None, layer.norm_first)
    h = xp.zeros((b, t, width), dtype=x.dtype)  # (B, T, H), zeros at the padding
    h[real] = x
    model.pooler_output = None if model.pooler is None else model.pooler.forward(h)  # (B, H)
    return h
