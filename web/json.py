"""JSON in and out without binary floating point: numbers with a fraction are parsed as Decimal
(so 20.1 mg stays 20.1 mg), and Decimals are written as strings."""

from __future__ import annotations

import json
from decimal import Decimal

from flask.json.provider import DefaultJSONProvider


class ExactJSONProvider(DefaultJSONProvider):
    def loads(self, s: str | bytes, **kwargs):
        kwargs.setdefault("parse_float", Decimal)
        return json.loads(s, **kwargs)
