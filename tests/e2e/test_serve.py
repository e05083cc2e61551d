"""End-to-end tests of `sockit serve`: modes, framing, addresses, tracing, signals, load."""

import hashlib
import os
import re
import select
import selectors
import signal
import socket
import struct
import subprocess
import threading
import time
import unittest

from harness import (GREETING, IO_TIMEOUT, SOCKIT, Deadline, LineReader, Sender, Server,
                     SockitTestCase, ipv6_loopback_available, recv_eof_or_reset, recv_exact,
                     recv_until_eof, sha256, sock_name, vm_rss_kib, wait_until)


def run_threads(fn, n, timeout):
    """Run fn(i) for i in range(n) in n threads at once. Returns (results, errors) lists indexed
    by i. Fails if a thread is still running after the deadline."""
    results = [None] * n
    errors = [None] * n
    start = threading.Barrier(n, timeout=timeout)

    def body(i):
        try:
            start.wait()
            results[i] = fn(i)
        except BaseException as e:  # noqa: B902 - reported below
            errors[i] = e

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    d = Deadline(timeout)
    for t in threads:
        t.join(d.left())
    alive = sum(t.is_alive() for t in threads)
    if alive:
        raise AssertionError("%d of %d client threads still running after %.0f s"
                             % (alive, n, timeout))
    return results, errors


class GreetTests(SockitTestCase):
    """The default mode, and the seed scenario: a plain recv(1024) client gets the greeting."""

    def test_greeting_plain_recv(self):
        srv = self.serve()
        self.assertRegex(srv.address, r"^127\.0\.0\.1:\d+$")
        self.assertNotEqual(srv.port, 0, "the listening line must show the chosen port")
        c = self.connect(srv)
        first = c.recv(1024)  # exactly what the seed client does
        rest = recv_until_eof(c)
        self.assertEqual(first + rest, GREETING)
        self.assertEqual(first, GREETING, "the greeting came in pieces: the seed client's single "
                                          "recv(1024) would not get it whole")

    def test_greeting_then_graceful_eof(self):
        srv = self.serve()
        c = self.connect(srv)
        self.assertEqual(recv_until_eof(c), GREETING)
        self.assertEqual(c.recv(1024), b"")  # still EOF, not a reset

    def test_custom_message(self):
        srv = self.serve("--message", "hello, world: 42")
        c = self.connect(srv)
        self.assertEqual(recv_until_eof(c), b"hello, world: 42\n")

    def test_explicit_mode_greet(self):
        srv = self.serve("--mode", "greet")
        self.assertEqual(recv_until_eof(self.connect(srv)), GREETING)
        srv2 = self.serve("-m", "greet")
        self.assertEqual(recv_until_eof(self.connect(srv2)), GREETING)

    def test_client_sends_first_small(self):
        """Data sent before reading must not turn the server's close into a reset."""
        srv = self.serve()
        c = self.connect(srv)
        c.sendall(b"hello server, this is the client speaking first\n")
        # Wait until the greeting is readable, and a little longer so that a server which
        # closes without draining has had its chance to send a reset. (This delay cannot make a
        # correct server fail; it only makes the bug visible.)
        select.select([c], [], [], IO_TIMEOUT)
        time.sleep(0.2)
        try:
            data = recv_until_eof(c)
        except ConnectionResetError:
            self.fail("connection reset instead of the greeting and a graceful close\n"
                      + srv.describe())
        self.assertEqual(data, GREETING)

    def test_client_sends_first_64k(self):
        srv = self.serve()
        c = self.connect(srv)
        payload = os.urandom(64 * 1024)
        s = Sender(c, payload, shutdown=False)
        s.start()
        self.assertIsNone(s.finish(), "sending 64 KiB before reading failed")
        select.select([c], [], [], IO_TIMEOUT)
        time.sleep(0.2)
        try:
            data = recv_until_eof(c)
        except ConnectionResetError:
            self.fail("connection reset instead of the greeting\n" + srv.describe())
        self.assertEqual(data, GREETING)

    def test_client_sends_then_shuts_down(self):
        srv = self.serve()
        c = self.connect(srv)
        c.sendall(b"bye\n")
        c.shutdown(socket.SHUT_WR)
        self.assertEqual(recv_until_eof(c), GREETING)

    def test_200_clients_at_once(self):
        srv = self.serve()

        def client(i):
            with socket.socket(srv.family, socket.SOCK_STREAM) as s:
                s.settimeout(30)
                s.connect(srv.sockaddr)
                return recv_until_eof(s, 30)

        results, errors = run_threads(client, 200, 60)
        bad = [(i, errors[i] or results[i]) for i in range(200) if results[i] != GREETING]
        self.assertEqual(bad, [], "%d of 200 clients did not get the greeting, e.g. %r\n%s"
                         % (len(bad), bad[:3], srv.describe()))
        self.assertTrue(srv.running(), "server died\n" + srv.describe())

    def test_seed_scenario_default_address(self):
        """`sockit serve` with no address listens on localhost:12345 (127.0.0.1), like the
        seed server."""
        try:
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(("127.0.0.1", 12345))
        except OSError:
            self.skipTest("port 12345 is busy on this machine")
        srv = self.serve(address=None, wait=False)
        try:
            srv.await_listening()
        except AssertionError:
            if any("already in use" in l for l in srv.lines()):
                self.skipTest("port 12345 was taken meanwhile")
            raise
        self.assertEqual(srv.address, "127.0.0.1:12345")
        c = self.connect((socket.AF_INET, ("localhost", 12345)))
        self.assertEqual(c.recv(1024), GREETING)


