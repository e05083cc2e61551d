/* sockit — the PROXY protocol header (HAProxy's doc/proxy-protocol.txt), v1 text and v2 binary.
 *
 * A proxy that forwards a connection tells the server who the client really is by sending one
 * header before any payload. These functions are pure (no I/O, no allocation, no state) so that
 * a conn layer, the command and a fuzzer can all use them on any buffer.
 *
 * Parsing is strict: anything the spec does not allow is refused with its cause, because a
 * receiver that guesses lets an untrusted peer choose its own address.
 *   v1  "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n" or "PROXY UNKNOWN...\r\n", at most 107 bytes
 *       with the CRLF; single spaces; IPv4 as a dotted quad without leading zeros, IPv6 as
 *       inet_pton accepts it; ports 0-65535 without leading zeros. For UNKNOWN the spec says the
 *       receiver must ignore anything before the CRLF, so "PROXY UNKNOWN junk\r\n" is accepted.
 *   v2  the 12-byte signature, version 2, command LOCAL or PROXY, one of the seven family and
 *       transport bytes of the spec (UNSPEC, TCP4, UDP4, TCP6, UDP6, UNIX stream, UNIX dgram),
 *       the length honoured whole and at most SK_PROXY_V2_MAX_LEN; the address block must fit
 *       in it, the rest are TLVs, each inside the header. Known TLVs are checked and returned;
 *       NOOP, NETNS and unknown types are skipped; a CRC32C TLV is verified.
 */
#ifndef SOCKIT_PROXY_H
#define SOCKIT_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "conn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Why a header was refused: negative, in a block of their own so that they never collide with
 * -errno or SK_ERR_*. sk_proxy_strerror() gives the sentence. */
typedef enum sk_proxy_error {
    SK_PROXY_BAD_SIGNATURE = -5101, /* starts with neither "PROXY " nor the v2 signature */
    SK_PROXY_TRUNCATED = -5102,     /* a datagram ends before its header does */
    SK_PROXY_TOO_LONG = -5103,      /* v1 without CRLF in 107 bytes; v2 length over the limit */
    SK_PROXY_BAD_SYNTAX = -5104,    /* v1: not "PROXY PROTO SRC DST SPORT DPORT" with 1 space */
    SK_PROXY_BAD_LINE_END = -5105,  /* v1: the line ends with LF alone, not CRLF */
    SK_PROXY_BAD_ADDRESS = -5106,   /* an address not in canonical form, or a v2 block too short */
    SK_PROXY_BAD_PORT = -5107,      /* v1: a port above 65535, with a leading zero, or not digits */
    SK_PROXY_BAD_VERSION = -5108,   /* v2: the version nibble is not 2 */
    SK_PROXY_BAD_COMMAND = -5109,   /* v2: a command other than LOCAL (0) and PROXY (1) */
    SK_PROXY_BAD_FAMILY = -5110,    /* v1 protocol or v2 family/transport byte not in the spec */
    SK_PROXY_BAD_TLV = -5111,       /* v2: a TLV runs past the header, repeats, or has a bad size */
    SK_PROXY_CRC_MISMATCH = -5112,  /* v2: the CRC32C TLV does not match the header */
} sk_proxy_error;

/* The v2 header's 16-bit length may say at most this much, so that the whole header (16 fixed
 * bytes, then the addresses and TLVs) fits in 4 KiB. */
#define SK_PROXY_V2_MAX_LEN (4096u - 16u)
/* The longest v1 line the spec allows, CRLF included. */
#define SK_PROXY_V1_MAX_LEN 107u

typedef enum sk_proxy_command {
    SK_PROXY_CMD_LOCAL = 0, /* v2 LOCAL (a health check): use the socket's own addresses */
    SK_PROXY_CMD_PROXY = 1, /* relayed on behalf of the client in src */
} sk_proxy_command;

