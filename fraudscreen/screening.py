"""Screening a transaction: features -> score -> decision, once per (terminal, transaction).

This is the gateway's application core. It knows nothing of gRPC: the gateway validates
and tokenizes a request into a `Transaction`, calls `ScreeningEngine.screen`, and maps the
`ScreenResult` back. The journal is written asynchronously; state is rebuilt from it on
start with `ScreeningEngine.restore`.

It is long because the one-by-one path (`screen`) and the batch path (`screen_batch`)
share the idempotency claim, the decision and the journal record, and are kept beside
each other so that they stay the same.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import structlog

from fraudscreen.binschema import BinSchema
from fraudscreen.features.definitions import FEATURES, STATE_HORIZON_SECONDS, FeatureSpec
from fraudscreen.features.online import OnlineFeatureStore
from fraudscreen.model.bundle import Bundle, Thresholds
from fraudscreen.model.compile import CompileOptions, load_explainer, load_predictor
from fraudscreen.model.predictor import Explainer, LightGBMPredictor, Predictor, predict_batch
from fraudscreen.model.stacked import StackedPredictor
from fraudscreen.policy import Decision, Policy, Reason, Verdict, top_reasons
from fraudscreen.records import OutcomeRecord, ScreenedRecord, ScreeningJournal
from fraudscreen.transaction import Outcome, Transaction

log = structlog.get_logger(__name__)

STAND_IN_VERSION = "stand-in"
DUPLICATE_WAIT_SECONDS = 5.0

RowTransform = Callable[[Sequence[float]], list[float]]


@dataclass(frozen=True)
class ActiveModel:
    """Everything needed to score with one model version; swapped as a whole."""

    version: str
    predictor: Predictor
    explainer: Explainer
    thresholds: Thresholds
    features: tuple[FeatureSpec, ...] = FEATURES
    transform: RowTransform | None = None
    bin_schema: BinSchema | None = None  # what this site aggregates with

    @classmethod
    def from_bundle(
        cls,
        bundle: Bundle,
        policy: Policy,
        options: CompileOptions | None = None,
        *,
        native: bool = True,
        require_native: bool = False,
    ) -> ActiveModel:
        """`native=False` scores with LightGBM itself (the benchmark baseline);
        `require_native` raises CompileError rather than fall back to LightGBM."""
        if bundle.base is not None:
            return cls._stacked(bundle, policy, options, native, require_native)
        input_schema = bundle.input_schema
        # One LightGBM load serves the parity check, the explainer check and any fallback.
        reference = LightGBMPredictor(bundle.model_text, len(bundle.manifest.features))
        return cls(
            version=bundle.model_version,
            transform=input_schema.transform if input_schema is not None else None,
            bin_schema=bundle.bin_schema,
            predictor=load_predictor(bundle, options, reference, fallback=not require_native)
            if native
            else reference,
            explainer=load_explainer(bundle, options, reference),
            thresholds=policy.thresholds(bundle.manifest.thresholds),
        )

    @classmethod
    def _stacked(
        cls,
        bundle: Bundle,
        policy: Policy,
        options: CompileOptions | None,
        native: bool,
        require_native: bool,
    ) -> ActiveModel:
        """A hub correction of a deployed model: both models compiled (each with its own
        parity check on its golden rows), scored in sequence by `StackedPredictor`. Reason
        codes come from the base model's explainer: the correction sees only bands and
        coarse bins, the base model's contributions say which features drove the score."""
        base, correction, schema = bundle.base, bundle.correction, bundle.bin_schema
        assert base is not None and schema is not None  # load_bundle checked both
        base_ref = LightGBMPredictor(base.model_text, len(base.manifest.features))
        correction_ref = LightGBMPredictor(correction.model_text, len(schema.features))
        fallback = not require_native
        return cls(
            version=bundle.model_version,
            predictor=StackedPredictor(
                load_predictor(base, options, base_ref, fallback=fallback) if native else base_ref,
                load_predictor(correction, options, correction_ref, fallback=fallback)
                if native
                else correction_ref,
                schema,
            ),
            explainer=load_explainer(base, options, base_ref),
            thresholds=policy.thresholds(bundle.manifest.thresholds),
            bin_schema=schema,
        )

    def score(self, row: Sequence[float]) -> tuple[float, Sequence[float]]:
        model_row = self.transform(row) if self.transform is not None else row
        return self.predictor.predict_row(model_row), model_row

    def reasons(self, model_row: Sequence[float]) -> list[Reason]:
        return top_reasons(self.explainer.contributions(model_row), self.features)


