"""CIFIX LEARN client for the assessment tool (standard library only).

Every call is signed as the README's "Assessment tool integration" section describes:

    key       = SHA-256(client_secret)                       (32 raw bytes)
    message   = timestamp + "\\n" + nonce + "\\n" + METHOD + "\\n" + path + "\\n" + sha256hex(body)
    signature = "v1=" + hex(HMAC-SHA256(key, message))

sent in X-Cifix-Client, X-Cifix-Timestamp, X-Cifix-Nonce and X-Cifix-Signature.

Retries are safe: results are idempotent by ``external_id`` (a repeat of the same body answers
200 and changes nothing), and each attempt is signed afresh with a new nonce and timestamp.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import urllib.error
import urllib.request
from email.message import Message
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, TypedDict, Union, cast

__all__ = [
    "Assessment",
    "CifixClient",
    "CifixError",
    "LaunchInfo",
    "SkillScore",
    "sign",
    "LAUNCH_PATH",
    "RESULTS_PATH",
]
__version__ = "1.1.0"

RESULTS_PATH = "/api/v1/integrations/assessments/results"
LAUNCH_PATH = "/api/v1/integrations/assessments/launch"
_PROBLEM_PREFIX = "urn:cifix:problem:"


class SkillScore(TypedDict):
    skill: str
    score: float


class LaunchInfo(TypedDict):
    """Who is being assessed. ``status`` is "pending", "completed" or "expired"."""

    assessment_id: str
    user_id: str
    display_name: str
    status: str
    expires_at: str


class Assessment(TypedDict):
    id: str
    user_id: str
    status: str
    overall_score: Optional[float]
    skills: List[SkillScore]
    completed_at: Optional[str]
    created_at: str
    expires_at: str
    external_id: Optional[str]


Skills = Union[Mapping[str, float], Sequence[SkillScore]]


class CifixError(Exception):
    """A response the caller must act on. ``problem`` is the RFC 9457 body when there is one;
    ``status`` is 0 when the server could not be reached at all."""

    def __init__(self, status: int, problem: Optional[Dict[str, Any]]) -> None:
        self.status = status
        self.problem: Dict[str, Any] = problem or {}
        super().__init__("HTTP %s: %s" % (status, self.problem.get("detail") or self.problem))

    @property
    def code(self) -> Optional[str]:
        """The problem's slug, e.g. "assessment-expired" for ``urn:cifix:problem:assessment-expired``."""
        kind = self.problem.get("type")
        if isinstance(kind, str) and kind.startswith(_PROBLEM_PREFIX):
            return kind[len(_PROBLEM_PREFIX):]
        return None


def sign(client_secret: str, timestamp: Union[int, str], nonce: str, method: str, path: str, body: bytes) -> str:
    """Returns the X-Cifix-Signature value for one request."""
    key = hashlib.sha256(client_secret.encode("utf-8")).digest()
    message = "\n".join([str(timestamp), nonce, method.upper(), path, hashlib.sha256(body).hexdigest()])
    return "v1=" + hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()


class CifixClient:
    # Worth retrying: the server or a proxy was unavailable or rate limited us. 4xx answers
    # (bad input, conflicts, auth) will not change on a retry.
    RETRY_STATUSES = (429, 500, 502, 503, 504)

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        timeout: float = 10.0,
        retries: int = 4,
        backoff: float = 0.5,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep

    def _send_once(self, method: str, path: str, body: bytes) -> Tuple[int, Any, Message]:
        timestamp = str(int(time.time()))
        nonce = secrets.token_hex(16)
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-Cifix-Client": self.client_id,
            "X-Cifix-Timestamp": timestamp,
            "X-Cifix-Nonce": nonce,
            "X-Cifix-Signature": sign(self.client_secret, timestamp, nonce, method, path, body),
        }
        req = urllib.request.Request(self.base_url + path, data=body, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as res:
                return res.status, json.loads(res.read() or b"null"), res.headers
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                problem = json.loads(raw)
            except ValueError:
                problem = {"detail": raw.decode("utf-8", "replace")}
            return e.code, problem, e.headers

    def request(self, method: str, path: str, payload: Any) -> Tuple[int, Any]:
        """Signs and sends; retries network errors and 429/5xx with exponential backoff (and
        Retry-After when given). Returns (status, body); raises CifixError otherwise."""
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        attempt = 0
        while True:
            status: Optional[int] = None
            data: Any = None
            retry_after: Optional[str] = None
            try:
                status, data, headers = self._send_once(method, path, body)
                retry_after = headers.get("Retry-After")
            except (urllib.error.URLError, OSError) as e:
                if attempt >= self.retries:
                    raise CifixError(0, {"detail": "network error: %s" % e}) from e
            if status is not None and status < 300:
                return status, data
            if status is not None and status not in self.RETRY_STATUSES:
                raise CifixError(status, data)
            if attempt >= self.retries:
                raise CifixError(status or 0, data)
            delay = self.backoff * (2**attempt)
            if retry_after and retry_after.isdigit():
                delay = max(delay, int(retry_after))
            self._sleep(delay)
            attempt += 1

    def launch(self, launch_token: str) -> LaunchInfo:
        """Who is being assessed: {assessment_id, user_id, display_name, status, expires_at}."""
        return cast(LaunchInfo, self.request("POST", LAUNCH_PATH, {"launch_token": launch_token})[1])

    def post_results(
        self,
        external_id: str,
        overall_score: float,
        skills: Skills,
        completed_at: Optional[str] = None,
        assessment_id: Optional[str] = None,
        launch_token: Optional[str] = None,
        details: Any = None,
    ) -> Tuple[bool, Assessment]:
        """Posts results. ``skills`` is a dict {skill: score} or a list of {skill, score}.
        Returns (created, assessment): created is False for a repeat of the same external_id."""
        if isinstance(skills, Mapping):
            skill_list: List[Any] = [{"skill": k, "score": v} for k, v in sorted(skills.items())]
        else:
            skill_list = list(skills)
        payload: Dict[str, Any] = {
            "external_id": external_id,
            "completed_at": completed_at or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "overall_score": overall_score,
            "skills": skill_list,
        }
        if assessment_id:
            payload["assessment_id"] = assessment_id
        if launch_token:
            payload["launch_token"] = launch_token
        if details is not None:
            payload["details"] = details
        status, data = self.request("POST", RESULTS_PATH, payload)
        return status == 201, cast(Assessment, data)