class EchoTests(SockitTestCase):

    def test_echo_1mib_sha256(self):
        srv = self.serve("--mode", "echo")
        c = self.connect(srv)
        payload = os.urandom(1 << 20)
        s = Sender(c, payload)
        s.start()
        got = recv_exact(c, len(payload), 60)
        self.assertIsNone(s.finish(), "sending failed")
        self.assertEqual(sha256(got), sha256(payload), "echoed data differs")
        self.assertEqual(recv_until_eof(c), b"", "server must close after the client's EOF "
                                                 "without extra bytes")

    def test_echo_short_form_option(self):
        srv = self.serve("-m", "echo")
        c = self.connect(srv)
        c.sendall(b"ping\n")
        self.assertEqual(recv_exact(c, 5), b"ping\n")

    def test_echo_many_exchanges_one_connection(self):
        srv = self.serve("--mode", "echo")
        c = self.connect(srv)
        for i in range(50):
            msg = ("message %d " % i).encode() * (i + 1)
            c.sendall(msg)
            self.assertEqual(recv_exact(c, len(msg)), msg)

    def test_200_concurrent_echo_clients(self):
        srv = self.serve("--mode", "echo")

        def client(i):
            payload = (b"client %03d:" % i) + os.urandom(16 * 1024 + i)
            with socket.socket(srv.family, socket.SOCK_STREAM) as s:
                s.settimeout(30)
                s.connect(srv.sockaddr)
                snd = Sender(s, payload)
                snd.start()
                got = recv_until_eof(s, 60)
                err = snd.finish(30)
                if err:
                    raise err
                return got == payload

        results, errors = run_threads(client, 200, 90)
        bad = [(i, errors[i]) for i in range(200) if results[i] is not True]
        self.assertEqual(bad, [], "%d of 200 echo clients failed, e.g. %r\n%s"
                         % (len(bad), bad[:3], srv.describe()))

    def test_line_framing_byte_at_a_time(self):
        """A line sent one byte per segment comes back whole, once, with its newline."""
        srv = self.serve("--mode", "echo", "--frame", "line")
        c = self.connect(srv)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        r = LineReader(c)
        for line in (b"hello world", b"a", b"the quick brown fox jumps over the lazy dog"):
            for i in range(len(line)):
                c.send(line[i:i + 1])
            # Nothing may come back before the newline. (A wrong server is caught when its
            # partial echo arrives within this window; a right one passes whatever the timing.)
            readable, _, _ = select.select([c], [], [], 0.3)
            self.assertEqual(readable, [], "server echoed part of a line before its newline: %r"
                             % (c.recv(4096) if readable else b""))
            c.send(b"\n")
            self.assertEqual(r.readline(), line + b"\n")

    def test_line_framing_many_lines_in_one_send(self):
        srv = self.serve("--mode", "echo", "--frame", "line")
        c = self.connect(srv)
        lines = [("line %d %s" % (i, "x" * i)).encode() + b"\n" for i in range(200)]
        c.sendall(b"".join(lines))
        r = LineReader(c)
        self.assertEqual(r.readlines(len(lines)), lines)

    def test_overlong_line_closes_only_that_client(self):
        srv = self.serve("--mode", "echo", "--frame", "line", "--max-frame", "1024")
        good = self.connect(srv)
        bad = self.connect(srv)
        good_r = LineReader(good)
        good.sendall(b"before\n")
        self.assertEqual(good_r.readline(), b"before\n")
        # A line within the limit is fine.
        ok_line = b"y" * 1000 + b"\n"
        good.sendall(ok_line)
        self.assertEqual(good_r.readline(), ok_line)

        try:
            bad.sendall(b"z" * 8192 + b"\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may already have closed it: that is the point
        got, how = recv_eof_or_reset(bad)
        self.assertEqual(got, 0, "the over-long line must not be echoed")

        good.sendall(b"after\n")
        self.assertEqual(good_r.readline(), b"after\n", "the other client must keep working")
        third = self.connect(srv)
        third.sendall(b"new client\n")
        self.assertEqual(LineReader(third).readline(), b"new client\n")
        self.assertTrue(srv.running(), srv.describe())
        # A warning mentioning the limit (1024) on stderr.
        srv.wait_line(r"^(?!listening on ).*\b1024\b", timeout=5)

    def test_overlong_line_resets_after_what_was_owed(self):
        """A client past --max-frame sees a reset, not a clean end (issue 18.5), and only after
        every reply owed for what came before it has arrived."""
        srv = self.serve("--mode", "echo", "--frame", "line", "--max-frame", "64")
        lines = b"".join(b"line %d\n" % i for i in range(20000))  # ~190 KiB of replies
        r = self.run_sockit(["connect", "127.0.0.1:%d" % srv.port],
                            input=lines + b"x" * 100 + b"\nnever echoed\n")
        self.assertEqual(r.stdout, lines)
        self.assertExit(r, 1)
        self.assertOneErrorLine(r.stderr, "reset")
        raw = self.connect(srv)
        raw.sendall(b"ok\n" + b"y" * 100 + b"\n")
        got, how = recv_eof_or_reset(raw)
        self.assertEqual((got, how), (3, "reset"))

    def test_line_limit_boundary(self):
        """--max-frame 16: a 16-byte line (newline not counted) is echoed; 17 bytes close."""
        srv = self.serve("--mode", "echo", "--frame", "line", "--max-frame", "16")
        c = self.connect(srv)
        line = b"0123456789abcdef"
        c.sendall(line + b"\n")
        self.assertEqual(LineReader(c).readline(), line + b"\n")
        c.sendall(line + b"\r\n")  # a CR before the newline is not payload either
        self.assertEqual(LineReader(c).readline(), line + b"\n")
        for over in (line + b"g\n", line + b"gh"):  # the second with no newline (yet)
            with self.subTest(sent=over):
                d = self.connect(srv)
                d.sendall(over)
                self.assertEqual(recv_eof_or_reset(d)[0], 0)
        self.assertTrue(srv.running(), srv.describe())

    def test_len32_limit_boundary(self):
        srv = self.serve("--mode", "echo", "--frame", "len32", "--max-frame", "16")
        c = self.connect(srv)
        frame = struct.pack(">I", 16) + b"p" * 16
        c.sendall(frame)
        self.assertEqual(recv_exact(c, len(frame)), frame)
        d = self.connect(srv)
        d.sendall(struct.pack(">I", 17))  # the prefix alone is enough to refuse it
        self.assertEqual(recv_eof_or_reset(d)[0], 0)
        zero = struct.pack(">I", 0)
        c.sendall(zero + frame)  # an empty frame is a frame
        self.assertEqual(recv_exact(c, 4 + len(frame)), zero + frame)

    def test_len32_echo(self):
        srv = self.serve("--mode", "echo", "--frame", "len32")
        c = self.connect(srv)
        payloads = [b"x", b"hello", os.urandom(1000), os.urandom(60000), b"last one"]
        wire = b"".join(struct.pack(">I", len(p)) + p for p in payloads)
        s = Sender(c, wire, shutdown=False)
        s.start()
        for p in payloads:
            (n,) = struct.unpack(">I", recv_exact(c, 4))
            self.assertEqual(n, len(p), "length prefix of the echoed frame")
            self.assertEqual(sha256(recv_exact(c, n)), sha256(p))
        self.assertIsNone(s.finish())
        c.shutdown(socket.SHUT_WR)
        self.assertEqual(recv_until_eof(c), b"")

    def test_len32_frame_split_across_sends(self):
        srv = self.serve("--mode", "echo", "--frame", "len32")
        c = self.connect(srv)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        wire = struct.pack(">I", 11) + b"hello world"
        for i in range(len(wire)):
            c.send(wire[i:i + 1])
        self.assertEqual(recv_exact(c, len(wire)), wire)

    def test_len32_oversized_frame_closes_only_that_client(self):
        srv = self.serve("--mode", "echo", "--frame", "len32", "--max-frame", "1024")
        good = self.connect(srv)
        bad = self.connect(srv)
        try:
            bad.sendall(struct.pack(">I", 4096) + b"q" * 4096)
        except (BrokenPipeError, ConnectionResetError):
            pass
        got, how = recv_eof_or_reset(bad)
        self.assertEqual(got, 0, "an over-size frame must not be echoed")
        frame = struct.pack(">I", 5) + b"fine!"
        good.sendall(frame)
        self.assertEqual(recv_exact(good, len(frame)), frame)
        self.assertTrue(srv.running(), srv.describe())

    def test_idle_timeout_closes_silent_client(self):
        srv = self.serve("--mode", "echo", "--idle-timeout", "1")
        c = self.connect(srv)
        c.sendall(b"x")
        self.assertEqual(recv_exact(c, 1), b"x")
        # Then silence: the server must close the connection (bounded wait, no lower bound).
        got, how = recv_eof_or_reset(c, 15)
        self.assertEqual(got, 0)
        self.assertTrue(srv.running(), srv.describe())


    def test_line_echo_returns_a_last_line_without_newline(self):
        """Issue 18.4: at EOF a partial line is a frame: `printf hi | sockit connect` to
        `serve -m echo --frame line` prints hi (with the newline line framing adds)."""
        srv = self.serve("--mode", "echo", "--frame", "line")
        r = self.run_sockit(["connect"] + srv.connect_args(), input=b"one\ntwo")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"one\ntwo\n")

    def test_idle_timeout_spares_a_client_that_keeps_talking(self):
        """Issue 18.1: a byte every second under --idle-timeout 1.8 keeps the client alive. With
        the loop's clock read before the wait, each re-armed timer lost the second slept and
        the client was cut after its first line."""
        srv = self.serve("--mode", "echo", "--idle-timeout", "1.8")
        c = self.connect(srv)
        for i in range(4):
            time.sleep(1.0)
            c.sendall(b"t%d\n" % i)
            self.assertEqual(recv_exact(c, 3), b"t%d\n" % i, "cut while active")
        self.assertTrue(srv.running(), srv.describe())

    def test_backpressure_client_that_sends_without_reading(self):
        """A client sends 128 MiB before reading anything: the server must stop reading from it
        (back-pressure) instead of queueing without limit or dropping it, and every byte
        comes back in order once the client reads."""
        srv = self.serve("--mode", "echo")
        c = self.connect(srv)
        block = os.urandom(1 << 20)
        n_blocks = 128
        def chunk(k):  # 1 MiB, different for every k, made when needed (no 128 MiB in memory)
            i = (k * 4099) % len(block)
            return block[i:] + block[:i]

        state = {"sent": 0, "error": None}

        def send():
            try:
                for k in range(n_blocks):
                    ch = chunk(k)
                    c.sendall(ch)
                    state["sent"] += len(ch)
                c.shutdown(socket.SHUT_WR)
            except Exception as e:  # noqa: B902 - reported below
                state["error"] = e

        t = threading.Thread(target=send, daemon=True)
        t.start()
        # Let the sender run until it blocks (or finishes): poll its progress.
        last, d = -1, Deadline(20)
        while not d.expired() and t.is_alive() and state["sent"] != last:
            last = state["sent"]
            time.sleep(0.3)
        rss_stalled = vm_rss_kib(srv.pid)
        peak = [rss_stalled or 0]
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                peak[0] = max(peak[0], vm_rss_kib(srv.pid) or 0)
                stop.wait(0.05)

        w = threading.Thread(target=watch, daemon=True)
        w.start()
        h_want, h_got = hashlib.sha256(), hashlib.sha256()
        for k in range(n_blocks):
            h_want.update(chunk(k))
        total = n_blocks << 20
        got = 0
        dl = Deadline(120)
        c.settimeout(30)
        try:
            while got < total:
                b = c.recv(1 << 20)
                if not b:
                    break
                h_got.update(b)
                got += len(b)
                if dl.expired():
                    break
        finally:
            stop.set()
            w.join(5)
        t.join(30)
        self.assertIsNone(state["error"], "sending failed after %d bytes: %r\n%s"
                          % (state["sent"], state["error"], srv.describe()))
        self.assertEqual(got, total, "echoed %d of %d bytes" % (got, total))
        self.assertEqual(h_got.hexdigest(), h_want.hexdigest())
        self.assertLess(peak[0], 64 * 1024, "server VmRSS reached %d KiB: no back-pressure?"
                        % peak[0])

    def test_clients_that_reset_do_not_hurt_the_server(self):
        for mode in ("greet", "echo", "chat", "source", "discard"):
            with self.subTest(mode=mode):
                srv = self.serve("--mode", mode)
                for i in range(30):
                    s = self.connect(srv)
                    if i % 2:
                        s.sendall(b"some data\n" * 100)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.close()  # an abrupt reset
                # Still alive and serving.
                c = self.connect(srv)
                if mode == "greet":
                    self.assertEqual(recv_until_eof(c), GREETING)
                elif mode == "echo":
                    c.sendall(b"alive?\n")
                    self.assertEqual(recv_exact(c, 7), b"alive?\n")
                elif mode == "chat":
                    c2 = self.connect(srv)
                    # The server may still be announcing the reset clients' departures to c:
                    # skip those (a bounded number) until c2's join arrives.
                    want = ("* %s joined\n" % sock_name(c2)).encode()
                    reader = LineReader(c)
                    lines = [reader.readline() for _ in range(1)]
                    while lines[-1] != want and len(lines) < 64 and lines[-1].endswith(b" left\n"):
                        lines.append(reader.readline())
                    self.assertEqual(lines[-1], want, lines)
                elif mode == "source":
                    self.assertEqual(len(recv_exact(c, 4096)), 4096)
                else:
                    c.sendall(b"x" * 1000)
                    c.shutdown(socket.SHUT_WR)
                    self.assertEqual(recv_until_eof(c), b"")
                self.assertTrue(srv.running(), srv.describe())
                srv.send_signal(signal.SIGTERM)
                self.assertEqual(srv.wait(), 0, srv.describe())

    def test_out_of_file_descriptors(self):
        """With a small descriptor limit and more clients than it allows, the server neither
        dies nor hangs: each client is served (or closed) once others leave, and new clients
        are served afterwards."""
        srv = self.start(["-c", 'ulimit -n 32 && exec "$0" "$@"', SOCKIT, "serve",
                          "127.0.0.1:0", "--mode", "echo"], cls=Server, binary="/bin/sh")
        srv.await_listening()  # the shell has exec'd sockit: srv.pid is sockit's
        n = 60
        clients = [self.connect(srv) for _ in range(n)]
        for i, c in enumerate(clients):
            c.sendall(b"client %02d\n" % i)
        sel = selectors.DefaultSelector()
        for i, c in enumerate(clients):
            c.setblocking(False)
            sel.register(c, selectors.EVENT_READ, i)
        outcome = {}
        d = Deadline(60)
        while len(outcome) < n and not d.expired():
            for key, _ in sel.select(min(d.left(), 1.0)):
                i, c = key.data, key.fileobj
                try:
                    b = c.recv(100)
                    outcome[i] = "echo" if b == b"client %02d\n" % i else "closed %r" % b
                except (ConnectionResetError, BlockingIOError) as e:
                    if isinstance(e, BlockingIOError):
                        continue
                    outcome[i] = "reset"
                sel.unregister(c)
                c.close()  # frees a descriptor in the server
        sel.close()
        self.assertEqual(len(outcome), n, "%d of %d clients got neither an answer nor a close "
                         "within 60 s\n%s" % (n - len(outcome), n, srv.describe()))
        self.assertTrue(srv.running(), srv.describe())
        c = self.connect(srv)
        c.sendall(b"after\n")
        self.assertEqual(recv_exact(c, 6), b"after\n", srv.describe())


