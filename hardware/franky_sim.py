"""franky-sim as a Franka on the network: its own virtual environment, its own process, an address on 127.x.y.z.

franky-sim (https://github.com/TimSchneider42/franky-sim) speaks the real
libfranka network protocol on top of MuJoCo, so the unchanged franky client
(and our `hardware.arms.franka` driver) can drive it exactly as it drives a
robot. It cannot live in the project's environment: it needs `pin` 3.x, pin
3.9 needs numpy >= 2.2, and our stack pins numpy < 2. So, as with a real
robot, it runs elsewhere and we talk to it over sockets:

    with FrankySim() as sim:                   # builds the venv on first use, starts the server
        robot = make_robot("franka", connection={"host": sim.hostname, "realtime": False})

or, for a person rehearsing in a terminal (add --render for a MuJoCo window):

    python -m hardware.franky_sim

libfranka's ports are fixed (1337 robot, 1338 gripper), so each server binds
the first free loopback address (127.0.0.1, 127.0.0.2, ...) and prints it;
`FrankySim.hostname` is that address. Several servers can run side by side.

The environment lives in ~/.cache/embodied/franky-sim (or $EMBODIED_FRANKY_SIM_VENV)
and is built once (about 20 s from a warm pip cache, a few minutes from PyPI).
A marker file written last records the requirements it was built with; a
half-built or outdated environment is rebuilt.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# What franky-sim 1.0.4 needs to run with franky-control 2.0.0 (checked on this project's machines):
# pin 4 lacks Frame.parentJoint and pin 2 is too old; pin 3.9 wants numpy >= 2.2; newer cmeel-urdfdom /
# cmeel-tinyxml2 break pin's shared libraries; mujoco is pinned to the version the tests ran against.
REQUIREMENTS = (
    "franky-sim==1.0.4",
    "pin>=3.9,<4",
    "numpy>=2.2",
    "cmeel-urdfdom<5",
    "cmeel-tinyxml2<11",
    "mujoco==4.0.0",
)
VENV_ENV_VAR = "EMBODIED_FRANKY_SIM_VENV"
MARKER = "embodied-franky-sim.txt"
ADDRESS_LINE = re.compile(r"Connect to the server using '([^']+)'")


class FrankySimError(RuntimeError):
    """franky-sim could not be installed or started; the message says why and what to do."""


def venv_dir() -> Path:
    """Where franky-sim's environment lives: $EMBODIED_FRANKY_SIM_VENV or ~/.cache/embodied/franky-sim."""
    return Path(os.environ.get(VENV_ENV_VAR) or Path.home() / ".cache" / "embodied" / "franky-sim")


def ensure_venv(path: Path | None = None, log=print) -> Path:
    """Build franky-sim's environment if it is missing or outdated; return its python executable.

    Safe to call from several processes at once: a file lock lets one build while the others wait.
    """
    path = Path(path or venv_dir())
    python = path / "bin" / "python"
    wanted = "\n".join(REQUIREMENTS) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = path / MARKER
        if marker.is_file() and marker.read_text() == wanted and python.exists():
            return python
        if path.exists():
            shutil.rmtree(path)  # half-built or built for other requirements
        log(f"franky-sim: building its environment in {path} (once; {VENV_ENV_VAR} moves it) ...")
        t0 = time.monotonic()
        _run([_base_python(), "-m", "venv", str(path)], "create the virtual environment")
        _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *REQUIREMENTS],
             "install franky-sim and its pinned dependencies")
        _run([str(python), "-c", "import franky_sim.mujoco_simulator"], "import franky-sim in its environment")
        marker.write_text(wanted)
        log(f"franky-sim: environment ready in {time.monotonic() - t0:.0f} s")
    return python


def _base_python() -> str:
    # The interpreter under the project's venv (python >= 3.10), so nothing of the project's packages leaks in.
    return getattr(sys, "_base_executable", None) or sys.executable


def _clean_env() -> dict[str, str]:
    # The project's PYTHONPATH would put numpy<2 packages in front of franky-sim's numpy 2.
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_clean_env(), check=False)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise FrankySimError(f"could not {what} ({' '.join(cmd[:4])} ...), exit {proc.returncode}:\n"
                             + "\n".join(tail) + "\nfranky-sim's environment needs PyPI access the first time.")


class FrankySim:
    """One franky-sim server process (MuJoCo backend) on a free loopback address.

    hostname: the address to give franky / `make_robot(..., connection={"host": ...})`, once started.
    render: open a MuJoCo viewer window (needs a display).
    """

    def __init__(self, venv: Path | None = None, hostname: str | None = None, render: bool = False,
                 start_timeout_s: float = 60.0):
        self.venv = venv
        self.requested_hostname = hostname
        self.render = render
        self.start_timeout_s = start_timeout_s
        self.hostname: str | None = None
        self.process: subprocess.Popen | None = None
        self._log_dir: tempfile.TemporaryDirectory | None = None

    def command(self, python: Path) -> list[str]:
        # The MuJoCo backend by name: franky-sim's "auto" raises when the optional genesis backend is absent.
        cmd = [str(python), "-u", "-m", "franky_sim.run_server", "--simulator", "mujoco"]
        if self.render:
            cmd.append("--render")
        if self.requested_hostname:
            cmd += ["--hostname", self.requested_hostname]
        return cmd

    def start(self) -> FrankySim:
        """Build the environment if needed, start the server and wait until it prints its address."""
        python = ensure_venv(self.venv)
        self._log_dir = tempfile.TemporaryDirectory(prefix="franky-sim-")
        log_path = Path(self._log_dir.name) / "server.log"
        env = _clean_env()
        with open(log_path, "w") as log:
            # A file, not a pipe: nobody drains a pipe once we have the address, and a full pipe would stall the server.
            self.process = subprocess.Popen(self.command(python), stdout=log, stderr=subprocess.STDOUT, env=env,
                                            stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            match = ADDRESS_LINE.search(log_path.read_text())
            if match:
                self.hostname = match.group(1)
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        text = log_path.read_text()
        self.stop()
        raise FrankySimError(f"franky-sim did not report its address within {self.start_timeout_s:.0f} s; "
                             f"its output:\n{text[-3000:]}")

    def log(self) -> str:
        """What the server printed so far (for failure messages)."""
        if self._log_dir is None:
            return ""
        return (Path(self._log_dir.name) / "server.log").read_text()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the server (Ctrl+C first, so it closes its sockets; then kill)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._log_dir is not None:
            self._log_dir.cleanup()
            self._log_dir = None

    def __enter__(self) -> FrankySim:  # noqa: PYI034 - typing.Self needs python 3.11
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """`python -m hardware.franky_sim`: run franky-sim in the foreground for a rehearsal (Ctrl+C stops it)."""
    parser = argparse.ArgumentParser(prog="python -m hardware.franky_sim", description=main.__doc__)
    parser.add_argument("--render", action="store_true", help="open a MuJoCo window (needs a display)")
    parser.add_argument("--hostname", help="bind this loopback address instead of the first free one")
    parser.add_argument("--venv", type=Path, help=f"franky-sim's environment (default {venv_dir()})")
    args = parser.parse_args(argv)
    python = ensure_venv(args.venv)
    sim = FrankySim(args.venv, args.hostname, args.render)
    print("franky-sim: starting; connect with make_robot('franka', connection={'host': <address below>, "
          "'realtime': False})", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run(sim.command(python), env=_clean_env(), check=False)


if __name__ == "__main__":
    main()
