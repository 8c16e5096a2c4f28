"""A structural check of Prometheus rule files, for machines where promtool cannot be had.

promtool parses PromQL for real; this only catches what breaks a rule file on load or makes
an alert useless: a missing expr, duplicate alert names, an unbalanced bracket, a bad
duration, an alert without a severity or a summary.
Usage: rules_lint.py RULES.yml...
"""

import re
import sys

import yaml

DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
SEVERITIES = {"page", "ticket", "warning"}


def balanced(expr):
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    stack, pairs = [], {")": "(", "]": "[", "}": "{"}
    for ch in expr:
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            if not stack or stack.pop() != pairs[ch]:
                return False
    return not stack


def lint(path):
    errors, alerts = [], set()
    doc = yaml.safe_load(open(path))
    groups = doc.get("groups") if isinstance(doc, dict) else None
    if not groups:
        return [f"{path}: no groups"]
    for g in groups:
        if "interval" in g and not DURATION.match(str(g["interval"])):
            errors.append(f"{path}: group {g.get('name')}: bad interval {g['interval']!r}")
        for r in g.get("rules") or []:
            name = r.get("alert") or r.get("record")
            where = f"{path}: {g.get('name')}/{name}"
            if bool(r.get("alert")) == bool(r.get("record")):
                errors.append(f"{where}: a rule is either an alert or a record")
            expr = r.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                errors.append(f"{where}: no expr")
            elif not balanced(expr):
                errors.append(f"{where}: unbalanced brackets in expr")
            if "for" in r and not DURATION.match(str(r["for"])):
                errors.append(f"{where}: bad for {r['for']!r}")
            if r.get("alert"):
                if name in alerts:
                    errors.append(f"{where}: alert name used twice")
                alerts.add(name)
                if (r.get("labels") or {}).get("severity") not in SEVERITIES:
                    errors.append(f"{where}: severity must be one of {sorted(SEVERITIES)}")
                if not (r.get("annotations") or {}).get("summary"):
                    errors.append(f"{where}: no summary annotation")
            elif not re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", name or ""):
                errors.append(f"{where}: bad record name")
    return errors


if __name__ == "__main__":
    errs = [e for p in sys.argv[1:] for e in lint(p)]
    for e in errs:
        print("FAIL", e)
    if errs:
        sys.exit(1)
    print(f"rules lint OK: {', '.join(sys.argv[1:])}")