/* The values are the v2 header's transport nibble. */
typedef enum sk_proxy_transport {
    SK_PROXY_UNSPEC = 0,
    SK_PROXY_STREAM = 1, /* TCP or a Unix stream socket */
    SK_PROXY_DGRAM = 2,  /* UDP or a Unix datagram socket */
} sk_proxy_transport;

/* Bits of the SSL TLV's client field. */
enum {
    SK_PROXY_SSL_CLIENT_SSL = 0x01,       /* the client connected over TLS */
    SK_PROXY_SSL_CLIENT_CERT_CONN = 0x02, /* it sent a certificate on this connection */
    SK_PROXY_SSL_CLIENT_CERT_SESS = 0x04, /* it sent one at least once in this TLS session */
};

/* A TLV value: data points into the buffer that was parsed, so it is valid as long as that
 * buffer is (copy it before the buffer is reused). data == NULL means the TLV was absent; a
 * zero-length TLV that was present has a non-NULL data and len 0. Not NUL-terminated. */
typedef struct sk_proxy_bytes {
    const uint8_t *data;
    size_t len;
} sk_proxy_bytes;

/* The SSL TLV (0x20) and those of its sub-TLVs that sockit knows. */
typedef struct sk_proxy_ssl {
    bool present;
    uint8_t client;                     /* SK_PROXY_SSL_CLIENT_* bits */
    uint32_t verify;                    /* 0: the client's certificate was verified */
    sk_proxy_bytes version, cn, cipher; /* "TLSv1.3", the certificate's CN, the cipher */
    sk_proxy_bytes sig_alg, key_alg;    /* the certificate's algorithms, e.g. "RSA2048" */
} sk_proxy_ssl;

typedef struct sk_proxy_header {
    int version;                  /* 1 or 2 */
    sk_proxy_command command;     /* v1 is always PROXY; v1 UNKNOWN carries no address */
    sk_proxy_transport transport; /* UNSPEC for LOCAL, v1 UNKNOWN and the v2 UNSPEC family */
    /* The client (src) and the address it connected to (dst): AF_INET, AF_INET6 or AF_UNIX
     * (a v2 Unix path is NUL-padded: an all-zero one is an unnamed socket, of length
     * sizeof(sa_family_t); a leading NUL is the abstract namespace). len == 0 when the header
     * carries no address (LOCAL, UNKNOWN, UNSPEC): then the socket's own addresses apply. A
     * LOCAL header's addresses, if a sender put any there, are ignored as the spec says. */
    sk_addr src, dst;
    /* v2 TLVs; absent ones have data == NULL (see sk_proxy_bytes). */
    sk_proxy_bytes alpn;      /* 0x01, e.g. "h2" */
    sk_proxy_bytes authority; /* 0x02, the host name the client asked for (TLS SNI) */
    sk_proxy_bytes unique_id; /* 0x05, at most 128 bytes */
    sk_proxy_ssl ssl;         /* 0x20 */
    bool crc_present;         /* a CRC32C TLV (0x03) was there, and it matched */
} sk_proxy_header;

/* Parse the header at the start of a byte stream, data[0..len).
 * Returns the header's length (> 0: the payload starts at data + that length; the bytes after
 * it do not matter), 0 when the bytes so far are a valid beginning of a header (call again with
 * more: a header may be split across reads at any byte), an sk_proxy_error, or -EINVAL when
 * data or out is NULL. Bytes are judged as they arrive: a stream that starts with neither
 * "PROXY " nor the v2 signature fails at its first byte that differs from both, a bad v2
 * version, command or family at its byte, a v2 length over the limit or too short for the
 * addresses as soon as the length is in, a v1 line without CR at its LF. out is filled only on
 * success. */
int sk_proxy_parse(const void *data, size_t len, sk_proxy_header *out);

/* The same for one datagram, which must hold the whole header (the spec forbids splitting one
 * across datagrams): a short header is SK_PROXY_TRUNCATED, never 0. Only v2: v1 cannot name
 * UDP, so a v1 line is SK_PROXY_BAD_SIGNATURE. */
