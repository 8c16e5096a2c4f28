"""The app driven by Streamlit's AppTest against a live CIFIX LEARN (see .ci/clients-test.sh).

Environment: CIFIX_URL, CIFIX_CLIENT_ID, CIFIX_CLIENT_SECRET (a server with the demo catalog),
and CIFIX_SHORT_URL, CIFIX_SHORT_CLIENT_ID, CIFIX_SHORT_CLIENT_SECRET (a server whose launches
expire after one second).
"""

from __future__ import annotations

import json
import logging
import os
import time
import unittest
import urllib.request
import uuid
from typing import Any, Dict, Optional
from unittest import mock

from cifix_client import CifixClient
from streamlit.testing.v1 import AppTest

# AppTest runs the script without a server, which Streamlit warns about on every run (a filter,
# because Streamlit resets its loggers' levels).
logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").addFilter(
    lambda record: "missing ScriptRunContext" not in record.getMessage()
)

SETTINGS = ("CIFIX_URL", "CIFIX_CLIENT_ID", "CIFIX_CLIENT_SECRET")


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise AssertionError("%s is not set (run .ci/clients-test.sh)" % name)
    return value


def call(base: str, method: str, path: str, token: Optional[str] = None, body: Optional[Dict[str, Any]] = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    req = urllib.request.Request(base + "/api/v1" + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as res:
        return json.loads(res.read() or b"null")


class Student:
    """A new student on the server at `base`, who starts assessments as the web app does."""

    def __init__(self, base: str) -> None:
        self.base = base
        email = "kid-%s@example.com" % uuid.uuid4().hex[:12]
        body = {"email": email, "password": "another-stapler-battery-7", "display_name": "Robin"}
        self.token = call(base, "POST", "/auth/register", body=body)["access_token"]

    def start(self) -> Dict[str, Any]:
        started: Dict[str, Any] = call(self.base, "POST", "/me/assessments", self.token)
        return started

    def get(self, path: str) -> Any:
        return call(self.base, "GET", path, self.token)


def open_app(launch_token: Optional[str]) -> AppTest:
    at = AppTest.from_file("app.py", default_timeout=30)
    if launch_token is not None:
        at.query_params["launch_token"] = launch_token
    at.run()
    assert not at.exception, at.exception
    return at


def answer(at: AppTest, answers: Dict[str, str]) -> AppTest:
    for radio in at.radio:
        if radio.label in answers:
            radio.set_value(answers[radio.label])
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


RIGHT = {
    "What does `print(2 + 3)` show?": "5",
    "Which line stores the name Ada in a variable?": "name = \"Ada\"",
    "How many times does `for i in range(3):` repeat?": "3",
    "How does a computer learn to tell cats from dogs?": "From many labelled example pictures",
    "A chatbot gives you an answer. What should you do?": "Check important facts",
    "What is a \"bias\" in an AI system?": "Unfair results learned from unfair examples",
}
# One python answer right of three, every ai answer right.
WEAK_PYTHON = {**RIGHT, "What does `print(2 + 3)` show?": "23", "How many times does `for i in range(3):` repeat?": "4"}


class TakingTheAssessment(unittest.TestCase):
    def test_the_student_answers_and_gets_a_learning_path(self) -> None:
        student = Student(env("CIFIX_URL"))
        started = student.start()
        at = open_app(started["launch_token"])
        self.assertEqual(at.title[0].value, "Hi Robin! Let's see what you already know")
        self.assertEqual([r.label for r in at.radio], list(RIGHT))

        answer(at, WEAK_PYTHON)
        self.assertEqual(at.title[0].value, "Well done, Robin! 🎉")
        self.assertEqual(at.metric[0].value, "67 / 100")
        self.assertEqual([m.value for m in at.markdown], ["**Artificial intelligence**: 100 / 100", "**Python**: 33 / 100"])
        self.assertIn("learning path is ready", at.success[0].value)

        mine = student.get("/me/assessments")["items"]
        self.assertEqual([(a["id"], a["status"]) for a in mine], [(started["id"], "completed")])
        self.assertEqual(sorted((s["skill"], s["score"]) for s in mine[0]["skills"]), [("ai", 100), ("python", 33)])
        path = student.get("/me/learning-path")
        self.assertEqual(path["based_on_assessment_id"], started["id"])
        self.assertEqual(path["steps"][0]["course_id"], env("CIFIX_COURSE_ID"))  # python-first-steps
        self.assertIn("Your python score was 33/100", path["steps"][0]["reason"])

    def test_every_question_must_be_answered(self) -> None:
        student = Student(env("CIFIX_URL"))
        started = student.start()
        at = open_app(started["launch_token"])
        answer(at, {k: v for k, v in RIGHT.items() if "bias" not in k})
        self.assertEqual(at.warning[0].value, "Please answer every question first.")
        self.assertEqual(student.get("/assessments/%s" % started["id"])["status"], "pending")


class FriendlyErrors(unittest.TestCase):
    def assert_says(self, at: AppTest, text: str) -> None:
        shown = [e.value for e in (*at.warning, *at.info, *at.error)]
        self.assertTrue(any(text in s for s in shown), shown)
        self.assertEqual(len(at.radio), 0, "no questions are shown")

    def test_no_launch_token(self) -> None:
        self.assert_says(open_app(None), "This page opens from CIFIX LEARN")

    def test_a_garbage_launch_token(self) -> None:
        self.assert_says(open_app("not-a-real-token"), "This assessment link is not valid")
        self.assert_says(open_app("x" * 300), "This assessment link is not valid")

    def test_a_link_that_was_already_used(self) -> None:
        started = Student(env("CIFIX_URL")).start()
        at = open_app(started["launch_token"])
        answer(at, RIGHT)
        self.assert_says(open_app(started["launch_token"]), "This assessment is already finished")

    def test_results_that_arrived_from_another_tab_while_answering(self) -> None:
        started = Student(env("CIFIX_URL")).start()
        at = open_app(started["launch_token"])
        tool = CifixClient(env("CIFIX_URL"), env("CIFIX_CLIENT_ID"), env("CIFIX_CLIENT_SECRET"))
        tool.post_results(external_id="other-tab-%s" % uuid.uuid4(), launch_token=started["launch_token"],
                          overall_score=50, skills={"python": 50})
        self.assert_says(answer(at, RIGHT), "This assessment is already finished")

    def test_an_expired_link(self) -> None:
        short = {name: env(name.replace("CIFIX_", "CIFIX_SHORT_")) for name in SETTINGS}
        started = Student(short["CIFIX_URL"]).start()
        time.sleep(2)  # that server's launches live one second
        with mock.patch.dict(os.environ, short):
            self.assert_says(open_app(started["launch_token"]), "This assessment link has expired")

    def test_settings_come_from_streamlit_secrets_too(self) -> None:
        started = Student(env("CIFIX_URL")).start()
        settings = {name: env(name) for name in SETTINGS}
        with mock.patch.dict(os.environ, {name: "" for name in SETTINGS}):
            self.assert_says(open_app(started["launch_token"]), "The assessment tool is not set up correctly")
            at = AppTest.from_file("app.py", default_timeout=30)
            for name, value in settings.items():
                at.secrets[name] = value
            at.query_params["launch_token"] = started["launch_token"]
            at.run()
        self.assertEqual(len(at.radio), len(RIGHT))


if __name__ == "__main__":
    unittest.main(verbosity=2)
