/* The smallest complete use of the sparsejit C ABI: create a runtime, run one
 * decode step (one request, one query, 16 query heads over one KV head,
 * head_dim 128, top-1 block), check the result, clean up.
 *
 * Without a GPU it prints why (sj_last_error) and exits 0: that is the expected
 * outcome on a build machine. Build: the CMake target sparsejit_example_minimal. */
#include <sparsejit/sparsejit.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { HEADS = 16, KV_HEADS = 1, HEAD_DIM = 128, TOPK = 1, PAGE = 128, SEQ_LEN = 5 };

#define CHECK(call)                                                                          \
  do {                                                                                       \
    sj_status st_ = (call);                                                                  \
    if (st_ != SJ_OK) {                                                                      \
      fprintf(stderr, "%s failed: %s: %s\n", #call, sj_status_string(st_), sj_last_error()); \
      goto done;                                                                             \
    }                                                                                        \
  } while (0)

int main(void) {
  const uint16_t bf16_one = 0x3F80;
  sj_runtime_options options;
  sj_runtime* rt = NULL;
  sj_decode_args a;
  void *q = NULL, *kv = NULL, *topk = NULL, *bt = NULL, *seq = NULL, *out = NULL, *ws = NULL;
  uint16_t* host = NULL;
  uint64_t ws_bytes = 0;
  int32_t topk_host[TOPK] = {0}, bt_host[1] = {0}, seq_host[1] = {SEQ_LEN};
  size_t i, q_elems = (size_t)HEADS * HEAD_DIM, kv_elems = (size_t)2 * PAGE * KV_HEADS * HEAD_DIM;
  int rc = 1;
  sj_status st;

  printf("sparsejit %s (C ABI %d)\n", sj_version(), sj_abi_version());
  sj_runtime_options_init(&options);
  st = sj_runtime_create(&options, &rt);
  if (st == SJ_ERROR_NO_DEVICE) {
    printf("no GPU here, nothing to run: %s\n", sj_last_error());
    return 0;
  }
  if (st != SJ_OK) {
    fprintf(stderr, "sj_runtime_create: %s: %s\n", sj_status_string(st), sj_last_error());
    return 1;
  }

  /* q = 1, K = 0, V = 1 (bf16): every visible key scores the same and every
   * value is 1, so each output element must be exactly 1. */
  host = (uint16_t*)malloc(kv_elems * sizeof(uint16_t));
  if (!host) goto done;
  CHECK(sj_device_malloc(rt, q_elems * 2, &q));
  CHECK(sj_device_malloc(rt, kv_elems * 2, &kv));
  CHECK(sj_device_malloc(rt, sizeof topk_host, &topk));
  CHECK(sj_device_malloc(rt, sizeof bt_host, &bt));
  CHECK(sj_device_malloc(rt, sizeof seq_host, &seq));
  CHECK(sj_device_malloc(rt, q_elems * 2, &out));
  for (i = 0; i < q_elems; ++i) host[i] = bf16_one;
  CHECK(sj_copy_to_device(rt, q, host, q_elems * 2));
  /* Layout [pages, 2, 128, kv_heads, head_dim]: K half zero, V half one. */
  for (i = 0; i < kv_elems; ++i) host[i] = i < kv_elems / 2 ? 0 : bf16_one;
  CHECK(sj_copy_to_device(rt, kv, host, kv_elems * 2));
  CHECK(sj_copy_to_device(rt, topk, topk_host, sizeof topk_host));
  CHECK(sj_copy_to_device(rt, bt, bt_host, sizeof bt_host));
  CHECK(sj_copy_to_device(rt, seq, seq_host, sizeof seq_host));

  CHECK(sj_decode_workspace_bytes(rt, 1, HEADS, KV_HEADS, HEAD_DIM, TOPK, &ws_bytes));
  CHECK(sj_device_malloc(rt, (size_t)ws_bytes, &ws));

  memset(&a, 0, sizeof a);
  a.q = q;
  a.q_stride[0] = HEADS * HEAD_DIM, a.q_stride[1] = HEAD_DIM, a.q_stride[2] = 1;
  a.kv_cache = kv;
  a.kv_stride[0] = 2 * PAGE * KV_HEADS * HEAD_DIM; /* page */
  a.kv_stride[1] = HEAD_DIM;                       /* kv head */
  a.kv_stride[2] = KV_HEADS * HEAD_DIM;            /* position */
  a.kv_stride[3] = 1;                              /* d */
  a.v_offset = PAGE * KV_HEADS * HEAD_DIM;
  a.num_pages = 1;
  a.topk_idx = topk;
  a.topk_stride[0] = TOPK, a.topk_stride[1] = TOPK, a.topk_stride[2] = 1;
  a.block_table = bt;
  a.block_table_stride = 1;
  a.max_blocks = 1;
  a.seq_lens = seq;
  a.output = out;
  a.output_stride[0] = HEADS * HEAD_DIM, a.output_stride[1] = HEAD_DIM, a.output_stride[2] = 1;
  a.total_q = 1, a.num_heads = HEADS, a.num_kv_heads = KV_HEADS, a.head_dim = HEAD_DIM, a.topk = TOPK;
  a.num_reqs = 1, a.decode_query_len = 1;
  a.q_dtype = SJ_DTYPE_BF16, a.kv_dtype = SJ_DTYPE_BF16, a.scale_mode = SJ_SCALE_NONE;
  a.sm_scale = 0.08838834764831845f; /* 1/sqrt(128) */
  a.workspace = ws;
  a.workspace_bytes = ws_bytes;

  CHECK(sj_sparse_attn_decode(rt, &a, NULL)); /* the first call compiles (or loads from the cache) */
  CHECK(sj_synchronize(rt));
  CHECK(sj_copy_to_host(rt, host, out, q_elems * 2));
  for (i = 0; i < q_elems; ++i) {
    if (host[i] != bf16_one) {
      fprintf(stderr, "output[%lu] = 0x%04x, expected 0x%04x (bf16 1.0)\n", (unsigned long)i, host[i], bf16_one);
      goto done;
    }
  }
  printf("OK: decode on device %d wrote %lu outputs, all 1.0\n", sj_runtime_device(rt), (unsigned long)q_elems);
  rc = 0;

done:
  sj_device_free(rt, q);
  sj_device_free(rt, kv);
  sj_device_free(rt, topk);
  sj_device_free(rt, bt);
  sj_device_free(rt, seq);
  sj_device_free(rt, out);
  sj_device_free(rt, ws);
  free(host);
  sj_runtime_destroy(rt);
  return rc;
}