class ModelSlot:
    """The live model. Reads are a single attribute load, so a swap lands between requests."""

    def __init__(self, model: ActiveModel | None = None) -> None:
        self._model = model

    @property
    def current(self) -> ActiveModel | None:
        return self._model

    def swap(self, model: ActiveModel | None) -> ActiveModel | None:
        previous, self._model = self._model, model
        return previous


class ScreenResult(NamedTuple):
    transaction_id: str
    terminal_id: str
    decision: Decision
    score: float
    reasons: tuple[Reason, ...]
    model_version: str
    stand_in: bool
    replayed: bool = False


class DuplicateTransactionError(ValueError):
    """Same terminal and transaction id as an earlier request, but different content."""


class ScreeningUnavailableError(RuntimeError):
    """Temporarily cannot screen (journal backlog, a concurrent first attempt failed)."""


@dataclass(slots=True)
class _Entry:
    """A transaction seen recently: its answer once decided, for retries."""

    fingerprint: str
    arrived: float
    timestamp: int
    result: ScreenResult | None = None
    done: bool = False


class _Pending(NamedTuple):
    """A batch item claimed and featurized, waiting for the batch's model call."""

    position: int  # its place in the batch's answers
    tx: Transaction
    print_: str
    entry: _Entry
    row: list[float]


_NOT_YET = ScreeningUnavailableError("not decided yet")  # a placeholder, always replaced
_DECISION_NAMES = {d: d.name for d in Decision}  # an enum's .name is a property: ~0.2 µs


def fingerprint(tx: Transaction) -> str:
    """What must match for a retry to be the same transaction."""
    mode = "" if tx.entry_mode is None else int(tx.entry_mode)
    text = f"{tx.card_token}|{tx.amount_minor}|{tx.currency}|{tx.timestamp}|{tx.mcc}|{mode}"
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def encode_reasons(reasons: Sequence[Reason]) -> str:
    if not reasons:
        return "[]"
    return json.dumps([[r.code, r.feature, r.contribution] for r in reasons])


def decode_reasons(text: str) -> tuple[Reason, ...]:
    return tuple(Reason(str(c), str(f), float(v)) for c, f, v in json.loads(text))


class ShadowTrial:
    """A candidate model scoring live traffic beside the live one, deciding nothing."""

    def __init__(self, model: ActiveModel, target: int) -> None:
        self.model = model
        self.target = target
        self.seen = 0
        self.same_decision = 0
        self.max_score_diff = 0.0
        self.done = threading.Event()
        self._lock = threading.Lock()
        if target <= 0:
            self.done.set()

    def record(self, live: Decision, shadow: Decision, score_diff: float) -> None:
        with self._lock:
            self.seen += 1
            self.same_decision += live is shadow
            self.max_score_diff = max(self.max_score_diff, score_diff)
            if self.seen >= self.target:
                self.done.set()

    @property
    def agreement(self) -> float:
        return self.same_decision / self.seen if self.seen else 1.0


@dataclass(frozen=True)
class RestoreSummary:
    transactions: int
    fraud_labels: int
    idempotency_entries: int
    seconds: float