class OtherModeTests(SockitTestCase):

    def test_discard(self):
        srv = self.serve("--mode", "discard")
        c = self.connect(srv)
        s = Sender(c, os.urandom(1 << 20))
        s.start()
        self.assertEqual(recv_until_eof(c, 30), b"", "discard must send nothing back")
        self.assertIsNone(s.finish())

    def test_source(self):
        srv = self.serve("--mode", "source")
        c = self.connect(srv)
        got = recv_exact(c, 4 << 20, 60)
        self.assertEqual(len(got), 4 << 20)
        c.close()
        # The server survives a client that goes away in the middle of the stream.
        c2 = self.connect(srv)
        self.assertEqual(len(recv_exact(c2, 1000)), 1000)
        self.assertTrue(srv.running(), srv.describe())


    def test_source_keeps_sending_after_half_close(self):
        """Issue 18.11, RFC 864: a client that shuts down its write side still gets the
        stream; only its close ends it (as the man page says)."""
        srv = self.serve("--mode", "source")
        c = self.connect(srv)
        c.shutdown(socket.SHUT_WR)
        self.assertEqual(len(recv_exact(c, 1 << 20, 60)), 1 << 20)
        self.assertTrue(srv.running(), srv.describe())


class ChatTests(SockitTestCase):

    def test_three_clients_join_talk_leave(self):
        srv = self.serve("--mode", "chat")
        a = self.connect(srv)
        ra = LineReader(a)
        b = self.connect(srv)
        rb = LineReader(b)
        A, B = sock_name(a), sock_name(b)
        self.assertEqual(ra.readline(), ("* %s joined\n" % B).encode())
        c = self.connect(srv)
        rc = LineReader(c)
        C = sock_name(c)
        self.assertEqual(ra.readline(), ("* %s joined\n" % C).encode())
        self.assertEqual(rb.readline(), ("* %s joined\n" % C).encode())

        a.sendall(b"hello from a\n")
        self.assertEqual(rb.readline(), ("[%s] hello from a\n" % A).encode())
        self.assertEqual(rc.readline(), ("[%s] hello from a\n" % A).encode())
        b.sendall(b"hi a, b here\n")
        # a's next line is b's: a never gets its own line back.
        self.assertEqual(ra.readline(), ("[%s] hi a, b here\n" % B).encode())
        self.assertEqual(rc.readline(), ("[%s] hi a, b here\n" % B).encode())
        c.sendall(b"c says one\nc says two\n")
        self.assertEqual(ra.readlines(2), [("[%s] c says one\n" % C).encode(),
                                           ("[%s] c says two\n" % C).encode()])
        self.assertEqual(rb.readlines(2), [("[%s] c says one\n" % C).encode(),
                                           ("[%s] c says two\n" % C).encode()])

        c.close()
        self.assertEqual(ra.readline(), ("* %s left\n" % C).encode())
        self.assertEqual(rb.readline(), ("* %s left\n" % C).encode())
        b.shutdown(socket.SHUT_WR)
        self.assertEqual(ra.readline(), ("* %s left\n" % B).encode())
        a.sendall(b"alone now\n")
        b.settimeout(IO_TIMEOUT)
        # b has left: it must not get a's line, only the server's close.
        rest = b""
        try:
            rest = recv_until_eof(b, 10)
        except ConnectionResetError:
            pass
        self.assertNotIn(b"alone now", rest)

    def test_line_typed_one_byte_at_a_time(self):
        srv = self.serve("--mode", "chat")
        a = self.connect(srv)
        b = self.connect(srv)
        rb = LineReader(b)
        self.assertEqual(LineReader(a).readline(), ("* %s joined\n" % sock_name(b)).encode())
        a.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for ch in b"typed slowly\n":
            a.send(bytes([ch]))
        self.assertEqual(rb.readline(), ("[%s] typed slowly\n" % sock_name(a)).encode())

    def test_slow_reader_is_disconnected_and_never_stalls_others(self):
        """A client that never reads while two others exchange ~6 MiB through a 64 KiB
        --max-queue: the two keep receiving everything, the slow one is disconnected, and the
        server's memory stays bounded.

        Each sender keeps at most WINDOW lines unread by its partner, so the partners' own
        queues stay far below the limit however fast or slow this Python process is; only the
        client that never reads can pass it."""
        srv = self.serve("--mode", "chat", "--max-queue", "65536")
        slow = self.connect(srv, rcvbuf=4096)  # small buffers: its queue fills sooner
        slow_name = sock_name(slow)
        a = self.connect(srv)
        b = self.connect(srv)
        ra, rb = LineReader(a), LineReader(b)
        names = {"a": sock_name(a), "b": sock_name(b)}
        self.assertEqual(ra.readline(), ("* %s joined\n" % names["b"]).encode())

        n_lines, window, body = 3000, 16, "x" * 1000
        received = {"a": 0, "b": 0}      # lines of the partner received by a / by b
        announcements = {"a": [], "b": []}
        outcome = {}
        cond = threading.Condition()
        partner = {"a": "b", "b": "a"}

        def line(who, i):
            return "%s %06d %s\n" % (who, i, body)

        def send(who, sock):
            try:
                for i in range(n_lines):
                    with cond:
                        if not cond.wait_for(lambda: received[partner[who]] >= i - window, 60):
                            raise AssertionError("%s: partner stopped receiving at line %d"
                                                 % (who, received[partner[who]]))
                    sock.sendall(line(who, i).encode())
                outcome["send " + who] = "ok"
            except BaseException as e:  # noqa: B902 - reported below
                outcome["send " + who] = e
                with cond:
                    cond.notify_all()

        def collect(who, reader):
            prefix = "[%s] " % names[partner[who]]
            try:
                while received[who] < n_lines:
                    text = reader.readline(60).decode()
                    if text.startswith("* "):
                        announcements[who].append(text)  # e.g. the slow client leaving
                        continue
                    want = prefix + line(partner[who], received[who])
                    if text != want:
                        raise AssertionError("%s: line %d is %r" % (who, received[who],
                                                                     text[:120]))
                    with cond:
                        received[who] += 1
                        cond.notify_all()
                outcome["recv " + who] = "ok"
            except BaseException as e:  # noqa: B902
                outcome["recv " + who] = e
                with cond:
                    cond.notify_all()

        peak = [0]
        stop = threading.Event()

        def watch_rss():
            while not stop.is_set():
                v = vm_rss_kib(srv.pid)
                if v:
                    peak[0] = max(peak[0], v)
                stop.wait(0.05)

        threads = [threading.Thread(target=f, args=args, daemon=True) for f, args in (
            (watch_rss, ()), (send, ("a", a)), (send, ("b", b)), (collect, ("b", rb)))]
        for t in threads:
            t.start()
        collect("a", ra)
        d = Deadline(90)
        for t in threads[1:]:
            t.join(d.left())
        stop.set()
        threads[0].join(5)
        for key in ("send a", "send b", "recv a", "recv b"):
            self.assertEqual(outcome.get(key), "ok", "%s: %r (received %r)\n%s"
                             % (key, outcome.get(key), received, srv.describe()))

        # Now the slow client starts reading: what was buffered, then EOF or reset, far less
        # than everything that was said.
        total_said = 2 * n_lines * (len(body) + 30)
        got, how = recv_eof_or_reset(slow, 15)
        self.assertLess(got, total_said // 2, "the slow client got (nearly) everything: it was "
                        "not disconnected (%d bytes, then %s)" % (got, how))
        self.assertTrue(srv.running(), srv.describe())
        self.assertGreater(peak[0], 0, "could not read VmRSS of the server")
        self.assertLess(peak[0], 64 * 1024, "server VmRSS peaked at %d KiB" % peak[0])

        # Its departure is announced to the others (maybe already seen during the exchange).
        a.sendall(b"done\n")
        d = Deadline(10)
        while True:
            text = rb.readline(max(d.left(), 0.001)).decode()
            if text == "[%s] done\n" % names["a"]:
                break
            announcements["b"].append(text)
        self.assertIn("* %s left\n" % slow_name, announcements["b"],
                      "the slow client's departure was not announced to b")


