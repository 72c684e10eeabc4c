"""CPU pinning of the gateway process (`server.pin_cpu`)."""

from __future__ import annotations

import os

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
