"""The encoder–decoder Transformer of "Attention Is All You Need" (Vaswani et al., 2017).

A translation model reads a source sentence and writes the target sentence one token at a time::

    src ids (B, S) ─ embed · √C + PE ─ dropout ─ N × EncoderLayer ─────────────┐ memory (B, S, C)
                                                                               │
    tgt ids (B, T) ─ embed · √C + PE ─ dropout ─ N × DecoderLayer(·, memory) ─ out_proj ─ logits

* The encoder's self-attention sees the whole source except its padding.
* The decoder's self-attention is causal: position t sees target positions 0..t only, so
  with teacher forcing (``tgt_in`` = the target shifted right by one, starting with BOS) every
  position learns to predict the next token and none of them can peek at it.
* The decoder's cross-attention takes its queries from the decoder and its keys and values from
  the encoder output ``memory``, masked by the source padding.

Post-LN (``norm_first=False``, the paper) puts a LayerNorm after every residual addition. Pre-LN
(``norm_first=True``) normalises the input of every sub-layer instead, which leaves the residual
stream un-normalised, so each stack ends with one more LayerNorm (``encoder.norm``,
``decoder.norm``), as ``torch.nn.Transformer`` does.

There is no autograd: ``backward(dlogits)`` runs the forward in reverse, stack by stack, and
adds every parameter's gradient into its ``.grad``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from ..backend import get_array_module
from ..checks import check_int_ids
from ..functional import (
    add_positional_backward,
    add_positional_forward,
    embedding_backward,
    embedding_forward,
    pack_tokens,
    token_packing,
    unpack_tokens,
)
from ..functional.packing import TokenPacking
from ..nn import (
    DecoderCache,
    Dropout,
    Embedding,
    Linear,
    Module,
    PositionalEncoding,
    init,
)
from ..nn.checks import (
    check_array,
    check_float_input,
    check_positive_int,
    check_probability,
    describe,
    is_array,
)
from .transformer_stacks import TransformerDecoder, TransformerEncoder

__all__ = ["Transformer", "TransformerDecoder", "TransformerEncoder"]


def _check_arguments(args: dict[str, Any]) -> None:
    """The checks of ``Transformer(...)``'s arguments (``args``: the arguments by name)."""
    who = "Transformer"
    check_positive_int(who, "n_encoder_layers", args["n_encoder_layers"], low=0)
    check_positive_int(who, "n_decoder_layers", args["n_decoder_layers"], low=0)
    for name in ("src_vocab_size", "tgt_vocab_size", "d_model", "n_heads", "d_ff", "max_len"):
        check_positive_int(who, name, args[name])
    d_model, n_heads = args["d_model"], args["n_heads"]
    if d_model % n_heads:
        raise ValueError(
            f"{who}: d_model={d_model} must be divisible by n_heads={n_heads} "
            f"(each head gets d_model / n_heads dimensions)"
        )
    check_probability(who, "dropout", args["dropout"])
    eps = args["layer_norm_eps"]
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"{who}: layer_norm_eps must be a positive real number, got {eps!r}")
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"{who}: layer_norm_eps must be a positive real number, got {eps!r}")
    pad_id = args["pad_id"]
    if isinstance(pad_id, bool) or not isinstance(pad_id, numbers.Integral):
        raise TypeError(f"{who}: pad_id must be an integer token id, got {pad_id!r}")
    src_vocab, tgt_vocab = args["src_vocab_size"], args["tgt_vocab_size"]
    if args["share_embeddings"] and src_vocab != tgt_vocab:
        raise ValueError(
            f"{who}: share_embeddings needs one vocabulary for source and target, got "
            f"src_vocab_size={src_vocab} and tgt_vocab_size={tgt_vocab}"
        )


