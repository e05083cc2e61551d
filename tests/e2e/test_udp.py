"""UDP and Unix datagram sockets: `sockit serve udp://...` / `unix-dgram:PATH` against Python
socket peers, and `sockit connect udp://...` / `unix-dgram:PATH` against sockit and Python
servers. Loopback and temporary directories only."""

import os
import re
import select
import signal
import socket
import threading
import time
import unittest

from harness import (Deadline, Server, SockitTestCase, ipv6_loopback_available)

UDP_MAX = 65507  # the largest UDP payload over IPv4


class UdpServer(Server):
    """A `sockit serve` on a datagram address: the listening line reads udp://HOST:PORT or
    unix-dgram:PATH."""

    def await_listening(self, timeout=10.0):
        m = self.wait_line(r"^listening on (.*)$", timeout)
        self.address = m.group(1)
        if self.address.startswith("unix-dgram:"):
            self.family, self.sockaddr = socket.AF_UNIX, self.address[len("unix-dgram:"):]
            return self.address
        m2 = re.fullmatch(r"udp://\[([^\]]+)\]:(\d+)", self.address)
        if m2:
            self.family, self.sockaddr = socket.AF_INET6, (m2.group(1), int(m2.group(2)))
            return self.address
        m2 = re.fullmatch(r"udp://([^:]+):(\d+)", self.address)
        if not m2:
            raise AssertionError("cannot parse the listening line %r\n%s"
                                 % (m.group(0), self.describe()))
        self.family, self.sockaddr = socket.AF_INET, (m2.group(1), int(m2.group(2)))
        return self.address


