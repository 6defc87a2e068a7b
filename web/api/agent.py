"""Counter agent API: what ``run.py agent`` on a counter PC calls. Authenticated by the counter's
token (``Authorization: Bearer mmt-agent.<counter>.<secret>``), not by a session, so CSRF does not
apply; an agent sees and reports only its own counter's doses.

GET setup → POST recovery (once, at agent start) → then GET jobs/next (204 when idle), POST
doses/{id}/progress {"state": "programmed"} (before RUN; a 409 means do not run) and "running",
POST doses/{id}/result with the dispense result as ``DispenseResult.to_dict()`` gives it.

The counter's balance service: GET weighings/next (204 when idle; the request becomes READING) →
POST weighings/{id}/result {"outcome": "completed", "grams", "stable", "unit", "model",
"serial_number"} or {"outcome": "failed", "reason", "detail"}. Only this counter's requests.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import marshmallow as ma
from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint

from dispensing import counter, weighing
from dispensing.errors import ValidationFailed
from dispensing.models import Counter
from web import context
from web.database import db
from web.extensions import csrf

blp = Blueprint("api_agent", __name__, description="Counter agents (device service on a counter PC)")
csrf.exempt(blp)


class AgentSetupSchema(ma.Schema):
    counter_id = ma.fields.Integer()
    counter_code = ma.fields.String()
    device_id = ma.fields.Integer()
    device_code = ma.fields.String()
    driver = ma.fields.String()
    url = ma.fields.String()
    settings = ma.fields.Dict()
    ceiling_ml = ma.fields.String()


class AgentRecoverySchema(ma.Schema):
    pump_counter_ml = ma.fields.String(allow_none=True, load_default=None)
    note = ma.fields.String(allow_none=True, load_default=None, validate=ma.validate.Length(max=500))


class AgentRecoveryOutSchema(ma.Schema):
    unknown = ma.fields.List(ma.fields.Integer())


class AgentJobSchema(ma.Schema):
    dose_id = ma.fields.Integer()
    volume_ml = ma.fields.String()
    ceiling_ml = ma.fields.String()
    calibration = ma.fields.Dict(allow_none=True)


class AgentProgressSchema(ma.Schema):
    state = ma.fields.String(required=True, validate=ma.validate.OneOf(["programmed", "running"]))


class AgentResultSchema(ma.Schema):
    class Meta:
        unknown = ma.INCLUDE

    outcome = ma.fields.String(required=True, validate=ma.validate.OneOf(["COMPLETED", "PARTIAL", "FAILED"]))
    target_ml = ma.fields.Raw(required=True)
    measured_ml = ma.fields.Raw(required=True)
    reason = ma.fields.String(allow_none=True)
    uncertain = ma.fields.Boolean(required=True)
    transcript = ma.fields.List(ma.fields.Dict(), load_default=list)


class AgentAckSchema(ma.Schema):
    dose_id = ma.fields.Integer()
    state = ma.fields.String()


def _agent() -> Counter:
    """The counter whose agent is calling (401 AGENT_TOKEN_INVALID otherwise)."""
    return counter.agent_counter(db(), request.headers.get("Authorization"))


@blp.route("/setup")
class AgentSetup(MethodView):
    @blp.response(200, AgentSetupSchema)
    def get(self):
        """The counter's pump: driver, port URL, driver settings and the application's ceiling."""
        return counter.pump_setup(db(), _agent()).to_dict()


@blp.route("/recovery")
class AgentRecovery(MethodView):
    @blp.arguments(AgentRecoverySchema)
    @blp.response(200, AgentRecoveryOutSchema)
    def post(self, data):
        """At agent start: every dose of this counter left in flight becomes UNKNOWN, with the pump's
        counter reading (raw ml as the pump shows it) when it could be read."""
        agent = _agent()
        reading = data.get("pump_counter_ml")
        try:
            reading = None if reading is None else Decimal(reading)
        except InvalidOperation as exc:
            raise ValidationFailed("pump_counter_ml", code="DEVICE_RESULT_INVALID") from exc
        doses = counter.recover_counter(db(), agent.id, pump_counter_ml=reading, note=data.get("note"))
        return {"unknown": [d.id for d in doses]}


@blp.route("/jobs/next")
class AgentNextJob(MethodView):
    @blp.response(200, AgentJobSchema)
    @blp.alt_response(204, description="Nothing to deliver")
    def get(self):
        """The next dose for this counter's pump, or 204. Agents poll; the server never waits."""
        agent = _agent()
        job = counter.next_job(db(), agent.id)
        if job is None:
            return Response(status=204)
        return job.to_dict()


