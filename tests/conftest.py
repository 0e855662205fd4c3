"""Test-wide settings that must hold before anything imports MuJoCo."""

import os

# Offscreen rendering on the CPU (Mesa llvmpipe through EGL); set before any mujoco import.
os.environ.setdefault("MUJOCO_GL", "egl")


import pytest


@pytest.fixture(scope="module")
def tiny_bc_run(tmp_path_factory):
    """Two expert demos of tabletop/reach-v0 at 32x32, and a BC policy trained on them for 3 steps: a real
    run folder, for tests that need some trained checkpoint (evaluation, deployment)."""
    from embodied.collect import CollectConfig, collect
    from embodied.train import TrainConfig, train
    from policies.bc.configuration import BCConfig

    root = tmp_path_factory.mktemp("tiny_bc")
    collect(CollectConfig(tasks=("tabletop/reach-v0",), episodes_per_task=2, out=root / "data", workers=1,
                          image_size=32), progress=False)
    return train(TrainConfig(dataset=(str(root / "data"),), policy="bc", output_dir=str(root), name="bc", steps=3,
                             batch_size=4, num_workers=0, warmup_steps=1, ema_decay=None, save_every=3, cpu=True,
                             progress=False),
                 BCConfig(action_horizon=4, cnn_channels=(8,), feature_dim=16, hidden_dim=32, language="none"))


@pytest.fixture
def one_thread():
    """Batch-of-a-few CPU work runs fastest (and steadiest on a busy machine) on one thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def bench_module():
    """Import a script of bench/ as a module (bench/ is a folder of scripts, not a package):
    `bench_module("heading").summary`."""
    import importlib
    import sys
    from pathlib import Path

    def load(name: str):
        sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))
        try:
            return importlib.import_module(name)
        finally:
            sys.path.pop(0)

    return load