class Transformer(Module):
    """The sequence-to-sequence Transformer: source ids in, next-target-token logits out.

    Parameters
    ----------
    src_vocab_size, tgt_vocab_size : sizes of the source and target vocabularies.
    d_model, n_heads, d_ff : model width C, attention heads H (C must divide by H), FFN width.
    n_encoder_layers, n_decoder_layers : depth of each stack (the paper: 6 and 6).
    dropout : applied to the embeddings, attention probabilities, sub-layer outputs and FFN.
    activation : the FFN's, ``"relu"`` (the paper), ``"gelu"``, ``"gelu_new"``.
    norm_first : False for post-LN (the paper), True for pre-LN (+ a final LayerNorm per stack).
    max_len : length of the sinusoidal position table; longer sequences are an error.
    share_embeddings : one table for source and target (``src_embed is tgt_embed``); needs
        equal vocabularies, e.g. a joint BPE vocabulary as in the paper.
    tie_output : ``out_proj.weight`` IS ``tgt_embed.weight`` (the same Parameter; its bias
        stays separate), so the output layer scores a token by its embedding.
    pad_id : the padding token; default masks are ``ids != pad_id``. The tables keep a row for
        it like any other (as in the Annotated Transformer): padding is kept out of attention
        by the masks and out of the loss by ``ignore_index``, so that row learns nothing.
    layer_norm_eps : epsilon of every LayerNorm.

    Every matrix (parameter with more than one dimension) is initialised Xavier-uniform, as in
    the Annotated Transformer; a shared or tied matrix is initialised once. Biases keep
    PyTorch's default and LayerNorms start at γ = 1, β = 0.

    Sub-modules (their dotted names are those of ``state_dict()``): ``src_embed``,
    ``tgt_embed``, ``pos``, ``src_dropout``, ``tgt_dropout``, ``encoder.layers.N``,
    ``decoder.layers.N``, ``encoder.norm`` / ``decoder.norm`` (pre-LN only), ``out_proj``.

    >>> model = Transformer(11, 13, d_model=16, n_heads=2, n_encoder_layers=1,
    ...                     n_decoder_layers=1, d_ff=32)
    >>> import numpy as np
    >>> src, tgt_in = np.array([[5, 6, 7, 0]]), np.array([[1, 8, 9]])
    >>> model.forward(src, tgt_in).shape          # (B, T, tgt vocab)
    (1, 3, 13)
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        d_model: int = 512,
        n_heads: int = 8,
        n_encoder_layers: int = 6,
        n_decoder_layers: int = 6,
        d_ff: int = 2048,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        max_len: int = 5000,
        share_embeddings: bool = False,
        tie_output: bool = False,
        pad_id: int = 0,
        layer_norm_eps: float = 1e-5,
    ) -> None:
        _check_arguments(dict(locals()))  # every argument, by name, before anything is built
        super().__init__()
        self.src_vocab_size, self.tgt_vocab_size = src_vocab_size, tgt_vocab_size
        self.d_model, self.n_heads, self.max_len, self.pad_id = d_model, n_heads, max_len, pad_id
        self.norm_first = norm_first
        self.share_embeddings, self.tie_output = share_embeddings, tie_output

        self.src_embed = Embedding(src_vocab_size, d_model)
        self.tgt_embed = self.src_embed if share_embeddings else Embedding(tgt_vocab_size, d_model)
        # one table of sinusoids for both sides; it scales the embeddings by √d_model
        self.pos = PositionalEncoding(d_model, max_len, scale=True)
        self.src_dropout = Dropout(dropout)
        self.tgt_dropout = Dropout(dropout)
        stack = (d_model, n_heads, d_ff, dropout, activation, norm_first, layer_norm_eps)
        self.encoder = TransformerEncoder(n_encoder_layers, *stack)
        self.decoder = TransformerDecoder(n_decoder_layers, *stack)
        self.out_proj = Linear(d_model, tgt_vocab_size)
        if tie_output:
            # (V, C) is both the embedding table and the output weight (out_features, in_features)
            self.out_proj.weight = self.tgt_embed.weight

        for p in self.parameters():  # each Parameter once, so a tied one is drawn once
            if p.data.ndim > 1:
                init.xavier_uniform_(p)

        self._src_cache: Any = None  # the caches of the two embedding lookups (see _embed)
        self._tgt_cache: Any = None
        self._logits_shape: tuple[int, ...] | None = None
        self._logits_packing: TokenPacking | None = None  # forward_unpadded's, for backward

    # -- checks ---------------------------------------------------------------------------
    def _check_ids(self, what: str, ids: Any, vocab: int) -> None:
        """(B, L) integer ids in [0, vocab), 1 <= L <= the position table's length."""
        if not is_array(ids):
            raise TypeError(
                f"Transformer: {what} ids must be an integer array of shape (batch, length), "
                f"got {describe(ids)}"
            )
        check_array("Transformer", f"{what} ids", ids, like=self.src_embed.weight.data)
        check_int_ids(
            f"Transformer: {what} ids", ids, vocab
        )  # TypeError / IndexError naming the range
        if ids.ndim != 2:
            raise ValueError(
                f"Transformer: {what} ids must have shape (batch, length), got {tuple(ids.shape)}"
            )
        if ids.shape[1] == 0:
            raise ValueError(
                f"Transformer: {what} ids must hold at least one token per sequence, got shape "
                f"{tuple(ids.shape)}"
            )
        if ids.shape[1] > self.max_len:
            raise ValueError(
                f"Transformer: {what} length {ids.shape[1]} exceeds the position table "
                f"(max_len={self.max_len}): build the model with a larger max_len"
            )

    def _mask(self, what: str, mask: Any, ids_shape: tuple[int, ...], ids: Any = None) -> Any:
        """The (B, L) boolean mask, True for real tokens: given, or ``ids != pad_id``."""
        if mask is None:
            return None if ids is None else ids != self.pad_id
        if not is_array(mask):
            raise TypeError(
                f"Transformer: {what} must be a boolean array (True = real token) of shape "
                "(batch, length) "
                f"= {tuple(ids_shape)}, got {describe(mask)}"
            )
        check_array("Transformer", what, mask, like=self.src_embed.weight.data)
        shape = tuple(mask.shape)
        if shape != tuple(ids_shape):
            raise ValueError(
                f"Transformer: {what} must have shape (batch, length) = {tuple(ids_shape)}, "
                f"got {shape}"
            )
        if mask.dtype != bool and mask.dtype.kind not in "iu":
            raise TypeError(
                f"Transformer: {what} must be boolean (True = real token), got {mask.dtype}"
            )
        return mask != 0

    # -- the embedding lookups ------------------------------------------------------------
    def _embed(
        self, table: Embedding, ids: Any, dropout: Dropout, packing: TokenPacking | None = None
    ) -> tuple[Any, tuple]:
        """``dropout(table[ids] · √C + PE[:L])`` -> (B, L, C), or with ``packing`` its real
        tokens' rows (N, C) (the dropout drawn on those rows alone), and the caches of the
        lookup, of the positions and the packing.

        A module keeps the cache of its last call only, and one table (with
        ``share_embeddings``) and one position table serve both sides; so the model runs the
        lookups and the positions with the functional pairs and keeps both sides' caches itself.
        """
        emb, emb_cache = embedding_forward(ids, table.weight.data, table.padding_idx)  # (B, L, C)
        x, pos_cache = add_positional_forward(emb, self.pos.table_like(emb), self.pos.scale)
        if packing is not None:
            x = pack_tokens(x, packing)  # (N, C)
        return dropout.forward(x), (emb_cache, pos_cache, packing)

    def _embed_backward(self, table: Embedding, dx: Any, cache: tuple, dropout: Dropout) -> None:
        emb_cache, pos_cache, packing = cache
        dx = dropout.backward(dx)  # (B, L, C), or the rows (N, C) with a packing
        if packing is not None:
            dx = unpack_tokens(dx, packing)  # (B, L, C): the padding's gradient is zero
        demb = add_positional_backward(dx, pos_cache)  # (B, L, C)
        table.accumulate(table.weight, embedding_backward(demb, emb_cache))  # (V, C), adds

    # -- forward --------------------------------------------------------------------------
    def encode(self, src: Any, src_mask: Any = None) -> Any:
        """Run the encoder: src (B, S) ids -> memory (B, S, C).

        ``src_mask`` (B, S) is True for real tokens (default ``src != pad_id``).
        """
        self._check_ids("source", src, self.src_vocab_size)
        src_mask = self._mask("src_mask", src_mask, src.shape, src)
        x, self._src_cache = self._embed(self.src_embed, src, self.src_dropout)  # (B, S, C)
        memory = self.encoder.forward(x, src_mask)  # (B, S, C)
        self.save(memory=memory)
        return memory

    def decode(self, tgt_in: Any, memory: Any, src_mask: Any = None, tgt_mask: Any = None) -> Any:
        """Run the decoder on the encoder's ``memory``: tgt_in (B, T) ids -> logits (B, T, V).

        ``src_mask`` (B, S) must be the source mask the memory was encoded with, so that the
        cross-attention skips source padding (``src != pad_id`` for the default); None lets
        every memory position be attended. ``tgt_mask`` (B, T) is True for real target
        tokens (default ``tgt_in != pad_id``); the causal mask is always added.
        Greedy decoding calls ``decode`` again with the tokens written so far.
        """
        self._check_ids("target", tgt_in, self.tgt_vocab_size)
        check_float_input("Transformer", "memory", memory, like=self.out_proj.weight.data)
        b, t = tgt_in.shape
        if (
            memory.ndim != 3
            or memory.shape[0] != b
            or memory.shape[1] == 0
            or memory.shape[2] != self.d_model
        ):
            raise ValueError(
                f"Transformer: memory must have shape (batch, source length, d_model) = ({b}, S, "
                f"{self.d_model}) with S >= 1, for target ids of shape {(b, t)}, "
                f"got {tuple(memory.shape)}"
            )
        src_mask = self._mask("src_mask", src_mask, memory.shape[:2])
        tgt_mask = self._mask("tgt_mask", tgt_mask, tgt_in.shape, tgt_in)
        y, self._tgt_cache = self._embed(self.tgt_embed, tgt_in, self.tgt_dropout)  # (B, T, C)
        h = self.decoder.forward(y, memory, tgt_mask, src_mask)  # (B, T, C)
        logits = self.out_proj.forward(h)  # (B, T, V)
        self._logits_shape, self._logits_packing = tuple(logits.shape), None
        return logits

    def decode_step(
        self,
        tgt_new: Any,
        memory: Any,
        cache: DecoderCache,
        src_mask: Any = None,
        tgt_mask: Any = None,
    ) -> Any:
        """Incremental decoding, **inference only**: the logits (B, Tn, V) of the new target
        positions ``tgt_new`` (B, Tn) ids, the earlier ones read from ``cache``.

        Start with an empty ``cache = DecoderCache()`` and the first tokens (``<bos>``), then
        feed each step's new token(s): the logits equal those ``decode`` gives at the same
        positions of the whole prefix (up to float round-off: the matrix products have other
        shapes), at O(Tn) positions per step instead of O(T). ``memory`` (B, S, C) and
        ``src_mask`` (B, S) are read on the first step (their keys, values and mask go into the
        cache); later steps may pass None. ``tgt_mask`` (B, Tn) is True for the real new tokens
        (default ``tgt_new != pad_id``); the cache keeps the masks of earlier positions.
        ``cache.reorder(rows)`` keeps and reorders rows between steps (beams, finished rows).

        Needs eval mode (no dropout); keeps nothing for a backward (``backward`` afterwards
        raises) and leaves the caches of the last ``forward``/``decode`` unusable.
        """
        if self.training:
            raise RuntimeError("Transformer: decode_step is inference only: call .eval() first")
        if not isinstance(cache, DecoderCache):
            raise TypeError(
                f"Transformer: decode_step needs a DecoderCache (start with DecoderCache()), "
                f"got {describe(cache)}"
            )
        self._check_ids("target", tgt_new, self.tgt_vocab_size)
        b, t_new = tgt_new.shape
        start = cache.length
        if start + t_new > self.max_len:
            raise ValueError(
                f"Transformer: target length {start + t_new} exceeds the position table "
                f"(max_len={self.max_len}): build the model with a larger max_len"
            )
        if start == 0:  # first step: the memory and its mask go into the cache
            if memory is None:
                raise ValueError("Transformer: the first decode_step needs the encoder memory")
            check_float_input("Transformer", "memory", memory, like=self.out_proj.weight.data)
            if memory.ndim != 3 or memory.shape[0] != b or memory.shape[2] != self.d_model:
                raise ValueError(
                    f"Transformer: memory must have shape (batch, source length, d_model) = "
                    f"({b}, S, {self.d_model}), got {tuple(memory.shape)}"
                )
            cache.memory_mask = self._mask("src_mask", src_mask, memory.shape[:2])
        elif cache.batch != b:
            raise ValueError(
                f"Transformer: decode_step got {b} rows, the cache holds {cache.batch} "
                "(reorder the cache to the rows being decoded)"
            )
        tgt_mask = self._mask("tgt_mask", tgt_mask, tgt_new.shape, tgt_new)
        xp = get_array_module(tgt_mask)
        cache.target_mask = (
            tgt_mask if start == 0 else xp.concatenate([cache.target_mask, tgt_mask], axis=1)
        )
        # the embedding of _embed, at positions start .. start + Tn - 1 (dropout is off)
        emb, _ = embedding_forward(tgt_new, self.tgt_embed.weight.data, self.tgt_embed.padding_idx)
        table = self.pos.table_like(emb)[start : start + t_new]
        y, _ = add_positional_forward(emb, table, self.pos.scale)  # (B, Tn, C)
        h = self.decoder.decode_step(
            y, memory if start == 0 else None, cache, cache.target_mask, cache.memory_mask
        )
        self._src_cache = self._tgt_cache = self._logits_shape = None  # no backward after this
        self._logits_packing = None
        return self.out_proj.forward(h)  # (B, Tn, V)

    def forward(self, src: Any, tgt_in: Any, src_mask: Any = None, tgt_mask: Any = None) -> Any:
        """Teacher forcing: logits (B, T, V) for the next token after each ``tgt_in`` position.

        src: (B, S) and tgt_in: (B, T) integer ids; masks (B, S) / (B, T) True for real tokens,
        by default ``ids != pad_id``.
        """
        src_mask = self._check_pair(src, tgt_in, src_mask)
        memory = self.encode(src, src_mask)  # (B, S, C)
        return self.decode(tgt_in, memory, src_mask, tgt_mask)  # (B, T, V)

    def forward_unpadded(
        self, src: Any, tgt_in: Any, src_mask: Any = None, tgt_mask: Any = None
    ) -> Any:
        """``forward`` with the padding left out of the work done token by token: the same
        arguments, the same logits (B, T, V) at the real target tokens, zeros at the target
        padding (where the loss ignores them); ``backward`` takes their gradient as after
        ``forward``.

        Every layer but attention (the embeddings' dropout, the linear layers, LayerNorms, the
        feed-forward, the output projection) runs on the real tokens' rows (N, C) alone
        (``nanotf.functional.packing``); attention puts them in the padded layout, where the
        masks keep the padding out. So padding costs attention alone, and a batch whose real
        tokens fill a fraction f of it costs about f of ``forward``'s matrix products. Without
        dropout the two agree to round-off; with dropout each draws its own masks (here on the
        N rows, there on all B·T positions), so seeded runs of the two differ. What the layers
        save for inspection is rows too (the memory (Ns, C), a feed-forward's pre-activation
        (N, d_ff), ...), except attention's scores and probabilities, (B, H, T, S) as always.
        """
        src_mask = self._check_pair(src, tgt_in, src_mask)
        tgt_mask = self._mask("tgt_mask", tgt_mask, tgt_in.shape, tgt_in)
        src_packing, tgt_packing = token_packing(src_mask), token_packing(tgt_mask)
        x, self._src_cache = self._embed(self.src_embed, src, self.src_dropout, src_packing)
        memory = self.encoder.forward(x, None, src_packing)  # (Ns, C)
        self.save(memory=memory)
        y, self._tgt_cache = self._embed(self.tgt_embed, tgt_in, self.tgt_dropout, tgt_packing)
        h = self.decoder.forward(y, memory, None, None, tgt_packing, src_packing)  # (Nt, C)
        logits = unpack_tokens(self.out_proj.forward(h), tgt_packing)  # (Nt, V) -> (B, T, V)
        self._logits_shape, self._logits_packing = tuple(logits.shape), tgt_packing
        return logits

    def _check_pair(self, src: Any, tgt_in: Any, src_mask: Any) -> Any:
        """The checks of a source and target pair; the source mask, checked, or made from the
        ids (the target's is ``decode``'s to check)."""
        self._check_ids("source", src, self.src_vocab_size)
        self._check_ids("target", tgt_in, self.tgt_vocab_size)
        if src.shape[0] != tgt_in.shape[0]:
            raise ValueError(
                "Transformer: source and target batch sizes differ: src and tgt_in must hold "
                f"the same number of sequences, got src {tuple(src.shape)} and tgt_in "
                f"{tuple(tgt_in.shape)}"
            )
        return self._mask("src_mask", src_mask, src.shape, src)

    # -- backward -------------------------------------------------------------------------
    def backward(self, dlogits: Any) -> None:
        """dlogits (B, T, V), the loss gradient of the last ``forward``'s logits.

        Adds into every ``Parameter.grad`` (a shared or tied table collects the gradients of
        all its uses) and returns None: token ids have no gradient.

        decoder: logits -> h -> tgt embeddings, and the memory gradient summed over layers;
        encoder: memory -> src embeddings.
        """
        if self._src_cache is None or self._tgt_cache is None or self._logits_shape is None:
            raise RuntimeError(
                "backward needs a forward (encode and decode) first (decode_step, the cached "
                "inference path, keeps nothing for a backward)"
            )
        if tuple(dlogits.shape) != self._logits_shape:
            raise ValueError(
                f"dlogits must have the logits' shape {self._logits_shape}, "
                f"got {tuple(dlogits.shape)}"
            )
        if self._logits_packing is not None:  # after forward_unpadded: the real tokens' rows
            dlogits = pack_tokens(dlogits, self._logits_packing)  # (Nt, V)
        dh = self.out_proj.backward(dlogits)  # (B, T, C), or (Nt, C)
        dy, dmemory = self.decoder.backward(dh)  # (B, T, C), (B, S, C), or (Nt, C), (Ns, C)
        if dmemory is None:  # no decoder layers: the logits never saw the memory
            dmemory = get_array_module(dh).zeros_like(self._saved["memory"])
        self._embed_backward(self.tgt_embed, dy, self._tgt_cache, self.tgt_dropout)
        self.save_grad(memory=dmemory)
        dx = self.encoder.backward(dmemory)  # (B, S, C)
        self._embed_backward(self.src_embed, dx, self._src_cache, self.src_dropout)
        return None

    def _extra_repr(self) -> str:
        return (
            f"src_vocab={self.src_vocab_size}, tgt_vocab={self.tgt_vocab_size}, "
            f"d_model={self.d_model}, n_heads={self.n_heads}, norm_first={self.norm_first}, "
            f"share_embeddings={self.share_embeddings}, tie_output={self.tie_output}"
        )
