"""Counts calls in a file so a flow can fail a set number of times, deterministically."""
import json
import os
import sys

mode, work_dir = sys.argv[1], sys.argv[2]
os.makedirs(work_dir, exist_ok=True)
path = os.path.join(work_dir, "attempts")
if mode == "reset":
    with open(path, "w") as f:
        f.write("0")
    sys.exit(0)
with open(path) as f:
    count = int(f.read()) + 1
with open(path, "w") as f:
    f.write(str(count))
if count < 3:
    print(f"attempt {count}: not yet", file=sys.stderr)
    sys.exit(1)
print(json.dumps({"attempts": count, "ok": True}))
