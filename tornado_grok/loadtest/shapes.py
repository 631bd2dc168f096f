"""Load shapes: closed loop (N streams in flight) and open loop (Poisson arrivals at R/s).

Both stop issuing at the request cap or the duration cap, whichever comes first, then wait for the
requests in flight (each bounded by its own timeout), so a run always ends by itself.
"""
import asyncio
import random
import sys
import time
from dataclasses import dataclass
from typing import Optional

from .client import Client
from .grpc_client import GrpcClient
from .selfcheck import LAG_WARN_MS, SelfMonitor
from .stats import Recorder, describe

perf = time.perf_counter
TICK_S = 0.25
START_BATCH = 200  # closed loop: workers started per event-loop iteration


@dataclass
class Shape:
    """How much load, for how long."""

    concurrency: int = 1                 # closed loop: streams in flight
    rate: Optional[float] = None         # open loop: new requests per second (Poisson)
    seed: Optional[int] = None
    requests: Optional[int] = None       # cap on requests issued (arrivals, in open loop)
    duration: Optional[float] = None     # cap on seconds spent issuing
    max_inflight: int = 10000            # open loop: arrivals beyond this are dropped, counted
    ramp_up: float = 0.0                 # closed loop: spread the workers' starts over S seconds

    def describe(self):
        if self.rate:
            return f"open loop, {self.rate:g} req/s Poisson (seed {self.seed})"
        ramp = f", ramp-up {self.ramp_up:g} s" if self.ramp_up else ""
        return f"closed loop, {self.concurrency} in flight{ramp}"


def poisson_arrivals(rate, seed=None):
    """Endless arrival offsets (s from start) of a Poisson process of `rate` per second."""
    rng = random.Random(seed)
    t = 0.0
    while True:
        t += rng.expovariate(rate)
        yield t


def poisson_schedule(rate, seed=None, n=None, duration=None):
    """The first arrival offsets, up to `n` arrivals and/or before `duration` seconds."""
    if n is None and duration is None:
        raise ValueError("poisson_schedule needs n or duration")
    out = []
    for t in poisson_arrivals(rate, seed):
        if (n is not None and len(out) >= n) or (duration is not None and t >= duration):
            break
        out.append(t)
    return out


async def one_request(client, workload, conv):
    """The next request of `conv` (or the target's one body when nothing varies); returns the
    conversation to continue, or None when it is over."""
    if workload is None or not workload.varies:
        await client.request()
        return None
    if conv is None:
        conv = workload.conversation()
    body = client.target.build(conv.messages(), workload.max_tokens_for_next())
    res = await client.request(conv, body)
    if res.end != "done" or workload.turns == 1:
        return None  # a failed turn ends its conversation
    conv.answered("".join(res.text or ()))
    return conv if conv.turn < conv.turns else None


async def closed_loop(client, shape, stop, workload=None):
    """`concurrency` workers, each issuing its next request when its last one ends (the next
    turn of its conversation, or a new conversation)."""
    deadline = perf() + shape.duration if shape.duration else float("inf")
    cap = shape.requests
    issued = 0

    n = shape.concurrency if cap is None else min(shape.concurrency, cap)
    t0 = perf()

    async def worker(i):
        nonlocal issued
        if shape.ramp_up:  # worker i starts at i/n of the ramp (a stop cancels the sleep)
            await asyncio.sleep(max(0.0, t0 + shape.ramp_up * i / n - perf()))
        conv = None
        plain = workload is None or not workload.varies  # the usual case: no extra frame per request
        while (cap is None or issued < cap) and perf() < deadline and not stop.is_set():
            issued += 1
            if plain:
                await client.request()
            else:
                conv = await one_request(client, workload, conv)

    workers = []
    try:
        for i in range(n):
            workers.append(asyncio.ensure_future(worker(i)))
            if i % START_BATCH == START_BATCH - 1:
                await asyncio.sleep(0)  # let connects and reads run between batches of starts
        await asyncio.gather(*workers)
    except asyncio.CancelledError:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise


async def conversation(client, workload):
    """Open loop: one arrival is one conversation, its turns one after the other."""
    conv = await one_request(client, workload, None)
    while conv is not None:
        conv = await one_request(client, workload, conv)


async def open_loop(client, shape, stop, workload=None):
    """Requests start at Poisson arrival times whatever the target's speed (no coordinated omission)."""
    start = perf()
    rec = client.rec
    tasks = set()
    try:
        await _arrivals(client, shape, stop, start, rec, tasks, workload)
    except asyncio.CancelledError:  # stopped: end the requests still running, then re-raise
        pending = list(tasks)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        raise


