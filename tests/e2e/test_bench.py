"""End-to-end tests of `sockit bench`: that it measures what it says, checks what it gets, and
fails clearly. Speed is never asserted: every run here is short and only its counts and its
honesty are checked (no mismatch against a correct server, mismatches against a corrupting one,
the --rate cap, the time bound)."""

import json
import os
import signal
import socket
import subprocess
import threading
import time

from harness import SockitTestCase

# Long enough for a few round trips, which is all these tests check; under Valgrind (make
# valgrind) a TLS handshake alone can take longer than 0.6 s, so the runs are longer there.
SHORT = (["-t", "3", "--warmup", "1", "-q"] if os.environ.get("SOCKIT_VALGRIND") == "1"
         else ["-t", "0.6", "--warmup", "0.2", "-q"])


class FakeServer:
    """A Python TCP server on 127.0.0.1 running handler(conn) in a thread per client."""

    def __init__(self, test, handler):
        self.sock = test.listener(backlog=64)
        self.port = self.sock.getsockname()[1]
        self.address = "127.0.0.1:%d" % self.port
        self.handler = handler
        self.stop = threading.Event()
        self.conns = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        test.addCleanup(self.close)

    def _accept(self):
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            c.settimeout(5)
            self.handler(c, self.stop)
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.stop.set()
        self.thread.join(5)
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def corrupting_echo(c, stop):
    """Echo, but byte 1000 of every connection's stream comes back inverted."""
    seen = 0
    while not stop.is_set():
        data = bytearray(c.recv(65536))
        if not data:
            return
        if seen <= 1000 < seen + len(data):
            data[1000 - seen] ^= 0xFF
        seen += len(data)
        c.sendall(data)


def silent(c, stop):
    """Accept and never answer."""
    while not stop.is_set():
        try:
            if not c.recv(65536):
                return
        except socket.timeout:
            pass


