"""EDM diffusion glue: preconditioning, the training σ density, the sampler.

Karras et al. 2022 ("EDM") write the denoiser as

    D(x; σ) = c_skip(σ) x + c_out(σ) F(c_in(σ) x; c_noise(σ))

with, for data of standard deviation σ_d (σ_d = 0.5 for actions in [-1, 1]):

    c_skip  = σ_d² / (σ² + σ_d²)        -> 1 as σ -> 0 (D returns x: nothing to remove), 1/2 at σ = σ_d
    c_out   = σ σ_d / sqrt(σ² + σ_d²)   -> 0 as σ -> 0,                                σ_d/√2 at σ = σ_d
    c_in    = 1 / sqrt(σ² + σ_d²)       (unit-variance network input)
    c_noise = ln(σ) / 4

Training regresses F on the effective target (x0 - c_skip x) / c_out, which
is the EDM loss with its λ(σ) = 1 / c_out² weighting folded in (as MDT does).

Noise levels for training come from a log-logistic density, ln σ = loc +
scale · logit(u), truncated to [σ_min, σ_max] by drawing u uniformly between
the two bounds' CDF values (median exp(loc) = 0.5 when loc = ln 0.5).

Sampling is DDIM on an exponential schedule (σ_max -> σ_min in log space,
then 0). For the EDM ODE dx/dσ = (x - D(x; σ)) / σ one Euler step from σ to
σ' gives x' = (σ'/σ) x + (1 - σ'/σ) D, exactly DDIM's update (k-diffusion's
sample_ddim is the same formula written with t = -ln σ), so diffusers'
`EDMEulerScheduler(sigma_schedule="exponential")` is the DDIM sampler here.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def c_skip(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    return sigma_data**2 / (sigma**2 + sigma_data**2)


def c_out(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    return sigma * sigma_data / (sigma**2 + sigma_data**2).sqrt()


def c_in(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    return 1 / (sigma**2 + sigma_data**2).sqrt()


def c_noise(sigma: torch.Tensor) -> torch.Tensor:
    return sigma.log() / 4


def _expand(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) σ -> (B, 1, ..., 1) to broadcast over x of shape (B, ...)."""
    return sigma.reshape(-1, *([1] * (like.ndim - 1)))


# F(x_in (B, T, D), c_noise (B,)) -> (B, T, D): the raw network with its conditioning bound in.
Network = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def denoise(network: Network, x: torch.Tensor, sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """D(x; σ) for x (B, T, D) and σ (B,): the network's estimate of the clean sample."""
    s = _expand(sigma, x)
    return c_skip(s, sigma_data) * x + c_out(s, sigma_data) * network(c_in(s, sigma_data) * x, c_noise(sigma))


def denoising_loss(network: Network, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor,
                   sigma_data: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """EDM loss for clean x0 (B, T, D), σ (B,), unit noise (B, T, D); mask (B, T) drops padded steps."""
    s = _expand(sigma, x0)
    x = x0 + noise * s
    target = (x0 - c_skip(s, sigma_data) * x) / c_out(s, sigma_data)
    err = (network(c_in(s, sigma_data) * x, c_noise(sigma)) - target).pow(2).mean(-1)  # (B, T)
    if mask is None:
        return err.mean()
    mask = mask.to(err.dtype)
    return (err * mask).sum() / mask.sum().clamp(min=1)


def sample_log_logistic(shape: tuple[int, ...], loc: float, scale: float, sigma_min: float, sigma_max: float,
                        generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """σ ~ log-logistic(loc, scale) truncated to [sigma_min, sigma_max], float32."""
    def cdf(s: float) -> float:  # P(σ <= s) = sigmoid((ln s - loc) / scale)
        return 1 / (1 + math.exp(-(math.log(s) - loc) / scale))

    lo, hi = cdf(sigma_min), cdf(sigma_max)
    u = torch.rand(shape, generator=generator, device=device, dtype=torch.float64) * (hi - lo) + lo
    sigma = (u.logit() * scale + loc).exp()
    return sigma.clamp(sigma_min, sigma_max).float()


def make_scheduler(sigma_min: float, sigma_max: float, sigma_data: float):
    """The DDIM sampler: diffusers' EDM Euler scheduler on an exponential σ schedule ending at 0."""
    from diffusers import EDMEulerScheduler

    return EDMEulerScheduler(sigma_min=sigma_min, sigma_max=sigma_max, sigma_data=sigma_data,
                             sigma_schedule="exponential", prediction_type="epsilon", final_sigmas_type="zero")


def sample(network: Network, shape: tuple[int, ...], scheduler, steps: int, sigma_data: float,
           generator: torch.Generator | None = None, device: torch.device | str = "cpu",
           clip: float | None = 1.0) -> torch.Tensor:
    """Draw x0 of `shape` (B, T, D) by `steps` DDIM steps from pure noise at σ_max.

    The network sees the denoiser's preconditioned input; the scheduler only
    holds the σ schedule and takes the Euler/DDIM step from our D(x; σ).
    clip: clamp the result to [-clip, clip], the normalised action range.
    """
    scheduler.set_timesteps(steps)
    scheduler.is_scale_input_called = True  # `denoise` applies c_in itself; silences diffusers' reminder
    sigmas = scheduler.sigmas.to(device)
    x = torch.randn(shape, generator=generator, device=device) * sigmas[0]
    for i, t in enumerate(scheduler.timesteps):
        sigma = sigmas[i].expand(shape[0])
        x0 = denoise(network, x, sigma, sigma_data)
        x = scheduler.step(x0, t, x, pred_original_sample=x0).prev_sample  # model_output unused given x0
    return x.clamp(-clip, clip) if clip is not None else x
