"""The robot server and client on 127.0.0.1 with the real-time sim twin: faults never reach the arm.

Every test speaks real ZeroMQ over loopback to a real `RobotServer` serving
the MuJoCo twin in real time; fault drills kill or freeze a real policy process.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import msgpack
import numpy as np
import pytest
import zmq

from embodied.types import Action
from hardware import wire
from hardware.arms.sim_twin import SimTwinArm
from hardware.client import LinkError, RemoteRobot
from hardware.config import load_robot_config
from hardware.drills import freeze_drill, kill_drill
from hardware.robot import ArmTarget
from hardware.robots import make_robot
from hardware.server import RobotServer, ServerConfig


def small_twin_config():
    """The shipped sim-twin limits with 64x64 cameras (faster to render and send)."""
    cfg = load_robot_config("sim-twin")
    cams = tuple(dataclasses.replace(c, width=64, height=64) for c in cfg.cameras)
    return dataclasses.replace(cfg, cameras=cams)


class RecordingTwin(SimTwinArm):
    """The real twin, remembering every target that reached it (what the arm was told to do)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.targets: list[ArmTarget] = []

    def command(self, target: ArmTarget) -> None:
        self.targets.append(target)
        super().command(target)


@pytest.fixture(scope="module")
def server():
    cfg = small_twin_config()
    robot = make_robot(cfg)
    robot.arm.__class__ = RecordingTwin  # same object, recording subclass: nothing else changes
    robot.arm.targets = []
    srv = RobotServer(robot, ServerConfig(port=0, watchdog_s=cfg.watchdog_s, max_action_age_s=cfg.max_action_age_s))
    srv.start()
    yield srv
    srv.stop()
    robot.close()


@pytest.fixture()
def client(server):
    c = RemoteRobot(server.address)
    yield c
    c.close()


def act(robot, *values) -> Action:
    return Action(np.array(values, np.float32), robot.spec.action)


def test_client_drives_the_twin_and_gets_images(client):
    obs = client.reset(seed=3)
    assert obs.images["front"].shape == (64, 64, 3) and obs.depth["wrist"].dtype == np.float32
    assert obs.instruction and client.spec.name == "tabletop-panda"
    x0 = obs.state["ee_pos"][0]
    for _ in range(5):
        result = client.step(act(client, 0.02, 0, 0, 0, 0, 0, 1))
    assert result.obs.state["ee_pos"][0] == pytest.approx(x0 + 0.10, abs=0.02)
    assert "subtask" in result.info and result.info["server_step_ms"] > 0


def test_nan_huge_and_out_of_workspace_actions_never_reach_the_arm(server, client):
    client.reset(seed=1)
    arm = server.embodiment.arm
    arm.targets.clear()
    low, high = (np.asarray(w) for w in server.embodiment.workspace)
    r = client.step(act(client, np.nan, 0, 0, 0, 0, 0, 1))
    assert r.info["server_safety"][0]["kind"] == "non_finite"
    r = client.step(act(client, 50.0, -1e9, 0, 0, 0, 0, 1))  # huge: scaled to the per-tick bound
    assert any(i["kind"] == "translation_limit" for i in r.info["server_safety"])
    for _ in range(40):  # straight down through the table: clipped at the workspace floor
        r = client.step(act(client, 0, 0, -0.03, 0, 0, 0, 1))
    for t in arm.targets:
        assert np.all(np.isfinite(t.ee_pos)) and np.all(np.isfinite(t.ee_quat))
        assert np.all(t.ee_pos >= low - 1e-6) and np.all(t.ee_pos <= high + 1e-6)
    steps = np.diff([t.ee_pos for t in arm.targets], axis=0)
    assert np.abs(steps).max() <= 0.03 + 1e-5  # never more than one tick's bound
    assert r.obs.state["ee_pos"][2] >= low[2] - 0.01


