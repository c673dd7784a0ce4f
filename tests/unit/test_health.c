/*
 * Unit tests for the webhook disable rule: more than 35 failed attempts
 * AND a failure rate above 4.5% in the window, on both sides of both
 * thresholds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "cloud/health.h"

static void test_failure_count_threshold(void **state)
{
    (void)state;
    /* 100% failures: only the count decides. */
    assert_false(health_should_disable(35, 35));
    assert_true(health_should_disable(36, 36));
    assert_false(health_should_disable(0, 0));
    assert_false(health_should_disable(1, 1));
    /* 35 failures never disable, whatever the rate. */
    assert_false(health_should_disable(35, 40));
}

static void test_failure_rate_threshold(void **state)
{
    (void)state;
    /* 36 failures: exactly 4.5% is 800 attempts. */
    assert_false(health_should_disable(36, 800));
    assert_true(health_should_disable(36, 799));
    assert_false(health_should_disable(36, 801));
    /* 45 of 1000 is exactly 4.5%; 46 of 1000 is above. */
    assert_false(health_should_disable(45, 1000));
    assert_true(health_should_disable(46, 1000));
    /* 4.5% exactly with big numbers: no rounding. */
    assert_false(health_should_disable(450000, 10000000));
    assert_true(health_should_disable(450001, 10000000));
}

static void test_both_needed(void **state)
{
    (void)state;
    /* Above 4.5% but only 35 failures. */
    assert_false(health_should_disable(35, 100));
    /* More than 35 failures but below 4.5%. */
    assert_false(health_should_disable(40, 10000));
    /* Both. */
    assert_true(health_should_disable(40, 100));
}

static void test_describe(void **state)
{
    char text[128];

    (void)state;
    health_describe(36, 40, 600000, text, sizeof(text));
    assert_string_equal(text,
                        "36 failed of 40 attempts (90.0%) in the last 600 s");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failure_count_threshold),
        cmocka_unit_test(test_failure_rate_threshold),
        cmocka_unit_test(test_both_needed),
        cmocka_unit_test(test_describe),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
