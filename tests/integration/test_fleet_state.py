"""What gateways report reaches the fleet view: a real gateway's sync agent reports its
state to a real hub (on PostgreSQL), `hub status` shows it, a gateway that stops syncing
is listed as stale, the hub's Prometheus metrics count sites by version and stale sites,
and a bad report is refused naming the field."""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from fraudscreen.gateway.state_report import software_version
from fraudscreen.hub.tokens import add_token
from fraudscreen.v1 import sync_pb2 as pb
from fraudscreen.v1 import sync_pb2_grpc as pb_grpc
from loadtests.postgres_server import PostgresServer
from tests.support.hub_support import bearer, make_batch, refused, run_cli
from tests.support.service_support import free_port, gateway_config, running_gateway, running_hub


def test_a_gateways_state_reaches_status_and_metrics_and_silence_is_stale(
    tmp_path: Path,
    small_bundle_path: Path,
    postgres: PostgresServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = postgres.database()
    hub_dir = tmp_path / "hub"
    hub_dir.mkdir()
    (tmp_path / "hub.token").write_text(add_token(hub_dir / "sites.tokens", "shop-7"))
    port = free_port()
    config = gateway_config(
        tmp_path / "gw",
        small_bundle_path,
        {
            "FRAUDSCREEN_SITE_ID": "shop-7",
            "FRAUDSCREEN_SYNC_HUB": f"127.0.0.1:{port}",
            "FRAUDSCREEN_SYNC_TOKEN_FILE": str(tmp_path / "hub.token"),
            "FRAUDSCREEN_SYNC_INTERVAL_SECONDS": "3600",  # the test drives the agent by hand
        },
    )
    with (
        running_hub(hub_dir, port=port, db=url, metrics_listen="127.0.0.1:0") as hub,
        running_gateway(config) as gw,
    ):
        gw.sync_agent.tick()  # nothing to push: the state goes alone (ReportState)
        version = gw.slot.current.version if gw.slot.current else ""
        [site] = hub.store.site_states()
        assert site.site_id == "shop-7"
        assert site.state.model_version == version and version
        assert site.state.predictor == gw.slot.current.predictor.kind  # type: ignore[union-attr]
        assert site.state.stand_in is False and site.state.software_version == software_version()
        assert site.state.epsilon_budget == config.privacy.epsilon_budget
        assert site.state.pending_batches == 0
        gw.state_report.update_result("refused")  # as the updater reports a refused release
        gw.sync_agent.tick()
        history = hub.store.state_history("shop-7")
        assert [c.state.last_update_result for c in history] == ["", "refused"]

        assert run_cli(["hub", "status", "--db", url]) == 0
        out = capsys.readouterr().out
        line = next(line for line in out.splitlines() if line.startswith("shop-7"))
        fields = line.split()
        assert fields[1] == version and fields[2] == site.state.predictor
        assert fields[7] == f"0/{config.privacy.epsilon_budget:g}" and "update refused" in line
        assert fields[10] == "ok,"

        scrape = (
            urllib.request.urlopen(f"http://127.0.0.1:{hub.metrics_port}/metrics", timeout=10)
            .read()
            .decode()
        )
        assert f'fraudscreen_hub_sites_by_version{{model_version="{version}"}} 1.0' in scrape
        assert "fraudscreen_hub_sites_stale 0.0" in scrape
        reports = re.search(r"^fraudscreen_hub_state_reports_total (\S+)$", scrape, re.M)
        assert reports and float(reports.group(1)) >= 2  # the agent's own first round too

    time.sleep(1.5)  # the gateway has stopped: it is silent from now on
    assert run_cli(["hub", "status", "--db", url, "--stale-after", "1s", "--stale-only"]) == 0
    out = capsys.readouterr().out
    assert "1 sites, 1 silent for more than 1s" in out
    assert "STALE" in next(line for line in out.splitlines() if line.startswith("shop-7"))


def test_push_counts_refusals_and_bad_state_fields_in_metrics(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    token = add_token(tmp_path / "sites.tokens", "shop-a")
    with running_hub(tmp_path, db=postgres.database(), metrics_listen="127.0.0.1:0") as hub:
        with grpc.insecure_channel(f"127.0.0.1:{hub.port}") as channel:
            stub = pb_grpc.SyncStub(channel)
            bad_state = pb.GatewayState(
                model_version="v 1!",
                predictor="x" * 65,
                last_update_result="exploded",
                epsilon_spent=float("nan"),
                pending_batches=-1,
            )
            code, _, fields = refused(
                lambda: stub.ReportState(
                    pb.ReportStateRequest(state=bad_state), metadata=bearer(token), timeout=5
                )
            )
            assert code == grpc.StatusCode.INVALID_ARGUMENT
            assert set(fields) == {
                "state.model_version",
                "state.predictor",
                "state.last_update_result",
                "state.epsilon_spent",
                "state.pending_batches",
            }
            code, _, fields = refused(
                lambda: stub.ReportState(pb.ReportStateRequest(), metadata=bearer(token), timeout=5)
            )
            assert code == grpc.StatusCode.INVALID_ARGUMENT and set(fields) == {"state"}
            stub.PushBatch(
                pb.PushBatchRequest(batch=make_batch()), metadata=bearer(token), timeout=5
            )
            stub.PushBatch(
                pb.PushBatchRequest(batch=make_batch()), metadata=bearer(token), timeout=5
            )
        assert hub.store.site_states() == []  # refused reports stored nothing
        scrape = (
            urllib.request.urlopen(f"http://127.0.0.1:{hub.metrics_port}/metrics", timeout=10)
            .read()
            .decode()
        )
    assert 'fraudscreen_hub_pushes_total{result="stored"} 1.0' in scrape
    assert 'fraudscreen_hub_pushes_total{result="duplicate"} 1.0' in scrape
    assert (
        'fraudscreen_hub_refused_total{code="INVALID_ARGUMENT",method="ReportState"} 2.0' in scrape
    )
