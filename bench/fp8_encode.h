// fp8 e4m3fn encoding for the benchmark's random K/V (sparsejit_bench --kv-fp8).
// e4m3fn: sign, 4 exponent bits (bias 7), 3 mantissa bits, no infinities; 0x7F and
// 0xFF are NaN, so the largest magnitude is 448 (0x7E).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>

namespace sjbench {

// The magnitude of code c in [0, 0x7E].
inline double e4m3fn_magnitude(int c) {
  const int e = (c >> 3) & 15, m = c & 7;
  return e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
}

// The nearest e4m3fn code to f (ties to the even code), saturating at +-448: never NaN
// (a NaN input gives +-0's code).
inline std::uint8_t to_e4m3fn(float f) {
  static const std::array<double, 127> mag = [] {
    std::array<double, 127> v{};
    for (int c = 0; c < 127; ++c) v[c] = e4m3fn_magnitude(c);
    return v;
  }();
  const double a = std::isnan(f) ? 0.0 : std::fabs(double(f));
  int c = static_cast<int>(std::lower_bound(mag.begin(), mag.end(), a) - mag.begin());
  if (c == 127) {
    c = 126;
  } else if (c > 0) {
    const double below = a - mag[c - 1], above = mag[c] - a;
    if (below < above || (below == above && (c - 1) % 2 == 0)) --c;
  }
  return static_cast<std::uint8_t>(c | (std::signbit(f) ? 0x80 : 0));
}

}  // namespace sjbench
