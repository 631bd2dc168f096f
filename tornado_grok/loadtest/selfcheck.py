"""The load tester watching itself: CPU, memory, event-loop lag, file descriptors.

A load tester that saturates its own core measures itself, not the target. Its CPU time
(time.process_time) over wall time says how busy it was; the event loop's lateness says how long a
ready byte may wait before it is timestamped; the time it was runnable but got no CPU (Linux
schedstat) says whether the machine, not the tester, was short of cores. Each is reported, with a
warning past a threshold.
"""
import os
import resource
import time

CPU_WARN_PCT = 90.0       # of one core: the event loop is single-threaded
LAG_WARN_MS = 20.0        # p99 lateness of the sampler's wake-ups (when nothing says what matters)
LAG_FLOOR_MS = 10.0       # below this, lag is timer and scheduler noise (p99 of a few samples)
SHARE_OF_SCALE = 0.1      # lag or CPU wait matters past 10% of the smallest figure measured
WAIT_FLOOR_MS = 1.0       # average wait for a CPU per wake-up below this does not matter
MIN_WALL_S = 1.0          # shorter runs are not judged
WAIT_WARN_SHARE = 0.1     # runnable but not running for over 10% of the run: a busy machine


def raise_fd_limit(wanted=None):
    """Raise the soft RLIMIT_NOFILE to the hard limit (or `wanted`); return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if wanted is not None:
        target = min(target, max(soft, wanted))
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def rss_mib():
    """Current resident set size in MiB (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mib()


def runqueue_wait_s():
    """Seconds this thread spent runnable but waiting for a CPU (Linux schedstat), or None."""
    s = _schedstat()
    return None if s is None else s[0]


def _schedstat():
    """(seconds runnable but waiting for a CPU, times it was given a CPU), or None."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            parts = f.read().split()
        return int(parts[1]) / 1e9, int(parts[2])
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class SelfMonitor:
    """CPU and loop-lag sampler; call sample() from a periodic task."""

    def __init__(self, interval):
        self.interval = interval
        self.cpu0 = self.cpu_prev = time.process_time()
        self.wall0 = self.wall_prev = time.perf_counter()
        self.lags_ms = []
        self.interval_cpu = []
        self.rss_start = rss_mib()
        self.rss_max = self.rss_start
        self.wait0 = runqueue_wait_s()
        st = _schedstat()
        self.slices0 = None if st is None else st[1]

    def sample(self, expected_wake):
        """Record one tick; returns this interval's CPU % of one core."""
        now = time.perf_counter()
        cpu = time.process_time()
        self.lags_ms.append(max(0.0, (now - expected_wake) * 1000.0))
        dw = now - self.wall_prev
        pct = 100.0 * (cpu - self.cpu_prev) / dw if dw > 0 else 0.0
        self.interval_cpu.append(pct)
        self.cpu_prev, self.wall_prev = cpu, now
        self.rss_max = max(self.rss_max, rss_mib())
        return round(pct, 1)

    def report(self, scale_ms=None):
        """The figures and the warnings that matter. `scale_ms` is the smallest latency figure
        the run measured (its TTFT or chunk gap p50): the tester's own lag or wait for a CPU is
        worth a warning only when it is a noticeable share of it."""
        wall = time.perf_counter() - self.wall0
        cpu = time.process_time() - self.cpu0
        pct = 100.0 * cpu / wall if wall > 0 else 0.0
        lags = sorted(self.lags_ms)
        lag_p99 = lags[min(len(lags) - 1, int(0.99 * len(lags)))] if lags else 0.0
        busy = sum(1 for p in self.interval_cpu if p > CPU_WARN_PCT)
        self.rss_max = max(self.rss_max, rss_mib())
        warnings = []
        if wall < MIN_WALL_S:
            pass  # too short to tell start-up work from load
        elif pct > CPU_WARN_PCT:
            warnings.append(f"the load tester used {pct:.0f}% of one core: it, not the target, "
                            "may be the bottleneck (figures are a floor for the target)")
        elif self.interval_cpu and busy > len(self.interval_cpu) / 2:
            warnings.append(f"the load tester was above {CPU_WARN_PCT:.0f}% of one core in "
                            f"{busy} of {len(self.interval_cpu)} intervals: it may be the bottleneck")
        wait = runqueue_wait_s()
        waited = None if wait is None or self.wait0 is None else wait - self.wait0
        st = _schedstat()
        slices = None if st is None or self.slices0 is None else st[1] - self.slices0
        per_wake_ms = 1000.0 * waited / slices if waited is not None and slices else None
        lag_limit = LAG_WARN_MS if not scale_ms else max(LAG_FLOOR_MS, SHARE_OF_SCALE * scale_ms)
        wait_limit = WAIT_FLOOR_MS if not scale_ms else max(WAIT_FLOOR_MS, SHARE_OF_SCALE * scale_ms)
        if waited is not None and wall >= MIN_WALL_S and waited > WAIT_WARN_SHARE * wall and \
                (per_wake_ms is None or per_wake_ms > wait_limit):
            warnings.append(f"the load tester waited {waited:.1f} s of {wall:.1f} s for a CPU"
                            + (f" ({per_wake_ms:.1f} ms per wake-up)" if per_wake_ms else "")
                            + ": the machine is oversubscribed and timings include that wait")
        if lag_p99 > lag_limit and wall >= MIN_WALL_S:
            warnings.append(f"event-loop lag p99 {lag_p99:.1f} ms: timings include the load "
                            "tester's own queueing")
        return {
            "cpu_s": round(cpu, 3),
            "wall_s": round(wall, 3),
            "cpu_pct_of_one_core": round(pct, 1),
            "peak_interval_cpu_pct": round(max(self.interval_cpu), 1) if self.interval_cpu else None,
            "loop_lag_ms_p99": round(lag_p99, 3),
            "loop_lag_ms_max": round(lags[-1], 3) if lags else 0.0,
            "cpu_wait_s": None if waited is None else round(waited, 3),
            "cpu_wait_ms_per_wakeup": None if per_wake_ms is None else round(per_wake_ms, 3),
            "rss_mib_start": round(self.rss_start, 1),
            "rss_mib_max": round(self.rss_max, 1),
            "bottleneck": bool(warnings),
            "warnings": warnings,
        }


def merge_reports(a, b):
    """One report for two rounds of the same target (alternating --compare)."""
    wall = a["wall_s"] + b["wall_s"]
    cpu = a["cpu_s"] + b["cpu_s"]
    waits = [r["cpu_wait_s"] for r in (a, b)]
    peaks = [r["peak_interval_cpu_pct"] for r in (a, b) if r["peak_interval_cpu_pct"] is not None]
    warnings = a["warnings"] + [w for w in b["warnings"] if w not in a["warnings"]]
    return {
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3),
        "cpu_pct_of_one_core": round(100.0 * cpu / wall, 1) if wall > 0 else 0.0,
        "peak_interval_cpu_pct": max(peaks) if peaks else None,
        "loop_lag_ms_p99": max(a["loop_lag_ms_p99"], b["loop_lag_ms_p99"]),
        "loop_lag_ms_max": max(a["loop_lag_ms_max"], b["loop_lag_ms_max"]),
        "cpu_wait_s": None if None in waits else round(sum(waits), 3),
        "cpu_wait_ms_per_wakeup": max((r.get("cpu_wait_ms_per_wakeup") or 0.0 for r in (a, b)), default=None),
        "rss_mib_start": a["rss_mib_start"],
        "rss_mib_max": max(a["rss_mib_max"], b["rss_mib_max"]),
        "bottleneck": a["bottleneck"] or b["bottleneck"],
        "warnings": warnings,
    }
