"""End-to-end tests of `sockit relay` for streams (issue 11): bytes both ways through the relay
with real peers (Python sockets, socat, ncat, `sockit serve`), half-close and reset carried,
targets down, balancing, bounded memory, many pairs, signals, splice and copy paths, admission
and usage errors.

Targets written in Python run in threads of this process (PeerServer); every socket has a
timeout and every wait a deadline. Under Valgrind the big transfers are smaller."""

import hashlib
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import ssl
import struct
import tempfile
import subprocess
import threading
import time
import unittest

import tlsutil
from harness import (BUILD, IO_TIMEOUT, LISTEN_TIMEOUT, SOCKIT, VALGRIND, Deadline, LineReader,
                     Sender, Server, SockitTestCase, free_tcp_port, ipv6_loopback_available,
                     recv_eof_or_reset, recv_exact, recv_until_eof, sha256, vm_rss_kib,
                     wait_until)

VALGRIND_ON = os.environ.get("SOCKIT_VALGRIND") == "1"
# Sanitizers and Valgrind carry memory of their own: the RSS bounds allow for it.
SANITIZED = "san" in BUILD or VALGRIND_ON
MIB = 1 << 20
BIG = (8 if VALGRIND_ON else 64) * MIB  # each way, in the bulk tests
BULK_TIMEOUT = 240.0 if VALGRIND_ON else 60.0
# For a close to arrive through the relay: milliseconds when all is well; bounded lower than
# IO_TIMEOUT so that a relay that loses one fails its test in seconds, not minutes.
CLOSE_TIMEOUT = 20.0 if VALGRIND_ON else 8.0
# More than the kernel's socket buffers on both hops hold, so a sender really blocks.
SLOW_MIB = 32
RSS_SLACK_KIB = (96 if SANITIZED else 30) * 1024
PAIRS = 1000
PIN_RE = re.compile(r"--pin (sha256:[0-9A-Fa-f:]+)")


def setUpModule():
    # A thousand pairs need two thousand descriptors in the relay (which inherits the limit)
    # and a thousand here and in the target. Raise the soft limit toward the hard one.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


def linger_reset(sock):
    """Close with SO_LINGER 0: the peer gets a reset, not a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def pattern(n, seed=0):
    """n bytes that are not all alike and cheap to make: random 1 MiB blocks rotated."""
    block = os.urandom(MIB)
    out = bytearray()
    k = seed
    while len(out) < n:
        i = (k * 7919) % MIB
        out += block[i:] + block[:i]
        k += 1
    return bytes(out[:n])


def duplex(sock, data, expect, deadline_s, shutdown=False):
    """Send data and receive at the same time on one socket (plain or ssl), in this thread,
    non-blocking: neither direction can wait for the other. Receives until `expect` bytes
    came (or, with expect None, until EOF). shutdown: SHUT_WR once everything is sent (plain
    sockets only). Returns (sha256 hex of what came, how many bytes came)."""
    sock.setblocking(False)
    is_ssl = isinstance(sock, ssl.SSLSocket)
    mv = memoryview(data)
    off = 0
    h = hashlib.sha256()
    got = 0
    eof = False
    shut_done = False
    d = Deadline(deadline_s)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
    chunk = 256 * 1024

    def reading():
        return not eof and (expect is None or got < expect)

    try:
        while reading() or off < len(mv):
            if d.expired():
                raise AssertionError("duplex transfer did not finish within %.0f s: sent %d of "
                                     "%d, received %d of %s" % (deadline_s, off, len(mv), got,
                                                                expect))
            ev = (selectors.EVENT_READ if reading() else 0) | \
                 (selectors.EVENT_WRITE if off < len(mv) else 0)
            sel.modify(sock, ev)
            ready = sel.select(min(d.left(), 0.5))
            if not ready and not (is_ssl and sock.pending()):
                continue
            if reading():
                for _ in range(64):  # drain what is buffered (ssl keeps some inside)
                    try:
                        b = sock.recv(chunk)
                    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                        break
                    if not b:
                        eof = True
                        break
                    h.update(b)
                    got += len(b)
                    if expect is not None and got >= expect:
                        break
            if off < len(mv):
                try:
                    off += sock.send(mv[off: off + chunk])
                except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
            if shutdown and off == len(mv) and not shut_done:
                sock.shutdown(socket.SHUT_WR)
                shut_done = True
    finally:
        sel.close()
        sock.settimeout(IO_TIMEOUT)
    if shutdown and not shut_done:
        sock.shutdown(socket.SHUT_WR)
    return h.hexdigest(), got


class PeerServer:
    """A target written in Python: a listening socket (TCP on loopback, or Unix at path) whose
    accepted connections each run handler(conn, index) in a thread of their own. What a
    handler returns is kept in .results[index], what it raises in .errors[index]."""

    def __init__(self, test, handler, path=None, backlog=1024):
        if path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(path)
            self.address = "unix:" + path
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.bind(("127.0.0.1", 0))
            self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.sock.listen(backlog)
        self.sock.settimeout(0.1)
        self.handler = handler
        self.results, self.errors = {}, {}
        self.conns = []
        self.accepted = 0
        self.cond = threading.Condition()
        self.stopping = False
        self.threads = []
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()
        test.addCleanup(self.stop)

    def _accept_loop(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            conn.settimeout(IO_TIMEOUT)
            with self.cond:
                i = self.accepted
                self.accepted += 1
                self.conns.append(conn)
                self.cond.notify_all()
            t = threading.Thread(target=self._run, args=(conn, i), daemon=True)
            self.threads.append(t)
            t.start()

    def _run(self, conn, i):
        try:
            r = self.handler(conn, i)
            with self.cond:
                self.results[i] = r
                self.cond.notify_all()
        except BaseException as e:  # noqa: B902 - reported by the test
            with self.cond:
                self.errors[i] = e
                self.cond.notify_all()

    def wait_done(self, n=1, timeout=IO_TIMEOUT):
        """Wait until n handlers have returned or raised; fails the test otherwise."""
        d = Deadline(timeout)
        with self.cond:
            while len(self.results) + len(self.errors) < n:
                if d.expired():
                    raise AssertionError("%d of %d target handlers finished within %.0f s "
                                         "(%d accepted); errors: %r"
                                         % (len(self.results) + len(self.errors), n, timeout,
                                            self.accepted, self.errors))
                self.cond.wait(min(d.left(), 0.2))

    def result(self, i=0, timeout=IO_TIMEOUT):
        self.wait_done(i + 1, timeout)
        with self.cond:
            if i in self.errors:
                raise AssertionError("target handler %d failed: %r" % (i, self.errors[i]))
            return self.results.get(i)

    def stop(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass
        self.thread.join(5)
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def spawn_program(test, argv):
    """A peer program (socat, ncat) started in the background in a process group of its own,
    which is killed (by its id) at cleanup: a forking server's children go with it."""
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, start_new_session=True)

    def kill():
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            pass
        p.stderr.close()

    test.addCleanup(kill)
    return p


