"""End-to-end tests of TLS (`sockit serve tls://...`, `sockit connect tls://...`) with peers we
did not write: openssl s_client and s_server, and Python's ssl module. Certificates are made at
test time by tlsutil.Pki (the openssl command) in a temporary directory."""

import hashlib
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest
import warnings

from harness import (GREETING, RUN_TIMEOUT, SOCKIT, Deadline, LineReader, Server,
                     SockitTestCase, read_fd_until, recv_eof_or_reset, sha256, sock_name,
                     wait_until)
import tlsutil
from tlsutil import OpenSSLProcess, Pki, start_s_server

PIN_RE = re.compile(r"--pin (sha256:[0-9A-Fa-f:]+)")


def fingerprint(pem_path):
    """sha256:AB:CD:... of a PEM certificate, computed here (not by sockit)."""
    der = ssl.PEM_cert_to_DER_cert(open(pem_path).read())
    return "sha256:" + ":".join("%02X" % b for b in hashlib.sha256(der).digest())


@unittest.skipUnless(tlsutil.openssl_available(), "the openssl command is needed")
class TlsTests(SockitTestCase):

    @classmethod
    def setUpClass(cls):
        cls._pki_dir = tempfile.mkdtemp(prefix="skt-pki-", dir="/tmp")
        cls.pki = Pki(cls._pki_dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls._pki_dir, ignore_errors=True)

    # -- helpers ------------------------------------------------------------------------------
    def serve_tls(self, *args, cert=None, key=None):
        """sockit serve tls://127.0.0.1:0 with the test CA's localhost certificate (or cert)."""
        cert = cert or self.pki.server
        key = key or (self.pki.server_key if cert == self.pki.server else None)
        extra = ["--cert", cert] + (["--key", key] if key else [])
        return self.serve(*(list(args) + extra), address="tls://127.0.0.1:0")

    def target(self, srv, host="127.0.0.1"):
        return "tls://%s:%d" % (host, srv.port)

    def client_context(self, cafile=None, cert=None, key=None):
        ctx = ssl.create_default_context(cafile=cafile or self.pki.ca)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if cert:
            ctx.load_cert_chain(cert, key)
        return ctx

    def tls_client(self, srv, ctx=None, hostname="localhost"):
        """A Python ssl client, verification on, connected to srv (handshake done)."""
        raw = self.connect(srv)
        s = (ctx or self.client_context()).wrap_socket(raw, server_hostname=hostname)
        self.addCleanup(s.close)
        return s

    def echo_round(self, s, data):
        s.sendall(data)
        got = b""
        d = Deadline(20)
        while len(got) < len(data) and not d.expired():
            b = s.recv(65536)
            if not b:
                break
            got += b
        self.assertEqual(got, data)

    def fails_one_line(self, args, *needles, input=b"hi\n", status=1):
        r = self.run_sockit(args, input=input)
        self.assertExit(r, status)
        self.assertEqual(r.stdout, b"")
        return self.assertOneErrorLine(r.stderr, *needles)

    def python_server(self, behaviour, ctx=None):
        """A Python TCP (or, with ctx, TLS) server for one connection, in a thread; returns
        (port, result dict). behaviour(conn, result) runs after accept (and handshake)."""
        lsock = self.listener()
        lsock.settimeout(20)
        result = {"error": None}
        done = threading.Event()

        def run():
            conn = None
            try:
                conn, _ = lsock.accept()
                conn.settimeout(20)
                if ctx is not None:
                    conn = ctx.wrap_socket(conn, server_side=True)
                behaviour(conn, result)
            except Exception as e:  # reported by the test
                result["error"] = e
            finally:
                done.set()
                if conn is not None:
                    conn.close()

        t = threading.Thread(target=run, daemon=True)
        t.start()
        self.addCleanup(t.join, 5)
        result["done"] = done
        return lsock.getsockname()[1], result

    # -- sockit connect against sockit serve ----------------------------------------------
    def test_echo_hi_with_ca_by_address_and_by_name(self):
        """`echo hi | sockit connect tls://...` prints hi: stdin's EOF is a TLS half-close
        (close_notify), and connect keeps reading until the server closes."""
        srv = self.serve_tls("-m", "echo")
        for host in ("127.0.0.1", "localhost"):
            r = self.run_sockit(["connect", self.target(srv, host), "--ca", self.pki.ca],
                                input=b"hi\n")
            self.assertExit(r, 0, host)
            self.assertEqual(r.stdout, b"hi\n")
            self.assertEqual(r.stderr, b"", "nothing on stderr when all goes well")

    def test_echo_1mib_byte_for_byte(self):
        srv = self.serve_tls("-m", "echo")
        data = os.urandom(1 << 20)
        r = self.run_sockit(["connect", self.target(srv), "--ca", self.pki.ca], input=data,
                            timeout=60)
        self.assertExit(r, 0)
        self.assertEqual(len(r.stdout), len(data))
        self.assertEqual(sha256(r.stdout), sha256(data))

    def test_ephemeral_certificate_and_pin(self):
        """Without --cert, serve makes a certificate and prints the pin before listening."""
        srv = self.start(["serve", "tls://127.0.0.1:0", "-m", "echo"], cls=Server)
        m = srv.wait_line(PIN_RE)
        pin_index = srv.lines().index(m.string)
        self.assertIn("self-signed", m.string)
        srv.await_listening()
        self.assertTrue(srv.lines()[pin_index + 1].startswith("listening on"),
                        "the pin line comes right before the listening line")
        pin = m.group(1)
        r = self.run_sockit(["connect", self.target(srv), "--pin", pin], input=b"pinned\n")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"pinned\n")
        # the same pin without colons, in lower case
        r = self.run_sockit(["connect", self.target(srv), "--pin",
                             "sha256:" + pin[7:].replace(":", "").lower()], input=b"x\n")
        self.assertExit(r, 0)
        # any other certificate is refused
        wrong = "sha256:" + "00" * 32
        self.fails_one_line(["connect", self.target(srv), "--pin", wrong], "pin")
        # without a pin, a self-signed certificate is refused
        self.fails_one_line(["connect", self.target(srv)], "verify failed",
                            ("self-signed", "self signed"))

    def test_listening_line_names_the_scheme(self):
        """Issue 18.10: the line says tls://, so pasting it into connect speaks TLS."""
        srv = self.start(["serve", "tls://127.0.0.1:0", "-m", "echo"], cls=Server)
        pin = srv.wait_line(PIN_RE).group(1)
        srv.await_listening()
        self.assertTrue(srv.address.startswith("tls://127.0.0.1:"), srv.address)
        r = self.run_sockit(["connect", srv.address, "--pin", pin], input=b"pasted\n")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"pasted\n")

    def test_self_signed_refused_unless_pinned_or_insecure(self):
        srv = self.serve_tls("-m", "echo", cert=self.pki.self_signed,
                             key=self.pki.self_signed_key)
        self.fails_one_line(["connect", self.target(srv), "--ca", self.pki.ca], "verify failed",
                            ("self-signed", "self signed"))
        r = self.run_sockit(["connect", self.target(srv), "--pin",
                             fingerprint(self.pki.self_signed)], input=b"pinned\n")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"pinned\n")
        r = self.run_sockit(["connect", self.target(srv), "--insecure"], input=b"anyway\n")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"anyway\n")
        self.assertOneErrorLine(r.stderr, "warning", "insecure")

    def test_expired_refused_unless_pinned_or_insecure(self):
        srv = self.serve_tls("-m", "echo", cert=self.pki.expired, key=self.pki.server_key)
        self.fails_one_line(["connect", self.target(srv), "--ca", self.pki.ca], "expired")
        r = self.run_sockit(["connect", self.target(srv), "--pin",
                             fingerprint(self.pki.expired), "-v"], input=b"old\n")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"old\n")
        # -v says how it was accepted: by its pin, not "verified", and that it expired
        self.assertRegex(r.stderr.decode(),
                         r"server certificate: .*CN=localhost; pinned \(outside its validity "
                         r"dates; valid until 2020-02-01\)")
        r = self.run_sockit(["connect", self.target(srv), "--insecure"], input=b"old\n")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"old\n")

    def test_wrong_host_name_says_which_names(self):
        srv = self.serve_tls("-m", "echo")
        line = self.fails_one_line(["connect", self.target(srv), "--ca", self.pki.ca,
                                    "--sni", "wrong.example"], "is for localhost",
                                   "wrong.example")
        self.assertIn("127.0.0.1", line)
        # Issue 18.9: the fix for a name mismatch is the name, not another CA.
        self.assertIn("--sni NAME", line)
        self.assertNotIn("--ca", line)
        other = self.serve_tls("-m", "echo", cert=self.pki.wrong_name,
                               key=self.pki.wrong_name_key)
        self.fails_one_line(["connect", self.target(other), "--ca", self.pki.ca],
                            "is for other.example", "127.0.0.1")
        self.fails_one_line(["connect", self.target(other, "localhost"), "--ca", self.pki.ca],
                            "is for other.example", "localhost")

    def test_unknown_ca(self):
        srv = self.serve_tls("-m", "echo")
        # a CA file that does not hold the issuer
        self.fails_one_line(["connect", self.target(srv), "--ca", self.pki.client_ca],
                            "verify failed", "issuer")
        # the system store does not know the test CA either
        self.fails_one_line(["connect", self.target(srv)], "verify failed")

    def test_usage_errors_exit_2(self):
        srv = self.serve_tls("-m", "echo")
        for args in (["--insecure", "--pin", fingerprint(self.pki.server)],
                     ["--pin", "sha256:1234"],
                     ["--key", self.pki.client_key]):
            r = self.run_sockit(["connect", self.target(srv)] + args, input=b"")
            self.assertExit(r, 2, " ".join(args))
            self.assertOneErrorLine(r.stderr)
        r = self.run_sockit(["connect", "127.0.0.1:%d" % srv.port, "--ca", self.pki.ca])
        self.assertExit(r, 2, "TLS option without tls://")
        self.assertOneErrorLine(r.stderr, "tls://")
        r = self.run_sockit(["serve", "127.0.0.1:0", "--cert", self.pki.server])
        self.assertExit(r, 2, "serve --cert without tls://")
        self.assertOneErrorLine(r.stderr, "tls://")
        # a missing file is not a usage error: it names the file
        r = self.run_sockit(["serve", "tls://127.0.0.1:0", "--cert", "/nonexistent/x.pem"])
        self.assertExit(r, 1)
        self.assertOneErrorLine(r.stderr, "/nonexistent/x.pem")

    def test_verbose_shows_the_handshake(self):
        srv = self.serve_tls("-m", "echo", "-v")
        r = self.run_sockit(["connect", self.target(srv, "localhost"), "--ca", self.pki.ca,
                             "-v"], input=b"hi\n")
        self.assertExit(r, 0)
        err = r.stderr.decode()
        line = [l for l in err.splitlines() if l.startswith("tls server:")]
        self.assertEqual(len(line), 1, err)
        self.assertRegex(line[0], r"TLSv1\.[23]")
        self.assertRegex(line[0], r"TLS_\w+|ECDHE")       # the cipher
        self.assertIn("CN=localhost", line[0])            # the peer's subject
        self.assertRegex(line[0], r"(?<!not )verified")   # the verification result
        # the server logs the handshake too, with the SNI the client sent
        srv.wait_line(r"tls .*TLSv1\.3.*sni=localhost")

    def test_handshake_timeout_connect(self):
        """A server that accepts and never answers: --timeout bounds the handshake."""
        lsock = self.listener()
        port = lsock.getsockname()[1]
        t0 = time.monotonic()
        line = self.fails_one_line(["connect", "tls://127.0.0.1:%d" % port, "--ca", self.pki.ca,
                                    "--timeout", "1"], input=b"", status=1)
        took = time.monotonic() - t0
        self.assertIn("timed out", line)
        self.assertLess(took, 8)

    def test_plaintext_server_on_a_tls_connect(self):
        def greet(conn, result):
            conn.sendall(GREETING)
            result["received"] = conn.recv(4096)
        port, result = self.python_server(greet)
        line = self.fails_one_line(["connect", "tls://127.0.0.1:%d" % port, "--ca", self.pki.ca],
                                   "TLS handshake failed", input=b"")
        self.assertIn("TLS port", line)

    def test_server_handshake_timeout_and_plaintext_client(self):
        """A silent client is closed after --handshake-timeout; a plaintext client at once;
        a TLS client alongside keeps working throughout."""
        srv = self.serve_tls("-m", "echo", "--handshake-timeout", "1", "-v")
        good = self.tls_client(srv)
        self.echo_round(good, b"before\n")
        silent = self.connect(srv)
        t0 = time.monotonic()
        plain = self.connect(srv)
        plain.sendall(b"hello\r\n")
        recv_eof_or_reset(plain, 5)
        self.echo_round(good, b"between\n")
        recv_eof_or_reset(silent, 8)
        took = time.monotonic() - t0
        self.assertGreater(took, 0.7)
        self.assertLess(took, 6)
        self.echo_round(good, b"after\n")
        self.assertTrue(srv.running())
        srv.wait_line(r"TLS handshake failed")

    def test_chat_announces_only_clients_whose_handshake_succeeded(self):
        """Issue 10.4: a client is started (chat announces it) once its handshake is done. One
        that fails it was never in the room: no join line, and no leave line."""
        srv = self.serve_tls("-m", "chat", "-v")
        a = self.tls_client(srv)
        ra = LineReader(a)
        plain = self.connect(srv)  # not TLS at all
        plain.sendall(b"hello, chat\r\n")
        recv_eof_or_reset(plain, 10)
        raw = self.connect(srv)  # TLS, but it does not trust the server's certificate
        with self.assertRaises(ssl.SSLError):
            ssl.create_default_context().wrap_socket(raw, server_hostname="localhost")
        raw.close()
        wait_until(lambda: len([l for l in srv.lines() if "TLS handshake failed" in l]) >= 2,
                   10)
        b = self.tls_client(srv)
        self.assertEqual(ra.readline(), ("* %s joined\n" % sock_name(b)).encode(),
                         "the first line a gets must be b's join\n" + srv.describe())
        b.sendall(b"hi from b\n")
        self.assertEqual(ra.readline(), ("[%s] hi from b\n" % sock_name(b)).encode())

    # -- peers we did not write -----------------------------------------------------------
    def test_openssl_s_client_against_serve(self):
        srv = self.serve_tls("-m", "echo", "-v")
        c = OpenSSLProcess(["s_client", "-connect", "127.0.0.1:%d" % srv.port,
                            "-servername", "localhost", "-verify_hostname", "localhost",
                            "-verify_return_error", "-CAfile", self.pki.ca])
        self.addCleanup(c.kill)
        self.assertTrue(c.wait_output(b"Verify return code: 0 (ok)", 20), c.describe())
        c.write(b"hello from s_client\n")
        # s_client does not print what it sends: this is the echo
        self.assertTrue(c.wait_output(b"hello from s_client\n", 20), c.describe())
        srv.wait_line(r"tls .*sni=localhost")
        c.kill()

    # TLS 1.1 at security level 0, the only level where OpenSSL 3 still offers it.
    TLS11_CLIENT = ["-tls1_1", "-cipher", "ALL:@SECLEVEL=0"]
    TLS11_DONE = re.compile(rb"Protocol  : TLSv1\.1\s+Cipher    : (?!0000)[A-Z0-9-]+")

    def tls11_s_server(self):
        """openssl s_server that speaks TLS 1.1 only, at security level 0: the port."""
        p, port = start_s_server(["-cert", self.pki.server, "-key", self.pki.server_key]
                                 + self.TLS11_CLIENT)
        self.addCleanup(p.kill)
        return port

    def s_client_tls11(self, port):
        """openssl s_client offering TLS 1.1 only; its output once it has finished."""
        c = OpenSSLProcess(["s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile",
                            self.pki.ca] + self.TLS11_CLIENT)
        self.addCleanup(c.kill)
        c.wait_output(b"Cipher    :", 20)
        c.proc.stdin.close()  # s_client ends at EOF on its input
        try:
            c.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.fail("s_client -tls1_1 still connected:\n" + c.describe())
        return c

    def python_tls11_context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.pki.ca)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLSVersion.TLSv1_1 is
            ctx.set_ciphers("ALL:@SECLEVEL=0")
            ctx.minimum_version = ssl.TLSVersion.TLSv1_1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        return ctx

    def test_openssl_s_client_tls11_only_refused(self):
        # First prove that this s_client can speak TLS 1.1 at all: else a refusal proves nothing.
        proof = self.s_client_tls11(self.tls11_s_server())
        if not self.TLS11_DONE.search(proof.output()):
            self.skipTest("this openssl will not offer TLS 1.1 even at SECLEVEL=0, so sockit's "
                          "refusal of it cannot be shown:\n" + proof.describe())
        srv = self.serve_tls("-m", "echo")
        c = self.s_client_tls11(srv.port)
        out = c.output()
        self.assertNotEqual(c.proc.returncode, 0, c.describe())
        self.assertIn(b"alert protocol version", out, c.describe())
        self.assertIsNone(self.TLS11_DONE.search(out), c.describe())
        good = self.tls_client(srv)
        self.echo_round(good, b"still serving\n")

    def test_python_tls11_client_refused(self):
        ctx = self.python_tls11_context()
        # First prove that this Python can speak TLS 1.1 at all: else a refusal proves nothing.
        port = self.tls11_s_server()
        try:
            proof = ctx.wrap_socket(self.connect((socket.AF_INET, ("127.0.0.1", port))),
                                    server_hostname="localhost")
        except (ssl.SSLError, OSError) as e:
            self.skipTest("this Python's OpenSSL will not offer TLS 1.1 even at SECLEVEL=0, so "
                          "sockit's refusal of it cannot be shown: %r" % e)
        self.assertEqual(proof.version(), "TLSv1.1")
        proof.close()
        srv = self.serve_tls("-m", "echo")
        raw = self.connect(srv)
        with self.assertRaises(ssl.SSLError) as refused:
            ctx.wrap_socket(raw, server_hostname="localhost")
        self.assertIn("PROTOCOL_VERSION", str(refused.exception))
        good = self.tls_client(srv)
        self.echo_round(good, b"still serving\n")

    def test_connect_against_openssl_s_server(self):
        """sockit connect to openssl s_server: each side prints what the other typed; stdin's
        EOF sends close_notify, s_server closes, connect exits 0."""
        s, port = start_s_server(["-cert", self.pki.server, "-key", self.pki.server_key,
                                  "-alpn", "http/1.1"])
        self.addCleanup(s.kill)
        p = subprocess.Popen([SOCKIT, "connect", "tls://localhost:%d" % port, "--ca", self.pki.ca,
                              "--alpn", "h2,http/1.1", "-v"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        p.stdin.write(b"from sockit\n")
        p.stdin.flush()
        self.assertTrue(s.wait_output(b"from sockit\n", 20), s.describe())
        s.write(b"from s_server\n")
        buf = bytearray()
        self.assertTrue(read_fd_until(p.stdout.fileno(), buf,
                                      lambda b: b"from s_server\n" in b, 20), bytes(buf))
        p.stdin.close()  # EOF: close_notify; s_server answers by closing
        try:
            rc = p.wait(20)
        except subprocess.TimeoutExpired:
            self.fail("connect did not exit after s_server closed\n" + s.describe())
        err = p.stderr.read().decode()
        p.stdout.close()
        p.stderr.close()
        self.assertEqual(rc, 0, err)
        self.assertIn("alpn http/1.1", err)
        self.assertRegex(err, r"tls server: TLSv1\.3 .*CN=localhost; verified")

    def test_connect_sends_sni_for_names_only(self):
        seen = []

        def ctx_for_server():
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.pki.server, self.pki.server_key)
            ctx.sni_callback = lambda sock, name, c: seen.append(name)
            return ctx

        def answer(conn, result):
            conn.sendall(b"hello\n")
            result["received"] = conn.recv(100)
            conn.unwrap()

        for host, expect in (("localhost", "localhost"), ("127.0.0.1", None)):
            port, result = self.python_server(answer, ctx=ctx_for_server())
            r = self.run_sockit(["connect", "tls://%s:%d" % (host, port), "--ca", self.pki.ca],
                                input=b"q\n")
            self.assertExit(r, 0, host)
            self.assertEqual(r.stdout, b"hello\n")
            result["done"].wait(10)
            self.assertIsNone(result["error"])
            self.assertEqual(seen[-1], expect)

    def test_stdin_eof_is_a_half_close(self):
        """The server reads to close_notify, then still sends its answer: connect prints it."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.pki.server, self.pki.server_key)

        def until_eof_then_answer(conn, result):
            got = b""
            while True:
                b = conn.recv(4096)
                if not b:
                    break  # close_notify (a plain FIN would raise SSLEOFError)
                got += b
            result["received"] = got
            conn.sendall(b"you sent %d bytes\n" % len(got))
            conn.unwrap()

        port, result = self.python_server(until_eof_then_answer, ctx=ctx)
        r = self.run_sockit(["connect", "tls://127.0.0.1:%d" % port, "--ca", self.pki.ca],
                            input=b"abc\n")
        result["done"].wait(10)
        self.assertIsNone(result["error"])
        self.assertEqual(result["received"], b"abc\n")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"you sent 4 bytes\n")

    def test_connect_reports_a_truncated_stream(self):
        """A server that sends, then drops TCP without close_notify: connect prints what came,
        then one line about the truncation, exit 1 (not a clean end)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.pki.server, self.pki.server_key)

        def send_then_vanish(conn, result):
            conn.sendall(b"partial answer\n")
            os.close(conn.detach())

        port, result = self.python_server(send_then_vanish, ctx=ctx)
        # standard input stays open: connect sends nothing, so the server's close is a FIN
        p = subprocess.Popen([SOCKIT, "connect", "tls://127.0.0.1:%d" % port, "--ca",
                              self.pki.ca], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        out = bytearray()
        try:
            read_fd_until(p.stdout.fileno(), out, lambda b: False, 20)  # to EOF or deadline
            rc = p.wait(10)
            err = p.stderr.read()
        finally:
            p.stdin.close()
            p.stdout.close()
            p.stderr.close()
        self.assertEqual(rc, 1, err)
        self.assertEqual(bytes(out), b"partial answer\n")
        self.assertOneErrorLine(err, "truncated")

    def test_echo_output_survives_a_fin_without_close_notify(self):
        """ncat --ssl ends its input with a TCP FIN and no close_notify: everything it sent is
        still echoed back (issue 18.3: the last 48 KiB were lost)."""
        ncat = self.require_program("ncat")
        srv = self.serve_tls("-m", "echo")
        data = os.urandom(4 << 20)
        path = os.path.join(self.tmpdir, "in")
        with open(path, "wb") as f:
            f.write(data)
        with open(path, "rb") as f:
            r = subprocess.run([ncat, "--ssl", "127.0.0.1", str(srv.port)], stdin=f,
                               capture_output=True, timeout=RUN_TIMEOUT)
        self.assertEqual(len(r.stdout), len(data), r.stderr)
        self.assertEqual(sha256(r.stdout), sha256(data))

    def test_python_ssl_client_with_verification(self):
        srv = self.serve_tls("-m", "echo")
        for host in ("localhost", "127.0.0.1"):
            s = self.tls_client(srv, hostname=host)
            self.assertIn(s.version(), ("TLSv1.2", "TLSv1.3"))
            self.echo_round(s, b"verified " + host.encode() + b"\n")
            s.unwrap().close()
        # Python refuses the name too
        raw = self.connect(srv)
        with self.assertRaises(ssl.SSLCertVerificationError):
            self.client_context().wrap_socket(raw, server_hostname="wrong.example")

    def test_python_1mib_echo(self):
        srv = self.serve_tls("-m", "echo")
        s = self.tls_client(srv)
        data = os.urandom(1 << 20)
        for i in range(0, len(data), 65536):
            self.echo_round(s, data[i:i + 65536])
        s.unwrap().close()

    def test_truncation_reported_by_server(self):
        """A client that drops TCP without close_notify: the server reports a truncated stream,
        not a clean end."""
        srv = self.serve_tls("-m", "echo", "-v")
        s = self.tls_client(srv)
        self.echo_round(s, b"then vanish\n")
        os.close(s.detach())  # TCP FIN, no close_notify
        srv.wait_line(r"truncated|close_notify")
        s2 = self.tls_client(srv)
        self.echo_round(s2, b"clean\n")
        s2.unwrap().close()
        time.sleep(0.3)
        self.assertEqual(len([l for l in srv.lines() if re.search(r"truncated", l)]), 1,
                         srv.describe())

    def test_mutual_tls(self):
        srv = self.serve_tls("-m", "echo", "--client-ca", self.pki.client_ca, "-v")
        r = self.run_sockit(["connect", self.target(srv), "--ca", self.pki.ca,
                             "--cert", self.pki.client, "--key", self.pki.client_key],
                            input=b"with cert\n")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"with cert\n")
        srv.wait_line(r"tls .*CN=sockit e2e client verified")
        r = self.run_sockit(["connect", self.target(srv), "--ca", self.pki.ca],
                            input=b"without\n")
        self.assertExit(r, 1)
        self.assertEqual(r.stdout, b"")
        self.assertOneErrorLine(r.stderr, ("certificate", "TLS"))
        # Python: with a certificate it works, without it the server refuses
        s = self.tls_client(srv, ctx=self.client_context(cert=self.pki.client,
                                                         key=self.pki.client_key))
        self.echo_round(s, b"python with cert\n")
        s.unwrap().close()
        raw = self.connect(srv)
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            s = self.client_context().wrap_socket(raw, server_hostname="localhost")
            s.sendall(b"x\n")
            if not s.recv(10):
                raise ConnectionError("closed")


if __name__ == "__main__":
    unittest.main()
