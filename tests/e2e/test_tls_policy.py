"""TLS policy: which protocol versions and ciphers serve and connect accept by default, the
options that change them (--tls-min, --ciphers, --ciphersuites), and an outside audit of the
server's configuration by testssl.sh (issue 18.8).

The server certificate here is RSA, signed by a CA made for this test: with an RSA key a
server could offer static-RSA key exchange, which the defaults must not."""

import json
import os
import shutil
import ssl
import subprocess
import tempfile
import unittest

from harness import SOCKIT, SockitTestCase
import tlsutil
from tlsutil import start_s_server

# testssl.sh severities, lowest first; a finding at MEDIUM or above fails the audit.
SEVERITIES = ["OK", "INFO", "LOW", "MEDIUM", "HIGH", "CRITICAL"]
TESTSSL_TIMEOUT = 600  # seconds; a full run against loopback takes about 40


def make_rsa_pki(directory):
    """A CA and an RSA-2048 localhost certificate it signed, valid 90 days, with a CRL address
    (testssl.sh wants a revocation source; it never fetches it without --phone-out)."""
    run = lambda args: tlsutil._run(args, directory)
    run(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
         "-days", "120", "-subj", "/CN=sockit policy test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    with open(os.path.join(directory, "leaf.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                "crlDistributionPoints=URI:http://127.0.0.1:9/ca.crl\n")
    run(["req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "leaf.key", "-out",
         "leaf.csr", "-subj", "/CN=localhost"])
    run(["x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-set_serial", "0x5ce1d7c0ffee", "-days", "90", "-sha256", "-extfile", "leaf.ext",
         "-out", "leaf.pem"])
    p = lambda name: os.path.join(directory, name)
    return p("ca.pem"), p("leaf.pem"), p("leaf.key")


