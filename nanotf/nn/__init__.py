"""Modules: parameters, layers and the Transformer's blocks, each with forward and backward."""

from .attention import AttentionGrads, MultiHeadAttention
from .blocks import LayerStack, TokenEmbeddings, residual_backward, residual_forward
from .kv_cache import DecoderCache, KVCache
from .layers import Activation, Dropout, Embedding, LayerNorm, Linear, PositionalEncoding
from .module import Module, ModuleList
from .parameter import Parameter
from .transformer_layers import DecoderLayer, EncoderLayer, FeedForward

__all__ = [
    "Activation",
    "AttentionGrads",
    "DecoderCache",
    "DecoderLayer",
    "Dropout",
    "Embedding",
    "EncoderLayer",
    "FeedForward",
    "KVCache",
    "LayerNorm",
    "LayerStack",
    "Linear",
    "Module",
    "ModuleList",
    "MultiHeadAttention",
    "Parameter",
    "PositionalEncoding",
    "TokenEmbeddings",
    "residual_backward",
    "residual_forward",
]
