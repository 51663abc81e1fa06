"""The special tokens of nanotf's own vocabularies (:class:`~nanotf.text.vocab.Vocab`): ids, names.

Every toy-task vocabulary starts with the same four tokens, so their ids are constants that the
tasks, the batches and the decoders all share. They live here, apart from the task generators,
so that decoding can import them without importing any task.

==========  ====  ==================================================================
token       id    meaning
==========  ====  ==================================================================
``<pad>``   0     fills a batch to a rectangle; attention and the loss ignore it
``<bos>``   1     "begin of sequence": the first token the decoder reads
``<eos>``   2     "end of sequence": ends every source and every target
``<unk>``   3     a symbol outside the vocabulary (only with ``unk="map"``)
==========  ====  ==================================================================
"""

from __future__ import annotations

__all__ = ["BOS_ID", "EOS_ID", "PAD_ID", "SPECIAL_TOKENS", "UNK_ID"]

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
#: The special tokens by id: ``SPECIAL_TOKENS[PAD_ID] == "<pad>"``.
SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "<unk>")