@unittest.skipUnless(tlsutil.openssl_available(), "the openssl command is needed")
class TlsPolicyTests(SockitTestCase):

    @classmethod
    def setUpClass(cls):
        cls._pki_dir = tempfile.mkdtemp(prefix="skt-policy-", dir="/tmp")
        cls.ca, cls.cert, cls.key = make_rsa_pki(cls._pki_dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls._pki_dir, ignore_errors=True)

    def serve_tls(self, *args):
        return self.serve("-m", "echo", "--cert", self.cert, "--key", self.key, *args,
                          address="tls://127.0.0.1:0")

    def client(self, srv, ciphers=None, maximum=None, minimum=None):
        """A Python TLS client (verification on); returns the socket or raises ssl.SSLError."""
        ctx = ssl.create_default_context(cafile=self.ca)
        if ciphers:
            ctx.set_ciphers(ciphers)
        if maximum:
            ctx.maximum_version = maximum
        if minimum:
            ctx.minimum_version = minimum
        s = ctx.wrap_socket(self.connect(srv), server_hostname="localhost")
        self.addCleanup(s.close)
        return s

    # -- the server's defaults -----------------------------------------------------------------
    def test_server_refuses_static_rsa_and_cbc_suites(self):
        srv = self.serve_tls()
        for weak in ("AES128-SHA", "AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA",
                     "ECDHE-RSA-AES256-SHA384"):
            with self.subTest(cipher=weak), self.assertRaises(ssl.SSLError):
                self.client(srv, ciphers=weak, maximum=ssl.TLSVersion.TLSv1_2)
        s = self.client(srv, ciphers="ECDHE-RSA-AES128-GCM-SHA256",
                        maximum=ssl.TLSVersion.TLSv1_2)
        self.assertEqual(s.cipher()[0], "ECDHE-RSA-AES128-GCM-SHA256")

    def test_server_order_decides(self):
        """A client that prefers ChaCha20 gets AES-GCM: the server's list comes first."""
        srv = self.serve_tls()
        s = self.client(srv, ciphers="ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256",
                        maximum=ssl.TLSVersion.TLSv1_2)
        self.assertEqual(s.cipher()[0], "ECDHE-RSA-AES128-GCM-SHA256")

    def test_server_ciphers_option(self):
        srv = self.serve_tls("--ciphers", "ECDHE-RSA-CHACHA20-POLY1305")
        s = self.client(srv, maximum=ssl.TLSVersion.TLSv1_2)
        self.assertEqual(s.cipher()[0], "ECDHE-RSA-CHACHA20-POLY1305")

    def test_server_ciphersuites_option(self):
        srv = self.serve_tls("--ciphersuites", "TLS_CHACHA20_POLY1305_SHA256")
        s = self.client(srv, minimum=ssl.TLSVersion.TLSv1_3)
        self.assertEqual(s.cipher()[0], "TLS_CHACHA20_POLY1305_SHA256")

    def test_server_tls_min_13_refuses_12(self):
        srv = self.serve_tls("--tls-min", "1.3")
        with self.assertRaises(ssl.SSLError):
            self.client(srv, maximum=ssl.TLSVersion.TLSv1_2)
        self.assertEqual(self.client(srv).version(), "TLSv1.3")

    # -- the client's defaults -----------------------------------------------------------------
    def s_server(self, *args):
        p, port = start_s_server(["-cert", self.cert, "-key", self.key] + list(args))
        self.addCleanup(p.kill)
        return port

    def connect_once(self, port, *args):
        return self.run_sockit(["connect", "tls://localhost:%d" % port, "--ca", self.ca,
                                "--close-on-eof"] + list(args), input=b"")

    def test_client_refuses_a_cbc_only_server_unless_asked(self):
        port = self.s_server("-tls1_2", "-cipher", "AES128-SHA")
        r = self.connect_once(port)
        self.assertExit(r, 1)
        self.assertOneErrorLine(r.stderr, "handshake", "--ciphers")
        port = self.s_server("-tls1_2", "-cipher", "AES128-SHA")
        r = self.connect_once(port, "--ciphers", "AES128-SHA", "-v")
        self.assertExit(r, 0)
        self.assertIn("AES128-SHA", r.stderr.decode())

    def test_client_tls_min_13_refuses_a_12_server(self):
        port = self.s_server("-tls1_2")
        r = self.connect_once(port, "--tls-min", "1.3")
        self.assertExit(r, 1)
        self.assertOneErrorLine(r.stderr, "handshake")

    # -- bad values are usage errors that name the fix ------------------------------------------
    def test_bad_values_name_the_fix(self):
        cases = [
            (["--tls-min", "1.1"], "write 1.2 or 1.3"),
            (["--ciphers", "NO-SUCH-CIPHER"], "openssl ciphers"),
            (["--ciphersuites", "TLS_NOPE"], "TLS_AES_128_GCM_SHA256"),
        ]
        for extra, fix in cases:
            for cmd in (["serve", "tls://127.0.0.1:0"], ["connect", "tls://127.0.0.1:1"]):
                with self.subTest(cmd=cmd[0], option=extra[0]):
                    r = self.run_sockit(cmd + extra, input=b"")
                    self.assertExit(r, 2)
                    self.assertOneErrorLine(r.stderr, extra[1], fix)

    def test_protocol_options_need_a_tls_address(self):
        for cmd in (["serve", "127.0.0.1:0"], ["connect", "127.0.0.1:1"]):
            with self.subTest(cmd=cmd[0]):
                r = self.run_sockit(cmd + ["--tls-min", "1.3"], input=b"")
                self.assertExit(r, 2)
                self.assertOneErrorLine(r.stderr, "tls://")

    # -- an outside audit ----------------------------------------------------------------------
    def test_testssl_finds_nothing_medium_or_worse(self):
        testssl = self.require_program("testssl")
        srv = self.serve_tls()
        out = os.path.join(self.tmpdir, "testssl.json")
        r = subprocess.run([testssl, "--quiet", "--color", "0", "--warnings", "off",
                            "--add-ca", self.ca, "--jsonfile", out,
                            "localhost:%d" % srv.port],
                           stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=TESTSSL_TIMEOUT)
        self.assertTrue(os.path.exists(out), r.stdout.decode(errors="replace")[-2000:])
        with open(out) as f:
            findings = json.load(f)
        self.assertGreater(len(findings), 50, "testssl.sh ran too few checks")
        bad = ["%s %s: %s" % (f["severity"], f["id"], f["finding"]) for f in findings
               if f["severity"] in SEVERITIES[SEVERITIES.index("MEDIUM"):]]
        self.assertEqual(bad, [], "\n".join(bad))
