"""Coin Spotter: shared code for serving and training (catalog, preprocessing, model cards, inference)."""

__version__ = "0.1.0"
