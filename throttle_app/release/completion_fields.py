"""What each completion tells the workflow: the output fields sent with a callback's state.

Every completion carries `hs_execution_state` (SUCCESS or FAIL_CONTINUE) and the action's
declared outputs (hubspot/action_fields.py), as strings, as HubSpot takes output values:
- `throttle_outcome`: `released` with SUCCESS, `failed` with FAIL_CONTINUE (the attempt limit
  was reached). `expired` is declared but never sent: an execution whose hold lapsed is expired
  by the cleaner without a call, because HubSpot has already moved the record on by itself
  (with no output fields), and the claim never takes a row whose hold has ended.
- `throttle_waited_seconds`: whole seconds from admission (`created_at`, the database's clock)
  to this send (this process's clock; hosts are assumed NTP-synchronised, a negative difference
  from clock skew reads 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from throttle_app.hubspot.action_fields import FAILED, OUTCOME_FIELD, RELEASED, WAITED_FIELD
from throttle_app.release.claims import ClaimedRow

SUCCESS = "SUCCESS"


def output_fields(row: ClaimedRow, state: str, now: datetime) -> dict[str, str]:
    """The outputFields completing `row` with `state` at `now` (timezone-aware)."""
    waited = max(0, int((now - row.created_at).total_seconds()))
    return {
        "hs_execution_state": state,
        OUTCOME_FIELD: RELEASED if state == SUCCESS else FAILED,
        WAITED_FIELD: str(waited),
    }


def completions(
    rows: Sequence[ClaimedRow], state: str, now: datetime
) -> list[tuple[str, dict[str, str]]]:
    """(callbackId, outputFields) for each row, as the callbacks client sends them."""
    return [(row.callback_id, output_fields(row, state, now)) for row in rows]
