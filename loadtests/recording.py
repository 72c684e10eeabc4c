"""Wires the exact-latency book into Locust's events, in one process or across workers.

Every request event is recorded (latency in µs for successes; calls, failures and screened
transactions for all). Workers ship their book with each stats report and start afresh;
the master (or the single local process) merges and, when Locust quits, writes the summary
JSON that ``run_slo`` reads.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from loadtests.latency import ITEM_SUFFIX, LatencyBook

log = logging.getLogger(__name__)


def install(environment: Environment, summary_out: str | None) -> LatencyBook:
    book = LatencyBook()
    events = environment.events

    def on_request(
        name: str,
        response_time: float,
        exception: BaseException | None = None,
        context: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        context = context or {}
        book.call(
            name,
            time.time(),
            failed=exception is not None,
            transactions=int(context.get("transactions", 0)),
        )
        if exception is None:
            book.record(name, response_time * 1000)
        for item_us in context.get("items_us", ()):
            book.record(name + ITEM_SUFFIX, item_us)

    def on_report_to_master(client_id: str, data: dict[str, Any], **_: Any) -> None:
        data["fs_latency"] = book.export()
        book.reset()

    def on_worker_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
        if "fs_latency" in data:
            book.merge(data["fs_latency"])

    def on_quitting(environment: Environment, **_: Any) -> None:
        if summary_out is None or isinstance(environment.runner, WorkerRunner):
            return
        summary = {"first": book.first, "last": book.last, "names": book.summary()}
        Path(summary_out).write_text(json.dumps(summary, indent=1))
        log.info("exact latencies written to %s", summary_out)

    events.request.add_listener(on_request)
    if isinstance(environment.runner, WorkerRunner):
        events.report_to_master.add_listener(on_report_to_master)
    if isinstance(environment.runner, MasterRunner):
        events.worker_report.add_listener(on_worker_report)
    events.quitting.add_listener(on_quitting)
    return book
