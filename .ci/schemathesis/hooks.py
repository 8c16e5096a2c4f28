"""Schemathesis hooks for the CIFIX LEARN API: sign in as the account the run tests as.

Schemathesis asks `get` again whenever a response is 401, so a session ended by one of the
run's own calls (logout, logout-all, a password reset) is replaced by a fresh sign-in.
"""

import json
import os
import urllib.request
import uuid

import schemathesis


@schemathesis.auth()
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
