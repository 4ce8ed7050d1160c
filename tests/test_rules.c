/*
 * ngx_aigov: unit tests for the rule-based fallback engine
 * (include/aigov_rules.h, ngx_aigov_module/aigov_rules.c).  cmocka; one
 * behaviour per test.
 *
 * JSON in this file is written with single quotes for readability: the
 * helpers turn every ' into " before use (no test needs a literal ').
 *
 * Build and run: make -C tests run-test_rules   (also: asan, valgrind)
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>

#include "aigov_rules.h"


#define ATTR(n, v)  { (n), sizeof(n) - 1, (v), sizeof(v) - 1 }
#define NATTRS(a)   (sizeof(a) / sizeof((a)[0]))


/* ------------------------------------------------------------------------ */
/* helpers                                                                   */
/* ------------------------------------------------------------------------ */

/* ' -> ", in a malloc'd copy */
static char *
dq(const char *s)
{
    char    *p;
    size_t   i;

    p = strdup(s);
    assert_non_null(p);

    for (i = 0; p[i]; i++) {
        if (p[i] == '\'') {
            p[i] = '"';
        }
    }

    return p;
}


static aigov_rules_t *
load_ok(const char *sq)
{
    aigov_rules_t  *rules;
    char           *json, err[512];

    json = dq(sq);
    err[0] = '\0';

    rules = aigov_rules_load(json, strlen(json), err, sizeof(err));
    if (rules == NULL) {
        fail_msg("load failed: %s\n  file: %s", err, json);
    }

    free(json);

    return rules;
}


static void
load_fails(const char *sq, const char *expected)
{
    aigov_rules_t  *rules;
    char           *json, err[512];

    json = dq(sq);
    memset(err, 'X', sizeof(err));

    rules = aigov_rules_load(json, strlen(json), err, sizeof(err));
    if (rules != NULL) {
        aigov_rules_free(rules);
        fail_msg("loaded, expected: %s\n  file: %s", expected, json);
    }

    free(json);

    assert_string_equal(err, expected);
}


/* A file with one rule "r" whose "when" is cond. */
static char *
one_rule(const char *cond)
{
    char  *buf;

    buf = malloc(strlen(cond) + 128);
    assert_non_null(buf);

    sprintf(buf, "{'rules':[{'name':'r','when':%s,'status':200}]}", cond);

    return buf;
}


static void
cond_fails(const char *cond, const char *expected)
{
    char  *file;

    file = one_rule(cond);
    load_fails(file, expected);
    free(file);
}


static json_t *
parse_body(const char *sq)
{
    json_t        *doc;
    json_error_t   jerr;
    char          *json;

    if (sq == NULL) {
        return NULL;
    }

    json = dq(sq);

    doc = json_loads(json, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (doc == NULL) {
        fail_msg("bad test body: %s: %s", json, jerr.text);
    }

    free(json);

    return doc;
}


static int
holds_with(const char *cond, const char *body,
    const aigov_rules_attr_t *attrs, size_t nattrs)
{
    aigov_rules_t  *rules;
    json_t         *doc;
    char           *file;
    int             rc;

    file = one_rule(cond);
    rules = load_ok(file);
    free(file);

    doc = parse_body(body);

    rc = aigov_rules_match(rules, doc, attrs, nattrs);

    json_decref(doc);
    aigov_rules_free(rules);

    assert_true(rc == 0 || rc == -1);

    return rc == 0;
}


static int
holds(const char *cond, const char *body)
{
    return holds_with(cond, body, NULL, 0);
}


static void
assert_valid_json(const char *s, size_t len)
{
    json_t        *doc;
    json_error_t   jerr;

    /* \u0000 is valid JSON; jansson wants to be told */
    doc = json_loadb(s, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (doc == NULL) {
        fail_msg("invalid JSON output (%s): %.*s", jerr.text, (int) len, s);
    }

    json_decref(doc);
}


/* Evaluates file against body and attrs, expects AIGOV_RULES_OK. */
static void
eval_ok(const char *file, const char *body, const aigov_rules_attr_t *attrs,
    size_t nattrs, aigov_rules_t **rules, aigov_rules_result_t *out)
{
    json_t  *doc;
    int      rc;

    *rules = load_ok(file);
    doc = parse_body(body);

    rc = aigov_rules_eval(*rules, doc, attrs, nattrs, out);

    json_decref(doc);

    if (rc != AIGOV_RULES_OK) {
        fail_msg("eval: %d (%s)", rc, out->error ? out->error : "");
    }

    if (out->body != NULL) {
        assert_int_equal(strlen(out->body), out->body_len);
        assert_valid_json(out->body, out->body_len);
    }
}


/* The body the default renders from response (single quotes). */
static char *
render_with(const char *response, const char *body,
    const aigov_rules_attr_t *attrs, size_t nattrs)
{
    aigov_rules_t         *rules;
    aigov_rules_result_t   out;
    char                  *file, *copy;

    file = malloc(strlen(response) + 64);
    assert_non_null(file);
    sprintf(file, "{'default':{'status':200,'response':%s}}", response);

    eval_ok(file, body, attrs, nattrs, &rules, &out);
    free(file);

    assert_non_null(out.body);
    copy = strdup(out.body);

    aigov_rules_result_free(&out);
    aigov_rules_free(rules);

    return copy;
}


static void
assert_renders(const char *response, const char *body,
    const aigov_rules_attr_t *attrs, size_t nattrs, const char *expected)
{
    char  *got, *want;

    got = render_with(response, body, attrs, nattrs);
    want = dq(expected);

    assert_string_equal(got, want);

    free(got);
    free(want);
}


/* The value the default gives header X-T from value (single quotes). */
static char *
header_with(const char *value, const char *body,
    const aigov_rules_attr_t *attrs, size_t nattrs)
{
    aigov_rules_t         *rules;
    aigov_rules_result_t   out;
    char                  *file, *copy;
    size_t                 i;

    file = malloc(strlen(value) + 64);
    assert_non_null(file);
    sprintf(file, "{'default':{'status':200,'headers':{'X-T':'%s'}}}",
            value);

    eval_ok(file, body, attrs, nattrs, &rules, &out);
    free(file);

    assert_int_equal(out.nheaders, 1);
    assert_string_equal(out.headers[0].name, "X-T");

    for (i = 0; i < out.headers[0].value_len; i++) {
        assert_false((unsigned char) out.headers[0].value[i] < 0x20
                     && out.headers[0].value[i] != '\t');
    }

    copy = malloc(out.headers[0].value_len + 1);
    assert_non_null(copy);
    memcpy(copy, out.headers[0].value, out.headers[0].value_len);
    copy[out.headers[0].value_len] = '\0';

    aigov_rules_result_free(&out);
    aigov_rules_free(rules);

    return copy;
}


static void
assert_header(const char *value, const char *body,
    const aigov_rules_attr_t *attrs, size_t nattrs, const char *expected)
{
    char  *got;

    got = header_with(value, body, attrs, nattrs);
    assert_string_equal(got, expected);
    free(got);
}


static char *
read_file(const char *path, size_t *len)
{
    FILE    *f;
    char    *buf;
    long     n;

    f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }

    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);

    buf = malloc((size_t) n + 1);
    assert_non_null(buf);

    assert_int_equal(fread(buf, 1, (size_t) n, f), (size_t) n);
    buf[n] = '\0';
    fclose(f);

    *len = (size_t) n;

    return buf;
}


/* ------------------------------------------------------------------------ */
/* loading                                                                   */
/* ------------------------------------------------------------------------ */

static void
test_load_example_file(void **state)
{
    aigov_rules_t  *rules;
    char           *buf, err[512];
    size_t          len;

    (void) state;

    /* make -C tests runs from tests/; by hand maybe from the root */
    buf = read_file("../conf/rules-example.json", &len);
    if (buf == NULL) {
        buf = read_file("conf/rules-example.json", &len);
    }

    assert_non_null(buf);

    rules = aigov_rules_load(buf, len, err, sizeof(err));
    if (rules == NULL) {
        fail_msg("conf/rules-example.json: %s", err);
    }

    assert_true(aigov_rules_count(rules) >= 3);

    aigov_rules_free(rules);
    free(buf);
}


static void
test_load_default_only(void **state)
{
    aigov_rules_t  *rules;

    (void) state;

    rules = load_ok("{'default':{'status':503}}");
    assert_int_equal(aigov_rules_count(rules), 0);
    aigov_rules_free(rules);
}


static void
test_load_rules_without_default(void **state)
{
    aigov_rules_t  *rules;

    (void) state;

    rules = load_ok("{'rules':[{'name':'a','when':{'all':[]},"
                    "'status':200}]}");
    assert_int_equal(aigov_rules_count(rules), 1);
    aigov_rules_free(rules);
}


static void
test_load_comments_ignored(void **state)
{
    aigov_rules_t  *rules;

    (void) state;

    rules = load_ok("{'comment':'top','rules':[{'comment':'r','name':'a',"
                    "'when':{'all':[]},'status':200}],"
                    "'default':{'comment':'d','status':503}}");
    aigov_rules_free(rules);
}


static void
test_load_not_nul_terminated(void **state)
{
    aigov_rules_t  *rules;
    char            buf[64], err[128];

    (void) state;

    memcpy(buf, "{\"default\":{\"status\":503}}GARBAGE", 33);

    rules = aigov_rules_load(buf, 26, err, sizeof(err));
    assert_non_null(rules);
    aigov_rules_free(rules);
}


static void
test_free_null(void **state)
{
    (void) state;

    aigov_rules_free(NULL);
    aigov_rules_result_free(NULL);
}


static void
test_count_and_names(void **state)
{
    aigov_rules_t  *rules;

    (void) state;

    rules = load_ok("{'rules':[{'name':'first','when':{'all':[]},"
                    "'status':200},{'name':'second','when':{'all':[]},"
                    "'status':200}]}");

    assert_int_equal(aigov_rules_count(rules), 2);
    assert_string_equal(aigov_rules_name(rules, 0), "first");
    assert_string_equal(aigov_rules_name(rules, 1), "second");
    assert_null(aigov_rules_name(rules, 2));

    aigov_rules_free(rules);
}


static void
test_uses_body_from_condition(void **state)
{
    aigov_rules_t  *rules;

    (void) state;

    rules = load_ok("{'rules':[{'name':'a','when':{'field':'$.x',"
                    "'exists':true},'status':200}]}");
    assert_true(aigov_rules_uses_body(rules));
    aigov_rules_free(rules);
}


static void
test_uses_body_from_template(void **state)
{
    aigov_rules_t  *rules;

    (void) state;

    rules = load_ok("{'default':{'status':503,'response':'${$.model}'}}");
    assert_true(aigov_rules_uses_body(rules));
    aigov_rules_free(rules);
}


static void
test_uses_body_attributes_only(void **state)
{
    aigov_rules_t  *rules;

    (void) state;

    rules = load_ok("{'rules':[{'name':'a','when':{'field':'@method',"
                    "'eq':'GET'},'status':200,"
                    "'headers':{'X-A':'${@client}'}}]}");
    assert_false(aigov_rules_uses_body(rules));
    aigov_rules_free(rules);
}


static void
test_attr_names_distinct(void **state)
{
    aigov_rules_t  *rules;

    (void) state;

    rules = load_ok("{'rules':[{'name':'a','when':{'any':["
                    "{'field':'@method','eq':'GET'},"
                    "{'field':'@header.x-tier','eq':'free'},"
                    "{'field':'@method','eq':'POST'}]},'status':200,"
                    "'response':'${@request_id} ${@method}'}]}");

    assert_int_equal(aigov_rules_nattrs(rules), 3);
    assert_string_equal(aigov_rules_attr_name(rules, 0), "method");
    assert_string_equal(aigov_rules_attr_name(rules, 1), "header.x-tier");
    assert_string_equal(aigov_rules_attr_name(rules, 2), "request_id");
    assert_null(aigov_rules_attr_name(rules, 3));

    aigov_rules_free(rules);
}


/* ------------------------------------------------------------------------ */
/* load errors: the file                                                     */
/* ------------------------------------------------------------------------ */

static void
test_err_not_json(void **state)
{
    (void) state;
    load_fails("rules", "invalid JSON at line 1, column 5: invalid token "
               "near 'rules'");
}


static void
test_err_truncated_json(void **state)
{
    (void) state;
    load_fails("{'rules':[", "invalid JSON at line 1, column 10: ']' "
               "expected near end of file");
}


static void
test_err_duplicate_json_key(void **state)
{
    (void) state;
    load_fails("{'default':{'status':503,'status':200}}",
               "invalid JSON at line 1, column 33: duplicate object key "
               "near '\"status\"'");
}


static void
test_err_empty(void **state)
{
    char  err[64];

    (void) state;

    assert_null(aigov_rules_load("", 0, err, sizeof(err)));
    assert_string_equal(err, "the rules file is empty");
}


static void
test_err_not_an_object(void **state)
{
    (void) state;
    load_fails("[]", "the rules file must be a JSON object, got an array");
}


static void
test_err_unknown_top_key(void **state)
{
    (void) state;
    load_fails("{'rule':[],'default':{'status':503}}",
               "unknown key \"rule\" (expected \"rules\", \"default\", "
               "\"comment\")");
}


static void
test_err_no_rules_no_default(void **state)
{
    (void) state;
    load_fails("{}", "no rules: \"rules\" is missing or empty and there is "
               "no \"default\"");
}


static void
test_err_empty_rules_no_default(void **state)
{
    (void) state;
    load_fails("{'rules':[]}", "no rules: \"rules\" is missing or empty and "
               "there is no \"default\"");
}


static void
test_err_rules_not_array(void **state)
{
    (void) state;
    load_fails("{'rules':{}}", "\"rules\" must be an array, got an object");
}


static void
test_err_comment_not_string(void **state)
{
    (void) state;
    load_fails("{'comment':1,'default':{'status':503}}",
               "\"comment\" must be a string or an array of strings");
}