class AddressTests(SockitTestCase):

    def test_ipv6_loopback(self):
        if not ipv6_loopback_available():
            self.skipTest("::1 is not available")
        srv = self.serve(address="[::1]:0")
        self.assertRegex(srv.address, r"^\[::1\]:[1-9]\d*$")
        self.assertEqual(srv.family, socket.AF_INET6)
        c = self.connect(srv)
        self.assertEqual(recv_until_eof(c), GREETING)

    def test_ipv6_chat_names_sender_in_brackets(self):
        if not ipv6_loopback_available():
            self.skipTest("::1 is not available")
        srv = self.serve("--mode", "chat", address="[::1]:0")
        a = self.connect(srv)
        b = self.connect(srv)
        ra = LineReader(a)
        self.assertEqual(ra.readline(), ("* [::1]:%d joined\n" % b.getsockname()[1]).encode())

    def _overlong_line_then_reset(self, srv, host):
        """A client that sends a line over --max-frame and resets at once. The server is
        stopped (SIGSTOP) meanwhile, so the reset has arrived before it reads the line: by then
        getpeername() fails, and only a name kept from accept can say who it was."""
        c = self.connect(srv)
        name = sock_name(c)
        c.sendall(b"hi\n")
        self.assertEqual(recv_exact(c, 3), b"hi\n")  # accepted, and up
        os.kill(srv.pid, signal.SIGSTOP)
        try:
            c.sendall(b"x" * 100 + b"\n")
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()  # a reset
        finally:
            os.kill(srv.pid, signal.SIGCONT)
        line = srv.wait_line(r"^.*sent a frame longer than --max-frame.*$").group(0)
        self.assertIn("sockit: %s sent a frame longer than --max-frame (10 bytes)" % name, line,
                      srv.describe())
        self.assertTrue(name.startswith(host), name)

    def test_ipv6_overlong_line_names_the_peer_after_its_reset(self):
        """Issue 10.5: it was reported as 'unix-client-7', the name recomputed at close."""
        if not ipv6_loopback_available():
            self.skipTest("::1 is not available")
        srv = self.serve("--mode", "echo", "--frame", "line", "--max-frame", "10",
                         address="[::1]:0")
        self._overlong_line_then_reset(srv, "[::1]:")

    def test_ipv4_overlong_line_names_the_peer_after_its_reset(self):
        srv = self.serve("--mode", "echo", "--frame", "line", "--max-frame", "10")
        self._overlong_line_then_reset(srv, "127.0.0.1:")

    def test_unix_socket(self):
        path = os.path.join(self.tmpdir, "s.sock")
        srv = self.serve(address="unix:" + path)
        self.assertEqual(srv.address, "unix:" + path)
        c = self.connect(srv)
        self.assertEqual(recv_until_eof(c), GREETING)
        srv.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0, srv.describe())
        self.assertFalse(os.path.exists(path), "the socket file is left after SIGTERM")

    def test_unix_scheme_prefix(self):
        path = os.path.join(self.tmpdir, "u.sock")
        srv = self.serve("--mode", "echo", address="unix://" + path)
        self.assertEqual(srv.address, "unix:" + path)
        c = self.connect(srv)
        c.sendall(b"over unix\n")
        self.assertEqual(recv_exact(c, 10), b"over unix\n")

    def test_unix_stale_socket_after_sigkill(self):
        path = os.path.join(self.tmpdir, "stale.sock")
        first = self.serve(address="unix:" + path)
        first.send_signal(signal.SIGKILL)
        first.wait()
        self.assertTrue(os.path.exists(path), "expected the killed server's socket file")
        second = self.serve(address="unix:" + path)
        self.assertEqual(second.address, "unix:" + path)
        self.assertEqual(recv_until_eof(self.connect(second)), GREETING)

    def test_unix_live_socket_is_not_stolen(self):
        path = os.path.join(self.tmpdir, "live.sock")
        first = self.serve("--message", "first", address="unix:" + path)
        r = self.run_sockit(["serve", "unix:" + path])
        self.assertExit(r, 1)
        self.assertOneErrorLine(r.stderr, "already in use")
        self.assertEqual(recv_until_eof(self.connect(first)), b"first\n",
                         "the first server must still own the path")

    def test_tcp_scheme_prefix(self):
        srv = self.serve(address="tcp://127.0.0.1:0")
        self.assertRegex(srv.address, r"^127\.0\.0\.1:\d+$")
        self.assertEqual(recv_until_eof(self.connect(srv)), GREETING)

    def test_wildcard_colon_port(self):
        srv = self.serve(address=":0")
        self.assertRegex(srv.address, r"^(\[::\]|0\.0\.0\.0):[1-9]\d*$")
        self.assertEqual(recv_until_eof(self.connect((socket.AF_INET,
                                                      ("127.0.0.1", srv.port)))), GREETING)
        if ipv6_loopback_available() and srv.address.startswith("[::]"):
            self.assertEqual(recv_until_eof(self.connect((socket.AF_INET6, ("::1", srv.port)))),
                             GREETING)

    def test_bare_port(self):
        srv = self.serve(address="0")
        self.assertRegex(srv.address, r"^(\[::\]|0\.0\.0\.0):[1-9]\d*$")
        self.assertEqual(recv_until_eof(self.connect((socket.AF_INET,
                                                      ("127.0.0.1", srv.port)))), GREETING)

    def test_localhost_binds_ipv4_loopback(self):
        srv = self.serve(address="localhost:0")
        self.assertRegex(srv.address, r"^127\.0\.0\.1:[1-9]\d*$")


