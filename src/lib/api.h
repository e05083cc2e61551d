/* Internal: marks the functions the shared library exports. The library is built with
 * -fvisibility=hidden, so everything without SK_API stays private to libsockit. */
#ifndef SOCKIT_API_H
#define SOCKIT_API_H

#define SK_API __attribute__((visibility("default")))

#endif
