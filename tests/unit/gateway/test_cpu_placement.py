"""CPU pinning of the gateway process (`server.pin_cpu`)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from fraudscreen.gateway.cpu_placement import apply_pinning, choose_cpu

TWO = frozenset({0, 1})


def test_auto_takes_the_lowest_allowed_cpu_when_there_are_two_or_more() -> None:
    assert choose_cpu("auto", TWO) == 0
    assert choose_cpu("auto", frozenset({3, 5, 7})) == 3
    assert choose_cpu("auto", frozenset({2})) is None  # one CPU: nothing to choose


def test_off_and_explicit_cpus() -> None:
    assert choose_cpu("off", TWO) is None
    assert choose_cpu("1", TWO) == 1


def test_a_cpu_the_process_may_not_use_is_refused_with_the_setting_named() -> None:
    with pytest.raises(ValueError, match=r"server\.pin_cpu: CPU 5 is not available.*\[0, 1\]"):
        choose_cpu("5", TWO)


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs a Linux machine with two CPUs",
)
def test_pin_process_moves_running_threads_and_new_ones_inherit() -> None:
    # In a child process: pinning pytest itself would slow every later test.
    script = textwrap.dedent(
        """
        import os, threading
        from fraudscreen.gateway.cpu_placement import pin_process
        target = max(os.sched_getaffinity(0))
        hold = threading.Event()
        early = threading.Thread(target=hold.wait); early.start()
        moved = pin_process(target)
        late_cpus = []
        late = threading.Thread(target=lambda: late_cpus.append(os.sched_getaffinity(0)))
        late.start(); late.join()
        tasks = os.listdir("/proc/self/task")
        assert moved >= 2, moved
        assert all(os.sched_getaffinity(int(t)) == {target} for t in tasks), tasks
        assert late_cpus == [{target}], late_cpus
        hold.set(); early.join()
        print("ok", target)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok ")


def test_an_os_refusal_leaves_the_gateway_running_unpinned(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(pid: int, cpus: object) -> None:
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(os, "sched_setaffinity", refuse)
    assert apply_pinning("auto") is None
    assert "cpu.pinning_failed" in capsys.readouterr().out
    assert apply_pinning("off") is None
