"""The terminal channel: type corrections (and commands) while a policy runs.

A `TerminalChannel` reads lines from a text stream (stdin by default) in a
daemon thread and puts them into a `LiveSession`, which the runner polls:

    session = LiveSession(on_estop=robot.emergency_stop)
    TerminalChannel(session).start()
    Runner(robot, policy, channels=[session], monitor=session).run_episode()

A line is a correction ("a bit more to the left"), or a command when it
starts with '/': /pause, /resume, /stop, /estop, /help. Replies (what was
queued, errors, help) go to `out`. The thread ends at end of input (Ctrl-D,
or the writer closing a pipe).
"""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from embodied.live import EStopHookError, LiveSession

HELP = """\
Type a correction and press Enter, e.g. "a bit more to the left". Commands:
  /pause   hold the arm where it is      /resume  carry on
  /stop    end this episode              /estop   EMERGENCY STOP (latched)
  /help    this text"""

COMMANDS = {"/pause": "pause", "/resume": "resume", "/stop": "stop", "/estop": "estop"}


class TerminalChannel:
    """Feeds lines typed in a terminal into `session` (see the module docstring).

    stream: where lines come from (sys.stdin when None); out: where replies
    go (sys.stderr when None, so that they do not mix with a program's
    output on stdout).
    """

    def __init__(self, session: LiveSession, stream: TextIO | None = None, out: TextIO | None = None):
        self.session = session
        self.stream = stream if stream is not None else sys.stdin
        self.out = out if out is not None else sys.stderr
        self._thread: threading.Thread | None = None

    def start(self) -> TerminalChannel:
        if self._thread is not None:
            raise RuntimeError("this terminal channel is already reading; make one channel per stream")
        self._say(HELP)
        self._thread = threading.Thread(target=self._read, name="embodied-terminal", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the end of input; True when the reader has finished."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def handle(self, line: str) -> None:
        """Obey one typed line (what the reader thread does with each)."""
        line = line.strip()
        if not line:
            return
        if line.startswith("/"):
            self._command(line.split()[0].lower())
            return
        try:
            record = self.session.put_correction(line, source="terminal")
        except ValueError as e:
            self._say(f"not sent: {e}")
            return
        self._say(f"queued correction #{record.id}: {record.text}")

    def _command(self, word: str) -> None:
        if word == "/help":
            self._say(HELP)
            return
        if word not in COMMANDS:
            self._say(f"unknown command {word}; type /help for the list")
            return
        try:
            self.session.command(COMMANDS[word])
        except EStopHookError as e:
            self._say(str(e))
            return
        self._say("EMERGENCY STOP latched" if word == "/estop" else f"{COMMANDS[word]}: ok")

    def _read(self) -> None:
        try:
            for line in iter(self.stream.readline, ""):
                self.handle(line)
        except (OSError, ValueError):  # the terminal went away (a pty reads EIO on hang-up) or was closed
            return

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)
