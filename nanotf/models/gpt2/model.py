"""The whole GPT-2 models: ``GPT2Model`` (the decoder stack) and ``GPT2LMHeadModel``."""

from __future__ import annotations

import math
from typing import Any

from ...backend import get_array_module
from ...nn import Dropout, Embedding, LayerNorm, Linear, Module, ModuleList
from ...nn import init as nn_init
from ...nn.checks import check_array, is_array
from ...nn.kv_cache import KVCache
from ..huggingface import check_model_inputs, init_like_hf
from .config import GPT2Config
from .generate import GenerateArgs, gpt2_generate
from .layers import Conv1D, GPT2Block, _check_inference, _refuse_backward


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
        args = GenerateArgs(
            max_new_tokens, do_sample, temperature, top_k, top_p, eos_token_id, seed,
            pad_token_id, use_cache,
        )
        return gpt2_generate(self, input_ids, args)

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> dict[str, list[str]]:
        """As ``Module.load_state_dict``, skipping the old causal-mask buffers (see
        ``GPT2Model.load_state_dict``). ``lm_head.weight`` and ``transformer.wte.weight`` are one
        tied parameter: a state with different arrays under the two names is refused."""
        return super().load_state_dict(drop_gpt2_buffers(state, "transformer."), strict)
