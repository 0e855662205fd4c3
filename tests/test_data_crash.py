"""Kill a real recording process with SIGKILL and check that finished episodes survive."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np

from embodied.data import DatasetWriter, open_dataset
from embodied.data.synthetic import record_synthetic_episode, synthetic_action, synthetic_observation, synthetic_spec

# Records episodes 0..2, starts episode 3, says so, and waits to be killed.
KILLED_MID_EPISODE = """
import sys, time
from embodied.data import DatasetWriter
from embodied.data.synthetic import *
w = DatasetWriter(sys.argv[1], synthetic_spec())
for i in range(3):
    record_synthetic_episode(w, i, 8, "pick up the red cube")
w.start_episode("open the drawer")
for t in range(5):
    w.add_frame(synthetic_observation(w.spec, t, 3), synthetic_action(w.spec, t, 3))
print("recording episode 3", flush=True)
time.sleep(60)
"""

# Appends episodes without end, printing each committed index, until killed.
RECORDS_FOREVER = """
import sys
from embodied.data import DatasetWriter
from embodied.data.synthetic import *
w = DatasetWriter(sys.argv[1], synthetic_spec())
print("start", flush=True)
while True:
    print(record_synthetic_episode(w, w.num_episodes, 4, "pick up the red cube"), flush=True)
"""


def start(script: str, root) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, str(root)], stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def assert_episode_intact(ds, i: int, length: int) -> None:
    ep = ds.episode(i)
    assert len(ep) == length
    for t in range(length):
        np.testing.assert_array_equal(ep.actions[t], synthetic_action(ds.spec, t, i))
        np.testing.assert_array_equal(ep.state["joint_pos"][t], synthetic_observation(ds.spec, t, i).state["joint_pos"])


def test_sigkill_while_recording_keeps_finished_episodes(tmp_path):
    root = tmp_path / "ds"
    child = start(KILLED_MID_EPISODE, root)
    assert child.stdout.readline().strip() == "recording episode 3"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    assert list(root.rglob(".*.tmp")), "the killed episode's staged video files should be left behind"

    ds = open_dataset(root)
    assert ds.num_episodes == 3 and ds.num_frames == 24 and ds.verify() == []
    for i in range(3):
        assert_episode_intact(ds, i, 8)
    # What LeRobot globs sees exactly the finished episodes.
    assert len(list(root.glob("data/*/*.parquet"))) == 3

    with DatasetWriter(root, synthetic_spec()) as w:
        assert not list(root.rglob(".*.tmp")), "a new writer cleans up stale temp files"
        assert record_synthetic_episode(w, 3, 8, "open the drawer") == 3
    ds = open_dataset(root)
    assert ds.num_episodes == 4 and ds.tasks == ["pick up the red cube", "open the drawer"]
    assert_episode_intact(ds, 3, 8)


def test_sigkill_at_random_moments_never_breaks_the_dataset(tmp_path):
    root, rng, committed = tmp_path / "ds", random.Random(0), -1
    for attempt in range(12):  # until a few episodes made it
        if committed >= 2:
            break
        child = start(RECORDS_FOREVER, root)
        assert child.stdout.readline().strip() == "start"
        # Every other round waits for one episode first, so that a machine too busy to finish one in the
        # random delay still makes progress; the kill then lands in the next one.
        printed = [int(child.stdout.readline())] if attempt % 2 else []
        time.sleep(rng.uniform(0.1, 0.8))  # lands anywhere: encoding, writing, publishing, committing
        os.kill(child.pid, signal.SIGKILL)
        printed += [int(line) for line in child.stdout.read().split()]
        child.wait(timeout=10)
        ds = open_dataset(root)
        # Every episode the child reported is there; at most the one in flight may also have committed.
        committed = max([committed, *printed])
        assert ds.num_episodes in (committed + 1, committed + 2)
        committed = ds.num_episodes - 1
        assert ds.verify() == []
        for i in range(ds.num_episodes):
            assert_episode_intact(ds, i, 4)
        if ds.num_episodes:
            assert ds.stats["action"]["count"].tolist() == [ds.num_frames]
        else:
            assert ds.num_frames == 0  # killed before its first episode: an empty, valid dataset
    assert committed >= 2, "the children should have managed to record a few episodes"
