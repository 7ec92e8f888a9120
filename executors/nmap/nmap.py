#!/usr/bin/env python3
"""scanfleet executor: a TCP connect scan with nmap.

Reads its arguments from EXECUTOR_CONFIG_* variables, runs nmap with XML
output on stdout and prints one scanfleet record per line as each host
completes. nmap's own messages go to stderr, which is the task's log.
Python 3 standard library only.
"""

import ipaddress
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

# nmap's port states onto scanfleet's closed set of service states.
STATES = {
    "open": "open",
    "closed": "closed",
    "filtered": "filtered",
    "unfiltered": "unfiltered",
    "open|filtered": "open|filtered",
    "closed|filtered": "filtered",
}


def log(msg):
    print("nmap executor: " + msg, file=sys.stderr, flush=True)


def emit(record):
    sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def addresses_only(targets):
    """Keep IP addresses and prefixes: nmap would resolve a name and scan
    whatever address it got, which the worker never checked against the
    workspace's scope."""
    kept = []
    for t in targets:
        try:
            ipaddress.ip_network(t, strict=False)
            kept.append(t)
        except ValueError:
            log(f"skipped {t!r}: not an IP address or prefix")
    return kept


def emit_host(host):
    """Print the records of one <host> element; returns 1 if it was up."""
    ip = None
    for a in host.findall("address"):
        if a.get("addrtype") in ("ipv4", "ipv6"):
            ip = a.get("addr")
            break
    status = host.find("status")
    if ip is None or status is None or status.get("state") != "up":
        return 0
    ports = []
    for p in host.findall("ports/port"):
        st = p.find("state")
        state = STATES.get(st.get("state") if st is not None else "")
        if state is None:
            continue
        svc = {"kind": "service", "ip": ip, "port": int(p.get("portid")),
               "proto": p.get("protocol"), "state": state, "reason": st.get("reason")}
        s = p.find("service")
        if s is not None:
            if s.get("name"):
                svc["name"] = s.get("name")
            banner = " ".join(x for x in (s.get("product"), s.get("version"), s.get("extrainfo")) if x)
            if banner:
                svc["banner"] = banner
        ports.append(svc)
    # With -Pn every target is "up" by decree (reason user-set): report the
    # host only when something answered.
    if status.get("reason") == "user-set" and not any(s["state"] == "open" for s in ports):
        return 0
    rec = {"kind": "host", "ip": ip, "state": "up"}
    names = [n.get("name") for n in host.findall("hostnames/hostname") if n.get("name")]
    if names:
        rec["hostnames"] = names
    emit(rec)
    for svc in ports:
        emit(svc)
    return 1


def main():
    targets = addresses_only(json.loads(os.environ.get("EXECUTOR_CONFIG_TARGET", "[]")))
    if not targets:
        log("no address to scan")
        return 0
    cmd = ["nmap", "-sT", "-n", "-oX", "-", "--noninteractive"]
    if os.environ.get("EXECUTOR_CONFIG_SKIP_DISCOVERY"):
        cmd.append("-Pn")
    if os.environ.get("EXECUTOR_CONFIG_SERVICE_VERSION"):
        cmd.append("-sV")
    if os.environ.get("EXECUTOR_CONFIG_TIMING"):
        cmd.append("-T" + os.environ["EXECUTOR_CONFIG_TIMING"])
    if os.environ.get("EXECUTOR_CONFIG_PORTS"):
        cmd += ["-p", os.environ["EXECUTOR_CONFIG_PORTS"]]
    # Targets go in a file, not the command line: no length limit, and a
    # target can never be read as an option. TMPDIR is the run's own.
    with tempfile.NamedTemporaryFile("w", suffix=".targets", delete=False) as f:
        f.write("\n".join(targets) + "\n")
    cmd += ["-iL", f.name]
    log("running " + " ".join(cmd))
    up = 0
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
        try:
            for _, elem in ET.iterparse(proc.stdout, events=("end",)):
                if elem.tag == "host":
                    up += emit_host(elem)
                    elem.clear()
        except ET.ParseError as e:
            log(f"unreadable nmap output: {e}")
        code = proc.wait()
    finally:
        os.unlink(f.name)
    log(f"{up} hosts up; nmap exited with status {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
