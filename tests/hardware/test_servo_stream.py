"""ServoStream: the set-points a vendor's servo call receives, driven tick by tick with explicit times."""

import numpy as np

from hardware.arms.servo_stream import MAX_STEP_PERIODS, ServoStream


def _stream(rate_hz: float = 100.0) -> tuple[ServoStream, list[np.ndarray]]:
    sent: list[np.ndarray] = []

    def fail(error: Exception) -> None:
        raise AssertionError(f"the stream reported {error!r}")

    return ServoStream(lambda kind, point: sent.append(point.copy()), rate_hz, fail), sent


def test_on_time_ticks_cover_the_segment_in_its_duration_then_hold_the_goal():
    stream, sent = _stream()
    stream.glide("joint", np.zeros(2), np.array([0.1, -0.2]), duration=0.1)
    t0 = stream._last_tick
    for i in range(1, 13):
        stream.tick(t0 + i * stream.period)
    steps = np.abs(np.diff(np.array(sent), axis=0, prepend=[np.zeros(2)]))
    assert np.allclose(sent[9], [0.1, -0.2]) and np.allclose(sent[-1], [0.1, -0.2])
    assert np.allclose(steps[:10], [0.01, 0.02])


def test_a_late_tick_advances_at_most_max_step_periods_and_the_segment_finishes_late_instead():
    stream, sent = _stream()
    stream.glide("joint", np.zeros(1), np.array([0.1]), duration=0.1)
    t0 = stream._last_tick
    stream.tick(t0 + stream.period)
    stream.tick(t0 + 0.08)  # the thread stalled for 7 periods
    assert np.isclose(sent[1][0] - sent[0][0], 0.01 * MAX_STEP_PERIODS)
    now = t0 + 0.08
    while not np.isclose(sent[-1][0], 0.1):
        now += stream.period
        stream.tick(now)
        assert len(sent) < 50
    assert np.abs(np.diff(np.array(sent)[:, 0])).max() <= 0.01 * MAX_STEP_PERIODS + 1e-12


def test_ee_segments_slerp_the_rotation_and_keep_it_unit():
    stream, sent = _stream()
    down = np.array([0.0, 1.0, 0.0, 0.0])
    turned = np.array([0.0, np.cos(np.pi / 8), np.sin(np.pi / 8), 0.0])
    stream.glide("ee", np.r_[0.3, 0.0, 0.2, down], np.r_[0.3, 0.1, 0.2, turned], duration=0.04)
    t0 = stream._last_tick
    for i in range(1, 5):
        stream.tick(t0 + i * stream.period)
    assert np.allclose([np.linalg.norm(p[3:]) for p in sent], 1.0)
    assert np.allclose(sent[1][:3], [0.3, 0.05, 0.2]) and np.allclose(sent[-1][3:], turned)
