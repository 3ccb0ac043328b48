/* buf.c - see buf.h. */
#include "base/buf.h"

#include <openssl/crypto.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void buf_init_aligned(buf *b, size_t max, size_t align)
{
    void *p;
    buf_init(b, max);
    if (max && posix_memalign(&p, align, max + 1) == 0) {
        b->data = p;
        b->cap = max + 1;
        b->data[0] = '\0';
    }
}

void buf_release(buf *b)
{
    free(b->data);
    buf_init(b, b->max);
}

void buf_wipe(buf *b)
{
    if (b->data)
        OPENSSL_cleanse(b->data, b->cap);
    buf_release(b);
}

void buf_reset(buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

int buf_reserve(buf *b, size_t n)
{
    if (b->max && (n > b->max || b->len > b->max - n))
        return -1;
    size_t need = b->len + n + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int buf_append(buf *b, const void *p, size_t n)
{
    if (buf_reserve(b, n) < 0)
        return -1;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int buf_append_str(buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_append_char(buf *b, char c)
{
    return buf_append(b, &c, 1);
}

int buf_printf(buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || buf_reserve(b, (size_t)n) < 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

char *buf_detach(buf *b, size_t *len)
{
    if (buf_reserve(b, 0) < 0)
        return NULL;
    char *p = b->data;
    if (len)
        *len = b->len;
    buf_init(b, b->max);
    return p;
}
