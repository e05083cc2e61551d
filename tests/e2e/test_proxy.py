"""End-to-end tests of the PROXY protocol (issue 12) with real peers: HAProxy and nginx, started
by the test on 127.0.0.1 with configurations written to a temporary directory, in front of and
behind `sockit serve --accept-proxy`, `sockit relay --send-proxy` and `sockit connect
--send-proxy`. Every process is killed by its PID at the end; every wait has a deadline.

HAProxy runs in the foreground (`haproxy -f CFG -db`); nginx as `nginx -c CFG -g 'daemon off;'`
with its pid file, error log and prefix inside the temporary directory (its stream module is a
dynamic module in Debian: libnginx-mod-stream). Missing peers skip the tests here and fail them
under CI (CI=true).
"""

import os
import re
import socket
import struct
import subprocess
import threading

from harness import (GREETING, IO_TIMEOUT, LineReader, Server, SockitTestCase,
                     free_tcp_port, recv_eof_or_reset, recv_exact, recv_until_eof, wait_until)

NGINX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
PROXY_RE = re.compile(r"proxy fd=\d+ peer=(\S+) via (\S+)")


# --------------------------------------------------------------------------------------------
# Headers made by hand (for the refusal tests; the happy paths use HAProxy, nginx and sockit)


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def v2_header(src, sport, dst, dport, tlvs=b"", with_crc=False):
    """A v2 PROXY TCP4 header; with_crc adds a CRC32C TLV computed over the whole header."""
    addrs = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    crc_tlv = b"\x03\x00\x04\x00\x00\x00\x00" if with_crc else b""
    body = addrs + tlvs + crc_tlv
    hdr = V2_SIG + b"\x21\x11" + struct.pack("!H", len(body)) + body
    if with_crc:
        hdr = hdr[:-4] + struct.pack("!I", crc32c(hdr))
    return hdr


def v1_header(src, sport, dst="127.0.0.1", dport=443):
    return ("PROXY TCP4 %s %s %d %d\r\n" % (src, dst, sport, dport)).encode()


def port_listening(port, host="127.0.0.1"):
    """Is a TCP socket listening on host:port? Read from /proc/net/tcp, so no connection is
    made (a probe through a proxy would reach the server behind it and show up in its log)."""
    want = "%s:%04X" % ("".join("%02X" % b for b in reversed(socket.inet_aton(host))), port)
    try:
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if len(fields) > 3 and fields[1] == want and fields[3] == "0A":
                    return True
    except OSError:
        return False
    return False


class Peer:
    """A real peer program (haproxy, nginx) run in the foreground, its output in a file."""

    def __init__(self, argv, log_path):
        self.argv = argv
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.pid = self.proc.pid

    def output(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def describe(self):
        rc = self.proc.poll()
        return "command: %s\nstatus: %s\noutput:\n%s" % (
            " ".join(self.argv), "running" if rc is None else rc, self.output()[-3000:])

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, 9)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self.log.close()


