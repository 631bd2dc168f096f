"""Does every test pass when run alone? Runs each test id (or each test module) in its own pytest
process, in one process each (`-n 0`), so no test can lean on what another left behind.

    python3 bench/alone.py                  # every test module alone
    python3 bench/alone.py --tests          # every test id alone (slow: ~2 s of pytest start-up each)
    python3 bench/alone.py --tests --sample 150 --seed 7   # a random sample of test ids
    python3 bench/alone.py --jobs 2         # two at a time

Prints each failure with the end of its output, then a summary; exit 1 if anything failed. Not part
of CI: the suite itself runs in random order there, which catches most order dependence.
"""

import argparse
import concurrent.futures
import os
import random
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTEST = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:randomly"]


def collect() -> list[str]:
    out = subprocess.run(PYTEST + ["--collect-only"], cwd=ROOT, capture_output=True, text=True).stdout  # -q: ids
    return [line for line in out.splitlines() if "::" in line]


def modules() -> list[str]:
    folder = os.path.join(ROOT, "tests")
    return sorted("tests/" + f for f in os.listdir(folder) if f.startswith("test_") and f.endswith(".py"))


def run_one(target: str) -> tuple[str, int, float, str]:
    started = time.monotonic()
    proc = subprocess.run(PYTEST + [target], cwd=ROOT, capture_output=True, text=True, timeout=600)
    return target, proc.returncode, time.monotonic() - started, proc.stdout[-3000:] + proc.stderr[-2000:]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tests", action="store_true", help="every test id alone (default: every module)")
    ap.add_argument("--sample", type=int, default=0, help="only this many, chosen at random")
    ap.add_argument("--seed", type=int, default=None, help="the sample's random seed (printed)")
    ap.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args(argv)
    targets = collect() if args.tests else modules()
    if args.sample and args.sample < len(targets):
        seed = args.seed if args.seed is not None else random.randrange(1 << 30)
        print("sample of %d of %d, --seed %d" % (args.sample, len(targets), seed))
        targets = random.Random(seed).sample(targets, args.sample)
    failed = []
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for target, code, took, output in pool.map(run_one, targets):
            if code != 0:
                failed.append(target)
                print("FAILED alone (exit %d, %.1f s): %s\n%s" % (code, took, target, output), flush=True)
    print("%d of %d passed alone in %.0f s" % (len(targets) - len(failed), len(targets), time.monotonic() - started))
    for target in failed:
        print("  failed:", target)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
