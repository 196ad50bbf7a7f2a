"""Neural network: radial basis, equivariant convolution, the ForceField model and its denoising head."""

from .denoising_head import DenoisingHead
from .model import ForceField, ModelConfig

__all__ = ["DenoisingHead", "ForceField", "ModelConfig"]
