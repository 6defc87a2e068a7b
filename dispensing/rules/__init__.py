"""The clinical rule engine: pure functions over plain values, driven by versioned rule tables.

Load once at start-up (``load_rule_set``; a ``RuleTableError`` message says which file and key is
wrong), then call ``evaluate_order`` when a physician signs and ``evaluate_counter`` at the counter.
The per-section functions are public too, for the other use cases (top-up, replacement after
vomiting, medication changes, dosing errors, ECG reminders).
"""

from dispensing.rules.cardiac import EcgDue, check_high_dose_ecg, check_qtc_for_increase, ecg_due
from dispensing.rules.decisions import (
    Decision,
    Flag,
    Incident,
    Lift,
    Observation,
    Outcome,
    PhysicianTask,
    Role,
    apply_lifts,
    blocking,
    is_blocked,
    needing_acknowledgement,
    needing_reason,
    unacknowledged,
    worst,
)
from dispensing.rules.dosing_errors import check_recorded_dose
from dispensing.rules.engine import (
    CounterContext,
    CounterEvaluation,
    evaluate_counter,
    evaluate_order,
    order_dose_history_days,
)
from dispensing.rules.history import (
    ChecklistSign,
    DoseKind,
    DoseRecord,
    EcgResult,
    Lot,
    MedicationChangeKind,
    Order,
    PatientHistory,
    Phase,
    PreDoseAssessment,
    windowed,
)
from dispensing.rules.induction import (
    TopUpEvaluation,
    TopUpRequest,
    check_cows_recorded,
    check_day1_total,
    check_early_increase,
    check_first_dose,
    evaluate_top_up,
    first_dose_observation,
)
from dispensing.rules.interactions import (
    InteractionOutcome,
    MedicationChange,
    evaluate_medication_change,
)
from dispensing.rules.loading import RuleTableError, load_rule_set, validate_all
from dispensing.rules.messages import DoseRange
from dispensing.rules.missed_doses import (
    MissedDoseAssessment,
    assess_missed_doses,
    count_missed_days,
)
from dispensing.rules.orders import check_order, check_order_in_force
from dispensing.rules.predose import check_predose
from dispensing.rules.reasons import Reason
from dispensing.rules.tables import RuleSelection, RuleSet
from dispensing.rules.take_home import TakeHomeRequest, evaluate_take_home
from dispensing.rules.taper import check_taper_step
from dispensing.rules.titration import check_dose_level, check_increase
from dispensing.rules.units import (
    PartsPlan,
    PlannedPart,
    VolumeConversion,
    check_lot,
    dose_volume,
    plan_parts,
    volume_dose,
)
from dispensing.rules.vomiting import (
    ReplacementEvaluation,
    ReplacementRequest,
    evaluate_replacement,
)

__all__ = [
    "ChecklistSign",
    "CounterContext",
    "CounterEvaluation",
    "Decision",
    "DoseKind",
    "DoseRange",
    "DoseRecord",
    "EcgDue",
    "EcgResult",
    "Flag",
    "Incident",
    "InteractionOutcome",
    "Lift",
    "Lot",
    "MedicationChange",
    "MedicationChangeKind",
    "MissedDoseAssessment",
    "Observation",
    "Order",
    "Outcome",
    "PartsPlan",
    "PatientHistory",
    "Phase",
    "PhysicianTask",
    "PlannedPart",
    "PreDoseAssessment",
    "Reason",
    "ReplacementEvaluation",
    "ReplacementRequest",
    "Role",
    "RuleSelection",
    "RuleSet",
    "RuleTableError",
    "TakeHomeRequest",
    "TopUpEvaluation",
    "TopUpRequest",
    "VolumeConversion",
    "apply_lifts",
    "assess_missed_doses",
    "blocking",
    "check_cows_recorded",
    "check_day1_total",
    "check_dose_level",
    "check_early_increase",
    "check_first_dose",
    "check_high_dose_ecg",
    "check_increase",
    "check_lot",
    "check_order",
    "check_order_in_force",
    "check_predose",
    "check_qtc_for_increase",
    "check_recorded_dose",
    "check_taper_step",
    "count_missed_days",
    "dose_volume",
    "ecg_due",
    "evaluate_counter",
    "evaluate_medication_change",
    "evaluate_order",
    "evaluate_replacement",
    "evaluate_take_home",
    "evaluate_top_up",
    "first_dose_observation",
    "is_blocked",
    "load_rule_set",
    "needing_acknowledgement",
    "needing_reason",
    "order_dose_history_days",
    "plan_parts",
    "unacknowledged",
    "validate_all",
    "volume_dose",
    "windowed",
    "worst",
]