@blp.route("/doses/<int:dose_id>/progress")
class AgentProgress(MethodView):
    @blp.arguments(AgentProgressSchema)
    @blp.response(200, AgentAckSchema)
    def post(self, data, dose_id):
        """PROGRAMMED (before RUN — a refusal means RUN must not be sent) or RUNNING."""
        agent = _agent()
        dose = counter.record_progress(db(), agent.id, dose_id, data["state"])
        return {"dose_id": dose.id, "state": dose.state.value}


@blp.route("/doses/<int:dose_id>/result")
class AgentResult(MethodView):
    @blp.arguments(AgentResultSchema)
    @blp.response(200, AgentAckSchema)
    def post(self, data, dose_id):
        """The dispense result; the final state and the ledger line are written together. A result
        repeated after a lost answer changes nothing."""
        agent = _agent()
        outcome = counter.DeviceOutcome.from_dict(data)
        dose = counter.record_result(db(), agent.id, dose_id, outcome, context.rulebook().for_clinic)
        return {"dose_id": dose.id, "state": dose.state.value}


class AgentWeighingJobSchema(ma.Schema):
    request_id = ma.fields.Integer()
    device_id = ma.fields.Integer()
    device_code = ma.fields.String()
    counter_code = ma.fields.String()
    driver = ma.fields.String()
    url = ma.fields.String()
    settings = ma.fields.Dict()
    serial_number = ma.fields.String(allow_none=True)
    timeout_s = ma.fields.Float()


class AgentWeighingResultSchema(ma.Schema):
    outcome = ma.fields.String(required=True, validate=ma.validate.OneOf(["completed", "failed"]))
    grams = ma.fields.String(allow_none=True, load_default=None, validate=ma.validate.Length(max=40))
    stable = ma.fields.Boolean(allow_none=True, load_default=None)
    unit = ma.fields.String(allow_none=True, load_default=None, validate=ma.validate.Length(max=8))
    model = ma.fields.String(allow_none=True, load_default=None, validate=ma.validate.Length(max=128))
    serial_number = ma.fields.String(allow_none=True, load_default=None, validate=ma.validate.Length(max=64))
    reason = ma.fields.String(allow_none=True, load_default=None, validate=ma.validate.Length(max=40))
    detail = ma.fields.String(allow_none=True, load_default=None, validate=ma.validate.Length(max=200))


class AgentWeighingAckSchema(ma.Schema):
    request_id = ma.fields.Integer()
    state = ma.fields.String()


@blp.route("/weighings/next")
class AgentNextWeighing(MethodView):
    @blp.response(200, AgentWeighingJobSchema)
    @blp.alt_response(204, description="No balance to read")
    def get(self):
        """The next balance reading asked of this counter (it becomes READING), or 204."""
        agent = _agent()
        job = weighing.next_weighing(db(), agent.id)
        if job is None:
            return Response(status=204)
        return job.to_dict()


@blp.route("/weighings/<int:request_id>/result")
class AgentWeighingResult(MethodView):
    @blp.arguments(AgentWeighingResultSchema)
    @blp.response(200, AgentWeighingAckSchema)
    def post(self, data, request_id):
        """One stable weight in grams with the balance's identity, or the reason there is none.
        A weight that is not stable or not in grams is recorded as a failure; a result after the
        request expired leaves it EXPIRED; a repeated result changes nothing."""
        agent = _agent()
        outcome = weighing.WeighingOutcome.from_dict(data)
        request_row = weighing.record_weighing_result(db(), agent.id, request_id, outcome)
        return {"request_id": request_row.id, "state": request_row.state.value}
