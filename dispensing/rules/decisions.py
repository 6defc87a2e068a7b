"""What the engine returns: decisions (ALLOW / WARN / BLOCK) and the follow-ups a service creates
(observation periods, physician tasks, flags, incidents), plus helpers to read a list of decisions.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal

from dispensing.rules.messages import MessageCatalog, raw_params
from dispensing.rules.reasons import PLACEHOLDERS, Reason


class Outcome(enum.StrEnum):
    ALLOW = "ALLOW"
    WARN = "WARN"
    BLOCK = "BLOCK"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Outcome.ALLOW: 0, Outcome.WARN: 1, Outcome.BLOCK: 2}


class Role(enum.StrEnum):
    """Same values as the user roles of the application."""

    NURSE = "nurse"
    PHARMACIST = "pharmacist"
    PHYSICIAN = "physician"


@dataclass(frozen=True)
class Lift:
    """A recorded action that lifts a BLOCK: e.g. a physician order linked to a pre-dose
    assessment. It lifts a decision only when ``code``, ``role`` and ``subject`` all match."""

    code: Reason
    role: Role
    subject: str | None = None
    evidence: str | None = None  # e.g. the id of the physician order


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    code: Reason
    table_version: str
    message_vi: str
    message_en: str
    needs_reason: bool = False
    # For BLOCK: the role whose linked action lifts it; None when nobody can (change the action).
    lift_role: Role | None = None
    # What a lift must refer to, e.g. the assessment id or the missed-dose episode.
    subject: str | None = None
    params: tuple[tuple[str, str], ...] = ()
    lifted_by: Lift | None = None

    @property
    def blocked(self) -> bool:
        return self.outcome is Outcome.BLOCK


@dataclass(frozen=True)
class Observation:
    """Observe the patient from ``start_at`` for at least until ``min_end_at``."""

    code: Reason
    table_version: str
    start_at: datetime
    min_end_at: datetime
    max_end_at: datetime | None
    message_vi: str
    message_en: str


@dataclass(frozen=True)
class PhysicianTask:
    code: Reason
    table_version: str
    due_on: date
    message_vi: str
    message_en: str
    subject: str | None = None


@dataclass(frozen=True)
class Flag:
    """A patient flag shown until ``ends_on`` (inclusive); open-ended when None."""

    code: Reason
    table_version: str
    starts_on: date
    ends_on: date | None
    message_vi: str
    message_en: str
    subject: str | None = None


@dataclass(frozen=True)
class Incident:
    code: Reason
    table_version: str
    ordered_mg: Decimal
    recorded_mg: Decimal
    excess_mg: Decimal
    observation: Observation
    physician_alert: PhysicianTask
    message_vi: str
    message_en: str


# ---- building (used by the rule modules) -----------------------------------------------------


def _texts(messages: MessageCatalog, code: Reason, params: Mapping[str, object]) -> tuple[str, str]:
    missing = PLACEHOLDERS[code] - params.keys()
    if missing:
        raise ValueError(f"{code}: parameters missing: {sorted(missing)}")
    return messages.render(code, params)


def decision(
    messages: MessageCatalog,
    outcome: Outcome,
    code: Reason,
    table_version: str,
    *,
    needs_reason: bool = False,
    lift_role: Role | None = None,
    subject: str | None = None,
    **params: object,
) -> Decision:
    if outcome is not Outcome.WARN and needs_reason:
        raise ValueError("only a WARN can need a written reason")
    if outcome is not Outcome.BLOCK and lift_role is not None:
        raise ValueError("only a BLOCK has a lifting role")
    vi, en = _texts(messages, code, params)
    return Decision(
        outcome=outcome,
        code=code,
        table_version=table_version,
        message_vi=vi,
        message_en=en,
        needs_reason=needs_reason,
        lift_role=lift_role,
        subject=subject,
        params=raw_params(params),
    )


def observation(
    messages: MessageCatalog,
    code: Reason,
    table_version: str,
    start_at: datetime,
    min_end_at: datetime,
    max_end_at: datetime | None,
    **params: object,
) -> Observation:
    vi, en = _texts(messages, code, params)
    return Observation(code, table_version, start_at, min_end_at, max_end_at, vi, en)


def physician_task(
    messages: MessageCatalog,
    code: Reason,
    table_version: str,
    due_on: date,
    subject: str | None = None,
    **params: object,
) -> PhysicianTask:
    vi, en = _texts(messages, code, params)
    return PhysicianTask(code, table_version, due_on, vi, en, subject)


def flag(
    messages: MessageCatalog,
    code: Reason,
    table_version: str,
    starts_on: date,
    ends_on: date | None,
    subject: str | None = None,
    **params: object,
) -> Flag:
    vi, en = _texts(messages, code, params)
    return Flag(code, table_version, starts_on, ends_on, vi, en, subject)


# ---- reading -----------------------------------------------------------------------------------


def worst(decisions: Iterable[Decision]) -> Outcome:
    """Return the most restrictive outcome; ALLOW for no decisions."""
    return max((d.outcome for d in decisions), key=lambda o: o.severity, default=Outcome.ALLOW)


def is_blocked(decisions: Iterable[Decision]) -> bool:
    return any(d.outcome is Outcome.BLOCK for d in decisions)


def blocking(decisions: Iterable[Decision]) -> list[Decision]:
    return [d for d in decisions if d.outcome is Outcome.BLOCK]


def needing_acknowledgement(decisions: Iterable[Decision]) -> list[Decision]:
    """The WARNs the user must acknowledge before proceeding."""
    return [d for d in decisions if d.outcome is Outcome.WARN]


def needing_reason(decisions: Iterable[Decision]) -> list[Decision]:
    """The WARNs that also need a written reason."""
    return [d for d in decisions if d.outcome is Outcome.WARN and d.needs_reason]


def unacknowledged(
    decisions: Iterable[Decision], acknowledgements: Mapping[str, str | None]
) -> list[Decision]:
    """Return the WARNs not covered by ``acknowledgements`` (code → written reason or None).

    A WARN needing a reason is covered only by a non-blank reason.
    """
    missing = []
    for d in needing_acknowledgement(decisions):
        if d.code not in acknowledgements:
            missing.append(d)
        elif d.needs_reason and not (acknowledgements[d.code] or "").strip():
            missing.append(d)
    return missing


def apply_lifts(decisions: Iterable[Decision], lifts: Iterable[Lift]) -> list[Decision]:
    """Return ``decisions`` with each BLOCK that a matching lift covers turned into ALLOW.

    A lift matches on code, on the decision's lifting role (a nurse never lifts a BLOCK) and on
    the decision's subject (e.g. the physician order must be linked to *that* assessment).
    """
    lifts = tuple(lifts)
    result = []
    for d in decisions:
        match = None
        if d.outcome is Outcome.BLOCK and d.lift_role is not None:
            match = next(
                (
                    lift
                    for lift in lifts
                    if lift.code == d.code
                    and lift.role is d.lift_role
                    and lift.subject == d.subject
                ),
                None,
            )
        result.append(replace(d, outcome=Outcome.ALLOW, lifted_by=match) if match else d)
    return result
