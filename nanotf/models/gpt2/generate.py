"""The GPT-2 generation loop: the checks and the token loop behind ``GPT2LMHeadModel.generate``."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ...backend import get_array_module, rng, to_numpy
from ...checks import id_range, ids_checked_on_host, number_problem
from ...functional.sampling import check_sampling_args, next_token
from ...nn.checks import check_array, is_array


class GenerateArgs(NamedTuple):
    """The settings of one ``generate`` call (see ``GPT2LMHeadModel.generate``)."""

    max_new_tokens: int
    do_sample: bool
    temperature: float
    top_k: int | None
    top_p: float | None
    eos_token_id: int | None
    seed: int | None
    pad_token_id: int | None
    use_cache: bool


def gpt2_generate(model: Any, input_ids: Any, args: GenerateArgs) -> Any:
    """The body of ``GPT2LMHeadModel.generate`` (see its docstring), for ``model`` (a
    GPT2LMHeadModel, not imported here: model.py imports this module)."""
    _check_generate_args(model, input_ids, args)
    ids = input_ids.astype(np.int64)  # a copy: the caller's array is never touched
    if args.max_new_tokens == 0:
        return ids
    gen = None
    if args.do_sample:
        # a draw on a device is a 0-d array there: moved explicitly
        seed = int(to_numpy(rng().integers(0, 2**62))) if args.seed is None else args.seed
        gen = np.random.default_rng(int(seed))
    was_training = model.training
    model.train(False)
    try:
        return _token_loop(model, ids, args, gen)
    finally:
        model.train(was_training)


def _token_loop(model: Any, ids: Any, args: GenerateArgs, gen: Any) -> Any:
    """Add one token per row per step: ids (B, T) -> (B, T + n), n <= max_new_tokens.

    The logits stay on the model's device: the next token is chosen there (greedy argmax, or
    the sampling filters and the draw, whose uniforms come from the host generator ``gen``) and
    only the chosen ids, B integers, move to the host each step (one transfer), where the
    finished rows are tracked. The prompt was checked once (``_check_prompt``); the tokens fed
    back are drawn from the vocabulary (or are ``pad_token_id``/``eos_token_id``, checked with
    the arguments), so the model does not check them again at every step.
    """
    xp = get_array_module(ids)
    eos = args.eos_token_id
    fill = args.pad_token_id if args.pad_token_id is not None else eos
    unfinished = np.ones(ids.shape[0], dtype=bool)
    caches = model.new_cache() if args.use_cache else None
    step_ids = ids  # what the cached path reads next: the prompt, then one token a row
    with ids_checked_on_host():
        for _ in range(args.max_new_tokens):
            if caches is not None:
                last = model.forward_cached(step_ids, caches)[:, -1]  # (B, V)
            else:
                last = model.forward(ids)[:, -1]
            logits = last.astype(np.float64)  # (B, V), on the model's device
            nxt = next_token(
                logits, args.do_sample, args.temperature, args.top_k, args.top_p, gen
            )
            nxt = to_numpy(nxt)  # (B,) the step's one transfer
            if eos is not None:
                nxt = np.where(unfinished, nxt, fill)  # (B,)
                unfinished &= nxt != eos
            step_ids = xp.asarray(nxt)[:, None]  # (B, 1)
            ids = xp.concatenate([ids, step_ids], axis=1)
            if not unfinished.any():
                break
    return ids


def _check_generate_args(model: Any, input_ids: Any, args: GenerateArgs) -> None:
    """Every argument of ``generate`` checked before anything runs (one clear error each)."""
    c = model.config
    like = model.transformer.wte.weight.data
    who = "GPT2LMHeadModel.generate"
    t = _check_prompt(who, input_ids, like, c.vocab_size)
    max_new_tokens = args.max_new_tokens
    problem = number_problem(max_new_tokens, integer=True, low=0)
    if problem is not None:
        raise problem.error(f"{who}: max_new_tokens {problem.words}, got {max_new_tokens!r}")
    if t + max_new_tokens > c.n_positions:
        raise ValueError(
            f"{who}: prompt length {t} + max_new_tokens {max_new_tokens} = "
            f"{t + max_new_tokens} is longer than the position table "
            f"(n_positions={c.n_positions}); give at most {c.n_positions - t} new tokens"
        )
    check_sampling_args(args.do_sample, args.temperature, args.top_k, args.top_p)
    for name in ("eos_token_id", "pad_token_id"):
        value = getattr(args, name)
        if value is None:
            continue
        problem = number_problem(value, integer=True, low=0, high=c.vocab_size, high_open=True)
        if problem is not None:
            raise problem.error(f"{who}: {name} {problem.words}, got {value!r}")
    if args.seed is not None:
        problem = number_problem(args.seed, integer=True, low=0)
        if problem is not None:
            raise problem.error(f"{who}: seed {problem.words}, got {args.seed!r}")
    if not isinstance(args.use_cache, bool):
        raise TypeError(f"{who}: use_cache must be a bool, got {args.use_cache!r}")


def _check_prompt(who: str, input_ids: Any, like: Any, vocab_size: int) -> int:
    """input_ids must be a (B, T) integer array of ids in range, B and T >= 1; returns T."""
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
    lo, hi = id_range(input_ids)  # type: ignore[misc]  # one transfer on a device
    if lo < 0 or hi >= vocab_size:
        raise ValueError(
            f"{who}: input_ids must lie in [0, vocab_size={vocab_size}), got a value of "
            f"{lo if lo < 0 else hi}"
        )
    return t
