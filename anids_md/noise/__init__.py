"""Noise models for coordinate denoising (fixed, isotropic, anisotropic); training only."""

from .covariance import (
    NOISE_MODELS,
    NoiseDraw,
    anisotropic_weights,
    anisotropy_hinge,
    clamp_log_variance,
    covariance,
    draw_noise,
    masked_mean,
)
from .force_encoding import ForceEncoding
from .sampler import Corruption, Covariances, NoiseConfig, corrupt, regulariser, structure_covariances

__all__ = ["NOISE_MODELS", "NoiseDraw", "anisotropic_weights", "anisotropy_hinge", "clamp_log_variance",
           "covariance", "draw_noise", "masked_mean", "ForceEncoding", "Corruption", "Covariances",
           "NoiseConfig", "corrupt", "regulariser", "structure_covariances"]
from .analysis import NoiseReport, describe_noise, plot_noise  # noqa: E402
from .learned import LearnedNoise  # noqa: E402

__all__ += ["LearnedNoise", "NoiseReport", "describe_noise", "plot_noise"]
