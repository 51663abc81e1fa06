"""What a run records (:class:`History`: per step and per evaluation) and the least loss it can
reach (:func:`smoothed_loss_floor`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..checkpoint import json_safe

__all__ = ["History", "smoothed_loss_floor"]


@dataclass
class History:
    """What a run recorded: per step (``step``, ``loss``, ``lr``, ``grad_norm``, ``tokens``,
    ``seconds`` since the start of training) and per evaluation (``evals``: dicts with
    ``step``, ``loss``, ``token_accuracy``, ``exact_match``, ``n``). ``grad_norm`` is the
    global gradient norm before clipping, None where clipping is off (then it is not
    computed)."""

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    grad_norm: list[float | None] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A dict that is strict JSON: a number that is not finite becomes ``None``."""
        return json_safe(dataclasses.asdict(self))  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> History:
        """Rebuild a history from :meth:`to_dict` (None or ``{}``: an empty one).

        Checked: every field present and a list, the per-step lists of one length, their
        entries numbers (``None`` for a number that was not finite), ``evals`` a list of dicts
        with a ``step``. A ``ValueError`` names the field that is wrong.
        """
        if not d:
            return cls()
        if not isinstance(d, Mapping):
            raise ValueError(f"a history must be a dict of lists, got {type(d).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in d]
        if missing:
            raise ValueError(f"the history lacks the fields {missing}")
        for name in names:
            if not isinstance(d[name], list):
                raise ValueError(
                    f"history field {name!r} must be a list, got {type(d[name]).__name__}"
                )
        per_step = [n for n in names if n != "evals"]
        lengths = {n: len(d[n]) for n in per_step}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"the history's per-step lists differ in length: {lengths}")
        for name in per_step:
            whole = name in ("step", "tokens")
            for i, v in enumerate(d[name]):
                number = isinstance(v, int) if whole else isinstance(v, (int, float))
                if isinstance(v, bool) or not (number or (v is None and not whole)):
                    what = "an integer" if whole else "a number or null"
                    raise ValueError(f"history field {name!r}[{i}] must be {what}, got {v!r}")
        for i, e in enumerate(d["evals"]):
            if not isinstance(e, dict) or not isinstance(e.get("step"), int):
                raise ValueError(
                    f"history field 'evals'[{i}] must be a dict with an integer 'step', got {e!r}"
                )
        return cls(**{n: list(d[n]) for n in names})

    @property
    def final_eval(self) -> dict[str, Any] | None:
        return self.evals[-1] if self.evals else None


def smoothed_loss_floor(label_smoothing: float, vocab_size: int) -> float:
    """The least label-smoothed cross-entropy any model can reach: the entropy of the smoothed
    target ``q = (1 - ε)·onehot + ε/V``, ``H(q) = -Σ_c q_c log q_c`` (reached at ``p = q``).

    With ε = 0.1 and the 14 tokens of the default task it is 0.547: a training loss there is
    a perfect fit, not a plateau.
    """
    eps, v = float(label_smoothing), int(vocab_size)
    hit, miss = 1.0 - eps + eps / v, eps / v  # q of the right token, of each other token
    entropy = 0.0
    if hit < 1.0:
        entropy -= hit * math.log(hit)
    if miss > 0.0:
        entropy -= (v - 1) * miss * math.log(miss)
    return entropy
