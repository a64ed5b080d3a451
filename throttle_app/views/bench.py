"""POST /api/bench/ceiling: the intake's ceiling for scripts/bench_intake.py.

Registered only with THROTTLE_BENCH_ENDPOINTS=true. It does what the real intake does except
the database: read the body, hash it, parse the JSON, answer JSON.
"""

from __future__ import annotations

import json

from flask import Blueprint, jsonify, request

from throttle_app.hubspot.signatures import v2_signature

bp = Blueprint("bench", __name__)


@bp.post("/api/bench/ceiling")
def ceiling():
    body = request.get_data(cache=True)
    digest = v2_signature("secret", "POST", request.url, body)
    payload = json.loads(body)
    state = "BLOCK" if digest and isinstance(payload, dict) else "FAIL_CONTINUE"
    return jsonify({"outputFields": {"hs_execution_state": state, "hs_expiration_duration": "P4W"}})
