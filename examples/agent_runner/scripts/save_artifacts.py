"""Keeps the run's artifacts: the diff, the test log and the summary, read as JSON on stdin."""
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
data = json.load(sys.stdin)
(out / "change.diff").write_text(data["diff"])
(out / "tests.log").write_text(data["tests"])
(out / "summary.md").write_text(data["summary"])
print(json.dumps(sorted(p.name for p in out.iterdir())))
