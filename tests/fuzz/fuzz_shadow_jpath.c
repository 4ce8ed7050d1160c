/*
 * libFuzzer target: shadow JSON paths and agreement.  The input is
 * "PATH\nJSON": the path is parsed (any bytes); when it parses, it is
 * looked up in the JSON document (when that parses) and the value found is
 * compared with itself and with a copy.
 *
 * Invariants: parse errors come with a reason; steps point inside the
 * input; a value agrees with itself and with its deep copy at any
 * tolerance; agreement is symmetric.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "aigov_shadow.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static size_t
depth(json_t *v)
{
    size_t       i, d, m;
    json_t      *e;
    const char  *key;

    m = 0;

    if (json_is_array(v)) {
        json_array_foreach(v, i, e) {
            d = depth(e);
            m = d > m ? d : m;
        }
        return m + 1;
    }

    if (json_is_object(v)) {
        json_object_foreach(v, key, e) {
            d = depth(e);
            m = d > m ? d : m;
        }
        return m + 1;
    }

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char           err[128];
    size_t         i, plen;
    json_t        *doc, *v, *copy, *other;
    const char    *s, *nl;
    aigov_jpath_t  path;

    s = (const char *) data;
    nl = memchr(s, '\n', size);
    plen = nl ? (size_t) (nl - s) : size;

    err[0] = '\0';

    if (aigov_jpath_parse(s, plen, &path, err, sizeof(err)) != AIGOV_OK) {
        if (err[0] == '\0') {
            abort();
        }
        return 0;
    }

    if (path.n > AIGOV_JPATH_MAX_STEPS) {
        abort();
    }

    for (i = 0; i < path.n; i++) {
        if (path.step[i].type == AIGOV_JPATH_KEY
            && (path.step[i].key.data < s
                || path.step[i].key.data + path.step[i].key.len > s + plen))
        {
            abort();
        }
    }

    if (nl == NULL) {
        return 0;
    }

    doc = json_loadb(nl + 1, size - plen - 1, JSON_DECODE_ANY, NULL);
    if (doc == NULL) {
        return 0;
    }

    v = aigov_jpath_get(doc, &path);
    copy = v ? json_deep_copy(v) : NULL;

    if (!aigov_json_agree(v, v, 0) || (v && copy == NULL)
        || !aigov_json_agree(v, copy, 0)
        || !aigov_json_agree(copy, v, 0.5))
    {
        /* only a value nested deeper than the limit may disagree */
        if (depth(v) <= 64) {
            abort();
        }
    }

    other = json_object_get(doc, "x");

    if (aigov_json_agree(v, other, 0.01)
        != aigov_json_agree(other, v, 0.01))
    {
        abort();
    }

    json_decref(copy);
    json_decref(doc);

    return 0;
}
