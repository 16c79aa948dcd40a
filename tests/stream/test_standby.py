"""Standby: when a handler run on the reader lasts a whole period, the stand-in reads for it.

The stand-in's sleep is injected (:class:`Ticks`), so each test decides when it looks.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, List, Tuple

from dingsync.stream.standby import Rescue, Standby

from ._ticks import WAIT, Ticks


class Reads:
    """A ``read_for`` that records its calls and reads until told the handler returned."""

    def __init__(self, rescue: Rescue = Rescue(), fail: bool = False) -> None:
        self.calls: List[Any] = []
        self.reading = threading.Event()
        self.saw_unblocked = threading.Event()
        self._rescue = rescue
        self._fail = fail

    def __call__(self, conn: Any, still_blocked: Callable[[], bool]) -> Rescue:
        self.calls.append(conn)
        self.reading.set()
        if self._fail:
            raise ConnectionError("dropped while the stand-in read")
        while still_blocked():
            threading.Event().wait(0.001)
        self.saw_unblocked.set()
        return self._rescue


def make(reads: Reads, ticks: Ticks) -> Standby:
    return Standby(reads, after=0.01, sleep=ticks.sleep, name="t-standby")


def rescue_after_a_period(standby: Standby, reads: Reads, ticks: Ticks, conn: str) -> None:
    """Begin a run on ``conn`` and let a whole period pass: the stand-in starts reading."""
    standby.begin(conn)  # type: ignore[arg-type]
    ticks.wait_asleep()
    ticks.wake()
    assert reads.reading.wait(WAIT)


def in_thread(fn: Callable[[], Any]) -> Tuple[threading.Thread, List[Any]]:
    out: List[Any] = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    return thread, out


def test_a_run_that_ends_within_the_period_is_left_alone(ticks: Ticks) -> None:
    """The stand-in looks after a period; a run that already ended is not read for, and with
    no run begun meanwhile the stand-in stops looking (no wake-ups while the client idles)."""
    reads = Reads()
    standby = make(reads, ticks)
    standby.begin("conn-1")  # type: ignore[arg-type]
    ticks.wait_asleep()
    assert standby.end() is None
    ticks.wake()
    threading.Event().wait(0.1)
    assert reads.calls == [] and ticks.calls == 1
    standby.close()


def test_a_run_that_lasts_a_period_is_read_for_until_it_ends(ticks: Ticks) -> None:
    """Still running after a full period: the stand-in reads that run's connection, and
    end() waits for the stand-in to stop reading, then returns what it met."""
    rescue = Rescue(replacement="conn-2")  # type: ignore[arg-type]
    reads = Reads(rescue)
    standby = make(reads, ticks)
    rescue_after_a_period(standby, reads, ticks, "conn-1")
    assert reads.calls == ["conn-1"] and standby.rescuing
    ender, out = in_thread(standby.end)
    ender.join(WAIT)
    assert out == [rescue] and reads.saw_unblocked.is_set()
    assert not standby.rescuing
    standby.close()


def test_an_error_while_reading_goes_to_the_reader(ticks: Ticks) -> None:
    """If reading fails (the connection dropped), end() hands the error over to the reader."""
    reads = Reads(fail=True)
    standby = make(reads, ticks)
    rescue_after_a_period(standby, reads, ticks, "conn-1")
    rescue = standby.end()
    assert rescue is not None and isinstance(rescue.error, ConnectionError)
    standby.close()


def test_an_idle_stand_in_wakes_for_the_next_run(ticks: Ticks) -> None:
    """After going idle, the next run wakes the stand-in, which watches (and reads for) it."""
    reads = Reads()
    standby = make(reads, ticks)
    standby.begin("conn-1")  # type: ignore[arg-type]
    ticks.wait_asleep()
    standby.end()
    ticks.wake()  # no new run: idle
    threading.Event().wait(0.05)
    assert ticks.calls == 1
    rescue_after_a_period(standby, reads, ticks, "conn-2")
    assert reads.calls == ["conn-2"]
    standby.end()
    standby.close()


def test_a_run_is_read_for_once_and_what_was_met_is_kept(ticks: Ticks) -> None:
    """The stand-in's read ended (the connection failed) while the run goes on: the stand-in
    does not read for that run again, so what it met reaches end() unchanged."""
    reads = Reads(fail=True)
    standby = make(reads, ticks)
    rescue_after_a_period(standby, reads, ticks, "conn-1")
    for _ in range(3):  # three more periods of the same run
        ticks.tick()
    assert reads.calls == ["conn-1"]
    rescue = standby.end()
    assert rescue is not None and isinstance(rescue.error, ConnectionError)
    standby.close()
