#!/usr/bin/env python3
"""
dnsperf against maillab's DNS, stock C{twistd dns --bindzone} and NSD:
same zone (etc/zones/domaineel.rt.zone), same query mix, over UDP and TCP,
each server on its own 127.0.0.1 port with its own config in a temp dir.

Before timing, every query of the mix is sent to maillab and NSD and the
responses compared (rcode, flags, sections as sets): the rate only counts
if the answers are NSD's.

    .venv/bin/python bench/dns_bench.py [--seconds 10] [--clients 20]

Needs: apt-get install -y dnsperf nsd.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from tests.test_dns_support import NSD, buildQuery, comparable, decode, freePort, udpQuery, tcpQuery  # noqa: E402
from twisted_maillab.dns import names as N  # noqa: E402

ZONE = os.path.join(ROOT, "etc", "zones", "domaineel.rt.zone")
MIX = [
    ("domaineel.rt", "MX"),
    ("domaineel.rt", "SOA"),
    ("domaineel.rt", "NS"),
    ("serveur.domaineel.rt", "A"),
    ("serveur.domaineel.rt", "AAAA"),
    ("smtp.domaineel.rt", "A"),
    ("smtp.domaineel.rt", "MX"),
    ("serveurdeux.domaineel.rt", "A"),
    ("nothere.domaineel.rt", "A"),
    ("x.sous.domaineel.rt", "A"),
    ("SMTP.DomaineEL.rt", "A"),
    ("www.domaineel.rt", "AAAA"),
]

SERVE = """
import sys
from twisted.internet import reactor
from twisted_maillab import config, service
s = service.makeService(config.load(sys.argv[1]), reactor)
s.privilegedStartService(); s.startService()
reactor.run()
"""


class _Dummy:
    def fail(self, message):
        raise SystemExit(message)


def waitForAnswer(port: int, process, what: str) -> None:
    deadline = time.time() + 20
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited early")
        if udpQuery(port, buildQuery("domaineel.rt", N.SOA), timeout=0.3):
            return
    raise SystemExit(f"{what} does not answer on {port}")


def startMaillab(directory: str, port: int):
    ini = os.path.join(directory, "maillab.ini")
    with open(ini, "w") as f:
        f.write(f"[dns]\nenabled = yes\nlisten = tcp:{port}:interface=127.0.0.1\nzones = domaineel.rt:{ZONE}\ntcp_max_clients = 1000\n")
    process = subprocess.Popen([sys.executable, "-c", SERVE, ini], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    waitForAnswer(port, process, "maillab")
    return process


def startTwistd(directory: str, port: int):
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    process = subprocess.Popen(
        [twistd, "-n", "--pidfile", os.path.join(directory, "twistd.pid"), "-l", os.path.join(directory, "twistd.log"),
         "dns", "--bindzone", ZONE, "-p", str(port), "-i", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=directory,
    )
    waitForAnswer(port, process, "twistd dns")
    return process


def dnsperf(port: int, datafile: str, seconds: int, clients: int, mode: str, edns: bool = False) -> float:
    command = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", datafile, "-l", str(seconds), "-c", str(clients), "-m", mode, "-q", str(max(100, clients * 4))]
    if edns:
        command.append("-e")
    output = subprocess.run(command, capture_output=True, text=True).stdout
    match = re.search(r"Queries per second:\s+([\d.]+)", output)
    lost = re.search(r"Queries lost:\s+(\d+)", output)
    if match is None:
        raise SystemExit(f"dnsperf failed:\n{output}")
    return float(match.group(1)), int(lost.group(1)) if lost else 0


def checkAnswers(maillabPort: int, nsdPort: int) -> int:
    """
    Compare maillab with NSD on the mix, over UDP (with and without EDNS) and TCP.
    """
    checked = 0
    for name, qtype in MIX:
        for edns in (None, 1232):
            message = buildQuery(name, N.TYPE_NAMES[qtype], edns=edns)
            ours = comparable(decode(udpQuery(maillabPort, message)))
            theirs = comparable(decode(udpQuery(nsdPort, message)))
            if ours != theirs:
                raise SystemExit(f"answers differ for {name} {qtype} edns={edns}:\n maillab {ours}\n nsd     {theirs}")
            ours = comparable(decode(tcpQuery(maillabPort, message)[0]))
            theirs = comparable(decode(tcpQuery(nsdPort, message)[0]))
            if ours != theirs:
                raise SystemExit(f"TCP answers differ for {name} {qtype}")
            checked += 2
    return checked


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="dnsperf: maillab vs twistd dns vs NSD")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--modes", default="udp,tcp")
    parser.add_argument("--edns", action="store_true", help="queries carry an EDNS0 OPT record (dnsperf -e)")
    args = parser.parse_args(argv)
    for tool, package in (("dnsperf", "dnsperf"), ("nsd", "nsd")):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            raise SystemExit(f"{tool} is missing: apt-get install -y {package}")
    directory = tempfile.mkdtemp(prefix="maillab-dnsbench-")
    datafile = os.path.join(directory, "queries.txt")
    with open(datafile, "w") as f:
        for name, qtype in MIX:
            f.write(f"{name} {qtype}\n")
    with open(ZONE) as f:
        zoneText = f.read()
    processes = []
    nsd = NSD(_Dummy(), {"domaineel.rt": zoneText})
    try:
        nsd.start()
        ports = {"maillab": freePort()}
        processes.append(startMaillab(directory, ports["maillab"]))
        ports["twistd"] = freePort()
        processes.append(startTwistd(directory, ports["twistd"]))
        ports["nsd"] = nsd.port
        checked = checkAnswers(ports["maillab"], ports["nsd"])
        print(f"answers: maillab == NSD for all {checked} queries of the mix (UDP with/without EDNS, TCP)")
        print(f"dnsperf -l {args.seconds} -c {args.clients}{' -e' if args.edns else ''}, {len(MIX)}-query mix, zone {os.path.relpath(ZONE, ROOT)}, on {os.cpu_count()} CPUs")
        results = {}
        for mode in args.modes.split(","):
            for server in ("maillab", "twistd", "nsd"):
                qps, lost = dnsperf(ports[server], datafile, args.seconds, args.clients, mode, args.edns)
                results[(server, mode)] = qps
                print(f"  {mode:3} {server:8} {qps:10.0f} qps  (lost {lost})", flush=True)
        for mode in args.modes.split(","):
            nsdRate = results[("nsd", mode)]
            print(
                f"{mode}: maillab/NSD = {results[('maillab', mode)] / nsdRate:.2f}   "
                f"twistd/NSD = {results[('twistd', mode)] / nsdRate:.2f}   "
                f"maillab/twistd = {results[('maillab', mode)] / max(results[('twistd', mode)], 1):.1f}"
            )
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        nsd.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
