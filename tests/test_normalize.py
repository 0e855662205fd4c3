"""Normalisation fails loudly and inverts exactly."""

import numpy as np
import pytest
import torch

from embodied.normalize import MissingStatisticError, Normalizer

STATS = {
    "action": {"min": [-1.0, 0.0], "max": [1.0, 1.0], "mean": [0.0, 0.5], "std": [0.5, 0.5],
               "q01": [-0.9, 0.0], "q99": [0.9, 1.0]},
    "observation.state": {"mean": [1.0, 2.0, 3.0], "std": [2.0, 2.0, 2.0]},
}


@pytest.mark.parametrize("mode", ["mean_std", "min_max", "bounds_q99"])
def test_round_trip_numpy_and_torch(mode):
    n = Normalizer(STATS, {"action": mode})
    x = np.array([[0.3, 0.2], [-0.5, 0.9]], np.float32)
    np.testing.assert_allclose(n.unnormalize("action", n.normalize("action", x)), x, atol=1e-5)
    t = torch.tensor(x)
    torch.testing.assert_close(n.unnormalize("action", n.normalize("action", t)), t, atol=1e-5, rtol=0)


def test_bounds_q99_clips_and_masks_the_gripper():
    n = Normalizer(STATS, {"action": "bounds_q99"}, mask={"action": (1,)})
    y = n.normalize("action", np.array([5.0, 1.0], np.float32))
    assert y[0] == 1.0 and y[1] == 1.0  # clipped; the gripper dimension passes raw
    y = n.normalize("action", np.array([0.0, 0.3], np.float32))
    assert y[1] == pytest.approx(0.3)


def test_missing_feature_or_statistic_is_an_error():
    with pytest.raises(MissingStatisticError, match="observation.images.front"):
        Normalizer(STATS, {"observation.images.front": "mean_std"})
    with pytest.raises(MissingStatisticError, match=r"\['min', 'max'\]"):
        Normalizer(STATS, {"observation.state": "min_max"})
    n = Normalizer(STATS, {"action": "min_max"})
    with pytest.raises(MissingStatisticError, match="no normalisation mode"):
        n.normalize("observation.state", np.zeros(3))


def test_checkpoint_form_round_trip():
    n = Normalizer(STATS, {"action": "bounds_q99", "observation.state": "mean_std"}, mask={"action": (1,)})
    m = Normalizer.from_tensors(n.to_tensors(), n.config())
    x = np.array([0.4, 0.6], np.float32)
    np.testing.assert_array_equal(m.normalize("action", x), n.normalize("action", x))
