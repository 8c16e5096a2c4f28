"""Prepares a live server for the client tests, through the API as an operator would: the admin
signs in and creates a machine client for the tool, and a student registers. Prints shell
`export` lines (names prefixed by argv[1], default CIFIX_) for .ci/clients-test.sh to eval.

Environment: CIFIX_URL, ADMIN_EMAIL, ADMIN_PASSWORD.
"""

import json
import os
import sys
import urllib.error
import urllib.request
import uuid
from typing import Any, Dict, Optional

BASE = os.environ["CIFIX_URL"] + "/api/v1"


def call(method: str, path: str, body: Optional[Dict[str, Any]] = None, token: Optional[str] = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return json.loads(res.read() or b"null")
    except urllib.error.HTTPError as e:
        sys.exit("provision: %s %s answered %s: %s" % (method, path, e.code, e.read().decode()))


def main() -> None:
    prefix = sys.argv[1] if len(sys.argv) > 1 else "CIFIX_"
    admin = call("POST", "/auth/login", {"email": os.environ["ADMIN_EMAIL"], "password": os.environ["ADMIN_PASSWORD"]})
    client = call("POST", "/admin/integrations/clients", {"name": "client tests"}, admin["access_token"])
    email, password = "student-%s@example.com" % uuid.uuid4().hex[:12], "another-stapler-battery-7"
    student = call("POST", "/auth/register", {"email": email, "password": password, "display_name": "Sam"})
    courses = call("GET", "/courses?limit=100", token=admin["access_token"])["items"]
    python_course = [c["id"] for c in courses if c["slug"] == "python-first-steps"]
    out = {
        "URL": os.environ["CIFIX_URL"],
        "CLIENT_ID": client["client_id"],
        "CLIENT_SECRET": client["client_secret"],
        "STUDENT_EMAIL": email,
        "STUDENT_PASSWORD": password,
        "STUDENT_TOKEN": student["access_token"],
        "COURSE_ID": python_course[0] if python_course else "",
    }
    print(" ".join("export %s%s='%s';" % (prefix, k, v) for k, v in out.items()))


if __name__ == "__main__":
    main()
