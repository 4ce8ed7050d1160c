/*
 * libFuzzer target: aigov_rules_load() on arbitrary bytes.
 *
 * Invariants: NULL comes with a non-empty, NUL terminated message that
 * fits the buffer; loaded rules evaluate, without a body and against a
 * fixed body with attributes, to OK (status 100..599, the rule named as
 * aigov_rules_name() says or "default", a body that is valid JSON within
 * the bound, header values without CR, LF or NUL), DECLINED (no default)
 * or ERROR (a reason); match agrees with eval.  Everything is freed here,
 * so LeakSanitizer catches a leak on any path.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "aigov_rules.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static const char  body_text[] =
    "{\"model\":\"chat\",\"max_tokens\":16,\"temperature\":0.2,"
    "\"stream\":false,\"user\":null,\"input\":[\"a\",\"b\"],"
    "\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
    "{\"role\":\"user\",\"content\":\"I want a refund \\\"now\\\"\\n\"}]}";


static void
check(const aigov_rules_t *rules, const json_t *body,
    const aigov_rules_attr_t *attrs, size_t nattrs)
{
    aigov_rules_result_t   out;
    json_t                *doc;
    const char            *name;
    size_t                 i, j;
    int                    rc, k;

    k = aigov_rules_match(rules, body, attrs, nattrs);
    rc = aigov_rules_eval(rules, body, attrs, nattrs, &out);

    if (k < -1 || k >= (int) aigov_rules_count(rules)) {
        abort();
    }

    switch (rc) {

    case AIGOV_RULES_OK:
        if (out.status < 100 || out.status > 599) {
            abort();
        }

        name = (k >= 0) ? aigov_rules_name(rules, (size_t) k) : "default";

        if (out.rule == NULL || strcmp(out.rule, name) != 0
            || out.index != (size_t) (k + 1))
        {
            abort();
        }

        if (out.body != NULL) {
            if (out.body_len > AIGOV_RULES_MAX_BODY
                || strlen(out.body) > out.body_len)
            {
                abort();
            }

            doc = json_loadb(out.body, out.body_len,
                             JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
            if (doc == NULL) {
                abort();
            }

            json_decref(doc);
        }

        if (out.nheaders > AIGOV_RULES_MAX_HEADERS) {
            abort();
        }

        for (i = 0; i < out.nheaders; i++) {
            if (out.headers[i].name_len == 0
                || out.headers[i].value_len > AIGOV_RULES_MAX_HEADER_VALUE)
            {
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

        break;

    case AIGOV_RULES_DECLINED:
        if (k != -1 || out.rule != NULL || out.body != NULL) {
            abort();
        }
        break;

    case AIGOV_RULES_ERROR:
        if (out.error == NULL || out.rule == NULL || out.body != NULL
            || out.nheaders != 0)
        {
            abort();
        }
        break;

    default:
        abort();
    }

    aigov_rules_result_free(&out);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static json_t         *body;
    aigov_rules_t         *rules;
    aigov_rules_attr_t     attrs[4];
    char                   err[256];

    static const char      evil[] = "x\r\nInjected: 1\xff\xc3\"\\";

    if (body == NULL) {
        body = json_loads(body_text, 0, NULL);
        if (body == NULL) {
            abort();
        }
    }

    memset(err, 'X', sizeof(err));

    rules = aigov_rules_load((const char *) data, size, err, sizeof(err));

    if (rules == NULL) {
        if (memchr(err, '\0', sizeof(err)) == NULL || err[0] == '\0') {
            abort();
        }

        return 0;
    }

    attrs[0].name = "method";
    attrs[0].name_len = 6;
    attrs[0].value = "POST";
    attrs[0].value_len = 4;

    attrs[1].name = "header.x-tier";
    attrs[1].name_len = 13;
    attrs[1].value = "free";
    attrs[1].value_len = 4;

    attrs[2].name = "request_id";
    attrs[2].name_len = 10;
    attrs[2].value = evil;
    attrs[2].value_len = sizeof(evil) - 1;

    /* the input itself: arbitrary bytes as an attribute value */
    attrs[3].name = "header.x-request-id";
    attrs[3].name_len = 19;
    attrs[3].value = (const char *) data;
    attrs[3].value_len = size;

    check(rules, NULL, NULL, 0);
    check(rules, body, attrs, 4);

    aigov_rules_free(rules);

    return 0;
}
