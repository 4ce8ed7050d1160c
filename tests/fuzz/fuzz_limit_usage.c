/*
 * libFuzzer target: aigov_limit_usage_scan() and aigov_limit_usage_fast()
 * against aigov_limit_usage_tokens().  Invariants: for any bytes, the
 * scanner answers exactly what the jansson reader answers (return code
 * and count); for any bytes that jansson parses, so does the structural
 * scan, and for the others it answers one of its return codes, with a
 * count only with AIGOV_OK.  Neither reads outside the input (ASan: the
 * input is copied to a buffer of its exact size, not NUL terminated).
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "aigov_limit.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int            rc1, rc2, rc3;
    char          *buf;
    json_t        *root;
    uint64_t       t1, t2, t3;
    json_error_t   jerr;

    buf = malloc(size ? size : 1);
    if (buf == NULL) {
        abort();
    }

    memcpy(buf, data, size);

    t1 = 0xdeadbeef;
    t2 = 0xdeadbeef;
    t3 = 0xdeadbeef;

    rc1 = aigov_limit_usage_tokens(buf, size, &t1);
    rc2 = aigov_limit_usage_scan(buf, size, &t2);
    rc3 = aigov_limit_usage_fast(buf, size, &t3);

    if (rc1 != rc2 || t1 != t2) {
        abort();
    }

    root = json_loadb(buf, size, 0, &jerr);

    if (root != NULL) {
        json_decref(root);

        if (rc3 != rc1 || t3 != t1) {
            abort();
        }

    } else if ((rc3 != AIGOV_OK && rc3 != AIGOV_DECLINED
                && rc3 != AIGOV_ERROR)
               || (rc3 != AIGOV_OK && t3 != 0xdeadbeef))
    {
        abort();
    }

    free(buf);

    return 0;
}
