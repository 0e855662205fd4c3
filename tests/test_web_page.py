"""The live-correction page in a real headless Chromium, over a real episode on the tabletop sim.

Chromium comes from Debian: `apt-get install -y chromium chromium-driver`.
The protocol tests talk to the same server over real sockets (urllib, websockets).
"""

import json
import shutil
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from embodied import Action, Correction
from embodied.data import DatasetWriter, open_dataset
from embodied.live import LiveSession
from embodied.runner import Runner, RunnerConfig
from embodied.sim import make_embodiment
from embodied.web import make_token, serve

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip("needs Debian's headless Chromium: apt-get install -y chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


class ListeningPolicy:
    """Hovers in place and remembers every correction it is given."""

    def __init__(self, spec):
        self.spec, self.corrections, self.calls = spec, [], 0

    def reset(self, instruction=None):
        pass

    def act(self, obs):
        self.calls += 1
        return Action(np.array([0, 0, 0, 0, 0, 0, 1], np.float32), self.spec.action)

    def correct(self, correction: Correction) -> None:
        self.corrections.append(correction)


def wait_until(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)
    return value


def test_page_shows_the_run_and_steers_it(browser, tmp_path):
    from selenium.webdriver.common.by import By

    robot = make_embodiment("tabletop/reach-v0", image_size=(64, 64), max_episode_steps=2000)
    policy, estops = ListeningPolicy(robot.spec), []
    session = LiveSession(on_estop=lambda: estops.append(time.monotonic()))
    writer = DatasetWriter(tmp_path / "live", robot.spec)
    runner = Runner(robot, policy, recorder=writer, channels=[session], monitor=session,
                    config=RunnerConfig(realtime=True, max_steps=1500))  # 10 Hz: 150 s unless stopped
    out = {}
    worker = threading.Thread(target=lambda: out.update(result=runner.run_episode(seed=0)), daemon=True)
    server = serve(session, port=0)
    try:
        worker.start()
        browser.get(server.page_url)
        page = browser.find_element
        text_of = lambda element_id: page(By.ID, element_id).text

        # a live camera image appears, with the instruction beside it
        size = "const i = document.getElementById('camera-front'); return i && i.complete ? i.naturalWidth : 0;"
        wait_until(lambda: browser.execute_script(size) == 64, what="the front camera image")
        assert browser.execute_script(size.replace("naturalWidth", "naturalHeight")) == 64
        wait_until(lambda: text_of("instruction") == session.snapshot()["instruction"] != "", what="the instruction")
        wait_until(lambda: int(text_of("step")) > 0, what="the step counter")

        # a typed correction reaches the policy, the recording and the page's history
        page(By.ID, "correction-text").send_keys("a bit more to the left")
        page(By.ID, "send").click()
        wait_until(lambda: policy.corrections, what="the policy's correct()")
        assert [c.text for c in policy.corrections] == ["a bit more to the left"]
        assert policy.corrections[0].payload["channel"] == "web"
        history = "return [...document.querySelectorAll('#history li')].map(li => [li.dataset.received, li.innerText])"
        ((_, item),) = wait_until(lambda: [h for h in browser.execute_script(history) if h[0] == "true"],
                                  what="the history entry")
        assert "a bit more to the left" in item and "received by the policy at step" in item
        assert page(By.ID, "correction-text").get_attribute("value") == ""

        # pause: the runner stops ticking; resume: it goes on
        page(By.ID, "pause").click()
        wait_until(lambda: text_of("state") == "paused", what="the paused state")
        time.sleep(0.3)  # the tick in flight when the click landed finishes
        held, calls = session.step, policy.calls
        time.sleep(0.6)  # six control periods
        assert (session.step, policy.calls) == (held, calls)
        page(By.ID, "resume").click()
        wait_until(lambda: session.step >= held + 3, what="ticks after resume")
        assert text_of("state") == "running"

        # stop: the episode ends, unsuccessful, and the page says so
        page(By.ID, "stop").click()
        worker.join(10)
        assert not worker.is_alive(), "stop did not end the episode"
        result = out["result"]
        assert not result.success and held < result.steps < 1500
        wait_until(lambda: text_of("state") == "ended", what="the ended state")
        assert "stopped" in text_of("results")

        # the e-stop button reaches the robot's hook
        page(By.ID, "estop").click()
        wait_until(lambda: estops, what="the e-stop hook")
        wait_until(lambda: text_of("state") == "estopped", what="the estopped state")
    finally:
        session.stop()
        worker.join(10)
        server.stop()
        writer.close()
        robot.close()

    episode = open_dataset(tmp_path / "live").episode(0)
    recorded = [(t, c) for t, cs in enumerate(episode.corrections) for c in cs]
    assert len(recorded) == 1
    t, correction = recorded[0]
    assert correction.text == "a bit more to the left" and correction.source == "human"
    assert session.history[0].step == t + 1  # history steps count ticks from 1, frames from 0


@pytest.fixture
def protected():
    session, token = LiveSession(), make_token()
    server = serve(session, host="0.0.0.0", port=0, token=token)
    yield session, server, token
    server.stop()


def get(url, headers=None):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_binding_beyond_loopback_needs_a_token():
    with pytest.raises(ValueError, match="without a token"):
        serve(LiveSession(), host="0.0.0.0", port=0)
    with pytest.raises(ValueError, match="at least 16 characters"):
        serve(LiveSession(), host="0.0.0.0", port=0, token="1234")


def test_with_a_token_every_request_must_carry_it(protected):
    _, server, token = protected
    base = f"http://127.0.0.1:{server.port}"
    for path in ("/", "/api/state", "/static/app.js", "/api/frames/front.jpg"):
        status, body = get(base + path)
        assert status == 401 and b"token" in body, path
    assert get(base + "/api/state?token=wrong-" + token)[0] == 401
    assert get(base + "/api/state?token=" + token)[0] == 200
    assert get(base + "/api/state", {"X-Embodied-Token": token})[0] == 200
    assert get(base + "/api/state", {"Authorization": f"Bearer {token}"})[0] == 200

    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=5)
    assert refused.value.response.status_code == 403
    with connect(f"ws://127.0.0.1:{server.port}/ws?token={token}", open_timeout=5) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "state"


