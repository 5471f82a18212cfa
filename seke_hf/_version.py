"""The package version, in a module of its own so any module can read it without importing the package top
(`pyproject.toml` reads it from here too)."""

__version__ = "0.1.0"
