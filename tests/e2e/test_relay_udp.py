"""`sockit relay` for datagrams: udp:// and unix-dgram: LISTEN addresses, a session per client
address, against `sockit serve udp://` / `unix-dgram:` targets and Python socket clients.
Loopback and temporary directories only; every wait is bounded, and results are decided by
what arrives (and by the relay's -v lines), never by how long something took."""

import os
import re
import select
import signal
import socket
import unittest

import test_udp
from harness import Deadline, ipv6_loopback_available, wait_until
from test_udp import UdpServer, free_udp_port


class RelayUdpTestCase(test_udp.UdpTestCase):
    def relay(self, listen, *targets_and_options):
        r = self.start(["relay", listen] + list(targets_and_options), cls=UdpServer)
        r.await_listening()
        return r

    def stop(self, relay):
        """SIGTERM: the relay exits 0 (under Valgrind, a leak or a memory error would not)."""
        relay.send_signal(signal.SIGTERM)
        self.assertEqual(relay.wait(), 0, relay.describe())

    def count_lines(self, proc, regex):
        rx = re.compile(regex)
        return sum(1 for line in proc.lines() if rx.search(line))

    def wait_count(self, proc, regex, n, timeout=10.0):
        """Wait until n stderr lines of proc match regex; fail with its stderr if they do not."""
        if not wait_until(lambda: self.count_lines(proc, regex) >= n, timeout):
            self.fail("wanted %d lines matching %r\n%s" % (n, regex, proc.describe()))

    def ask(self, sock, data, to, want=None):
        """Send one datagram and return the reply, which must come from `to`."""
        sock.sendto(data, to)
        reply, sender = sock.recvfrom(70000)
        self.assertEqual(sender, to)
        if want is not None:
            self.assertEqual(reply, want)
        return reply

    def unix_client(self):
        """A Unix datagram socket bound to its own path, so that replies can find it."""
        s = self.udp_socket(socket.AF_UNIX)
        s.bind(os.path.join(self.tmpdir, "client-%d.sock" % len(os.listdir(self.tmpdir))))
        return s


