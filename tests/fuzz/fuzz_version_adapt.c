/*
 * libFuzzer target: JSON adaptation operations (include/aigov_version.h).
 *
 * Input: "OPERATION\nBODY".  Invariants: a parse error leaves a non-empty
 * NUL terminated message; a body that loads is changed by the operation
 * without crashing or leaking; the size aigov_adapt_dump() announces is
 * the size it writes; what it writes loads back to an equal document;
 * a remove applied twice changes nothing the second time.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "aigov_version.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int               rc;
    char             *out, err[192];
    size_t            oplen, n;
    json_t           *doc, *back;
    const char       *s, *nl;
    aigov_adapt_op_t  op;

    s = (const char *) data;

    nl = memchr(s, '\n', size);
    if (nl == NULL) {
        return 0;
    }

    oplen = (size_t) (nl - s);
    memset(err, 'X', sizeof(err));

    rc = aigov_adapt_op_parse(s, oplen, &op, err, sizeof(err));

    if (rc == AIGOV_ERROR) {
        n = strnlen(err, sizeof(err));

        if (n == 0 || n == sizeof(err)) {
            abort();
        }

        return 0;
    }

    if (rc != AIGOV_OK) {
        return 0;
    }

    doc = aigov_adapt_load(nl + 1, size - oplen - 1);
    if (doc == NULL) {
        return 0;
    }

    (void) aigov_adapt_apply(doc, &op);

    if (op.type == AIGOV_ADAPT_REMOVE && aigov_adapt_apply(doc, &op) != 0) {
        abort();
    }

    n = aigov_adapt_dump(doc, NULL, 0);

    if (n == 0) {
        abort();
    }

    out = malloc(n);
    if (out == NULL) {
        abort();
    }

    if (aigov_adapt_dump(doc, out, n) != n) {
        abort();
    }

    back = json_loadb(out, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);

    if (back == NULL || !json_equal(back, doc)) {
        abort();
    }

    json_decref(back);
    free(out);
    json_decref(doc);

    return 0;
}
