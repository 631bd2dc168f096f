"""CPU to start and stop one gateway process, as the test suite does some 300 times per run.

    python bench/gateway_start.py              # 10 starts, then the same with the bytecode compiled
    python bench/gateway_start.py --starts 20

Each start is tests/servers.start_gateway (`python run.py --port 0`, waits for "listening") and
stop (SIGTERM, wait). Prints the CPU seconds per start (the gateway's user + sys, from
RUSAGE_CHILDREN) and the wall time: first with the project's bytecode as it is, then after
compiling it (what tests/conftest.py does where PYTHONDONTWRITEBYTECODE is set). Figures only.
"""

import argparse
import compileall
import os
import py_compile
import resource
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests import servers  # noqa: E402


def measure(starts: int) -> tuple:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        for i in range(starts):
            servers.start_gateway(os.path.join(folder, str(i)), "http://127.0.0.1:9/v1").stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu / starts, (time.monotonic() - t0) / starts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--starts", type=int, default=10)
    args = ap.parse_args()
    print("PYTHONDONTWRITEBYTECODE=%s" % (os.environ.get("PYTHONDONTWRITEBYTECODE") or "(unset)"))
    cpu, wall = measure(args.starts)
    print("as it is:          %.3f s CPU, %.3f s wall per start" % (cpu, wall))
    for package in ("tornado_grok", "mock_upstream"):
        compileall.compile_dir(os.path.join(ROOT, package), quiet=1,
                               invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    cpu, wall = measure(args.starts)
    print("bytecode compiled: %.3f s CPU, %.3f s wall per start" % (cpu, wall))
    return 0


if __name__ == "__main__":
    sys.exit(main())
