"""Orders API (y lệnh): draft, revise, evaluate, sign (with password, acknowledgements and an
optional co-signer), supersede, discard, and stop or suspend treatment."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from flask_babel import lazy_gettext
from flask_smorest import Blueprint
from sqlalchemy import select

from dispensing import orders
from dispensing.errors import NotFound
from dispensing.models import Order, Phase, Role
from dispensing.patients import get_patient
from dispensing.permissions import require_role
from web import context
from web.api.patients import DecisionSchema
from web.database import db
from web.errors import register_messages

blp = Blueprint("api_orders", __name__, description="Physician orders (y lệnh)")

register_messages({
    "ORDER_NOT_FOUND": lazy_gettext("Order not found."),
    "ORDER_NOT_DRAFT": lazy_gettext("A signed order never changes: write a new order that supersedes it."),
    "ORDER_BLOCKED": lazy_gettext("The rules block this order; see the decisions."),
    "ACKNOWLEDGEMENT_REQUIRED": lazy_gettext("Acknowledge every warning (with a reason where asked) before signing."),
    "ORDER_DOSE_INVALID": lazy_gettext("Each dose must be a positive number of mg with at most one decimal."),
    "ORDER_PARTS_INVALID": lazy_gettext("An order has one to three parts."),
    "ORDER_WINDOW_INVALID": lazy_gettext("The order ends before it starts."),
    "ORDER_REASON_REQUIRED": lazy_gettext("A reason is required."),
    "ORDER_LIFT_INVALID": lazy_gettext("Unknown rule code in the lifted blocks."),
    "COSIGNER_INVALID": lazy_gettext("The co-signer must be another physician of this clinic."),
})


class LiftSchema(ma.Schema):
    code = ma.fields.String(required=True)
    subject = ma.fields.String(allow_none=True)


class OrderWriteSchema(ma.Schema):
    phase = ma.fields.Enum(Phase, by_value=True, required=True)
    parts_mg = ma.fields.List(ma.fields.Decimal(), required=True, validate=ma.validate.Length(min=1, max=3))
    valid_from = ma.fields.Date(required=True)
    valid_until = ma.fields.Date(allow_none=True, load_default=None)
    take_home_plan = ma.fields.Dict(allow_none=True, load_default=None)
    reason = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=2000), load_default=None)
    lifts = ma.fields.List(ma.fields.Nested(LiftSchema), load_default=list)


class OrderPartSchema(ma.Schema):
    part_no = ma.fields.Integer()
    dose_mg = ma.fields.Decimal(as_string=True)


class OrderSchema(ma.Schema):
    id = ma.fields.Integer()
    patient_id = ma.fields.Integer()
    kind = ma.fields.Function(lambda o: o.kind.value)
    status = ma.fields.Function(lambda o: o.status.value)
    phase = ma.fields.Function(lambda o: o.phase.value if o.phase else None)
    daily_total_mg = ma.fields.Decimal(as_string=True)
    parts = ma.fields.List(ma.fields.Nested(OrderPartSchema))
    valid_from = ma.fields.Date()
    valid_until = ma.fields.Date(allow_none=True)
    supersedes_id = ma.fields.Integer(allow_none=True)
    signed_by_id = ma.fields.Integer(allow_none=True)
    signed_at = ma.fields.AwareDateTime(allow_none=True)
    cosigned_by_id = ma.fields.Integer(allow_none=True)
    rule_table_version = ma.fields.String(allow_none=True)
    decisions = ma.fields.List(ma.fields.Dict(), allow_none=True)
    lifts = ma.fields.List(ma.fields.Dict(), allow_none=True)
    reason = ma.fields.String(allow_none=True)


class AcknowledgementSchema(ma.Schema):
    code = ma.fields.String(required=True)
    reason = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=2000))


class CosignerSchema(ma.Schema):
    username = ma.fields.String(required=True)
    password = ma.fields.String(required=True, load_only=True)


class SignSchema(ma.Schema):
    password = ma.fields.String(required=True, load_only=True)
    acknowledgements = ma.fields.List(ma.fields.Nested(AcknowledgementSchema), load_default=list)
    cosigner = ma.fields.Nested(CosignerSchema, allow_none=True, load_default=None)


class ControlSchema(ma.Schema):
    from_date = ma.fields.Date(required=True)
    until = ma.fields.Date(allow_none=True, load_default=None)
    reason = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=2000))
    password = ma.fields.String(required=True, load_only=True)


class EvaluationSchema(ma.Schema):
    order_id = ma.fields.Integer()
    rule_set_version = ma.fields.String()
    outcome = ma.fields.String()
    decisions = ma.fields.List(ma.fields.Nested(DecisionSchema))


def _draft(data: dict) -> orders.OrderDraft:
    return orders.OrderDraft(
        phase=data["phase"], parts=tuple(data["parts_mg"]), valid_from=data["valid_from"],
        valid_until=data["valid_until"], take_home_plan=data["take_home_plan"], reason=data["reason"],
        lifts=tuple(data["lifts"]),
    )


def _order(order_id: int) -> Order:
    order = db().get(Order, order_id)
    if order is None:
        raise NotFound("order", code="ORDER_NOT_FOUND")
    get_patient(db(), context.actor(), order.patient_id)
    return order


@blp.route("/patients/<int:patient_id>/orders")
class PatientOrders(MethodView):
    @blp.response(200, OrderSchema(many=True))
    def get(self, patient_id):
        """The patient's orders, newest first (drafts, signed, discarded)."""
        require_role(context.actor(), Role.PHYSICIAN, Role.NURSE, Role.PHARMACIST, Role.ADMIN)
        patient = get_patient(db(), context.actor(), patient_id)
        return db().scalars(select(Order).where(Order.patient_id == patient.id).order_by(Order.id.desc()))

    @blp.arguments(OrderWriteSchema)
    @blp.response(201, OrderSchema)
    def post(self, data, patient_id):
        """Draft a dosing order (physicians only)."""
        return orders.draft_order(db(), context.actor(), patient_id, _draft(data))


