"""Classifiers and β-VAE families of the paper's appendix B."""
from .classifiers import MnistCNN, OracleCNN, resnet18_classifier
from .vae import FAMILIES, BetaVAE, ConvDecoder, ConvEncoder

__all__ = ["FAMILIES", "BetaVAE", "ConvDecoder", "ConvEncoder", "MnistCNN", "OracleCNN",
           "resnet18_classifier"]