class ProxyTestCase(SockitTestCase):

    # -- peers ----------------------------------------------------------------------------
    def start_peer(self, make, name, nports):
        """make(ports) writes the configuration and returns the argv. The ports are picked
        free; a peer that exits at once (another process took a port meanwhile) is tried
        again with new ones, up to three times. Returns the ports."""
        for attempt in range(3):
            ports = [free_tcp_port() for _ in range(nports)]
            p = Peer(make(ports), os.path.join(self.tmpdir, "%s-%d.out" % (name, attempt)))
            self.addCleanup(p.kill)
            ok = wait_until(lambda: p.proc.poll() is not None or all(port_listening(q)
                                                                      for q in ports), 10)
            if ok and p.proc.poll() is None:
                return ports
            if p.proc.poll() is None:
                break  # running but not listening: no retry helps
        self.fail("%s did not start listening on %s\n%s" % (name, ports, p.describe()))

    def haproxy(self, frontends):
        """HAProxy with frontends [(bind options, [server lines]...)]; returns the ports in
        that order. A server line is 'HOST:PORT OPTIONS'."""
        exe = self.require_program("haproxy")

        def make(ports):
            cfg = ["global", "    maxconn 2000",
                   "defaults", "    mode tcp", "    timeout connect 5s",
                   "    timeout client 30s", "    timeout server 30s"]
            for i, ((bind_opts, servers), port) in enumerate(zip(frontends, ports)):
                cfg += ["frontend f%d" % i, "    bind 127.0.0.1:%d %s" % (port, bind_opts),
                        "    default_backend b%d" % i,
                        "backend b%d" % i, "    balance roundrobin"]
                cfg += ["    server s%d %s" % (j, s) for j, s in enumerate(servers)]
            path = os.path.join(self.tmpdir, "haproxy.cfg")
            with open(path, "w") as f:
                f.write("\n".join(cfg) + "\n")
            return [exe, "-f", path, "-db"]

        return self.start_peer(make, "haproxy", len(frontends))

    def nginx(self, backend_port):
        """nginx: listen with proxy_protocol (taking the client from the header it gets),
        proxy_pass to backend_port with proxy_protocol on. Returns its port."""
        exe = self.require_program("nginx")
        if not os.path.exists(NGINX_STREAM_MODULE):
            why = "nginx's stream module is not installed (libnginx-mod-stream)"
            if os.environ.get("CI") == "true":
                self.fail(why)
            self.skipTest(why)
        d = self.tmpdir

        def make(ports):
            cfg = """load_module %(mod)s;
master_process off;  # one process: killed by its PID, no orphaned workers
worker_processes 1;
pid %(d)s/nginx.pid;
error_log %(d)s/nginx-error.log info;
events { worker_connections 256; }
stream {
    server {
        listen 127.0.0.1:%(port)d proxy_protocol;
        set_real_ip_from 127.0.0.0/8;
        proxy_pass 127.0.0.1:%(back)d;
        proxy_protocol on;
        proxy_half_close on;
    }
}
""" % {"mod": NGINX_STREAM_MODULE, "d": d, "port": ports[0], "back": backend_port}
            path = os.path.join(d, "nginx.conf")
            with open(path, "w") as f:
                f.write(cfg)
            return [exe, "-p", d, "-e", os.path.join(d, "nginx-error.log"), "-c", path,
                    "-g", "daemon off;"]

        return self.start_peer(make, "nginx", 1)[0]

    # -- sockit ---------------------------------------------------------------------------
    def proxy_lines(self, srv, start=0):
        """(peer, via) of every 'proxy fd=N peer=... via ...' line of a -v server."""
        out = []
        for line in srv.lines()[start:]:
            m = PROXY_RE.search(line)
            if m:
                out.append((m.group(1), m.group(2)))
        return out

    def wait_proxy_line(self, srv, peer, timeout=IO_TIMEOUT):
        return srv.wait_line(r"proxy fd=\d+ peer=%s via (\S+)" % re.escape(peer), timeout)

    def wait_refusal(self, srv, text, timeout=IO_TIMEOUT):
        return srv.wait_line(r"refused (a connection|\d+ connections).*: .*%s" % re.escape(text),
                             timeout)

    def tcp(self, port):
        return self.connect((socket.AF_INET, ("127.0.0.1", port)))

    def tcp_from(self, src, port):
        """A client from a chosen loopback address."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(s.close)
        s.settimeout(IO_TIMEOUT)
        s.bind((src, 0))
        s.connect(("127.0.0.1", port))
        return s

    @staticmethod
    def me(sock):
        return "%s:%d" % sock.getsockname()


# --------------------------------------------------------------------------------------------


class HAProxyInFrontTests(ProxyTestCase):
    """HAProxy `server ... send-proxy[-v2]` in front of `sockit serve --accept-proxy`."""

    def test_chat_through_haproxy_send_proxy_v1(self):
        self._chat("send-proxy")

    def test_chat_through_haproxy_send_proxy_v2(self):
        self._chat("send-proxy-v2")

    def _chat(self, send_proxy):
        srv = self.serve("--accept-proxy", "-m", "chat", "-v")
        (port,) = self.haproxy([("", ["127.0.0.1:%d %s" % (srv.port, send_proxy)])])
        a = self.tcp(port)
        ra = LineReader(a)
        m = self.wait_proxy_line(srv, self.me(a))
        self.assertRegex(m.group(1), r"^127\.0\.0\.1:\d+$")
        self.assertNotEqual(m.group(1), self.me(a), "via is HAProxy's own socket, not the client")
        b = self.tcp(port)
        rb = LineReader(b)
        a_name, b_name = self.me(a).encode(), self.me(b).encode()
        self.assertEqual(ra.readline(), b"* " + b_name + b" joined\n")
        a.sendall(b"hello from a\n")
        self.assertEqual(rb.readline(), b"[" + a_name + b"] hello from a\n")
        b.sendall(b"and from b\n")
        self.assertEqual(ra.readline(), b"[" + b_name + b"] and from b\n")
        b.close()
        self.assertEqual(ra.readline(), b"* " + b_name + b" left\n")

    def test_max_per_ip_counts_the_real_client(self):
        """HAProxy's own connections all come from 127.0.0.1; the clients come from 127.0.0.2
        and 127.0.0.3 (all of 127.0.0.0/8 is loopback): the limit counts the clients."""
        srv = self.serve("--accept-proxy", "-m", "chat", "-v", "--max-per-ip", "1")
        (port,) = self.haproxy([("", ["127.0.0.1:%d send-proxy-v2" % srv.port])])
        a = self.tcp_from("127.0.0.2", port)
        self.wait_proxy_line(srv, self.me(a))
        b = self.tcp_from("127.0.0.3", port)  # another client: admitted
        self.wait_proxy_line(srv, self.me(b))
        rb = LineReader(b)
        a2 = self.tcp_from("127.0.0.2", port)  # the first client's address again: refused
        a2_name = self.me(a2)
        m = self.wait_refusal(srv, "too many connections from that address (1 live")
        self.assertIn("from %s:" % a2_name, m.string, "the refusal names the real client")
        recv_eof_or_reset(a2)
        # the admitted two still chat
        a.sendall(b"still here\n")
        self.assertEqual(rb.readline(), b"[%s] still here\n" % self.me(a).encode())
        srv.send_signal(15)
        self.assertEqual(srv.wait(), 0)


class RelayChainTests(ProxyTestCase):
    """client -> sockit relay --send-proxy -> HAProxy (accept-proxy, send-proxy-v2) -> sockit
    serve --accept-proxy: the original client comes out at the end of the chain."""

    def chain(self, version):
        srv = self.serve("--accept-proxy", "-m", "chat", "-v")
        (hport,) = self.haproxy([("accept-proxy", ["127.0.0.1:%d send-proxy-v2" % srv.port])])
        relay = self.start(["relay", "127.0.0.1:0", "127.0.0.1:%d" % hport, "--send-proxy",
                            version, "-v"], cls=Server)
        relay.await_listening()
        d = self.connect(relay)
        rd = LineReader(d)
        self.wait_proxy_line(srv, self.me(d))
        c = self.connect(relay)
        c_name = self.me(c)
        m = self.wait_proxy_line(srv, c_name)
        self.assertNotEqual(m.group(1), c_name)
        self.assertEqual(rd.readline(), b"* %s joined\n" % c_name.encode())
        c.sendall(b"through two proxies\n")
        self.assertEqual(rd.readline(), b"[%s] through two proxies\n" % c_name.encode())

    def test_relay_send_proxy_v1_haproxy_accept_proxy(self):
        self.chain("v1")

    def test_relay_send_proxy_v2_haproxy_accept_proxy(self):
        self.chain("v2")

    def test_relay_send_proxy_v2_crc32c_haproxy_accept_proxy(self):
        self.chain("v2,crc32c")


    def test_haproxy_to_relay_accept_proxy_to_serve(self):
        """relay --accept-proxy --send-proxy v2 passes on the address it received."""
        srv = self.serve("--accept-proxy", "-m", "chat", "-v")
        relay = self.start(["relay", "127.0.0.1:0", "127.0.0.1:%d" % srv.port,
                            "--accept-proxy", "--proxy-from", "127.0.0.0/8",
                            "--send-proxy", "v2"], cls=Server)
        relay.await_listening()
        (hport,) = self.haproxy([("", ["127.0.0.1:%d send-proxy" % relay.port])])
        a = self.tcp(hport)
        ra = LineReader(a)
        self.wait_proxy_line(srv, self.me(a))
        b = self.tcp(hport)
        self.wait_proxy_line(srv, self.me(b))
        self.assertEqual(ra.readline(), b"* %s joined\n" % self.me(b).encode())
        b.sendall(b"relayed\n")
        self.assertEqual(ra.readline(), b"[%s] relayed\n" % self.me(b).encode())

    def read_v2(self, sock):
        head = recv_exact(sock, 16)
        self.assertEqual(head[:12], V2_SIG)
        self.assertEqual(head[12], 0x21)  # v2, PROXY
        self.assertEqual(head[13], 0x11)  # TCP4
        body = recv_exact(sock, struct.unpack("!H", head[14:16])[0])
        src = socket.inet_ntoa(body[0:4])
        sport = struct.unpack("!H", body[8:10])[0]
        tlvs, i = {}, 12
        while i + 3 <= len(body):
            t, n = body[i], struct.unpack("!H", body[i + 1:i + 3])[0]
            tlvs[t] = (i + 3, body[i + 3:i + 3 + n])
            i += 3 + n
        self.assertEqual(i, len(body), "the TLVs fill the header exactly")
        return head + body, "%s:%d" % (src, sport), tlvs

    def test_relay_send_proxy_v2_unique_id_and_crc32c(self):
        lst = self.listener()
        relay = self.start(["relay", "127.0.0.1:0", "127.0.0.1:%d" % lst.getsockname()[1],
                            "--send-proxy", "v2,crc32c", "--proxy-unique-id"], cls=Server)
        relay.await_listening()
        ids = []
        for _ in range(2):
            c = self.connect(relay)
            t, _ = lst.accept()
            self.addCleanup(t.close)
            t.settimeout(IO_TIMEOUT)
            hdr, src, tlvs = self.read_v2(t)
            self.assertEqual(src, self.me(c), "the header names the relay's client")
            self.assertIn(0x05, tlvs, "UNIQUE_ID")
            self.assertTrue(0 < len(tlvs[0x05][1]) <= 128)
            ids.append(tlvs[0x05][1])
            self.assertIn(0x03, tlvs, "CRC32C")
            off, crc = tlvs[0x03]
            zeroed = hdr[:16 + off] + b"\0\0\0\0" + hdr[16 + off + 4:]
            self.assertEqual(struct.unpack("!I", crc)[0], crc32c(zeroed))
            c.sendall(b"payload")
            self.assertEqual(recv_exact(t, 7), b"payload")
        self.assertNotEqual(ids[0], ids[1], "a UNIQUE_ID per connection")

    def test_relay_terminating_mutual_tls_tells_sni_version_and_client_cn(self):
        """relay tls:// --client-ca --send-proxy v2: AUTHORITY is the SNI, and the SSL TLV has
        the TLS version, the client certificate's CN, and verify 0 (verified)."""
        import ssl
        import tempfile
        import tlsutil
        if not tlsutil.openssl_available():
            self.skipTest("openssl is needed to make the certificates")
        import shutil
        d = tempfile.mkdtemp(prefix="sockit-pki-")
        self.addCleanup(shutil.rmtree, d, True)
        pki = tlsutil.Pki(d)
        lst = self.listener()
        relay = self.start(["relay", "tls://127.0.0.1:0", "127.0.0.1:%d" % lst.getsockname()[1],
                            "--cert", pki.server, "--key", pki.server_key,
                            "--client-ca", pki.client_ca, "--send-proxy", "v2"], cls=Server)
        relay.await_listening()
        ctx = ssl.create_default_context(cafile=pki.ca)
        ctx.load_cert_chain(pki.client, pki.client_key)
        raw = self.connect(relay)
        c = ctx.wrap_socket(raw, server_hostname="localhost")
        c.sendall(b"hello")
        t, _ = lst.accept()
        self.addCleanup(t.close)
        t.settimeout(IO_TIMEOUT)
        hdr, src, tlvs = self.read_v2(t)
        self.assertEqual(tlvs[0x02][1], b"localhost", "AUTHORITY: the client's SNI")
        ssl_tlv = tlvs[0x20][1]
        client, verify = ssl_tlv[0], struct.unpack("!I", ssl_tlv[1:5])[0]
        self.assertTrue(client & 0x01 and client & 0x02, "SSL, and a certificate on this conn")
        self.assertEqual(verify, 0, "the client certificate was verified")
        subs, i = {}, 5
        while i + 3 <= len(ssl_tlv):
            st, n = ssl_tlv[i], struct.unpack("!H", ssl_tlv[i + 1:i + 3])[0]
            subs[st] = ssl_tlv[i + 3:i + 3 + n]
            i += 3 + n
        self.assertEqual(subs.get(0x21), c.version().encode())
        self.assertEqual(subs.get(0x22), b"sockit e2e client")
        self.assertEqual(recv_exact(t, 5), b"hello")
        c.close()


