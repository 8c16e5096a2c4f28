"""Schemathesis hooks for the CIFIX LEARN API: sign in as the account the run tests as.

Every case signs in afresh (no cached token). The run's own calls end sessions (logout,
logout-all, revoking a listed session), and Schemathesis' reactive re-login on 401 is not enough:
once a replay of an operation answers 401 for any reason it stops re-logging for that operation,
so a later stale token there reads as "valid data rejected". A session per case costs a cheap
sign-in (bcrypt cost 4) and makes every 401 the run sees the server's judgement of the request.
"""

import json
import os
import urllib.request
import uuid

import schemathesis


@schemathesis.auth(refresh_interval=None)
class SignIn:
    def get(self, case, ctx):
        body = json.dumps({"email": os.environ["CIFIX_ST_EMAIL"], "password": os.environ["CIFIX_ST_PASSWORD"]})
        request = urllib.request.Request(
            os.environ["CIFIX_ST_BASE"] + "/api/v1/auth/login",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)["access_token"]

    def set(self, case, data, ctx):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    """One Idempotency-Key per request, as a real client uses one per operation.

    Generated keys repeat across different bodies, and the server rightly answers a key reused
    with another request with 422; that rule has its own tests in the suite.
    """
    key = (case.headers or {}).get("Idempotency-Key")
    if isinstance(key, str) and 1 <= len(key) <= 200 and all("!" <= c <= "~" for c in key):
        case.headers["Idempotency-Key"] = uuid.uuid4().hex
