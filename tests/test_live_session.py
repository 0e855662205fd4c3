"""LiveSession: the hub between a running episode and the people watching it.

The runner here is the real one on the real tabletop env (state only, for
speed); frames and notifications are checked with plain observations.
"""

import asyncio
import threading
import time

import cv2
import numpy as np
import pytest

from embodied import Action, Correction, Observation
from embodied.episode import EpisodeBuffer
from embodied.live import MAX_CORRECTION_CHARS, EStopHookError, LiveSession
from embodied.runner import Runner, RunnerConfig, TickReport
from embodied.sim import make_embodiment


@pytest.fixture(scope="module")
def robot():
    emb = make_embodiment("tabletop/reach-v0", cameras=(), max_episode_steps=1000)
    yield emb
    emb.close()


class ListeningPolicy:
    """Hovers in place and remembers every correction; `during_act(n)` lets a test act at the n-th tick."""

    def __init__(self, spec, during_act=None):
        self.spec, self.during_act = spec, during_act
        self.corrections: list[Correction] = []
        self.calls = 0

    def reset(self, instruction=None):
        self.calls = 0

    def act(self, obs: Observation) -> Action:
        self.calls += 1
        if self.during_act:
            self.during_act(self.calls)
        return Action(np.array([0, 0, 0, 0, 0, 0, 1], np.float32), self.spec.action)

    def correct(self, correction: Correction) -> None:
        self.corrections.append(correction)


def run(robot, session, policy, max_steps=5, recorder=None):
    runner = Runner(robot, policy, recorder=recorder, channels=[session], monitor=session,
                    config=RunnerConfig(max_steps=max_steps))
    return runner.run_episode(seed=0)


def test_typed_corrections_reach_the_policy_and_the_recording(robot):
    session = LiveSession()
    session.put_correction("a bit more to the left", source="web")
    session.put_correction("  slower   please ", source="terminal")
    policy = ListeningPolicy(robot.spec, during_act=lambda n: n == 3 and session.put_correction("now lower"))
    result = run(robot, session, policy, recorder=EpisodeBuffer())

    assert [c.text for c in policy.corrections] == ["a bit more to the left", "slower please", "now lower"]
    assert all(c.source == "human" for c in policy.corrections)
    assert [c.payload["channel"] for c in policy.corrections] == ["web", "terminal", "web"]
    recorded = {i: [c.text for c in f.corrections] for i, f in enumerate(result.recorded.frames) if f.corrections}
    # queued before the start: taken at the first tick; typed during tick 3's act(): taken at tick 4
    assert recorded == {0: ["a bit more to the left", "slower please"], 3: ["now lower"]}
    history = session.history
    assert [(r.status, r.step, r.received) for r in history] == [("delivered", 1, True), ("delivered", 1, True),
                                                                 ("delivered", 4, True)]
    snap = session.snapshot()
    assert snap["state"] == "ended" and snap["step"] == 5 and snap["instruction"] == result.instruction
    assert snap["results"][0]["corrections"] == 3 and snap["results"][0]["stopped"] is False


def test_history_says_when_the_policy_does_not_listen(robot):
    session = LiveSession(policy_listens=False)
    session.put_correction("left")
    run(robot, session, ListeningPolicy(robot.spec), max_steps=2)
    (record,) = session.history
    assert record.status == "delivered" and record.received is False


def test_a_correction_typed_after_the_last_tick_is_dropped_not_carried_over(robot):
    session = LiveSession()
    policy = ListeningPolicy(robot.spec, during_act=lambda n: n == 2 and session.put_correction("too late"))
    result = run(robot, session, policy, max_steps=2)
    assert result.corrections == [] and policy.corrections == []
    assert session.history[0].status == "dropped"
    run(robot, session, policy, max_steps=2)
    assert policy.corrections == [], "a dropped correction must not reach the next episode"


def test_stop_ends_this_episode_only(robot):
    session = LiveSession()
    policy = ListeningPolicy(robot.spec, during_act=lambda n: n == 3 and session.stop())
    first = run(robot, session, policy, max_steps=50)
    assert first.steps == 3 and not first.success
    assert session.stop_requested and session.snapshot()["results"][-1]["stopped"] is True
    second = run(robot, session, ListeningPolicy(robot.spec), max_steps=4)
    assert second.steps == 4, "the stop flag clears when the next episode starts"


