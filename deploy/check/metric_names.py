"""Every metric and label that the alert rules and the dashboard use is one the service exports.

What the service exports comes from its source (the `counter!`/`gauge!`/`histogram!` calls
in src/, and which histograms have buckets in src/telemetry.rs: the others are exported as
summaries, with quantiles and no `_bucket`), and, when a scrape of a live instance is given
(--scrape FILE), from its `# TYPE` lines and labels too. Metrics that appear only after first
use (live connections, rate limiting) are known from the source alone.

Also writes the dashboard's queries as a rules file (--dashboard-rules OUT), so promtool can
parse them like the alert rules.
"""

import argparse
import json
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Labels Prometheus adds at scrape time (see deploy/prometheus/*.yml), and the series it makes.
TARGET_LABELS = {"job", "instance", "namespace", "pod"}
SYNTHETIC = {"up": set()}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
            "bool", "offset", "inf", "nan"}


def exported_from_source(src):
    metrics = {}
    call = re.compile(r'\b(counter|gauge|histogram)!\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"\s*(,[^;]*?)?\)', re.S)
    for path in sorted(src.rglob("*.rs")):
        text = path.read_text()
        array_labels = set(re.findall(r'\(\s*"([a-z_]+)"\s*,', "".join(re.findall(r"let labels = \[[^\]]*\]", text))))
        for kind, name, rest in call.findall(text):
            labels = set(re.findall(r'"([a-z_]+)"\s*=>', rest or ""))
            if rest and "&labels" in rest:
                labels |= array_labels
            m = metrics.setdefault(name, {"kind": kind, "labels": set(), "files": set()})
            if m["kind"] != kind:
                sys.exit(f"{name} is both a {m['kind']} and a {kind} in src/")
            m["labels"] |= labels
            m["files"].add(str(path.relative_to(src.parent)))
    bucketed = set(re.findall(r'Matcher::Full\("([a-zA-Z_:][a-zA-Z0-9_:]*)"', (src / "telemetry.rs").read_text()))
    for name, m in metrics.items():
        if m["kind"] == "histogram":
            m["kind"] = "histogram" if name in bucketed else "summary"
    for name in bucketed - metrics.keys():
        sys.exit(f"src/telemetry.rs sets buckets for {name}, which nothing records")
    return metrics


def exported_from_scrape(text):
    metrics = {}
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        metrics[name] = {"kind": kind, "labels": set()}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? ", line)
        if not m or line.startswith("#"):
            continue
        base = re.sub(r"_(bucket|sum|count)$", "", m.group(1))
        if base in metrics:
            metrics[base]["labels"] |= set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(3) or "")) - {"le", "quantile"}
    return metrics


def series_names(kind, name):
    """The series a metric of this kind is scraped as."""
    if kind == "histogram":
        return {f"{name}_bucket": "le", f"{name}_sum": None, f"{name}_count": None}
    if kind == "summary":
        return {name: "quantile", f"{name}_sum": None, f"{name}_count": None}
    return {name: None}


def strip_strings(expr):
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def used_in(expr):
    """(metric names, label names) an expression refers to."""
    e = strip_strings(expr)
    labels = set()
    for body in re.findall(r"\{([^}]*)\}", e):
        labels |= set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", body))
    for body in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", e):
        labels |= {s.strip() for s in body.split(",") if s.strip()}
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names, labels


def queries():
    """(where, expr) for every alert/record rule and every dashboard target."""
    out, recorded = [], set()
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    for g in rules["groups"]:
        for r in g["rules"]:
            out.append((f"alerts.yml {r.get('alert') or r.get('record')}", r["expr"]))
            if "record" in r:
                recorded.add(r["record"])
    dash = json.loads((ROOT / "deploy/grafana/cifix.json").read_text())
    ids, vars_ = set(), {v["name"] for v in dash["templating"]["list"]}
    for p in dash["panels"]:
        if p["id"] in ids:
            sys.exit(f"dashboard: panel id {p['id']} twice")
        ids.add(p["id"])
        if p["type"] == "row":
            continue
        uid = p["datasource"]["uid"]
        if uid.startswith("${") and uid[2:-1] not in vars_:
            sys.exit(f"dashboard: panel {p['title']!r} uses an undefined variable {uid}")
        if not p.get("targets"):
            sys.exit(f"dashboard: panel {p['title']!r} has no query")
        for t in p["targets"]:
            out.append((f"cifix.json {p['title']!r} {t['refId']}", t["expr"]))
    return out, recorded, dash


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scrape", help="a /metrics response of a live cifix")
    ap.add_argument("--dashboard-rules", help="write the dashboard's queries here as a rules file")
    args = ap.parse_args()

    exported = exported_from_source(ROOT / "src")
    if args.scrape:
        live = exported_from_scrape(pathlib.Path(args.scrape).read_text())
        for name, m in live.items():
            if name not in exported:
                sys.exit(f"/metrics has {name}, which the source scan does not find: fix metric_names.py")
            if m["kind"] != exported[name]["kind"]:
                sys.exit(f"{name}: the source says {exported[name]['kind']}, /metrics says {m['kind']}")
            exported[name]["labels"] |= m["labels"]
            exported[name]["live"] = True
    series = {}
    for name, m in exported.items():
        for s, extra in series_names(m["kind"], name).items():
            series[s] = m["labels"] | ({extra} if extra else set())
    series.update(SYNTHETIC)

    qs, recorded, dash = queries()
    errors, used = [], set()
    for where, expr in qs:
        names, labels = used_in(expr)
        allowed = set(TARGET_LABELS)
        for n in names:
            if n in recorded:
                continue
            if n not in series:
                errors.append(f"{where}: {n} is not exported by the service")
                continue
            used.add(n)
            allowed |= series[n]
        # Only checkable when every metric's labels are known.
        if all(n in recorded or n in series for n in names):
            for label in labels - allowed:
                errors.append(f"{where}: label {label!r} is not on {', '.join(sorted(names))}")
    for e in errors:
        print("FAIL", e)
    if errors:
        sys.exit(1)
    bases = {n for n in exported if any(s in used for s in series_names(exported[n]["kind"], n))}
    print(f"metric names OK: {len(qs)} queries use {len(bases)} of the {len(exported)} metrics the service exports"
          f" ({sum(1 for m in exported.values() if m.get('live'))} also seen on a live /metrics)")
    unused = sorted(set(exported) - bases)
    if unused:
        print("  exported but neither alerted on nor charted:", ", ".join(unused))

    if args.dashboard_rules:
        rules = [{"record": f"cifix:dashboard_query_{i}", "expr": expr.replace("$__rate_interval", "5m")}
                 for i, (where, expr) in enumerate(qs) if where.startswith("cifix.json")]
        pathlib.Path(args.dashboard_rules).write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))


if __name__ == "__main__":
    main()