class NginxTests(ProxyTestCase):
    """nginx stream { listen ... proxy_protocol; proxy_pass ...; proxy_protocol on; }: sockit
    sends to nginx (relay / connect --send-proxy v1) and receives from it (serve
    --accept-proxy)."""

    def test_relay_to_nginx_to_serve(self):
        srv = self.serve("--accept-proxy", "-m", "chat", "-v")
        nport = self.nginx(srv.port)
        relay = self.start(["relay", "127.0.0.1:0", "127.0.0.1:%d" % nport, "--send-proxy",
                            "v1"], cls=Server)
        relay.await_listening()
        a = self.connect(relay)
        ra = LineReader(a)
        self.wait_proxy_line(srv, self.me(a))
        b = self.connect(relay)
        b_name = self.me(b)
        m = self.wait_proxy_line(srv, b_name)
        self.assertNotEqual(m.group(1), b_name, "via is nginx's socket")
        self.assertEqual(ra.readline(), b"* %s joined\n" % b_name.encode())
        b.sendall(b"via nginx\n")
        self.assertEqual(ra.readline(), b"[%s] via nginx\n" % b_name.encode())

    def test_connect_send_proxy_v1_to_nginx_echo(self):
        srv = self.serve("--accept-proxy", "-m", "echo", "-v")
        nport = self.nginx(srv.port)
        r = self.run_sockit(["connect", "127.0.0.1", nport, "--send-proxy", "v1"],
                            input=b"echo through nginx\n")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"echo through nginx\n")
        peers = self.proxy_lines(srv)
        self.assertEqual(len(peers), 1, srv.describe())
        self.assertRegex(peers[0][0], r"^127\.0\.0\.1:\d+$")


