"""CIFIX LEARN client for the assessment tool (standard library only).

Every call is signed as the README's "Assessment tool integration" section describes:

    key       = SHA-256(client_secret)                       (32 raw bytes)
    message   = timestamp + "\\n" + nonce + "\\n" + METHOD + "\\n" + path + "\\n" + sha256hex(body)
    signature = "v1=" + hex(HMAC-SHA256(key, message))

sent in X-Cifix-Client, X-Cifix-Timestamp, X-Cifix-Nonce and X-Cifix-Signature.

Retries are safe: results are idempotent by ``external_id`` (a repeat of the same body answers
200 and changes nothing), and each attempt is signed afresh with a new nonce and timestamp.
"""

import hashlib
import hmac
import json
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request

__all__ = ["CifixClient", "CifixError", "sign"]

RESULTS_PATH = "/api/v1/integrations/assessments/results"
LAUNCH_PATH = "/api/v1/integrations/assessments/launch"


class CifixError(Exception):
    """A response the caller must act on. ``problem`` is the RFC 9457 body when there is one."""

    def __init__(self, status, problem):
        self.status = status
        self.problem = problem or {}
        super().__init__("HTTP %s: %s" % (status, self.problem.get("detail") or self.problem))


def sign(client_secret, timestamp, nonce, method, path, body):
    """Returns the X-Cifix-Signature value for one request."""
    key = hashlib.sha256(client_secret.encode("utf-8")).digest()
    message = "\n".join(
        [str(timestamp), nonce, method.upper(), path, hashlib.sha256(body).hexdigest()]
    )
    return "v1=" + hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()


class CifixClient:
    # Worth retrying: the server or a proxy was unavailable or rate limited us. 4xx answers
    # (bad input, conflicts, auth) will not change on a retry.
    RETRY_STATUSES = (429, 500, 502, 503, 504)

    def __init__(self, base_url, client_id, client_secret, timeout=10.0, retries=4, backoff=0.5, sleep=time.sleep):
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep

    def _send_once(self, method, path, body):
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

    def request(self, method, path, payload):
        """Signs and sends; retries network errors and 429/5xx with exponential backoff (and
        Retry-After when given). Returns (status, body); raises CifixError otherwise."""
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        attempt = 0
        while True:
            try:
                status, data, headers = self._send_once(method, path, body)
            except (urllib.error.URLError, OSError) as e:
                if attempt >= self.retries:
                    raise CifixError(0, {"detail": "network error: %s" % e})
                status, data, headers = None, None, {}
            if status is not None and status < 300:
                return status, data
            if status is not None and status not in self.RETRY_STATUSES:
                raise CifixError(status, data)
            if attempt >= self.retries:
                raise CifixError(status or 0, data)
            delay = self.backoff * (2 ** attempt)
            retry_after = headers.get("Retry-After") if headers else None
            if retry_after and retry_after.isdigit():
                delay = max(delay, int(retry_after))
            self._sleep(delay)
            attempt += 1

    def launch(self, launch_token):
        """Who is being assessed: {assessment_id, user_id, display_name, status, expires_at}."""
        return self.request("POST", LAUNCH_PATH, {"launch_token": launch_token})[1]

    def post_results(self, external_id, overall_score, skills, completed_at=None, assessment_id=None,
                     launch_token=None, details=None):
        """Posts results. ``skills`` is a dict {skill: score} or a list of {skill, score}.
        Returns (created, assessment): created is False for a repeat of the same external_id."""
        if isinstance(skills, dict):
            skills = [{"skill": k, "score": v} for k, v in sorted(skills.items())]
        payload = {
            "external_id": external_id,
            "completed_at": completed_at or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "overall_score": overall_score,
            "skills": skills,
        }
        if assessment_id:
            payload["assessment_id"] = assessment_id
        if launch_token:
            payload["launch_token"] = launch_token
        if details is not None:
            payload["details"] = details
        status, data = self.request("POST", RESULTS_PATH, payload)
        return status == 201, data
