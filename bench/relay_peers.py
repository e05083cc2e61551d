"""make bench's relay scenarios (issue 11, "Performance"): client -> RELAY -> sockit serve.

Imported by bench/run, which hands over its module (init()) for Server, the pinning, the quiet
wait and the formatting. Every run starts a fresh backend (`sockit serve`, pinned with the load
generator on CPU 0) and a fresh relay (pinned alone on CPU 1, its children too), interleaved:

  sockit-relay       sockit relay 127.0.0.1:0 TARGET            (splice, the default)
  sockit-relay-copy  sockit relay 127.0.0.1:0 TARGET --no-splice (the user-space copy)
  haproxy            HAProxy, mode tcp, nbthread 1, option splice-auto, foreground (-db)
  socat              socat TCP-LISTEN:P,reuseaddr,fork,backlog=4096 TCP:127.0.0.1:Q
  (UDP: sockit relay udp:// udp:// and socat UDP-RECVFROM:P,fork UDP:127.0.0.1:Q)

The load generator is `sockit bench` (with --server-pid RELAY, so the relay's CPU time per
message is measured), except for UDP, which `sockit bench` does not speak: bench/udp_load.c
(8 peers x 32 datagrams of 64 B in flight, plain sockets).

Idle memory: 1,000 connections held by `sockit bench -m idle`; once the relay has accepted them
all (counted in /proc/net/tcp) and half a second has passed, the relay's VmRSS (and PSS, and
open fds) is read and compared with before. socat forks a process per connection: its figure is
the PSS of its whole process tree (shared pages split between the processes), beside the sum
of VmRSS (shared pages counted once per process).
"""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time

B = None  # bench/run's module
HOLD = 1000


def init(bench_module):
    global B
    B = bench_module


def T():
    return ["-t", "%g" % B.SECS, "--warmup", "%g" % B.WARMUP]


def scenarios():
    tcp = ["sockit-relay", "sockit-relay-copy", "haproxy", "socat"]
    return [
        {"id": "relay_bulk", "relay": True, "title": "relay: one bulk stream to discard",
         "backend": ["--mode", "discard"], "args": ["-m", "bulk", "-c", "1", "-s", "128K"] + T(),
         "metric": "Gbit/s", "servers": tcp,
         "targets": [("haproxy", "thr", 1.0), ("socat", "thr", 3.0)]},
        {"id": "relay_echo64", "relay": True, "title": "relay: echo 64 B, 50 connections, depth 1",
         "backend": ["--mode", "echo"], "args": ["-c", "50", "-d", "1", "-s", "64"] + T(),
         "metric": "msg/s", "servers": tcp,
         "targets": [("haproxy", "thr", 1.0), ("haproxy", "p99", 1.0)]},
        {"id": "relay_greet", "relay": True,
         "title": "relay: new connections per second (greet and close, 10 concurrent clients)",
         "backend": [], "args": ["-m", "connect", "-c", "10"] + T(), "metric": "conn/s",
         "servers": tcp, "targets": [("haproxy", "thr", 1.0), ("socat", "thr", 30.0)]},
        {"id": "relay_idle", "relay": True,
         "title": "relay: memory per idle relayed pair, %d pairs" % HOLD,
         "backend": ["--mode", "echo"],
         "args": ["-m", "idle", "-c", str(HOLD), "-t", "4", "--warmup", "20"],
         "metric": "bytes/pair", "servers": tcp, "targets": [(None, "mem", 1024)]},
        {"id": "relay_udp", "relay": True,
         "title": "relay: UDP echo datagrams/s, 64 B, 8 peers x 32 in flight",
         "backend": ["--mode", "echo"], "metric": "datagrams/s",
         "servers": ["sockit-relay-udp", "socat-udp"], "targets": [("socat-udp", "thr", 1.0)]},
    ]


# ------------------------------------------------------------------------------ the relays

HAPROXY_CFG = """\
global
    nbthread 1
    # maxconn 5000: about 12,500 fds, under this container's hard limit of 20,000
    maxconn 5000
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    option splice-auto
    maxconn 5000
frontend relay
    bind 127.0.0.1:%(port)d backlog 4096
    default_backend target
backend target
    server s1 %(target)s maxconn 5000
"""