class RelayUdpTests(RelayUdpTestCase):
    def exchange_windowed(self, relay_addr, peers, each, window, family=socket.AF_INET):
        """peers sockets x each datagrams through the relay, at most window in flight per peer.
        Every reply must reach the peer that sent the datagram, with its own payload (each
        peer's payloads are distinct), from the relay's address. None may be lost: with the
        window, at most peers x window datagrams wait anywhere, far below any socket buffer."""
        socks = []
        for _ in range(peers):
            s = (self.unix_client() if family == socket.AF_UNIX
                 else self.udp_socket(bind=("127.0.0.1", 0)))
            s.setblocking(False)
            socks.append(s)
        by_fd = {s.fileno(): i for i, s in enumerate(socks)}

        def payload(p, seq):
            head = b"peer%02d seq%05d " % (p, seq)
            return head + bytes([65 + (seq % 26)]) * (seq % 200)

        next_seq = [0] * peers
        outstanding = [dict() for _ in range(peers)]
        received = [0] * peers
        wrong = []

        def send_next(p):
            seq = next_seq[p]
            next_seq[p] += 1
            data = payload(p, seq)
            outstanding[p][data] = seq
            # A Unix receiver holds few datagrams (net.unix.max_dgram_qlen, often 10): when the
            # relay's queue is full, wait until it has room rather than count a loss.
            room = Deadline(10)
            while True:
                try:
                    socks[p].sendto(data, relay_addr)
                    return
                except BlockingIOError:
                    self.assertFalse(room.expired(), "the relay took no datagram for 10 s")
                    select.select([], [socks[p]], [], 0.5)

        for p in range(peers):
            for _ in range(min(window, each)):
                send_next(p)
        d = Deadline(180)
        quiet = Deadline(10)
        while any(received[p] < each for p in range(peers)):
            if d.expired() or quiet.expired():
                break
            r, _, _ = select.select(socks, [], [], 0.5)
            for s in r:
                p = by_fd[s.fileno()]
                while True:
                    try:
                        data, sender = s.recvfrom(70000)
                    except BlockingIOError:
                        break
                    quiet = Deadline(10)
                    if sender != relay_addr or data not in outstanding[p]:
                        wrong.append((p, data[:24], sender))
                        continue
                    del outstanding[p][data]
                    received[p] += 1
                    if next_seq[p] < each:
                        send_next(p)
        self.assertEqual(wrong, [], "replies that reached the wrong peer or changed")
        lost = sum(len(o) for o in outstanding)
        self.assertEqual(lost, 0, "%d of %d datagrams lost" % (lost, peers * each))
        self.assertEqual(sum(received), peers * each)

    def test_udp_to_udp_ten_peers_thousand_datagrams_each(self):
        echo = self.udp_serve("--mode", "echo")
        relay = self.relay("udp://127.0.0.1:0", echo.address, "-v")
        self.exchange_windowed(relay.sockaddr, peers=10, each=1000, window=8)
        self.assertTrue(relay.running(), relay.describe())
        # One session per peer, each to the echo server.
        self.assertEqual(self.count_lines(relay, r"^127\.0\.0\.1:\d+: new session to %s$"
                                          % re.escape(echo.address)), 10, relay.describe())
        relay.send_signal(signal.SIGTERM)
        self.assertEqual(relay.wait(), 0, relay.describe())
        relay.wait_line(r"^10 sessions .*10000 from clients, 10000 to targets, 10000 from "
                        r"targets, 10000 to clients; dropped: 0 too long, 0 table full, "
                        r"0 backpressure")

    def test_udp_to_unix_dgram_target(self):
        path = os.path.join(self.tmpdir, "echo.sock")
        echo = self.udp_serve("--mode", "echo", address="unix-dgram:" + path)
        relay = self.relay("udp://127.0.0.1:0", "unix-dgram:" + path)
        # A Unix receiver holds only a few datagrams (net.unix.max_dgram_qlen): a small window.
        self.exchange_windowed(relay.sockaddr, peers=3, each=200, window=4)
        self.assertTrue(echo.running() and relay.running(), relay.describe())
        self.stop(relay)

    def test_unix_dgram_listen_to_udp_target(self):
        echo = self.udp_serve("--mode", "echo")
        path = os.path.join(self.tmpdir, "relay.sock")
        relay = self.relay("unix-dgram:" + path, echo.address, "-v")
        self.assertEqual(relay.address, "unix-dgram:" + path)
        self.assertEqual(relay.sockaddr, path)
        self.exchange_windowed(path, peers=3, each=200, window=4, family=socket.AF_UNIX)
        relay.send_signal(signal.SIGTERM)
        self.assertEqual(relay.wait(), 0, relay.describe())
        self.assertFalse(os.path.exists(path), "the relay left its socket file behind")

    def test_unnamed_unix_client_is_refused_with_a_warning(self):
        echo = self.udp_serve("--mode", "echo")
        path = os.path.join(self.tmpdir, "relay.sock")
        relay = self.relay("unix-dgram:" + path, echo.address)
        s = self.udp_socket(socket.AF_UNIX)  # not bound: no name to reply to
        s.sendto(b"hello", path)
        relay.wait_line(r"^sockit: a datagram came from a Unix socket without a name")
        self.assertTrue(relay.running(), relay.describe())
        self.stop(relay)

    def test_roundrobin_sessions_alternate_and_stick(self):
        a = self.udp_serve("--message", "from A")
        b = self.udp_serve("--message", "from B")
        relay = self.relay("udp://127.0.0.1:0", a.address, b.address)
        clients = [self.udp_socket(bind=("127.0.0.1", 0)) for _ in range(4)]
        got = [self.ask(c, b"hi", relay.sockaddr) for c in clients]
        self.assertEqual(got, [b"from A\n", b"from B\n", b"from A\n", b"from B\n"])
        # A session keeps its target: each client's next datagrams go where its first went.
        for c, first in zip(clients, got):
            for _ in range(3):
                self.ask(c, b"again", relay.sockaddr, want=first)
        self.stop(relay)

    def test_target_down_new_sessions_go_to_the_live_one(self):
        dead = "udp://127.0.0.1:%d" % free_udp_port()
        live = self.udp_serve("--message", "alive")
        relay = self.relay("udp://127.0.0.1:0", dead, live.address, "-v", "--down-time", "600")
        first = self.udp_socket(bind=("127.0.0.1", 0))
        # Round robin starts with the dead one: the datagram draws ICMP port unreachable.
        first.sendto(b"anyone?", relay.sockaddr)
        relay.wait_line(r"^sockit: target %s is down \(.*refused.*\); skipping it"
                        % re.escape(dead))
        # That session moved to the live target, so the client's retry is answered.
        relay.wait_line(r"^127\.0\.0\.1:%d: session moved from %s to %s$"
                        % (first.getsockname()[1], re.escape(dead), re.escape(live.address)))
        self.ask(first, b"retry", relay.sockaddr, want=b"alive\n")
        # New sessions skip the dead target (round robin would have given it every other one).
        for _ in range(4):
            c = self.udp_socket(bind=("127.0.0.1", 0))
            self.ask(c, b"hello", relay.sockaddr, want=b"alive\n")
        self.assertEqual(self.count_lines(relay, r"is down"), 1, "logged once\n"
                         + relay.describe())
        self.assertEqual(self.count_lines(relay, r"new session to %s$" % re.escape(dead)), 1,
                         relay.describe())
        self.stop(relay)

    def test_every_unix_target_missing_drops_and_keeps_running(self):
        relay = self.relay("udp://127.0.0.1:0",
                           "unix-dgram:" + os.path.join(self.tmpdir, "nobody.sock"))
        c = self.udp_socket(bind=("127.0.0.1", 0))
        c.sendto(b"x", relay.sockaddr)
        relay.wait_line(r"^sockit: target unix-dgram:.*nobody\.sock is down")
        relay.wait_line(r"^sockit: dropped a datagram: no target could be reached")
        self.assertNothingArrives(c)
        self.assertTrue(relay.running(), relay.describe())
        self.stop(relay)

    def test_target_that_stops_reading_costs_drops_not_memory(self):
        """A Unix target that reads nothing: its queue fills (a few datagrams), the session
        holds a bounded number more, and the rest are dropped and counted, never queued."""
        path = os.path.join(self.tmpdir, "stuck.sock")
        target = self.udp_socket(socket.AF_UNIX, bind=path)
        relay = self.relay("udp://127.0.0.1:0", "unix-dgram:" + path, "-v")
        c = self.udp_socket(bind=("127.0.0.1", 0))
        total = 500
        for i in range(total):
            c.sendto(b"d%04d" % i, relay.sockaddr)
        relay.wait_line(r"^sockit: dropped a datagram: a target takes datagrams slower")
        # The relay has read every datagram before the target takes any.
        self.wait_count(relay, r"^recv fd=\d+ 5 bytes from 127\.0\.0\.1:%d$"
                        % c.getsockname()[1], total, timeout=30)
        got = [target.recv(100)]
        target.settimeout(0.5)
        try:
            while True:
                got.append(target.recv(100))
        except socket.timeout:
            pass
        self.stop(relay)
        target.setblocking(False)
        try:  # what the relay's close sent last
            while True:
                got.append(target.recv(100))
        except BlockingIOError:
            pass
        m = relay.wait_line(r" (\d+) to targets, .*dropped: 0 too long, 0 table full, "
                            r"(\d+) backpressure")
        to_target, dropped = int(m.group(1)), int(m.group(2))
        self.assertEqual(to_target + dropped, total, relay.describe())
        self.assertGreater(dropped, 0)
        self.assertLessEqual(to_target, 100, "more were held than the bound allows")
        self.assertLessEqual(len(got), to_target)
        self.assertEqual(got, sorted(set(got)), "datagrams reordered or duplicated")

    def test_idle_session_expires_and_a_new_datagram_makes_a_new_one(self):
        echo = self.udp_serve("--mode", "echo")
        relay = self.relay("udp://127.0.0.1:0", echo.address, "--idle-timeout", "0.2", "-v")
        c = self.udp_socket(bind=("127.0.0.1", 0))
        port = c.getsockname()[1]
        new = r"^127\.0\.0\.1:%d: new session to " % port
        self.ask(c, b"one", relay.sockaddr, want=b"one")
        self.wait_count(relay, new, 1)
        relay.wait_line(r"^127\.0\.0\.1:%d: session expired \(idle \d+\.\d s\); 1 datagrams "
                        r"to %s, 1 back$" % (port, re.escape(echo.address)))
        self.ask(c, b"two", relay.sockaddr, want=b"two")
        self.wait_count(relay, new, 2)
        self.stop(relay)

    def test_max_sessions_full_drops_new_clients_keeps_live_ones(self):
        echo = self.udp_serve("--mode", "echo")
        relay = self.relay("udp://127.0.0.1:0", echo.address, "--max-sessions", "2")
        a, b, c = (self.udp_socket(bind=("127.0.0.1", 0)) for _ in range(3))
        self.ask(a, b"a1", relay.sockaddr, want=b"a1")
        self.ask(b, b"b1", relay.sockaddr, want=b"b1")
        for i in range(5):
            c.sendto(b"c%d" % i, relay.sockaddr)
        relay.wait_line(r"^sockit: dropped a datagram: the session table is full "
                        r"\(--max-sessions\)")
        self.assertNothingArrives(c)
        # The two live sessions are untouched.
        self.ask(a, b"a2", relay.sockaddr, want=b"a2")
        self.ask(b, b"b2", relay.sockaddr, want=b"b2")
        # Logged at most once a second, not once per datagram.
        self.assertLess(self.count_lines(relay, r"session table is full"), 5, relay.describe())
        self.assertTrue(relay.running(), relay.describe())
        self.stop(relay)

    def test_oversize_datagram_reported_and_dropped(self):
        echo = self.udp_serve("--mode", "echo")
        relay = self.relay("udp://127.0.0.1:0", echo.address, "--max-frame", "100")
        c = self.udp_socket(bind=("127.0.0.1", 0))
        c.sendto(b"a" * 200, relay.sockaddr)
        relay.wait_line(r"^sockit: datagram of 200 bytes from 127\.0\.0\.1:%d is longer than "
                        r"--max-frame \(100 bytes\): truncated, so dropped"
                        % c.getsockname()[1])
        self.assertNothingArrives(c)
        c.settimeout(5)
        self.ask(c, b"b" * 100, relay.sockaddr, want=b"b" * 100)  # exactly the limit
        self.stop(relay)

    def test_oversize_reply_from_target_reported_and_dropped(self):
        greet = self.udp_serve("--message", "x" * 150)
        relay = self.relay("udp://127.0.0.1:0", greet.address, "--max-frame", "100")
        c = self.udp_socket(bind=("127.0.0.1", 0))
        c.sendto(b"hi", relay.sockaddr)
        relay.wait_line(r"^sockit: datagram of 151 bytes from target %s is longer than "
                        r"--max-frame \(100 bytes\)" % re.escape(greet.address))
        self.assertNothingArrives(c)
        self.stop(relay)

    def test_deny_drops_the_client(self):
        echo = self.udp_serve("--mode", "echo")
        relay = self.relay("udp://127.0.0.1:0", echo.address, "--deny", "127.0.0.0/8")
        c = self.udp_socket(bind=("127.0.0.1", 0))
        c.sendto(b"let me in", relay.sockaddr)
        relay.wait_line(r"^sockit: dropped a datagram: the client is not admitted by "
                        r"--allow/--deny")
        self.assertNothingArrives(c)
        self.stop(relay)

    @unittest.skipUnless(ipv6_loopback_available(), "no IPv6 loopback")
    def test_ipv6_listen_to_ipv4_target(self):
        echo = self.udp_serve("--mode", "echo")
        relay = self.relay("udp://[::1]:0", echo.address)
        self.assertTrue(relay.address.startswith("udp://[::1]:"), relay.address)
        c = self.udp_socket(socket.AF_INET6, bind=("::1", 0))
        c.sendto(b"six to four", relay.sockaddr)
        data, sender = c.recvfrom(100)
        self.assertEqual((data, sender[:2]), (b"six to four", relay.sockaddr))
        self.stop(relay)

    def test_sigterm_and_sigint_exit_0(self):
        echo = self.udp_serve("--mode", "echo")
        for sig in (signal.SIGTERM, signal.SIGINT):
            relay = self.relay("udp://127.0.0.1:0", echo.address)
            c = self.udp_socket(bind=("127.0.0.1", 0))
            self.ask(c, b"x", relay.sockaddr, want=b"x")
            relay.send_signal(sig)
            self.assertEqual(relay.wait(), 0, relay.describe())

    def test_quiet_prints_nothing(self):
        echo = self.udp_serve("--mode", "echo")
        port = free_udp_port()
        relay = self.start(["relay", "udp://127.0.0.1:%d" % port, echo.address, "-q",
                            "--max-frame", "10"])
        c = self.udp_socket(bind=("127.0.0.1", 0))
        # No listening line to wait for: ask until the relay answers.
        c.settimeout(0.2)
        d = Deadline(20)
        while True:
            c.sendto(b"ping", ("127.0.0.1", port))
            try:
                if c.recv(100) == b"ping":
                    break
            except socket.timeout:
                self.assertFalse(d.expired(), relay.describe())
        c.sendto(b"z" * 50, ("127.0.0.1", port))  # too long: a warning, which -q hides
        c.settimeout(5)
        c.sendto(b"pong", ("127.0.0.1", port))
        while True:  # echoes of earlier pings may still be on their way
            reply = c.recv(100)
            if reply != b"ping":
                break
        self.assertEqual(reply, b"pong")
        relay.send_signal(signal.SIGTERM)
        self.assertEqual(relay.wait(), 0, relay.describe())
        self.assertEqual(relay.lines(), [])

    def test_usage_errors(self):
        udp = "udp://127.0.0.1:%d" % free_udp_port()
        for argv in (["relay", "udp://127.0.0.1:0", "127.0.0.1:9000"],
                     ["relay", "udp://127.0.0.1:0", udp, "127.0.0.1:9000"],
                     ["relay", "127.0.0.1:0", udp],
                     ["relay", "unix-dgram:/tmp/x.sock", "unix:/tmp/y.sock"]):
            r = self.run_sockit(argv)
            self.assertExit(r, 2, " ".join(argv))
            self.assertOneErrorLine(r.stderr, "cannot relay", "stream", "datagram")
        r = self.run_sockit(["relay", "udp://127.0.0.1:0", udp, "--max-per-ip", "3"])
        self.assertExit(r, 2)
        self.assertOneErrorLine(r.stderr, "--max-sessions")
        r = self.run_sockit(["relay", "udp://127.0.0.1:0", "udp://127.0.0.1:0"])
        self.assertExit(r, 2)
        self.assertOneErrorLine(r.stderr, "port 0")
