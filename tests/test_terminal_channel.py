"""The terminal channel: lines typed into a real pipe or pseudo-terminal reach the LiveSession (and the runner)."""

import io
import os
import pty
import termios
import threading
import time

import numpy as np
import pytest

from embodied import Action
from embodied.episode import EpisodeBuffer
from embodied.live import LiveSession
from embodied.runner import Runner, RunnerConfig
from embodied.sim import make_embodiment
from embodied.terminal import TerminalChannel


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def pipe_terminal():
    """(session, writer, replies, channel): write lines into `writer` as a person would type them."""
    read_fd, write_fd = os.pipe()
    estops = []
    session = LiveSession(on_estop=lambda: estops.append(1))
    session.estops = estops
    replies = io.StringIO()
    channel = TerminalChannel(session, stream=os.fdopen(read_fd, "r"), out=replies).start()
    writer = os.fdopen(write_fd, "w", buffering=1)
    yield session, writer, replies, channel
    if not writer.closed:
        writer.close()
    channel.join(5)


def test_lines_become_corrections_and_commands(pipe_terminal):
    session, writer, replies, channel = pipe_terminal
    writer.write("a bit more to the left\n\n   \n/pause\n")
    assert wait_until(lambda: session.paused)
    assert [(r.text, r.source) for r in session.history] == [("a bit more to the left", "terminal")]
    writer.write("/resume\n/stop\n")
    assert wait_until(lambda: session.stop_requested and not session.paused)
    writer.write("/estop\n")
    assert wait_until(lambda: session.estopped) and session.estops == [1]
    writer.close()  # end of input ends the reader
    assert channel.join(5)
    out = replies.getvalue()
    assert "/estop" in out.split("queued")[0], "help is printed at start"
    assert "queued correction #0: a bit more to the left" in out
    assert "pause: ok" in out and "resume: ok" in out and "EMERGENCY STOP latched" in out


def test_bad_lines_get_a_reason_and_change_nothing(pipe_terminal):
    session, writer, replies, channel = pipe_terminal
    writer.write("/jump\n" + "x" * 600 + "\n/help\n")
    writer.close()
    assert channel.join(5)
    out = replies.getvalue()
    assert "unknown command /jump; type /help" in out
    assert "not sent: a correction is at most 500 characters" in out
    assert out.count("/resume  carry on") == 2  # at start and for /help
    assert session.history == [] and not session.paused and not session.stop_requested


def test_a_failing_estop_hook_is_reported_and_still_latches():
    def broken():
        raise ConnectionError("controller unreachable")

    session, out = LiveSession(on_estop=broken), io.StringIO()
    TerminalChannel(session, stream=io.StringIO(), out=out).handle("/estop")
    assert session.estopped
    assert "emergency stop is latched, but the robot's e-stop hook failed" in out.getvalue()
    assert "controller unreachable" in out.getvalue()


def test_corrections_typed_in_a_pty_reach_the_running_policy_and_the_recording():
    """A real pseudo-terminal in canonical mode, as when a person types into the deploy process's stdin."""
    master, slave = pty.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[3] &= ~termios.ECHO  # no echo back to the master side: nobody reads it here
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    session = LiveSession()
    channel = TerminalChannel(session, stream=os.fdopen(slave, "r"), out=io.StringIO()).start()

    robot = make_embodiment("tabletop/reach-v0", cameras=(), max_episode_steps=1000)
    received = []

    class Listener:
        spec = robot.spec

        def reset(self, instruction=None):
            pass

        def act(self, obs):
            if len(received) == 0 and session.step == 3:
                os.write(master, b"move up a little\n")  # typed while the arm moves
            return Action(np.array([0, 0, 0, 0, 0, 0, 1], np.float32), robot.spec.action)

        def correct(self, correction):
            received.append(correction)

    try:
        stop_when_heard = threading.Thread(target=lambda: wait_until(lambda: received, 10) and session.stop())
        stop_when_heard.start()
        runner = Runner(robot, Listener(), recorder=EpisodeBuffer(), channels=[session], monitor=session,
                        config=RunnerConfig(max_steps=400, realtime=True))
        result = runner.run_episode(seed=1)
        stop_when_heard.join(5)
    finally:
        robot.close()
        os.close(master)  # hang-up: the reader sees EIO and ends
    assert [c.text for c in received] == ["move up a little"]
    assert result.steps < 400, "the stop issued after the correction ended the episode"
    frames = [f for f in result.recorded.frames if f.corrections]
    assert len(frames) == 1 and frames[0].corrections[0].payload["channel"] == "terminal"
    assert channel.join(5)