class BenchTests(SockitTestCase):

    def bench(self, *args, timeout=30):
        return self.run_sockit(["bench"] + [str(a) for a in args], timeout=timeout)

    def bench_json(self, *args, status=0):
        r = self.bench(*args, "--json")
        self.assertExit(r, status)
        try:
            out = json.loads(r.stdout.decode())
        except ValueError as e:
            self.fail("--json printed no single JSON object (%s): %r" % (e, r.stdout[:500]))
        return out

    # -- echo ---------------------------------------------------------------------------

    def test_echo_against_serve_checks_every_byte(self):
        srv = self.serve("--mode", "echo")
        out = self.bench_json(srv.address, "-c", "4", "-d", "4", *SHORT)
        self.assertEqual(out["mode"], "echo")
        self.assertEqual(out["connections"], 4)
        self.assertGreater(out["messages"], 0)
        self.assertEqual(out["mismatches"], 0)
        self.assertEqual(out["errors"], 0)
        self.assertEqual(out["bytes_received"], out["messages"] * 64)
        lat = out["latency_us"]
        self.assertEqual(lat["count"], out["messages"])
        self.assertLessEqual(lat["min"], lat["p50"])
        self.assertLessEqual(lat["p50"], lat["p90"])
        self.assertLessEqual(lat["p90"], lat["p99"])
        self.assertLessEqual(lat["p99"], lat["p99_9"])
        self.assertLessEqual(lat["p99_9"], lat["max"])

    def test_echo_odd_sizes_and_threads(self):
        # 1000-byte messages cross read boundaries anywhere; two threads share nothing.
        srv = self.serve("--mode", "echo")
        out = self.bench_json(srv.address, "-c", "6", "-d", "3", "-s", "1000", "--threads",
                              "2", *SHORT)
        self.assertEqual(out["threads"], 2)
        self.assertGreater(out["messages"], 0)
        self.assertEqual(out["mismatches"], 0)

    def test_echo_over_unix_socket(self):
        path = os.path.join(self.tmpdir, "echo.sock")
        srv = self.serve("--mode", "echo", address="unix:" + path)
        out = self.bench_json("unix:" + path, "-c", "2", "-d", "2", *SHORT)
        self.assertGreater(out["messages"], 0)
        self.assertEqual(out["mismatches"], 0)

    def test_echo_over_tls(self):
        srv = self.serve("--mode", "echo", address="tls://127.0.0.1:0")
        out = self.bench_json(srv.address, "--insecure", "-c", "2", "-d", "2",
                              *SHORT)
        self.assertTrue(out["address"].startswith("tls://"))
        self.assertGreater(out["messages"], 0)
        self.assertEqual(out["mismatches"], 0)
        self.assertEqual(out["errors"], 0)

    def test_echo_table_on_stdout(self):
        srv = self.serve("--mode", "echo")
        r = self.bench(srv.address, "-c", "2", *SHORT)
        self.assertExit(r, 0)
        text = r.stdout.decode()
        for word in ("messages", "latency", "p99.9", "mismatches", "errors"):
            self.assertIn(word, text)

    def test_mismatch_detected(self):
        fake = FakeServer(self, corrupting_echo)
        out = self.bench_json(fake.address, "-c", "3", "-d", "2", *SHORT, status=1)
        # Byte 1000 of each connection's stream is wrong: one bad message per connection.
        self.assertEqual(out["mismatches"], 3)
        self.assertGreater(out["messages"], 0)

    def test_mismatch_message_in_text_mode(self):
        fake = FakeServer(self, corrupting_echo)
        r = self.bench(fake.address, "-c", "1", *SHORT)
        self.assertExit(r, 1)
        self.assertIn(b"did not match", r.stderr)

    def test_rate_caps_messages(self):
        srv = self.serve("--mode", "echo")
        out = self.bench_json(srv.address, "-c", "4", "--rate", "500", "-t", "1", "--warmup",
                              "0.2", "-q")
        self.assertEqual(out["rate"], 500)
        self.assertGreater(out["messages"], 0)
        # The schedule allows 500 a second; a few due at the window's edges may slip in.
        self.assertLessEqual(out["messages"], 500 * out["duration_s"] + 20)
        self.assertEqual(out["mismatches"], 0)

    def test_unanswering_server_is_bounded_in_time(self):
        fake = FakeServer(self, silent)
        start = time.monotonic()
        out = self.bench_json(fake.address, "-c", "2", "-t", "1", "--warmup", "0.2", "-q",
                              status=1)
        self.assertLess(time.monotonic() - start, 10)
        self.assertEqual(out["messages"], 0)

    def test_sigint_ends_early_with_results(self):
        srv = self.serve("--mode", "echo")
        p = self.start(["bench", srv.address, "-c", "2", "-t", "60", "--warmup", "0.2",
                        "--json", "-q"], stdout=subprocess.PIPE)
        time.sleep(1.0)
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=10)
        out = json.loads(p.proc.stdout.read().decode())
        self.assertEqual(rc, 0, p.describe())
        self.assertTrue(out["interrupted"])
        self.assertGreater(out["messages"], 0)

    # -- connect, bulk, idle ------------------------------------------------------------

    def test_connect_against_greet(self):
        srv = self.serve()
        out = self.bench_json(srv.address, "-m", "connect", "-c", "3", *SHORT)
        self.assertEqual(out["mode"], "connect")
        self.assertGreater(out["messages"], 0)
        self.assertEqual(out["errors"], 0)
        # Every connection read the whole greeting.
        self.assertEqual(out["bytes_received"], out["messages"] * len(b"Hi from server\n"))

    def test_bulk_send_to_discard_and_recv_from_source(self):
        srv = self.serve("--mode", "discard")
        out = self.bench_json(srv.address, "-m", "bulk", *SHORT)
        self.assertGreater(out["bytes_sent"], 0)
        self.assertEqual(out["errors"], 0)
        src = self.serve("--mode", "source")
        out = self.bench_json(src.address, "-m", "bulk", "--direction", "recv", *SHORT)
        self.assertGreater(out["bytes_received"], 0)

    def test_idle_holds_connections_and_measures_server(self):
        srv = self.serve("--mode", "echo")
        out = self.bench_json(srv.address, "-m", "idle", "-c", "200", "-t", "0.5",
                              "--server-pid", srv.pid, "-q")
        self.assertEqual(out["connections_open_at_end"], 200)
        self.assertEqual(out["errors"], 0)
        self.assertIn("rss_bytes_per_connection", out["server"])
        self.assertGreater(out["server"]["rss_kib_end"], 0)

    def test_server_pid_reports_cpu(self):
        srv = self.serve("--mode", "echo")
        out = self.bench_json(srv.address, "-c", "2", "--server-pid", srv.pid, *SHORT)
        self.assertEqual(out["server"]["pid"], srv.pid)
        self.assertGreaterEqual(out["server"]["cpu_s"], 0)

    # -- failures -----------------------------------------------------------------------

    def test_no_server_exits_1_with_one_line(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        r = self.bench("127.0.0.1:%d" % port, "-t", "1", "--warmup", "0.2", "-q")
        self.assertExit(r, 1)
        self.assertOneErrorLine(r.stderr, "cannot connect", "127.0.0.1:%d" % port, "refused")

    def test_bad_options_exit_2(self):
        cases = [
            [],
            ["127.0.0.1:9", "-m", "nope"],
            ["127.0.0.1:9", "-c", "0"],
            ["127.0.0.1:9", "-d", "x"],
            ["127.0.0.1:9", "-s", "2G"],
            ["127.0.0.1:9", "-t", "-1"],
            ["127.0.0.1:9", "-t", "0"],
            ["127.0.0.1:9", "--rate", "10", "-m", "connect"],
            ["127.0.0.1:9", "--direction", "up", "-m", "bulk"],
            ["127.0.0.1:9", "--direction", "send"],
            ["127.0.0.1:9", "--threads", "4", "-c", "2"],
            ["127.0.0.1:9", "--no-such-option"],
            ["127.0.0.1:9", "--insecure"],
            ["udp://127.0.0.1:9"],
            ["127.0.0.1:9", "-c"],
            ["127.0.0.1:9", "extra"],
            ["127.0.0.1:0"],
            ["127.0.0.1:70000"],
        ]
        for argv in cases:
            with self.subTest(argv=argv):
                r = self.bench(*argv)
                self.assertExit(r, 2)
                self.assertOneErrorLine(r.stderr, "sockit")

    def test_help(self):
        r = self.bench("--help")
        self.assertExit(r, 0)
        for word in (b"echo", b"connect", b"bulk", b"idle", b"--rate", b"--json"):
            self.assertIn(word, r.stdout)