class OutputTests(SockitTestCase):

    def test_verbose_traces_every_step(self):
        srv = self.serve("-v", "--backlog", "7")
        c = self.connect(srv)
        client_port = c.getsockname()[1]
        c.sendall(b"hello")
        self.assertEqual(recv_until_eof(c), GREETING)
        c.close()
        m_acc = srv.wait_line(r"^accept fd=(\d+) peer=(\S+)")
        fd = m_acc.group(1)
        self.assertEqual(m_acc.group(2), "127.0.0.1:%d" % client_port,
                         "accept line must name the peer\n" + srv.describe())
        # Wait for the connection's close (the listener's fd is still open), after the accept.
        i_acc = srv.lines().index(m_acc.string)
        srv.wait_line(r"^close fd=%s\b" % fd, 10, start=i_acc)
        lines = srv.lines()
        text = "\n".join(lines)
        for rx in (r"^socket fd=\d+", r"^bind fd=\d+ 127\.0\.0\.1:\d+",
                   r"^listen fd=\d+ backlog=7$",
                   r"^accept fd=\d+ peer=127\.0\.0\.1:\d+", r"^recv fd=%s " % fd,
                   r"^send fd=%s " % fd, r"^close fd=%s\b" % fd):
            self.assertTrue(any(re.search(rx, l) for l in lines), "no stderr line matching %r:\n%s"
                            % (rx, text))

        def total(step):
            return sum(int(m.group(1)) for m in (re.match(r"^%s fd=%s (\d+) bytes" % (step, fd), l)
                                                 for l in lines) if m)

        self.assertEqual(total("recv"), 5, "recv lines must add up to the 5 bytes sent\n" + text)
        self.assertEqual(total("send"), len(GREETING), "send lines must add up to the greeting\n"
                         + text)
        self.assertTrue(any(re.match(r"^shutdown fd=%s write" % fd, l) for l in lines),
                        "greet closes gracefully: expected 'shutdown fd=%s write'\n%s" % (fd, text))

    def test_default_output_is_just_the_listening_line(self):
        srv = self.serve("--mode", "echo")
        c = self.connect(srv)
        c.sendall(b"abc")
        self.assertEqual(recv_exact(c, 3), b"abc")
        c.close()
        srv.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0, srv.describe())
        self.assertEqual(srv.lines(), ["listening on " + srv.address])

    def _quiet_unix_server(self, *args):
        """Start `sockit serve -q unix:PATH ARGS` (no listening line to wait for) and return
        (server, a socket connected to it), polling within a deadline."""
        path = os.path.join(self.tmpdir, "q.sock")
        srv = self.serve("-q", *args, address="unix:" + path, wait=False)

        def try_connect():
            if not srv.running():
                return "exited"
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(5)
                s.connect(path)
                return s
            except OSError:
                s.close()
                return None

        s = wait_until(try_connect, 10)
        self.assertIsInstance(s, socket.socket, "no connection to the quiet server\n"
                              + srv.describe())
        self.addCleanup(s.close)
        s.settimeout(IO_TIMEOUT)
        return srv, s

    def test_quiet_prints_nothing(self):
        srv, s = self._quiet_unix_server()
        self.assertEqual(recv_until_eof(s), GREETING)
        srv.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0, srv.describe())
        self.assertEqual(srv.lines(), [], "-q must print nothing when all goes well")

    def test_quiet_hides_warnings(self):
        srv, s = self._quiet_unix_server("--mode", "echo", "--frame", "line", "--max-frame", "16")
        try:
            s.sendall(b"w" * 100 + b"\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.assertEqual(recv_eof_or_reset(s)[0], 0)
        srv.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0, srv.describe())
        self.assertEqual(srv.lines(), [], "-q prints only errors, not warnings")

    def test_nothing_on_stdout(self):
        srv = self.serve("-v", "--mode", "echo", stdout=subprocess.PIPE)
        c = self.connect(srv)
        c.sendall(b"data")
        self.assertEqual(recv_exact(c, 4), b"data")
        c.close()
        srv.send_signal(signal.SIGTERM)
        self.assertEqual(srv.wait(), 0, srv.describe())
        self.assertEqual(srv.proc.stdout.read(), b"", "serve must write nothing on stdout")