static void
test_err_too_many_rules(void **state)
{
    char    *buf, *p;
    size_t   i;

    (void) state;

    buf = malloc(64 * 1024);
    assert_non_null(buf);

    p = buf + sprintf(buf, "{'rules':[");

    for (i = 0; i < AIGOV_RULES_MAX_RULES + 1; i++) {
        p += sprintf(p, "%s{'name':'r%zu','when':{'all':[]},'status':200}",
                     i ? "," : "", i);
    }

    strcpy(p, "]}");

    load_fails(buf, "too many rules: 1001 (at most 1000)");

    free(buf);
}


static void
test_max_rules_load(void **state)
{
    aigov_rules_t  *rules;
    char           *buf, *p;
    size_t          i;

    (void) state;

    buf = malloc(64 * 1024);
    assert_non_null(buf);

    p = buf + sprintf(buf, "{'rules':[");

    for (i = 0; i < AIGOV_RULES_MAX_RULES; i++) {
        p += sprintf(p, "%s{'name':'r%zu','when':{'all':[]},'status':200}",
                     i ? "," : "", i);
    }

    strcpy(p, "]}");

    rules = load_ok(buf);
    assert_int_equal(aigov_rules_count(rules), AIGOV_RULES_MAX_RULES);
    aigov_rules_free(rules);

    free(buf);
}


static void
test_err_null_err_buffer(void **state)
{
    (void) state;

    assert_null(aigov_rules_load("[]", 2, NULL, 0));
    assert_null(aigov_rules_load("[]", 2, NULL, 100));
}


static void
test_err_truncated_message(void **state)
{
    char  err[8];

    (void) state;

    memset(err, 'X', sizeof(err));
    assert_null(aigov_rules_load("[]", 2, err, sizeof(err)));
    assert_string_equal(err, "the rul");
}


/* ------------------------------------------------------------------------ */
/* load errors: rules and the default                                        */
/* ------------------------------------------------------------------------ */

static void
test_err_rule_not_object(void **state)
{
    (void) state;
    load_fails("{'rules':['x']}", "rule #1: must be an object, got a string");
}


static void
test_err_rule_missing_name(void **state)
{
    (void) state;
    load_fails("{'rules':[{'when':{'all':[]},'status':200}]}",
               "rule #1: \"name\" is missing");
}


static void
test_err_rule_name_not_string(void **state)
{
    (void) state;
    load_fails("{'rules':[{'name':7,'when':{'all':[]},'status':200}]}",
               "rule #1: \"name\" must be a string, got a number");
}


static void
test_err_rule_bad_name(void **state)
{
    (void) state;
    load_fails("{'rules':[{'name':'a b','when':{'all':[]},'status':200}]}",
               "rule #1: bad name \"a b\" (1..128 of A-Z a-z 0-9 . _ : -)");
}


static void
test_err_rule_empty_name(void **state)
{
    (void) state;
    load_fails("{'rules':[{'name':'','when':{'all':[]},'status':200}]}",
               "rule #1: bad name \"\" (1..128 of A-Z a-z 0-9 . _ : -)");
}


static void
test_err_rule_name_default_reserved(void **state)
{
    (void) state;
    load_fails("{'rules':[{'name':'default','when':{'all':[]},"
               "'status':200}]}",
               "rule #1: the name \"default\" is reserved");
}


static void
test_err_rule_duplicate_name(void **state)
{
    (void) state;
    load_fails("{'rules':[{'name':'a','when':{'all':[]},'status':200},"
               "{'name':'b','when':{'all':[]},'status':200},"
               "{'name':'a','when':{'all':[]},'status':200}]}",
               "rule \"a\" (#3): duplicate name (rule #1 has it)");
}


static void
test_err_rule_unknown_key(void **state)
{
    (void) state;
    load_fails("{'rules':[{'name':'a','when':{'all':[]},'status':200,"
               "'respnse':{}}]}",
               "rule \"a\" (#1): unknown key \"respnse\" (expected \"name\", "
               "\"when\", \"status\", \"headers\", \"response\", "
               "\"comment\")");
}


static void
test_err_rule_missing_when(void **state)
{
    (void) state;
    load_fails("{'rules':[{'name':'a','status':200}]}",
               "rule \"a\" (#1): \"when\" is missing (write {\"all\": []} "
               "to match every request)");
}


static void
test_err_rule_missing_status(void **state)
{
    (void) state;
    load_fails("{'rules':[{'name':'a','when':{'all':[]}}]}",
               "rule \"a\" (#1): \"status\" is missing");
}


static void
test_err_status_too_low(void **state)
{
    (void) state;
    load_fails("{'rules':[{'name':'a','when':{'all':[]},'status':99}]}",
               "rule \"a\" (#1): \"status\" must be an integer from 100 to "
               "599");
}


static void
test_err_status_too_high(void **state)
{
    (void) state;
    load_fails("{'rules':[{'name':'a','when':{'all':[]},'status':600}]}",
               "rule \"a\" (#1): \"status\" must be an integer from 100 to "
               "599");
}


static void
test_err_status_string(void **state)
{
    (void) state;
    load_fails("{'rules':[{'name':'a','when':{'all':[]},'status':'200'}]}",
               "rule \"a\" (#1): \"status\" must be an integer from 100 to "
               "599");
}


static void
test_err_status_real(void **state)
{
    (void) state;
    load_fails("{'rules':[{'name':'a','when':{'all':[]},'status':200.0}]}",
               "rule \"a\" (#1): \"status\" must be an integer from 100 to "
               "599");
}


static void
test_status_bounds_accepted(void **state)
{
    aigov_rules_t  *rules;

    (void) state;

    rules = load_ok("{'rules':[{'name':'a','when':{'all':[]},'status':100}],"
                    "'default':{'status':599}}");
    aigov_rules_free(rules);
}


static void
test_err_default_not_object(void **state)
{
    (void) state;
    load_fails("{'default':503}", "default: must be an object, got a number");
}


static void
test_err_default_with_when(void **state)
{
    (void) state;
    load_fails("{'default':{'status':503,'when':{'all':[]}}}",
               "default: unknown key \"when\" (expected \"status\", "
               "\"headers\", \"response\", \"comment\")");
}


static void
test_err_default_bad_status(void **state)
{
    (void) state;
    load_fails("{'default':{'status':0}}",
               "default: \"status\" must be an integer from 100 to 599");
}


static void
test_err_second_rule_named_in_message(void **state)
{
    (void) state;
    load_fails("{'rules':[{'name':'ok','when':{'all':[]},'status':200},"
               "{'name':'small-classify','when':{'field':'$.max_tokens',"
               "'lte':'16'},'status':200}]}",
               "rule \"small-classify\" (#2): when: \"lte\" needs a number, "
               "got a string");
}


/* ------------------------------------------------------------------------ */
/* load errors: conditions                                                   */
/* ------------------------------------------------------------------------ */

static void
test_err_cond_not_object(void **state)
{
    (void) state;
    cond_fails("[]", "rule \"r\" (#1): when: a condition must be an object, "
               "got an array");
}


static void
test_err_cond_in_list_not_object(void **state)
{
    (void) state;
    cond_fails("{'all':[{'field':'$.a','exists':true},3]}",
               "rule \"r\" (#1): when.all[1]: a condition must be an "
               "object, got a number");
}


static void
test_err_unknown_operator(void **state)
{
    (void) state;
    cond_fails("{'field':'$.a','gtee':1}",
               "rule \"r\" (#1): when: unknown condition operator \"gtee\"");
}


static void
test_err_unknown_operator_nested(void **state)
{
    (void) state;
    cond_fails("{'any':[{'not':{'field':'$.a','regex':'x'}}]}",
               "rule \"r\" (#1): when.any[0].not: unknown condition "
               "operator \"regex\"");
}


static void
test_err_two_operators(void **state)
{
    (void) state;
    cond_fails("{'field':'$.a','gte':1,'lte':5}",
               "rule \"r\" (#1): when: two operators, \"gte\" and \"lte\", "
               "in one condition: combine conditions with \"all\"");
}


static void
test_err_combinator_with_field(void **state)
{
    (void) state;
    cond_fails("{'all':[],'field':'$.a'}",
               "rule \"r\" (#1): when: \"all\" must be the only key of its "
               "condition (found \"field\" too)");
}


static void
test_err_two_combinators(void **state)
{
    (void) state;
    cond_fails("{'all':[],'any':[]}",
               "rule \"r\" (#1): when: \"all\" and \"any\" in one "
               "condition: nest them");
}


static void
test_err_empty_condition(void **state)
{
    (void) state;
    cond_fails("{}", "rule \"r\" (#1): when: an empty condition: write "
               "\"field\" and an operator, or \"all\", \"any\", \"not\"");
}


static void
test_err_operator_without_field(void **state)
{
    (void) state;
    cond_fails("{'eq':1}", "rule \"r\" (#1): when: \"eq\" needs a "
               "\"field\"");
}


static void
test_err_field_not_string(void **state)
{
    (void) state;
    cond_fails("{'field':1,'eq':1}",
               "rule \"r\" (#1): when: \"field\" must be a string (a path "
               "such as \"$.model\" or \"@method\"), got a number");
}


static void
test_err_field_without_operator(void **state)
{
    (void) state;
    cond_fails("{'field':'$.a'}", "rule \"r\" (#1): when: the condition on "
               "\"$.a\" has no operator");
}


static void
test_err_all_not_array(void **state)
{
    (void) state;
    cond_fails("{'all':{}}", "rule \"r\" (#1): when: \"all\" needs an array "
               "of conditions, got an object");
}


static void
test_err_not_not_object(void **state)
{
    (void) state;
    cond_fails("{'not':[]}", "rule \"r\" (#1): when.not: a condition must "
               "be an object, got an array");
}


static void
test_depth_limit_accepted(void **state)
{
    aigov_rules_t  *rules;
    char            cond[512], *file;
    int             i;

    (void) state;

    /* 15 "not" levels around a leaf: 16 levels */
    cond[0] = '\0';
    for (i = 0; i < AIGOV_RULES_MAX_DEPTH - 1; i++) {
        strcat(cond, "{'not':");
    }
    strcat(cond, "{'field':'$.a','exists':true}");
    for (i = 0; i < AIGOV_RULES_MAX_DEPTH - 1; i++) {
        strcat(cond, "}");
    }

    file = one_rule(cond);
    rules = load_ok(file);
    free(file);

    aigov_rules_free(rules);
}


static void
test_err_depth_exceeded(void **state)
{
    char  cond[512], *file, expected[512];
    int   i;

    (void) state;

    cond[0] = '\0';
    for (i = 0; i < AIGOV_RULES_MAX_DEPTH; i++) {
        strcat(cond, "{'not':");
    }
    strcat(cond, "{'field':'$.a','exists':true}");
    for (i = 0; i < AIGOV_RULES_MAX_DEPTH; i++) {
        strcat(cond, "}");
    }

    strcpy(expected, "rule \"r\" (#1): when");
    for (i = 0; i < AIGOV_RULES_MAX_DEPTH; i++) {
        strcat(expected, ".not");
    }
    strcat(expected, ": conditions nested deeper than 16 levels");

    file = one_rule(cond);
    load_fails(file, expected);
    free(file);
}


static void
test_err_too_many_conditions(void **state)
{
    char    *cond, *p;
    size_t   i;

    (void) state;

    cond = malloc(64 * 1024);
    assert_non_null(cond);

    /* the "all" itself counts: 1024 leaves make 1025 conditions */
    p = cond + sprintf(cond, "{'all':[");
    for (i = 0; i < AIGOV_RULES_MAX_CONDS; i++) {
        p += sprintf(p, "%s{'field':'$.a','exists':true}", i ? "," : "");
    }
    strcpy(p, "]}");

    cond_fails(cond, "rule \"r\" (#1): when.all[1023]: more than 1024 "
               "conditions in one rule");

    free(cond);
}


static void
test_err_eq_array(void **state)
{
    (void) state;
    cond_fails("{'field':'$.a','eq':[1]}", "rule \"r\" (#1): when: \"eq\" "
               "needs a string, number, boolean or null, got an array");
}


static void
test_err_ne_object(void **state)
{
    (void) state;
    cond_fails("{'field':'$.a','ne':{}}", "rule \"r\" (#1): when: \"ne\" "
               "needs a string, number, boolean or null, got an object");
}


static void
test_err_lt_string(void **state)
{
    (void) state;
    cond_fails("{'field':'$.a','lt':'5'}", "rule \"r\" (#1): when: \"lt\" "
               "needs a number, got a string");
}


static void
test_err_gte_bool(void **state)
{
    (void) state;
    cond_fails("{'field':'$.a','gte':true}", "rule \"r\" (#1): when: "
               "\"gte\" needs a number, got a boolean");
}


static void
test_err_between_shape(void **state)
{
    (void) state;
    cond_fails("{'field':'$.a','between':[1]}", "rule \"r\" (#1): when: "
               "\"between\" needs [lo, hi], two numbers");
}


static void
test_err_between_strings(void **state)
{
    (void) state;
    cond_fails("{'field':'$.a','between':['1','2']}", "rule \"r\" (#1): "
               "when: \"between\" needs [lo, hi], two numbers");
}


static void
test_err_between_reversed(void **state)
{
    (void) state;
    cond_fails("{'field':'$.a','between':[5,1]}", "rule \"r\" (#1): when: "
               "\"between\": lo is greater than hi");
}


static void
test_err_in_not_array(void **state)
{
    (void) state;
    cond_fails("{'field':'$.a','in':'free'}", "rule \"r\" (#1): when: \"in\" "
               "needs a non-empty array of strings, numbers, booleans or "
               "null, got a string");
}


static void
test_err_in_empty(void **state)
{
    (void) state;
    cond_fails("{'field':'$.a','not_in':[]}", "rule \"r\" (#1): when: "
               "\"not_in\" needs a non-empty array of strings, numbers, "
               "booleans or null, got an empty array");
}


static void
test_err_in_element_object(void **state)
{
    (void) state;
    cond_fails("{'field':'$.a','in':['a',1,{}]}", "rule \"r\" (#1): when: "
               "\"in\": element [2] is an object; elements must be strings, "
               "numbers, booleans or null");
}


static void
test_err_in_too_many(void **state)
{
    char    *cond, *p;
    size_t   i;

    (void) state;

    cond = malloc(16 * 1024);
    assert_non_null(cond);

    p = cond + sprintf(cond, "{'field':'$.a','in':[");
    for (i = 0; i < AIGOV_RULES_MAX_SET + 1; i++) {
        p += sprintf(p, "%s%zu", i ? "," : "", i);
    }
    strcpy(p, "]}");

    cond_fails(cond, "rule \"r\" (#1): when: \"in\": more than 1024 values");

    free(cond);
}


