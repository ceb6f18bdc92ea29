"""searchr1-jax: Search-R1 (reinforcement learning to reason with a search engine) in JAX."""
import os as _os

__version__ = "0.1.0"
ASSETS_DIR = _os.path.join(_os.path.dirname(__file__), "assets")
