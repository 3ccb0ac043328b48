#!/usr/bin/env python3
"""rules_standin.py - stands in for Google's Cloud Storage rules runtime
(cloud-storage-rules-runtime-v*.jar) under the firebase-tools Storage
emulator, on a machine that cannot download that jar.

The emulator starts the jar as `java ... -jar JAR serve` and speaks one JSON
object per line with it over stdin/stdout: a ready line (id -1) at start,
"load_ruleset" for the rules file, "verify" for every request made with the
*Firebase* SDK API (/v0/b/...). The GCS JSON API that nscollect uses
(/upload/storage/v1/..., /storage/v1/...) never asks the rules runtime: it
goes through the emulator's admin storage layer, whose validator always
permits. So this stand-in only has to come up and load a ruleset; it
refuses every "verify" (it cannot evaluate rules), and counts them on
stderr so that a test can check that nscollect's path never asked.

Nothing of the emulator's HTTP server, storage layer, upload handling or
object metadata is replaced: that is all firebase-tools' own code.
"""
import json
import sys


def reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    reply({"id": -1, "status": "ok", "action": "ready"})
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
        except ValueError:
            continue
        rid, action = req.get("id"), req.get("action")
        if action == "load_ruleset":
            reply({"id": rid, "status": "ok", "errors": [], "warnings": [],
                   "result": {"rulesVersion": 2}})
        elif action == "verify":
            sys.stderr.write("rules_standin: verify refused (Firebase SDK path)\n")
            sys.stderr.flush()
            reply({"id": rid, "status": "ok", "errors": [], "warnings": [],
                   "result": {"permit": False}})
        else:
            reply({"id": rid, "status": "ok", "errors": [], "warnings": [], "result": {}})


if __name__ == "__main__":
    main()
