"""POST /api/bench/ceiling: the intake's ceiling for scripts/bench_intake.py.

Registered only with THROTTLE_BENCH_ENDPOINTS=true. It reads the body, hashes it, parses the
JSON and answers with jsonify, without the signature check or the database. The real intake
answers a new BLOCK with cached bytes, so the ceiling's answer costs a little more than the
intake's.
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