class ScreeningEngine:
    def __init__(
        self,
        *,
        store: OnlineFeatureStore,
        slot: ModelSlot,
        policy: Policy,
        journal: ScreeningJournal,
        idempotency_window_seconds: float = 86_400.0,
        max_idempotency_entries: int = 2_000_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.slot = slot
        self.policy = policy
        self.journal = journal
        self._window = idempotency_window_seconds
        self._max_entries = max_idempotency_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._decided = threading.Condition(self._lock)  # wakes retries of in-flight ones
        self._recent: dict[tuple[str, str], _Entry] = {}
        self._fraud_labels: dict[tuple[str, str], int] = {}  # key -> transaction timestamp
        self._shadow: ShadowTrial | None = None

    def start_shadow(self, model: ActiveModel, transactions: int) -> ShadowTrial:
        """Score the next `transactions` live ones with `model` too (results discarded)."""
        trial = ShadowTrial(model, transactions)
        self._shadow = None if trial.done.is_set() else trial
        return trial

    def stop_shadow(self) -> None:
        self._shadow = None

    @property
    def stand_in_active(self) -> bool:
        return self.slot.current is None

    def screen(self, tx: Transaction) -> ScreenResult:
        """Decide on a transaction; a retry gets the first answer with `replayed=True`."""
        print_ = fingerprint(tx)
        entry, owner = self._claim(tx, print_)
        if not owner:
            return self._answer_retry(entry, print_, tx)
        try:
            result, row = self._decide(tx)
        except BaseException:
            self._release(tx, entry)
            raise
        with self._decided:
            entry.result = result
            entry.done = True
            self._decided.notify_all()
        self.journal.submit(self._record(tx, print_, result, row, entry.arrived))
        return result

    def screen_batch(
        self, items: Sequence[Transaction | Exception], stop: Callable[[], bool] = lambda: False
    ) -> list[ScreenResult | Exception]:
        """`screen` of each item in order, with the same answers, but batched where order
        does not matter: the idempotency keys are claimed under one lock, features stay one
        by one (each item's windows include the ones before it), then the model scores all
        rows in one call, and the journal takes all records in one step. An exception among
        `items` (an item that failed before the engine) comes back unchanged in its place;
        each item's own failure comes back as its exception. `stop()` is asked before each
        item: once true, the items before it are finished (decided, journaled) and returned,
        the rest are not screened (their claims are released)."""
        claims = self._claim_batch(items)
        out: list[ScreenResult | Exception] = []
        pending: list[_Pending] = []
        reached = 0  # claims from here on are not handled yet: released if we stop or fail
        try:
            for claim in claims:
                if stop():
                    break
                reached += 1
                if isinstance(claim, Exception):
                    out.append(claim)
                    continue
                tx, print_, entry = claim
                if entry is None:  # not the owner: a retry, of an earlier item perhaps
                    self._answer_batch_retry(tx, print_, pending, out)
                else:
                    self._featurize(tx, print_, entry, pending, out)
            self._settle(pending, out)
        except BaseException:
            for waiting in pending:
                self._release(waiting.tx, waiting.entry)
            raise
        finally:
            for claim in claims[reached:]:
                if not isinstance(claim, Exception) and claim[2] is not None:
                    self._release(claim[0], claim[2])
        return out

    def _claim_batch(
        self, items: Sequence[Transaction | Exception]
    ) -> list[tuple[Transaction, str, _Entry | None] | Exception]:
        """Each item's claim, in order, under one lock: (transaction, fingerprint, its
        entry if this batch owns it, else None), or the item's exception. What `_claim`
        does one by one: a later item with an earlier one's key is not its owner, and the
        backlog check counts the batch's own claims as queued."""
        prints: list[str | Exception] = []
        for item in items:
            if isinstance(item, Exception):
                prints.append(item)
                continue
            try:
                prints.append(fingerprint(item))
            except Exception as exc:
                prints.append(exc)
        claims: list[tuple[Transaction, str, _Entry | None] | Exception] = []
        append = claims.append
        with self._lock:
            room = self.journal.queue_room  # less this batch's own claims as they are made
            for item, print_ in zip(items, prints, strict=True):
                if isinstance(print_, Exception):
                    append(print_)
                    continue
                tx = item
                assert not isinstance(tx, Exception)
                try:
                    entry, owner = self._claim_held(tx, print_, room)
                except ScreeningUnavailableError as exc:
                    append(exc)
                    continue
                if owner:
                    room -= 1
                append((tx, print_, entry if owner else None))
        return claims

    def _answer_batch_retry(
        self,
        tx: Transaction,
        print_: str,
        pending: list[_Pending],
        out: list[ScreenResult | Exception],
    ) -> None:
        """A batch item whose key was claimed before it: the first answer, replayed. A
        claim released since (its first attempt failed) is claimed again here, as `screen`
        would claim it now."""
        try:
            entry, owner = self._claim(tx, print_, queued=len(pending))
        except Exception as exc:
            out.append(exc)
            return
        if owner:
            self._featurize(tx, print_, entry, pending, out)
            return
        if not entry.done:  # perhaps an earlier item of this batch: settle those first
            self._settle(pending, out)
        try:
            out.append(self._answer_retry(entry, print_, tx))
        except Exception as exc:
            out.append(exc)

    def _featurize(
        self,
        tx: Transaction,
        print_: str,
        entry: _Entry,
        pending: list[_Pending],
        out: list[ScreenResult | Exception],
    ) -> None:
        """A claimed item's features: pending for the model call, or its error in `out`."""
        try:
            row = self.store.add(tx)
        except BaseException as exc:
            self._release(tx, entry)
            if not isinstance(exc, Exception):
                raise
            out.append(exc)
            return
        pending.append(_Pending(len(out), tx, print_, entry, row))
        out.append(_NOT_YET)

    def _settle(self, pending: list[_Pending], out: list[ScreenResult | Exception]) -> None:
        """Score, decide and journal the claimed items; `pending` is emptied."""
        if not pending:
            return
        model = self.slot.current
        scores: list[float] | None = None
        model_rows: list[Sequence[float]] = [p.row for p in pending]
        if model is not None:
            if model.transform is not None:
                model_rows = [model.transform(row) for row in model_rows]
            try:
                scores = predict_batch(model.predictor, model_rows)
            except Exception:
                scores = None  # row by row below: each row's own error for its own item
        decided: list[tuple[_Pending, ScreenResult]] = []
        for index, waiting in enumerate(pending):
            try:
                score = None if scores is None else scores[index]
                result = self._verdict(waiting.tx, waiting.row, model, model_rows[index], score)
            except Exception as exc:
                self._release(waiting.tx, waiting.entry)
                out[waiting.position] = exc
                continue
            decided.append((waiting, result))
            out[waiting.position] = result
        pending.clear()
        with self._decided:
            for waiting, result in decided:
                waiting.entry.result = result
                waiting.entry.done = True
            self._decided.notify_all()
        records = [
            self._record(w.tx, w.print_, result, w.row, w.entry.arrived) for w, result in decided
        ]
        taken = self.journal.submit_many(records)
        for (waiting, _), record in zip(decided[taken:], records[taken:], strict=True):
            try:
                self.journal.submit(record)  # the queue refused it: this raises its reason
            except Exception as exc:
                out[waiting.position] = exc

    def _claim(self, tx: Transaction, print_: str, queued: int = 0) -> tuple[_Entry, bool]:
        """The transaction's idempotency entry, and whether this call owns (decides) it;
        `queued`: records this caller will submit before this one's."""
        with self._lock:
            return self._claim_held(tx, print_, self.journal.queue_room - queued)

    def _claim_held(self, tx: Transaction, print_: str, room: int) -> tuple[_Entry, bool]:
        """`_claim` with `self._lock` held; `room`: journal queue places left for this
        caller (0 or less: the backlog is full)."""
        entry = self._recent.get(tx.key)
        if entry is not None:
            return entry, False
        if room <= 0:
            raise ScreeningUnavailableError(
                "journal backlog is full; retry shortly (operator: check the disk)"
            )
        entry = self._recent[tx.key] = _Entry(print_, self._clock(), tx.timestamp)
        return entry, True

    def _release(self, tx: Transaction, entry: _Entry) -> None:
        """A claimed transaction that failed: forgotten, so a retry screens it afresh."""
        with self._decided:
            self._recent.pop(tx.key, None)
            entry.done = True
            self._decided.notify_all()

    def _decide(self, tx: Transaction) -> tuple[ScreenResult, list[float]]:
        model = self.slot.current
        row = self.store.add(tx)
        if model is None:
            return self._verdict(tx, row, None, row, None), row
        score, model_row = model.score(row)
        return self._verdict(tx, row, model, model_row, score), row

    def _verdict(
        self,
        tx: Transaction,
        row: list[float],
        model: ActiveModel | None,
        model_row: Sequence[float],
        score: float | None,
    ) -> ScreenResult:
        """Policy on a scored row (`score` None: score it here); stand-in with no model."""
        verdict: Verdict
        if model is None:
            verdict = self.policy.stand_in(tx)
            score, version = 0.0, STAND_IN_VERSION
        else:
            if score is None:
                score = model.predictor.predict_row(model_row)
            verdict = self.policy.decide(
                tx, score, model.thresholds, lambda: model.reasons(model_row)
            )
            version = model.version
            trial = self._shadow
            if trial is not None:
                self._shadow_score(trial, tx, row, verdict.decision, score)
        return ScreenResult(  # positional: kwargs cost ~0.3 µs more per transaction
            tx.transaction_id,
            tx.terminal_id,
            verdict.decision,
            score,
            verdict.reasons,
            version,
            model is None,
        )

    def _shadow_score(
        self, trial: ShadowTrial, tx: Transaction, row: list[float], live: Decision, score: float
    ) -> None:
        try:
            shadow_score, _ = trial.model.score(row)
            shadow = self.policy.decide(tx, shadow_score, trial.model.thresholds, tuple).decision
        except Exception as exc:  # a broken candidate must never hurt live traffic
            log.error("shadow.failed", model_version=trial.model.version, error=str(exc))
            self._shadow = None
            trial.done.set()
            return
        trial.record(live, shadow, abs(shadow_score - score))
        if trial.done.is_set():
            self._shadow = None

    def _answer_retry(self, entry: _Entry, print_: str, tx: Transaction) -> ScreenResult:
        if entry.fingerprint != print_:
            raise DuplicateTransactionError(
                f"transaction_id {tx.transaction_id!r} was already used at terminal "
                f"{tx.terminal_id!r} for a different transaction; use a new transaction_id"
            )
        with self._decided:
            self._decided.wait_for(lambda: entry.done, DUPLICATE_WAIT_SECONDS)
        if entry.result is None:
            raise ScreeningUnavailableError("the first attempt of this transaction failed; retry")
        return entry.result._replace(replayed=True)

    @staticmethod
    def _record(
        tx: Transaction, print_: str, result: ScreenResult, row: Sequence[float], arrived: float
    ) -> ScreenedRecord:
        return ScreenedRecord(  # positional, in field order: kwargs cost ~0.7 µs more
            tx.terminal_id,
            tx.transaction_id,
            tx.card_token,
            tx.timestamp,
            tx.amount_minor,
            tx.currency,
            tx.mcc,
            None if tx.entry_mode is None else int(tx.entry_mode),
            tx.local_weekday,
            tx.local_hour,
            tuple(row),
            print_,
            _DECISION_NAMES[result.decision],
            None if result.stand_in else result.score,
            encode_reasons(result.reasons),
            result.model_version,
            result.stand_in,
            arrived,
        )

    def report_outcome(
        self, terminal_id: str, transaction_id: str, outcome: Outcome, reported_at: int
    ) -> bool:
        """Record an outcome durably; returns whether the transaction is known here."""
        key = (terminal_id, transaction_id)
        with self._lock:
            entry = self._recent.get(key)
        timestamp = entry.timestamp if entry is not None else None
        if timestamp is None:
            record = self.journal.find_transaction(terminal_id, transaction_id)
            timestamp = record.timestamp if record is not None else None
        self.journal.record_outcome(
            OutcomeRecord(terminal_id, transaction_id, outcome.name, outcome.is_fraud, reported_at)
        )
        if timestamp is not None:
            self._apply_label(key, timestamp, outcome.is_fraud)
        return timestamp is not None

    def _apply_label(self, key: tuple[str, str], timestamp: int, is_fraud: bool) -> None:
        with self._lock:
            labelled = key in self._fraud_labels
            if labelled == is_fraud:
                return
            if is_fraud:
                self._fraud_labels[key] = timestamp
            else:
                del self._fraud_labels[key]
        self.store.set_fraud(key[0], timestamp, is_fraud)

    def restore(self) -> RestoreSummary:
        """Rebuild windows, fraud labels and recent answers from the journal."""
        started = time.perf_counter()
        latest = self.journal.latest_timestamp()
        if latest is None:
            return RestoreSummary(0, 0, 0, 0.0)
        since = latest - STATE_HORIZON_SECONDS
        outcomes = self.journal.latest_outcomes(since)
        recent_after = self._clock() - self._window
        count = 0
        for record in self.journal.iter_transactions(since):
            key = (record.terminal_id, record.transaction_id)
            self.store.observe(
                record.card_token, record.terminal_id, record.timestamp, record.amount_minor
            )
            outcome = outcomes.get(key)
            if outcome is not None and outcome.is_fraud:
                self._apply_label(key, record.timestamp, True)
            if record.received_at >= recent_after:
                self._recent[key] = _restored_entry(record)
            count += 1
        summary = RestoreSummary(
            transactions=count,
            fraud_labels=len(self._fraud_labels),
            idempotency_entries=len(self._recent),
            seconds=round(time.perf_counter() - started, 3),
        )
        log.info("state.restored", **summary.__dict__)
        return summary

    def maintain(self) -> None:
        """Forget what no window or retry can need any more; run every minute or so."""
        self.store.purge()
        horizon = self._clock() - self._window
        with self._lock:
            while self._recent:
                key, entry = next(iter(self._recent.items()))
                if entry.arrived >= horizon and len(self._recent) <= self._max_entries:
                    break
                if not entry.done:
                    break
                del self._recent[key]
            oldest_label = max(self._fraud_labels.values(), default=0) - STATE_HORIZON_SECONDS
            for key in [k for k, ts in self._fraud_labels.items() if ts < oldest_label]:
                del self._fraud_labels[key]


def _restored_entry(record: ScreenedRecord) -> _Entry:
    result = ScreenResult(
        transaction_id=record.transaction_id,
        terminal_id=record.terminal_id,
        decision=Decision[record.decision],
        score=0.0 if record.score is None or math.isnan(record.score) else record.score,
        reasons=decode_reasons(record.reasons_json),
        model_version=record.model_version,
        stand_in=record.stand_in,
    )
    return _Entry(record.fingerprint, record.received_at, record.timestamp, result, done=True)
