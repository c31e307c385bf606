import json
import sys

scores = json.load(sys.stdin)["scores"]
mean = round(sum(scores) / len(scores), 3)
print(json.dumps({"mean": mean, "best": max(scores), "count": len(scores)}))