static void
test_err_exists_not_bool(void **state)
{
    (void) state;
    cond_fails("{'field':'$.a','exists':1}", "rule \"r\" (#1): when: "
               "\"exists\" needs true or false, got a number");
}


static void
test_err_len_negative(void **state)
{
    (void) state;
    cond_fails("{'field':'$.a','len_gt':-1}", "rule \"r\" (#1): when: "
               "\"len_gt\" needs a non-negative integer, got a negative "
               "number");
}


static void
test_err_len_real(void **state)
{
    (void) state;
    cond_fails("{'field':'$.a','len_lt':1.5}", "rule \"r\" (#1): when: "
               "\"len_lt\" needs a non-negative integer, got a number");
}


static void
test_err_matches_not_string(void **state)
{
    (void) state;
    cond_fails("{'field':'$.a','matches':1}", "rule \"r\" (#1): when: "
               "\"matches\" needs a string (a POSIX extended regex), got a "
               "number");
}


static void
test_err_matches_empty(void **state)
{
    (void) state;
    cond_fails("{'field':'$.a','matches':''}", "rule \"r\" (#1): when: "
               "\"matches\" needs a non-empty regex");
}


static void
test_err_bad_regex(void **state)
{
    (void) state;
    cond_fails("{'field':'$.a','matches':'ab(c'}", "rule \"r\" (#1): when: "
               "\"matches\": bad regex \"ab(c\": Unmatched ( or \\(");
}


static void
test_err_bad_regex_bracket(void **state)
{
    (void) state;
    cond_fails("{'field':'$.a','matches_i':'[a-'}", "rule \"r\" (#1): when: "
               "\"matches_i\": bad regex \"[a-\": Unmatched [, [^, [:, [., "
               "or [=");
}


static void
test_err_regex_inline_flags(void **state)
{
    (void) state;
    cond_fails("{'field':'$.a','matches':'(?i)refund'}", "rule \"r\" (#1): "
               "when: \"matches\": \"(?\" (inline flags such as \"(?i)\", "
               "PCRE groups) is not POSIX extended regex; use \"matches_i\" "
               "for case-insensitive matching");
}


static void
test_err_regex_backreference(void **state)
{
    (void) state;
    cond_fails("{'field':'$.a','matches':'(a*)\\\\1'}", "rule \"r\" (#1): "
               "when: \"matches\": backreferences (\\1) are not supported");
}


static void
test_regex_backslash_digit_in_bracket_allowed(void **state)
{
    (void) state;

    /* in a bracket expression a backslash is an ordinary character */
    assert_true(holds("{'field':'$.a','matches':'^[\\\\1]+$'}",
                      "{'a':'1\\\\1'}"));
}


static void
test_err_regex_unmatched_close(void **state)
{
    (void) state;
    cond_fails("{'field':'$.a','matches':'a)|(b'}", "rule \"r\" (#1): "
               "when: \"matches\": unmatched \")\" at offset 1");
}


static void
test_err_regex_repetition_over_255(void **state)
{
    (void) state;
    cond_fails("{'field':'$.a','matches':'a{256}'}", "rule \"r\" (#1): "
               "when: \"matches\": counted repetition over 255");
}


static void
test_err_regex_too_complex(void **state)
{
    (void) state;
    cond_fails("{'field':'$.a','matches':'((a{100}){100})'}",
               "rule \"r\" (#1): when: \"matches\": regex too complex (its "
               "repetitions expand to more than 4096 atoms)");
}


static void
test_err_regex_nested_plus(void **state)
{
    (void) state;

    /* each "+" doubles what glibc compiles: 2^13 copies of "a" */
    cond_fails("{'field':'$.a','matches':'(((((((((((((a)+)+)+)+)+)+)+)+)+)+)+"
               ")+)+'}",
               "rule \"r\" (#1): when: \"matches\": regex too complex (its "
               "repetitions expand to more than 4096 atoms)");
}


static void
test_err_regex_stacked_repetitions(void **state)
{
    (void) state;
    cond_fails("{'field':'$.a','matches':'refund.*?now'}", "rule \"r\" (#1): "
               "when: \"matches\": two repetitions in a row at offset 8 "
               "(POSIX has no lazy \"*?\" or possessive \"*+\")");
}


static void
test_err_regex_repeated_nullable(void **state)
{
    (void) state;
    cond_fails("{'field':'$.a','matches':'x(a?b?)+'}", "rule \"r\" (#1): "
               "when: \"matches\": the repetition at offset 7 repeats what "
               "can match the empty string, as in \"(a*)*\"");
}


static void
test_err_regex_repeated_empty_alternative(void **state)
{
    (void) state;
    cond_fails("{'field':'$.a','matches':'(a|){2}'}", "rule \"r\" (#1): "
               "when: \"matches\": the repetition at offset 4 repeats what "
               "can match the empty string, as in \"(a*)*\"");
}


static void
test_err_regex_too_many_anchors(void **state)
{
    char  cond[256], *p;
    int   i;

    (void) state;

    p = cond + sprintf(cond, "{'field':'$.a','matches':'");
    for (i = 0; i < 17; i++) {
        p += sprintf(p, "^$");
    }
    strcpy(p, "'}");

    cond_fails(cond, "rule \"r\" (#1): when: \"matches\": more than 32 "
               "anchors (^ and $)");
}


static void
test_regex_usual_patterns_accepted(void **state)
{
    aigov_rules_t  *rules;
    char           *file;

    (void) state;

    file = one_rule("{'all':["
                    "{'field':'$.a','matches':'(^|[^a-z])refund([^a-z]|$)'},"
                    "{'field':'$.a','matches':'^[a-z0-9._-]+@[a-z]+[.]com$'},"
                    "{'field':'$.a','matches':'(ab)*c+d?e{2,3}f{,2}g{1,}'},"
                    "{'field':'$.a','matches':'^(gpt-4|claude)(-[a-z]+)*$'},"
                    "{'field':'$.a','matches_i':'[[:alpha:]]{3}[]x]'}]}");
    rules = load_ok(file);
    free(file);

    aigov_rules_free(rules);
}


static void
test_err_regex_too_long(void **state)
{
    char  cond[2048], *p;

    (void) state;

    p = cond + sprintf(cond, "{'field':'$.a','matches':'");
    memset(p, 'a', AIGOV_RULES_MAX_REGEX + 1);
    strcpy(p + AIGOV_RULES_MAX_REGEX + 1, "'}");

    cond_fails(cond, "rule \"r\" (#1): when: \"matches\": regex longer than "
               "1024 bytes");
}


static void
test_err_nul_in_file(void **state)
{
    (void) state;

    /* jansson refuses \u0000 in the file: no NUL reaches a regex or path */
    cond_fails("{'field':'$.a','matches':'a\\u0000b'}", "invalid JSON at "
               "line 1, column 64: \\u0000 is not allowed without "
               "JSON_ALLOW_NUL near '\"a\\u0000b\"'");
}


static void
test_err_regex_nesting(void **state)
{
    char  cond[256];

    (void) state;

    sprintf(cond, "{'field':'$.a','matches':'%s'}",
            "((((((((((((((((((((((((((((((((((a))))))))))))))))))))))))))))"
            "))))))");

    cond_fails(cond, "rule \"r\" (#1): when: \"matches\": parentheses nested "
               "deeper than 32");
}


/* ------------------------------------------------------------------------ */
/* load errors: paths                                                        */
/* ------------------------------------------------------------------------ */

static void
path_fails(const char *path, const char *expected)
{
    char  cond[1024], want[1024];

    sprintf(cond, "{'field':'%s','exists':true}", path);
    sprintf(want, "rule \"r\" (#1): when: %s", expected);

    cond_fails(cond, want);
}


static void
test_err_path_empty(void **state)
{
    (void) state;
    path_fails("", "bad path \"\": must start with \"$\" (the body) or "
               "\"@\" (an attribute)");
}


static void
test_err_path_no_root(void **state)
{
    (void) state;
    path_fails("model", "bad path \"model\": must start with \"$\" (the "
               "body) or \"@\" (an attribute)");
}


static void
test_err_path_trailing_dot(void **state)
{
    (void) state;
    path_fails("$.", "bad path \"$.\": expected a key (A-Z a-z 0-9 _ -) at "
               "offset 2");
}


static void
test_err_path_double_dot(void **state)
{
    (void) state;
    path_fails("$..a", "bad path \"$..a\": expected a key (A-Z a-z 0-9 _ -) "
               "at offset 2");
}


static void
test_err_path_no_separator(void **state)
{
    (void) state;
    path_fails("$a", "bad path \"$a\": expected \".\" or \"[\" at offset 1");
}


static void
test_err_path_bad_key_char(void **state)
{
    (void) state;
    path_fails("$.a b", "bad path \"$.a b\": expected \".\" or \"[\" at "
               "offset 3");
}


static void
test_err_path_index_not_number(void **state)
{
    (void) state;
    path_fails("$[x]", "bad path \"$[x]\": bad array index at offset 1 "
               "(0, 1, ... or -1, -2, ...)");
}


static void
test_err_path_index_leading_zero(void **state)
{
    (void) state;
    path_fails("$.a[01]", "bad path \"$.a[01]\": bad array index at offset "
               "3 (0, 1, ... or -1, -2, ...)");
}


static void
test_err_path_index_minus_zero(void **state)
{
    (void) state;
    path_fails("$[-0]", "bad path \"$[-0]\": bad array index at offset 1 "
               "(0, 1, ... or -1, -2, ...)");
}


static void
test_err_path_index_unclosed(void **state)
{
    (void) state;
    path_fails("$[1", "bad path \"$[1\": expected \"]\" at offset 3");
}


static void
test_err_path_index_too_long(void **state)
{
    (void) state;
    path_fails("$[1234567890]", "bad path \"$[1234567890]\": array index of "
               "more than 9 digits at offset 1");
}


static void
test_err_path_key_too_long(void **state)
{
    char  path[128], want[512];

    (void) state;

    strcpy(path, "$.");
    memset(path + 2, 'k', 65);
    path[67] = '\0';

    sprintf(want, "bad path \"%s\": key longer than 64 bytes at offset 2",
            path);

    path_fails(path, want);
}


static void
test_err_path_too_many_steps(void **state)
{
    char  path[256];
    int   i;

    (void) state;

    strcpy(path, "$");
    for (i = 0; i < AIGOV_RULES_MAX_STEPS + 1; i++) {
        strcat(path, "[0]");
    }

    path_fails(path, "bad path \"$[0][0][0][0][0][0][0][0][0][0][0][0][0][0]"
               "[0][0][0][0][0][0][0][0][0][0][0][0][...\": more than 32 "
               "steps");
}


static void
test_err_path_too_long(void **state)
{
    char  path[512];

    (void) state;

    strcpy(path, "$.");
    memset(path + 2, 'a', 300);
    path[302] = '\0';

    path_fails(path, "bad path \"$.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
               "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\": longer than 256 "
               "bytes");
}


static void
test_err_path_bare_at(void **state)
{
    (void) state;
    path_fails("@", "bad path \"@\": expected an attribute name after "
               "\"@\"");
}


static void
test_err_path_attr_uppercase(void **state)
{
    (void) state;
    path_fails("@header.X-Tier", "bad path \"@header.X-Tier\": attribute "
               "names are lowercase (offset 8)");
}


static void
test_err_path_attr_bad_char(void **state)
{
    (void) state;
    path_fails("@a/b", "bad path \"@a/b\": unexpected character at offset 2 "
               "(attribute names are a-z 0-9 . _ -)");
}


static void
test_err_path_control_char_quoted(void **state)
{
    (void) state;
    path_fails("$.a\\n", "bad path \"$.a\\x0a\": expected \".\" or \"[\" at "
               "offset 3");
}


/* ------------------------------------------------------------------------ */
/* load errors: headers and templates                                        */
/* ------------------------------------------------------------------------ */

static void
test_err_headers_not_object(void **state)
{
    (void) state;
    load_fails("{'default':{'status':503,'headers':['a']}}",
               "default: headers: must be an object, got an array");
}


static void
test_err_header_bad_name(void **state)
{
    (void) state;
    load_fails("{'default':{'status':503,'headers':{'Retry After':'1'}}}",
               "default: headers: bad header name \"Retry After\" (an HTTP "
               "token of 1..64 characters)");
}


static void
test_err_header_empty_name(void **state)
{
    (void) state;
    load_fails("{'default':{'status':503,'headers':{'':'1'}}}",
               "default: headers: bad header name \"\" (an HTTP token of "
               "1..64 characters)");
}


static void
test_err_header_framing(void **state)
{
    (void) state;
    load_fails("{'default':{'status':503,'headers':{'content-LENGTH':'1'}}}",
               "default: headers: header \"content-LENGTH\" is nginx's to "
               "set, not a rule's");
}


static void
test_err_header_duplicate(void **state)
{
    (void) state;
    load_fails("{'default':{'status':503,'headers':{'Retry-After':'1',"
               "'retry-after':'2'}}}",
               "default: headers: header \"retry-after\" twice (names are "
               "case-insensitive)");
}


static void
test_err_header_value_not_string(void **state)
{
    (void) state;
    load_fails("{'rules':[{'name':'a','when':{'all':[]},'status':503,"
               "'headers':{'Retry-After':30}}]}",
               "rule \"a\" (#1): headers.Retry-After: the value must be a "
               "string, got a number");
}


static void
test_err_header_value_crlf(void **state)
{
    (void) state;
    load_fails("{'default':{'status':503,'headers':{'X-A':'a\\r\\nSet-Cookie:"
               " x'}}}",
               "default: headers.X-A: the value has a control character "
               "(0x0d) at offset 1");
}


static void
test_err_header_value_too_long(void **state)
{
    char  *file, *p;

    (void) state;

    file = malloc(8192);
    assert_non_null(file);

    p = file + sprintf(file, "{'default':{'status':503,'headers':{'X-A':'");
    memset(p, 'v', AIGOV_RULES_MAX_HEADER_VALUE + 1);
    strcpy(p + AIGOV_RULES_MAX_HEADER_VALUE + 1, "'}}}");

    load_fails(file, "default: headers.X-A: the value is longer than 4096 "
               "bytes");

    free(file);
}


