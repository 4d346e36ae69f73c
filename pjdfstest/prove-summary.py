#!/usr/bin/env python3
"""Counts a `prove` run of the C pjdfstest, test by test (not file by file).

usage: prove-summary.py LOG TESTS_DIR
Prints shell assignments: c_passed (tests run that passed), c_failed (failed plus
planned but not run) and c_failures (names `c:DIR/NN.t:N`, or `c:DIR/NN.t:unrun` for a file that
stopped early). prove writes one summary block per failing file:
    /path/tests/open/05.t (Wstat: 0 Tests: 12 Failed: 2)
      Failed tests:  7, 9-10
      Parse errors: Bad plan.  You planned 12 tests but ran 10.
"""
import re
import shlex
import sys

log, tests_dir = sys.argv[1], sys.argv[2].rstrip("/") + "/"
text = open(log, errors="replace").read()
m = re.search(r"^Files=\d+, Tests=(\d+),", text, re.M)
total = int(m.group(1)) if m else 0
failures = []
unrun = []
current = None
in_list = False
for line in text.splitlines():
    head = re.match(r"^(\S+\.t) \(Wstat: (\d+).*Tests: (\d+)", line)
    if head:
        current = head.group(1).replace(tests_dir, "", 1)
        in_list = False
        continue
    if current is None:
        continue
    body = line.strip()
    if body.startswith("Failed tests:"):
        in_list = True
        body = body[len("Failed tests:"):]
    elif in_list and re.fullmatch(r"[\d,\s-]+", body):
        pass
    else:
        in_list = False
        bad = re.search(r"You planned (\d+) tests? but ran (\d+)", body)
        if bad:
            for n in range(int(bad.group(2)) + 1, int(bad.group(1)) + 1):
                unrun.append(f"c:{current}:{n}")
        elif "No plan found" in body:
            unrun.append(f"c:{current}:unrun")
        continue
    for part in filter(None, (p.strip() for p in body.split(","))):
        lo, _, hi = part.partition("-")
        for n in range(int(lo), int(hi or lo) + 1):
            failures.append(f"c:{current}:{n}")
failures = sorted(set(failures))
unrun = sorted(set(unrun) - set(failures))
print(f"c_passed={total - len(failures)}")
print(f"c_failed={len(failures) + len(unrun)}")
print(f"c_failures={shlex.quote(' '.join(failures + unrun))}")
