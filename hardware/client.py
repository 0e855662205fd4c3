"""`RemoteRobot`: a robot served by `hardware.server`, seen from the policy's process as an `Embodiment`.

    robot = RemoteRobot("tcp://127.0.0.1:5555")
    Runner(robot, policy).run_episode()

Requests go out on a DEALER socket and wait at most `timeout_s` for their
reply; a request that times out is resent on a fresh socket (the lazy
pirate pattern) with the same sequence number, which the server answers
from its replay cache instead of executing twice. After `retries` failures
the call raises `LinkError`.

A heartbeat thread, on its own socket, tells the server every
`heartbeat_s` that this process is alive; when the process dies the
heartbeats stop and the server's watchdog holds the arm within its
`watchdog_s`. `estop()` goes out on the heartbeat socket too, so it is not
queued behind a step in flight.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from typing import Any

import numpy as np

from embodied.types import Action, EmbodimentSpec, Observation, StepResult
from hardware import wire


class LinkError(ConnectionError):
    """The robot server did not answer."""


class RemoteError(RuntimeError):
    """The robot server answered with an error."""


class _Link:
    """One DEALER socket with request/reply, timeout and reconnect."""

    def __init__(self, address: str, timeout_s: float, retries: int, name: str):
        import zmq

        self.zmq, self.address, self.timeout_s, self.retries = zmq, address, timeout_s, retries
        self.identity = f"{name}-{uuid.uuid4().hex[:8]}".encode()
        self.ctx = zmq.Context.instance()
        self.sock = None
        self.reconnects = 0
        self._open()

    def _open(self) -> None:
        zmq = self.zmq
        if self.sock is not None:
            self.sock.close(linger=0)
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.IDENTITY, self.identity)  # same identity after reconnect: the replay cache works
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, wire.MAX_MESSAGE_BYTES)
        self.sock.connect(self.address)

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        data = wire.pack(message)
        for attempt in range(self.retries + 1):
            self.sock.send(data)
            deadline = time.monotonic() + self.timeout_s
            while (left := deadline - time.monotonic()) > 0:
                if self.sock.poll(left * 1000):
                    reply = wire.unpack(self.sock.recv())
                    if reply.get("seq") in (message["seq"], -1):
                        return reply
                    continue  # a late answer to an earlier request: skip it
            self.reconnects += 1
            self._open()
        raise LinkError(f"no answer from the robot server at {self.address} to {message['type']!r} after "
                        f"{self.retries + 1} tries of {self.timeout_s:.1f} s; is `embodied serve` running there?")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(linger=0)
            self.sock = None


class RemoteRobot:
    """An `Embodiment` whose arm is served by a `RobotServer` at `address` (e.g. tcp://127.0.0.1:5555).

    heartbeat_s: how often this process says it is alive (default: a fifth of the server's watchdog).
    """

    def __init__(self, address: str = "tcp://127.0.0.1:5555", timeout_s: float = 5.0, retries: int = 3,
                 heartbeat_s: float | None = None):
        self.address = address
        self._seq = itertools.count(1)
        self._link = _Link(address, timeout_s, retries, "policy")
        hello = self._call({"type": "hello"})
        self._spec = EmbodimentSpec.from_dict(hello["spec"])
        self.watchdog_s = float(hello["watchdog_s"])
        self.max_action_age_s = float(hello["max_action_age_s"])
        low, high = (np.asarray(w, np.float64) for w in hello["workspace"])
        self.workspace = None if np.isnan(low).any() else (low, high)
        self._obs_id = 0
        self.last_info: dict[str, Any] = {}
        self.dropped = 0
        self._hb_lock = threading.Lock()
        self._hb_link = _Link(address, min(timeout_s, 1.0), 0, "heartbeat")
        self._hb_stop = threading.Event()
        self._hb_period = heartbeat_s if heartbeat_s is not None else self.watchdog_s / 5
        self._hb_thread = threading.Thread(target=self._heartbeat_loop, name="robot-heartbeat", daemon=True)
        self._hb_thread.start()

    # ---------------------------------------------------------------- Embodiment
    @property
    def spec(self) -> EmbodimentSpec:
        return self._spec

    def reset(self, instruction: str | None = None, seed: int | None = None) -> Observation:
        reply = self._call({"type": "reset", "instruction": instruction, "seed": seed})
        self.last_info = dict(reply.get("info", {}))
        return self._take_obs(reply)

    def step(self, action: Action) -> StepResult:
        """Send one tick's action; a stale or refused action comes back as info["dropped"] / info["estop"]."""
        value = np.asarray(action.value, np.float32)
        reply = self._call({"type": "step", "action": value, "obs_id": self._obs_id, "t": time.time()})
        info = dict(reply.get("info", {}))
        if reply["type"] == "dropped":
            self.dropped += 1
        self.last_info = info
        return StepResult(self._take_obs(reply), bool(reply["success"]), bool(reply["done"]), info)

    def hold(self) -> None:
        """Stop the arm now without latching (a pause); the next step moves it again."""
        with self._hb_lock:
            self._hb_link.request({"type": "hold", "seq": next(self._seq)})

    def estop(self, reason: str = "client") -> None:
        with self._hb_lock:
            self._hb_link.request({"type": "estop", "seq": next(self._seq), "reason": reason})

    def release(self) -> None:
        with self._hb_lock:
            self._hb_link.request({"type": "release", "seq": next(self._seq)})

    def status(self) -> dict[str, Any]:
        with self._hb_lock:
            return self._hb_link.request({"type": "status", "seq": next(self._seq)})

    def close(self) -> None:
        self._hb_stop.set()
        self._hb_thread.join(timeout=1)
        self._hb_link.close()
        self._link.close()

    # ---------------------------------------------------------------- internals
    def _call(self, message: dict[str, Any]) -> dict[str, Any]:
        message = {**message, "seq": next(self._seq)}
        reply = self._link.request(message)
        if reply["type"] == "error":
            raise RemoteError(f"robot server refused {message['type']!r}: {reply.get('error')}")
        return reply

    def _take_obs(self, reply: dict[str, Any]) -> Observation:
        self._obs_id = int(reply["obs_id"])
        return wire.decode_observation(reply["obs"])

    def _heartbeat_loop(self) -> None:
        while not self._hb_stop.wait(self._hb_period):
            try:
                with self._hb_lock:
                    self._hb_link.request({"type": "heartbeat", "seq": next(self._seq)})
            except LinkError:
                continue  # the server is away; the watchdog there has held the arm; keep trying
