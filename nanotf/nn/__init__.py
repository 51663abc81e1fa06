"""Modules: parameters, layers and the Transformer's blocks, each with forward and backward."""

from .attention import MultiHeadAttention
from .layers import Activation, Dropout, Embedding, LayerNorm, Linear, PositionalEncoding
from .module import Module, ModuleList
from .parameter import Parameter
from .transformer_layers import DecoderLayer, EncoderLayer, FeedForward

__all__ = [
    "Activation",
    "DecoderLayer",
    "Dropout",
    "Embedding",
    "EncoderLayer",
    "FeedForward",
    "LayerNorm",
    "Linear",
    "Module",
    "ModuleList",
    "MultiHeadAttention",
    "Parameter",
    "PositionalEncoding",
]