static void
test_err_too_many_headers(void **state)
{
    char  file[2048], *p;
    int   i;

    (void) state;

    p = file + sprintf(file, "{'default':{'status':503,'headers':{");
    for (i = 0; i < AIGOV_RULES_MAX_HEADERS + 1; i++) {
        p += sprintf(p, "%s'X-%d':'v'", i ? "," : "", i);
    }
    strcpy(p, "}}}");

    load_fails(file, "default: headers: more than 16 headers");
}


static void
test_err_template_unclosed(void **state)
{
    (void) state;
    load_fails("{'default':{'status':503,'response':{'error':{'message':"
               "'id ${@request_id'}}}}",
               "default: response.error.message: unclosed \"${\" at "
               "offset 3");
}


static void
test_err_template_bad_path(void **state)
{
    (void) state;
    load_fails("{'default':{'status':503,'response':{'a':['x','${$.b..c}']}}}",
               "default: response.a[1]: bad path \"$.b..c\": expected a key "
               "(A-Z a-z 0-9 _ -) at offset 4");
}


static void
test_err_template_empty(void **state)
{
    (void) state;
    load_fails("{'default':{'status':503,'response':'${}'}}",
               "default: response: bad path \"\": must start with \"$\" (the "
               "body) or \"@\" (an attribute)");
}


static void
test_err_template_in_header(void **state)
{
    (void) state;
    load_fails("{'default':{'status':503,'headers':{'X-Id':'${request_id}'}}}",
               "default: headers.X-Id: bad path \"request_id\": must start "
               "with \"$\" (the body) or \"@\" (an attribute)");
}


static void
test_err_too_many_substitutions(void **state)
{
    char  file[2048], *p;
    int   i;

    (void) state;

    p = file + sprintf(file, "{'default':{'status':503,'response':'");
    for (i = 0; i < AIGOV_RULES_MAX_SUBST + 1; i++) {
        p += sprintf(p, "${@a}");
    }
    strcpy(p, "'}}");

    load_fails(file, "default: response: more than 64 substitutions in one "
               "rule");
}


static void
test_err_response_too_deep(void **state)
{
    char  file[512], want[512];
    int   i;

    (void) state;

    strcpy(file, "{'default':{'status':503,'response':");
    for (i = 0; i < AIGOV_RULES_MAX_NESTING; i++) {
        strcat(file, "[");
    }
    strcat(file, "1");
    for (i = 0; i < AIGOV_RULES_MAX_NESTING; i++) {
        strcat(file, "]");
    }
    strcat(file, "}}");

    strcpy(want, "default: response");
    for (i = 0; i < AIGOV_RULES_MAX_NESTING; i++) {
        strcat(want, "[0]");
    }
    strcat(want, ": nested deeper than 32 levels");

    load_fails(file, want);
}


static void
test_err_response_too_large(void **state)
{
    char    *file, *p;
    size_t   i;

    (void) state;

    file = malloc(128 * 1024);
    assert_non_null(file);

    p = file + sprintf(file, "{'default':{'status':503,'response':[");
    for (i = 0; i < 7000; i++) {
        p += sprintf(p, "%s'0123456789'", i ? "," : "");
    }
    strcpy(p, "]}}");

    load_fails(file, "default: response: larger than 65536 bytes");

    free(file);
}


static void
test_err_response_too_large_between_substitutions(void **state)
{
    char    *file, *p;
    size_t   i;

    (void) state;

    file = malloc(128 * 1024);
    assert_non_null(file);

    /* no constant run is over the bound, their sum is */
    p = file + sprintf(file, "{'default':{'status':503,'response':[");
    for (i = 0; i < 7000; i++) {
        p += sprintf(p, "%s'%s'", i ? "," : "",
                     (i % 1000 == 0) ? "${@a}" : "0123456789");
    }
    strcpy(p, "]}}");

    load_fails(file, "default: response: larger than 65536 bytes");

    free(file);
}


static void
test_response_depth_limit_accepted(void **state)
{
    aigov_rules_t  *rules;
    char            file[512];
    int             i;

    (void) state;

    strcpy(file, "{'default':{'status':503,'response':");
    for (i = 0; i < AIGOV_RULES_MAX_NESTING - 1; i++) {
        strcat(file, "[");
    }
    strcat(file, "1");
    for (i = 0; i < AIGOV_RULES_MAX_NESTING - 1; i++) {
        strcat(file, "]");
    }
    strcat(file, "}}");

    rules = load_ok(file);
    aigov_rules_free(rules);
}


/* ------------------------------------------------------------------------ */
/* operators                                                                 */
/* ------------------------------------------------------------------------ */

static void
test_eq_string_true(void **state)
{
    (void) state;
    assert_true(holds("{'field':'$.model','eq':'gpt'}", "{'model':'gpt'}"));
}


static void
test_eq_string_false(void **state)
{
    (void) state;
    assert_false(holds("{'field':'$.model','eq':'gpt'}", "{'model':'gp'}"));
}


static void
test_eq_string_missing(void **state)
{
    (void) state;
    assert_false(holds("{'field':'$.model','eq':'gpt'}", "{'m':'gpt'}"));
}


static void
test_eq_string_vs_number_mismatch(void **state)
{
    (void) state;
    assert_false(holds("{'field':'$.n','eq':'16'}", "{'n':16}"));
}


static void
test_eq_string_embedded_nul(void **state)
{
    (void) state;
    /* the glue parses without JSON_ALLOW_NUL; the engine copes anyway */
    assert_false(holds("{'field':'$.s','eq':'a'}", "{'s':'a\\u0000b'}"));
    assert_true(holds("{'field':'$.s','len_gt':2}", "{'s':'a\\u0000b'}"));
}


static void
test_eq_number_true(void **state)
{
    (void) state;
    assert_true(holds("{'field':'$.n','eq':16}", "{'n':16}"));
}


static void
test_eq_number_int_real(void **state)
{
    (void) state;
    assert_true(holds("{'field':'$.n','eq':1}", "{'n':1.0}"));
}


static void
test_eq_number_false(void **state)
{
    (void) state;
    assert_false(holds("{'field':'$.n','eq':16}", "{'n':17}"));
}


static void
test_eq_number_numeric_string(void **state)
{
    (void) state;
    assert_true(holds("{'field':'$.n','eq':16}", "{'n':'16'}"));
}


static void
test_eq_number_partial_string(void **state)
{
    (void) state;
    assert_false(holds("{'field':'$.n','eq':16}", "{'n':' 16'}"));
    assert_false(holds("{'field':'$.n','eq':16}", "{'n':'16px'}"));
    assert_false(holds("{'field':'$.n','eq':16}", "{'n':'0x10'}"));
}


static void
test_eq_number_vs_bool_mismatch(void **state)
{
    (void) state;
    assert_false(holds("{'field':'$.n','eq':1}", "{'n':true}"));
}


static void
test_eq_bool(void **state)
{
    (void) state;
    assert_true(holds("{'field':'$.stream','eq':true}", "{'stream':true}"));
    assert_false(holds("{'field':'$.stream','eq':true}", "{'stream':false}"));
    assert_true(holds("{'field':'$.stream','eq':false}",
                      "{'stream':false}"));
}


static void
test_eq_bool_vs_string_mismatch(void **state)
{
    (void) state;
    assert_false(holds("{'field':'$.stream','eq':true}", "{'stream':'true'}"));
}


static void
test_eq_null(void **state)
{
    (void) state;
    assert_true(holds("{'field':'$.user','eq':null}", "{'user':null}"));
    assert_false(holds("{'field':'$.user','eq':null}", "{'user':'x'}"));
}


static void
test_eq_null_missing(void **state)
{
    (void) state;
    assert_false(holds("{'field':'$.user','eq':null}", "{}"));
}


static void
test_ne_different(void **state)
{
    (void) state;
    assert_true(holds("{'field':'$.model','ne':'gpt'}", "{'model':'x'}"));
}


static void
test_ne_equal(void **state)
{
    (void) state;
    assert_false(holds("{'field':'$.model','ne':'gpt'}", "{'model':'gpt'}"));
}


static void
test_ne_missing_holds(void **state)
{
    (void) state;
    assert_true(holds("{'field':'$.model','ne':'gpt'}", "{}"));
}


static void
test_ne_type_mismatch_holds(void **state)
{
    (void) state;
    assert_true(holds("{'field':'$.model','ne':'1'}", "{'model':1}"));
}


static void
test_lt_true_false(void **state)
{
    (void) state;
    assert_true(holds("{'field':'$.n','lt':5}", "{'n':4}"));
    assert_false(holds("{'field':'$.n','lt':5}", "{'n':5}"));
}


static void
test_lte_boundary(void **state)
{
    (void) state;
    assert_true(holds("{'field':'$.n','lte':5}", "{'n':5}"));
    assert_false(holds("{'field':'$.n','lte':5}", "{'n':5.0001}"));
}


static void
test_gt_true_false(void **state)
{
    (void) state;
    assert_true(holds("{'field':'$.n','gt':5}", "{'n':6}"));
    assert_false(holds("{'field':'$.n','gt':5}", "{'n':5}"));
}


static void
test_gte_boundary(void **state)
{
    (void) state;
    assert_true(holds("{'field':'$.n','gte':0.5}", "{'n':0.5}"));
    assert_false(holds("{'field':'$.n','gte':0.5}", "{'n':0.49}"));
}


static void
test_cmp_missing(void **state)
{
    (void) state;
    assert_false(holds("{'field':'$.n','lt':5}", "{}"));
    assert_false(holds("{'field':'$.n','gte':5}", "{}"));
}


static void
test_cmp_numeric_string(void **state)
{
    (void) state;
    assert_true(holds("{'field':'$.n','lt':5}", "{'n':'-2.5e0'}"));
    assert_true(holds("{'field':'$.n','gt':5}", "{'n':'1E1'}"));
}


static void
test_cmp_non_numeric_string(void **state)
{
    (void) state;
    assert_false(holds("{'field':'$.n','lt':5}", "{'n':'abc'}"));
    assert_false(holds("{'field':'$.n','lt':5}", "{'n':'inf'}"));
    assert_false(holds("{'field':'$.n','lt':5}", "{'n':'-'}"));
    assert_false(holds("{'field':'$.n','lt':5}", "{'n':'1.'}"));
    assert_false(holds("{'field':'$.n','lt':5}", "{'n':''}"));
}


static void
test_cmp_huge_numeric_string(void **state)
{
    (void) state;

    /* out of range for a double: not a number, like jansson says */
    assert_false(holds("{'field':'$.n','gt':5}", "{'n':'1e999'}"));

    /* out of range for an integer: a double */
    assert_true(holds("{'field':'$.n','gt':5}",
                      "{'n':'99999999999999999999'}"));
}


static void
test_cmp_bool_mismatch(void **state)
{
    (void) state;
    assert_false(holds("{'field':'$.n','gte':0}", "{'n':true}"));
}


static void
test_cmp_object_mismatch(void **state)
{
    (void) state;
    assert_false(holds("{'field':'$.n','gte':0}", "{'n':{}}"));
}


static void
test_cmp_large_integers_exact(void **state)
{
    (void) state;

    /* 2^53 + 1 and 2^53 are the same double */
    assert_true(holds("{'field':'$.n','gt':9007199254740992}",
                      "{'n':9007199254740993}"));
}


static void
test_between_inclusive(void **state)
{
    (void) state;
    assert_true(holds("{'field':'$.t','between':[0,1]}", "{'t':0}"));
    assert_true(holds("{'field':'$.t','between':[0,1]}", "{'t':1}"));
    assert_true(holds("{'field':'$.t','between':[0,1]}", "{'t':0.7}"));
}


static void
test_between_outside(void **state)
{
    (void) state;
    assert_false(holds("{'field':'$.t','between':[0,1]}", "{'t':1.01}"));
    assert_false(holds("{'field':'$.t','between':[0,1]}", "{'t':-1}"));
}


static void
test_between_missing_and_mismatch(void **state)
{
    (void) state;
    assert_false(holds("{'field':'$.t','between':[0,1]}", "{}"));
    assert_false(holds("{'field':'$.t','between':[0,1]}", "{'t':'x'}"));
}


static void
test_in_string(void **state)
{
    (void) state;
    assert_true(holds("{'field':'$.m','in':['a','b']}", "{'m':'b'}"));
    assert_false(holds("{'field':'$.m','in':['a','b']}", "{'m':'c'}"));
}


static void
test_in_mixed(void **state)
{
    (void) state;
    assert_true(holds("{'field':'$.m','in':['a',2,null]}", "{'m':2.0}"));
    assert_true(holds("{'field':'$.m','in':['a',2,null]}", "{'m':null}"));
    assert_false(holds("{'field':'$.m','in':['a',2,null]}", "{'m':false}"));
}


static void
test_in_missing(void **state)
{
    (void) state;
    assert_false(holds("{'field':'$.m','in':['a']}", "{}"));
}


static void
test_not_in(void **state)
{
    (void) state;
    assert_true(holds("{'field':'$.m','not_in':['a','b']}", "{'m':'c'}"));
    assert_false(holds("{'field':'$.m','not_in':['a','b']}", "{'m':'a'}"));
}


static void
test_not_in_missing_holds(void **state)
{
    (void) state;
    assert_true(holds("{'field':'$.m','not_in':['a']}", "{}"));
}


static void
test_matches(void **state)
{
    (void) state;
    assert_true(holds("{'field':'$.c','matches':'ref(und|unds)'}",
                      "{'c':'I want refunds'}"));
    assert_false(holds("{'field':'$.c','matches':'refund'}",
                       "{'c':'I want a REFUND'}"));
}


static void
test_matches_anchors(void **state)
{
    (void) state;
    assert_true(holds("{'field':'$.c','matches':'^gpt-4'}", "{'c':'gpt-4o'}"));
    assert_false(holds("{'field':'$.c','matches':'^gpt-4$'}",
                       "{'c':'gpt-4o'}"));
}


