"""`embodied deploy` end to end: a trained checkpoint drives the sim twin served from another process,
a correction typed in the terminal reaches the policy and the recorded dataset, and `embodied estop` latches."""

from __future__ import annotations

import io
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from embodied.data import open_dataset
from embodied.deploy import DeployConfig, EstopConfig, RobotServerProcess, deploy, estop


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def twin_toml(path: Path, size: int) -> Path:
    """The user's own limits file for the twin: the shipped one with smaller cameras."""
    text = (Path(__file__).resolve().parents[2] / "hardware" / "configs" / "sim-twin.toml").read_text()
    path.write_text(text.replace("width = 128", f"width = {size}").replace("height = 128", f"height = {size}"))
    return path


@pytest.fixture(scope="module")
def checkpoint(tiny_bc_run):
    """A BC policy trained for 3 steps on 2 expert demos of reach at 32x32 (a real run folder)."""
    return tiny_bc_run


def test_deploy_runs_the_policy_on_the_twin_and_records_terminal_corrections(checkpoint, tmp_path):
    cfg = DeployConfig(policy=str(checkpoint), robot=str(twin_toml(tmp_path / "twin.toml", 32)), port=free_port(),
                       episodes=2, max_steps=6, out=tmp_path / "run", web=True, web_port=0)
    results = deploy(cfg, stdin=io.StringIO("a bit more to the left\n"))
    assert [r.steps for r in results] == [6, 6]
    assert [c.text for c in results[0].corrections] == ["a bit more to the left"]
    assert results[0].corrections[0].source == "human"  # typed by a person (DESIGN: human | simulated)
    ds = open_dataset(tmp_path / "run" / "dataset")
    assert ds.num_episodes == 2
    events = [c for frame in ds.episode(0).corrections for c in frame]
    assert [e.text for e in events] == ["a bit more to the left"]
    assert (tmp_path / "run" / "config.json").exists() and "serving" in (tmp_path / "run" / "robot_server.log").read_text()
    actions = ds.episode(0).actions
    assert actions.shape == (6, 7) and np.all(np.isfinite(actions))


def test_a_checkpoint_for_another_camera_size_is_refused(checkpoint, tmp_path):
    from embodied.types import SpecMismatchError

    cfg = DeployConfig(policy=str(checkpoint), robot=str(twin_toml(tmp_path / "twin.toml", 48)), port=free_port(),
                       max_steps=2, out=tmp_path / "run", web=False, terminal=False)
    with pytest.raises(SpecMismatchError):
        deploy(cfg)


def test_estop_from_the_command_line_latches_until_released(tmp_path):
    from embodied.types import Action

    server = RobotServerProcess(str(twin_toml(tmp_path / "twin.toml", 32)), free_port(), log=tmp_path / "log.txt")
    try:
        robot = server.connect()
        robot.reset(seed=0)
        estop(EstopConfig(address=server.address))
        r = robot.step(Action(np.array([0.03, 0, 0, 0, 0, 0, 1], np.float32), robot.spec.action))
        assert r.done and r.info["estop"]
        estop(EstopConfig(address=server.address, release=True))
        time.sleep(0.05)
        r = robot.step(Action(np.array([0.03, 0, 0, 0, 0, 0, 1], np.float32), robot.spec.action))
        assert not r.info.get("estop")
        robot.close()
    finally:
        server.stop()


def test_a_terminated_deploy_stops_the_robot_server_it_started(checkpoint, tmp_path):
    import subprocess
    import sys

    port = free_port()
    robot = twin_toml(tmp_path / "twin.toml", 32)
    proc = subprocess.Popen([sys.executable, "-m", "embodied.cli", "deploy", "--policy", str(checkpoint), "--robot",
                             str(robot), "--port", str(port), "--episodes", "50", "--max-steps", "5", "--no-web",
                             "--no-terminal", "--out", str(tmp_path / "run")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if line.startswith("episode 0"):
            break
    proc.terminate()  # SIGTERM, as a supervisor or `kill` sends it
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 143, rest
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                break  # nothing listens there any more: the server process is gone
        time.sleep(0.2)
    else:
        pytest.fail("the robot server still listens after its deploy process was terminated")