class ScaleOutTests(ProxyTestCase):
    """HAProxy balancing round-robin over two sockit instances with send-proxy-v2."""

    CLIENTS = 100

    def test_roundrobin_two_instances_see_real_clients(self):
        s1 = self.serve("--accept-proxy", "-m", "greet", "-v")
        s2 = self.serve("--accept-proxy", "-m", "greet", "-v")
        (port,) = self.haproxy([("", ["127.0.0.1:%d send-proxy-v2" % s1.port,
                                      "127.0.0.1:%d send-proxy-v2" % s2.port])])
        names = set()
        batch = 20
        for start in range(0, self.CLIENTS, batch):
            socks = [self.tcp(port) for _ in range(batch)]
            for s in socks:
                names.add(self.me(s))
            for s in socks:
                self.assertEqual(recv_until_eof(s), GREETING)
                s.close()
        self.assertEqual(len(names), self.CLIENTS)

        def seen():
            return {p for p, _ in self.proxy_lines(s1)}, {p for p, _ in self.proxy_lines(s2)}

        wait_until(lambda: names <= (seen()[0] | seen()[1]), 10)
        p1, p2 = seen()
        self.assertEqual(names - (p1 | p2), set(), "clients no instance saw by their address")
        self.assertTrue(p1 & names and p2 & names, "round-robin: both instances served clients")
        self.assertEqual(p1 & p2, set(), "no client was seen by both")
        # via is HAProxy's own socket (its ephemeral ports may be ones a closed client had)
        for _, v in self.proxy_lines(s1) + self.proxy_lines(s2):
            self.assertRegex(v, r"^127\.0\.0\.1:\d+$")
        for s in (s1, s2):
            self.assertFalse([l for l in s.lines() if "refused" in l], s.describe())


