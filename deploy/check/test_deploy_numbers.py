"""The deployment numbers that depend on each other, checked together.

Kubernetes, Railway and systemd each stop a process their own way; all of them must leave
`cifix serve` the whole drain it was configured for, and the Kubernetes objects must agree
with each other (PDB under the HPA minimum, probes the service can answer in time).
Run: python3 -m unittest deploy/check/test_deploy_numbers.py (needs PyYAML).
"""

import configparser
import fnmatch
import pathlib
import tomllib
import unittest

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"

# Time after SIGTERM the process needs beyond delay + grace to close its pools and exit.
EXIT_MARGIN_SECS = 5
# The readiness handler bounds its database check at this (src/http/ops.rs).
READY_HANDLER_TIMEOUT_SECS = 2
# PostgreSQL's max_connections the deployment is sized for (managed servers of a few GB
# default to about this), less a reserve for superuser, migrations and operators.
PG_MAX_CONNECTIONS = 200
PG_RESERVED = 20


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def container(doc, name=None):
    cs = doc["spec"]["template"]["spec"]["containers"]
    return cs[0] if name is None else next(c for c in cs if c["name"] == name)


class Numbers(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.config = load(K8S / "app" / "configmap.yaml")["data"]
        cls.api = load(K8S / "app" / "api.yaml")
        cls.worker = load(K8S / "app" / "worker.yaml")
        cls.hpa = load(K8S / "app" / "hpa.yaml")
        cls.pdb = load(K8S / "app" / "pdb.yaml")
        cls.job = load(K8S / "migrate-job.yaml")
        cls.secret = load(K8S / "secret.example.yaml")
        cls.service = load(K8S / "app" / "service.yaml")
        with open(ROOT / "railway.toml", "rb") as f:
            cls.railway = tomllib.load(f)["deploy"]
        unit = configparser.ConfigParser(strict=False, interpolation=None)
        unit.optionxform = str
        unit.read(ROOT / "deploy" / "systemd" / "cifix.service")
        cls.unit = unit["Service"]
        cls.delay = int(cls.config["CIFIX_SHUTDOWN_DELAY_SECS"])
        cls.grace = int(cls.config["CIFIX_SHUTDOWN_GRACE_SECS"])

    def test_kubernetes_grace_covers_pause_delay_and_drain(self):
        pod = self.api["spec"]["template"]["spec"]
        pause = container(self.api)["lifecycle"]["preStop"]["sleep"]["seconds"]
        self.assertGreaterEqual(pause, 3, "endpoints need a few seconds to drop a terminating pod")
        self.assertGreaterEqual(pod["terminationGracePeriodSeconds"], pause + self.delay + self.grace + EXIT_MARGIN_SECS)

    def test_railway_draining_covers_delay_and_drain(self):
        self.assertGreaterEqual(self.railway["drainingSeconds"], self.delay + self.grace + EXIT_MARGIN_SECS)

    def test_systemd_stop_timeout_covers_delay_and_drain(self):
        self.assertEqual(self.unit["KillSignal"], "SIGTERM")
        self.assertGreaterEqual(int(self.unit["TimeoutStopSec"]), self.delay + self.grace + EXIT_MARGIN_SECS)

    def test_same_drain_everywhere(self):
        env = dict(line.split("=", 1) for line in
                   (ROOT / "deploy" / "systemd" / "cifix.env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
        self.assertEqual(int(env["CIFIX_SHUTDOWN_DELAY_SECS"]), self.delay)
        self.assertEqual(int(env["CIFIX_SHUTDOWN_GRACE_SECS"]), self.grace)

    def test_an_accepted_request_can_finish_within_the_drain(self):
        self.assertGreaterEqual(self.grace, int(self.config["CIFIX_REQUEST_TIMEOUT_SECS"]))

    def test_probes_hit_the_right_endpoints_within_what_the_service_meets(self):
        c = container(self.api)
        ready, live, startup = c["readinessProbe"], c["livenessProbe"], c["startupProbe"]
        self.assertEqual(ready["httpGet"]["path"], "/health/ready")
        # A database outage must not restart every pod.
        self.assertEqual(live["httpGet"]["path"], "/health/live")
        self.assertEqual(startup["httpGet"]["path"], "/health/live")
        self.assertGreater(ready["timeoutSeconds"], READY_HANDLER_TIMEOUT_SECS)
        for p in (ready, live, startup):
            self.assertEqual(p["httpGet"]["port"], "http")
            self.assertLessEqual(p["timeoutSeconds"], p["periodSeconds"])
        # Readiness reacts within a drain delay's order of magnitude; liveness is slower
        # than readiness, so a slow pod leaves rotation before it is restarted.
        self.assertLessEqual(ready["periodSeconds"] * ready["failureThreshold"], 2 * self.delay)
        self.assertGreater(live["periodSeconds"] * live["failureThreshold"],
                           ready["periodSeconds"] * ready["failureThreshold"])

    def test_startup_budget_matches_railway_healthcheck_timeout(self):
        s = container(self.api)["startupProbe"]
        self.assertEqual(s["periodSeconds"] * s["failureThreshold"], self.railway["healthcheckTimeout"])

    def test_ports_agree(self):
        port = int(self.config["PORT"])
        self.assertEqual(container(self.api)["ports"][0]["containerPort"], port)
        # Prometheus scrapes the metrics port (CIFIX_METRICS_BIND), which the Service does not expose.
        metrics_port = int(self.config["CIFIX_METRICS_BIND"].rsplit(":", 1)[1])
        self.assertNotEqual(metrics_port, port)
        self.assertEqual(self.api["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"], str(metrics_port))
        self.assertIn(metrics_port, [p["containerPort"] for p in container(self.api)["ports"]])
        self.assertNotIn(metrics_port, [p.get("port") for p in self.service["spec"]["ports"]])
        self.assertEqual(self.service["spec"]["ports"][0]["targetPort"], container(self.api)["ports"][0]["name"])
        dockerfile = (ROOT / "Dockerfile").read_text()
        self.assertIn(f"EXPOSE {port}", dockerfile)
        self.assertIn(f"PORT={port}", dockerfile)

    def test_replicas_hpa_and_pdb(self):
        hmin, hmax = self.hpa["spec"]["minReplicas"], self.hpa["spec"]["maxReplicas"]
        self.assertGreaterEqual(self.api["spec"]["replicas"], 2)
        self.assertEqual(self.api["spec"]["replicas"], hmin, "start at the HPA's floor")
        self.assertLess(self.pdb["spec"]["minAvailable"], hmin, "a drain must be able to evict at the minimum")
        self.assertGreaterEqual(self.pdb["spec"]["minAvailable"], 1)
        self.assertEqual(self.hpa["spec"]["scaleTargetRef"]["name"], self.api["metadata"]["name"])
        self.assertEqual(self.pdb["spec"]["selector"]["matchLabels"], self.api["spec"]["selector"]["matchLabels"])
        self.assertEqual(self.service["spec"]["selector"], self.api["spec"]["selector"]["matchLabels"])
        self.assertEqual(self.api["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0)
        self.assertGreaterEqual(self.railway["numReplicas"], 2)
        self.assertLessEqual(hmin, hmax)

    def test_database_connections_fit_postgres(self):
        pool = int(self.config["CIFIX_DB_MAX_CONNECTIONS"])
        total = (self.hpa["spec"]["maxReplicas"] + self.worker["spec"]["replicas"] + 1) * pool
        self.assertLessEqual(total, PG_MAX_CONNECTIONS - PG_RESERVED)

    def test_api_leaves_email_to_the_workers(self):
        env = {e["name"]: e.get("value") for e in container(self.api).get("env", [])}
        self.assertEqual(env.get("CIFIX_EMAIL_WORKER"), "false")
        self.assertEqual(container(self.worker)["command"], ["cifix", "worker"])
        self.assertEqual(container(self.job)["command"], ["cifix", "migrate"])
        self.assertEqual(container(self.api)["command"], ["cifix", "serve"])
        self.assertEqual(self.railway["startCommand"], "cifix serve")
        self.assertEqual(self.railway["preDeployCommand"], ["cifix migrate"])
        self.assertEqual(self.railway["healthcheckPath"], "/health/ready")

    def test_every_pod_is_locked_down(self):
        for doc in (self.api, self.worker, self.job):
            pod = doc["spec"]["template"]["spec"]
            self.assertTrue(pod["securityContext"]["runAsNonRoot"], doc["metadata"]["name"])
            self.assertFalse(pod["automountServiceAccountToken"])
            mounts = {m["mountPath"] for m in container(doc)["volumeMounts"]}
            self.assertIn(self.config["CIFIX_DATA_DIR"], mounts)
            self.assertIn("/tmp", mounts)
            sc = container(doc)["securityContext"]
            self.assertTrue(sc["readOnlyRootFilesystem"])
            self.assertFalse(sc["allowPrivilegeEscalation"])
            self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
            refs = [next(iter(e.values()))["name"] for e in container(doc)["envFrom"]]
            self.assertEqual(refs, [self.config_name(), self.secret["metadata"]["name"]])
            self.assertIn("memory", container(doc)["resources"]["limits"])

    def config_name(self):
        return load(K8S / "app" / "configmap.yaml")["metadata"]["name"]

    def test_secret_example_holds_placeholders_only(self):
        for key, value in self.secret["stringData"].items():
            self.assertIn(value, ("CHANGE_ME", ""), key)
        self.assertNotIn("CIFIX_JWT_SECRET", self.config, "secrets belong in the Secret")
        for key in self.config:
            self.assertNotIn(key, self.secret["stringData"], key)

    def test_dockerignore_keeps_what_the_dockerfile_copies(self):
        patterns = [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines()
                    if l.strip() and not l.startswith("#")]

        def ignored(path):
            # Docker's rule: the last matching pattern wins; a folder's match covers its files.
            verdict = False
            for pat in patterns:
                neg, pat = pat.startswith("!"), pat.lstrip("!").rstrip("/")
                parts = path.split("/")
                prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
                # "**/x" matches x at any depth.
                alts = [pat[3:], "*/" + pat[3:]] if pat.startswith("**/") else [pat]
                if any(fnmatch.fnmatchcase(p, a) for p in prefixes for a in alts):
                    verdict = not neg
            return verdict

        copied = []
        for line in (ROOT / "Dockerfile").read_text().splitlines():
            words = line.split()
            if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
                copied += [w.rstrip("/") for w in words[1:-1] if not w.startswith("--")]
        self.assertIn("Cargo.lock", copied)
        for path in copied:
            self.assertTrue((ROOT / path).exists(), path)
            self.assertFalse(ignored(path), f".dockerignore drops {path}, which the Dockerfile copies")
        for path in ("target", ".git", "data", ".env", "node_modules", "src/x.db", "clients/python"):
            self.assertTrue(ignored(path), f"{path} would reach the build context")

    def test_production_settings(self):
        self.assertEqual(self.config["CIFIX_ENV"], "production")
        self.assertEqual(self.config["CIFIX_LOG_FORMAT"], "json")
        self.assertTrue(self.config["CIFIX_PUBLIC_URL"].startswith("https://"))
        self.assertNotIn("CIFIX_BIND", self.config, "PORT binds all interfaces; CIFIX_BIND would override it")


if __name__ == "__main__":
    unittest.main()
