#!/usr/bin/env bash
# Installs (first run) and runs the test suite. Extra args go to pytest, e.g. -m slow, -k rl.
source "$(dirname "$0")/_env.sh"
set +e
python -m pytest "$@"
rc=$?
if [ $rc -eq 5 ]; then echo "ERROR: pytest collected no tests" >&2; fi
exit $rc
