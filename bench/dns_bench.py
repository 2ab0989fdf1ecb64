#!/usr/bin/env python3
"""
dnsperf against maillab's DNS, stock C{twistd dns --bindzone} and NSD:
same zone (etc/zones/domaineel.rt.zone), same query mix, over UDP and TCP,
each server on its own 127.0.0.1 port with its own config in a temp dir.

Before timing, every query of the mix is sent to maillab and NSD and the
responses compared (rcode, flags, sections as sets): the rate only counts
if the answers are NSD's.

    .venv/bin/python bench/dns_bench.py [--seconds 10] [--clients 20]

With C{--zone-size N[,N...]} it measures instead the cost that grows with
the zone: a generated zone of N names (an A each, TXT and MX on one name
in ten) served alone by maillab and by NSD, the time from start to the
first answer and the resident memory (NSD: all its processes), then
maillab's memory after a query for each of 20,000 names and the longest
wait for an answer while it reloads the zone (SIGHUP, serial raised).

    .venv/bin/python bench/dns_bench.py --zone-size 10000,100000 [--repeat 3]

The floor (maillab with a zone of one name) is printed first; a second
start with the file unchanged reads the zone saved by the first
(C{[dns] zone_cache}), and is shown beside.  With C{--repeat N} each
server is started N times and the shortest time kept (the machine may be
shared).

Needs: apt-get install -y dnsperf nsd.
"""

from __future__ import annotations

import argparse
import compileall
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


SIZE_ORIGIN = "bench.test"


def stopAll(processes, nsd, directory: str) -> None:
    """
    Stop the servers this run started and remove its directory.
    """
    for process in processes:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
    nsd.stop()
    shutil.rmtree(directory, ignore_errors=True)


def generatedZone(names: int, serial: int = 1) -> str:
    """
    A zone of C{names} names: an A each, TXT and MX on one name in ten.
    """
    lines = [
        "$TTL 3600",
        f"@ SOA ns1 hostmaster {serial} 7200 900 1209600 600",
        "@ NS ns1",
        "ns1 A 192.0.2.1",
    ]
    for i in range(names):
        lines.append(f"h{i} A 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
        if i % 10 == 0:
            lines.append(f'h{i} TXT "name {i}"')
            lines.append(f"h{i} MX 10 h{i + 1}")
    return "\n".join(lines) + "\n"


def rss(pids) -> int:
    """
    Resident memory of C{pids} and all their descendants, in bytes.
    """
    children: dict = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total = 0
    todo = list(pids)
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, ()))
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def waitUntilAnswers(port: int, process, what: str, seconds: float = 600) -> float:
    start = time.time()
    while time.time() - start < seconds:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"{what} exited early")
        if udpQuery(port, buildQuery(SIZE_ORIGIN, N.SOA), timeout=0.05):
            return time.time() - start
    raise SystemExit(f"{what} does not answer on {port}")


def startSized(directory: str, zonePath: str, port: int):
    """
    maillab serving C{zonePath} alone, its state (and saved zones) in
    C{directory}/state.
    """
    ini = os.path.join(directory, "maillab.ini")
    with open(ini, "w") as f:
        f.write(
            f"[server]\nstate_directory = {os.path.join(directory, 'state')}\n"
            f"[dns]\nenabled = yes\nlisten = tcp:{port}:interface=127.0.0.1\nzones = {SIZE_ORIGIN}:{zonePath}\n"
        )
    return subprocess.Popen([sys.executable, "-c", SERVE, ini], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)


def stop(process) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def floor(repeat: int = 3) -> float:
    """
    The time maillab takes to answer with a zone of one name: interpreter,
    imports, configuration, listening; what no zone can make shorter.
    """
    directory = tempfile.mkdtemp(prefix="maillab-dnsfloor-")
    try:
        zonePath = os.path.join(directory, "bench.zone")
        with open(zonePath, "w") as f:
            f.write(generatedZone(1))
        times = []
        for _ in range(repeat):
            port = freePort()
            process = startSized(directory, zonePath, port)
            try:
                times.append(waitUntilAnswers(port, process, "maillab"))
            finally:
                stop(process)
        return min(times)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def bestOf(repeat: int, start, stopIt) -> tuple:
    """
    Start a server C{repeat} times: the shortest time to the first answer
    (the machine is shared: the others measure its load) and its memory.
    """
    best = None
    for _ in range(repeat):
        process, port = start()
        try:
            ready = waitUntilAnswers(port, process, "server")
            memory = rss([process.pid])
        finally:
            stopIt(process)
        if best is None or ready < best[0]:
            best = (ready, memory)
    return best


