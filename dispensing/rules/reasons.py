"""Stable reason codes of the rule engine and the message placeholders each one may use.

A reason code never changes meaning once released: it is stored with every decision, task, flag
and incident. Its Vietnamese and English texts live in ``config/rules/messages.toml``; the loader
checks that every code has both texts and that they only use the placeholders listed here.
"""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    # §1 product and units
    LOT_CONCENTRATION_UNVERIFIED = "LOT_CONCENTRATION_UNVERIFIED"
    DOSE_RESOLUTION_INVALID = "DOSE_RESOLUTION_INVALID"
    VOLUME_ROUNDED = "VOLUME_ROUNDED"
    # §2 orders
    NO_ACTIVE_ORDER = "NO_ACTIVE_ORDER"
    ORDER_NOT_YET_VALID = "ORDER_NOT_YET_VALID"
    ORDER_EXPIRED = "ORDER_EXPIRED"
    ORDER_WINDOW_END_MISSING = "ORDER_WINDOW_END_MISSING"
    ORDER_WINDOW_INVALID = "ORDER_WINDOW_INVALID"
    ORDER_WINDOW_TOO_SHORT = "ORDER_WINDOW_TOO_SHORT"
    ORDER_WINDOW_TOO_LONG = "ORDER_WINDOW_TOO_LONG"
    ORDER_DOSE_NOT_POSITIVE = "ORDER_DOSE_NOT_POSITIVE"
    ORDER_PARTS_COUNT_INVALID = "ORDER_PARTS_COUNT_INVALID"
    ORDER_PARTS_SUM_MISMATCH = "ORDER_PARTS_SUM_MISMATCH"
    # §3 induction
    INDUCTION_FIRST_DOSE_TOO_HIGH = "INDUCTION_FIRST_DOSE_TOO_HIGH"
    INDUCTION_FIRST_DOSE_CAUTION = "INDUCTION_FIRST_DOSE_CAUTION"
    INDUCTION_FIRST_DOSE_BELOW_RANGE = "INDUCTION_FIRST_DOSE_BELOW_RANGE"
    INDUCTION_DAY1_TOTAL_EXCEEDED = "INDUCTION_DAY1_TOTAL_EXCEEDED"
    INDUCTION_EARLY_INCREASE = "INDUCTION_EARLY_INCREASE"
    INDUCTION_COWS_MISSING = "INDUCTION_COWS_MISSING"
    INDUCTION_TOPUP_TOO_EARLY = "INDUCTION_TOPUP_TOO_EARLY"
    INDUCTION_TOPUP_LATE = "INDUCTION_TOPUP_LATE"
    INDUCTION_TOPUP_NO_WITHDRAWAL_SCORE = "INDUCTION_TOPUP_NO_WITHDRAWAL_SCORE"
    INDUCTION_TOPUP_NOT_INDICATED = "INDUCTION_TOPUP_NOT_INDICATED"
    INDUCTION_TOPUP_TOO_LARGE = "INDUCTION_TOPUP_TOO_LARGE"
    INDUCTION_TOPUP_ALLOWED = "INDUCTION_TOPUP_ALLOWED"
    INDUCTION_OBSERVATION = "INDUCTION_OBSERVATION"
    # §4 titration and maintenance
    TITRATION_INCREASE_TOO_SOON = "TITRATION_INCREASE_TOO_SOON"
    TITRATION_STEP_TOO_LARGE = "TITRATION_STEP_TOO_LARGE"
    TITRATION_WEEKLY_CAP_EXCEEDED = "TITRATION_WEEKLY_CAP_EXCEEDED"
    ECG_REQUIRED_HIGH_DOSE = "ECG_REQUIRED_HIGH_DOSE"
    HIGH_DOSE_REVIEW = "HIGH_DOSE_REVIEW"
    DOSE_ABOVE_CEILING_COSIGN_REQUIRED = "DOSE_ABOVE_CEILING_COSIGN_REQUIRED"
    DOSE_ABOVE_CEILING_COSIGNED = "DOSE_ABOVE_CEILING_COSIGNED"
    # §5 pre-dose assessment
    PREDOSE_CHECK_MISSING = "PREDOSE_CHECK_MISSING"
    PREDOSE_CHECK_POSITIVE = "PREDOSE_CHECK_POSITIVE"
    # §6 missed doses
    MISSED_DOSES_SHORT = "MISSED_DOSES_SHORT"
    MISSED_DOSES_REVIEW = "MISSED_DOSES_REVIEW"
    MISSED_DOSES_SEE_PATIENT = "MISSED_DOSES_SEE_PATIENT"
    MISSED_DOSES_RESTART_INDUCTION = "MISSED_DOSES_RESTART_INDUCTION"
    TREATMENT_INTERRUPTION_REVIEW = "TREATMENT_INTERRUPTION_REVIEW"
    # §7 vomiting
    VOMIT_NOT_WITNESSED = "VOMIT_NOT_WITNESSED"
    VOMIT_TIME_INVALID = "VOMIT_TIME_INVALID"
    VOMIT_REPLACEMENT_TOO_LATE = "VOMIT_REPLACEMENT_TOO_LATE"
    VOMIT_REPLACEMENT_TOO_LARGE = "VOMIT_REPLACEMENT_TOO_LARGE"
    VOMIT_REPLACEMENT_BELOW_RANGE = "VOMIT_REPLACEMENT_BELOW_RANGE"
    VOMIT_REPLACEMENT_ALLOWED = "VOMIT_REPLACEMENT_ALLOWED"
    # §8 taper
    TAPER_PHASE_INCREASE = "TAPER_PHASE_INCREASE"
    TAPER_BEFORE_ONE_YEAR = "TAPER_BEFORE_ONE_YEAR"
    TAPER_STEP_TOO_LARGE = "TAPER_STEP_TOO_LARGE"
    TAPER_STEPS_TOO_CLOSE = "TAPER_STEPS_TOO_CLOSE"
    TAPER_LOW_DOSE_SLOWER = "TAPER_LOW_DOSE_SLOWER"
    # §9 take-home
    TAKE_HOME_DISABLED = "TAKE_HOME_DISABLED"
    TAKE_HOME_REQUEST_INVALID = "TAKE_HOME_REQUEST_INVALID"
    TAKE_HOME_PHASE_NOT_ALLOWED = "TAKE_HOME_PHASE_NOT_ALLOWED"
    TAKE_HOME_PREDOSE_BLOCKED = "TAKE_HOME_PREDOSE_BLOCKED"
    TAKE_HOME_DOSE_BLOCKED = "TAKE_HOME_DOSE_BLOCKED"
    TAKE_HOME_COMMITMENT_MISSING = "TAKE_HOME_COMMITMENT_MISSING"
    TAKE_HOME_BEYOND_ORDER = "TAKE_HOME_BEYOND_ORDER"
    TAKE_HOME_TOO_EARLY_IN_TREATMENT = "TAKE_HOME_TOO_EARLY_IN_TREATMENT"
    TAKE_HOME_DOSE_NOT_STABLE = "TAKE_HOME_DOSE_NOT_STABLE"
    TAKE_HOME_RECENT_MISSED_DOSES = "TAKE_HOME_RECENT_MISSED_DOSES"
    TAKE_HOME_SUPPLY_EXCEEDS_REGIME = "TAKE_HOME_SUPPLY_EXCEEDS_REGIME"
    TAKE_HOME_WEEKLY_LIMIT = "TAKE_HOME_WEEKLY_LIMIT"
    TAKE_HOME_CONSECUTIVE_LIMIT = "TAKE_HOME_CONSECUTIVE_LIMIT"
    TAKE_HOME_ALLOWED = "TAKE_HOME_ALLOWED"
    # §10 heart and interactions
    QTC_ELEVATED_INCREASE = "QTC_ELEVATED_INCREASE"
    QTC_CRITICAL_INCREASE_BLOCKED = "QTC_CRITICAL_INCREASE_BLOCKED"
    ECG_BASELINE_DUE = "ECG_BASELINE_DUE"
    ECG_FOLLOW_UP_DUE = "ECG_FOLLOW_UP_DUE"
    ECG_YEARLY_DUE = "ECG_YEARLY_DUE"
    ECG_HIGH_DOSE_DUE = "ECG_HIGH_DOSE_DUE"
    INTERACTION_LEVELS_LOWERED = "INTERACTION_LEVELS_LOWERED"
    INTERACTION_LEVELS_RAISED = "INTERACTION_LEVELS_RAISED"
    INTERACTION_WATCH = "INTERACTION_WATCH"
    # §11 dosing errors
    DOSING_ERROR_INCIDENT = "DOSING_ERROR_INCIDENT"
    DOSING_ERROR_OBSERVATION = "DOSING_ERROR_OBSERVATION"
    DOSING_ERROR_PHYSICIAN_ALERT = "DOSING_ERROR_PHYSICIAN_ALERT"