class RefusalTests(ProxyTestCase):
    """Every rejection cause through the command, with its message."""

    def refused(self, srv, data, text, close=False):
        c = self.connect(srv)
        if data:
            c.sendall(data)
        if close:
            c.shutdown(socket.SHUT_WR)
        recv_eof_or_reset(c)
        self.wait_refusal(srv, text)
        c.close()

    def test_untrusted_source(self):
        srv = self.serve("--accept-proxy", "--proxy-from", "10.0.0.0/8", "-m", "echo")
        c = self.connect(srv)
        name = self.me(c)
        c.sendall(v1_header("192.0.2.1", 5000))
        recv_eof_or_reset(c)
        m = self.wait_refusal(srv, "not a trusted proxy")
        self.assertIn("from %s:" % name, m.string, "the refusal names the socket's source")

    def test_each_header_failure_has_its_message(self):
        srv = self.serve("--accept-proxy", "-m", "echo", "-v", "--proxy-timeout", "0.3")
        self.refused(srv, b"hello\n", "did not start with a PROXY header")
        self.refused(srv, b"PROXY TCP4 192.0.2.1 19", "ended inside its PROXY header",
                     close=True)
        self.refused(srv, b"PROXY UNKNOWN " + b"1" * 186, "its PROXY header was too long")
        self.refused(srv, b"PROXY TCP4 010.0.0.1 10.0.0.2 1000 2000\r\n",
                     "its PROXY header had a malformed address or port")
        bad = bytearray(v2_header("192.0.2.1", 5000, "198.51.100.2", 443, with_crc=True))
        bad[16 + 3] ^= 1
        self.refused(srv, bytes(bad), "its PROXY v2 header failed its CRC32C check")
        self.refused(srv, b"PROXY TCP5 10.0.0.1 10.0.0.2 1000 2000\r\n",
                     "its PROXY header was malformed")
        self.refused(srv, b"", "no whole PROXY header within --proxy-timeout")
        # and a good header still gets through
        c = self.connect(srv)
        c.sendall(v2_header("192.0.2.9", 4000, "198.51.100.2", 443, with_crc=True))
        self.wait_proxy_line(srv, "192.0.2.9:4000")  # (header and payload at once: below)
        c.sendall(b"ok?\n")
        self.assertEqual(recv_exact(c, 4), b"ok?\n")

    def test_slow_header_closed_at_deadline_others_served(self):
        srv = self.serve("--accept-proxy", "-m", "echo", "-v", "--proxy-timeout", "0.3")
        slow = self.connect(srv)
        slow.sendall(b"PROXY")
        fast = self.connect(srv)
        fast.sendall(v1_header("192.0.2.5", 5555))
        self.wait_proxy_line(srv, "192.0.2.5:5555")
        fast.sendall(b"served\n")
        self.assertEqual(recv_exact(fast, 7), b"served\n")
        recv_eof_or_reset(slow)
        self.wait_refusal(srv, "no whole PROXY header within --proxy-timeout")
        fast.sendall(b"still\n")
        self.assertEqual(recv_exact(fast, 6), b"still\n")

    def test_header_and_payload_in_one_send(self):
        """A proxy may send its header and the client's first bytes in one segment."""
        srv = self.serve("--accept-proxy", "-m", "echo", "-v")
        c = self.connect(srv)
        c.sendall(v1_header("192.0.2.6", 6666) + b"at once\n")
        self.wait_proxy_line(srv, "192.0.2.6:6666")
        try:
            got = recv_exact(c, 8, deadline_s=5)
        except (TimeoutError, socket.timeout):
            self.fail("the bytes that came with the header were never delivered (no echo "
                      "within 5 s)\n%s" % srv.describe())
        self.assertEqual(got, b"at once\n")


