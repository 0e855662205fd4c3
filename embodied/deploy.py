"""`embodied deploy`: a trained policy on a robot (or the sim twin), watched and corrected live.

    embodied deploy --policy outputs/demo/runs/mdt              # sim twin, web page on 127.0.0.1:8765
    embodied deploy --policy ckpt --robot ur5e --address tcp://robot-pc:5555

The robot and the policy run in different processes. Unless `--address`
names a robot server that is already running (next to a real arm), this
command starts one for `--robot` in its own process and stops it at the end.
The policy's process then runs the one runner on a `RemoteRobot` with:

- the live session (embodied.live) as monitor and correction channel,
  shown by the web page (embodied.web) and fed by the terminal
  (embodied.terminal): corrections reach `policy.correct()` and the
  recording; pause / resume / stop; the emergency stop goes to the server;
- a recorder writing every episode, corrections included, to a LeRobot
  dataset under `--out`;
- the config of the run saved beside it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any


@dataclasses.dataclass
class DeployConfig:
    """Run a trained policy on a robot with live corrections (web page + terminal)."""

    policy: str  # checkpoint folder: a training run, one of its steps, or a pretrained folder
    robot: str = "sim-twin"  # robot name (`embodied list --kind robot`) or a .toml limits file; served from here
    address: str | None = None  # a robot server already running (e.g. tcp://robot-pc:5555): `robot` is not started
    port: int = 5555  # port of the robot server started here
    task: str | None = None  # sim twin only: the tabletop family laid out on each reset (e.g. open-drawer)
    instruction: str | None = None  # the task for the policy; None: the robot's own (the twin names its task)
    episodes: int = 1
    seed0: int = 0  # sim twin: the layout seed of the first episode (then +1 per episode)
    max_steps: int | None = None  # cap on ticks per episode
    out: Path = Path("outputs/deploy")  # config, robot server log and the recorded dataset go here
    record: bool = True  # write every episode (corrections included) to <out>/dataset
    web: bool = True  # serve the live page
    web_host: str = "127.0.0.1"  # anything but loopback needs --token
    web_port: int = 8765
    token: str | None = None  # required on the page's every request when set
    terminal: bool = True  # read corrections and /pause /resume /stop /estop from this terminal
    device: str = "cpu"


class RobotServerProcess:
    """`python -m hardware.server` for one robot, in its own process (as it would run next to the arm)."""

    def __init__(self, robot: str, port: int, task: str | None = None, log: Path | None = None):
        cmd = [sys.executable, "-m", "hardware.server", "--robot", robot, "--port", str(port)]
        if task:
            cmd += ["--task", task]
        self.log_path = log
        self._log = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.address = f"tcp://127.0.0.1:{port}"

    def connect(self, timeout_s: float = 120.0) -> Any:
        """A RemoteRobot connected to this server, once it answers (it may be building its scene).

        The server is probed with short, single tries; the robot returned has RemoteRobot's own timeout
        and retries, because a reset on a loaded machine can take longer than a probe may wait.
        """
        from embodied import registry

        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text()[-2000:] if self.log_path else ""
                raise RuntimeError(f"the robot server exited with code {self.proc.returncode}:\n{tail}")
            try:
                registry.make("remote", kind="robot", address=self.address, timeout_s=2.0, retries=0).close()
                return registry.make("remote", kind="robot", address=self.address)
            except ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self._log is not subprocess.DEVNULL:
            self._log.close()


def deploy(cfg: DeployConfig, *, stdin=None) -> list[Any]:
    """Run `cfg.episodes` episodes; returns the runner's EpisodeResults. stdin: the terminal channel's stream."""
    from embodied import registry
    from embodied.checkpoint import config_to_dict, load_policy
    from embodied.live import LiveSession
    from embodied.protocols import Correctable
    from embodied.runner import EpisodeJob, Runner, RunnerConfig
    from embodied.terminal import TerminalChannel
    from embodied.train_state import pretrained_dir

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config_to_dict(cfg), indent=2))
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (kill, systemd, a supervisor) must unwind like Ctrl-C does, so that the `finally` below stops
        # the robot server process this command started instead of leaving it serving an arm with no policy.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    server = None
    if cfg.address is None:
        server = RobotServerProcess(cfg.robot, cfg.port, cfg.task, log=out / "robot_server.log")
        print(f"robot server for {cfg.robot!r}: {server.address} (log: {server.log_path})", flush=True)
    web = robot = writer = None
    try:
        robot = (server.connect() if server else
                 registry.make("remote", kind="robot", address=cfg.address))
        policy = load_policy(pretrained_dir(cfg.policy), expect_spec=robot.spec)
        if hasattr(policy, "to"):
            policy = policy.to(cfg.device).eval()
        session = LiveSession(on_estop=robot.estop, policy_listens=isinstance(policy, Correctable))
        if cfg.web:
            from embodied.web import serve

            web = serve(session, host=cfg.web_host, port=cfg.web_port, token=cfg.token)
            print(f"live page: {web.page_url}", flush=True)
        if cfg.terminal:
            TerminalChannel(session, stream=stdin).start()  # a daemon thread: it ends with the process
        if cfg.record:
            from embodied.data import DatasetWriter

            writer = DatasetWriter(out / "dataset", robot.spec, robot_type=robot.spec.name)
        runner = Runner(robot, policy, recorder=writer, channels=[session], monitor=session,
                        config=RunnerConfig(max_steps=cfg.max_steps))
        jobs = [EpisodeJob(cfg.instruction, cfg.seed0 + i) for i in range(cfg.episodes)]

        def report(job: int, result: Any) -> None:
            print(f"episode {job}: {'success' if result.success else 'no success'} in {result.steps} steps, "
                  f"{len(result.corrections)} corrections, {result.interventions} safety interventions", flush=True)

        return runner.run_episodes(jobs, on_result=report)
    finally:
        if writer is not None:
            writer.close()
        if web is not None:
            web.stop()
        if robot is not None:
            robot.close()
        if server is not None:
            server.stop()


@dataclasses.dataclass
class ServeConfig:
    """Serve a robot (or the sim twin) to remote policies: `embodied serve --robot ur5e --host 0.0.0.0`."""

    robot: str = "sim-twin"
    host: str = "127.0.0.1"
    port: int = 5555
    task: str | None = None


def serve_robot(cfg: ServeConfig) -> None:
    argv = ["--robot", cfg.robot, "--host", cfg.host, "--port", str(cfg.port)] + (["--task", cfg.task] if cfg.task
                                                                                     else [])
    from embodied import registry

    registry.get("sim-twin", kind="robot")  # loads hardware's registration: a missing package is a clear error
    import importlib

    importlib.import_module("hardware.server").main(argv)


@dataclasses.dataclass
class EstopConfig:
    """Emergency stop of a robot server (latches until --release): `embodied estop --address tcp://host:5555`."""

    address: str = "tcp://127.0.0.1:5555"
    release: bool = False


def estop(cfg: EstopConfig) -> None:
    from embodied import registry

    robot = registry.make("remote", kind="robot", address=cfg.address, timeout_s=1.0, retries=1)
    try:
        if cfg.release:
            robot.release()
            print(f"emergency stop released at {cfg.address}")
        else:
            robot.estop("embodied estop (command line)")
            print(f"EMERGENCY STOP latched at {cfg.address}; release with: embodied estop --release "
                  f"--address {cfg.address}")
    finally:
        robot.close()