_P = frozenset

# The placeholders each message may use. The engine always supplies all of them.
PLACEHOLDERS: dict[Reason, frozenset[str]] = {
    Reason.LOT_CONCENTRATION_UNVERIFIED: _P({"lot"}),
    Reason.DOSE_RESOLUTION_INVALID: _P({"dose_mg", "resolution_mg"}),
    Reason.VOLUME_ROUNDED: _P({"dose_mg", "delivered_mg", "volume_ml", "resolution_ml"}),
    Reason.NO_ACTIVE_ORDER: _P({"date"}),
    Reason.ORDER_NOT_YET_VALID: _P({"date", "valid_from"}),
    Reason.ORDER_EXPIRED: _P({"date", "valid_until"}),
    Reason.ORDER_WINDOW_END_MISSING: _P({"phase"}),
    Reason.ORDER_WINDOW_INVALID: _P({"valid_from", "valid_until"}),
    Reason.ORDER_WINDOW_TOO_SHORT: _P({"phase", "days", "min_days"}),
    Reason.ORDER_WINDOW_TOO_LONG: _P({"phase", "days", "max_days"}),
    Reason.ORDER_DOSE_NOT_POSITIVE: _P({"dose_mg"}),
    Reason.ORDER_PARTS_COUNT_INVALID: _P({"parts", "max_parts"}),
    Reason.ORDER_PARTS_SUM_MISMATCH: _P({"parts_sum_mg", "daily_total_mg"}),
    Reason.INDUCTION_FIRST_DOSE_TOO_HIGH: _P({"dose_mg", "max_mg"}),
    Reason.INDUCTION_FIRST_DOSE_CAUTION: _P({"dose_mg", "caution_mg", "max_mg"}),
    Reason.INDUCTION_FIRST_DOSE_BELOW_RANGE: _P({"dose_mg", "min_mg", "max_mg"}),
    Reason.INDUCTION_DAY1_TOTAL_EXCEEDED: _P({"total_mg", "max_mg"}),
    Reason.INDUCTION_EARLY_INCREASE: _P({"day", "dose_mg", "previous_mg"}),
    Reason.INDUCTION_COWS_MISSING: _P(),
    Reason.INDUCTION_TOPUP_TOO_EARLY: _P({"minutes", "min_minutes"}),
    Reason.INDUCTION_TOPUP_LATE: _P({"minutes", "max_minutes"}),
    Reason.INDUCTION_TOPUP_NO_WITHDRAWAL_SCORE: _P(),
    Reason.INDUCTION_TOPUP_NOT_INDICATED: _P({"cows", "cows_min"}),
    Reason.INDUCTION_TOPUP_TOO_LARGE: _P({"dose_mg", "allowed_mg", "cows"}),
    Reason.INDUCTION_TOPUP_ALLOWED: _P({"allowed_mg", "cows"}),
    Reason.INDUCTION_OBSERVATION: _P({"min_minutes", "max_minutes"}),
    Reason.TITRATION_INCREASE_TOO_SOON: _P({"days", "min_days", "last_increase_on"}),
    Reason.TITRATION_STEP_TOO_LARGE: _P({"step_mg", "max_step_mg"}),
    Reason.TITRATION_WEEKLY_CAP_EXCEEDED: _P({"increase_mg", "cap_mg", "window_days"}),
    Reason.ECG_REQUIRED_HIGH_DOSE: _P({"dose_mg", "threshold_mg", "max_age_days"}),
    Reason.HIGH_DOSE_REVIEW: _P({"dose_mg", "threshold_mg"}),
    Reason.DOSE_ABOVE_CEILING_COSIGN_REQUIRED: _P({"dose_mg", "ceiling_mg"}),
    Reason.DOSE_ABOVE_CEILING_COSIGNED: _P({"dose_mg", "ceiling_mg"}),
    Reason.PREDOSE_CHECK_MISSING: _P(),
    Reason.PREDOSE_CHECK_POSITIVE: _P({"signs"}),
    Reason.MISSED_DOSES_SHORT: _P({"days", "suggested"}),
    Reason.MISSED_DOSES_REVIEW: _P({"days", "suggested"}),
    Reason.MISSED_DOSES_SEE_PATIENT: _P({"days", "suggested"}),
    Reason.MISSED_DOSES_RESTART_INDUCTION: _P({"days", "suggested"}),
    Reason.TREATMENT_INTERRUPTION_REVIEW: _P({"days"}),
    Reason.VOMIT_NOT_WITNESSED: _P(),
    Reason.VOMIT_TIME_INVALID: _P(),
    Reason.VOMIT_REPLACEMENT_TOO_LATE: _P({"minutes", "max_minutes"}),
    Reason.VOMIT_REPLACEMENT_TOO_LARGE: _P({"dose_mg", "max_mg", "max_percent"}),
    Reason.VOMIT_REPLACEMENT_BELOW_RANGE: _P({"dose_mg", "min_mg", "min_percent"}),
    Reason.VOMIT_REPLACEMENT_ALLOWED: _P({"min_mg", "max_mg"}),
    Reason.TAPER_PHASE_INCREASE: _P({"dose_mg", "previous_mg"}),
    Reason.TAPER_BEFORE_ONE_YEAR: _P({"days", "min_days"}),
    Reason.TAPER_STEP_TOO_LARGE: _P({"percent", "max_percent", "min_mg"}),
    Reason.TAPER_STEPS_TOO_CLOSE: _P({"days", "min_days", "last_step_on"}),
    Reason.TAPER_LOW_DOSE_SLOWER: _P({"dose_mg", "threshold_mg"}),
    Reason.TAKE_HOME_DISABLED: _P(),
    Reason.TAKE_HOME_REQUEST_INVALID: _P(),
    Reason.TAKE_HOME_PHASE_NOT_ALLOWED: _P({"phase"}),
    Reason.TAKE_HOME_PREDOSE_BLOCKED: _P(),
    Reason.TAKE_HOME_DOSE_BLOCKED: _P(),
    Reason.TAKE_HOME_COMMITMENT_MISSING: _P(),
    Reason.TAKE_HOME_BEYOND_ORDER: _P({"last_day", "valid_until"}),
    Reason.TAKE_HOME_TOO_EARLY_IN_TREATMENT: _P({"days", "min_days"}),
    Reason.TAKE_HOME_DOSE_NOT_STABLE: _P({"days", "min_days"}),
    Reason.TAKE_HOME_RECENT_MISSED_DOSES: _P({"missed", "max_missed", "lookback_days"}),
    Reason.TAKE_HOME_SUPPLY_EXCEEDS_REGIME: _P({"days", "max_days", "treatment_days"}),
    Reason.TAKE_HOME_WEEKLY_LIMIT: _P({"count", "max_per_week"}),
    Reason.TAKE_HOME_CONSECUTIVE_LIMIT: _P({"count", "max_consecutive"}),
    Reason.TAKE_HOME_ALLOWED: _P({"days"}),
    Reason.QTC_ELEVATED_INCREASE: _P({"qtc_ms", "taken_on"}),
    Reason.QTC_CRITICAL_INCREASE_BLOCKED: _P({"qtc_ms", "taken_on", "threshold_ms"}),
    Reason.ECG_BASELINE_DUE: _P({"due_on"}),
    Reason.ECG_FOLLOW_UP_DUE: _P({"due_on"}),
    Reason.ECG_YEARLY_DUE: _P({"due_on"}),
    Reason.ECG_HIGH_DOSE_DUE: _P({"due_on", "dose_mg"}),
    Reason.INTERACTION_LEVELS_LOWERED: _P({"drug", "change", "from_day", "to_day"}),
    Reason.INTERACTION_LEVELS_RAISED: _P({"drug", "change"}),
    Reason.INTERACTION_WATCH: _P({"drug", "until"}),
    Reason.DOSING_ERROR_INCIDENT: _P({"recorded_mg", "ordered_mg", "excess_mg"}),
    Reason.DOSING_ERROR_OBSERVATION: _P({"min_minutes"}),
    Reason.DOSING_ERROR_PHYSICIAN_ALERT: _P({"recorded_mg", "ordered_mg"}),
}
