#!/usr/bin/env python3
"""measure.py - run a command and write its user CPU, system CPU and peak
RSS, as GNU time -f "%U %S %M" would: "USER SYS MAXRSS_KIB" on the last
line of OUTFILE. Exits with the command's exit status.

    python3 tests/bench/measure.py OUTFILE COMMAND [ARGS...]

bench.py uses it when /usr/bin/time is missing. Why a separate process:
Linux seeds a child's ru_maxrss with its parent's resident size at fork, so
a command started straight from bench.py (which may hold a large served
log) would report at least bench.py's size. Started from this small
process instead, the floor is this process's own size (about 13 MiB).
"""

import os
import shutil
import sys


def main():
    if len(sys.argv) < 3:
        print(__doc__.split("\n")[3].strip(), file=sys.stderr)
        return 2
    out, argv = sys.argv[1], sys.argv[2:]
    path = argv[0] if os.sep in argv[0] else shutil.which(argv[0])
    if not path:
        print("measure.py: %s: command not found" % argv[0], file=sys.stderr)
        return 127
    pid = os.posix_spawn(path, argv, os.environ)
    _, status, ru = os.wait4(pid, 0)
    with open(out, "w") as f:
        f.write("%.3f %.3f %d\n" % (ru.ru_utime, ru.ru_stime, ru.ru_maxrss))
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    sys.exit(main())
