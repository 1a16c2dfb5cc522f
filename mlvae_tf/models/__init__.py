"""The grouped models: the paper's ML-VAE and its baselines, on one fit machinery (`base`).

base.py         GroupedModel: batch forms and checks, XLA policy, fused executions, trackers, atomic save
autoencoder.py  Autoencoder: the paper's encoder and decoder networks, a content and a style latent
mlvae.py        MLVAE: the content shared by a group through the product (or mixture) of Normals
vae.py          VAE (i.i.d., the groups unused) and RegularisedVAE (pairs of a group pulled together)
svi.py          SVI: posteriors as variables, no encoder; test-time inference by optimisation
multilevel.py   MultiLevelVAE: several groupings at once, a content latent for each
"""

from mlvae_tf.models.autoencoder import Autoencoder
from mlvae_tf.models.base import GroupedModel
from mlvae_tf.models.mlvae import MLVAE
from mlvae_tf.models.multilevel import MultiLevelVAE
from mlvae_tf.models.svi import SVI
from mlvae_tf.models.vae import VAE, RegularisedVAE

__all__ = ["GroupedModel", "Autoencoder", "MLVAE", "MultiLevelVAE", "VAE", "RegularisedVAE", "SVI"]
