"""asymlib: W-Asymmetric MLPs in deep ensembles and mixtures of experts, trained as batched models."""

__version__ = "0.1.0"
