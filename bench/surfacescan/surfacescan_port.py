#!/usr/bin/env python3
"""A port of surfacescan's attack-surface service, for benchmarking scanfleet.

This is NOT surfacescan. surfacescan is a FastAPI application run by uvicorn
and computes the attack surface with networkx; neither can be installed on
the machines scanfleet is built on. This file re-implements, with the Python
standard library only, what surfacescan does per request:

  * at start, load every *.json file of a data directory (or one file) and
    index it as surfacescan's Scanner does: vm_id -> tags, tag -> vm ids, and
    a tag graph with an edge dest_tag -> source_tag per firewall rule;
  * for each /attack request, from scratch: for every tag of the VM, collect
    the tags reachable in that graph (networkx.descendants, here a plain
    graph search), then every VM carrying one of them, except the VM itself;
  * count every request and its duration in a middleware-like wrapper, and
    answer /stats with vm_count, request_count and average_request_time.

Deliberate differences from the original, all listed in README.md: the
answer is sorted (the original returns set order); a VM's own tag counts when
a rule cycle of any length leads back to it (networkx.descendants never
returns its source, so the original only catches self-loops;
--strict-descendants restores that); average_request_time is in seconds (the
original accumulates whole milliseconds); the server is http.server's
ThreadingHTTPServer with HTTP/1.1 keep-alive rather than uvicorn.

Usage:
    python3 surfacescan_port.py --data DIR_OR_FILE [--host 127.0.0.1] [--port 8001]

Once listening it prints "READY host:port" on stdout, so that a harness can
pass --port 0 and learn the port the kernel chose.
"""

import argparse
import collections
import glob
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Scanner:
    """Attack surface scanner, after surfacescan.scanning.Scanner."""

    def __init__(self, vms=(), fw_rules=(), strict_descendants=False):
        self.strict_descendants = strict_descendants
        self.vm2tag = {}
        self.tag2vm = collections.defaultdict(list)
        # surfacescan: graph.add_edge(rule["dest_tag"], rule["source_tag"])
        self.graph = collections.defaultdict(set)

        for vm in vms:
            vm_id = vm["vm_id"]
            tags = vm.get("tags") or []
            self.vm2tag[vm_id] = tags
            for tag in tags:
                self.tag2vm[tag].append(vm_id)

        for rule in fw_rules:
            self.graph[rule["dest_tag"]].add(rule["source_tag"])

    def descendants(self, tag):
        """Tags reachable from tag through at least one edge.

        networkx.descendants does the same search but never returns tag
        itself; --strict-descendants reproduces that.
        """
        seen = set()
        stack = list(self.graph.get(tag, ()))
        while stack:
            t = stack.pop()
            if t in seen:
                continue
            seen.add(t)
            stack.extend(self.graph.get(t, ()))
        if self.strict_descendants:
            seen.discard(tag)
        return seen

    def scan(self, vm_id):
        """Returns (attackers, found) as surfacescan's Scanner.scan does."""
        tags = self.vm2tag.get(vm_id, None)
        if tags is None:
            return None, False

        tag_surface = set()
        for tag in tags:
            tag_surface |= self.descendants(tag)
            if tag in self.graph.get(tag, ()):  # self-loop, as the original
                tag_surface.add(tag)

        cache = set()
        vm_surface = []
        for tag in tag_surface:
            for vm in self.tag2vm[tag]:
                if vm not in cache and vm != vm_id:
                    vm_surface.append(vm)
                    cache.add(vm)

        vm_surface.sort()
        return vm_surface, True

    @property
    def vm_count(self):
        return len(self.vm2tag)


class Tracker:
    """Request statistics since process start.

    surfacescan uses atomiclong counters; CPython has none in its standard
    library, so a lock guards the two numbers.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.count = 0
        self.duration = 0.0

    def track(self, seconds):
        with self.lock:
            self.count += 1
            self.duration += seconds

    def get_stat(self):
        with self.lock:
            count, duration = self.count, self.duration
        return {
            "request_count": count,
            "average_request_time": duration / count if count else 0,
        }


def load_data(path):
    """Loads and concatenates every *.json file of a directory, or one file."""
    files = [path] if os.path.isfile(path) else sorted(glob.glob(os.path.join(path, "*.json")))
    vms, fw_rules = [], []
    for f in files:
        with open(f) as fd:
            data = json.load(fd)
        vms.extend(data.get("vms") or [])
        fw_rules.extend(data.get("fw_rules") or [])
    return vms, fw_rules


def make_handler(scanner, tracker):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like uvicorn

        def log_message(self, format, *args):  # noqa: A002 - stdlib signature
            pass  # per-request logging would dominate the benchmark

        def send_json(self, status, obj):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            # The middleware: every request is tracked once it is answered,
            # so /stats never includes itself.
            started = time.perf_counter()
            try:
                self.route()
            finally:
                tracker.track(time.perf_counter() - started)

        def route(self):
            url = urlsplit(self.path)
            path = url.path
            if path.startswith("/api/v1/"):
                path = path[len("/api/v1"):]
            if path == "/attack":
                vm_ids = parse_qs(url.query).get("vm_id")
                if not vm_ids:
                    # FastAPI's answer to a missing required parameter.
                    self.send_json(422, {"detail": [{"loc": ["query", "vm_id"], "msg": "field required"}]})
                    return
                surface, found = scanner.scan(vm_ids[0])
                if not found:
                    self.send_json(404, {"detail": "Not Found"})
                    return
                self.send_json(200, surface)
            elif path == "/stats":
                self.send_json(200, {"vm_count": scanner.vm_count, **tracker.get_stat()})
            else:
                self.send_json(404, {"detail": "Not Found"})

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="environment JSON file or directory of *.json files")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001, help="0 picks a free port")
    parser.add_argument("--strict-descendants", action="store_true",
                        help="ignore rule cycles back to the VM's own tag, as networkx.descendants does")
    args = parser.parse_args()

    vms, fw_rules = load_data(args.data)
    scanner = Scanner(vms, fw_rules, strict_descendants=args.strict_descendants)
    tracker = Tracker()

    server = ThreadingHTTPServer((args.host, args.port), make_handler(scanner, tracker))
    server.daemon_threads = True
    host, port = server.server_address[:2]
    print(f"READY {host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
