#!/usr/bin/env bash
# Installs everything the test suite needs (Debian and Python packages), then runs it.
# Usage: bash scripts/test.sh [pytest args...]  (with no args: the whole suite, then the heap,
# runtime and crash tests again in pure-Python mode)
set -euo pipefail
cd "$(dirname "$0")/.."
need_apt=()
[ -e /usr/lib/x86_64-linux-gnu/libpmem.so.1 ] || ldconfig -p 2>/dev/null | grep -q 'libpmem.so.1' || need_apt+=(libpmem1)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v tclsh >/dev/null 2>&1 || need_apt+=(tcl)  # Redis's own test suite (test_redis_suite)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    else
        echo "warning: missing Debian packages ${need_apt[*]} (run as root to install them)" >&2
    fi
fi
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
python3 -m ruff check src tests bench
python3 -m pytest "$@"
if [ $# -eq 0 ]; then
    # The pure-Python twin of the compiled paths is the reference the compiled code is held
    # to: the heap, runtime and crash tests again without the compiled module (issue 20's
    # bug lived only in the pure-Python store path), and the Redis protocol tests with every
    # request read by hiredis (the compiled server reads whole commands itself).
    PERSIMMON_PURE_PYTHON=1 python3 -m pytest -q tests/test_heap_*.py tests/test_runtime*.py \
        tests/test_group_commit.py tests/test_oplog.py tests/test_shadow_loop.py \
        tests/test_opcodec.py tests/test_native_contract.py tests/test_proxy_interface.py \
        tests/test_disk_crash.py \
        tests/redis/test_resp_fastpath.py tests/redis/test_protocol.py \
        tests/redis/test_reads_before_commit.py
fi
