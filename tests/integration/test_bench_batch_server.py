"""bench_batch_cpu --server: a real `fraudscreen serve` timed for a second, bad seconds refused."""

from __future__ import annotations

import re

import pytest

from loadtests import bench_batch_cpu


def test_a_short_server_run_answers_every_batch_and_prints_its_cpu_per_transaction(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert bench_batch_cpu.main(["--server", "1", "--size", "50"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    found = re.fullmatch(
        r"fraudscreen serve, 1 caller x 50 tx for [\d.]+ s: ([\d,]+) tx, ([\d,]+) tx/s, "
        r"server CPU ([\d.]+) µs/tx",
        line,
    )
    assert found is not None, line
    answered = int(found[1].replace(",", ""))
    assert answered > 0
    assert answered % 50 == 0  # whole batches, every transaction answered
    assert 0 < float(found[3]) < 100_000


def test_seconds_that_are_not_positive_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        bench_batch_cpu.main(["--server", "0"])
    assert exit_.value.code == 2
    assert "--server: the seconds to time must be > 0" in capsys.readouterr().err
