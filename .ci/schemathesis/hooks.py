"""Schemathesis hooks for the CIFIX LEARN API: sign in as the account the run tests as.

The run's own calls end sessions (logout, logout-all, revoking a listed session), so a token
can die between the moment Schemathesis puts it on a case and the moment the case is sent or
replayed (when it reproduces a failure, or steps through a stateful scenario). Every request
that carries a token this hook issued is therefore sent with one signed in for it just before
(`before_call` runs on every send, replays included), and so is a schema-valid request that
carries a token of Schemathesis's own making; a request built without auth, or a negative one
with a made-up token, is left as it is. A sign-in is cheap (bcrypt cost 4),
and every 401 the run sees is the server's judgement of the request that got it.
"""

import json
import os
import urllib.request
import uuid

import schemathesis

ISSUED = set()


def sign_in():
    body = json.dumps({"email": os.environ["CIFIX_ST_EMAIL"], "password": os.environ["CIFIX_ST_PASSWORD"]})
    request = urllib.request.Request(
        os.environ["CIFIX_ST_BASE"] + "/api/v1/auth/login",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        token = json.load(response)["access_token"]
    ISSUED.add(token)
    return token


@schemathesis.auth(refresh_interval=None)
class SignIn:
    def get(self, case, ctx):
        return sign_in()

    def set(self, case, data, ctx):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    """A fresh token for a request that carries one of ours, and one Idempotency-Key per request.

    Generated keys repeat across different bodies, and the server rightly answers a key reused
    with another request with 422; that rule has its own tests in the suite.
    """
    headers = case.headers or {}
    auth = headers.get("Authorization")
    ours = isinstance(auth, str) and auth.startswith("Bearer ") and auth[len("Bearer "):] in ISSUED
    # A case meant to be valid whose Authorization Schemathesis made up itself (a schema cannot
    # say which tokens exist) is sent with a real one; a negative case keeps what it was given.
    made_up = auth is not None and not ours and case.meta is not None and case.meta.generation.mode.is_positive
    if ours or made_up:
        case.headers["Authorization"] = f"Bearer {sign_in()}"
    key = headers.get("Idempotency-Key")
    if isinstance(key, str) and 1 <= len(key) <= 200 and all("!" <= c <= "~" for c in key):
        case.headers["Idempotency-Key"] = uuid.uuid4().hex