int sk_proxy_parse_datagram(const void *data, size_t len, sk_proxy_header *out);

/* The sentence for a cause (sk_proxy_error), such as "the PROXY v2 header's CRC32C checksum
 * does not match its bytes"; any other code gives sk_strerror()'s text. Never NULL. */
const char *sk_proxy_strerror(int err);

/* What sk_proxy_write() puts in a header. Zero-initialise it and set what you need. */
typedef struct sk_proxy_write_opts {
    int version;                  /* 1 or 2 */
    sk_proxy_command command;     /* LOCAL: no address is sent (v1 writes "PROXY UNKNOWN") */
    sk_proxy_transport transport; /* v2: STREAM or DGRAM; UNSPEC with addresses means STREAM */
    /* The client and the address it reached, both of one family; both NULL (or len 0) sends
     * no address: v1 "UNKNOWN", v2 the UNSPEC family. v1 has no words for Unix sockets or
     * datagrams, so it sends "UNKNOWN" for Unix addresses and refuses DGRAM. */
    const sk_addr *src, *dst;
    /* v2 only (v1 with any of these is -EINVAL); data == NULL leaves a TLV out. */
    sk_proxy_bytes alpn, authority, unique_id;
    sk_proxy_ssl ssl; /* sent when present: client, verify, then version, cn, cipher, algs */
    bool crc32c;      /* add a CRC32C TLV, computed over the finished header */
} sk_proxy_write_opts;

/* Write the header into buf[0..cap). Returns its length, -ENOSPC when cap is too small, or
 * -EINVAL for options the protocol cannot say (a version other than 1 or 2, src and dst of
 * different families, a unique ID over 128 bytes, a v2 header over SK_PROXY_V2_MAX_LEN, v1 with
 * TLVs or DGRAM). Nothing is written on failure. Every header it writes, sk_proxy_parse reads
 * back with the same fields. */
int sk_proxy_write(void *buf, size_t cap, const sk_proxy_write_opts *o);

/* ---- on a conn: the header as the bottom layer of its stack, under TLS (proxy_layer.c) ---- */

/* Read a PROXY header before anything else on c (an accepted conn; a listener with
 * sk_listen_options.accept_proxy does this itself): on_connect follows once it is whole (then
 * a TLS layer may be started), and from then on sk_conn_peer_addr() and sk_conn_local_addr()
 * answer with the header's addresses (LOCAL and UNKNOWN keep the socket's). A header that is
 * bad, cut short or not whole within timeout_ms (0: 3 s) closes the conn with its cause as the
 * reason (an sk_proxy_error, SK_PROXY_TRUNCATED, -ETIMEDOUT). Bytes sent behind the header
 * are the first the conn reads. 0, -ENOMEM, -EINVAL (c is past its start). */
int sk_proxy_expect(sk_conn *c, uint64_t timeout_ms);
/* Send a header before anything else on c: call right after sk_conn_connect() (or accept),
 * before sk_tls_start(), which then handshakes after it. o is copied. A PROXY command with
 * neither src nor dst sends the conn's own addresses, read once TCP is up (then no TLVs:
 * -EINVAL). 0, -ENOMEM, -EINVAL (what sk_proxy_write refuses). */
int sk_proxy_send(sk_conn *c, const sk_proxy_write_opts *o, uint64_t timeout_ms);
/* The header c began with: 0 with *out (its TLV values point into c: valid while c lives) and
 * *via, the proxy's own address (either may be NULL); -ENOENT when c read none. */
int sk_conn_proxy_header(const sk_conn *c, sk_proxy_header *out, sk_addr *via);

/* CRC32C (Castagnoli, RFC 4960 appendix B) of data[0..len), as the v2 CRC32C TLV holds it;
 * crc32c("123456789") is 0xE3069283. */
uint32_t sk_proxy_crc32c(const void *data, size_t len);

#ifdef __cplusplus
}
#endif
#endif