static void
test_matches_i(void **state)
{
    (void) state;
    assert_true(holds("{'field':'$.c','matches_i':'refund'}",
                      "{'c':'I want a REFUND'}"));
}


static void
test_matches_newlines(void **state)
{
    (void) state;

    /* no REG_NEWLINE: "." matches a newline, ^ and $ are the value's ends */
    assert_true(holds("{'field':'$.c','matches':'a.b'}", "{'c':'a\\nb'}"));
    assert_false(holds("{'field':'$.c','matches':'^b'}", "{'c':'a\\nb'}"));
    assert_false(holds("{'field':'$.c','matches':'a$'}", "{'c':'a\\nb'}"));
    assert_true(holds("{'field':'$.c','matches':'(^x|b$)'}",
                      "{'c':'a\\nb'}"));
}


static void
test_matches_anchored_alternatives(void **state)
{
    const char  *cond;

    (void) state;

    cond = "{'field':'$.c','matches':'^gpt|claude$|mistral'}";

    assert_true(holds(cond, "{'c':'gpt-4o'}"));
    assert_false(holds(cond, "{'c':'x gpt'}"));
    assert_false(holds(cond, "{'c':'x\\ngpt'}"));
    assert_true(holds(cond, "{'c':'my claude'}"));
    assert_false(holds(cond, "{'c':'claude 3'}"));
    assert_true(holds(cond, "{'c':'a mistral b'}"));
}


static void
test_matches_groups_and_brackets(void **state)
{
    const char  *cond;

    (void) state;

    /* "|" inside a group or a bracket does not split the pattern */
    cond = "{'field':'$.c','matches':'^(a|b)[|x]c$'}";

    assert_true(holds(cond, "{'c':'b|c'}"));
    assert_false(holds(cond, "{'c':'zb|c'}"));
    assert_true(holds("{'field':'$.c','matches':'(^|[^a-z])refund'}",
                      "{'c':'a refund'}"));
    assert_false(holds("{'field':'$.c','matches':'(^|[^a-z])refund'}",
                       "{'c':'arefund'}"));
    assert_true(holds("{'field':'$.c','matches':'[]|^]x'}", "{'c':'a^x'}"));

    /* after an escaped backslash, "|" still splits: "^b" stays anchored */
    assert_false(holds("{'field':'$.c','matches':'x\\\\\\\\|^b'}",
                       "{'c':'a\\nb'}"));
    assert_true(holds("{'field':'$.c','matches':'x\\\\\\\\|^b'}",
                      "{'c':'a x\\\\'}"));
}


static void
test_matches_empty_alternatives(void **state)
{
    (void) state;

    /* every alternative gets a prefix: as many as there are bars, plus 1 */
    assert_true(holds("{'field':'$.c','matches':'||||'}", "{'c':'x'}"));
    assert_true(holds("{'field':'$.c','matches':'a||b'}", "{'c':'x'}"));
    assert_true(holds("{'field':'$.c','matches':'^|x'}", "{'c':'y'}"));
}


static void
test_matches_empty_pattern_match(void **state)
{
    (void) state;
    assert_true(holds("{'field':'$.c','matches':'x*'}", "{'c':''}"));
}


static void
test_matches_linear_time(void **state)
{
    aigov_rules_t       *rules;
    aigov_rules_attr_t   attrs[1];
    json_t              *doc;
    char                *big, *file;
    time_t               t0;

    (void) state;

    /* unanchored glibc search would retry at every offset: minutes */
    big = malloc(256 * 1024 + 1);
    assert_non_null(big);
    memset(big, 'a', 256 * 1024);
    big[256 * 1024] = '\0';

    attrs[0].name = "a";
    attrs[0].name_len = 1;
    attrs[0].value = big;
    attrs[0].value_len = 256 * 1024;

    doc = json_object();
    json_object_set_new(doc, "c", json_string(big));

    file = one_rule("{'any':[{'field':'$.c','matches_i':'[a-z]+@[a-z]+'},"
                    "{'field':'@a','matches':'(a|aa)*b'}]}");
    rules = load_ok(file);
    free(file);

    t0 = time(NULL);
    assert_int_equal(aigov_rules_match(rules, doc, attrs, 1), -1);
    assert_true(time(NULL) - t0 < 10);

    big[256 * 1024 - 1] = 'b';
    assert_int_equal(aigov_rules_match(rules, doc, attrs, 1), 0);

    aigov_rules_free(rules);
    json_decref(doc);
    free(big);
}


static void
test_matches_non_string(void **state)
{
    (void) state;
    assert_false(holds("{'field':'$.c','matches':'1'}", "{'c':1}"));
}


static void
test_matches_missing(void **state)
{
    (void) state;
    assert_false(holds("{'field':'$.c','matches':'.*'}", "{}"));
}


static void
test_matches_after_nul(void **state)
{
    (void) state;

    /* the whole string is the subject, NUL bytes included */
    assert_true(holds("{'field':'$.c','matches':'secret'}",
                      "{'c':'a\\u0000 secret'}"));
}


static void
test_matches_attribute_not_terminated(void **state)
{
    aigov_rules_attr_t  attrs[1];
    char                value[8];

    (void) state;

    /* "abcX" with len 3: the X must not be seen */
    memcpy(value, "abcX", 4);
    attrs[0].name = "a";
    attrs[0].name_len = 1;
    attrs[0].value = value;
    attrs[0].value_len = 3;

    assert_true(holds_with("{'field':'@a','matches':'^abc$'}", NULL, attrs,
                           1));
    assert_false(holds_with("{'field':'@a','matches':'X'}", NULL, attrs, 1));
}


static void
test_exists_true(void **state)
{
    (void) state;
    assert_true(holds("{'field':'$.a','exists':true}", "{'a':1}"));
    assert_false(holds("{'field':'$.a','exists':true}", "{}"));
}


static void
test_exists_null_is_present(void **state)
{
    (void) state;
    assert_true(holds("{'field':'$.a','exists':true}", "{'a':null}"));
}


static void
test_exists_false(void **state)
{
    (void) state;
    assert_true(holds("{'field':'$.a','exists':false}", "{}"));
    assert_false(holds("{'field':'$.a','exists':false}", "{'a':0}"));
}


static void
test_len_string_bytes(void **state)
{
    (void) state;

    /* "é" is two bytes */
    assert_true(holds("{'field':'$.s','len_gt':1}", "{'s':'\\u00e9'}"));
    assert_true(holds("{'field':'$.s','len_lt':3}", "{'s':'\\u00e9'}"));
    assert_false(holds("{'field':'$.s','len_gt':2}", "{'s':'\\u00e9'}"));
}


static void
test_len_array(void **state)
{
    (void) state;
    assert_true(holds("{'field':'$.m','len_gt':2}", "{'m':[1,2,3]}"));
    assert_false(holds("{'field':'$.m','len_lt':3}", "{'m':[1,2,3]}"));
}


static void
test_len_other_types(void **state)
{
    (void) state;
    assert_false(holds("{'field':'$.m','len_lt':100}", "{'m':{}}"));
    assert_false(holds("{'field':'$.m','len_lt':100}", "{'m':12}"));
}


static void
test_len_missing(void **state)
{
    (void) state;
    assert_false(holds("{'field':'$.m','len_lt':100}", "{}"));
}


/* ------------------------------------------------------------------------ */
/* combinators                                                               */
/* ------------------------------------------------------------------------ */

static void
test_all(void **state)
{
    (void) state;
    assert_true(holds("{'all':[{'field':'$.a','eq':1},{'field':'$.b',"
                      "'eq':2}]}", "{'a':1,'b':2}"));
    assert_false(holds("{'all':[{'field':'$.a','eq':1},{'field':'$.b',"
                       "'eq':2}]}", "{'a':1,'b':3}"));
}


static void
test_all_empty_holds(void **state)
{
    (void) state;
    assert_true(holds("{'all':[]}", NULL));
}


static void
test_any(void **state)
{
    (void) state;
    assert_true(holds("{'any':[{'field':'$.a','eq':1},{'field':'$.b',"
                      "'eq':2}]}", "{'a':0,'b':2}"));
    assert_false(holds("{'any':[{'field':'$.a','eq':1},{'field':'$.b',"
                       "'eq':2}]}", "{'a':0,'b':3}"));
}


static void
test_any_empty_fails(void **state)
{
    (void) state;
    assert_false(holds("{'any':[]}", NULL));
}


static void
test_not(void **state)
{
    (void) state;
    assert_true(holds("{'not':{'field':'$.a','eq':1}}", "{'a':2}"));
    assert_false(holds("{'not':{'field':'$.a','eq':1}}", "{'a':1}"));
}


static void
test_not_missing(void **state)
{
    (void) state;

    /* eq on a missing field is false, so its negation holds */
    assert_true(holds("{'not':{'field':'$.a','eq':1}}", "{}"));
}


static void
test_nested_combinators(void **state)
{
    const char  *cond;

    (void) state;

    cond = "{'any':[{'all':[{'field':'$.a','gt':1},{'not':{'field':'$.b',"
           "'exists':true}}]},{'field':'$.c','eq':'x'}]}";

    assert_true(holds(cond, "{'a':2}"));
    assert_false(holds(cond, "{'a':2,'b':0}"));
    assert_true(holds(cond, "{'a':2,'b':0,'c':'x'}"));
}


/* ------------------------------------------------------------------------ */
/* paths and bodies                                                          */
/* ------------------------------------------------------------------------ */

static void
test_path_nested(void **state)
{
    (void) state;
    assert_true(holds("{'field':'$.a.b[1].c','eq':'x'}",
                      "{'a':{'b':[{},{'c':'x'}]}}"));
}


static void
test_path_negative_index(void **state)
{
    const char  *body;

    (void) state;

    body = "{'messages':[{'content':'first'},{'content':'last'}]}";

    assert_true(holds("{'field':'$.messages[-1].content','eq':'last'}",
                      body));
    assert_true(holds("{'field':'$.messages[-2].content','eq':'first'}",
                      body));
}


static void
test_path_negative_index_out_of_range(void **state)
{
    (void) state;
    assert_false(holds("{'field':'$.m[-3]','exists':true}", "{'m':[1,2]}"));
}


static void
test_path_index_out_of_range(void **state)
{
    (void) state;
    assert_false(holds("{'field':'$.m[2]','exists':true}", "{'m':[1,2]}"));
    assert_true(holds("{'field':'$.m[1]','exists':true}", "{'m':[1,2]}"));
}


static void
test_path_negative_index_empty_array(void **state)
{
    (void) state;
    assert_false(holds("{'field':'$.m[-1]','exists':true}", "{'m':[]}"));
}


static void
test_path_key_on_array(void **state)
{
    (void) state;
    assert_false(holds("{'field':'$.m.a','exists':true}", "{'m':[1]}"));
}


static void
test_path_index_on_object(void **state)
{
    (void) state;
    assert_false(holds("{'field':'$.m[0]','exists':true}", "{'m':{'0':1}}"));
}


static void
test_path_step_through_scalar(void **state)
{
    (void) state;
    assert_false(holds("{'field':'$.m.a','exists':true}", "{'m':'s'}"));
}


static void
test_path_root(void **state)
{
    (void) state;
    assert_true(holds("{'field':'$','len_gt':1}", "[1,2]"));
    assert_true(holds("{'field':'$','eq':'hi'}", "'hi'"));
}


static void
test_body_array(void **state)
{
    (void) state;
    assert_false(holds("{'field':'$.model','exists':true}", "[{'model':1}]"));
    assert_true(holds("{'field':'$[0].model','eq':1}", "[{'model':1}]"));
}


static void
test_body_scalar(void **state)
{
    (void) state;
    assert_false(holds("{'field':'$.model','exists':true}", "42"));
    assert_true(holds("{'field':'$','gt':41}", "42"));
}


static void
test_body_null_document(void **state)
{
    (void) state;
    assert_true(holds("{'field':'$','eq':null}", "null"));
}


static void
test_no_body_field_missing(void **state)
{
    (void) state;
    assert_false(holds("{'field':'$','exists':true}", NULL));
    assert_true(holds("{'field':'$.model','exists':false}", NULL));
}


static void
test_no_body_attributes_only(void **state)
{
    aigov_rules_attr_t  attrs[] = {
        ATTR("method", "GET"), ATTR("path", "/v1/models")
    };

    (void) state;

    assert_true(holds_with("{'all':[{'field':'@method','eq':'GET'},"
                           "{'field':'@path','matches':'^/v1/'}]}", NULL,
                           attrs, NATTRS(attrs)));
}


static void
test_deep_body(void **state)
{
    aigov_rules_t  *rules;
    json_t         *doc, *inner;
    char           *file;
    int             i;

    (void) state;

    /* 10000 levels, deeper than any parser would give: paths stop early */
    doc = json_array();
    for (i = 0; i < 10000; i++) {
        inner = json_array();
        json_array_append_new(inner, doc);
        doc = inner;
    }

    file = one_rule("{'field':'$[0][0][0][0]','len_lt':2}");
    rules = load_ok(file);
    free(file);

    assert_int_equal(aigov_rules_match(rules, doc, NULL, 0), 0);

    aigov_rules_free(rules);
    json_decref(doc);
}


static void
test_huge_array_negative_index(void **state)
{
    aigov_rules_t  *rules;
    json_t         *doc, *arr;
    char           *file;
    int             i;

    (void) state;

    arr = json_array();
    for (i = 0; i < 100000; i++) {
        json_array_append_new(arr, json_integer(i));
    }

    doc = json_object();
    json_object_set_new(doc, "m", arr);

    file = one_rule("{'all':[{'field':'$.m[-1]','eq':99999},"
                    "{'field':'$.m','len_gt':99999}]}");
    rules = load_ok(file);
    free(file);

    assert_int_equal(aigov_rules_match(rules, doc, NULL, 0), 0);

    aigov_rules_free(rules);
    json_decref(doc);
}


/* ------------------------------------------------------------------------ */
/* attributes                                                                */
/* ------------------------------------------------------------------------ */

static void
test_attr_eq(void **state)
{
    aigov_rules_attr_t  attrs[] = { ATTR("header.x-tier", "free") };

    (void) state;

    assert_true(holds_with("{'field':'@header.x-tier','in':['free','trial']}",
                           NULL, attrs, 1));
}