def test_pause_holds_the_runner_until_resume(robot):
    session = LiveSession()
    session.pause()
    done = {}
    worker = threading.Thread(target=lambda: done.update(result=run(robot, session, ListeningPolicy(robot.spec), 8)))
    worker.start()
    time.sleep(0.4)
    assert session.snapshot()["state"] == "paused" and session.step == 0
    session.resume()
    worker.join(10)
    assert done["result"].steps == 8


def test_emergency_stop_calls_the_hook_at_once_and_latches_until_cleared(robot):
    calls = []
    session = LiveSession(on_estop=lambda: calls.append(time.monotonic()))
    session.pause()  # even a paused run must end on an e-stop
    policy = ListeningPolicy(robot.spec)
    session.emergency_stop()
    assert len(calls) == 1 and session.snapshot()["state"] == "estopped"
    assert run(robot, session, policy, max_steps=5).steps == 0
    assert run(robot, session, policy, max_steps=5).steps == 0, "the latch holds across episodes"
    session.clear_estop()
    session.resume()
    assert run(robot, session, policy, max_steps=5).steps == 5


def test_a_failing_estop_hook_still_latches_and_is_reported():
    def broken():
        raise ConnectionError("robot controller unreachable")

    session = LiveSession(on_estop=broken)
    with pytest.raises(EStopHookError, match="latched, but .* unreachable"):
        session.command("estop")
    assert session.stop_requested
    assert "unreachable" in session.snapshot()["estop_error"]


@pytest.mark.parametrize(("text", "level", "why"), [
    ("", "motion", "needs some words"),
    ("   \n", "motion", "needs some words"),
    ("x" * (MAX_CORRECTION_CHARS + 1), "motion", "at most"),
    ("left", "shout", "level"),
])
def test_bad_corrections_are_refused_with_the_reason(text, level, why):
    session = LiveSession()
    with pytest.raises(ValueError, match=why):
        session.put_correction(text, level=level)
    assert session.history == [] and session.poll() == []


def test_a_correction_must_be_text():
    with pytest.raises(TypeError, match="a correction is text, got int"):
        LiveSession().put_correction(42)


def test_unknown_command_is_refused():
    with pytest.raises(ValueError, match="unknown command 'jump'"):
        LiveSession().command("jump")


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def tick_with(session, image, step):
    obs = Observation(images={"front": image})
    session.on_tick(TickReport(obs, np.zeros(7, np.float32), "touch the cube", "move arm left", "touch the cube",
                               [], [], step, step * 0.1, False))


def test_frames_are_encoded_lazily_and_at_most_max_fps(monkeypatch):
    from embodied import live

    encodes = []
    real = live.encode_jpeg
    monkeypatch.setattr(live, "encode_jpeg", lambda image, q: encodes.append(1) or real(image, q))
    clock = Clock()
    session = LiveSession(max_fps=4.0, clock=clock)
    red = np.zeros((48, 64, 3), np.uint8)
    red[..., 0] = 255
    session.on_start("touch the cube", Observation(images={"front": red}))
    for step in range(1, 30):  # the runner's ticks cost no encoding
        tick_with(session, red, step)
    assert encodes == []

    seq, data = session.jpeg("front")
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert seq == 30 and decoded.shape == (48, 64, 3)
    assert abs(int(decoded[..., 0].mean()) - 255) < 8 and decoded[..., 2].mean() < 8, "RGB, not BGR"

    tick_with(session, np.zeros_like(red), 30)
    clock.now += 0.1  # faster than 4 fps: the previous encoding again
    assert session.jpeg("front")[0] == 30 and len(encodes) == 1
    clock.now += 0.2
    assert session.jpeg("front")[0] == 31 and len(encodes) == 2
    clock.now += 1.0  # nothing new: nothing to encode
    assert session.jpeg("front")[0] == 31 and len(encodes) == 2
    with pytest.raises(KeyError, match="wrist"):
        session.jpeg("wrist")


def test_viewers_wake_on_change_without_polling():
    session = LiveSession()
    v0 = session.version
    t0 = time.monotonic()
    assert session.wait_for_change(v0, timeout=0.2) == v0 and time.monotonic() - t0 >= 0.19
    threading.Timer(0.05, session.pause).start()
    assert session.wait_for_change(v0, timeout=5) > v0

    async def watch():
        v = session.version
        threading.Timer(0.05, lambda: session.put_correction("left")).start()
        t = time.monotonic()
        woke = await session.changed(v, timeout=5)
        return woke > v, time.monotonic() - t

    changed, waited = asyncio.run(watch())
    assert changed and waited < 1.0
