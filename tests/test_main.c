/* Unit tests (Check): every suite of the project in one runner. */
#include <check.h>
#include <stdlib.h>

Suite *model_suite(void);
Suite *generator_suite(void);
Suite *gpumon_suite(void);
Suite *binding_suite(void);

int main(void)
{
    SRunner *sr = srunner_create(model_suite());
    srunner_add_suite(sr, generator_suite());
    srunner_add_suite(sr, gpumon_suite());
    srunner_add_suite(sr, binding_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
