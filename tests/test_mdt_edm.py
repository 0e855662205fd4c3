"""EDM preconditioning, the log-logistic σ density and the DDIM sampler of MDT."""

import math

import pytest
import torch

from policies.mdt import edm

SD = 0.5


def test_preconditioning_limits_and_values_at_sigma_data():
    tiny = torch.tensor(1e-6)
    assert edm.c_skip(tiny, SD).item() == pytest.approx(1.0)  # nothing to remove: D(x) = x
    assert edm.c_out(tiny, SD).item() == pytest.approx(0.0, abs=1e-5)
    s = torch.tensor(SD)
    assert edm.c_skip(s, SD).item() == pytest.approx(0.5)
    assert edm.c_out(s, SD).item() == pytest.approx(SD / math.sqrt(2))
    assert edm.c_in(s, SD).item() == pytest.approx(1 / (SD * math.sqrt(2)))
    assert edm.c_noise(torch.tensor(80.0)).item() == pytest.approx(math.log(80) / 4)
    # unit variance of the network input and of the training target, for any σ (EDM's design rule)
    for sigma in (0.01, 0.5, 10.0):
        s = torch.tensor(sigma)
        assert (edm.c_in(s, SD) ** 2 * (SD**2 + sigma**2)).item() == pytest.approx(1.0)
        target_var = ((1 - edm.c_skip(s, SD)) ** 2 * SD**2 + edm.c_skip(s, SD) ** 2 * sigma**2) / edm.c_out(s, SD) ** 2
        assert target_var.item() == pytest.approx(1.0, rel=1e-5)


def test_log_logistic_sigmas_stay_in_bounds_with_median_one_half():
    g = torch.Generator().manual_seed(0)
    sigma = edm.sample_log_logistic((200_000,), math.log(0.5), 0.5, 0.001, 80.0, generator=g)
    assert sigma.dtype == torch.float32
    assert sigma.min() >= 0.001 and sigma.max() <= 80.0
    assert sigma.median().item() == pytest.approx(0.5, rel=0.02)
    # log-logistic with scale 0.5: P(σ < 0.5·e) = sigmoid(2) ≈ 0.881
    assert (sigma < 0.5 * math.e).float().mean().item() == pytest.approx(1 / (1 + math.exp(-2)), abs=0.01)
    narrow = edm.sample_log_logistic((10_000,), math.log(0.5), 0.5, 0.4, 0.6, generator=g)
    assert narrow.min() >= 0.4 and narrow.max() <= 0.6  # truncation, not clipping of a few outliers
    assert (narrow < 0.45).float().mean() > 0.1


def test_scheduler_is_exponential_ten_steps_ending_at_zero():
    sched = edm.make_scheduler(0.001, 80.0, SD)
    sched.set_timesteps(10)
    s = sched.sigmas
    assert len(s) == 11 and s[-1] == 0
    assert s[0].item() == pytest.approx(80.0) and s[-2].item() == pytest.approx(0.001)
    ratios = s[1:-1] / s[:-2]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios), rtol=1e-4)  # geometric: exponential in σ


def test_one_step_is_ddim_and_the_sampler_recovers_a_known_target():
    target = torch.linspace(-0.9, 0.9, 2 * 10 * 7).view(2, 10, 7)

    def oracle(x_in, noise_level):
        # The exact F for a point mass at `target`: D(x; σ) = target for every x and σ.
        sigma = (4 * noise_level).exp().view(-1, 1, 1)
        x = x_in / edm.c_in(sigma, SD)
        return (target - edm.c_skip(sigma, SD) * x) / edm.c_out(sigma, SD)

    x = torch.randn(2, 10, 7)
    sigma = torch.full((2,), 3.0)
    assert torch.allclose(edm.denoise(oracle, x, sigma, SD), target, atol=1e-5)
    sched = edm.make_scheduler(0.001, 80.0, SD)
    sched.set_timesteps(10)
    s0, s1 = sched.sigmas[0], sched.sigmas[1]
    stepped = sched.step(target, sched.timesteps[0], x, pred_original_sample=target).prev_sample
    assert torch.allclose(stepped, (s1 / s0) * x + (1 - s1 / s0) * target, atol=1e-5)  # DDIM update
    out = edm.sample(oracle, (2, 10, 7), sched, 10, SD, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, target, atol=1e-4)


def test_sampler_output_is_clipped_to_the_normalised_range():
    def wild(x_in, noise_level):
        return torch.full_like(x_in, 50.0)  # a network far outside the data range

    out = edm.sample(wild, (3, 10, 7), edm.make_scheduler(0.001, 80.0, SD), 10, SD)
    assert out.abs().max() <= 1.0
    unclipped = edm.sample(wild, (3, 10, 7), edm.make_scheduler(0.001, 80.0, SD), 10, SD, clip=None)
    assert unclipped.abs().max() > 1.0


def test_denoising_loss_is_zero_for_the_exact_denoiser_and_respects_the_mask():
    x0 = torch.rand(4, 10, 7) * 2 - 1

    def exact(x_in, noise_level):
        sigma = (4 * noise_level).exp().view(-1, 1, 1)
        x = x_in / edm.c_in(sigma, SD)
        return (x0 - edm.c_skip(sigma, SD) * x) / edm.c_out(sigma, SD)

    sigma = edm.sample_log_logistic((4,), math.log(0.5), 0.5, 0.001, 80.0)
    noise = torch.randn_like(x0)
    assert edm.denoising_loss(exact, x0, sigma, noise, SD).item() == pytest.approx(0.0, abs=1e-6)

    def zero(x_in, noise_level):
        return torch.zeros_like(x_in)

    mask = torch.zeros(4, 10, dtype=torch.bool)
    mask[:, :3] = True
    full = edm.denoising_loss(zero, x0, sigma, noise, SD)
    masked = edm.denoising_loss(zero, x0, sigma, noise, SD, mask)
    assert full > 0 and masked > 0 and not torch.isclose(full, masked)
