/* sockit — the whole public API. See docs/ and examples/ for a tour. */
#ifndef SOCKIT_H
#define SOCKIT_H

#include "addr.h"
#include "bridge.h"
#include "cidr.h"
#include "conn.h"
#include "dgram.h"
#include "error.h"
#include "event.h"
#include "frame.h"
#include "listener.h"
#include "loop.h"
#include "proxy.h"
#include "tls.h"

#define SOCKIT_VERSION "0.1.0"

#ifdef __cplusplus
extern "C" {
#endif
/* The library's version string, for checking against the header's SOCKIT_VERSION. */
const char *sk_version(void);
#ifdef __cplusplus
}
#endif
#endif
