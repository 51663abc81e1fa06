"""Turning a trained encoder–decoder into output sequences: greedy decoding and beam search.

Both work on any model with ``encode(src, src_mask) -> memory`` and
``decode(tgt_in, memory, src_mask, tgt_mask) -> logits (B, T, V)`` (``nanotf.models.
transformer.Transformer``). The source is encoded **once**; then the output grows one token at a
time, starting from ``<bos>``.

How the prefix is handled: by default with a **key/value cache** (``use_cache=True``). The
decoder reads ``<bos>`` once, then at each step only the newest token: every attention layer keeps
the keys and values of the positions already read (``nanotf.nn.DecoderCache``), the cross-
attention keeps the memory's, and the new position's query attends to all of them (causal
masking: an earlier position never sees a later one, so what was computed for it never changes).
A step costs ``O(1)`` decoder positions instead of ``O(t)``. Beam search reorders the cache's
rows to the surviving beams' parents; greedy decoding drops the finished rows from it.

``use_cache=False`` is the reference: **the prefix is recomputed**. At step ``t`` the decoder
runs on the whole prefix ``y_0 .. y_t`` and only the logits of the last position are used,
which is exactly the code training runs (a teacher-forced forward on the decoded output gives
the very same logits, and a test checks it), at ``O(t)`` positions a step and ``O(T²)`` a
sequence. Both paths choose the same tokens; their log-probabilities agree to round-off (the
matrix products have other shapes, so the last bits of a float may differ: ~1e-15 relative in
float64, ~1e-6 in float32), so only an exact near-tie between two tokens could be broken
differently. A model without ``decode_step`` (such as the hand-built models of the tests) is
always decoded by recomputing.

``<pad>`` and ``<bos>`` are never generated (they are not outputs: their log-probabilities are
set to -inf before choosing). Both functions return the generated ids *after* ``<bos>`` as a
host (NumPy) ``int64`` array of shape ``(B, L)``: each row ends with its ``<eos>`` (if it
produced one within ``max_len`` tokens) and is padded with ``pad_id`` after it.
``Vocab.decode`` turns a row into text.

Rows are independent: the result for one source does not depend on the other sources in the
batch or on how much padding they bring (masks keep them apart), so a batch decodes to the same
sequences as each source alone. Rows that are finished are dropped from the batch.
"""

from __future__ import annotations

from .beam import Hypothesis as Hypothesis
from .beam import _extend_source as _extend_source
from .beam import _search as _search
from .beam import _Specials as _Specials
from .beam import beam_search
from .common import Seq2SeqModel
from .common import _check_inputs as _check_inputs
from .common import _check_positive_int as _check_positive_int
from .common import _eval_mode as _eval_mode
from .common import _log_softmax as _log_softmax
from .greedy import greedy_decode
from .scoring import length_penalty_factor, sequence_log_prob
from .steps import _cached as _cached
from .steps import _CachedSteps as _CachedSteps
from .steps import _next_log_probs as _next_log_probs
from .translation import translate

__all__ = [
    "Seq2SeqModel",
    "beam_search",
    "greedy_decode",
    "length_penalty_factor",
    "sequence_log_prob",
    "translate",
]
