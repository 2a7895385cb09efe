"""uda3d."""
__version__ = "0.1.0"
