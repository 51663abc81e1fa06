"""Text generation with a decoder-only language model: ``generate(model, input_ids, ...)``.

The public entry point, with Hugging Face's ``generate`` arguments and behaviour (the prompt
followed by the new tokens, (B, T + n)). It calls the model's own ``generate`` method
(``GPT2LMHeadModel.generate``), where the loop lives, because nanotf's layer rule lets this top
layer import the models but not the models import it; the step the loop runs (temperature,
top-k, top-p, the seeded draw) is ``nanotf.functional.sampling``. See
``GPT2LMHeadModel.generate`` for the arguments, the checks and the exact EOS rule.
"""

from __future__ import annotations

from typing import Any

from .functional.sampling import next_token, sample, top_k_filter, top_p_filter
from .models.gpt2 import GPT2LMHeadModel

__all__ = ["generate", "next_token", "sample", "top_k_filter", "top_p_filter"]


def generate(
    model: GPT2LMHeadModel,
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
    """``model.generate(input_ids, max_new_tokens, ...)``: continue every prompt of
    ``input_ids`` (B, T) by up to ``max_new_tokens`` tokens, greedily (``do_sample=False``) or by
    sampling (``temperature``, ``top_k``, ``top_p``, reproducible from ``seed``), stopping rows
    at ``eos_token_id``; ``use_cache`` keeps the keys and values of the positions read so far
    (the same tokens as ``use_cache=False``, faster). Returns (B, T + n) int64,
    n <= max_new_tokens."""
    if not isinstance(model, GPT2LMHeadModel):
        raise TypeError(
            f"generate: model must be a nanotf GPT2LMHeadModel, got {type(model).__name__}"
        )
    return model.generate(
        input_ids,
        max_new_tokens,
        do_sample=do_sample,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        eos_token_id=eos_token_id,
        seed=seed,
        pad_token_id=pad_token_id,
        use_cache=use_cache,
    )