async def _arrivals(client, shape, stop, start, rec, tasks, workload):
    for i, offset in enumerate(poisson_arrivals(shape.rate, shape.seed)):
        if (shape.requests is not None and i >= shape.requests) or \
                (shape.duration is not None and offset >= shape.duration) or stop.is_set():
            break
        delay = start + offset - perf()
        while delay > 0 and not stop.is_set():  # sleep in slices so a stop is seen promptly
            await asyncio.sleep(min(delay, TICK_S))
            delay = start + offset - perf()
        if stop.is_set():
            break
        rec.start_lag_ms.append((perf() - start - offset) * 1000.0)
        if rec.open >= shape.max_inflight:
            rec.dropped += 1
            continue
        if workload is None or not workload.varies:
            task = asyncio.ensure_future(client.request())
        elif workload.turns > 1:
            task = asyncio.ensure_future(conversation(client, workload))
        else:
            task = asyncio.ensure_future(one_request(client, workload, None))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)


def _scale_ms(rec):
    """The smallest positive median of TTFT and chunk gap: what the tester's own delays compare to."""
    meds = [d["p50"] for d in (describe(rec.ttft_ms), describe(rec.gap_ms)) if d and d["p50"] > 0]
    return min(meds) if meds else None


def progress_line(label, rec, cpu_pct):
    t = perf() - rec.t_start
    n = len(rec.ttft_ms)
    ttft = ""
    if n:
        recent = sorted(rec.ttft_ms[-1000:])
        ttft = f" ttft~p50 {recent[len(recent) // 2]:.1f}ms"
    errs = rec.finished - rec.ends.get("done", 0) - rec.ends.get("cancelled", 0)
    return (f"\r[{label}] {t:6.1f}s open {rec.open:5d} done {rec.ends.get('done', 0):7d} "
            f"err {errs:5d} {rec.finished / t if t > 0 else 0:8.1f} req/s "
            f"{rec.chunks / t if t > 0 else 0:9.0f} chunks/s{ttft} cpu {cpu_pct:3.0f}%\x1b[K")


async def run_load(target, shape, *, progress=False, label="target", stop=None, warmup=0,
                   connect_limit=0, client=None, workload=None, records=False, keep_open=False):
    """Drive `target` with `shape`; returns (Recorder, self-check report, connections opened).

    Pass the `client` of an earlier run (a round of --compare --rounds) to keep its kept-alive
    connections; `warmup` requests then need not be repeated."""
    stop = stop or asyncio.Event()
    rec = Recorder()
    if client is None:
        client = (GrpcClient if target.api == "grpc" else Client)(target, rec, connect_limit)
    if warmup:
        client.rec = rec
        await closed_loop(client, Shape(concurrency=shape.concurrency, requests=warmup), stop, workload)
        rec = Recorder()
    client.rec = rec
    for conn in client.idle:
        conn.rec = rec
    if records:
        rec.rows = []
    opened_before = client.connections_opened
    mon = SelfMonitor(TICK_S)
    rec.start_clock()
    rec.timeline.append((0.0, 0, 0, 0, 0, 0, 0.0))  # rates over time start from zero
    driver = open_loop if shape.rate else closed_loop
    task = asyncio.ensure_future(driver(client, shape, stop, workload))
    stopper = asyncio.ensure_future(stop.wait())
    next_tick = perf() + TICK_S
    try:
        while not task.done():
            await asyncio.wait({task, stopper}, timeout=max(0.0, next_tick - perf()),
                               return_when=asyncio.FIRST_COMPLETED)
            if stopper.done() and not task.done():
                client.abort_all("cancelled")
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                break
            if perf() >= next_tick:
                pct = mon.sample(next_tick)
                rec.tick(pct)
                if progress:
                    sys.stderr.write(progress_line(label, rec, pct))
                    sys.stderr.flush()
                next_tick += TICK_S
                if next_tick < perf():  # fell far behind: do not replay missed ticks
                    next_tick = perf() + TICK_S
        if not task.cancelled():
            task.result()
    finally:
        stopper.cancel()
        if stop.is_set() or not keep_open:
            client.close()
        if progress:
            sys.stderr.write("\n")
    pct = mon.sample(perf())
    rec.tick(pct)
    me = mon.report(_scale_ms(rec))
    lag = describe(rec.start_lag_ms)
    if lag and lag["p99"] > LAG_WARN_MS:
        me["warnings"].append(f"open loop: requests started up to {lag['p99']:.1f} ms (p99) after "
                              "their scheduled arrival: the load tester fell behind its schedule")
        me["bottleneck"] = True
    return rec, me, client.connections_opened - opened_before
