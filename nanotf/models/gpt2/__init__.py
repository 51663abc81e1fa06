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

from .config import GPT2Config as GPT2Config
from .generate import gpt2_generate as gpt2_generate
from .layers import GPT2MLP as GPT2MLP
from .layers import Conv1D as Conv1D
from .layers import GPT2Attention as GPT2Attention
from .layers import GPT2Block as GPT2Block
from .layers import _check_inference as _check_inference
from .layers import _refuse_backward as _refuse_backward
from .model import GPT2LMHeadModel as GPT2LMHeadModel
from .model import GPT2Model as GPT2Model
from .model import _init_gpt2 as _init_gpt2
from .model import drop_gpt2_buffers as drop_gpt2_buffers

__all__ = ["Conv1D", "GPT2Config", "GPT2LMHeadModel", "GPT2Model"]
