"""Kept for `pip install -e .` with older tools; the metadata lives in pyproject.toml."""

from setuptools import setup

setup()
