/* The model names of trigger metadata and /metrics (models.c); the models are tested in test_engine.c. */
#include <criterion/criterion.h>
#include <uv.h>

#include "forecast/models.h"

Test(models, model_parse_and_name) {
  enum ps_model m;
  cr_assert_eq(ps_model_parse("seasonal", &m), 0);
  cr_assert_eq(m, PS_MODEL_SEASONAL);
  cr_assert_eq(ps_model_parse("last", &m), 0);
  cr_assert_eq(m, PS_MODEL_LAST);
  cr_assert_eq(ps_model_parse("Seasonal", &m), UV_EINVAL);
  cr_assert_eq(ps_model_parse("", &m), UV_EINVAL);
  cr_assert_eq(ps_model_parse(NULL, &m), UV_EINVAL);
  cr_assert_str_eq(ps_model_name(PS_MODEL_SEASONAL), "seasonal");
  cr_assert_str_eq(ps_model_name(PS_MODEL_LAST), "last");
  cr_assert_eq(ps_model_parse("peak", &m), 0);
  cr_assert_eq(m, PS_MODEL_PEAK);
  cr_assert_eq(ps_model_parse("analog", &m), 0);
  cr_assert_eq(m, PS_MODEL_ANALOG);
  /* every model round-trips through its name */
  for (int i = 0; i < PS_MODEL_COUNT; i++) {
    cr_assert_eq(ps_model_parse(ps_model_name((enum ps_model)i), &m), 0);
    cr_assert_eq(m, (enum ps_model)i);
  }
}

/* The models without a season: a period given with them is checked, then unused (config.c). */
Test(models, seasonless) {
  cr_assert(ps_model_seasonless(PS_MODEL_LAST));
  cr_assert(ps_model_seasonless(PS_MODEL_LINEAR));
  cr_assert(ps_model_seasonless(PS_MODEL_PEAK));
  cr_assert(!ps_model_seasonless(PS_MODEL_SEASONAL));
  cr_assert(!ps_model_seasonless(PS_MODEL_HOLTWINTERS));
  cr_assert(!ps_model_seasonless(PS_MODEL_AUTO));
  cr_assert(!ps_model_seasonless(PS_MODEL_ANALOG)); /* its library takes the same hours of past periods */
}
