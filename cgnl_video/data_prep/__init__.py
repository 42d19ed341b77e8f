"""Offline data preparation, apart from the loading path: list makers and the synthetic generator."""