def test_loopback_server_refuses_other_hosts_and_other_origins():
    """Without a token, a web site open in the same browser (or a DNS-rebound name) must not steer the robot."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    session = LiveSession()
    with serve(session, port=0) as server:
        assert get(server.url + "api/state", {"Host": "evil.example:80"})[0] == 403
        with pytest.raises(InvalidStatus):
            connect(server.url.replace("http", "ws") + "ws", origin="http://evil.example", open_timeout=5)
        request = urllib.request.Request(server.url + "api/command", data=b'{"type": "pause"}', method="POST",
                                         headers={"Origin": "http://evil.example", "Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 403 and not session.paused
        request.remove_header("Origin")
        assert json.loads(urllib.request.urlopen(request, timeout=5).read()) == {"type": "ack", "command": "pause"}
        assert session.paused


def test_malformed_websocket_messages_get_an_error_and_the_server_stays_up(protected):
    session, server, token = protected
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    url = f"ws://127.0.0.1:{server.port}/ws?token={token}"
    bad = ["not json", "[1, 2]", '{"type": "jump"}', '{"type": "correction"}', '{"type": "correction", "text": ""}',
           '{"type": "correction", "text": 7}', '{"type": "correction", "text": "x", "level": "shout"}', "null"]
    with connect(url, open_timeout=5) as ws:
        replies = []
        for message in [*bad, b"\x00\xff binary"]:
            ws.send(message)
            replies.append(next(r for r in (json.loads(ws.recv(timeout=5)) for _ in range(5)) if r["type"] != "state"))
        assert [r["type"] for r in replies] == ["error"] * (len(bad) + 1)
        assert "not JSON" in replies[0]["error"] and "unknown message type 'jump'" in replies[2]["error"]
        assert "needs its words" in replies[3]["error"] and "binary" in replies[-1]["error"]
        ws.send(json.dumps({"type": "correction", "text": "still listening?"}))
        ack = next(r for r in (json.loads(ws.recv(timeout=5)) for _ in range(5)) if r["type"] != "state")
        assert ack["type"] == "ack" and ack["correction"]["text"] == "still listening?"
    # larger than the server's message limit: it drops this socket only
    with pytest.raises(ConnectionClosed), connect(url, open_timeout=5) as ws:
        ws.send("x" * 200_000)
        while True:
            ws.recv(timeout=5)
    assert [r.text for r in session.history] == ["still listening?"]
    assert get(f"http://127.0.0.1:{server.port}/api/state?token={token}")[0] == 200


def test_a_failing_estop_hook_is_reported_and_the_latch_holds():
    def unreachable():
        raise ConnectionError("robot controller unreachable")

    session = LiveSession(on_estop=unreachable)
    with serve(session, port=0) as server:
        request = urllib.request.Request(server.url + "api/command", data=b'{"type": "estop"}', method="POST",
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(request, timeout=5)
        assert answer.value.code == 400
        assert "latched, but the robot's e-stop hook failed" in json.loads(answer.value.read())["error"]
        assert session.stop_requested and get(server.url + "api/state")[0] == 200
