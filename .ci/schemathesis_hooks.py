"""Hooks for the schemathesis run in .ci/schemathesis.

- Each generated request is a new request, so it gets an `Idempotency-Key` of
  its own: a key reused for a different body is refused (422,
  `idempotency_key_reused`) by design, and replays with the same key are
  covered by the test suite.
- A claim waits at most a second for work (`wait_s` up to 60 is valid, and
  would wait that long on an agent with nothing ready): the long poll itself
  is covered by the test suite.
"""

import uuid

import schemathesis


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = f"st-{uuid.uuid4().hex}"
    if case.path.endswith("/claim") and isinstance(case.body, dict):
        wait = case.body.get("wait_s")
        # 52.0 is a valid integer too (JSON Schema counts integral numbers).
        if isinstance(wait, (int, float)) and not isinstance(wait, bool) and wait > 1:
            case.body["wait_s"] = 1