def relay_argv(kind, target, port, tmp):
    """argv of a relay listening on 127.0.0.1:port (port None: it picks one and says so)."""
    hostport = target.split("://", 1)[-1]
    if kind == "sockit-relay":
        return [B.SOCKIT, "relay", "127.0.0.1:0", hostport]
    if kind == "sockit-relay-copy":
        return [B.SOCKIT, "relay", "127.0.0.1:0", hostport, "--no-splice"]
    if kind == "sockit-relay-udp":
        return [B.SOCKIT, "relay", "udp://127.0.0.1:0", "udp://" + hostport]
    if kind == "haproxy":
        cfg = os.path.join(tmp, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(HAPROXY_CFG % {"port": port, "target": hostport})
        return ["haproxy", "-f", cfg, "-db"]
    if kind == "socat":
        return ["socat", "TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork,backlog=4096" % port,
                "TCP:" + hostport]
    if kind == "socat-udp":
        return ["socat", "UDP-RECVFROM:%d,bind=127.0.0.1,fork" % port, "UDP:" + hostport]
    raise ValueError(kind)


FIXED_PORT = {"haproxy", "socat", "socat-udp"}
NEEDS = {"haproxy": "haproxy", "socat": "socat", "socat-udp": "socat"}
LABELS = {
    "sockit-relay": "sockit relay (splice, the default)",
    "sockit-relay-copy": "sockit relay --no-splice (copy)",
    "haproxy": "HAProxy mode tcp, nbthread 1, splice-auto",
    "socat": "socat TCP-LISTEN,fork TCP:",
    "sockit-relay-udp": "sockit relay udp:// udp://",
    "socat-udp": "socat UDP-RECVFROM,fork UDP:",
}


# ------------------------------------------------------------------------------ measuring

def tree(pid):
    return [pid] + B.descendants(pid)


def status_kib(pid, field="VmRSS:"):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def pss_kib(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def fds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return 0


def memory(pid):
    procs = tree(pid)
    return {"rss_kib": status_kib(pid), "pss_kib": pss_kib(pid), "fds": fds(pid),
            "processes": len(procs),
            "tree_rss_kib": sum(status_kib(p) for p in procs),
            "tree_pss_kib": sum(pss_kib(p) for p in procs),
            "tree_fds": sum(fds(p) for p in procs)}


def established_to(port):
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                for line in f.readlines()[1:]:
                    parts = line.split()
                    if parts[3] == "01" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        n += 1
        except OSError:
            pass
    return n


def bench_json(r):
    try:
        out = json.loads(r.stdout.decode())
    except ValueError:
        raise RuntimeError("sockit bench printed no JSON (exit %d): %s"
                           % (r.returncode, r.stderr.decode()[-500:]))
    out["exit_status"] = r.returncode
    return out


def run_idle(sc, relay):
    port = int(relay.address.rsplit(":", 1)[1])
    time.sleep(0.3)
    before = memory(relay.pid)
    cmd = [B.SOCKIT, "bench", relay.address] + sc["args"] + ["--json", "-q", "--server-pid",
                                                            str(relay.pid)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=B.client_setup)
    during = None
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline and p.poll() is None:
        if established_to(port) >= HOLD:
            time.sleep(0.5)
            during = memory(relay.pid)
            break
        time.sleep(0.1)
    so, se = p.communicate(timeout=60)
    out = bench_json(subprocess.CompletedProcess(cmd, p.returncode, so, se))
    out["command"] = " ".join(["sockit", "bench", "ADDR"] + sc["args"] +
                              ["--json", "-q", "--server-pid", "PID"])
    out["memory_before"], out["memory_during"] = before, during
    if during:
        socat = relay.name.startswith("socat")
        key = "tree_pss_kib" if socat else "rss_kib"
        out["bytes_per_pair"] = (during[key] - before[key]) * 1024.0 / HOLD
        out["rss_sum_bytes_per_pair"] = (during["tree_rss_kib"] - before["tree_rss_kib"]) * 1024.0 / HOLD
        out["pss_bytes_per_pair"] = (during["tree_pss_kib"] - before["tree_pss_kib"]) * 1024.0 / HOLD
        out["fds_per_pair"] = (during["tree_fds"] - before["tree_fds"]) / HOLD
        out["processes"] = during["processes"]
    return out


def run_udp(sc, relay):
    port = int(relay.address.rsplit(":", 1)[1])
    load = os.path.join(B.PEERS, "udp_load")
    cmd = [load, "127.0.0.1", str(port), "%g" % B.SECS, "%g" % B.WARMUP, "8", "32", "64"]
    t0 = B.cpu_of(relay.pid)
    r = subprocess.run(cmd, capture_output=True, timeout=B.SECS + B.WARMUP + 30,
                       preexec_fn=B.client_setup)
    kids = B.descendants(relay.pid)
    t1 = B.cpu_of(relay.pid)
    try:
        out = json.loads(r.stdout.decode())
    except ValueError:
        raise RuntimeError("udp_load printed nothing (exit %d): %s"
                           % (r.returncode, r.stderr.decode()[-300:]))
    out["per_second"] = out["datagrams_per_s"]
    out["processes_at_end"] = 1 + len(kids)
    if t0 is not None and t1 is not None and not kids and out["echoed"]:
        out["server"] = {"cpu_us_per_message": (t1 - t0) * 1e6 / out["echoed"]}
    out["command"] = "build/bench/udp_load 127.0.0.1 PORT %g %g 8 32 64" % (B.SECS, B.WARMUP)
    return out


class Skip(Exception):
    pass


def run_one(sc, kind):
    if kind in NEEDS and not B.have(NEEDS[kind]):
        raise Skip("%s is not installed" % NEEDS[kind])
    udp = kind.endswith("-udp")
    srv_addr = "udp://127.0.0.1:0" if udp else "127.0.0.1:0"
    backend = B.Server("backend", [B.SOCKIT, "serve", srv_addr] + sc["backend"],
                       None, setup=B.client_setup, logname=".backend.log")
    tmp = tempfile.mkdtemp(prefix="sockit-relay-bench-")
    try:
        port = B.free_port() if kind in FIXED_PORT else None
        argv = relay_argv(kind, backend.address, port, tmp)
        try:
            relay = B.Server(kind, argv, port)
        except RuntimeError as e:
            if "not supported yet" in str(e):
                raise Skip("`%s` says: not supported yet" % " ".join(argv[1:]).replace(
                    B.REPO + "/", ""))
            raise
        try:
            if sc["id"] == "relay_idle":
                out = run_idle(sc, relay)
            elif udp:
                out = run_udp(sc, relay)
            else:
                cmd = [B.SOCKIT, "bench", relay.address] + sc["args"] + [
                    "--json", "-q", "--server-pid", str(relay.pid)]
                r = subprocess.run(cmd, capture_output=True, timeout=60 + B.SECS + B.WARMUP,
                                   preexec_fn=B.client_setup)
                out = bench_json(r)
                out["command"] = " ".join(["sockit", "bench", "ADDR"] + cmd[3:-2] +
                                          ["--server-pid", "PID"])
            out["relay_command"] = " ".join(argv).replace(tmp + "/", "").replace(B.REPO + "/", "")
            if kind == "haproxy":
                out["haproxy_cfg"] = HAPROXY_CFG % {"port": port, "target": backend.address}
            out["backend_command"] = " ".join(backend.argv).replace(B.REPO + "/", "")
            return out
        finally:
            relay.kill()
    finally:
        backend.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def cpu_per_unit(sc, res):
    """The relay's CPU time (its process tree) per message or connection in us; bulk: per MB."""
    srv = res.get("server") or {}
    if sc["id"] == "relay_bulk":
        mb = (res.get("bytes_sent") or 0) / 1e6
        return srv["cpu_s"] * 1e6 / mb if mb and srv.get("cpu_s") is not None else None
    return srv.get("cpu_us_per_message", srv.get("cpu_us_per_connection"))


def figure(sc, res):
    if sc["id"] == "relay_idle":
        return res.get("bytes_per_pair")
    if sc["id"] == "relay_bulk":
        return res.get("sent_gbit_per_s")
    return res.get("per_second")


def run_scenario(sc):
    servers = list(sc["servers"])
    runs = {s: [] for s in servers}
    skipped = {}
    for rep in range(B.REPS):
        order = servers if rep % 2 == 0 else list(reversed(servers))
        for s in order:
            if s in skipped:
                continue
            idle = B.wait_quiet()
            try:
                res = run_one(sc, s)
            except Skip as e:
                skipped[s] = str(e)
                B.log("  %-18s skipped: %s" % (s, e))
                continue
            except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as e:
                B.log("  %-18s run %d failed: %s" % (s, rep + 1, e))
                res = {"error": str(e)}
            res["cpu_idle_before"] = round(idle, 3)
            res["busy"] = idle < 0.8
            runs[s].append(res)
            if "error" not in res:
                cpu = cpu_per_unit(sc, res)
                extra = ""
                if sc["id"] == "relay_idle":
                    extra = ", %s fds/pair, %s processes" % (
                        B.fmt(res.get("fds_per_pair")), res.get("processes"))
                elif cpu is not None:
                    extra = ", relay %.3f us CPU each" % cpu
                if sc["id"] == "relay_udp":
                    extra += ", %d lost (%d stalls of 100 ms), %d relay processes at the end" % (
                        res.get("lost", 0), res.get("stalls", 0), res.get("processes_at_end", 0))
                if res.get("latency_us", {}).get("p99") and sc["id"] == "relay_echo64":
                    extra += ", p99 %s us" % B.fmt(res["latency_us"]["p99"])
                B.log("  %-18s run %d: %s %s%s" % (s, rep + 1, B.fmt(figure(sc, res)),
                                                   sc["metric"], extra))
    summary = {}
    for s in servers:
        ok = [r for r in runs[s] if "error" not in r]
        lat = [r.get("latency_us", {}) for r in ok]
        cpus = [cpu_per_unit(sc, r) for r in ok]
        summary[s] = {
            "label": LABELS[s],
            "value": B.median([figure(sc, r) for r in ok]),
            "cpu_us": B.median(cpus),
            "p50_us": B.median([l.get("p50") for l in lat]),
            "p99_us": B.median([l.get("p99") for l in lat]),
            "errors": sum(r.get("errors", 0) for r in ok),
            "mismatches": sum(r.get("mismatches", 0) for r in ok),
            "runs": len(ok),
            "busy_runs": sum(1 for r in ok if r.get("busy")),
            "values": [figure(sc, r) for r in ok],
            "skipped": skipped.get(s),
            "command": ok[0].get("command") if ok else None,
            "server_command": ok[0].get("relay_command") if ok else None,
            "backend_command": ok[0].get("backend_command") if ok else None,
        }
        if sc["id"] == "relay_idle":
            summary[s]["fds_per_pair"] = B.median([r.get("fds_per_pair") for r in ok])
            summary[s]["rss_sum_bytes_per_pair"] = B.median([r.get("rss_sum_bytes_per_pair") for r in ok])
            summary[s]["pss_bytes_per_pair"] = B.median([r.get("pss_bytes_per_pair") for r in ok])
            summary[s]["processes"] = B.median([r.get("processes") for r in ok])
    with open(os.path.join(B.RESULTS, sc["id"] + ".json"), "w") as f:
        json.dump({"scenario": sc["id"], "title": sc["title"], "reps": B.REPS,
                   "seconds": B.SECS, "warmup": B.WARMUP,
                   "started": time.strftime("%Y-%m-%d %H:%M"), "splice_probe": splice_probe(),
                   "runs": runs, "summary": summary}, f, indent=1)
    return summary


_probe = None


def splice_probe():
    """Which path `sockit relay` (no --no-splice) took for one plain TCP pair, from its -v line
    ("joined to T (splice)" or "(copy)"): the splice path is still a stub in some builds."""
    global _probe
    if _probe is not None:
        return _probe
    _probe = "unknown"
    try:
        backend = B.Server("backend", [B.SOCKIT, "serve", "127.0.0.1:0", "--mode", "discard"],
                           None, logname=".backend.log")
        try:
            relay = B.Server("probe", [B.SOCKIT, "relay", "127.0.0.1:0", backend.address, "-v"],
                             None)
            try:
                host, port = relay.address.rsplit(":", 1)
                with socket.create_connection((host, int(port)), timeout=2) as s:
                    s.sendall(b"x" * 100000)
                    time.sleep(0.3)
                relay.logf.seek(0)
                text = relay.logf.read()
                for word in ("splice", "copy"):
                    if "(%s)" % word in text:
                        _probe = word
            finally:
                relay.kill()
        finally:
            backend.kill()
    except (RuntimeError, OSError) as e:
        _probe = "unknown (%s)" % e
    return _probe


# ------------------------------------------------------------------------------ report

PRIMARY = ("sockit-relay", "sockit-relay-copy", "sockit-relay-udp")


def evaluate(sc, summary):
    """[(name, kind, ratio, target, met)]: every sockit variant against every peer."""
    rows = []
    targets = {(p, k): t for p, k, t in sc["targets"]}
    mine = [s for s in sc["servers"] if s in PRIMARY]
    peers = [s for s in sc["servers"] if s not in PRIMARY]
    for me in mine:
        m = summary.get(me)
        if not m or m["value"] is None:
            continue
        if sc["id"] == "relay_idle":
            t = targets[(None, "mem")]
            rows.append((me, "mem", m["value"], t, m["value"] <= t))
            for peer in peers:
                o = summary.get(peer)
                if o and o["value"]:
                    rows.append((me + " vs " + peer, "mem-ratio", m["value"] / o["value"],
                                 None, None))
            continue
        for peer in peers:
            o = summary.get(peer)
            if not o or not o["value"]:
                continue
            r = m["value"] / o["value"]
            t = targets.get((peer, "thr"))
            rows.append((me + " vs " + peer, "thr", r, t, None if t is None else r >= t))
            if sc["id"] == "relay_echo64" and m["p99_us"] and o["p99_us"]:
                rp = m["p99_us"] / o["p99_us"]
                t = targets.get((peer, "p99"))
                rows.append((me + " vs " + peer, "p99", rp, t, None if t is None else rp <= t))
            if m["cpu_us"] and o["cpu_us"]:
                rows.append((me + " vs " + peer, "cpu", m["cpu_us"] / o["cpu_us"], None, None))
    return rows


def markdown(sc, summary):
    L = []
    if sc["id"] == "relay_idle":
        L.append("| relay | bytes per idle pair | fds per pair | processes | runs |")
        L.append("|---|---:|---:|---:|---|")
        for s, v in summary.items():
            if v.get("skipped"):
                L.append("| %s | skipped: %s | | | |" % (v["label"], v["skipped"]))
                continue
            note = ""
            if s.startswith("socat") and v["value"] is not None:
                note = " (PSS of its %s processes; VmRSS summed: %s)" % (
                    B.fmt(v.get("processes")), B.fmt(v.get("rss_sum_bytes_per_pair")))
            L.append("| %s | %s%s | %s | %s | %s |" % (
                v["label"], B.fmt(v["value"]), note, B.fmt(v.get("fds_per_pair")),
                B.fmt(v.get("processes")), ", ".join(B.fmt(x) for x in v["values"])))
    else:
        cpu_head = "relay CPU per %s (us)" % {"relay_greet": "connection",
                                               "relay_bulk": "MB"}.get(sc["id"], "message")
        L.append("| relay | %s | %s | p50 (us) | p99 (us) | errors | runs |" % (sc["metric"],
                                                                                cpu_head))
        L.append("|---|---:|---:|---:|---:|---:|---|")
        for s, v in summary.items():
            if v.get("skipped"):
                L.append("| %s | skipped: %s | | | | | |" % (v["label"], v["skipped"]))
                continue
            L.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                v["label"], B.fmt(v["value"]),
                B.fmt(v["cpu_us"]),
                B.fmt(v["p50_us"] or None), B.fmt(v["p99_us"] or None), v["errors"] + v["mismatches"],
                ", ".join(B.fmt(x) for x in v["values"])))
    L.append("")
    rows = evaluate(sc, summary)
    if rows:
        L.append("| ratio | value | target | met |")
        L.append("|---|---:|---|---|")
        for name, kind, r, t, met in rows:
            if kind == "mem":
                L.append("| %s: bytes per idle pair | %.0f | <= %g | %s |" % (
                    name, r, t, "yes" if met else "**no**"))
                continue
            what = {"thr": sc["metric"], "p99": "p99 latency (lower is better)",
                    "cpu": "relay CPU per unit (lower is better)",
                    "mem-ratio": "memory per pair (lower is better)"}[kind]
            tt = "-" if t is None else ("<= %gx" if kind in ("p99", "cpu") else ">= %gx") % t
            L.append("| %s: %s | %.2fx | %s | %s |" % (name, what, r, tt,
                                                      "-" if met is None else
                                                      ("yes" if met else "**no**")))
        L.append("")
    L.append("Commands (backend `%s`; the relay pinned to CPU 1, load generator and backend "
             "to CPU 0):" % (next((v["backend_command"] for v in summary.values()
                                   if v.get("backend_command")), "?")))
    L.append("")
    for s, v in summary.items():
        if v.get("server_command"):
            L.append("- %s: relay `%s`; client `%s`" % (s, v["server_command"],
                                                        (v["command"] or "")))
    if any(s == "haproxy" for s in summary):
        L.append("- haproxy.cfg: `%s`" % " / ".join(
            l.strip() for l in (HAPROXY_CFG % {"port": 0, "target": "Q"}).replace(
                ":0 ", ":P ").splitlines() if l.strip() and not l.strip().startswith("#")))
    return L


def svg_bars(sc, summary):
    out = []
    for name, kind, r, t, met in evaluate(sc, summary):
        short = sc["id"].replace("relay_", "relay ")
        if kind == "mem":
            out.append(("%s: %s B/pair / %g B target" % (short, name, t), r / t, 1.0, met, "cpu"))
        elif kind in ("thr", "p99"):
            out.append(("%s: %s%s" % (short, name.replace("sockit-relay", "relay"),
                                      " p99" if kind == "p99" else ""),
                        r, t, met, "cpu" if kind == "p99" else "thr"))
    return out
