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

__all__ = ["NOISE_MODELS", "NoiseDraw", "anisotropic_weights", "anisotropy_hinge", "clamp_log_variance",
           "covariance", "draw_noise", "masked_mean"]
