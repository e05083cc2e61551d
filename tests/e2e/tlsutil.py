"""Certificates for the TLS tests, made at test time with the openssl command (nothing with a
private key is ever committed), and helpers to run openssl's own client and server as peers.

    pki = Pki(directory)     # makes everything below in directory
    pki.ca                   # the test CA (PEM); signs server, wrong_name, expired
    pki.server, pki.server_key        # for localhost, 127.0.0.1, ::1
    pki.wrong_name, pki.wrong_name_key  # for other.example only
    pki.expired, pki.server_key       # localhost, valid January 2020 only
    pki.self_signed, pki.self_signed_key  # localhost, 127.0.0.1, ::1, signed by itself
    pki.client_ca, pki.client, pki.client_key  # mutual TLS: a client CA and a client it signed
"""

import os
import shutil
import socket
import subprocess
import threading
import time

OPENSSL = shutil.which("openssl")
_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
_SAN_LOCAL = "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"

# `openssl ca` is the one way the 3.0 command line sets a start date in the past (x509 -req
# cannot), which an expired certificate needs.
_CA_CONFIG = """\
[ca]
default_ca = test
[test]
database = {db}/index.txt
serial = {db}/serial
new_certs_dir = {db}
default_md = sha256
policy = anything
unique_subject = no
[anything]
commonName = supplied
"""


def openssl_available():
    return OPENSSL is not None


def _run(args, cwd):
    r = subprocess.run([OPENSSL] + args, cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed:\n%s" % (" ".join(args),
                                                      r.stdout.decode("utf-8", "replace")))


class Pki:
    def __init__(self, directory):
        self.dir = directory
        p = lambda name: os.path.join(directory, name)
        self._ca("ca", "sockit e2e test CA")
        self._ca("client-ca", "sockit e2e client CA")
        self._leaf("server", "localhost", "ca", _SAN_LOCAL, 2)
        self._leaf("wrong-name", "other.example", "ca", "subjectAltName=DNS:other.example", 3)
        self._leaf("client", "sockit e2e client", "client-ca", "extendedKeyUsage=clientAuth", 4)
        self._expired()
        _run(["req", "-x509"] + _KEY + ["-keyout", "self.key", "-out", "self.pem", "-days", "30",
                                        "-subj", "/CN=localhost", "-addext", _SAN_LOCAL],
             directory)
        self.ca, self.client_ca = p("ca.pem"), p("client-ca.pem")
        self.server, self.server_key = p("server.pem"), p("server.key")
        self.wrong_name, self.wrong_name_key = p("wrong-name.pem"), p("wrong-name.key")
        self.expired = p("expired.pem")
        self.self_signed, self.self_signed_key = p("self.pem"), p("self.key")
        self.client, self.client_key = p("client.pem"), p("client.key")

    def _ca(self, name, cn):
        _run(["req", "-x509"] + _KEY + ["-keyout", name + ".key", "-out", name + ".pem",
                                        "-days", "30", "-subj", "/CN=" + cn,
                                        "-addext", "basicConstraints=critical,CA:TRUE",
                                        "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
             self.dir)

    def _leaf(self, name, cn, ca, ext, serial):
        with open(os.path.join(self.dir, name + ".ext"), "w") as f:
            f.write(ext + "\n")
        _run(["req", "-new"] + _KEY + ["-keyout", name + ".key", "-out", name + ".csr",
                                       "-subj", "/CN=" + cn], self.dir)
        _run(["x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
              "-set_serial", str(serial), "-days", "30", "-extfile", name + ".ext",
              "-out", name + ".pem"], self.dir)

    def _expired(self):
        db = os.path.join(self.dir, "cadb")
        os.mkdir(db)
        open(os.path.join(db, "index.txt"), "w").close()
        with open(os.path.join(db, "serial"), "w") as f:
            f.write("10\n")
        with open(os.path.join(self.dir, "ca.cnf"), "w") as f:
            f.write(_CA_CONFIG.format(db=db))
        _run(["ca", "-batch", "-notext", "-config", "ca.cnf", "-cert", "ca.pem",
              "-keyfile", "ca.key", "-in", "server.csr", "-out", "expired.pem",
              "-startdate", "20200101000000Z", "-enddate", "20200201000000Z",
              "-extfile", "server.ext"], self.dir)


def free_port():
    """A port that was free a moment ago (the caller retries if someone takes it meanwhile)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class OpenSSLProcess:
    """openssl s_server or s_client with stdin a pipe; stdout and stderr merged, collected by a
    thread. Always killed by PID at cleanup."""

    def __init__(self, args):
        self.argv = [OPENSSL] + [str(a) for a in args]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self._out = bytearray()
        self._cond = threading.Condition()
        self._eof = False
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self):
        try:
            while True:
                b = self.proc.stdout.read1(65536)
                if not b:
                    break
                with self._cond:
                    self._out += b
                    self._cond.notify_all()
        except (OSError, ValueError):
            pass
        finally:
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    def output(self):
        with self._cond:
            return bytes(self._out)

    def wait_output(self, needle, timeout):
        """True once needle (bytes) appeared in the output, False at the deadline or EOF."""
        end = time.monotonic() + timeout
        with self._cond:
            while needle not in self._out:
                left = end - time.monotonic()
                if left <= 0 or self._eof:
                    return needle in self._out
                self._cond.wait(min(left, 0.2))
            return True

    def write(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def running(self):
        return self.proc.poll() is None

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, 9)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._thread.join(5)
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass

    def describe(self):
        return "command: %s\noutput:\n%s" % (" ".join(self.argv),
                                               self.output()[-3000:].decode("utf-8", "replace"))


def start_s_server(args, attempts=5):
    """openssl s_server on 127.0.0.1 at a free port: (process, port). s_server cannot report a
    port it chose, so pick one, and try another (a bounded number of times) if it was taken."""
    for _ in range(attempts):
        port = free_port()
        p = OpenSSLProcess(["s_server", "-accept", "127.0.0.1:%d" % port] + list(args))
        if p.wait_output(b"ACCEPT", 10):
            return p, port
        p.kill()
    raise AssertionError("openssl s_server would not start:\n%s" % p.describe())
