"""Neural network: radial basis, equivariant convolution, the ForceField model."""

from .model import ForceField, ModelConfig

__all__ = ["ForceField", "ModelConfig"]
