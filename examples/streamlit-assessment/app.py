"""A CIFIX LEARN assessment tool: a short quiz scored per skill, results sent back signed.

CIFIX LEARN opens this app as ``…/?launch_token=…`` (its CIFIX_ASSESSMENT_TOOL_URL). The app
asks the API who the token belongs to, shows the questions and posts the scores; CIFIX LEARN
then builds the student's learning path from them. Run it with ``streamlit run app.py``.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any, Dict, List, NamedTuple, NoReturn, Optional, Tuple

import streamlit as st
from cifix_client import CifixClient, CifixError


class Question(NamedTuple):
    skill: str
    text: str
    options: List[str]
    answer: str


# Skill codes must match the ones the learning-path rules know (config/learning-rules.json).
SKILL_NAMES = {"python": "Python", "ai": "Artificial intelligence"}
QUESTIONS = [
    Question("python", "What does `print(2 + 3)` show?", ["23", "5", "2 + 3"], "5"),
    Question("python", "Which line stores the name Ada in a variable?",
             ["name = \"Ada\"", "\"Ada\" = name", "name == \"Ada\""], "name = \"Ada\""),
    Question("python", "How many times does `for i in range(3):` repeat?", ["2", "3", "4"], "3"),
    Question("ai", "How does a computer learn to tell cats from dogs?",
             ["From many labelled example pictures", "By guessing once", "It already knows"],
             "From many labelled example pictures"),
    Question("ai", "A chatbot gives you an answer. What should you do?",
             ["Believe it always", "Check important facts", "Never use it"], "Check important facts"),
    Question("ai", "What is a \"bias\" in an AI system?",
             ["A kind of battery", "Unfair results learned from unfair examples", "A fast computer"],
             "Unfair results learned from unfair examples"),
]

MESSAGES = {
    "missing": "This page opens from CIFIX LEARN: start the assessment from your CIFIX LEARN dashboard.",
    "invalid": "This assessment link is not valid. Go back to CIFIX LEARN and start the assessment again.",
    "expired": "This assessment link has expired. Go back to CIFIX LEARN and start a new assessment.",
    "completed": "This assessment is already finished. Your learning path is waiting in CIFIX LEARN!",
    "offline": "We could not reach CIFIX LEARN just now. Check your internet connection and try again.",
    "setup": "The assessment tool is not set up correctly. Please tell your teacher.",
}


def score(answers: Dict[int, Optional[str]]) -> Tuple[int, Dict[str, int]]:
    """Percent correct overall and per skill."""
    per_skill: Dict[str, List[bool]] = {}
    for i, q in enumerate(QUESTIONS):
        per_skill.setdefault(q.skill, []).append(answers.get(i) == q.answer)
    skills = {s: round(100 * sum(r) / len(r)) for s, r in per_skill.items()}
    overall = round(100 * sum(sum(r) for r in per_skill.values()) / len(QUESTIONS))
    return overall, skills


def setting(name: str) -> Optional[str]:
    """Environment first (containers), then Streamlit secrets (.streamlit/secrets.toml, Cloud)."""
    try:
        return os.environ.get(name) or st.secrets.get(name)
    except FileNotFoundError:  # no secrets file at all
        return None


def api() -> CifixClient:
    url, client_id, secret = (setting(n) for n in ("CIFIX_URL", "CIFIX_CLIENT_ID", "CIFIX_CLIENT_SECRET"))
    if not (url and client_id and secret):
        st.error(MESSAGES["setup"])
        st.caption("Set CIFIX_URL, CIFIX_CLIENT_ID and CIFIX_CLIENT_SECRET (environment or secrets).")
        st.stop()
    return CifixClient(url, client_id, secret)


def fail(e: CifixError) -> NoReturn:
    """Tells the student what happened in their words, and stops the page."""
    if e.code == "assessment-expired":
        st.warning(MESSAGES["expired"])
    elif e.code == "assessment-completed":
        st.warning(MESSAGES["completed"])
    elif e.status in (404, 422):  # unknown token, or not even the shape of one
        st.warning(MESSAGES["invalid"])
    elif e.status == 0 or e.status >= 500 or e.status == 429:
        st.error(MESSAGES["offline"])
        st.button("Try again")  # a rerun repeats the same call
    else:  # 401: the tool's own credentials were refused
        st.error(MESSAGES["setup"])
        st.caption("CIFIX LEARN answered HTTP %s: %s" % (e.status, e.problem.get("detail", "")))
    st.stop()


def send(client: CifixClient, token: str, who: Dict[str, Any]) -> None:
    # The payload is fixed at the first press: a retry after a lost answer must be byte-for-byte
    # the same delivery (same external_id and completed_at), which the API answers 200.
    payload = st.session_state.sending
    try:
        _, assessment = client.post_results(launch_token=token, assessment_id=who["assessment_id"], **payload)
    except CifixError as e:
        fail(e)
    st.session_state.result = assessment
    st.rerun()


st.set_page_config(page_title="CIFIX LEARN skills check", page_icon="🧩")
token = st.query_params.get("launch_token")
if not token:
    st.info(MESSAGES["missing"])
    st.stop()
client = api()

if "who" not in st.session_state:
    try:
        st.session_state.who = dict(client.launch(token))
    except CifixError as e:
        fail(e)
who = st.session_state.who

if "result" in st.session_state:
    result = st.session_state.result
    st.title("Well done, %s! 🎉" % who["display_name"])
    st.metric("Your score", "%g / 100" % result["overall_score"])
    for s in result["skills"]:
        st.write("**%s**: %g / 100" % (SKILL_NAMES.get(s["skill"], s["skill"]), s["score"]))
    st.success("Your learning path is ready. Go back to CIFIX LEARN to see it.")
    st.stop()
if who["status"] != "pending":
    st.warning(MESSAGES["completed" if who["status"] == "completed" else "expired"])
    st.stop()
if "sending" in st.session_state:
    send(client, token, who)

st.title("Hi %s! Let's see what you already know" % who["display_name"])
with st.form("quiz"):
    for i, q in enumerate(QUESTIONS):
        st.radio(q.text, q.options, index=None, key="q%d" % i)
    submitted = st.form_submit_button("Send my answers")
if submitted:
    answers = {i: st.session_state["q%d" % i] for i in range(len(QUESTIONS))}
    if None in answers.values():
        st.warning("Please answer every question first.")
        st.stop()
    overall, skills = score(answers)
    st.session_state.sending = dict(
        external_id="streamlit-%s" % uuid.uuid4(),
        completed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        overall_score=overall,
        skills=skills,
        details={"answers": {QUESTIONS[i].text: a for i, a in answers.items()}},
    )
    st.rerun()  # sent at the top of the next run, so the questions are gone whatever the answer
