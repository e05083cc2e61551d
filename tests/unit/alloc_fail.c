/* The wrappers behind alloc_fail.h. __real_X is the C library's X (or the sanitizer's, under
 * make check, so ASan still sees every block). Allocations are counted, not tracked one by one:
 * a leak check compares alloc_live() before and after, around code that frees only what it
 * allocated through these wrappers. */
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

#include "alloc_fail.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t count, size_t n);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t count, size_t n);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
void __wrap_free(void *p);

static atomic_long live;
static atomic_uint countdown; /* allocations until the one that fails; 0: none armed */
static atomic_bool fired;

void alloc_fail_nth(unsigned n)
{
    atomic_store(&fired, false);
    atomic_store(&countdown, n);
}

bool alloc_fail_fired(void)
{
    return atomic_load(&fired);
}

long alloc_live(void)
{
    return atomic_load(&live);
}

/* Is this the allocation that must fail? */
static bool must_fail(void)
{
    unsigned left = atomic_load(&countdown);
    while (left && !atomic_compare_exchange_weak(&countdown, &left, left - 1))
        ;
    if (left != 1)
        return false;
    atomic_store(&fired, true);
    return true;
}

static void *counted(void *p)
{
    if (p)
        atomic_fetch_add(&live, 1);
    return p;
}

void *__wrap_malloc(size_t n)
{
    return must_fail() ? NULL : counted(__real_malloc(n));
}

void *__wrap_calloc(size_t count, size_t n)
{
    return must_fail() ? NULL : counted(__real_calloc(count, n));
}

void *__wrap_realloc(void *p, size_t n)
{
    if (must_fail())
        return NULL; /* p stays valid, as with a real failure */
    void *q = __real_realloc(p, n);
    return p ? q : counted(q); /* moving a block does not change the count */
}

char *__wrap_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = __wrap_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

void __wrap_free(void *p)
{
    if (p)
        atomic_fetch_sub(&live, 1);
    __real_free(p);
}
