/* Compiled with -std=c99 -Wall -Wextra -Werror -pedantic by ctest (CAbi.HeaderIsStrictC99):
 * the C ABI header must stay plain C99 and usable as written in the README. */
#include <sparsejit/sparsejit.h>

int sj_header_check(void);

int sj_header_check(void) {
  sj_runtime_options options;
  sj_prefill_args prefill = {0};
  sj_decode_args decode = {0};
  sj_kernel_shape shape = {0};
  sj_runtime* rt = 0;
  sj_status st;
  sj_runtime_options_init(&options);
  st = sj_runtime_create(&options, &rt);
  shape.q_dtype = SJ_DTYPE_BF16;
  shape.kv_dtype = SJ_DTYPE_FP8_E4M3FN;
  shape.scale_mode = SJ_SCALE_PER_TOKEN_HEAD;
  (void)prefill;
  (void)decode;
  (void)shape;
  (void)sj_last_error();
  sj_runtime_destroy(rt);
  return st == SJ_OK ? 0 : (int)st + SJ_ABI_VERSION;
}
