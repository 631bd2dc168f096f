"""Real server processes for the tests: the gateway started through run.py on a free loopback port.

Plain functions, so any test module (or bench script) can use them; conftest.py wraps them in fixtures.
A process prints one "... listening on http://127.0.0.1:PORT" line when it is ready; we wait for
that line (a readiness signal, not a sleep) and kill the process at the end.
"""

import os
import re
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UPSTREAM_KEY = "xai-test-upstream-key-0123456789"
_LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:(\d+))")
_GRPC_LISTENING = re.compile(r"^gRPC listening on (127\.0\.0\.1:\d+)")


def _die_with_parent() -> None:
    """In the child (Linux): SIGTERM when the test process dies, so a killed pytest leaves nothing."""
    if sys.platform.startswith("linux"):
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


class Process:
    """A child process whose stdout and stderr are collected; `url` is known once it listens."""

    def __init__(self, argv: list[str], env: dict, ready_timeout: float = 20.0):
        self.argv = argv
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL, text=True, bufsize=1, preexec_fn=_die_with_parent)
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._ready = threading.Event()
        self.url = None
        self.port = None
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout_lines, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr_lines, False), daemon=True).start()
        if not self._ready.wait(ready_timeout) or self.url is None:
            self.stop()
            raise RuntimeError("%s did not start:\n%s\n%s" % (
                " ".join(argv), "".join(self.stdout_lines), "".join(self.stderr_lines[-40:])))

    def _pump(self, pipe, lines: list, watch: bool) -> None:
        for line in pipe:
            lines.append(line)
            if watch and self.url is None:
                m = _LISTENING.search(line)
                if m:
                    self.url, self.port = m.group(1), int(m.group(2))
                    self._ready.set()
        if watch:
            self._ready.set()  # exited before listening: let the waiter see it

    @property
    def stdout(self) -> str:
        return "".join(self.stdout_lines)

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def signal(self, sig=signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def stop_gracefully(self, timeout: float = 30.0) -> None:
        """SIGTERM and wait (a --workers supervisor passes it on to its workers), then stop()."""
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            try:
                pipe.close()
            except OSError:
                pass


def write_config(path: str, settings: dict) -> str:
    """Writes a gateway.toml holding `settings` (flat names; the loader accepts any [section])."""
    lines = ["[test]"]
    for name, value in settings.items():
        if isinstance(value, bool):
            lines.append("%s = %s" % (name, "true" if value else "false"))
        elif isinstance(value, (int, float)):
            lines.append("%s = %r" % (name, value))
        else:
            lines.append('%s = "%s"' % (name, str(value).replace("\\", "\\\\").replace('"', '\\"')))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def add_key(keys_file: str, name: str, *flags: str) -> str:
    """Creates a client key with `run.py keys add` (the real CLI) and returns it."""
    out = subprocess.run([sys.executable, "run.py", "keys", "add", name, "--keys-file", keys_file, *flags],
                         cwd=ROOT, capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.strip()


class Gateway(Process):
    """The gateway process, with `.base` = its /api/v1 URL and `.grpc` = its gRPC 127.0.0.1:PORT."""

    @property
    def base(self) -> str:
        return self.url + "/api/v1"

    @property
    def grpc(self) -> str | None:
        """Printed before the HTTP line, so known once the gateway is ready (None with gRPC off)."""
        for line in self.stdout_lines:
            m = _GRPC_LISTENING.search(line)
            if m:
                return m.group(1)
        return None


def start_gateway(tmp_dir: str, upstream_url: str | None, settings: dict | None = None,
                  upstream_key: str | None = UPSTREAM_KEY, extra_env: dict | None = None,
                  args: tuple = ()) -> Gateway:
    """Starts `python run.py --port 0` with its own config file and keys file under tmp_dir.

    settings: gateway.toml values (e.g. {"idle_timeout": 0.5}); upstream_url None + upstream_key None
    runs the newcomer's path (no XAI_API_KEY: the bundled mock in-process).
    """
    os.makedirs(tmp_dir, exist_ok=True)
    config = write_config(os.path.join(tmp_dir, "gateway.toml"),
                          dict({"forward_mock_headers": True}, **(settings or {})))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TG_") and k != "XAI_API_KEY"}
    env["PYTHONUNBUFFERED"] = "1"
    if upstream_key:
        env["XAI_API_KEY"] = upstream_key
    env.update(extra_env or {})
    argv = [sys.executable, "run.py", "--port", "0", "--config", config,
            "--keys-file", os.path.join(tmp_dir, "keys.json")]
    if upstream_url:
        argv += ["--upstream-url", upstream_url]
    gateway = Gateway(argv + list(args), env)
    gateway.id_secret_file = os.path.join(tmp_dir, "id_secret")  # the default: beside the keys file
    return gateway


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.01):
    """Polls `predicate` until it is truthy (returns its value) or fails after `timeout` seconds.

    For conditions no event announces (a process exit, a counter in another process); never used
    as a fixed delay.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within %ss" % timeout)
        time.sleep(interval)