def free_udp_port():
    """A UDP port nobody has bound a moment ago: datagrams to it draw port unreachable."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UdpTestCase(SockitTestCase):
    def udp_serve(self, *args, address="udp://127.0.0.1:0"):
        srv = self.start(["serve", address] + list(args), cls=UdpServer)
        srv.await_listening()
        return srv

    def udp_socket(self, family=socket.AF_INET, bind=None):
        s = socket.socket(family, socket.SOCK_DGRAM)
        self.addCleanup(s.close)
        s.settimeout(5)
        if bind is not None:
            s.bind(bind)
        return s

    def assertNothingArrives(self, sock, seconds=0.3):
        sock.settimeout(seconds)
        with self.assertRaises(socket.timeout):
            data = sock.recv(70000)
            self.fail("unexpected datagram %r" % data[:80])


class UdpServeTests(UdpTestCase):
    def test_echo_ten_peers_thousand_datagrams_each(self):
        """10 peers x 1,000 datagrams, at most WINDOW in flight per peer: every echo comes back to
        the peer that sent it, with its payload. Loss is counted, and none is tolerated: with the
        window, at most 10 x 8 datagrams wait anywhere, far below any socket buffer."""
        srv = self.udp_serve("--mode", "echo")
        peers, each, window = 10, 1000, 8
        socks = []
        for _ in range(peers):
            s = self.udp_socket(bind=("127.0.0.1", 0))
            s.setblocking(False)
            socks.append(s)
        by_fd = {s.fileno(): i for i, s in enumerate(socks)}

        def payload(p, seq):
            # Sizes vary from 16 to 215 bytes; the peer and sequence lead, so a mix-up shows.
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
            socks[p].sendto(data, srv.sockaddr)

        for p in range(peers):
            for _ in range(window):
                send_next(p)
        d = Deadline(120)
        quiet = Deadline(5)
        while any(received[p] + len(outstanding[p]) and received[p] < each
                  for p in range(peers)):
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
                    quiet = Deadline(5)
                    if sender != srv.sockaddr or data not in outstanding[p]:
                        wrong.append((p, data[:24], sender))
                        continue
                    del outstanding[p][data]
                    received[p] += 1
                    if next_seq[p] < each:
                        send_next(p)
        lost = sum(len(o) for o in outstanding)
        total = sum(received)
        self.assertEqual(wrong, [], "echoes that reached the wrong peer or changed")
        self.assertEqual(lost, 0, "%d of %d datagrams lost (no loss is expected on loopback "
                         "with %d in flight per peer)" % (lost, peers * each, window))
        self.assertEqual(total, peers * each)
        self.assertTrue(srv.running(), srv.describe())

    def test_greet_answers_any_datagram_of_any_peer(self):
        srv = self.udp_serve("--message", "hello there")
        a = self.udp_socket(bind=("127.0.0.1", 0))
        b = self.udp_socket(bind=("127.0.0.1", 0))
        a.sendto(b"x", srv.sockaddr)
        b.sendto(b"anything at all", srv.sockaddr)
        a.sendto(b"", srv.sockaddr)  # even an empty datagram
        self.assertEqual(a.recvfrom(100), (b"hello there\n", srv.sockaddr))
        self.assertEqual(b.recvfrom(100), (b"hello there\n", srv.sockaddr))
        self.assertEqual(a.recvfrom(100), (b"hello there\n", srv.sockaddr))

    def test_largest_udp_datagram_echoed_whole(self):
        srv = self.udp_serve("--mode", "echo")
        s = self.udp_socket(bind=("127.0.0.1", 0))
        data = bytes(range(256)) * (UDP_MAX // 256) + b"z" * (UDP_MAX % 256)
        self.assertEqual(len(data), 65507)
        s.sendto(data, srv.sockaddr)
        got = s.recv(70000)
        self.assertEqual(len(got), UDP_MAX)
        self.assertEqual(got, data)

    def test_oversized_datagram_reported_as_truncated(self):
        srv = self.udp_serve("--mode", "echo", "--max-frame", "1000")
        s = self.udp_socket(bind=("127.0.0.1", 0))
        s.sendto(b"a" * 2000, srv.sockaddr)
        srv.wait_line(r"^sockit: datagram of 2000 bytes from 127\.0\.0\.1:%d .*--max-frame "
                      r"\(1000 bytes\).*truncated" % s.getsockname()[1])
        self.assertNothingArrives(s)  # a cut datagram is not echoed as if it were whole
        s.settimeout(5)
        s.sendto(b"b" * 1000, srv.sockaddr)  # exactly the limit: whole, echoed
        self.assertEqual(s.recv(5000), b"b" * 1000)

    @unittest.skipUnless(ipv6_loopback_available(), "no IPv6 loopback")
    def test_ipv6(self):
        srv = self.udp_serve("--mode", "echo", address="udp://[::1]:0")
        self.assertTrue(srv.address.startswith("udp://[::1]:"), srv.address)
        s = self.udp_socket(socket.AF_INET6, bind=("::1", 0))
        s.sendto(b"over six", srv.sockaddr)
        data, sender = s.recvfrom(100)
        self.assertEqual(data, b"over six")
        self.assertEqual(sender[:2], srv.sockaddr)

    def test_discard_sends_nothing(self):
        srv = self.udp_serve("--mode", "discard")
        s = self.udp_socket(bind=("127.0.0.1", 0))
        for i in range(5):
            s.sendto(b"drop %d" % i, srv.sockaddr)
        self.assertNothingArrives(s)
        self.assertTrue(srv.running())

    def test_verbose_shows_each_datagram(self):
        srv = self.udp_serve("--mode", "echo", "-v")
        s = self.udp_socket(bind=("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.sendto(b"12345", srv.sockaddr)
        self.assertEqual(s.recv(100), b"12345")
        srv.wait_line(r"^recv fd=\d+ 5 bytes from 127\.0\.0\.1:%d$" % port)
        srv.wait_line(r"^send fd=\d+ 5 bytes to 127\.0\.0\.1:%d$" % port)

    def test_sigterm_and_sigint_exit_0(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            srv = self.udp_serve("--mode", "echo")
            s = self.udp_socket(bind=("127.0.0.1", 0))
            s.sendto(b"x", srv.sockaddr)
            self.assertEqual(s.recv(10), b"x")
            srv.send_signal(sig)
            self.assertEqual(srv.wait(), 0, srv.describe())

    def test_stream_modes_refused(self):
        for mode in ("chat", "source"):
            r = self.run_sockit(["serve", "udp://127.0.0.1:0", "--mode", mode])
            self.assertExit(r, 2)
            self.assertOneErrorLine(r.stderr, "--mode " + mode, "echo, greet or discard")

    def test_port_in_use(self):
        holder = self.udp_socket(bind=("127.0.0.1", 0))
        port = holder.getsockname()[1]
        r = self.run_sockit(["serve", "udp://127.0.0.1:%d" % port])
        self.assertExit(r, 1)
        self.assertOneErrorLine(r.stderr, "cannot listen on udp://127.0.0.1:%d" % port,
                                "in use")


class UnixDgramTests(UdpTestCase):
    def test_echo_greet_and_cleanup(self):
        path = os.path.join(self.tmpdir, "d.sock")
        srv = self.udp_serve("--mode", "echo", address="unix-dgram:" + path)
        self.assertEqual(srv.address, "unix-dgram:" + path)
        # The client must have a name for the reply to find it.
        s = self.udp_socket(socket.AF_UNIX, bind=os.path.join(self.tmpdir, "client.sock"))
        for i in range(50):
            s.sendto(b"unix %d" % i, path)
            self.assertEqual(s.recv(100), b"unix %d" % i)
        big = b"u" * 100000  # bigger than UDP allows; fine for a Unix datagram socket
        srv2 = self.udp_serve("--mode", "echo", "--max-frame", "200000",
                              address="unix-dgram:" + os.path.join(self.tmpdir, "big.sock"))
        s.sendto(big, srv2.sockaddr)
        self.assertEqual(s.recv(200000), big)
        srv.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0, srv.describe())
        self.assertFalse(os.path.exists(path), "the socket file is left behind")

    def test_peer_that_stops_reading_does_not_block_others(self):
        path = os.path.join(self.tmpdir, "s.sock")
        srv = self.udp_serve("--mode", "echo", address="unix-dgram:" + path)
        slow = self.udp_socket(socket.AF_UNIX, bind=os.path.join(self.tmpdir, "slow.sock"))
        for i in range(200):  # its receive queue fills up: the replies it misses are dropped
            slow.sendto(b"slow %d" % i, path)
        fast = self.udp_socket(socket.AF_UNIX, bind=os.path.join(self.tmpdir, "fast.sock"))
        for i in range(100):
            fast.sendto(b"fast %d" % i, path)
            self.assertEqual(fast.recv(100), b"fast %d" % i)
        self.assertEqual(slow.recv(100), b"slow 0")  # what fitted in its queue is there
        self.assertTrue(srv.running())

    def test_unnamed_client_is_reported(self):
        path = os.path.join(self.tmpdir, "g.sock")
        srv = self.udp_serve(address="unix-dgram:" + path)
        s = self.udp_socket(socket.AF_UNIX)  # never bound: no name to reply to
        s.sendto(b"hi", path)
        srv.wait_line(r"without a name: it cannot be answered")
        self.assertTrue(srv.running())

    def test_stale_socket_file_replaced(self):
        path = os.path.join(self.tmpdir, "stale.sock")
        old = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        old.bind(path)
        old.close()  # a crashed server's file
        self.assertTrue(os.path.exists(path))
        srv = self.udp_serve(address="unix-dgram:" + path)
        s = self.udp_socket(socket.AF_UNIX, bind=os.path.join(self.tmpdir, "c.sock"))
        s.sendto(b"x", path)
        self.assertEqual(s.recv(100), b"Hi from server\n")
        # A live one is not taken over.
        r = self.run_sockit(["serve", "unix-dgram:" + path])
        self.assertExit(r, 1)
        self.assertOneErrorLine(r.stderr, "unix-dgram:" + path, "in use")

    def test_connect_unix_dgram(self):
        path = os.path.join(self.tmpdir, "e.sock")
        self.udp_serve("--mode", "echo", address="unix-dgram:" + path)
        r = self.run_sockit(["connect", "unix-dgram:" + path], input=b"one\ntwo\nthree")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"one\ntwo\nthree")

    def test_connect_unix_dgram_no_server(self):
        path = os.path.join(self.tmpdir, "none.sock")
        r = self.run_sockit(["connect", "unix-dgram:" + path], input=b"x\n")
        self.assertExit(r, 1)
        self.assertOneErrorLine(r.stderr, "unix-dgram:" + path, "no such file",
                                "is the server running?")


class UdpConnectTests(UdpTestCase):
    def test_lines_echoed(self):
        srv = self.udp_serve("--mode", "echo")
        t0 = time.monotonic()
        r = self.run_sockit(["connect", srv.address], input=b"a\nbb\nccc\n")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"a\nbb\nccc\n")
        # Every datagram had its reply: no need to wait for --timeout (2 s).
        self.assertLess(time.monotonic() - t0, 1.9)

    def python_server(self, reply):
        """A Python UDP server in a thread: records each datagram, answers reply(data) if not
        None (a list: several replies). Returns (address, list of datagrams)."""
        s = self.udp_socket(bind=("127.0.0.1", 0))
        s.settimeout(0.2)
        got = []
        stop = threading.Event()

        def run():
            while not stop.is_set():
                try:
                    data, peer = s.recvfrom(70000)
                except socket.timeout:
                    continue
                except OSError:
                    return
                got.append(data)
                answer = reply(data)
                for a in answer if isinstance(answer, list) else [answer]:
                    if a is not None:
                        s.sendto(a, peer)

        t = threading.Thread(target=run, daemon=True)
        t.start()

        def finish():
            stop.set()
            t.join(5)
        self.addCleanup(finish)
        return s.getsockname(), got

    def test_each_line_is_one_datagram(self):
        addr, got = self.python_server(lambda d: b"ok:" + d)
        r = self.run_sockit(["connect", "udp://127.0.0.1:%d" % addr[1]],
                            input=b"first\nsecond line\n\nlast without newline")
        self.assertExit(r, 0)
        self.assertEqual(got, [b"first\n", b"second line\n", b"\n", b"last without newline"])
        self.assertEqual(r.stdout, b"ok:first\nok:second line\nok:\nok:last without newline")

    def test_frame_raw_chunks(self):
        addr, got = self.python_server(lambda d: b"k")
        data = os.urandom(150000)
        r = self.run_sockit(["connect", "--frame", "raw", "udp://127.0.0.1:%d" % addr[1]],
                            input=data)
        self.assertExit(r, 0)
        self.assertEqual(b"".join(got), data)
        self.assertTrue(all(len(g) <= UDP_MAX for g in got), [len(g) for g in got])
        self.assertEqual(r.stdout, b"k" * len(got))

    def test_timeout_bounds_the_wait_for_replies(self):
        addr, got = self.python_server(lambda d: None)  # never answers
        t0 = time.monotonic()
        r = self.run_sockit(["connect", "--timeout", "0.5", "udp://127.0.0.1:%d" % addr[1]],
                            input=b"anyone?\n")
        elapsed = time.monotonic() - t0
        # Issue 18.7: a datagram without a reply is reported and the exit status is 1.
        self.assertExit(r, 1)
        self.assertEqual(r.stdout, b"")
        self.assertIn("1 of 1 datagrams got no reply", r.stderr.decode())
        self.assertEqual(got, [b"anyone?\n"])
        self.assertGreaterEqual(elapsed, 0.45)
        self.assertLess(elapsed, 10)

    def test_a_duplicate_reply_is_not_an_answer(self):
        """Issue 18.7: the first datagram's echo comes twice, the second gets none: one of two
        got no reply, exit 1; the duplicate is still printed."""
        addr, got = self.python_server(lambda d: [d, d] if d == b"a\n" else None)
        r = self.run_sockit(["connect", "--timeout", "0.5", "udp://127.0.0.1:%d" % addr[1]],
                            input=b"a\nb\n")
        self.assertExit(r, 1)
        self.assertEqual(r.stdout, b"a\na\n")
        self.assertIn("1 of 2 datagrams got no reply", r.stderr.decode())

    def test_replies_unlike_the_datagrams_answer_in_order(self):
        """A server whose replies differ from what it got (greet-like): each answers one."""
        addr, got = self.python_server(lambda d: b"hi\n")
        r = self.run_sockit(["connect", "udp://127.0.0.1:%d" % addr[1]], input=b"x\ny\nz\n")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"hi\nhi\nhi\n")

    def test_refused_port_reported(self):
        port = free_udp_port()
        r = self.run_sockit(["connect", "udp://127.0.0.1:%d" % port], input=b"hello?\n")
        self.assertExit(r, 1)
        line = self.assertOneErrorLine(r.stderr, "no UDP server at 127.0.0.1:%d" % port,
                                       "connection refused", "port unreachable")
        self.assertEqual(line, "sockit: no UDP server at 127.0.0.1:%d: connection refused "
                               "(port unreachable)" % port)

    @unittest.skipUnless(ipv6_loopback_available(), "no IPv6 loopback")
    def test_ipv6_connect(self):
        srv = self.udp_serve("--mode", "echo", address="udp://[::1]:0")
        r = self.run_sockit(["connect", srv.address], input=b"six\n")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"six\n")

    def test_greet_many_clients_at_once(self):
        """Unlike nc -u, which answers only its first peer, every client gets its reply."""
        srv = self.udp_serve()
        procs = [self.start(["connect", srv.address], cls=Server, stdin=-1, stdout=-1)
                 for _ in range(5)]
        outs = []
        for p in procs:
            out, _ = p.proc.communicate(b"hi\n", timeout=30)
            outs.append((p.proc.returncode, out))
        self.assertEqual(outs, [(0, b"Hi from server\n")] * 5)

    def test_usage_errors(self):
        r = self.run_sockit(["connect", "udp://127.0.0.1:0"])
        self.assertExit(r, 2)
        self.assertOneErrorLine(r.stderr, "port 0")
        r = self.run_sockit(["connect", "udp://127.0.0.1:9", "--close-on-eof"])
        self.assertExit(r, 2)
        self.assertOneErrorLine(r.stderr, "--close-on-eof", "does not apply")
        r = self.run_sockit(["connect", "udp://127.0.0.1:9", "--help"])
        self.assertExit(r, 0)
        self.assertIn(b"--timeout", r.stdout)


if __name__ == "__main__":
    unittest.main()
