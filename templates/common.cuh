// ---- shared algorithm layer (every vendor): dtypes, dequantization, rounding ----
// dtype codes: must match sparsejit::DType on the host.
#define SJ_BF16 0
#define SJ_FP16 1
#define SJ_FP8_E4M3FN 2
#define SJ_FP8_E5M2 3
#define SJ_FP8_E4M3FNUZ 4
#define SJ_FP8_E5M2FNUZ 5
#define SJ_SCALE_NONE 0
#define SJ_SCALE_SCALAR 1
#define SJ_SCALE_PER_TOKEN_HEAD 2

SJ_DEVICE float sj_bf16_to_f32(sj_u16 h) { return sj_bits_to_float(((unsigned)h) << 16); }
SJ_DEVICE sj_u16 sj_f32_to_bf16(float f) {
  unsigned u = sj_float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (sj_u16)((u >> 16) | 0x40u);  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);                                           // round to nearest even
  return (sj_u16)(u >> 16);
}

template <int DT>
SJ_DEVICE float sj_half_to_f32(sj_u16 h) {
  if (DT == SJ_BF16) return sj_bf16_to_f32(h);
  return sj_f16_to_f32(h);
}
template <int DT>
SJ_DEVICE sj_u16 sj_f32_to_half(float f) {
  if (DT == SJ_BF16) return sj_f32_to_bf16(f);
  return sj_f32_to_f16(f);
}

// fp8 -> float, exact. EB exponent bits, MB mantissa bits, BIAS, FNUZ: 0x80 is the
// only NaN and there is no -0/inf; IEEE_SPECIALS: all-ones exponent is inf/NaN (e5m2).
template <int EB, int MB, int BIAS, bool FNUZ, bool IEEE_SPECIALS>
SJ_DEVICE float sj_fp8_decode(sj_u8 v) {
  const unsigned sign = (v >> 7) & 1u;
  const unsigned exp = (v >> MB) & ((1u << EB) - 1u);
  const unsigned man = v & ((1u << MB) - 1u);
  if (FNUZ && v == 0x80u) return sj_bits_to_float(0x7fc00000u);
  if (!FNUZ && !IEEE_SPECIALS && exp == ((1u << EB) - 1u) && man == ((1u << MB) - 1u))
    return sj_bits_to_float(0x7fc00000u);  // e4m3fn: S.1111.111 is NaN, no inf
  if (IEEE_SPECIALS && exp == ((1u << EB) - 1u))
    return sj_bits_to_float(man ? 0x7fc00000u : ((sign << 31) | 0x7f800000u));
  float mag;
  if (exp == 0) {
    // subnormal: man * 2^(1 - BIAS - MB), built exactly from float bits
    mag = (float)man * sj_bits_to_float((unsigned)(127 + 1 - BIAS - MB) << 23);
  } else {
    mag = sj_bits_to_float(((exp + 127u - (unsigned)BIAS) << 23) | (man << (23 - MB)));
  }
  return sign ? -mag : mag;
}

template <int DT>
SJ_DEVICE float sj_fp8_to_f32(sj_u8 v) {
  if (DT == SJ_FP8_E4M3FN) return sj_fp8_decode<4, 3, 7, false, false>(v);
  if (DT == SJ_FP8_E5M2) return sj_fp8_decode<5, 2, 15, false, true>(v);
  if (DT == SJ_FP8_E4M3FNUZ) return sj_fp8_decode<4, 3, 8, true, false>(v);
  return sj_fp8_decode<5, 2, 16, true, false>(v);
}

// Rounds through q's dtype (the reference dequantizes K/V "to q.dtype").
template <int QDT>
SJ_DEVICE float sj_round_q(float f) {
  return sj_half_to_f32<QDT>(sj_f32_to_half<QDT>(f));
}

// Loads one K or V element as q's dtype (bits), dequantizing and scaling fp8.
template <int QDT, int KVDT, int SCALE>
SJ_DEVICE sj_u16 sj_load_kv(const void* base, long long off, const float* scale, long long scale_off) {
  if (KVDT == SJ_BF16 || KVDT == SJ_FP16) {
    const sj_u16 raw = ((const sj_u16*)base)[off];
    if (KVDT == QDT) return raw;
    return sj_f32_to_half<QDT>(sj_half_to_f32<KVDT>(raw));
  } else {
    float f = sj_fp8_to_f32<KVDT>(((const sj_u8*)base)[off]);  // exact in bf16/fp16
    if (SCALE == SJ_SCALE_SCALAR) f = f * scale[0];
    if (SCALE == SJ_SCALE_PER_TOKEN_HEAD) f = f * scale[scale_off];
    return sj_f32_to_half<QDT>(f);
  }
}

// Decode: the request of query row `token` and its absolute position. Uniform:
// query j of request r is row r * decode_query_len + j at seq_lens[r] -
// decode_query_len + j. Ragged (query_start_loc / token_to_req): row
// query_start_loc[r] + j at seq_lens[r] - n_r + j; a row of no request gets
// req 0 and pos -1 (sees nothing, reads nothing out of range).
SJ_DEVICE void sj_decode_row(const SjAttnParams& p, long long token, long long& req, long long& pos) {
  if (p.query_start_loc) {
    req = ((const int*)p.token_to_req)[token];
    if (req >= 0 && req < p.num_reqs) {
      const long long start = ((const int*)p.query_start_loc)[req], n = ((const int*)p.query_start_loc)[req + 1] - start;
      pos = ((const int*)p.seq_lens)[req] - n + (token - start);
    } else {
      req = 0, pos = -1;
    }
  } else {
    req = token / p.decode_query_len;
    pos = ((const int*)p.seq_lens)[req] - p.decode_query_len + (token - req * p.decode_query_len);
  }
}

// Split-K merge by LSE (base 2), shared by the merge kernel and decode's cluster
// merge: each part's weight 2^(lse_c - max) (0 for an empty part, lse = -inf)
// into w; returns their sum, 0 when every part is empty (the caller then writes
// zeros, never NaN). Unrolled by 16 so the loads behind lse are in flight together.
template <int N>
SJ_DEVICE float sj_lse_weights(const float (&lse)[N], float (&w)[N]) {
  float mx = sj_neg_inf();
#pragma unroll 16
  for (int c = 0; c < N; ++c) mx = lse[c] > mx ? lse[c] : mx;
  float den = 0.f;
#pragma unroll 16
  for (int c = 0; c < N; ++c) {
    w[c] = (mx == sj_neg_inf() || lse[c] == sj_neg_inf()) ? 0.f : sj_exp2(lse[c] - mx);
    den += w[c];
  }
  return den;
}