class SendProxyTests(ProxyTestCase):

    def test_connect_send_proxy_v2_to_serve_echo(self):
        srv = self.serve("--accept-proxy", "-m", "echo", "-v")
        r = self.run_sockit(["connect", *srv.connect_args(), "--send-proxy", "v2"],
                            input=b"echo me\n")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"echo me\n")
        peers = self.proxy_lines(srv)
        self.assertEqual(len(peers), 1, srv.describe())
        self.assertEqual(peers[0][0], peers[0][1], "connect names its own socket: peer == via")

    def test_connect_send_proxy_v2_then_tls(self):
        """The header goes before the ClientHello; the server reads it, then handshakes."""
        srv = self.serve("--accept-proxy", "-m", "echo", "-v", address="tls://127.0.0.1:0")
        r = self.run_sockit(["connect", "tls://127.0.0.1:%d" % srv.port, "--insecure",
                             "--send-proxy", "v2"], input=b"secret echo\n")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"secret echo\n")
        self.assertEqual(len(self.proxy_lines(srv)), 1, srv.describe())

    def test_connect_send_proxy_v1_header_bytes(self):
        lst = self.listener()
        port = lst.getsockname()[1]
        got = {}

        def accept():
            s, _ = lst.accept()
            s.settimeout(IO_TIMEOUT)
            got["peer"] = "%s:%d" % s.getpeername()
            got["data"] = recv_until_eof(s)
            s.close()

        t = threading.Thread(target=accept, daemon=True)
        t.start()
        r = self.run_sockit(["connect", "127.0.0.1", port, "--send-proxy", "v1"], input=b"x\n")
        t.join(IO_TIMEOUT)
        self.assertExit(r, 0)
        self.assertIn("data", got)
        ip, sport = got["peer"].split(":")
        self.assertEqual(got["data"], b"PROXY TCP4 %s 127.0.0.1 %s %d\r\nx\n"
                         % (ip.encode(), sport.encode(), port))