@blp.route("/orders/<int:order_id>")
class OrderItem(MethodView):
    @blp.response(200, OrderSchema)
    def get(self, order_id):
        require_role(context.actor(), Role.PHYSICIAN, Role.NURSE, Role.PHARMACIST, Role.ADMIN)
        return _order(order_id)

    @blp.arguments(OrderWriteSchema)
    @blp.response(200, OrderSchema)
    def put(self, data, order_id):
        """Revise a draft; a signed order is refused (ORDER_NOT_DRAFT)."""
        return orders.revise_draft(db(), context.actor(), order_id, _draft(data))


@blp.route("/orders/<int:order_id>/evaluate")
class OrderEvaluate(MethodView):
    @blp.response(200, EvaluationSchema)
    def post(self, order_id):
        """The rule decisions for this order as it stands, before signing."""
        require_role(context.actor(), Role.PHYSICIAN)
        order = _order(order_id)
        rule_set = context.rule_set()
        decisions = orders.evaluate(db(), rule_set, order, context.today(), signer=context.actor())
        from dispensing.rules import worst

        return {"order_id": order.id, "rule_set_version": rule_set.version, "outcome": worst(decisions).value,
                "decisions": [orders.decision_json(d) for d in decisions]}


@blp.route("/orders/<int:order_id>/sign")
class OrderSign(MethodView):
    @blp.arguments(SignSchema)
    @blp.response(200, OrderSchema)
    def post(self, data, order_id):
        """Sign with password re-entry; WARNs must be acknowledged, BLOCKs refuse (422 with decisions)."""
        cosigner = (data["cosigner"]["username"], data["cosigner"]["password"]) if data["cosigner"] else None
        return orders.sign_order(
            db(), context.actor(), context.rule_set(), order_id, data["password"], context.today(),
            acknowledgements={a["code"]: a.get("reason") for a in data["acknowledgements"]}, cosigner=cosigner)


@blp.route("/orders/<int:order_id>/supersede")
class OrderSupersede(MethodView):
    @blp.arguments(OrderWriteSchema)
    @blp.response(201, OrderSchema)
    def post(self, data, order_id):
        """Draft a new order that will supersede this signed one when signed."""
        require_role(context.actor(), Role.PHYSICIAN)
        current = _order(order_id)
        draft = orders.draft_order(db(), context.actor(), current.patient_id, _draft(data))
        draft.supersedes_id = current.id
        db().commit()
        return draft


@blp.route("/orders/<int:order_id>/discard")
class OrderDiscard(MethodView):
    @blp.response(200, OrderSchema)
    def post(self, order_id):
        return orders.discard_draft(db(), context.actor(), order_id)


@blp.route("/patients/<int:patient_id>/stop")
class PatientStop(MethodView):
    @blp.arguments(ControlSchema)
    @blp.response(201, OrderSchema)
    def post(self, data, patient_id):
        """Sign an order stopping treatment from a date."""
        return orders.stop_treatment(db(), context.actor(), context.rule_set(), patient_id, data["from_date"],
                                     data["reason"], data["password"])


@blp.route("/patients/<int:patient_id>/suspend")
class PatientSuspend(MethodView):
    @blp.arguments(ControlSchema)
    @blp.response(201, OrderSchema)
    def post(self, data, patient_id):
        """Sign an order suspending dosing between two dates."""
        from dispensing.errors import ValidationFailed

        if data["until"] is None:
            raise ValidationFailed("until", code="ORDER_WINDOW_INVALID")
        return orders.suspend_treatment(db(), context.actor(), context.rule_set(), patient_id, data["from_date"],
                                        data["until"], data["reason"], data["password"])
