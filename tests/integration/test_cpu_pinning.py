"""CPU pinning in a child process (pinning pytest itself would slow every later test)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest


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