class UsageTests(ProxyTestCase):

    def usage(self, args, *needles):
        r = self.run_sockit(args)
        self.assertExit(r, 2)
        self.assertOneErrorLine(r.stderr, *needles)

    def test_proxy_from_without_accept_proxy(self):
        self.usage(["serve", "127.0.0.1:0", "--proxy-from", "10.0.0.0/8"], "--accept-proxy")
        self.usage(["relay", "127.0.0.1:0", "127.0.0.1:9", "--proxy-from", "10.0.0.0/8"],
                   "--accept-proxy")

    def test_send_proxy_v3(self):
        self.usage(["connect", "127.0.0.1", "9", "--send-proxy", "v3"], "v3")
        self.usage(["relay", "127.0.0.1:0", "127.0.0.1:9", "--send-proxy", "v3"], "v3")

    def test_proxy_unique_id_without_v2(self):
        self.usage(["relay", "127.0.0.1:0", "127.0.0.1:9", "--proxy-unique-id"], "v2")
        self.usage(["relay", "127.0.0.1:0", "127.0.0.1:9", "--send-proxy", "v1",
                    "--proxy-unique-id"], "v2")

    def test_proxy_from_is_for_streams(self):
        self.usage(["serve", "udp://127.0.0.1:0", "--accept-proxy", "--proxy-from",
                    "127.0.0.0/8"], "for streams")
        self.usage(["relay", "udp://127.0.0.1:0", "udp://127.0.0.1:9", "--send-proxy", "v1"],
                   "use v2")


class DatagramTests(ProxyTestCase):
    """The datagram form: a v2 header at the start of every datagram, parsed on its own."""

    def udp_start(self, args):
        from test_udp import UdpServer
        srv = self.start(args, cls=UdpServer)
        srv.await_listening()
        return srv

    def udp_header(self, src, sport, dst, dport):
        hdr = v2_header(src, sport, dst, dport)
        return hdr[:13] + b"\x12" + hdr[14:]  # family/transport: TCP4 -> UDP4

    def test_serve_udp_strips_each_header_and_answers_the_proxy(self):
        srv = self.udp_start(["serve", "udp://127.0.0.1:0", "-m", "echo", "--accept-proxy", "-v"])
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(IO_TIMEOUT)
        s.sendto(self.udp_header("203.0.113.9", 4000, "10.0.0.1", 53) + b"payload",
                 ("127.0.0.1", srv.port))
        self.assertEqual(s.recv(100), b"payload")  # to the proxy, without the header
        srv.wait_line(r"datagram of 7 bytes from 203\.0\.113\.9:4000 via 127\.0\.0\.1:")
        s.sendto(b"no header at all", ("127.0.0.1", srv.port))
        srv.wait_line(r"dropped: .*\(--accept-proxy: every datagram must start with a PROXY v2")
        s.close()

    def test_relay_udp_sends_a_header_per_datagram(self):
        srv = self.udp_start(["serve", "udp://127.0.0.1:0", "-m", "echo", "--accept-proxy", "-v"])
        r = self.udp_start(["relay", "udp://127.0.0.1:0", "udp://127.0.0.1:%d" % srv.port,
                            "--send-proxy", "v2,crc32c"])
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(IO_TIMEOUT)
        s.bind(("127.0.0.1", 0))
        for i in range(3):
            s.sendto(b"ping %d" % i, ("127.0.0.1", r.port))
            self.assertEqual(s.recv(100), b"ping %d" % i)
        # the server saw the client's own address in each header, not the relay's
        srv.wait_line(r"datagram of 6 bytes from 127\.0\.0\.1:%d via" % s.getsockname()[1])
        s.close()
