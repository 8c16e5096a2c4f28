"""Tests of the installed Python client against a live `cifix serve` (see .ci/clients-test.sh).

Environment: CIFIX_URL, CIFIX_CLIENT_ID, CIFIX_CLIENT_SECRET, CIFIX_STUDENT_TOKEN (a student's
access token) and CIFIX_COURSE_ID (a published course the bundled rules recommend for a weak
python score).
"""

from __future__ import annotations

import json
import os
import time
import unittest
import urllib.request
import uuid
from typing import Any, List, Tuple

from cifix_client import CifixClient, CifixError, sign


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        # Failing, not skipping: a run without a server must not look like a passing one.
        raise AssertionError("%s is not set (run .ci/clients-test.sh)" % name)
    return value


def as_student(method: str, path: str) -> Tuple[int, Any]:
    req = urllib.request.Request(
        env("CIFIX_URL") + "/api/v1" + path,
        data=b"{}" if method == "POST" else None,
        headers={"Authorization": "Bearer " + env("CIFIX_STUDENT_TOKEN"), "Content-Type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(req, timeout=10) as res:
        return res.status, json.loads(res.read())


class SignatureVector(unittest.TestCase):
    def test_matches_the_server_scheme(self) -> None:
        # Same inputs as the Rust unit test `signatures_match_the_documented_scheme`.
        sig = sign("s3cret", 1700000000, "abcdefghijklmnop", "post", "/api/v1/x", b"{}")
        self.assertEqual(sig, "v1=e324b0a5333146d30b40965a24ad6e1707a87ee4c3c376ff4a6782f771cdadfb")


class LiveServer(unittest.TestCase):
    def setUp(self) -> None:
        self.client = CifixClient(env("CIFIX_URL"), env("CIFIX_CLIENT_ID"), env("CIFIX_CLIENT_SECRET"), backoff=0.05)

    def test_round_trip_start_results_learning_path(self) -> None:
        status, started = as_student("POST", "/me/assessments")
        self.assertEqual(status, 201)
        self.assertEqual(started["status"], "pending")
        self.assertIn("launch_token=" + started["launch_token"], started["launch_url"])

        who = self.client.launch(started["launch_token"])
        self.assertEqual(who["assessment_id"], started["id"])
        self.assertEqual(who["status"], "pending")

        run_id = "py-%s" % uuid.uuid4()
        kwargs: Any = dict(external_id=run_id, launch_token=started["launch_token"], overall_score=40,
                           skills={"python": 35, "ai": 20}, details={"source": "test_client.py"},
                           completed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        created, assessment = self.client.post_results(**kwargs)
        self.assertTrue(created)
        self.assertEqual(assessment["status"], "completed")
        # A retry of the same delivery (e.g. after a lost response) is harmless.
        created, again = self.client.post_results(**kwargs)
        self.assertFalse(created)
        self.assertEqual(again, assessment)
        # The same external_id with other results is a conflict, not retried.
        kwargs["overall_score"] = 90
        with self.assertRaises(CifixError) as ctx:
            self.client.post_results(**kwargs)
        self.assertEqual(ctx.exception.status, 409)
        self.assertEqual(ctx.exception.code, "external-id-conflict")

        status, path = as_student("GET", "/me/learning-path")
        self.assertEqual(status, 200)
        self.assertEqual(path["based_on_assessment_id"], started["id"])
        # The weakest skill comes first, so where the python course lands depends on the catalog.
        python_steps = [s for s in path["steps"] if s["course_id"] == env("CIFIX_COURSE_ID")]
        self.assertEqual(len(python_steps), 1, path["steps"])
        self.assertIn("Your python score was 35/100", python_steps[0]["reason"])

    def test_a_used_launch_token_reads_completed_and_refuses_other_results(self) -> None:
        _, started = as_student("POST", "/me/assessments")
        self.client.post_results(external_id="py-%s" % uuid.uuid4(), launch_token=started["launch_token"],
                                 overall_score=70, skills={"python": 70})
        self.assertEqual(self.client.launch(started["launch_token"])["status"], "completed")
        with self.assertRaises(CifixError) as ctx:
            self.client.post_results(external_id="py-%s" % uuid.uuid4(), launch_token=started["launch_token"],
                                     overall_score=10, skills={"python": 10})
        self.assertEqual((ctx.exception.status, ctx.exception.code), (409, "assessment-completed"))

    def test_validation_errors_name_the_field(self) -> None:
        status, started = as_student("POST", "/me/assessments")
        with self.assertRaises(CifixError) as ctx:
            self.client.post_results(external_id="bad", assessment_id=started["id"], overall_score=101,
                                     skills={"python": 10})
        self.assertEqual(ctx.exception.status, 422)
        self.assertEqual([e["field"] for e in ctx.exception.problem["errors"]], ["overall_score"])

    def test_an_unknown_launch_token_is_404(self) -> None:
        with self.assertRaises(CifixError) as ctx:
            self.client.launch("no-such-token")
        self.assertEqual(ctx.exception.status, 404)

    def test_wrong_secret_is_401_and_not_retried(self) -> None:
        calls: List[float] = []
        bad = CifixClient(env("CIFIX_URL"), env("CIFIX_CLIENT_ID"), "wrong", sleep=calls.append)
        with self.assertRaises(CifixError) as ctx:
            bad.launch("whatever")
        self.assertEqual(ctx.exception.status, 401)
        self.assertEqual(calls, [])

    def test_network_errors_are_retried_with_backoff(self) -> None:
        delays: List[float] = []
        down = CifixClient("http://127.0.0.1:9", "id", "secret", retries=2, backoff=0.1, sleep=delays.append)
        with self.assertRaises(CifixError) as ctx:
            down.launch("x")
        self.assertEqual(ctx.exception.status, 0)
        self.assertEqual(delays, [0.1, 0.2])


if __name__ == "__main__":
    unittest.main(verbosity=2)
