"""The same training command across two CPU processes (torchrun, gloo): the ranks share the work and end equal."""

import json
import subprocess
import sys
from pathlib import Path

from embodied.checkpoint import load_policy
from embodied.data.synthetic import synthetic_spec, write_synthetic_dataset
from embodied.train_state import pretrained_dir

STEPS, BATCH = 6, 4


def test_two_process_gloo_training_splits_the_data_and_keeps_weights_identical(tmp_path):
    data = write_synthetic_dataset(tmp_path / "data", num_episodes=3, length=8,
                                   spec=synthetic_spec(cameras=("front",), size=24))
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "embodied.train", "bc",
           "--train.dataset", str(data), "--train.output-dir", str(tmp_path / "runs"), "--train.name", "ddp",
           "--train.steps", str(STEPS), "--train.batch-size", str(BATCH), "--train.save-every", "3",
           "--train.num-workers", "0", "--train.no-progress",  # no --train.cpu: a machine without a GPU is enough
           "--policy.language", "none", "--policy.cnn-channels", "8", "--policy.feature-dim", "16",
           "--policy.hidden-dim", "32"]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "runs" / "ddp"

    config = json.loads((run / "config.json").read_text())
    assert config["num_processes"] == 2 and config["distributed"] == "MULTI_CPU"
    ranks = [json.loads((run / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
    seen = [r["sample_indices"] for r in ranks]
    assert len(seen[0]) == len(seen[1]) == STEPS * BATCH
    for step in range(STEPS):  # within every global batch the two ranks trained on different windows
        a, b = (set(s[step * BATCH:(step + 1) * BATCH]) for s in seen)
        assert not a & b, f"step {step}: both ranks saw {a & b}"
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"], "gradients were not synchronised"

    state = run / "checkpoints" / f"step_{STEPS:06d}" / "training_state"
    assert {p.name for p in state.glob("rng_rank*.safetensors")} == {"rng_rank0.safetensors", "rng_rank1.safetensors"}
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == STEPS
    assert load_policy(pretrained_dir(run)).spec.camera_names == ("front",)
