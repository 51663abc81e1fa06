"""all-MiniLM-L6-v2 in nanotf against sentence-transformers and Hugging Face (real weights)."""

from __future__ import annotations

import json
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

from nanotf.pretrained import SentenceEncoder, default_model_dir, load_pretrained_model

# sentence-transformers pipeline vs nanotf on the same float32 weights
MIN_COSINE = 0.99999
MAX_ABS = 1e-5
ATTN_ABS = 1e-5

SENTENCES = [
    "The cat sat on the mat.",
    "A man is playing a guitar on stage.",
    "Transformers compute attention between every pair of tokens.",
    "Gradients flow backwards through the softmax and the LayerNorm.",
    "Café au lait, naïve façade, Ångström and coöperate.",
    "Ελληνικά και русский текст вместе.",
    "東京は日本の首都です。",
    "Prices rose 3.5% in 2023 — see https://example.com/report?id=42.",
    "Email me at someone@example.org!!!",
    "   extra   whitespace\tand\nnewlines   ",
    "Supercalifragilisticexpialidocious" * 4,
    "Why?",
    "",
    "😀 emoji 🚀 are [UNK] here",
    "The quick brown fox jumps over the lazy dog. " * 40,  # longer than 256 tokens: truncated
    "I love pizza.",
    "Pizza is something I love.",
    "The stock market crashed yesterday.",
]


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return SentenceEncoder.from_pretrained()


@pytest.fixture(scope="module")
def reference():
    st = pytest.importorskip("sentence_transformers")
    return st.SentenceTransformer(str(default_model_dir()), device="cpu")


def test_embeddings_equal_sentence_transformers(encoder, reference) -> None:
    ours = encoder.encode(SENTENCES, batch_size=4)
    ref = reference.encode(SENTENCES, batch_size=4, convert_to_numpy=True)
    assert ours.shape == (len(SENTENCES), 384) and ours.dtype == np.float32
    cos = np.sum(ours * ref, axis=1) / (
        np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1)
    )
    assert cos.min() >= MIN_COSINE, cos
    assert np.abs(ours - ref).max() <= MAX_ABS
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)


def test_similar_sentences_are_close(encoder) -> None:
    v = encoder.encode(["I love pizza.", "Pizza is something I love.", "The stock fell."])
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3


def test_batch_does_not_change_a_sentence(encoder) -> None:
    short = "A short sentence."
    alone = encoder.encode([short])[0]
    longer = ["This sentence is a good deal longer than the short one, so it pads it.", short,
              "Another long sentence that makes sure padding happens in the batch."]
    in_batch = encoder.encode(longer, batch_size=3)[1]
    assert np.abs(alone - in_batch).max() <= 1e-6


def test_unpadded_forward_gives_the_reference_embeddings(encoder) -> None:
    """encode runs BertModel.forward_unpadded; the reference forward gives the same vectors."""
    batch = encoder.tokenizer(SENTENCES, max_length=encoder.max_seq_length)
    assert batch["attention_mask"].min() == 0  # the batch is padded
    mask = batch["attention_mask"].astype(bool)
    fast = encoder._forward(batch)
    ref = encoder._forward(batch, unpadded=False)
    assert np.abs(fast[mask] - ref[mask]).max() <= MAX_ABS * np.abs(ref[mask]).max()
    np.testing.assert_array_equal(fast[~mask], 0.0)


def test_order_is_kept_across_batches(encoder) -> None:
    many = SENTENCES[:10]
    together = encoder.encode(many, batch_size=3)
    one_by_one = np.stack([encoder.encode([s])[0] for s in many])
    assert np.abs(together - one_by_one).max() <= 1e-6


def test_attention_equals_hugging_face(encoder) -> None:
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    hf = transformers.BertModel.from_pretrained(
        str(default_model_dir()), attn_implementation="eager"
    ).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(default_model_dir()))
    sentence = "The cat sat on the mat."
    tokens, probs = encoder.attentions(sentence)
    enc = tok(sentence, return_tensors="pt")
    assert tokens == tok.convert_ids_to_tokens(enc["input_ids"][0])
    with torch.no_grad():
        out = hf(**enc, output_attentions=True)
    assert len(probs) == len(out.attentions) == 6
    for ours, theirs in zip(probs, out.attentions, strict=True):
        assert ours.shape == tuple(theirs.shape[1:]) == (12, len(tokens), len(tokens))
        assert np.abs(ours - theirs[0].numpy()).max() <= ATTN_ABS


def test_encode_bad_input(encoder) -> None:
    with pytest.raises(TypeError, match=r"sentences\[1\] must be a str, got int"):
        encoder.encode(["fine", 3])
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        encoder.encode(["x"], batch_size=0)
    with pytest.raises(ValueError, match="no sentences"):
        encoder.encode([])


def _copy_model(tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(default_model_dir(), dst)
    return dst


def test_missing_files_are_named(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="model directory not found"):
        load_pretrained_model(tmp_path / "nowhere")
    for name in ("config.json", "model.safetensors", "vocab.txt"):
        d = _copy_model(tmp_path / name.replace(".", "_"))
        (d / name).unlink()
        with pytest.raises(FileNotFoundError, match=f"has no {name}"):
            SentenceEncoder.from_pretrained(d)


def test_unsupported_architecture_is_named(tmp_path) -> None:
    d = _copy_model(tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    cfg["model_type"] = "gpt2"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="unsupported architecture 'gpt2'"):
        SentenceEncoder.from_pretrained(d)


def test_corrupt_weights_are_reported(tmp_path) -> None:
    d = _copy_model(tmp_path)
    (d / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="model.safetensors cannot be read"):
        SentenceEncoder.from_pretrained(d)


def test_distilbert_directory_loads(tmp_path) -> None:
    """A DistilBERT checkpoint saved by Hugging Face loads and encodes like HF + mean pooling."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    cfg = transformers.DistilBertConfig(
        vocab_size=30522, dim=48, n_layers=2, n_heads=3, hidden_dim=64, max_position_embeddings=64
    )
    hf = transformers.DistilBertModel(cfg).eval()
    d = tmp_path / "distil"
    hf.save_pretrained(d, safe_serialization=True)
    shutil.copy(default_model_dir() / "vocab.txt", d / "vocab.txt")
    enc = SentenceEncoder.from_pretrained(d)
    sentences = ["A tiny model.", "It still encodes sentences the same way as the reference."]
    ours = enc.encode(sentences)
    tok = transformers.AutoTokenizer.from_pretrained(str(default_model_dir()))  # same vocab.txt
    batch = tok(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        h = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
    m = batch["attention_mask"][..., None].float()
    ref = ((h * m).sum(1) / m.sum(1)).numpy()
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    assert np.abs(ours - ref).max() <= MAX_ABS