static void
test_attr_missing(void **state)
{
    aigov_rules_attr_t  attrs[] = { ATTR("header.x-other", "free") };

    (void) state;

    assert_false(holds_with("{'field':'@header.x-tier','eq':'free'}", NULL,
                            attrs, 1));
    assert_true(holds_with("{'field':'@header.x-tier','exists':false}", NULL,
                           attrs, 1));
}


static void
test_attr_first_wins(void **state)
{
    aigov_rules_attr_t  attrs[] = { ATTR("a", "1"), ATTR("a", "2") };

    (void) state;

    assert_true(holds_with("{'field':'@a','eq':'1'}", NULL, attrs, 2));
}


static void
test_attr_prefix_not_confused(void **state)
{
    aigov_rules_attr_t  attrs[] = { ATTR("method-x", "GET") };

    (void) state;

    assert_false(holds_with("{'field':'@method','exists':true}", NULL,
                            attrs, 1));
}


static void
test_attr_numeric(void **state)
{
    aigov_rules_attr_t  attrs[] = { ATTR("header.x-budget", "250") };

    (void) state;

    assert_true(holds_with("{'field':'@header.x-budget','gt':100}", NULL,
                           attrs, 1));
    assert_true(holds_with("{'field':'@header.x-budget','eq':250}", NULL,
                           attrs, 1));
}


static void
test_attr_never_bool(void **state)
{
    aigov_rules_attr_t  attrs[] = { ATTR("a", "true") };

    (void) state;

    assert_false(holds_with("{'field':'@a','eq':true}", NULL, attrs, 1));
}


static void
test_attr_empty_value(void **state)
{
    aigov_rules_attr_t  attrs[] = { { "a", 1, NULL, 0 } };

    (void) state;

    assert_true(holds_with("{'field':'@a','eq':''}", NULL, attrs, 1));
    assert_true(holds_with("{'field':'@a','exists':true}", NULL, attrs, 1));
}


static void
test_attr_len(void **state)
{
    aigov_rules_attr_t  attrs[] = { ATTR("a", "abcd") };

    (void) state;

    assert_true(holds_with("{'field':'@a','len_gt':3}", NULL, attrs, 1));
}


static void
test_attrs_null_with_count(void **state)
{
    (void) state;

    /* a NULL array is no attributes, whatever the count */
    assert_false(holds_with("{'field':'@a','exists':true}", NULL, NULL, 5));
}


/* ------------------------------------------------------------------------ */
/* evaluation results                                                        */
/* ------------------------------------------------------------------------ */

static const char  *two_rules =
    "{'rules':["
    "{'name':'one','when':{'field':'$.n','gt':1},'status':429},"
    "{'name':'two','when':{'field':'$.n','gt':0},'status':503}],"
    "'default':{'status':500,'response':{'error':'default'}}}";


static void
test_first_match_wins(void **state)
{
    aigov_rules_t         *rules;
    aigov_rules_result_t   out;

    (void) state;

    eval_ok(two_rules, "{'n':5}", NULL, 0, &rules, &out);

    assert_int_equal(out.status, 429);
    assert_string_equal(out.rule, "one");
    assert_int_equal(out.index, 1);
    assert_null(out.body);
    assert_int_equal(out.body_len, 0);

    aigov_rules_result_free(&out);
    aigov_rules_free(rules);
}


static void
test_second_rule(void **state)
{
    aigov_rules_t         *rules;
    aigov_rules_result_t   out;

    (void) state;

    eval_ok(two_rules, "{'n':1}", NULL, 0, &rules, &out);

    assert_int_equal(out.status, 503);
    assert_string_equal(out.rule, "two");
    assert_int_equal(out.index, 2);

    aigov_rules_result_free(&out);
    aigov_rules_free(rules);
}


static void
test_default_applies(void **state)
{
    aigov_rules_t         *rules;
    aigov_rules_result_t   out;

    (void) state;

    eval_ok(two_rules, "{'n':0}", NULL, 0, &rules, &out);

    assert_int_equal(out.status, 500);
    assert_string_equal(out.rule, "default");
    assert_int_equal(out.index, 0);
    assert_string_equal(out.body, "{\"error\":\"default\"}");

    aigov_rules_result_free(&out);
    aigov_rules_free(rules);
}


static void
test_match_returns_index(void **state)
{
    aigov_rules_t  *rules;
    json_t         *doc;

    (void) state;

    rules = load_ok(two_rules);

    doc = parse_body("{'n':1}");
    assert_int_equal(aigov_rules_match(rules, doc, NULL, 0), 1);
    json_decref(doc);

    doc = parse_body("{'n':0}");
    assert_int_equal(aigov_rules_match(rules, doc, NULL, 0), -1);
    json_decref(doc);

    aigov_rules_free(rules);
}


static void
test_no_match_no_default_declined(void **state)
{
    aigov_rules_t         *rules;
    aigov_rules_result_t   out;
    json_t                *doc;

    (void) state;

    rules = load_ok("{'rules':[{'name':'a','when':{'field':'$.n','gt':1},"
                    "'status':429}]}");
    doc = parse_body("{'n':0}");

    assert_int_equal(aigov_rules_eval(rules, doc, NULL, 0, &out),
                     AIGOV_RULES_DECLINED);
    assert_int_equal(out.status, 0);
    assert_null(out.rule);
    assert_null(out.body);
    assert_int_equal(out.nheaders, 0);

    aigov_rules_result_free(&out);
    json_decref(doc);
    aigov_rules_free(rules);
}


static void
test_result_reusable(void **state)
{
    aigov_rules_t         *rules;
    aigov_rules_result_t   out;
    json_t                *doc;
    int                    i;

    (void) state;

    rules = load_ok("{'default':{'status':503,'response':{'a':'${$.x}'},"
                    "'headers':{'X-A':'${$.x}!'}}}");
    doc = parse_body("{'x':'v'}");

    for (i = 0; i < 3; i++) {
        assert_int_equal(aigov_rules_eval(rules, doc, NULL, 0, &out),
                         AIGOV_RULES_OK);
        assert_string_equal(out.body, "{\"a\":\"v\"}");
        aigov_rules_result_free(&out);
        aigov_rules_result_free(&out);
    }

    json_decref(doc);
    aigov_rules_free(rules);
}


/* ------------------------------------------------------------------------ */
/* templates                                                                 */
/* ------------------------------------------------------------------------ */

static void
test_tpl_constant(void **state)
{
    (void) state;
    assert_renders("{'error':{'message':'model unavailable','type':'x'}}",
                   NULL, NULL, 0,
                   "{'error':{'message':'model unavailable','type':'x'}}");
}


static void
test_tpl_constant_scalars(void **state)
{
    (void) state;
    assert_renders("{'a':[1,-2,true,false,null,'s',{}],'b':[]}", NULL, NULL,
                   0, "{'a':[1,-2,true,false,null,'s',{}],'b':[]}");
}


static void
test_tpl_key_order_kept(void **state)
{
    (void) state;
    assert_renders("{'z':1,'a':2,'m':'${$.x}'}", "{'x':1}", NULL, 0,
                   "{'z':1,'a':2,'m':1}");
}


static void
test_tpl_reals(void **state)
{
    (void) state;
    assert_renders("[0.1,1.0,2.5,1e300,-0.0]", NULL, NULL, 0,
                   "[0.1,1.0,2.5,1e+300,-0.0]");
}


static void
test_tpl_string_from_body(void **state)
{
    (void) state;
    assert_renders("{'model':'${$.model}'}", "{'model':'gpt-4o'}", NULL, 0,
                   "{'model':'gpt-4o'}");
}


static void
test_tpl_string_in_text(void **state)
{
    aigov_rules_attr_t  attrs[] = { ATTR("request_id", "r-42") };

    (void) state;

    assert_renders("{'id':'fallback-${@request_id}!'}", NULL, attrs, 1,
                   "{'id':'fallback-r-42!'}");
}


static void
test_tpl_several_in_one_string(void **state)
{
    aigov_rules_attr_t  attrs[] = { ATTR("a", "A"), ATTR("b", "B") };

    (void) state;

    assert_renders("'${@a}${@b}-${@a}'", NULL, attrs, 2, "'AB-A'");
}


static void
test_tpl_typed_number(void **state)
{
    (void) state;
    assert_renders("{'max':'${$.max_tokens}'}", "{'max_tokens':16}", NULL, 0,
                   "{'max':16}");
}


static void
test_tpl_typed_real(void **state)
{
    (void) state;
    assert_renders("{'t':'${$.temperature}'}", "{'temperature':0.7}", NULL,
                   0, "{'t':0.7}");
}


static void
test_tpl_typed_bool_null(void **state)
{
    (void) state;
    assert_renders("['${$.a}','${$.b}']", "{'a':true,'b':null}", NULL, 0,
                   "[true,null]");
}


static void
test_tpl_typed_object(void **state)
{
    (void) state;
    assert_renders("{'echo':'${$.messages[0]}'}",
                   "{'messages':[{'role':'user','content':'hi'}]}", NULL, 0,
                   "{'echo':{'role':'user','content':'hi'}}");
}


static void
test_tpl_typed_array(void **state)
{
    (void) state;
    assert_renders("'${$.m}'", "{'m':[1,[2,{'a':[]}]]}", NULL, 0,
                   "[1,[2,{'a':[]}]]");
}


static void
test_tpl_typed_missing(void **state)
{
    (void) state;
    assert_renders("{'max':'${$.max_tokens}'}", "{}", NULL, 0,
                   "{'max':''}");
}


static void
test_tpl_typed_attribute_is_string(void **state)
{
    aigov_rules_attr_t  attrs[] = { ATTR("n", "16") };

    (void) state;

    assert_renders("'${@n}'", NULL, attrs, 1, "'16'");
}


static void
test_tpl_number_in_text(void **state)
{
    (void) state;
    assert_renders("'max=${$.n}, t=${$.t}, s=${$.s}, z=${$.z}'",
                   "{'n':16,'t':0.5,'s':false,'z':null}", NULL, 0,
                   "'max=16, t=0.5, s=false, z=null'");
}


static void
test_tpl_object_in_text(void **state)
{
    char  *got;

    (void) state;

    got = render_with("'got ${$.m}'", "{'m':{'a':'x\\'y'}}", NULL, 0);

    /* the compact JSON {"a":"x\"y"}, escaped once more as text */
    assert_string_equal(got, "\"got {\\\"a\\\":\\\"x\\\\\\\"y\\\"}\"");

    free(got);
}


static void
test_tpl_missing_in_text(void **state)
{
    (void) state;
    assert_renders("'[${$.nope}][${@nope}]'", NULL, NULL, 0, "'[][]'");
}


static void
test_tpl_nested_structures(void **state)
{
    (void) state;
    assert_renders("{'choices':[{'index':0,'message':{'role':'assistant',"
                   "'content':'${$.model} is down'}},'${$.n}']}",
                   "{'model':'m','n':2}", NULL, 0,
                   "{'choices':[{'index':0,'message':{'role':'assistant',"
                   "'content':'m is down'}},2]}");
}


static void
test_tpl_keys_not_templated(void **state)
{
    (void) state;
    assert_renders("{'${$.x}':'${$.x}'}", "{'x':'v'}", NULL, 0,
                   "{'${$.x}':'v'}");
}


static void
test_tpl_escaped_dollar(void **state)
{
    (void) state;
    assert_renders("'cost: $$${$.x} and $${literal}, $$$$'", "{'x':'5'}",
                   NULL, 0, "'cost: $5 and ${literal}, $$'");
}


static void
test_tpl_lone_dollars(void **state)
{
    (void) state;
    assert_renders("'$ $5 $x {x} $'", NULL, NULL, 0, "'$ $5 $x {x} $'");
}


static void
test_tpl_escapes_quotes_and_newlines(void **state)
{
    aigov_rules_attr_t  attrs[] = { ATTR("a", "say \"hi\"\n\\ \t\x01") };
    char               *got;

    (void) state;

    got = render_with("'${@a}'", NULL, attrs, 1);
    assert_string_equal(got, "\"say \\\"hi\\\"\\n\\\\ \\t\\u0001\"");
    free(got);
}


static void
test_tpl_escapes_body_string(void **state)
{
    char  *got;

    (void) state;

    got = render_with("{'m':'> ${$.c}'}", "{'c':'a\\\"b\\nc\\u0000d'}",
                      NULL, 0);
    assert_string_equal(got, "{\"m\":\"> a\\\"b\\nc\\u0000d\"}");
    free(got);
}


