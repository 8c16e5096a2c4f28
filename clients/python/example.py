"""How the Streamlit tool uses the client: resolve the launch token, then post the results.

    CIFIX_URL=http://127.0.0.1:8080 CIFIX_CLIENT_ID=... CIFIX_CLIENT_SECRET=... \\
        python3 example.py <launch_token>
"""

import os
import sys
import uuid

from cifix_client import CifixClient, CifixError


def main() -> int:
    launch_token = sys.argv[1]
    client = CifixClient(os.environ["CIFIX_URL"], os.environ["CIFIX_CLIENT_ID"], os.environ["CIFIX_CLIENT_SECRET"])
    who = client.launch(launch_token)
    print("assessing %s (assessment %s)" % (who["display_name"], who["assessment_id"]))
    # One external_id per finished test run, kept by the tool: a retry after a timeout reuses it
    # and cannot complete anything twice.
    run_id = "streamlit-%s" % uuid.uuid4()
    try:
        created, assessment = client.post_results(
            external_id=run_id,
            launch_token=launch_token,
            overall_score=58,
            skills={"python": 35, "ai": 72},
            details={"answers": [{"q": 1, "correct": True}], "duration_seconds": 840},
        )
    except CifixError as e:
        print("rejected:", e.status, e.problem.get("detail"), e.problem.get("errors", ""))
        return 1
    print("created" if created else "already delivered", assessment["status"], assessment["overall_score"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
