/* A tiny unit-test harness. Each tests/unit/test_MODULE.c defines tests with TEST(name) { ... };
 * they register themselves, and tests/unit/main.c runs them all (or those whose name contains
 * argv[1]) and ends with the line "N passed, N failed".
 *
 * CHECK(cond) records a failure and goes on; REQUIRE(cond) records it and leaves the test.
 * Every wait on the network is bounded: use run_until() with a deadline, never a bare loop. */
#ifndef SOCKIT_TEST_CHECK_H
#define SOCKIT_TEST_CHECK_H

#include <stdbool.h>
#include <stdio.h>

#include <sockit/sockit.h>

typedef void (*test_fn)(void);
void test_register(const char *name, test_fn fn);
void test_fail(const char *file, int line, const char *expr);

#define TEST(name)                                                                                 \
    static void test_##name(void);                                                                 \
    __attribute__((constructor)) static void register_##name(void)                                 \
    {                                                                                              \
        test_register(#name, test_##name);                                                         \
    }                                                                                              \
    static void test_##name(void)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            test_fail(__FILE__, __LINE__, #cond);                                                  \
    } while (0)

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            test_fail(__FILE__, __LINE__, #cond);                                                  \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* Run the loop until *flag is true or timeout_ms pass. Returns *flag. */
bool run_until(sk_loop *loop, const bool *flag, int timeout_ms);

#endif
