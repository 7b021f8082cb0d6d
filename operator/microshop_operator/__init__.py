"""microshop's Kubernetes operator: renders the shop chart for each ``Shop`` and keeps it applied.

Run it with ``python -m microshop_operator [kopf run options]``.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
