"""The gateway's command line: serve | mock | record | keys | usage | loadtest.

Run as `python run.py ...` from a checkout, or as the `tornado-grok` console script once installed
with pip (pyproject.toml); the usage lines name whichever of the two was run.

  tornado-grok [--port P] [--upstream-url URL] [--config FILE]   serve the gateway
  tornado-grok mock [ARGS]           run the bundled mock upstream alone (also: grok-mock)
  tornado-grok record [ARGS]         run the recording proxy (also: grok-record)
  tornado-grok keys add NAME         create a client key; prints only the key
  tornado-grok keys list             list key names
  tornado-grok usage [--url URL]     per-key usage from a running gateway's /admin/usage
  tornado-grok loadtest [ARGS]       load-test an OpenAI-compatible endpoint (also: grok-loadtest)
"""

import argparse
import os
import sys

from .progname import prog


def serve_main(argv: list[str]) -> int:
    from tornado_grok import auth, config as cfg, ownership, server

    p = argparse.ArgumentParser(prog=prog(), description="Serve the tornado_grok gateway.")
    p.add_argument("--port", type=int, help="listening port (config: port, env TG_PORT; 0 = free port)")
    p.add_argument("--host", help="listening address (config: host, env TG_HOST)")
    p.add_argument("--upstream-url", help="upstream base URL (config: upstream_url, env TG_UPSTREAM_URL)")
    p.add_argument("--config", help="config file (default conf/gateway.toml, env TG_CONFIG)")
    p.add_argument("--keys-file", help="client keys file (default conf/keys.json, env TG_KEYS_FILE)")
    p.add_argument("--workers", type=int, help="processes sharing the port (config: workers)")
    p.add_argument("--grpc-port", type=int, help="gRPC listening port (config: grpc_port; default the HTTP "
                   "port + 1, a free port with --port 0)")
    p.add_argument("--grpc-upstream", help="upstream gRPC host:port (config: grpc_upstream, default api.x.ai:443)")
    args = p.parse_args(argv)
    try:
        config = cfg.load(args.config, {"port": args.port, "host": args.host,
                                        "upstream_url": args.upstream_url,
                                        "keys_file": args.keys_file, "workers": args.workers,
                                        "grpc_port": args.grpc_port, "grpc_upstream": args.grpc_upstream})
        # Checked here, once, before any worker is forked: a supervisor must not respawn workers
        # that can only fail the same way (and a newcomer gets one line naming the file, not a traceback).
        auth.read_file(config.keys_file)
        ownership.load_secret(config)  # made here, before any worker is forked, when it is missing
    except (cfg.ConfigError, OSError) as e:
        print("run.py: configuration error: %s" % e, file=sys.stderr)
        return 2
    try:
        return server.run(config)
    except cfg.ConfigError as e:  # a file that went bad between the check above and its use
        print("run.py: configuration error: %s" % e, file=sys.stderr)
        return 2


def keys_main(argv: list[str]) -> int:
    from tornado_grok import auth, config as cfg

    p = argparse.ArgumentParser(prog=prog("keys"), description="Manage the gateway's client keys.")
    p.add_argument("action", choices=("add", "list"))
    p.add_argument("name", nargs="?")
    p.add_argument("--keys-file", default=None, help="default conf/keys.json (env TG_KEYS_FILE)")
    p.add_argument("--rpm", type=int, help="this key's requests per minute")
    p.add_argument("--concurrency", type=int, help="this key's concurrent requests")
    p.add_argument("--tpm", type=int, help="this key's tokens per minute")
    p.add_argument("--resumable", action=argparse.BooleanOptionalAction, default=None,
                   help="this key's streams are resumable without X-Resumable (--no-resumable: not)")
    args = p.parse_args(argv)
    path = args.keys_file or cfg.load(overrides={}).keys_file
    if args.action == "list":
        try:
            keys = auth.read_file(path)
        except auth.KeysFileError as e:
            print("run.py keys: %s" % e, file=sys.stderr)
            return 2
        for key in keys:
            print(key.name)
        return 0
    if not args.name:
        p.error("keys add needs a NAME")
    limits = {k: v for k, v in (("requests_per_minute", args.rpm), ("concurrent_requests", args.concurrency),
                                ("tokens_per_minute", args.tpm)) if v is not None}
    try:
        print(auth.add_key(path, args.name, limits or None, args.resumable))
    except ValueError as e:
        print("run.py keys: %s" % e, file=sys.stderr)
        return 2
    print("key %r stored (hash only) in %s" % (args.name, path), file=sys.stderr)
    return 0


def usage_main(argv: list[str]) -> int:
    import json
    import urllib.error
    import urllib.request

    from tornado_grok import config as cfg

    p = argparse.ArgumentParser(prog=prog("usage"), description="Print per-key usage from GET /admin/usage.")
    p.add_argument("--url", help="the gateway's base URL (default: http://host:port of the config)")
    p.add_argument("--admin-key", help="default: config admin_key (env TG_ADMIN_KEY)")
    p.add_argument("--config", help="config file (default conf/gateway.toml, env TG_CONFIG)")
    p.add_argument("--json", action="store_true", help="print the JSON as returned")
    args = p.parse_args(argv)
    config = cfg.load(args.config, {})
    url = (args.url or "http://%s:%d" % (config.host, config.port)).rstrip("/") + "/admin/usage"
    admin_key = args.admin_key or config.admin_key
    if not admin_key:
        p.error("no admin key: pass --admin-key or set admin_key (env TG_ADMIN_KEY)")
    request = urllib.request.Request(url, headers={"Authorization": "Bearer " + admin_key})
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=30) as r:
            doc = json.load(r)
    except urllib.error.HTTPError as e:
        print("run.py usage: %s answered %d: %s" % (url, e.code, e.read().decode("utf-8", "replace")),
              file=sys.stderr)
        return 1
    except OSError as e:
        print("run.py usage: cannot reach %s: %s" % (url, e), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    columns = ("requests", "streams", "abandoned_streams", "prompt_tokens", "completion_tokens",
               "reasoning_tokens", "errors", "estimated_requests", "estimated_tokens")
    rows = [("key",) + columns] + [(name,) + tuple(str(t.get(c, 0)) for c in columns)
                                   for name, t in doc["keys"].items()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    print("(%s usage, %s backend)" % (doc.get("scope"), doc.get("backend")), file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (the console script passes it to sys.exit)."""
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv else ""
    if command == "mock":
        from mock_upstream import cli
        return cli.main(argv[1:], prog=prog("mock")) or 0
    if command == "record":
        from mock_upstream import recorder
        return recorder.main(argv[1:], prog=prog("record")) or 0
    if command == "loadtest":
        from tornado_grok.loadtest import cli
        return cli.main(argv[1:]) or 0
    if command == "keys":
        return keys_main(argv[1:])
    if command == "usage":
        return usage_main(argv[1:])
    if command in ("serve",):
        argv = argv[1:]
    return serve_main(argv)

