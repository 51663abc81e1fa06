"""Notebook 10, "Inside a pretrained BERT": the learner classifies an attention head by the
pattern of its attention matrix.

The rule (stated in the notebook): with ``A`` of shape (T, T), rows = queries and columns = keys,
score five patterns by the average weight a query gives to

* ``"previous"``: the token before it, mean of ``A[i, i-1]`` over i = 1..T-1;
* ``"next"``: the token after it, mean of ``A[i, i+1]`` over i = 0..T-2;
* ``"self"``: itself, mean of ``A[i, i]``;
* ``"special"``: ``[CLS]`` and ``[SEP]`` together, mean of ``A[i, 0] + A[i, T-1]``;

and return the best-scoring pattern if its score is at least 0.5, else ``"broad"``.

The checker grades on fixed synthetic matrices (no pretrained weights needed), built so that
every one is far from the 0.5 threshold.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .grading import WrongAnswer, exercise

LABELS = ("previous", "next", "self", "special", "broad")
THRESHOLD = 0.5


def pattern_scores(A: np.ndarray) -> dict[str, float]:
    """The average weight on the previous token, the next, itself, and [CLS] + [SEP]."""
    A = np.asarray(A, dtype=np.float64)
    return {
        "previous": float(np.diagonal(A, offset=-1).mean()),
        "next": float(np.diagonal(A, offset=1).mean()),
        "self": float(np.diagonal(A).mean()),
        "special": float((A[:, 0] + A[:, -1]).mean()),
    }


def classify_head(A: np.ndarray) -> str:
    """The reference answer: the best-scoring pattern if its score is ≥ 0.5, else "broad"."""
    scores = pattern_scores(A)
    best = max(scores, key=scores.__getitem__)
    return best if scores[best] >= THRESHOLD else "broad"


def _transposed(A: np.ndarray) -> str:
    return classify_head(np.asarray(A).T)  # columns taken for queries: previous and next swap


def _forgot_sep(A: np.ndarray) -> str:
    A = np.asarray(A)
    scores = pattern_scores(A)
    scores["special"] = float(A[:, 0].mean())  # [CLS] only
    best = max(scores, key=scores.__getitem__)
    return best if scores[best] >= THRESHOLD else "broad"


def _no_threshold(A: np.ndarray) -> str:
    scores = pattern_scores(A)
    return max(scores, key=scores.__getitem__)  # never says "broad"


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _head(kind: str, t: int, rng: np.random.Generator, strength: float = 5.0) -> np.ndarray:
    """A (t, t) attention matrix of one kind: softmax(noise + strength · pattern)."""
    logits = 0.5 * rng.normal(size=(t, t))
    rows = np.arange(t)
    if kind == "previous":
        logits[rows[1:], rows[:-1]] += strength
        logits[0, 0] += strength  # [CLS] has no previous token: it looks at itself
    elif kind == "next":
        logits[rows[:-1], rows[1:]] += strength
        logits[-1, -1] += strength
    elif kind == "self":
        logits[rows, rows] += strength
    elif kind == "cls":
        logits[:, 0] += strength
    elif kind == "sep":
        logits[:, -1] += strength
    elif kind == "cls+sep":
        logits[:, [0, -1]] += strength - 0.7  # about half on each
    elif kind == "window":  # previous, self and next equally: none of them reaches 0.5
        for off in (-1, 0, 1):
            idx = rows[(rows + off >= 0) & (rows + off < t)]
            logits[idx, idx + off] += strength
    elif kind == "uniform":
        logits *= 0.3
    elif kind == "one column":  # everybody looks at one ordinary token: not a pattern here
        logits[:, t // 2] += strength
    else:  # pragma: no cover
        raise ValueError(kind)
    return _softmax(logits)


#: (description, kind, T, expected label)
CASES = [
    ("a previous-token head", "previous", 9, "previous"),
    ("a previous-token head", "previous", 13, "previous"),
    ("a next-token head", "next", 9, "next"),
    ("a next-token head", "next", 6, "next"),
    ("a head on the token itself", "self", 10, "self"),
    ("a head on [CLS]", "cls", 11, "special"),
    ("a head on [SEP]", "sep", 8, "special"),
    ("a head on [CLS] and [SEP]", "cls+sep", 12, "special"),
    ("a head spread over previous, self and next", "window", 10, "broad"),
    ("a nearly uniform head", "uniform", 7, "broad"),
    ("a head on one ordinary token", "one column", 9, "broad"),
]


def synthetic_heads() -> list[tuple[str, np.ndarray, str]]:
    """The fixed matrices the checker grades on: ``[(description, A, label)]``."""
    rng = np.random.default_rng(1010)
    return [(what, _head(kind, t, rng), label) for what, kind, t, label in CASES]


@exercise(
    "classify_head",
    notebook=10,
    tol=0.0,
    hint="score previous = mean of np.diagonal(A, -1), next = np.diagonal(A, 1), self = "
    "np.diagonal(A), special = mean of A[:, 0] + A[:, -1]; return the best if it is ≥ 0.5, "
    "else 'broad' (rows are queries, columns keys)",
    reference=classify_head,
    mistakes={
        "rows and columns swapped": _transposed,
        "[SEP] forgotten": _forgot_sep,
        "never 'broad'": _no_threshold,
    },
)
def check_classify_head(answer: Callable[[np.ndarray], str]) -> float:
    """``answer(A) -> label`` on fixed synthetic heads; returns 0 when every label is right and
    otherwise says how many are wrong and shows one."""
    wrong = []
    for what, A, label in synthetic_heads():
        got = answer(A.copy())
        if not isinstance(got, str):
            raise WrongAnswer(
                f"your function should return one of {', '.join(map(repr, LABELS))}, "
                f"got {type(got).__name__}"
            )
        if got != label:
            wrong.append(f"{what} (T = {A.shape[0]}) labelled {got!r}, expected {label!r}")
    if wrong:
        raise WrongAnswer(f"{len(wrong)} of {len(CASES)} heads mislabelled, e.g. {wrong[0]}")
    return 0.0
