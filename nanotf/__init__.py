"""nanotf: a from-scratch Transformer on NumPy and CuPy where every gradient is written by hand.

The top level holds the array layer's public names (``nanotf.backend.__all__``, listed once
there): choosing the backend (``set_backend``, ``get_backend``, ``BACKENDS``,
``BackendUnavailableError``), moving arrays (``asarray``, ``to_numpy``), the array modules
(``array_module``, ``get_array_module``), random numbers (``manual_seed``, ``rng``) and dtypes
(``default_dtype``, ``set_default_dtype``). The ops are in ``nanotf.functional``, the layers in
``nanotf.nn``, whole models in ``nanotf.models``.
"""

from . import backend
from .backend import *  # noqa: F403  (the names of backend.__all__)

__version__ = "0.1.0"

__all__ = list(backend.__all__)