class SignalTests(SockitTestCase):

    def _five_echo_clients(self, srv):
        clients = []
        for i in range(5):
            c = self.connect(srv)
            msg = b"ping %d\n" % i
            c.sendall(msg)
            self.assertEqual(recv_exact(c, len(msg)), msg)
            clients.append(c)
        return clients

    def _stop_with(self, sig):
        srv = self.serve("--mode", "echo")
        clients = self._five_echo_clients(srv)
        srv.send_signal(sig)
        self.assertEqual(srv.wait(), 0, "exit status after one signal\n" + srv.describe())
        for i, c in enumerate(clients):
            try:
                rest = recv_until_eof(c, 10)
            except ConnectionResetError:
                self.fail("client %d was reset instead of closed" % i)
            self.assertEqual(rest, b"", "client %d got %r" % (i, rest))
        with socket.socket() as s:
            s.settimeout(5)
            self.assertNotEqual(s.connect_ex(srv.sockaddr), 0, "still accepting after exit")

    def test_sigterm_with_five_clients(self):
        self._stop_with(signal.SIGTERM)

    def test_sigint_with_five_clients(self):
        self._stop_with(signal.SIGINT)

    def _client_that_keeps_the_drain_going(self, srv):
        """An echo client that sends without reading until the server stops reading from it:
        the server then owes it data and still has its input to read, so a graceful stop
        waits for it (up to --drain-timeout)."""
        c = self.connect(srv, rcvbuf=4096)
        c.setblocking(False)
        block = b"x" * 65536
        d = Deadline(20)
        while not d.expired():
            _, w, _ = select.select([], [c], [], 0.5)
            if not w:
                return c  # half a second without room: the server has stopped reading
            try:
                c.send(block)
            except BlockingIOError:
                pass
        self.fail("the server never stopped reading from a client that does not read\n"
                  + srv.describe())

    def test_second_signal_exits_at_once(self):
        """The first signal starts a drain that a client keeps going (--drain-timeout 60, far
        beyond the 2 s linger of a close); the second must end the process at once, with
        status 1 and a line saying so."""
        srv = self.serve("--mode", "echo", "--drain-timeout", "60")
        self._client_that_keeps_the_drain_going(srv)
        srv.send_signal(signal.SIGTERM)

        def refused():
            with socket.socket() as s:
                s.settimeout(5)
                return s.connect_ex(srv.sockaddr) != 0

        self.assertTrue(wait_until(refused, 10), "the first signal did not close the listener")
        self.assertTrue(srv.running(), "the first signal alone ended the drain\n"
                        + srv.describe())
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        status = srv.wait(10)
        took = time.monotonic() - t0
        self.assertEqual(status, 1, "exit status after the second signal\n" + srv.describe())
        self.assertLess(took, 1.0, "the second signal took %.1f s to end the process" % took)
        srv.wait_line(r"^sockit: second signal: exiting at once$")


if __name__ == "__main__":
    unittest.main()
