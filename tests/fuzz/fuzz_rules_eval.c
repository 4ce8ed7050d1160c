/*
 * libFuzzer target: aigov_rules_eval() of a fixed rule set, using every
 * operator, path form and template kind, against arbitrary request bodies:
 * the input parsed with jansson (any JSON value, NUL bytes allowed, or no
 * body when it does not parse), and the input's bytes as attribute values
 * (invalid UTF-8, CR, LF, quotes...).
 *
 * Invariants: eval agrees with match; OK has the rule's status and name,
 * a body that is valid JSON within the bound, header values without CR,
 * LF or NUL within theirs; ERROR only for a bound, with no body and no
 * headers.  All freed here, so LeakSanitizer catches a leak on any path.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "aigov_rules.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static const char  rules_text[] =
    "{\"rules\":["
    "{\"name\":\"refund\",\"when\":{\"all\":["
    "{\"field\":\"$.messages[-1].content\",\"matches_i\":\"ref(und|ound)\"},"
    "{\"field\":\"@header.x-tier\",\"in\":[\"free\",\"trial\",1,null]}]},"
    "\"status\":503,\"headers\":{\"Retry-After\":\"30\","
    "\"X-Req\":\"id=${@header.x-request-id} ${$.messages[-1]}\"},"
    "\"response\":{\"error\":{\"message\":\"human: ${@header.x-request-id}"
    " ${$.messages}\",\"type\":\"fallback\"}}},"

    "{\"name\":\"typed\",\"when\":{\"any\":["
    "{\"field\":\"$.max_tokens\",\"lte\":16},"
    "{\"field\":\"$.temperature\",\"between\":[0,0.2]},"
    "{\"field\":\"$[0]\",\"exists\":true}]},"
    "\"status\":200,\"response\":{\"id\":\"fb-${@request_id}\","
    "\"model\":\"${$.model}\",\"max\":\"${$.max_tokens}\",\"all\":\"${$}\","
    "\"first\":\"${$[0]}\",\"last\":\"${$[-1]}\",\"t\":[\"${$.temperature}\","
    "\"$$${$.price}\",\"${@nope}\"]}},"

    "{\"name\":\"strings\",\"when\":{\"not\":{\"any\":["
    "{\"field\":\"$.model\",\"ne\":\"chat\"},"
    "{\"field\":\"$.user\",\"eq\":null},"
    "{\"field\":\"$.stream\",\"eq\":true},"
    "{\"field\":\"$.n\",\"gt\":3},"
    "{\"field\":\"$.n\",\"lt\":-3},"
    "{\"field\":\"$.n\",\"gte\":100.5},"
    "{\"field\":\"$.model\",\"not_in\":[\"chat\",\"gpt\"]},"
    "{\"field\":\"$.input\",\"len_lt\":1}]}},"
    "\"status\":429,\"headers\":{\"X-Body\":\"${$}\",\"X-N\":\"${$.n}\"},"
    "\"response\":\"${$.input}\"},"

    "{\"name\":\"attrs\",\"when\":{\"all\":["
    "{\"field\":\"@method\",\"matches\":\"^(GET|HEAD)$\"},"
    "{\"field\":\"@path\",\"len_gt\":0},"
    "{\"field\":\"@path\",\"eq\":12.5}]},"
    "\"status\":204},"

    "{\"name\":\"deep\",\"when\":{\"field\":\"$.a.b[2].c[-3].d\",\"exists\":"
    "true},\"status\":500,\"response\":[\"${$.a}\",\"${$.a.b}\","
    "\"x${$.a.b[2]}y\"]}"
    "],"
    "\"default\":{\"status\":503,\"headers\":{\"X-Id\":\"${@request_id}\"},"
    "\"response\":{\"detail\":\"${@model}: ${$.model} ${@path}\","
    "\"body\":\"${$}\"}}}";


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static aigov_rules_t  *rules;
    aigov_rules_result_t   out;
    aigov_rules_attr_t     attrs[7];
    json_t                *body, *doc;
    const char            *s;
    size_t                 i, j, half;
    int                    rc, k;
    char                   err[256];

    if (rules == NULL) {
        rules = aigov_rules_load(rules_text, sizeof(rules_text) - 1, err,
                                 sizeof(err));
        if (rules == NULL) {
            abort();
        }
    }

    body = json_loadb((const char *) data, size,
                      JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);

    s = (const char *) data;
    half = size / 2;

    attrs[0].name = "header.x-tier";
    attrs[0].value = s;
    attrs[0].value_len = half;

    attrs[1].name = "header.x-request-id";
    attrs[1].value = s + half;
    attrs[1].value_len = size - half;

    attrs[2].name = "request_id";
    attrs[2].value = s;
    attrs[2].value_len = size;

    attrs[3].name = "method";
    attrs[3].value = s;
    attrs[3].value_len = size < 4 ? size : 4;

    attrs[4].name = "path";
    attrs[4].value = s;
    attrs[4].value_len = size < 8 ? size : 8;

    attrs[5].name = "model";
    attrs[5].value = "chat";
    attrs[5].value_len = 4;

    /* a name twice: the first entry must win, not crash */
    attrs[6].name = "request_id";
    attrs[6].value = NULL;
    attrs[6].value_len = 0;

    for (i = 0; i < 7; i++) {
        attrs[i].name_len = strlen(attrs[i].name);
    }

    k = aigov_rules_match(rules, body, attrs, 7);
    rc = aigov_rules_eval(rules, body, attrs, 7, &out);

    if (k < -1 || k >= (int) aigov_rules_count(rules)) {
        abort();
    }

    if (out.rule == NULL
        || strcmp(out.rule, k >= 0 ? aigov_rules_name(rules, (size_t) k)
                                   : "default") != 0)
    {
        abort();
    }

    if (rc == AIGOV_RULES_OK) {
        if (out.status < 100 || out.status > 599) {
            abort();
        }

        if (out.body != NULL) {
            if (out.body_len > AIGOV_RULES_MAX_BODY) {
                abort();
            }

            doc = json_loadb(out.body, out.body_len,
                             JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
            if (doc == NULL) {
                abort();
            }

            json_decref(doc);
        }

        for (i = 0; i < out.nheaders; i++) {
            if (out.headers[i].value_len > AIGOV_RULES_MAX_HEADER_VALUE) {
                abort();
            }

            for (j = 0; j < out.headers[i].value_len; j++) {
                if (out.headers[i].value[j] == '\r'
                    || out.headers[i].value[j] == '\n'
                    || out.headers[i].value[j] == '\0')
                {
                    abort();
                }
            }
        }

    } else if (rc == AIGOV_RULES_ERROR) {
        /* only a bound can fail here: the input is at most a few KiB, but
         * "${$}" and escaping can grow it past 4096 in a header */
        if (out.error == NULL || out.body != NULL || out.nheaders != 0
            || strstr(out.error, "out of memory") != NULL)
        {
            abort();
        }

    } else {
        abort();
    }

    aigov_rules_result_free(&out);
    json_decref(body);

    return 0;
}
