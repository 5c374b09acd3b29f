"""β-VAE encoder/decoder families of the paper's appendix B.

A VAE here is any pair of modules: an encoder mapping images (n, C, H, W) to
``(mu, logvar)``, each of shape (n, n_latent), and a decoder mapping codes
(n, n_latent) to images (n, C, H, W) in [0, 1]. :class:`BetaVAE` bundles a
pair; user-supplied pairs work the same way.
"""
from __future__ import annotations

import math
from typing import Tuple

import torch
from torch import nn

from defuse_widgets._validation import check_choice, check_int

#: Architectures of appendix B: (channels, conv width, latent dim, image size).
FAMILIES = {
    "mnist": dict(in_channels=1, image_size=32, n_latent=10, width=32),
    "svhn": dict(in_channels=3, image_size=32, n_latent=10, width=64),
    "gtsrb": dict(in_channels=3, image_size=128, n_latent=15, width=64),
}


def _n_down(image_size: int) -> int:
    n = int(round(math.log2(image_size / 4)))
    if image_size != 4 * 2 ** n or n < 1:
        raise ValueError("image_size must be 4 times a power of two (8, 16, 32, 64, 128, ...); "
                         f"got {image_size}.")
    return n


class ConvEncoder(nn.Module):
    """Stride-2 4x4 convolutions down to 4x4, then FC 256, FC 256, FC 2*n_latent.

    Parameters
    ----------
    in_channels, image_size, n_latent, width : int
    """

    def __init__(self, in_channels: int, image_size: int, n_latent: int, width: int = 32):
        super().__init__()
        layers, c = [], in_channels
        for _ in range(_n_down(image_size)):
            layers += [nn.Conv2d(c, width, 4, 2, 1), nn.ReLU()]
            c = width
        self.conv = nn.Sequential(*layers, nn.Flatten())
        self.fc = nn.Sequential(nn.Linear(width * 16, 256), nn.ReLU(),
                                nn.Linear(256, 256), nn.ReLU(),
                                nn.Linear(256, 2 * n_latent))
        self.n_latent = n_latent

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Return ``(mu, logvar)``, each of shape (n, n_latent)."""
        h = self.fc(self.conv(x))
        return h[:, : self.n_latent], h[:, self.n_latent:]


class ConvDecoder(nn.Module):
    """FC 256 x2, FC to width x 4 x 4, stride-2 4x4 transposed convolutions, sigmoid.

    Parameters
    ----------
    out_channels, image_size, n_latent, width : int
    """

    def __init__(self, out_channels: int, image_size: int, n_latent: int, width: int = 32):
        super().__init__()
        self.width = width
        self.fc = nn.Sequential(nn.Linear(n_latent, 256), nn.ReLU(),
                                nn.Linear(256, 256), nn.ReLU(),
                                nn.Linear(256, width * 16), nn.ReLU())
        n = _n_down(image_size)
        layers = []
        for i in range(n):
            last = i == n - 1
            layers += [nn.ConvTranspose2d(width, out_channels if last else width, 4, 2, 1),
                       nn.Sigmoid() if last else nn.ReLU()]
        self.deconv = nn.Sequential(*layers)
        self.n_latent = n_latent

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Map codes (n, n_latent) to images (n, C, H, W) in [0, 1]."""
        return self.deconv(self.fc(z).view(-1, self.width, 4, 4))


class BetaVAE(nn.Module):
    """An encoder/decoder pair trained as a β-VAE.

    Parameters
    ----------
    encoder : nn.Module
        Images (n, C, H, W) -> ``(mu, logvar)`` of shape (n, n_latent) each.
    decoder : nn.Module
        Codes (n, n_latent) -> images (n, C, H, W) in [0, 1].
    n_latent : int
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, n_latent: int):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.n_latent = check_int("n_latent", n_latent, low=1)

    @classmethod
    def from_family(cls, family: str = "mnist", **overrides) -> "BetaVAE":
        """Build the appendix-B architecture for ``family`` in {"mnist", "svhn", "gtsrb"}.

        ``overrides`` may change ``in_channels``, ``image_size``, ``n_latent`` or ``width``.
        """
        check_choice("family", family, FAMILIES)
        cfg = {**FAMILIES[family], **overrides}
        enc = ConvEncoder(cfg["in_channels"], cfg["image_size"], cfg["n_latent"], cfg["width"])
        dec = ConvDecoder(cfg["in_channels"], cfg["image_size"], cfg["n_latent"], cfg["width"])
        return cls(enc, dec, cfg["n_latent"])

    def encode(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Return ``(mu, logvar)`` of shape (n, n_latent) each."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Return images (n, C, H, W) decoded from codes (n, n_latent)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(reconstruction, mu, logvar)`` with the reparameterisation trick."""
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar
