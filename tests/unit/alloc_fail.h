/* A counting allocator for the unit tests, with failure injection. unit_tests is linked with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=free (see the Makefile),
 * so every call the library's objects (and the tests') make goes through alloc_fail.c, while
 * the C library's and OpenSSL's own allocations do not: exactly the calls sockit has to handle.
 *
 * alloc_fail_nth(n) makes the nth allocation from now fail (1: the next one) and only that one;
 * 0 disarms. Not for use while other threads allocate (the counts are atomic, the plan is not). */
#ifndef SOCKIT_TEST_ALLOC_FAIL_H
#define SOCKIT_TEST_ALLOC_FAIL_H

#include <stdbool.h>

void alloc_fail_nth(unsigned n);
/* Did the failure armed by the last alloc_fail_nth() happen? */
bool alloc_fail_fired(void);
/* Allocations made and not freed yet (only those that went through the wrappers). */
long alloc_live(void);

#endif
