"""The package version, in a module that imports nothing, so every module can import it."""

__version__ = "0.2.0"