def test_malformed_messages_get_errors_and_the_server_stays_up(server, client):
    client.reset(seed=0)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.address)
    bad_array = msgpack.ExtType(wire.ARRAY_EXT, bytes([2, 1]) + (7).to_bytes(4, "little") + b"\0" * 5)
    garbage = [
        b"\xff\x00garbage",                                         # not msgpack
        msgpack.packb([1, 2, 3]),                                   # not a map
        msgpack.packb({"v": 99, "type": "hello", "seq": 1}),        # wrong version
        msgpack.packb({"v": 1, "type": "launch", "seq": 1}),        # unknown type
        msgpack.packb({"v": 1, "type": "step", "seq": 1, "action": "left", "obs_id": 1}),   # ill-typed
        msgpack.packb({"v": 1, "type": "step", "seq": 1, "action": bad_array, "obs_id": 1}),  # size mismatch
        msgpack.packb({"v": 1, "type": "step", "seq": 1, "action": msgpack.ExtType(wire.ARRAY_EXT, b"\x09\x01"),
                       "obs_id": 1}),                               # unknown dtype
        msgpack.packb({"v": 1, "type": "reset", "seq": 1, "seed": "zero"}),
    ]
    before = server.stats.malformed
    for payload in garbage:
        sock.send(payload)
        assert sock.poll(3000), f"no answer to {payload[:20]!r}"
        reply = wire.unpack(sock.recv())
        assert reply["type"] == "error" and reply["error"]
    sock.send_multipart([b"one", b"two"])  # two frames from a DEALER: three at the ROUTER
    assert sock.poll(3000) and wire.unpack(sock.recv())["type"] == "error"
    assert server.stats.malformed - before == len(garbage) + 1
    # a wrong-length action is refused by the control thread, and the link still works afterwards
    with pytest.raises(Exception, match="shape"):
        client._call({"type": "step", "action": np.zeros(3, np.float32), "obs_id": client._obs_id})
    assert client.step(act(client, 0, 0, 0, 0, 0, 0, 1)).obs.state["ee_pos"].shape == (3,)
    sock.close()


def test_stale_actions_are_dropped_and_answered_with_a_fresh_observation(server, client):
    client.reset(seed=0)
    client.step(act(client, 0, 0, 0, 0, 0, 0, 1))
    old_id = client._obs_id
    client.step(act(client, 0, 0, 0, 0, 0, 0, 1))
    client._obs_id = old_id  # answer an observation that is no longer the newest
    r = client.step(act(client, 0.03, 0, 0, 0, 0, 0, 1))
    assert "newest" in r.info["dropped"] and client.dropped == 1
    time.sleep(server.config.max_action_age_s + 0.05)  # the policy thought too long
    r = client.step(act(client, 0.03, 0, 0, 0, 0, 0, 1))
    assert "ms old" in r.info["dropped"]
    assert "dropped" not in client.step(act(client, 0, 0, 0, 0, 0, 0, 1)).info  # fresh id: accepted


def test_emergency_stop_latches_until_released(server, client):
    client.reset(seed=0)
    client.estop("test")
    arm = server.embodiment.arm
    n = len(arm.targets)
    r = client.step(act(client, 0.03, 0, 0, 0, 0, 0, 1))
    assert r.done and r.info["estop"] and len(arm.targets) == n  # refused: nothing reached the arm
    assert client.status()["estop"] is True
    client.release()
    client.step(act(client, 0.03, 0, 0, 0, 0, 0, 1))
    assert len(arm.targets) == n + 1


def test_killing_the_policy_process_stops_the_arm_within_the_watchdog(server):
    result = kill_drill(server)
    assert result.watchdog_trips == 1
    assert result.speed_before > 0.1  # it really was moving
    # goal 100 ms (watchdog 50 ms + braking); the bound leaves room for a loaded CI machine
    assert result.stop_ms < 250, result


def test_a_frozen_link_stops_the_arm_and_the_client_carries_on_after(server):
    result, resumed = freeze_drill(server)
    assert result.watchdog_trips == 1 and result.stop_ms < 250, result
    assert resumed >= 3  # the same process, thawed, steps again


def test_an_arm_that_stops_before_the_watchdog_still_sees_it_trip():
    # With a 1 s watchdog the arm comes to rest at the last target it was sent
    # (about 0.3 s) long before the deadline; the drill must still wait for, and count, the trip.
    cfg = small_twin_config()
    srv = RobotServer(make_robot(cfg), ServerConfig(port=0, watchdog_s=1.0)).start()
    try:
        result, resumed = freeze_drill(srv)
    finally:
        srv.stop()
        srv.embodiment.close()
    assert result.stop_ms < 1000 and result.watchdog_trips == 1, result
    assert resumed >= 3


def test_client_reconnects_to_a_restarted_server():
    cfg = small_twin_config()
    srv = RobotServer(make_robot(cfg), ServerConfig(port=0)).start()
    port = int(srv.address.rsplit(":", 1)[1])
    client = RemoteRobot(srv.address, timeout_s=1.0, retries=5)
    client.reset(seed=0)
    srv.stop()
    srv.embodiment.close()
    restarted: list[RobotServer] = []
    threading.Timer(1.5, lambda: restarted.append(RobotServer(make_robot(cfg), ServerConfig(port=port)).start())).start()
    obs = client.reset(seed=1)  # times out, reconnects, and is answered by the new server
    assert obs.images["front"].shape == (64, 64, 3) and client._link.reconnects >= 1
    client.close()
    restarted[0].stop()
    restarted[0].embodiment.close()


def test_no_server_is_a_clear_error():
    with pytest.raises(LinkError, match="embodied serve"):
        RemoteRobot("tcp://127.0.0.1:9", timeout_s=0.2, retries=1)
