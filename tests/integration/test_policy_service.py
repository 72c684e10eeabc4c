"""Policy rules, reason codes and shadow trials through a real gateway on loopback."""

from __future__ import annotations

from pathlib import Path

from fraudscreen.gateway.server import Gateway
from fraudscreen.model.bundle import load_bundle
from fraudscreen.model.explain import NativeExplainer
from fraudscreen.screening import ActiveModel
from fraudscreen.tokenizer import CardTokenizer, load_or_create_site_key
from fraudscreen.v1 import screening_pb2 as pb
from tests.support.service_support import (
    PANS,
    gateway_config,
    running_gateway,
    screen_request,
    stub_for,
)


def test_blocked_card_is_declined_and_review_above_minor_reviews(
    tmp_path: Path, small_bundle_path: Path
) -> None:
    key_file = tmp_path / "site.key"
    blocked = CardTokenizer(load_or_create_site_key(key_file)).tokenize(PANS[1])
    blocklist = tmp_path / "blocked.txt"
    blocklist.write_text(f"# stolen card\n{blocked}\n")
    config = gateway_config(
        tmp_path,
        small_bundle_path,
        {
            "FRAUDSCREEN_POLICY_BLOCKED_CARDS_FILE": str(blocklist),
            "FRAUDSCREEN_POLICY_REVIEW_ABOVE_MINOR": "50000",
            # the model alone approves everything here: the rules must decide
            "FRAUDSCREEN_POLICY_REVIEW_THRESHOLD": "1",
            "FRAUDSCREEN_POLICY_DECLINE_THRESHOLD": "1",
        },
    )
    with running_gateway(config) as gateway:
        channel, stub = stub_for(gateway)
        with channel:
            card = stub.Screen(screen_request("b-1", pan=PANS[1], amount_minor=100), timeout=5)
            over = stub.Screen(screen_request("r-1", pan=PANS[0], amount_minor=50_001), timeout=5)
            at = stub.Screen(screen_request("r-2", pan=PANS[0], amount_minor=50_000), timeout=5)
            both = stub.Screen(screen_request("b-2", pan=PANS[1], amount_minor=60_000), timeout=5)
    assert card.decision == pb.DECISION_DECLINE
    assert [r.code for r in card.reasons] == ["CARD_BLOCKED"]
    assert over.decision == pb.DECISION_REVIEW
    assert [r.code for r in over.reasons] == ["AMOUNT_OVER_REVIEW_LIMIT"]
    assert at.decision == pb.DECISION_APPROVE and not at.reasons  # "above" is strict
    assert both.decision == pb.DECISION_DECLINE  # the stronger rule wins, both are named
    assert [r.code for r in both.reasons] == ["CARD_BLOCKED", "AMOUNT_OVER_REVIEW_LIMIT"]


def test_reason_codes_come_from_the_native_explainer(
    tmp_path: Path, small_bundle_path: Path
) -> None:
    """A gateway with a compiler explains natively; if it silently fell back to LightGBM's
    TreeSHAP the kind and the contributions (Saabas paths, not Shapley values) would differ."""
    config = gateway_config(
        tmp_path,
        small_bundle_path,
        {"FRAUDSCREEN_POLICY_REVIEW_THRESHOLD": "0", "FRAUDSCREEN_POLICY_DECLINE_THRESHOLD": "1"},
    )
    with running_gateway(config) as gateway:
        model = gateway.slot.current
        assert model is not None
        assert isinstance(model.explainer, NativeExplainer)
        assert model.explainer.kind == "native-saabas"
        request = screen_request("e-1", amount_minor=99_999)
        row = gateway.engine.store.add(gateway.validator.transaction(request))  # as served
        channel, stub = stub_for(gateway)
        with channel:
            gateway.engine.store = type(gateway.engine.store)()  # same empty state again
            response = stub.Screen(request, timeout=5)
    _, model_row = model.score(row)
    expected = model.reasons(model_row)
    assert response.reasons
    assert [(r.code, r.feature) for r in response.reasons] == [
        (r.code, r.feature) for r in expected
    ]
    assert [r.contribution for r in response.reasons] == [r.contribution for r in expected]


def screen_all(gateway: Gateway, requests: list[pb.ScreenRequest]) -> list[pb.ScreenResponse]:
    channel, stub = stub_for(gateway)
    with channel:
        return [stub.Screen(r, timeout=5) for r in requests]


def test_shadow_trial_statistics_match_the_candidate_served_alone(
    tmp_path: Path, small_bundle_path: Path, other_bundle_path: Path
) -> None:
    """The live model serves; the candidate scores in shadow. Its statistics (transactions
    seen, decision agreement, largest score difference) must equal what a second gateway
    serving the candidate alone answers to the same traffic."""
    requests = [
        screen_request(
            f"s-{i}", pan=PANS[i % 4], terminal_id=f"T{i % 2}", amount_minor=500 + 4_000 * i
        )
        for i in range(24)
    ]
    target = 20
    with running_gateway(gateway_config(tmp_path / "live", small_bundle_path)) as gateway:
        candidate = ActiveModel.from_bundle(
            load_bundle(other_bundle_path), gateway.policy, gateway.updater.compile_options
        )
        trial = gateway.engine.start_shadow(candidate, target)
        live = screen_all(gateway, requests)
        assert trial.done.is_set()
    with running_gateway(gateway_config(tmp_path / "alone", other_bundle_path)) as gateway:
        alone = screen_all(gateway, requests)
    assert {r.model_version for r in live} != {r.model_version for r in alone}
    pairs = list(zip(live[:target], alone[:target], strict=True))
    assert trial.seen == target  # and not one more after it was done
    assert trial.same_decision == sum(a.decision == b.decision for a, b in pairs)
    assert trial.max_score_diff == max(abs(a.score - b.score) for a, b in pairs)
    assert trial.max_score_diff > 0