def zoneSize(names: int, floorTime: float, repeat: int = 1) -> None:
    directory = tempfile.mkdtemp(prefix="maillab-dnssize-")
    zonePath = os.path.join(directory, "bench.zone")
    text = generatedZone(names)
    with open(zonePath, "w") as f:
        f.write(text)
    processes = []
    nsd = NSD(_Dummy(), {SIZE_ORIGIN: text})
    try:

        def startNSD():
            nsd.process = subprocess.Popen([nsd.binary, "-d", "-c", nsd.conf], stdout=open(nsd.log, "w"), stderr=subprocess.STDOUT)
            return nsd.process, nsd.port

        nsdReady, nsdRss = bestOf(repeat, startNSD, stop)
        saved = os.path.join(directory, "state", "dns")

        def startCold():
            # Without a saved zone: the file is parsed.
            shutil.rmtree(saved, ignore_errors=True)
            port = freePort()
            return startSized(directory, zonePath, port), port

        if repeat > 1:
            ready, readyRss = bestOf(repeat - 1, startCold, stop)
        process, port = startCold()
        processes.append(process)
        lastReady = waitUntilAnswers(port, process, "maillab")
        lastRss = rss([process.pid])
        if repeat == 1 or lastReady < ready:
            ready, readyRss = lastReady, lastRss
        for i in range(0, names, max(1, names // 20000)):
            udpQuery(port, buildQuery(f"h{i}.{SIZE_ORIGIN}", N.A, edns=1232), timeout=1)
        queriedRss = rss([process.pid])
        # Reload: a higher serial, then queries without pause until the
        # new serial answers; the longest wait is the stall.  Memory is
        # sampled meanwhile (both zones are alive until the swap).
        with open(zonePath, "w") as f:
            f.write(generatedZone(names, serial=2))
        process.send_signal(signal.SIGHUP)
        worst = 0.0
        peakRss = 0
        reloadStart = time.time()
        while time.time() - reloadStart < 600:
            sent = time.time()
            response = udpQuery(port, buildQuery(SIZE_ORIGIN, N.SOA), timeout=30)
            worst = max(worst, time.time() - sent)
            peakRss = max(peakRss, rss([process.pid]))
            if response is not None and decode(response)["answerList"][0][4][2][:4] == (2).to_bytes(4, "big"):
                break
        reloaded = time.time() - reloadStart
        # The old zone is freed in a pool thread after the swap.
        time.sleep(2)
        reloadRss = rss([process.pid])
        stop(process)
        processes.remove(process)
        # A restart with the file unchanged reads the zone saved at the
        # reload ([dns] zone_cache).

        def startWarm():
            port = freePort()
            return startSized(directory, zonePath, port), port

        warm, warmRss = bestOf(repeat, startWarm, stop)
        mib = 1024 * 1024
        print(
            f"{names:>9,} names: NSD ready {nsdReady:5.2f} s, RSS {nsdRss / mib:4.0f} MiB | maillab ready {ready:6.2f} s "
            f"(zone part {max(ready - floorTime, 0):.2f} s), RSS {readyRss / mib:4.0f} MiB; "
            f"saved zone: ready {warm:5.2f} s, RSS {warmRss / mib:4.0f} MiB | ratios to NSD: ready {ready / nsdReady:.1f}x "
            f"(saved {warm / nsdReady:.1f}x), RSS {readyRss / nsdRss:.1f}x\n"
            f"{'':>16} after 20k names queried {queriedRss / mib:.0f} MiB; reload {reloaded:.1f} s, "
            f"longest query wait during it {worst * 1000:.0f} ms, RSS at most {peakRss / mib:.0f} MiB during it, "
            f"{reloadRss / mib:.0f} MiB after",
            flush=True,
        )
        if floorTime > 2 * nsdReady:
            print(f"{'':>16} the floor alone ({floorTime:.2f} s) is more than twice NSD's ready time", flush=True)
    finally:
        stopAll(processes, nsd, directory)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="dnsperf: maillab vs twistd dns vs NSD")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--modes", default="udp,tcp")
    parser.add_argument("--edns", action="store_true", help="queries carry an EDNS0 OPT record (dnsperf -e)")
    parser.add_argument("--zone-size", help="N[,N...]: startup time and memory on generated zones of N names instead")
    parser.add_argument("--repeat", type=int, default=1, help="with --zone-size: start each server this many times, keep the shortest")
    args = parser.parse_args(argv)
    if args.zone_size:
        if not os.path.exists("/usr/sbin/nsd") and shutil.which("nsd") is None:
            raise SystemExit("nsd is missing: apt-get install -y nsd")
        # An installed package carries its byte code (pip compiles it); a
        # checkout run with PYTHONDONTWRITEBYTECODE=1 would compile every
        # module again at each start, 0.03 to 0.04 s that no deployment
        # pays.  Twisted's own files were compiled when pip installed them.
        compileall.compile_dir(os.path.join(ROOT, "twisted_maillab"), quiet=1)
        floorTime = floor(max(3, args.repeat))
        sizes = [int(names.replace("_", "")) for names in args.zone_size.split(",")]
        print(
            f"floor: maillab answers {floorTime:.2f} s after it starts with a zone of one name "
            f"(interpreter, imports, configuration, listening); ready times below include it "
            f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)",
            flush=True,
        )
        for names in sizes:
            zoneSize(names, floorTime, args.repeat)
        return 0
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
        stopAll(processes, nsd, directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
