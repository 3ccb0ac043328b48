#!/bin/sh
# valgrind-wrap.sh - nscollect under valgrind, for NSCOLLECT_BIN (see `make valgrind`).
#
#   NSCOLLECT_BIN=tests/crash/valgrind-wrap.sh VALGRIND_NSCOLLECT=build-valgrind/nscollect ...
#
# Exit status 99 when valgrind finds an error or a definite leak; -q keeps
# its output to the reports, each line starting with "==PID== ".
bin=${VALGRIND_NSCOLLECT:-$(dirname "$0")/../../build-valgrind/nscollect}
exec valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
    --track-fds=no "$bin" "$@"
