"""fairshare: fair, explainable allocation of an AI lab's scarce GPUs among its teams."""

__version__ = "0.1.0"
