// Weight-only int8 product for the bundle's LM on CPU, an XLA FFI custom call:
//   y (M, N) = x (M, K) . (w (N, K) * scale (N, 1))^T, float32 in and out.
// XLA:CPU converts an int8 matrix to float32 before its dot, which reads and writes five times
// the bytes the int8 holds; here each weight row is read once per block of rows of x and
// converted in registers. Rows of w are contiguous, so a step streams the matrix once.
#include <algorithm>
#include <cstdint>
#include <memory>

#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include "shared_tasks.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kColumnsPerTask = 32;
// Multiply-adds below which one thread does a product alone: higher than the float32 kernels'
// (shared_tasks.h), as an int8 weight is a quarter of the bytes: shared from 2^14, the
// quickstart's model in int8 ran at 1.03x float32 at batch 1, against 1.22x from 2^16 or 2^18.
constexpr int64_t kParallelWork = 1 << 18;
// Bytes of w requested ahead of the row being summed: base's (1 x 768).(768 x 32,640) went
// from 1.75 to 1.32 ms (512 or 4,096 ahead: 1.53 and 1.31).
constexpr int64_t kPrefetch = 2048;

struct Work {
  const float* x;
  const int8_t* w;
  const float* scale;
  float* y;
  int64_t m, k, n;
  mgpt::Tasks tasks;
};

// R rows of y from `row`, columns [n0, n1): each weight row is converted once for R rows.
template <int R>
void Rows(const Work& s, int64_t row, int64_t n0, int64_t n1) {
  const int64_t k_len = s.k;
  const float* x = s.x + row * k_len;
  for (int64_t n = n0; n < n1; ++n) {
    const int8_t* wn = s.w + n * k_len;
    float total[R] = {};
    int64_t k = 0;
#ifdef __AVX512F__
    __m512 acc[R][2];  // two independent sums per row hide the FMA latency
    for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (; k + 32 <= k_len; k += 32) {
      _mm_prefetch(reinterpret_cast<const char*>(wn + k + kPrefetch), _MM_HINT_T0);
      for (int h = 0; h < 2; ++h) {
        const __m512 v = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(wn + k + 16 * h))));
        for (int r = 0; r < R; ++r)
          acc[r][h] = _mm512_fmadd_ps(_mm512_loadu_ps(x + r * k_len + k + 16 * h), v, acc[r][h]);
      }
    }
    for (int r = 0; r < R; ++r)
      total[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]));
#endif
    for (; k < k_len; ++k) {  // the tail, or everything without AVX-512
      const float v = static_cast<float>(wn[k]);
      for (int r = 0; r < R; ++r) total[r] += x[r * k_len + k] * v;
    }
    for (int r = 0; r < R; ++r) s.y[(row + r) * s.n + n] = total[r] * s.scale[n];
  }
}

void Task(const Work& s, int64_t t, int64_t /*next*/) {
  const int64_t n0 = t * kColumnsPerTask, n1 = std::min(s.n, n0 + kColumnsPerTask);
  int64_t row = 0;
  for (; row + 8 <= s.m; row += 8) Rows<8>(s, row, n0, n1);
  if (s.m - row >= 4) {
    Rows<4>(s, row, n0, n1);
    row += 4;
  }
  switch (s.m - row) {
    case 3: Rows<3>(s, row, n0, n1); break;
    case 2: Rows<2>(s, row, n0, n1); break;
    case 1: Rows<1>(s, row, n0, n1); break;
    default: break;
  }
}

ffi::Error Int8Matmul(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::S8> w,
                      ffi::Buffer<ffi::F32> scale, ffi::ResultBuffer<ffi::F32> y) {
  const auto xd = x.dimensions(), wd = w.dimensions();
  if (xd.size() != 2 || wd.size() != 2 || xd[1] != wd[1] || scale.element_count() != wd[0]) {
    return ffi::Error::InvalidArgument(
        "mgpt_int8_matmul: expected x (M, K), w (N, K) and scale (N,)");
  }
  auto s = std::make_shared<Work>();
  s->x = x.typed_data();
  s->w = w.typed_data();
  s->scale = scale.typed_data();
  s->y = y->typed_data();
  s->m = xd[0];
  s->k = xd[1];
  s->n = wd[0];
  s->tasks.count = (s->n + kColumnsPerTask - 1) / kColumnsPerTask;
  mgpt::RunShared(pool, s, s->m * s->k * s->n >= kParallelWork, Task);
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(MgptInt8Matmul, Int8Matmul,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S8>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
