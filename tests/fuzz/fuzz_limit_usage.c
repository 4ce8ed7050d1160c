/*
 * libFuzzer target: aigov_limit_usage_scan() against
 * aigov_limit_usage_tokens().  Invariant: for any bytes, the scanner
 * answers exactly what the jansson reader answers (return code and
 * count), and never reads outside the input (ASan: the input is copied
 * to a buffer of its exact size, not NUL terminated).
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aigov_limit.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int       rc1, rc2;
    char     *buf;
    uint64_t  t1, t2;

    buf = malloc(size ? size : 1);
    if (buf == NULL) {
        abort();
    }

    memcpy(buf, data, size);

    t1 = 0xdeadbeef;
    t2 = 0xdeadbeef;

    rc1 = aigov_limit_usage_tokens(buf, size, &t1);
    rc2 = aigov_limit_usage_scan(buf, size, &t2);

    if (rc1 != rc2 || t1 != t2) {
        abort();
    }

    free(buf);

    return 0;
}
