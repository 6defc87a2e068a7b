"""The dose at the counter: identify, check, authorise, deliver, record — never twice, nothing lost.

Use cases (each checks the role, begins its own write transaction, audits and commits):

- reading: ``worklist``, ``find_by_card``, ``patient_panel`` (``panel``);
- before the pump: ``record_assessment``, ``authorize``, ``complete_partial``,
  ``authorize_replacement``, ``prepare_take_home``, ``cancel_request`` (``dosing``);
- the device service's calls: ``next_job``, ``record_progress``, ``record_result``,
  ``recover_counter``; and ``resolve_unknown`` by a nurse and a witness (``delivery``);
- after the dose: ``record_vomit``, ``order_replacement``, ``void_dose``, ``take_home_label``,
  ``record_take_home_return`` (``records``);
- unit-dose medicines: ``sign_medication_order``, ``stop_medication_order``,
  ``dispense_unit_dose`` (``medication``);
- counter agents: ``issue_agent_token``, ``agent_counter``, ``pump_setup`` (``agents``).

Dose states: REQUESTED → PROGRAMMED → RUNNING → COMPLETED | PARTIAL | FAILED, or UNKNOWN (crash,
or an outcome the pump could not confirm) → resolved by a nurse and a witness. Final rows are
frozen by the database; a partial's remainder is a COMPLETION dose linked to it, a correction is
a void (a new record). The ledger line of a delivery is written in the transaction that writes the
dose's final state (``dispensing.stock.book_dose``).
"""

from dispensing.counter.agents import (
    PumpSetup,
    agent_counter,
    counters_for_this_process,
    issue_agent_token,
    pump_setup,
    revoke_agent_token,
)
from dispensing.counter.common import AlreadyDosed, DoseBlocked
from dispensing.counter.delivery import (
    DeviceOutcome,
    DoseJob,
    Resolution,
    next_job,
    record_progress,
    record_result,
    recover_counter,
    resolve_unknown,
)
from dispensing.counter.dosing import (
    AssessmentAnswers,
    DoseRequest,
    authorize,
    authorize_replacement,
    cancel_request,
    complete_partial,
    prepare_take_home,
    record_assessment,
    remainder_mg,
)
from dispensing.counter.medication import (
    PackScan,
    dispense_unit_dose,
    sign_medication_order,
    stop_medication_order,
)
from dispensing.counter.panel import Panel, Worklist, find_by_card, patient_panel, worklist
from dispensing.counter.pumps import PumpReadiness, pump_readiness
from dispensing.counter.records import (
    order_replacement,
    record_take_home_return,
    record_vomit,
    take_home_label,
    take_home_label_code,
    void_dose,
)

__all__ = [
    "AlreadyDosed",
    "AssessmentAnswers",
    "DeviceOutcome",
    "DoseBlocked",
    "DoseJob",
    "DoseRequest",
    "PackScan",
    "Panel",
    "PumpReadiness",
    "PumpSetup",
    "Resolution",
    "Worklist",
    "agent_counter",
    "authorize",
    "authorize_replacement",
    "cancel_request",
    "complete_partial",
    "counters_for_this_process",
    "dispense_unit_dose",
    "find_by_card",
    "issue_agent_token",
    "next_job",
    "order_replacement",
    "patient_panel",
    "prepare_take_home",
    "pump_readiness",
    "pump_setup",
    "record_assessment",
    "record_progress",
    "record_result",
    "record_take_home_return",
    "record_vomit",
    "recover_counter",
    "remainder_mg",
    "resolve_unknown",
    "revoke_agent_token",
    "sign_medication_order",
    "stop_medication_order",
    "take_home_label",
    "take_home_label_code",
    "void_dose",
    "worklist",
]
