"""Helpers for testing nanotf code: the strict CPU stand-in for CuPy lives in ``strict``."""