static void
test_tpl_unicode_kept(void **state)
{
    aigov_rules_attr_t  attrs[] = {
        ATTR("a", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80")   /* é € 😀 */
    };

    (void) state;

    assert_renders("'${@a} ${$.b}'", "{'b':'\\u00fc'}", attrs, 1,
                   "'\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 \xc3\xbc'");
}


static void
test_tpl_invalid_utf8_replaced(void **state)
{
    aigov_rules_attr_t  attrs[] = {
        ATTR("a", "x\xff" "y\xc3" "z\xed\xa0\x80" "w\xe2\x82")
    };

    (void) state;

    /* each bad byte becomes U+FFFD: lone 0xff, truncated 0xc3, a
     * surrogate (3 bytes), a truncated 3-byte sequence (2 bytes) */
    assert_renders("'${@a}'", NULL, attrs, 1,
                   "'x\xef\xbf\xbdy\xef\xbf\xbdz\xef\xbf\xbd\xef\xbf\xbd"
                   "\xef\xbf\xbdw\xef\xbf\xbd\xef\xbf\xbd'");
}


static void
test_tpl_literal_unicode_and_escapes(void **state)
{
    (void) state;
    assert_renders("'tab\\tquote\\\"\\u00e9 ${$.x}'", "{'x':1}", NULL, 0,
                   "'tab\\tquote\\\"\xc3\xa9 1'");
}


static void
test_tpl_response_string_only(void **state)
{
    (void) state;
    assert_renders("'plain'", NULL, NULL, 0, "'plain'");
}


static void
test_tpl_whole_body(void **state)
{
    (void) state;
    assert_renders("{'echo':'${$}'}", "[1,'a']", NULL, 0,
                   "{'echo':[1,'a']}");
}


static void
test_body_bound_ok(void **state)
{
    aigov_rules_t         *rules;
    aigov_rules_result_t   out;
    aigov_rules_attr_t     attrs[1];
    char                  *big;

    (void) state;

    /* '"' + 65534 bytes + '"' is exactly the limit */
    big = malloc(AIGOV_RULES_MAX_BODY);
    assert_non_null(big);
    memset(big, 'a', AIGOV_RULES_MAX_BODY - 2);

    attrs[0].name = "a";
    attrs[0].name_len = 1;
    attrs[0].value = big;
    attrs[0].value_len = AIGOV_RULES_MAX_BODY - 2;

    eval_ok("{'default':{'status':503,'response':'${@a}'}}", NULL, attrs, 1,
            &rules, &out);
    assert_int_equal(out.body_len, AIGOV_RULES_MAX_BODY);

    aigov_rules_result_free(&out);
    aigov_rules_free(rules);
    free(big);
}


static void
test_body_bound_exceeded(void **state)
{
    aigov_rules_t         *rules;
    aigov_rules_result_t   out;
    aigov_rules_attr_t     attrs[1];
    char                  *big;

    (void) state;

    big = malloc(AIGOV_RULES_MAX_BODY);
    assert_non_null(big);
    memset(big, 'a', AIGOV_RULES_MAX_BODY - 1);

    attrs[0].name = "a";
    attrs[0].name_len = 1;
    attrs[0].value = big;
    attrs[0].value_len = AIGOV_RULES_MAX_BODY - 1;

    rules = load_ok("{'rules':[{'name':'echo','when':{'all':[]},"
                    "'status':503,'headers':{'X-A':'1'},"
                    "'response':'${@a}'}]}");

    assert_int_equal(aigov_rules_eval(rules, NULL, attrs, 1, &out),
                     AIGOV_RULES_ERROR);
    assert_string_equal(out.error, "the response body is larger than 65536 "
                        "bytes");
    assert_string_equal(out.rule, "echo");
    assert_int_equal(out.status, 503);
    assert_null(out.body);
    assert_int_equal(out.nheaders, 0);

    aigov_rules_result_free(&out);
    aigov_rules_free(rules);
    free(big);
}


static void
test_body_bound_escaping_counts(void **state)
{
    aigov_rules_t         *rules;
    aigov_rules_result_t   out;
    aigov_rules_attr_t     attrs[1];
    char                  *big;

    (void) state;

    /* 40000 quotes escape to 80000 bytes */
    big = malloc(40000);
    assert_non_null(big);
    memset(big, '"', 40000);

    attrs[0].name = "a";
    attrs[0].name_len = 1;
    attrs[0].value = big;
    attrs[0].value_len = 40000;

    rules = load_ok("{'default':{'status':503,'response':'${@a}'}}");

    assert_int_equal(aigov_rules_eval(rules, NULL, attrs, 1, &out),
                     AIGOV_RULES_ERROR);

    aigov_rules_result_free(&out);
    aigov_rules_free(rules);
    free(big);
}


static void
test_body_bound_huge_body_object(void **state)
{
    aigov_rules_t         *rules;
    aigov_rules_result_t   out;
    json_t                *doc, *arr;
    int                    i;

    (void) state;

    arr = json_array();
    for (i = 0; i < 200000; i++) {
        json_array_append_new(arr, json_integer(i));
    }

    doc = json_object();
    json_object_set_new(doc, "m", arr);

    rules = load_ok("{'default':{'status':503,'response':["
                    "'${$}','x ${$.m}']}}");

    assert_int_equal(aigov_rules_eval(rules, doc, NULL, 0, &out),
                     AIGOV_RULES_ERROR);
    assert_string_equal(out.error, "the response body is larger than 65536 "
                        "bytes");

    aigov_rules_result_free(&out);
    aigov_rules_free(rules);
    json_decref(doc);
}


static void
test_deep_body_substituted(void **state)
{
    aigov_rules_t         *rules;
    aigov_rules_result_t   out;
    json_t                *doc, *inner;
    int                    i, rc;

    (void) state;

    doc = json_array();
    for (i = 0; i < 20000; i++) {
        inner = json_array();
        json_array_append_new(inner, doc);
        doc = inner;
    }

    rules = load_ok("{'default':{'status':503,'response':'${$}'}}");

    /* deeper than the dump bound: an error, not a stack overflow */
    rc = aigov_rules_eval(rules, doc, NULL, 0, &out);
    assert_int_equal(rc, AIGOV_RULES_ERROR);

    aigov_rules_result_free(&out);
    aigov_rules_free(rules);
    json_decref(doc);
}


/* ------------------------------------------------------------------------ */
/* headers                                                                   */
/* ------------------------------------------------------------------------ */

static void
test_header_constant(void **state)
{
    aigov_rules_t         *rules;
    aigov_rules_result_t   out;

    (void) state;

    eval_ok("{'default':{'status':503,'headers':{'Retry-After':'30',"
            "'Content-Type':'application/problem+json','X-Empty':''}}}",
            NULL, NULL, 0, &rules, &out);

    assert_int_equal(out.nheaders, 3);
    assert_string_equal(out.headers[0].name, "Retry-After");
    assert_int_equal(out.headers[0].name_len, 11);
    assert_int_equal(out.headers[0].value_len, 2);
    assert_memory_equal(out.headers[0].value, "30", 2);
    assert_string_equal(out.headers[1].name, "Content-Type");
    assert_int_equal(out.headers[2].value_len, 0);
    assert_null(out.body);

    aigov_rules_result_free(&out);
    aigov_rules_free(rules);
}


static void
test_header_templated(void **state)
{
    aigov_rules_attr_t  attrs[] = { ATTR("request_id", "abc") };

    (void) state;

    assert_header("id=${@request_id}; model=${$.model}", "{'model':'m'}",
                  attrs, 1, "id=abc; model=m");
}


static void
test_header_values_nul_terminated(void **state)
{
    aigov_rules_t         *rules;
    aigov_rules_result_t   out;
    aigov_rules_attr_t     attrs[] = { ATTR("a", "1"), ATTR("b", "22") };

    (void) state;

    eval_ok("{'default':{'status':503,'headers':{'X-A':'${@a}',"
            "'X-C':'c','X-B':'<${@b}>'}}}", NULL, attrs, 2, &rules, &out);

    assert_string_equal(out.headers[0].value, "1");
    assert_string_equal(out.headers[1].value, "c");
    assert_string_equal(out.headers[2].value, "<22>");

    aigov_rules_result_free(&out);
    aigov_rules_free(rules);
}


static void
test_header_strips_crlf(void **state)
{
    aigov_rules_attr_t  attrs[] = {
        ATTR("a", "x\r\nSet-Cookie: evil\x00\x7f\tz")
    };

    (void) state;

    assert_header("${@a}", NULL, attrs, 1, "xSet-Cookie: evil\tz");
}


static void
test_header_number_and_object(void **state)
{
    (void) state;
    assert_header("${$.n} ${$.o}", "{'n':2.5,'o':{'k':'a\\nb'}}", NULL, 0,
                  "2.5 {\"k\":\"a\\nb\"}");
}


static void
test_header_missing_empty(void **state)
{
    (void) state;
    assert_header("[${@nope}]", NULL, NULL, 0, "[]");
}


static void
test_header_escaped_dollar(void **state)
{
    (void) state;
    assert_header("$${x} $5 $$$${@a}", NULL, NULL, 0, "${x} $5 $${@a}");
}


static void
test_header_bound_exceeded(void **state)
{
    aigov_rules_t         *rules;
    aigov_rules_result_t   out;
    aigov_rules_attr_t     attrs[1];
    char                  *big;

    (void) state;

    big = malloc(AIGOV_RULES_MAX_HEADER_VALUE + 1);
    assert_non_null(big);
    memset(big, 'h', AIGOV_RULES_MAX_HEADER_VALUE + 1);

    attrs[0].name = "a";
    attrs[0].name_len = 1;
    attrs[0].value = big;
    attrs[0].value_len = AIGOV_RULES_MAX_HEADER_VALUE + 1;

    rules = load_ok("{'default':{'status':503,'response':{},"
                    "'headers':{'X-A':'${@a}'}}}");

    assert_int_equal(aigov_rules_eval(rules, NULL, attrs, 1, &out),
                     AIGOV_RULES_ERROR);
    assert_string_equal(out.error, "a header value is longer than 4096 "
                        "bytes");
    assert_null(out.body);
    assert_int_equal(out.nheaders, 0);

    aigov_rules_result_free(&out);
    aigov_rules_free(rules);

    /* exactly the limit is fine */
    attrs[0].value_len = AIGOV_RULES_MAX_HEADER_VALUE;

    rules = load_ok("{'default':{'status':503,'headers':{'X-A':'${@a}'}}}");
    assert_int_equal(aigov_rules_eval(rules, NULL, attrs, 1, &out),
                     AIGOV_RULES_OK);
    assert_int_equal(out.headers[0].value_len, AIGOV_RULES_MAX_HEADER_VALUE);

    aigov_rules_result_free(&out);
    aigov_rules_free(rules);
    free(big);
}


static void
test_header_many_templated(void **state)
{
    aigov_rules_t         *rules;
    aigov_rules_result_t   out;
    aigov_rules_attr_t     attrs[1];
    char                   file[2048], *p, *big;
    int                    i;

    (void) state;

    /* 16 values of 4000 bytes: the header buffer grows and moves */
    big = malloc(4000);
    assert_non_null(big);
    memset(big, 'v', 4000);

    attrs[0].name = "a";
    attrs[0].name_len = 1;
    attrs[0].value = big;
    attrs[0].value_len = 4000;

    p = file + sprintf(file, "{'default':{'status':503,'headers':{");
    for (i = 0; i < AIGOV_RULES_MAX_HEADERS; i++) {
        p += sprintf(p, "%s'X-%d':'%d${@a}'", i ? "," : "", i, i % 10);
    }
    strcpy(p, "}}}");

    eval_ok(file, NULL, attrs, 1, &rules, &out);

    assert_int_equal(out.nheaders, AIGOV_RULES_MAX_HEADERS);

    for (i = 0; i < AIGOV_RULES_MAX_HEADERS; i++) {
        assert_int_equal(out.headers[i].value_len, 4001);
        assert_int_equal(out.headers[i].value[0], '0' + i % 10);
        assert_int_equal(out.headers[i].value[4000], 'v');
        assert_int_equal(out.headers[i].value[4001], '\0');
    }

    aigov_rules_result_free(&out);
    aigov_rules_free(rules);
    free(big);
}


/* ------------------------------------------------------------------------ */
/* cost                                                                      */
/* ------------------------------------------------------------------------ */

/*
 * Not an assertion on speed (machines differ): prints the cost of 100k
 * evaluations of the example file against a typical chat body, so that a
 * regression shows in the test log.
 */
static void
test_cost_report(void **state)
{
    aigov_rules_t         *rules;
    aigov_rules_result_t   out;
    aigov_rules_attr_t     attrs[] = {
        ATTR("method", "POST"), ATTR("path", "/v1/chat/completions"),
        ATTR("client", "10.0.0.1"), ATTR("model", "chat"),
        ATTR("variant", "v2"), ATTR("request_id", "8f2c1e0a9b7d"),
        ATTR("header.x-tier", "pro"),
        ATTR("header.x-request-id", "req-123")
    };
    struct timespec        t0, t1;
    json_t                *doc;
    char                  *buf;
    size_t                 len;
    double                 ns;
    int                    i, n;

    (void) state;

    buf = read_file("../conf/rules-example.json", &len);
    if (buf == NULL) {
        buf = read_file("conf/rules-example.json", &len);
    }

    assert_non_null(buf);

    rules = aigov_rules_load(buf, len, NULL, 0);
    assert_non_null(rules);
    free(buf);

    doc = parse_body("{'model':'chat','max_tokens':256,'temperature':0.7,"
                     "'messages':[{'role':'system','content':'You are a "
                     "helpful assistant.'},{'role':'user','content':'Can "
                     "you summarise the attached quarterly report in three "
                     "bullet points for the board?'}]}");

    n = 100000;

    clock_gettime(CLOCK_MONOTONIC, &t0);

    for (i = 0; i < n; i++) {
        if (aigov_rules_eval(rules, doc, attrs, NATTRS(attrs), &out)
            != AIGOV_RULES_OK)
        {
            fail_msg("eval failed");
        }

        aigov_rules_result_free(&out);
    }

    clock_gettime(CLOCK_MONOTONIC, &t1);

    ns = (double) (t1.tv_sec - t0.tv_sec) * 1e9
         + (double) (t1.tv_nsec - t0.tv_nsec);

    aigov_rules_free(rules);

    print_message("[ cost     ] %d evals of conf/rules-example.json: "
                  "%.0f ms, %.2f us/eval\n", n, ns / 1e6, ns / n / 1e3);

    json_decref(doc);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        /* loading */
        cmocka_unit_test(test_load_example_file),
        cmocka_unit_test(test_load_default_only),
        cmocka_unit_test(test_load_rules_without_default),
        cmocka_unit_test(test_load_comments_ignored),
        cmocka_unit_test(test_load_not_nul_terminated),
        cmocka_unit_test(test_free_null),
        cmocka_unit_test(test_count_and_names),
        cmocka_unit_test(test_uses_body_from_condition),
        cmocka_unit_test(test_uses_body_from_template),
        cmocka_unit_test(test_uses_body_attributes_only),
        cmocka_unit_test(test_attr_names_distinct),

        /* load errors: the file */
        cmocka_unit_test(test_err_not_json),
        cmocka_unit_test(test_err_truncated_json),
        cmocka_unit_test(test_err_duplicate_json_key),
        cmocka_unit_test(test_err_empty),
        cmocka_unit_test(test_err_not_an_object),
        cmocka_unit_test(test_err_unknown_top_key),
        cmocka_unit_test(test_err_no_rules_no_default),
        cmocka_unit_test(test_err_empty_rules_no_default),
        cmocka_unit_test(test_err_rules_not_array),
        cmocka_unit_test(test_err_comment_not_string),
        cmocka_unit_test(test_err_too_many_rules),
        cmocka_unit_test(test_max_rules_load),
        cmocka_unit_test(test_err_null_err_buffer),
        cmocka_unit_test(test_err_truncated_message),

        /* load errors: rules and the default */
        cmocka_unit_test(test_err_rule_not_object),
        cmocka_unit_test(test_err_rule_missing_name),
        cmocka_unit_test(test_err_rule_name_not_string),
        cmocka_unit_test(test_err_rule_bad_name),
        cmocka_unit_test(test_err_rule_empty_name),
        cmocka_unit_test(test_err_rule_name_default_reserved),
        cmocka_unit_test(test_err_rule_duplicate_name),
        cmocka_unit_test(test_err_rule_unknown_key),
        cmocka_unit_test(test_err_rule_missing_when),
        cmocka_unit_test(test_err_rule_missing_status),
        cmocka_unit_test(test_err_status_too_low),
        cmocka_unit_test(test_err_status_too_high),
        cmocka_unit_test(test_err_status_string),
        cmocka_unit_test(test_err_status_real),
        cmocka_unit_test(test_status_bounds_accepted),
        cmocka_unit_test(test_err_default_not_object),
        cmocka_unit_test(test_err_default_with_when),
        cmocka_unit_test(test_err_default_bad_status),
        cmocka_unit_test(test_err_second_rule_named_in_message),

        /* load errors: conditions */
        cmocka_unit_test(test_err_cond_not_object),
        cmocka_unit_test(test_err_cond_in_list_not_object),
        cmocka_unit_test(test_err_unknown_operator),
        cmocka_unit_test(test_err_unknown_operator_nested),
        cmocka_unit_test(test_err_two_operators),
        cmocka_unit_test(test_err_combinator_with_field),
        cmocka_unit_test(test_err_two_combinators),
        cmocka_unit_test(test_err_empty_condition),
        cmocka_unit_test(test_err_operator_without_field),
        cmocka_unit_test(test_err_field_not_string),
        cmocka_unit_test(test_err_field_without_operator),
        cmocka_unit_test(test_err_all_not_array),
        cmocka_unit_test(test_err_not_not_object),
        cmocka_unit_test(test_depth_limit_accepted),
        cmocka_unit_test(test_err_depth_exceeded),
        cmocka_unit_test(test_err_too_many_conditions),
        cmocka_unit_test(test_err_eq_array),
        cmocka_unit_test(test_err_ne_object),
        cmocka_unit_test(test_err_lt_string),
        cmocka_unit_test(test_err_gte_bool),
        cmocka_unit_test(test_err_between_shape),
        cmocka_unit_test(test_err_between_strings),
        cmocka_unit_test(test_err_between_reversed),
        cmocka_unit_test(test_err_in_not_array),
        cmocka_unit_test(test_err_in_empty),
        cmocka_unit_test(test_err_in_element_object),
        cmocka_unit_test(test_err_in_too_many),
        cmocka_unit_test(test_err_exists_not_bool),
        cmocka_unit_test(test_err_len_negative),
        cmocka_unit_test(test_err_len_real),
        cmocka_unit_test(test_err_matches_not_string),
        cmocka_unit_test(test_err_matches_empty),
        cmocka_unit_test(test_err_bad_regex),
        cmocka_unit_test(test_err_bad_regex_bracket),
        cmocka_unit_test(test_err_regex_inline_flags),
        cmocka_unit_test(test_err_regex_backreference),
        cmocka_unit_test(test_regex_backslash_digit_in_bracket_allowed),
        cmocka_unit_test(test_err_regex_unmatched_close),
        cmocka_unit_test(test_err_regex_repetition_over_255),
        cmocka_unit_test(test_err_regex_too_complex),
        cmocka_unit_test(test_err_regex_nested_plus),
        cmocka_unit_test(test_err_regex_stacked_repetitions),
        cmocka_unit_test(test_err_regex_repeated_nullable),
        cmocka_unit_test(test_err_regex_repeated_empty_alternative),
        cmocka_unit_test(test_err_regex_too_many_anchors),
        cmocka_unit_test(test_regex_usual_patterns_accepted),
        cmocka_unit_test(test_err_regex_too_long),
        cmocka_unit_test(test_err_nul_in_file),
        cmocka_unit_test(test_err_regex_nesting),

        /* load errors: paths */
        cmocka_unit_test(test_err_path_empty),
        cmocka_unit_test(test_err_path_no_root),
        cmocka_unit_test(test_err_path_trailing_dot),
        cmocka_unit_test(test_err_path_double_dot),
        cmocka_unit_test(test_err_path_no_separator),
        cmocka_unit_test(test_err_path_bad_key_char),
        cmocka_unit_test(test_err_path_index_not_number),
        cmocka_unit_test(test_err_path_index_leading_zero),
        cmocka_unit_test(test_err_path_index_minus_zero),
        cmocka_unit_test(test_err_path_index_unclosed),
        cmocka_unit_test(test_err_path_index_too_long),
        cmocka_unit_test(test_err_path_key_too_long),
        cmocka_unit_test(test_err_path_too_many_steps),
        cmocka_unit_test(test_err_path_too_long),
        cmocka_unit_test(test_err_path_bare_at),
        cmocka_unit_test(test_err_path_attr_uppercase),
        cmocka_unit_test(test_err_path_attr_bad_char),
        cmocka_unit_test(test_err_path_control_char_quoted),

        /* load errors: headers and templates */
        cmocka_unit_test(test_err_headers_not_object),
        cmocka_unit_test(test_err_header_bad_name),
        cmocka_unit_test(test_err_header_empty_name),
        cmocka_unit_test(test_err_header_framing),
        cmocka_unit_test(test_err_header_duplicate),
        cmocka_unit_test(test_err_header_value_not_string),
        cmocka_unit_test(test_err_header_value_crlf),
        cmocka_unit_test(test_err_header_value_too_long),
        cmocka_unit_test(test_err_too_many_headers),
        cmocka_unit_test(test_err_template_unclosed),
        cmocka_unit_test(test_err_template_bad_path),
        cmocka_unit_test(test_err_template_empty),
        cmocka_unit_test(test_err_template_in_header),
        cmocka_unit_test(test_err_too_many_substitutions),
        cmocka_unit_test(test_err_response_too_deep),
        cmocka_unit_test(test_err_response_too_large),
        cmocka_unit_test(test_err_response_too_large_between_substitutions),
        cmocka_unit_test(test_response_depth_limit_accepted),

        /* operators */
        cmocka_unit_test(test_eq_string_true),
        cmocka_unit_test(test_eq_string_false),
        cmocka_unit_test(test_eq_string_missing),
        cmocka_unit_test(test_eq_string_vs_number_mismatch),
        cmocka_unit_test(test_eq_string_embedded_nul),
        cmocka_unit_test(test_eq_number_true),
        cmocka_unit_test(test_eq_number_int_real),
        cmocka_unit_test(test_eq_number_false),
        cmocka_unit_test(test_eq_number_numeric_string),
        cmocka_unit_test(test_eq_number_partial_string),
        cmocka_unit_test(test_eq_number_vs_bool_mismatch),
        cmocka_unit_test(test_eq_bool),
        cmocka_unit_test(test_eq_bool_vs_string_mismatch),
        cmocka_unit_test(test_eq_null),
        cmocka_unit_test(test_eq_null_missing),
        cmocka_unit_test(test_ne_different),
        cmocka_unit_test(test_ne_equal),
        cmocka_unit_test(test_ne_missing_holds),
        cmocka_unit_test(test_ne_type_mismatch_holds),
        cmocka_unit_test(test_lt_true_false),
        cmocka_unit_test(test_lte_boundary),
        cmocka_unit_test(test_gt_true_false),
        cmocka_unit_test(test_gte_boundary),
        cmocka_unit_test(test_cmp_missing),
        cmocka_unit_test(test_cmp_numeric_string),
        cmocka_unit_test(test_cmp_non_numeric_string),
        cmocka_unit_test(test_cmp_huge_numeric_string),
        cmocka_unit_test(test_cmp_bool_mismatch),
        cmocka_unit_test(test_cmp_object_mismatch),
        cmocka_unit_test(test_cmp_large_integers_exact),
        cmocka_unit_test(test_between_inclusive),
        cmocka_unit_test(test_between_outside),
        cmocka_unit_test(test_between_missing_and_mismatch),
        cmocka_unit_test(test_in_string),
        cmocka_unit_test(test_in_mixed),
        cmocka_unit_test(test_in_missing),
        cmocka_unit_test(test_not_in),
        cmocka_unit_test(test_not_in_missing_holds),
        cmocka_unit_test(test_matches),
        cmocka_unit_test(test_matches_anchors),
        cmocka_unit_test(test_matches_i),
        cmocka_unit_test(test_matches_newlines),
        cmocka_unit_test(test_matches_anchored_alternatives),
        cmocka_unit_test(test_matches_groups_and_brackets),
        cmocka_unit_test(test_matches_empty_alternatives),
        cmocka_unit_test(test_matches_empty_pattern_match),
        cmocka_unit_test(test_matches_linear_time),
        cmocka_unit_test(test_matches_non_string),
        cmocka_unit_test(test_matches_missing),
        cmocka_unit_test(test_matches_after_nul),
        cmocka_unit_test(test_matches_attribute_not_terminated),
        cmocka_unit_test(test_exists_true),
        cmocka_unit_test(test_exists_null_is_present),
        cmocka_unit_test(test_exists_false),
        cmocka_unit_test(test_len_string_bytes),
        cmocka_unit_test(test_len_array),
        cmocka_unit_test(test_len_other_types),
        cmocka_unit_test(test_len_missing),

        /* combinators */
        cmocka_unit_test(test_all),
        cmocka_unit_test(test_all_empty_holds),
        cmocka_unit_test(test_any),
        cmocka_unit_test(test_any_empty_fails),
        cmocka_unit_test(test_not),
        cmocka_unit_test(test_not_missing),
        cmocka_unit_test(test_nested_combinators),

        /* paths and bodies */
        cmocka_unit_test(test_path_nested),
        cmocka_unit_test(test_path_negative_index),
        cmocka_unit_test(test_path_negative_index_out_of_range),
        cmocka_unit_test(test_path_index_out_of_range),
        cmocka_unit_test(test_path_negative_index_empty_array),
        cmocka_unit_test(test_path_key_on_array),
        cmocka_unit_test(test_path_index_on_object),
        cmocka_unit_test(test_path_step_through_scalar),
        cmocka_unit_test(test_path_root),
        cmocka_unit_test(test_body_array),
        cmocka_unit_test(test_body_scalar),
        cmocka_unit_test(test_body_null_document),
        cmocka_unit_test(test_no_body_field_missing),
        cmocka_unit_test(test_no_body_attributes_only),
        cmocka_unit_test(test_deep_body),
        cmocka_unit_test(test_huge_array_negative_index),

        /* attributes */
        cmocka_unit_test(test_attr_eq),
        cmocka_unit_test(test_attr_missing),
        cmocka_unit_test(test_attr_first_wins),
        cmocka_unit_test(test_attr_prefix_not_confused),
        cmocka_unit_test(test_attr_numeric),
        cmocka_unit_test(test_attr_never_bool),
        cmocka_unit_test(test_attr_empty_value),
        cmocka_unit_test(test_attr_len),
        cmocka_unit_test(test_attrs_null_with_count),

        /* evaluation results */
        cmocka_unit_test(test_first_match_wins),
        cmocka_unit_test(test_second_rule),
        cmocka_unit_test(test_default_applies),
        cmocka_unit_test(test_match_returns_index),
        cmocka_unit_test(test_no_match_no_default_declined),
        cmocka_unit_test(test_result_reusable),

        /* templates */
        cmocka_unit_test(test_tpl_constant),
        cmocka_unit_test(test_tpl_constant_scalars),
        cmocka_unit_test(test_tpl_key_order_kept),
        cmocka_unit_test(test_tpl_reals),
        cmocka_unit_test(test_tpl_string_from_body),
        cmocka_unit_test(test_tpl_string_in_text),
        cmocka_unit_test(test_tpl_several_in_one_string),
        cmocka_unit_test(test_tpl_typed_number),
        cmocka_unit_test(test_tpl_typed_real),
        cmocka_unit_test(test_tpl_typed_bool_null),
        cmocka_unit_test(test_tpl_typed_object),
        cmocka_unit_test(test_tpl_typed_array),
        cmocka_unit_test(test_tpl_typed_missing),
        cmocka_unit_test(test_tpl_typed_attribute_is_string),
        cmocka_unit_test(test_tpl_number_in_text),
        cmocka_unit_test(test_tpl_object_in_text),
        cmocka_unit_test(test_tpl_missing_in_text),
        cmocka_unit_test(test_tpl_nested_structures),
        cmocka_unit_test(test_tpl_keys_not_templated),
        cmocka_unit_test(test_tpl_escaped_dollar),
        cmocka_unit_test(test_tpl_lone_dollars),
        cmocka_unit_test(test_tpl_escapes_quotes_and_newlines),
        cmocka_unit_test(test_tpl_escapes_body_string),
        cmocka_unit_test(test_tpl_unicode_kept),
        cmocka_unit_test(test_tpl_invalid_utf8_replaced),
        cmocka_unit_test(test_tpl_literal_unicode_and_escapes),
        cmocka_unit_test(test_tpl_response_string_only),
        cmocka_unit_test(test_tpl_whole_body),
        cmocka_unit_test(test_body_bound_ok),
        cmocka_unit_test(test_body_bound_exceeded),
        cmocka_unit_test(test_body_bound_escaping_counts),
        cmocka_unit_test(test_body_bound_huge_body_object),
        cmocka_unit_test(test_deep_body_substituted),

        /* headers */
        cmocka_unit_test(test_header_constant),
        cmocka_unit_test(test_header_templated),
        cmocka_unit_test(test_header_values_nul_terminated),
        cmocka_unit_test(test_header_strips_crlf),
        cmocka_unit_test(test_header_number_and_object),
        cmocka_unit_test(test_header_missing_empty),
        cmocka_unit_test(test_header_escaped_dollar),
        cmocka_unit_test(test_header_bound_exceeded),
        cmocka_unit_test(test_header_many_templated),

        /* cost */
        cmocka_unit_test(test_cost_report),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
