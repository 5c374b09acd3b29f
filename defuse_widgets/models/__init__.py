"""Classifiers and β-VAE families of the paper's appendix B."""
from defuse_widgets.models.classifiers import MnistCNN, OracleCNN, resnet18_classifier
from defuse_widgets.models.vae import FAMILIES, BetaVAE, ConvDecoder, ConvEncoder

__all__ = ["FAMILIES", "BetaVAE", "ConvDecoder", "ConvEncoder", "MnistCNN", "OracleCNN",
           "resnet18_classifier"]