def run_program(test, argv, stdin_path, timeout=60):
    """Run a peer program to completion with stdin from a file; returns (rc, stdout, stderr)."""
    with open(stdin_path, "rb") as f:
        p = subprocess.Popen(argv, stdin=f, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate(timeout=10)
            test.fail("%s did not finish within %.0f s; %d bytes out; stderr %r"
                      % (" ".join(argv), timeout, len(out), err[-500:]))
    return p.returncode, out, err


def wait_port_listening(port, timeout=10):
    """Poll until something accepts on 127.0.0.1:port (for peers that print no port)."""
    def probe():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False
    return wait_until(probe, timeout, 0.05)


def stalled(sender):
    """Poll until a Sender stops making progress (blocked) or finishes."""
    last, d = -1, Deadline(30)
    while not d.expired() and sender.is_alive() and sender.sent != last:
        last = sender.sent
        time.sleep(0.3)


class RelayCase(SockitTestCase):

    def relay(self, *args, listen="127.0.0.1:0", wait=True):
        """Start `sockit relay LISTEN ARGS...` and wait for its listening line."""
        r = self.start(["relay", listen] + [str(a) for a in args], cls=Server)
        if wait:
            r.await_listening()
        return r

    def echo(self, *args, address="127.0.0.1:0"):
        return self.serve("-m", "echo", *args, address=address)

    def target_of(self, srv):
        return "%s:%d" % (srv.host, srv.port)

    def tls_echo(self):
        """sockit serve tls://127.0.0.1:0 -m echo with its ephemeral certificate; (srv, pin)."""
        srv = self.start(["serve", "tls://127.0.0.1:0", "-m", "echo"], cls=Server)
        pin = srv.wait_line(PIN_RE).group(1)
        srv.await_listening()
        return srv, pin

    def tls_relay(self, *args):
        """A relay terminating TLS with its ephemeral certificate; (relay, pin)."""
        r = self.start(["relay", "tls://127.0.0.1:0"] + [str(a) for a in args], cls=Server)
        pin = r.wait_line(PIN_RE).group(1)
        r.await_listening()
        return r, pin

    def tls_connect(self, srv, pin):
        """A Python TLS client to srv, checked against the pin sockit printed."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        raw = self.connect(srv)
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        self.addCleanup(s.close)
        der = s.getpeercert(binary_form=True)
        got = ":".join("%02X" % b for b in hashlib.sha256(der).digest())
        self.assertEqual("sha256:" + got, pin.upper().replace("SHA256:", "sha256:"),
                         "the relay's certificate is not the one it printed the pin of")
        return s

    def roundtrip(self, srv, payload=b"ping\n"):
        c = self.connect(srv)
        c.sendall(payload)
        self.assertEqual(recv_exact(c, len(payload)), payload)
        return c

    def count_lines(self, proc, regex):
        rx = re.compile(regex)
        return sum(1 for l in proc.lines() if rx.search(l))

    def stop_relay(self, r, expect=0):
        self.stop_relay_sig(r, 15, expect)

    def stop_relay_sig(self, r, sig, expect=0):
        r.send_signal(sig)
        rc = r.wait()
        self.assertEqual(rc, expect, r.describe())


# ------------------------------------------------------------------------------------------
def duplex_target(data, expect):
    """A handler: sends its own data while it reads `expect` bytes; returns (sha, count)."""
    def handler(conn, i):
        res = duplex(conn, data, expect, BULK_TIMEOUT)
        conn.close()
        return res
    return handler


class BulkTests(RelayCase):
    """BIG random bytes each way at once through the relay, compared by SHA-256."""

    def both_ways(self, listen_tls=False, target_path=None, relay_args=()):
        up, down = pattern(BIG, 1), pattern(BIG, 2)
        peer = PeerServer(self, duplex_target(down, BIG), path=target_path)
        if listen_tls:
            r, pin = self.tls_relay(peer.address, *relay_args)
            c = self.tls_connect(r, pin)
        else:
            r = self.relay(peer.address, *relay_args)
            c = self.connect(r)
        got_sha, got = duplex(c, up, BIG, BULK_TIMEOUT)
        self.assertEqual(got, BIG)
        self.assertEqual(got_sha, sha256(down), "the target's bytes came back altered")
        t_sha, t_got = peer.result(0, BULK_TIMEOUT)
        self.assertEqual(t_got, BIG)
        self.assertEqual(t_sha, sha256(up), "the client's bytes reached the target altered")
        self.assertTrue(r.running(), r.describe())

    def test_64mib_both_ways_tcp_to_tcp(self):
        self.both_ways()

    def test_64mib_both_ways_tcp_to_tcp_no_splice(self):
        self.both_ways(relay_args=["--no-splice"])

    def test_64mib_both_ways_tcp_to_unix(self):
        self.both_ways(target_path=os.path.join(self.tmpdir, "target.sock"))

    def test_64mib_echo_tcp_to_unix_serve(self):
        path = os.path.join(self.tmpdir, "echo.sock")
        self.echo(address="unix:" + path)
        r = self.relay("unix:" + path)
        data = pattern(BIG, 3)
        c = self.connect(r)
        got_sha, got = duplex(c, data, BIG, BULK_TIMEOUT)
        self.assertEqual((got_sha, got), (sha256(data), BIG))

    def test_64mib_echo_plain_to_tls_pinned(self):
        srv, pin = self.tls_echo()
        r = self.relay("tls://127.0.0.1:%d" % srv.port, "--pin", pin)
        data = pattern(BIG, 4)
        c = self.connect(r)
        got_sha, got = duplex(c, data, BIG, BULK_TIMEOUT)
        self.assertEqual((got_sha, got), (sha256(data), BIG))

    def test_64mib_both_ways_tls_to_plain(self):
        self.both_ways(listen_tls=True)

    def test_plain_to_tls_insecure_warns_and_works(self):
        srv, _ = self.tls_echo()
        r = self.relay("tls://127.0.0.1:%d" % srv.port, "--insecure")
        self.assertIn("insecure", r.stderr_text().lower(), r.describe())
        self.roundtrip(r, b"insecure but through\n")

    def test_tls_target_with_wrong_pin_is_down(self):
        srv, _ = self.tls_echo()
        r = self.relay("tls://127.0.0.1:%d" % srv.port, "--pin", "sha256:" + "00" * 32)
        c = self.connect(r)
        _, how = recv_eof_or_reset(c)
        self.assertEqual(how, "reset", "a client whose every target failed is reset")
        r.wait_line(r"target tls://127\.0\.0\.1:%d is down \(TLS handshake failed" % srv.port)


# ------------------------------------------------------------------------------------------
class PeerProgramTests(RelayCase):
    """socat and ncat as clients and as targets."""

    SIZE = 4 * MIB

    def data_file(self):
        data = pattern(self.SIZE, 5)
        path = os.path.join(self.tmpdir, "data.bin")
        with open(path, "wb") as f:
            f.write(data)
        return data, path

    def test_socat_client(self):
        socat = self.require_program("socat")
        srv = self.echo()
        r = self.relay(self.target_of(srv))
        data, path = self.data_file()
        rc, out, err = run_program(self, [socat, "-t", "30", "-", "TCP:127.0.0.1:%d" % r.port],
                                   path)
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(out), len(data))
        self.assertEqual(sha256(out), sha256(data))

    def test_ncat_client(self):
        ncat = self.require_program("ncat")
        srv = self.echo()
        r = self.relay(self.target_of(srv))
        data, path = self.data_file()
        rc, out, err = run_program(self, [ncat, "127.0.0.1", str(r.port)], path)
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(out), len(data))
        self.assertEqual(sha256(out), sha256(data))

    def through_program_target(self, argv, port, rounds=None):
        """Two clients in turn (the target forks or keeps listening). Each sends SIZE bytes,
        then SHUT_WR, and reads until EOF; or, with rounds, sends 32 KiB and reads it back
        that many times: `ncat -l -k --sh-exec cat` deadlocks on a larger echo, and drops the
        child's output on the client's FIN, with or without a relay in between."""
        spawn_program(self, argv)
        self.assertTrue(wait_port_listening(port), "%s is not listening" % argv[0])
        r = self.relay("127.0.0.1:%d" % port)
        data = pattern(self.SIZE, 6)
        for _ in range(2):
            c = self.connect(r)
            if rounds is None:
                got_sha, got = duplex(c, data, None, 60, shutdown=True)
                self.assertEqual((got, got_sha), (len(data), sha256(data)))
            else:
                for k in range(rounds):
                    piece = data[k * 32768: (k + 1) * 32768]
                    c.sendall(piece)
                    self.assertEqual(recv_exact(c, len(piece)), piece)
            c.close()

    def test_socat_target(self):
        socat = self.require_program("socat")
        port = free_tcp_port()
        self.through_program_target(
            [socat, "TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork" % port, "EXEC:cat"], port)

    def test_ncat_target(self):
        ncat = self.require_program("ncat")
        port = free_tcp_port()
        self.through_program_target([ncat, "-l", "-k", "127.0.0.1", str(port), "--sh-exec",
                                     "cat"], port, rounds=64)


# ------------------------------------------------------------------------------------------
class HalfCloseTests(RelayCase):

    def _client_fin_while_target_keeps_sending(self, *flags):
        """The client sends, then SHUT_WR; the target sees EOF after exactly the client's
        bytes, and only then sends its tail: the client gets all of it after its own FIN."""
        up = pattern(2 * MIB, 7)
        head, tail = pattern(3 * MIB, 8), pattern(1 * MIB, 9)

        def handler(conn, i):
            s = Sender(conn, head, shutdown=False)
            s.start()
            got = recv_until_eof(conn)  # the client's FIN, carried
            if s.finish():
                raise s.error
            conn.sendall(tail)
            conn.shutdown(socket.SHUT_WR)
            return got

        peer = PeerServer(self, handler)
        r = self.relay(peer.address, "-v", *flags)
        c = self.connect(r)
        c.sendall(up)
        c.shutdown(socket.SHUT_WR)
        back = recv_until_eof(c)
        self.assertEqual(len(back), len(head) + len(tail))
        self.assertEqual(sha256(back), sha256(head + tail))
        self.assertEqual(sha256(peer.result()), sha256(up))
        r.wait_line(r": FIN from the client$")
        r.wait_line(r": FIN from the target$")

    def _target_fin_while_client_keeps_sending(self, *flags):
        """The target sends, then SHUT_WR; the client sees EOF, and only then sends its
        tail: the target still receives everything the client sent."""
        down = pattern(2 * MIB, 10)
        head, tail = pattern(3 * MIB, 11), pattern(1 * MIB, 12)

        def handler(conn, i):
            conn.sendall(down)
            conn.shutdown(socket.SHUT_WR)
            return recv_until_eof(conn)

        peer = PeerServer(self, handler)
        r = self.relay(peer.address, "-v", *flags)
        c = self.connect(r)
        s = Sender(c, head, shutdown=False)
        s.start()
        got = recv_until_eof(c)
        self.assertIsNone(s.finish())
        self.assertEqual(sha256(got), sha256(down))
        c.sendall(tail)
        c.shutdown(socket.SHUT_WR)
        self.assertEqual(sha256(peer.result()), sha256(head + tail))
        self.assertEqual(recv_until_eof(c), b"")

    def test_client_fin_while_target_keeps_sending(self):
        self._client_fin_while_target_keeps_sending()

    def test_client_fin_while_target_keeps_sending_no_splice(self):
        self._client_fin_while_target_keeps_sending("--no-splice")

    def test_target_fin_while_client_keeps_sending(self):
        self._target_fin_while_client_keeps_sending()

    def test_target_fin_while_client_keeps_sending_no_splice(self):
        self._target_fin_while_client_keeps_sending("--no-splice")


# ------------------------------------------------------------------------------------------
@unittest.skipUnless(tlsutil.openssl_available(), "the openssl command is needed")
class TlsCloseTests(RelayCase):
    """close_notify maps to FIN and FIN to close_notify, on either side of the relay; the
    tls:// target is verified with --ca against a certificate made by tlsutil."""

    @classmethod
    def setUpClass(cls):
        cls._pki_dir = tempfile.mkdtemp(prefix="skt-pki-", dir="/tmp")
        cls.pki = tlsutil.Pki(cls._pki_dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls._pki_dir, ignore_errors=True)

    def unwrap(self, t, r):
        """Send close_notify and wait for the relay's (a bare TCP end would raise)."""
        try:
            t.unwrap()
        except (TimeoutError, socket.timeout):
            self.fail("no close_notify back within %.0f s: the relay did not carry the "
                      "client's close_notify to the target as a FIN (or the target's FIN "
                      "back)\n%s" % (CLOSE_TIMEOUT, "\n".join(
                          l for l in r.describe().splitlines()
                          if not re.match(r"\s*\| (recv|send) fd", l))))

    def test_close_notify_and_fin_to_a_tls_target(self):
        """Client FIN -> close_notify to the target (not a bare TCP end); the target then
        still sends, and its close_notify becomes the client's EOF."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.pki.server, self.pki.server_key)
        up = pattern(512 * 1024, 17)
        after = b"sent after your close_notify\n"

        def handler(conn, i):
            t = ctx.wrap_socket(conn, server_side=True, suppress_ragged_eofs=False)
            got = bytearray()
            while True:
                b = t.recv(65536)  # b"" only on close_notify: a bare EOF raises SSLEOFError
                if not b:
                    break
                got += b
            t.sendall(after)
            t.unwrap()
            conn.close()
            return bytes(got)

        peer = PeerServer(self, handler)
        target = "tls://localhost:%s" % peer.address.rsplit(":", 1)[1]
        r = self.relay(target, "--ca", self.pki.ca, "-v")
        c = self.connect(r, timeout=CLOSE_TIMEOUT)
        c.sendall(up)
        c.shutdown(socket.SHUT_WR)
        self.assertEqual(recv_until_eof(c), after)
        self.assertEqual(sha256(peer.result(0, CLOSE_TIMEOUT + 2)), sha256(up))
        r.wait_line(r": closed; %d bytes to %s, %d bytes back" % (len(up), re.escape(target),
                                                                   len(after)))

    def test_client_close_notify_with_its_first_bytes_becomes_fin(self):
        """A TLS client that sends a few bytes and its close_notify at once, right after the
        handshake (before its pair is joined): the target still gets the bytes, then EOF."""
        def handler(conn, i):
            got = recv_until_eof(conn, CLOSE_TIMEOUT)
            conn.close()
            return got

        peer = PeerServer(self, handler)
        r = self.start(["relay", "tls://127.0.0.1:0", peer.address, "--cert", self.pki.server,
                        "--key", self.pki.server_key, "-v"], cls=Server)
        r.await_listening()
        ctx = ssl.create_default_context(cafile=self.pki.ca)
        t = ctx.wrap_socket(self.connect(r, timeout=CLOSE_TIMEOUT), server_hostname="localhost",
                            suppress_ragged_eofs=False)
        t.sendall(b"short and final\n")
        self.unwrap(t, r)
        self.assertEqual(peer.result(0, CLOSE_TIMEOUT + 2), b"short and final\n")
        r.wait_line(r": FIN from the client$")

    def test_tls_target_greeting_and_close_notify_at_once(self):
        """A TLS target that sends its greeting and close_notify right after the handshake
        (sockit serve tls:// in greet mode): the client gets the greeting, then EOF."""
        srv = self.serve("--message", "tls greeting", "--cert", self.pki.server, "--key",
                         self.pki.server_key, address="tls://127.0.0.1:0")
        r = self.relay("tls://localhost:%d" % srv.port, "--ca", self.pki.ca)
        for _ in range(5):
            c = self.connect(r, timeout=CLOSE_TIMEOUT)
            self.assertEqual(recv_until_eof(c), b"tls greeting\n")
            c.close()

    def test_client_close_notify_becomes_fin_and_back(self):
        """The TLS client's close_notify becomes a FIN to the target; the target's FIN
        becomes a close_notify to the client (its unwrap() completes)."""
        up = pattern(512 * 1024, 18)

        def handler(conn, i):
            got = recv_until_eof(conn, CLOSE_TIMEOUT)
            conn.close()
            return got

        peer = PeerServer(self, handler)
        r = self.start(["relay", "tls://127.0.0.1:0", peer.address, "--cert", self.pki.server,
                        "--key", self.pki.server_key, "-v"], cls=Server)
        r.await_listening()
        ctx = ssl.create_default_context(cafile=self.pki.ca)
        raw = self.connect(r, timeout=CLOSE_TIMEOUT)
        t = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
        t.sendall(up)
        self.unwrap(t, r)
        self.assertEqual(sha256(peer.result(0, CLOSE_TIMEOUT + 2)), sha256(up))


# ------------------------------------------------------------------------------------------
class ResetTests(RelayCase):

    def _target_reset_reaches_the_client(self, *flags):
        def handler(conn, i):
            got = recv_exact(conn, 6)
            linger_reset(conn)
            return got

        peer = PeerServer(self, handler)
        r = self.relay(peer.address, "-v", *flags)
        c = self.connect(r)
        c.sendall(b"hello\n")
        self.assertEqual(peer.result(), b"hello\n")
        n, how = recv_eof_or_reset(c)
        self.assertEqual(how, "reset", "the target's reset became a clean EOF\n" + r.describe())
        r.wait_line(r": reset from the target$")

    def _client_reset_reaches_the_target(self, *flags):
        seen = threading.Event()

        def handler(conn, i):
            got = recv_exact(conn, 6)
            seen.set()
            return recv_eof_or_reset(conn)

        peer = PeerServer(self, handler)
        r = self.relay(peer.address, "-v", *flags)
        c = self.connect(r)
        c.sendall(b"hello\n")
        self.assertTrue(seen.wait(IO_TIMEOUT))
        linger_reset(c)
        _, how = peer.result()
        self.assertEqual(how, "reset", "the client's reset became a clean EOF\n" + r.describe())
        r.wait_line(r": reset from the client$")

    def test_target_reset_reaches_the_client(self):
        self._target_reset_reaches_the_client()

    def test_target_reset_reaches_the_client_no_splice(self):
        self._target_reset_reaches_the_client("--no-splice")

    def test_client_reset_reaches_the_target(self):
        self._client_reset_reaches_the_target()

    def test_client_reset_reaches_the_target_no_splice(self):
        self._client_reset_reaches_the_target("--no-splice")


# ------------------------------------------------------------------------------------------
def ident_handler(name, hold=True):
    """A handler that sends its name and (hold) keeps the connection until the client's EOF."""
    def handler(conn, i):
        conn.sendall(name + b"\n")
        if hold:
            recv_until_eof(conn, 60)
        conn.close()
        return name
    return handler


class TargetTests(RelayCase):

    def greeters(self, *names):
        return [self.serve("--message", n) for n in names]

    def test_refused_single_target_resets_client(self):
        port = free_tcp_port()
        r = self.relay("127.0.0.1:%d" % port)
        try:
            c = self.connect(r)
            _, how = recv_eof_or_reset(c)
        except ConnectionResetError:
            how = "reset"  # the relay's reset came before our connect() returned
        self.assertEqual(how, "reset", "the client of a target that is down is reset\n"
                         + r.describe())
        r.wait_line(r"target 127\.0\.0\.1:%d is down" % port)
        self.assertTrue(r.running())

    def blackhole(self):
        """A loopback port that drops SYNs: a listener with backlog 0 whose queue is full (a
        connection nobody accepts). Skips if this kernel answers anyway."""
        bh = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(bh.close)
        bh.bind(("127.0.0.1", 0))
        bh.listen(0)
        port = bh.getsockname()[1]
        filler = self.connect((socket.AF_INET, ("127.0.0.1", port)))
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(("127.0.0.1", port))
            probe.close()
            self.skipTest("a full accept queue does not drop SYNs here; no blackhole")
        except (socket.timeout, TimeoutError):
            probe.close()
        return port, filler

    def test_connect_timeout_to_a_blackhole(self):
        port, _ = self.blackhole()
        r = self.relay("127.0.0.1:%d" % port, "--connect-timeout", "0.5")
        c = self.connect(r)
        _, how = recv_eof_or_reset(c)
        self.assertEqual(how, "reset", r.describe())
        r.wait_line(r"target 127\.0\.0\.1:%d is down \(no answer within --connect-timeout\)"
                    % port)

    def test_blackhole_first_then_fail_over(self):
        port, _ = self.blackhole()
        srv = self.echo()
        r = self.relay("127.0.0.1:%d" % port, self.target_of(srv), "--connect-timeout", "0.5",
                       "--balance", "first")
        self.roundtrip(r, b"served by the second\n")
        self.assertEqual(self.count_lines(r, r"is down"), 1, r.describe())

    def test_unreachable_target_in_a_network_namespace(self):
        """In a network namespace of its own (`unshare -rn`: loopback down, no route at all)
        the connect fails at once; the target is down and the client (on a Unix socket, which
        the namespace does not hide) is closed."""
        unshare = shutil.which("unshare")
        if not unshare or subprocess.run([unshare, "-rn", "true"], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, timeout=30).returncode:
            self.skipTest("unshare -rn does not work here (no user or network namespaces)")
        path = os.path.join(self.tmpdir, "ns.sock")
        r = self.start(["-rn"] + VALGRIND + [SOCKIT, "relay", "unix:" + path, "127.0.0.1:9"],
                       cls=Server, binary=unshare)
        r.await_listening()
        c = self.connect(r)
        n, _ = recv_eof_or_reset(c)  # a Unix socket has no reset to carry: EOF or ECONNRESET
        self.assertEqual(n, 0)
        r.wait_line(r"target 127\.0\.0\.1:9 is down")

    def test_client_gone_before_its_target_answers(self):
        """A client that closes while its target's connect is still pending (a blackhole,
        --connect-timeout 5): the pair is forgotten, so SIGTERM finds no pair to wait for."""
        port, _ = self.blackhole()
        r = self.relay("127.0.0.1:%d" % port, "--connect-timeout", "5", "-v")
        c = self.connect(r)
        r.wait_line(r": to 127\.0\.0\.1:%d " % port)
        c.close()
        r.send_signal(15)
        self.assertEqual(r.wait(), 0, "a pair whose client left before its target answered "
                         "kept the relay from stopping\n" + r.describe())

    def test_down_target_is_tried_again_after_down_time(self):
        """--balance first with the first target down: the second serves; once the first is
        back and --down-time has passed, the first serves again."""
        port = free_tcp_port()
        b = self.serve("--message", "B")
        r = self.relay("127.0.0.1:%d" % port, self.target_of(b), "--balance", "first",
                       "--down-time", "0.3")
        self.assertEqual(recv_until_eof(self.connect(r)), b"B\n")
        r.wait_line(r"target 127\.0\.0\.1:%d is down" % port)
        a = self.serve("--message", "A", address="127.0.0.1:%d" % port)

        def first_again():
            try:
                return recv_until_eof(self.connect(r)) == b"A\n"
            except OSError:
                return False
        self.assertTrue(wait_until(first_again, 15, 0.1), "the first target was never tried "
                        "again after --down-time\n" + r.describe())
        self.assertTrue(a.running())

    def test_tls_target_that_fails_its_handshake_fails_over_to_the_next(self):
        srv, _ = self.tls_echo()
        plain = self.echo()
        r = self.relay("tls://127.0.0.1:%d" % srv.port, self.target_of(plain), "--pin",
                       "sha256:" + "00" * 32, "--balance", "first")
        for _ in range(3):
            self.roundtrip(r, b"served by the plain one\n").close()
        self.assertEqual(self.count_lines(r, r"is down \(TLS handshake failed"), 1,
                         r.describe())

    def test_missing_unix_target_is_down(self):
        path = os.path.join(self.tmpdir, "nobody.sock")
        r = self.relay("unix:" + path)
        try:
            _, how = recv_eof_or_reset(self.connect(r))
        except ConnectionResetError:
            how = "reset"  # the relay's reset came before our connect() returned
        self.assertEqual(how, "reset", r.describe())
        r.wait_line(r"target unix:%s is down" % re.escape(path))

    def test_host_name_target_tries_each_address(self):
        """localhost is ::1 and 127.0.0.1 (in some order); the echo server listens on
        127.0.0.1 only: a refused ::1 is the next address, not a target down."""
        srv = self.echo()
        r = self.relay("localhost:%d" % srv.port)
        for _ in range(3):
            self.roundtrip(r, b"via localhost\n").close()
        self.assertEqual(self.count_lines(r, r"is down"), 0, r.describe())

    def test_several_targets_one_down_every_client_served(self):
        down = free_tcp_port()
        a, b = self.greeters("A", "B")
        r = self.relay("127.0.0.1:%d" % down, self.target_of(a), self.target_of(b))
        got = []
        for _ in range(8):
            c = self.connect(r)
            try:
                got.append(recv_until_eof(c))
            except ConnectionResetError:
                self.fail("a client was reset although two targets were up\n" + r.describe())
        self.assertEqual(set(got), {b"A\n", b"B\n"}, got)
        self.assertEqual(self.count_lines(r, r"target 127\.0\.0\.1:%d is down" % down), 1,
                         "the down target must be logged exactly once\n" + r.describe())

    def test_roundrobin_alternates(self):
        a, b = self.greeters("A", "B")
        r = self.relay(self.target_of(a), self.target_of(b), "--balance", "roundrobin")
        got = [recv_until_eof(self.connect(r)) for _ in range(10)]
        self.assertEqual(got.count(b"A\n"), 5, got)
        self.assertEqual(got.count(b"B\n"), 5, got)
        for x, y in zip(got, got[1:]):
            self.assertNotEqual(x, y, "roundrobin did not alternate: %r" % got)

    def test_roundrobin_is_the_default(self):
        a, b = self.greeters("A", "B")
        r = self.relay(self.target_of(a), self.target_of(b))
        got = [recv_until_eof(self.connect(r)) for _ in range(4)]
        self.assertEqual(sorted(got), [b"A\n", b"A\n", b"B\n", b"B\n"], got)
        for x, y in zip(got, got[1:]):
            self.assertNotEqual(x, y, got)

    def test_leastconn_prefers_fewer_open_pairs(self):
        pa = PeerServer(self, ident_handler(b"A"))
        pb = PeerServer(self, ident_handler(b"B"))
        r = self.relay(pa.address, pb.address, "--balance", "leastconn", "-v")
        clients = []
        for _ in range(4):
            c = self.connect(r)
            clients.append((c, LineReader(c).readline()))
        names = [n for _, n in clients]
        self.assertEqual(sorted(names), [b"A\n", b"A\n", b"B\n", b"B\n"], names)
        # Close both pairs of A and wait until the relay has closed them: A 0 open, B 2.
        for c, n in clients:
            if n == b"A\n":
                c.shutdown(socket.SHUT_WR)
                recv_until_eof(c)
                c.close()
        self.assertTrue(wait_until(lambda: self.count_lines(r, r": closed; ") >= 2, 10),
                        r.describe())
        # Leastconn: both new clients go to A (0, then 1 open, against B's 2).
        later = [LineReader(self.connect(r)).readline() for _ in range(2)]
        self.assertEqual(later, [b"A\n", b"A\n"], "leastconn did not prefer the target with "
                         "fewer open pairs\n" + r.describe())

    def test_first_uses_the_first_while_it_is_up(self):
        a, b = self.greeters("A", "B")
        r = self.relay(self.target_of(a), self.target_of(b), "--balance", "first")
        got = [recv_until_eof(self.connect(r)) for _ in range(6)]
        self.assertEqual(got, [b"A\n"] * 6)
        a.send_signal(15)
        a.wait()
        got = [recv_until_eof(self.connect(r)) for _ in range(3)]
        self.assertEqual(got, [b"B\n"] * 3, "with the first target gone, the second serves")
        r.wait_line(r"target %s is down" % re.escape(self.target_of(a)))


# ------------------------------------------------------------------------------------------
class SlowReaderTests(RelayCase):
    """A side that does not read stops the other from being read: the relay's memory stays
    bounded while the sender is blocked."""

    def check_bounded(self, r, rss0, sender, total):
        stalled(sender)
        rss = vm_rss_kib(r.pid)
        self.assertTrue(sender.is_alive() and sender.sent < total,
                        "the sender was never blocked: %d of %d bytes taken" % (sender.sent,
                                                                                total))
        self.assertLess(rss - rss0, RSS_SLACK_KIB, "the relay grew by %d KiB with %d bytes "
                        "accepted from the sender\n%s" % (rss - rss0, sender.sent, r.describe()))

    def client_sends_target_never_reads(self, *relay_args):
        total = SLOW_MIB * MIB
        data = pattern(total, 13)
        go = threading.Event()

        def handler(conn, i):
            if not go.wait(120):
                raise AssertionError("never released")
            return recv_until_eof(conn, 120)

        peer = PeerServer(self, handler)
        r = self.relay(peer.address, *relay_args)
        rss0 = vm_rss_kib(r.pid)
        c = self.connect(r)
        s = Sender(c, data, shutdown=True)
        s.start()
        self.check_bounded(r, rss0, s, total)
        go.set()
        self.assertIsNone(s.finish(120))
        self.assertEqual(sha256(peer.result(0, 120)), sha256(data))

    def target_sends_client_never_reads(self, *relay_args):
        total = SLOW_MIB * MIB
        data = pattern(total, 14)
        senders = []

        def handler(conn, i):
            s = Sender(conn, data, shutdown=True)
            senders.append(s)
            s.start()
            err = s.finish(120)
            if err:
                raise err
            return recv_until_eof(conn, 120)

        peer = PeerServer(self, handler)
        r = self.relay(peer.address, *relay_args)
        rss0 = vm_rss_kib(r.pid)
        c = self.connect(r, rcvbuf=64 * 1024)
        self.assertTrue(wait_until(lambda: senders, 10))
        self.check_bounded(r, rss0, senders[0], total)
        got = recv_until_eof(c, 120)
        self.assertEqual(sha256(got), sha256(data))
        c.close()
        peer.result(0, 60)

    def test_target_never_reads_relay_memory_bounded(self):
        self.client_sends_target_never_reads()

    def test_target_never_reads_relay_memory_bounded_no_splice(self):
        self.client_sends_target_never_reads("--no-splice")

    def test_client_never_reads_relay_memory_bounded(self):
        self.target_sends_client_never_reads()

    def test_client_never_reads_relay_memory_bounded_no_splice(self):
        self.target_sends_client_never_reads("--no-splice")


# ------------------------------------------------------------------------------------------
class LoadTests(RelayCase):

    def test_1000_concurrent_pairs(self):
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft < 3 * PAIRS + 100:
            self.skipTest("RLIMIT_NOFILE %d is too low for %d pairs" % (soft, PAIRS))
        srv = self.echo()
        r = self.relay(self.target_of(srv))
        fds0 = fd_count(r.pid)
        clients = []
        for i in range(PAIRS):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            clients.append(c)
            c.settimeout(IO_TIMEOUT)
            c.connect(("127.0.0.1", r.port))
        self.addCleanup(lambda: [c.close() for c in clients])
        for i, c in enumerate(clients):
            c.sendall(b"line %d\n" % i)
        for i, c in enumerate(clients):
            self.assertEqual(LineReader(c).readline(), b"line %d\n" % i)
        # All of them open at once: the relay holds a client and a target socket for each.
        self.assertGreaterEqual(fd_count(r.pid), fds0 + 2 * PAIRS, r.describe())
        for c in clients:
            c.close()
        self.assertTrue(wait_until(lambda: fd_count(r.pid) <= fds0, 30),
                        "the relay still holds %d descriptors (%d before)"
                        % (fd_count(r.pid), fds0))
        self.roundtrip(r, b"after the crowd\n").close()
        self.stop_relay(r)


    def test_20_bulk_pairs_at_once(self):
        """20 clients at once, each 2 MiB both ways through the relay to one echo target:
        every one gets exactly its own bytes back."""
        n, size = 20, (512 * 1024 if VALGRIND_ON else 2 * MIB)
        srv = self.echo()
        r = self.relay(self.target_of(srv))
        datas = [pattern(size, 100 + i) for i in range(n)]
        results = [None] * n

        def client(i):
            c = socket.create_connection(("127.0.0.1", r.port), timeout=IO_TIMEOUT)
            try:
                results[i] = duplex(c, datas[i], None, BULK_TIMEOUT, shutdown=True)
            except BaseException as e:  # noqa: B902 - reported below
                results[i] = e
            finally:
                c.close()

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        d = Deadline(BULK_TIMEOUT + 10)
        for t in threads:
            t.join(d.left())
        self.assertFalse(any(t.is_alive() for t in threads), "clients still running")
        for i in range(n):
            self.assertEqual(results[i], (sha256(datas[i]), size), "client %d" % i)


# ------------------------------------------------------------------------------------------
class SignalTests(RelayCase):

    def refused(self, r):
        def check():
            try:
                s = socket.create_connection(("127.0.0.1", r.port), timeout=2)
            except ConnectionRefusedError:
                return True
            except OSError:
                return False
            s.close()
            return False
        return wait_until(check, 10, 0.05)

    def test_sigterm_during_transfer_delivers_what_was_acknowledged(self):
        """SIGTERM while a client streams to a target: the relay stops accepting, the open
        pair goes on (every byte whose send() returned before the signal, and after it,
        reaches the target), and the relay exits 0 once the pair has ended."""
        total_cap = 512 * MIB
        block = os.urandom(MIB)
        state = {"sent": 0, "stop": False, "error": None}
        h_sent = hashlib.sha256()
        received = {"n": 0}

        def handler(conn, i):
            h = hashlib.sha256()
            while True:
                b = conn.recv(1 << 20)
                if not b:
                    break
                h.update(b)
                received["n"] += len(b)
            conn.close()
            return h.hexdigest(), received["n"]

        peer = PeerServer(self, handler)
        r = self.relay(peer.address)
        c = self.connect(r)

        def send():
            try:
                k = 0
                while not state["stop"] and state["sent"] < total_cap:
                    i = (k * 7919) % MIB
                    chunk = block[i:] + block[:i]
                    c.sendall(chunk)
                    h_sent.update(chunk)
                    state["sent"] += len(chunk)
                    k += 1
                c.shutdown(socket.SHUT_WR)
            except Exception as e:  # noqa: B902 - reported below
                state["error"] = e

        t = threading.Thread(target=send, daemon=True)
        t.start()
        self.assertTrue(wait_until(lambda: received["n"] >= 4 * MIB, 30), "no transfer")
        before = state["sent"]  # every one of these bytes was taken by send() already
        r.send_signal(15)
        self.assertTrue(self.refused(r), "the relay still accepts after SIGTERM\n"
                        + r.describe())
        self.assertTrue(r.running(), "the relay exited with a pair open\n" + r.describe())
        # The pair goes on after the signal.
        self.assertTrue(wait_until(lambda: state["sent"] >= before + 4 * MIB, 30),
                        "the transfer stopped at the signal")
        state["stop"] = True
        t.join(60)
        self.assertFalse(t.is_alive())
        self.assertIsNone(state["error"])
        sha, n = peer.result(0, 60)
        self.assertGreaterEqual(n, before)
        self.assertEqual(n, state["sent"], "bytes were lost in the drain")
        self.assertEqual(sha, h_sent.hexdigest())
        self.assertEqual(recv_until_eof(c), b"")
        self.assertEqual(r.wait(), 0, r.describe())

    def test_drain_timeout_idle_pair_exits_0(self):
        """An idle pair that never ends is cut off after --drain-timeout; nothing was left
        undelivered, so the exit status is 0 (see relay --help)."""
        peer = PeerServer(self, ident_handler(b"T"))
        r = self.relay(peer.address, "--drain-timeout", "0.5")
        c = self.connect(r)
        self.assertEqual(LineReader(c).readline(), b"T\n")
        r.send_signal(15)
        self.assertEqual(r.wait(), 0, r.describe())
        self.assertIn("--drain-timeout", r.stderr_text())
        recv_eof_or_reset(c)  # closed, one way or the other

    def test_drain_timeout_with_undelivered_data_exits_1(self):
        """A pair whose target never reads, with the relay's buffers full, is cut off after
        --drain-timeout with data still to deliver: exit status 1 (see relay --help)."""
        go = threading.Event()

        def handler(conn, i):
            go.wait(60)
            return None

        peer = PeerServer(self, handler)
        r = self.relay(peer.address, "--drain-timeout", "0.5")
        c = self.connect(r)
        s = Sender(c, pattern(SLOW_MIB * MIB, 15), shutdown=False)
        s.start()
        stalled(s)
        self.assertTrue(s.is_alive(), "the sender was never blocked")
        r.send_signal(15)
        self.assertEqual(r.wait(), 1, r.describe())
        self.assertIn("undelivered", r.stderr_text())
        go.set()
        c.close()
        s.finish()

    def test_sigint_with_no_pairs_exits_0(self):
        srv = self.echo()
        r = self.relay(self.target_of(srv))
        self.roundtrip(r).close()
        self.stop_relay_sig(r, 2)

    def test_second_signal_exits_at_once(self):
        """With a pair open (so the first signal waits for it, up to 30 s), a second signal
        ends the relay at once."""
        peer = PeerServer(self, ident_handler(b"T"))
        r = self.relay(peer.address)
        c = self.connect(r)
        self.assertEqual(LineReader(c).readline(), b"T\n")
        r.send_signal(15)
        self.assertTrue(self.refused(r), r.describe())
        self.assertTrue(r.running(), "the relay did not wait for its open pair")
        r.send_signal(15)
        rc = r.wait()
        self.assertGreaterEqual(rc, 0, "killed by the signal instead of exiting\n"
                                + r.describe())

    def test_sigterm_with_no_pairs_exits_0(self):
        srv = self.echo()
        r = self.relay(self.target_of(srv))
        self.roundtrip(r).close()
        self.stop_relay(r, 0)


# ------------------------------------------------------------------------------------------
class PathTests(RelayCase):
    """Which byte path ran, as -v says: splice between plain sockets, copy otherwise."""

    N = 100000

    def run_pair(self, r, target, tls_pin=None):
        data = pattern(self.N, 16)
        c = self.tls_connect(r, tls_pin) if tls_pin else self.connect(r)
        if tls_pin:
            c.sendall(data)
            self.assertEqual(recv_exact(c, self.N), data)
            c.close()
        else:
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)
            self.assertEqual(recv_until_eof(c), data)
        closed = r.wait_line(r": closed; (\d+) bytes to (\S+), (\d+) bytes back \((\w+)\)$")
        joined = r.wait_line(r": joined to (\S+) \((\w+)\)$")
        self.assertEqual(joined.group(1), target)
        self.assertEqual(closed.group(2), target)
        if not tls_pin:
            self.assertEqual(closed.group(1), str(self.N))
            self.assertEqual(closed.group(3), str(self.N))
        return joined.group(2), closed.group(4)

    def test_plain_tcp_to_tcp_splices(self):
        srv = self.echo()
        r = self.relay(self.target_of(srv), "-v")
        self.assertEqual(self.run_pair(r, self.target_of(srv)), ("splice", "spliced"))

    def test_plain_tcp_to_unix_splices(self):
        path = os.path.join(self.tmpdir, "e.sock")
        self.echo(address="unix:" + path)
        r = self.relay("unix:" + path, "-v")
        self.assertEqual(self.run_pair(r, "unix:" + path), ("splice", "spliced"))

    def test_no_splice_copies(self):
        srv = self.echo()
        r = self.relay(self.target_of(srv), "-v", "--no-splice")
        self.assertEqual(self.run_pair(r, self.target_of(srv)), ("copy", "copied"))

    def test_tls_target_copies(self):
        srv, pin = self.tls_echo()
        t = "tls://127.0.0.1:%d" % srv.port
        r = self.relay(t, "--pin", pin, "-v")
        self.assertEqual(self.run_pair(r, t), ("copy", "copied"))

    def test_tls_listener_copies(self):
        srv = self.echo()
        r, pin = self.tls_relay(self.target_of(srv), "-v")
        self.assertEqual(self.run_pair(r, self.target_of(srv), tls_pin=pin), ("copy", "copied"))


# ------------------------------------------------------------------------------------------
class AdmissionTests(RelayCase):

    def test_max_clients_1_refuses_the_second(self):
        srv = self.echo()
        r = self.relay(self.target_of(srv), "--max-clients", "1")
        c1 = self.roundtrip(r, b"first\n")
        c2 = self.connect(r)
        try:
            c2.sendall(b"second\n")
        except OSError:
            pass
        n, how = recv_eof_or_reset(c2)
        self.assertEqual(n, 0, "the second client got bytes")
        # The first is still served; once it is gone, a new client is admitted.
        c1.sendall(b"again\n")
        self.assertEqual(recv_exact(c1, 6), b"again\n")
        c1.close()

        def admitted():
            s = socket.create_connection(("127.0.0.1", r.port), timeout=5)
            try:
                s.sendall(b"third\n")
                return recv_exact(s, 6, 5) == b"third\n"
            except (OSError, AssertionError):
                return False
            finally:
                s.close()
        self.assertTrue(wait_until(admitted, 10, 0.1), r.describe())

    def test_max_per_ip_1_refuses_the_second_from_that_address(self):
        srv = self.echo()
        r = self.relay(self.target_of(srv), "--max-per-ip", "1")
        c1 = self.roundtrip(r, b"first\n")
        n, _ = recv_eof_or_reset(self.connect(r))
        self.assertEqual(n, 0, "a second client from 127.0.0.1 got bytes")
        c1.sendall(b"still\n")
        self.assertEqual(recv_exact(c1, 6), b"still\n")

    def idle_but_one_side_talks(self, download):
        """--idle-timeout counts a pair as silent only when neither side sends: a pair whose
        one side sends a line every 0.1 s, for 1.5 s, while the other only reads, is not
        closed (the idle limit is five such gaps)."""
        idle = "1.0" if VALGRIND_ON else "0.5"
        lines = [b"tick %02d\n" % k for k in range(15)]

        def handler(conn, i):
            if download:
                for ln in lines:
                    conn.sendall(ln)
                    time.sleep(0.1)
                conn.shutdown(socket.SHUT_WR)
                return recv_until_eof(conn)
            got = recv_until_eof(conn)
            conn.close()
            return got

        peer = PeerServer(self, handler)
        r = self.relay(peer.address, "--idle-timeout", idle, "-v")
        c = self.connect(r)
        if download:
            try:
                got = recv_until_eof(c)
            except ConnectionResetError:
                got = None
            self.assertEqual(got, b"".join(lines), "a pair whose target was talking was "
                             "closed as idle\n" + r.describe())
            c.close()
        else:
            try:
                for ln in lines:
                    c.sendall(ln)
                    time.sleep(0.1)
                c.shutdown(socket.SHUT_WR)
            except OSError as e:
                self.fail("a pair whose client was talking was closed as idle (%r)\n%s"
                          % (e, r.describe()))
            self.assertEqual(peer.result(), b"".join(lines), r.describe())
            self.assertEqual(recv_until_eof(c), b"")
        self.assertEqual(self.count_lines(r, r"idle longer than"), 0, r.describe())

    def test_idle_timeout_spares_a_download(self):
        self.idle_but_one_side_talks(download=True)

    def test_idle_timeout_spares_an_upload(self):
        self.idle_but_one_side_talks(download=False)

    def test_deny_refuses(self):
        peer = PeerServer(self, ident_handler(b"T", hold=False))
        r = self.relay(peer.address, "--deny", "127.0.0.0/8")
        c = self.connect(r)
        n, how = recv_eof_or_reset(c)
        self.assertEqual(n, 0)
        self.assertEqual(peer.accepted, 0, "a denied client was joined to the target")

    def test_allow_other_range_refuses(self):
        peer = PeerServer(self, ident_handler(b"T", hold=False))
        r = self.relay(peer.address, "--allow", "10.0.0.0/8")
        n, how = recv_eof_or_reset(self.connect(r))
        self.assertEqual(n, 0)
        self.assertEqual(peer.accepted, 0)

    def test_idle_timeout_closes_an_idle_pair(self):
        srv = self.echo()
        r = self.relay(self.target_of(srv), "--idle-timeout", "0.3", "-v")
        c = self.roundtrip(r, b"then silence\n")
        n, how = recv_eof_or_reset(c, 20)
        self.assertEqual(n, 0)
        r.wait_line(r"idle longer than --idle-timeout")
        self.roundtrip(r, b"a new pair is fine\n")


# ------------------------------------------------------------------------------------------
class UsageTests(RelayCase):

    def usage(self, args, *needles):
        res = self.run_sockit(["relay"] + args)
        self.assertExit(res, 2, "relay %s:" % " ".join(args))
        self.assertOneErrorLine(res.stderr, *needles)

    def test_no_target(self):
        self.usage(["127.0.0.1:0"], "TARGET")

    def test_no_arguments(self):
        self.usage([], "LISTEN", "TARGET")

    def test_stream_listen_with_udp_target(self):
        self.usage(["127.0.0.1:0", "udp://127.0.0.1:9"], "stream", "datagram")

    def test_cert_without_tls_listen(self):
        self.usage(["127.0.0.1:0", "127.0.0.1:9", "--cert", "/nonexistent.pem"], "--cert",
                   "tls://")

    def test_pin_without_tls_target(self):
        self.usage(["127.0.0.1:0", "127.0.0.1:9", "--pin", "sha256:" + "00" * 32], "--pin",
                   "tls://")

    def test_balance_bogus(self):
        self.usage(["127.0.0.1:0", "127.0.0.1:9", "--balance", "bogus"], "--balance", "bogus")

    def test_target_port_0(self):
        self.usage(["127.0.0.1:0", "127.0.0.1:0"], "port 0")

    def test_too_many_targets(self):
        self.usage(["127.0.0.1:0"] + ["127.0.0.1:%d" % (9000 + i) for i in range(65)],
                   "too many targets")

    def test_unix_listen_with_unix_dgram_target(self):
        self.usage(["unix:/tmp/skt-nothing.sock", "unix-dgram:/tmp/skt-nothing-d.sock"],
                   "stream", "datagram")

    def test_help_exits_0(self):
        res = self.run_sockit(["relay", "--help"])
        self.assertExit(res, 0)
        self.assertIn(b"usage: sockit relay LISTEN TARGET", res.stdout)


# ------------------------------------------------------------------------------------------
class ListeningLineTests(RelayCase):

    def check_once(self, *args):
        srv = self.echo()
        r = self.relay(self.target_of(srv), *args)
        self.assertRegex(r.address, r"^127\.0\.0\.1:\d+$")
        self.roundtrip(r).close()
        self.stop_relay(r)
        self.assertEqual(self.count_lines(r, r"^listening on "), 1, r.describe())

    def test_listening_line_exactly_once(self):
        self.check_once()

    def test_listening_line_exactly_once_verbose(self):
        self.check_once("-v")

    def test_listening_line_tls(self):
        srv = self.echo()
        r, pin = self.tls_relay(self.target_of(srv))
        self.assertRegex(r.address, r"^tls://127\.0\.0\.1:\d+$")
        self.assertEqual(self.count_lines(r, r"^listening on "), 1, r.describe())

    def test_listening_line_unix(self):
        srv = self.echo()
        path = os.path.join(self.tmpdir, "relay.sock")
        r = self.relay(self.target_of(srv), listen="unix:" + path)
        self.assertEqual(r.address, "unix:" + path)
        self.roundtrip(r, b"over unix\n")

    def test_ipv6_listen_and_target(self):
        if not ipv6_loopback_available():
            self.skipTest("no IPv6 loopback here")
        srv = self.echo(address="[::1]:0")
        r = self.relay("[::1]:%d" % srv.port, listen="[::1]:0")
        self.assertRegex(r.address, r"^\[::1\]:\d+$")
        self.roundtrip(r, b"over ::1 both ways\n")

    def test_unix_listen_socket_file_removed_after_stop(self):
        srv = self.echo()
        path = os.path.join(self.tmpdir, "gone.sock")
        r = self.relay(self.target_of(srv), listen="unix:" + path)
        self.roundtrip(r, b"x\n").close()
        self.stop_relay(r)
        self.assertFalse(os.path.exists(path), "the relay left its socket file behind")

    def test_unix_listen_replaces_a_stale_socket_file(self):
        srv = self.echo()
        path = os.path.join(self.tmpdir, "stale.sock")
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(path)
        stale.close()  # the file stays, nobody listens: what a killed server leaves
        r = self.relay(self.target_of(srv), listen="unix:" + path)
        self.roundtrip(r, b"over the stale path\n")

    def test_quiet_prints_no_listening_line(self):
        srv = self.echo()
        path = os.path.join(self.tmpdir, "quiet.sock")
        r = self.relay(self.target_of(srv), "-q", listen="unix:" + path, wait=False)

        def up():
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(5)
                    s.connect(path)
                    s.sendall(b"quiet\n")
                    return recv_exact(s, 6, 5) == b"quiet\n"
            except (OSError, AssertionError):
                return False
        self.assertTrue(wait_until(up, LISTEN_TIMEOUT, 0.05), r.describe())
        r.send_signal(15)
        self.assertEqual(r.wait(), 0, r.describe())
        self.assertEqual(self.count_lines(r, r"^listening on "), 0, r.describe())

if __name__ == "__main__":
    unittest.main()
