// Float32 product for the bundle's LM on CPU, an XLA FFI custom call:
//   y (M, N) = x (M, K) . w, with w stored as panels (ceil(N / 48), K, 48): column block p of
//   w, row-major and zero-padded past N, is panels[p].
// XLA:CPU runs each of a decode step's dots on one thread (YNNPACK at 32 rows: about 60-125
// GFLOP/s here, under half the matmul peak). Here a product's panels are shared with XLA's
// intra-op pool, and each panel is read as one contiguous stream while up to 8 rows of x
// accumulate in 24 vector registers (8 x 48 ran at 153 GFLOP/s on one core here, 6 x 64 at
// 136, and 32 rows split into 8s, not 6s and a 2).
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

constexpr int64_t kPanel = 48;  // columns per panel and per task: three 16-float vectors

struct Work {
  const float* x;
  const float* w;
  float* y;
  int64_t m, k, n;
  mgpt::Tasks tasks;
};

// Cache lines of the next panel to request while a tile computes: `per_k` lines each step of
// k from `begin`, none at or past `end`.
struct Prefetch {
  const char *begin = nullptr, *end = nullptr;
  int64_t per_k = 0;
};

// R rows of y from `row`, the `width` columns of panel p.
template <int R>
void Tile(const Work& s, int64_t row, int64_t p, int64_t width, Prefetch ahead) {
  const int64_t k_len = s.k;
  const float* __restrict x = s.x + row * k_len;
  const float* __restrict w = s.w + p * k_len * kPanel;
  float* y = s.y + row * s.n + p * kPanel;
#ifdef __AVX512F__
  // Named panel vectors and a local k_len keep all 3R sums in registers (g++ 12 spilled them
  // to the stack every step otherwise). With few rows the FMAs of one panel form a chain, but
  // out-of-order execution overlaps the next panel's: splitting the sums over k gained
  // little (98 against 84 GB/s from L2, the same from L3 and L1).
  __m512 acc[R][3];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < 3; ++j) acc[r][j] = _mm512_setzero_ps();
  const char* line = ahead.begin;
  const int64_t per_k = ahead.per_k;
  for (int64_t k = 0; k < k_len; ++k, w += kPanel) {
    for (int64_t i = 0; i < per_k; ++i, line += 64) {
      if (line < ahead.end) _mm_prefetch(line, _MM_HINT_T1);
    }
    const __m512 b0 = _mm512_loadu_ps(w), b1 = _mm512_loadu_ps(w + 16),
                 b2 = _mm512_loadu_ps(w + 32);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 a = _mm512_set1_ps(x[r * k_len + k]);
      acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
      acc[r][2] = _mm512_fmadd_ps(a, b2, acc[r][2]);
    }
  }
  for (int j = 0; j < 3; ++j) {
    const int64_t valid = std::clamp<int64_t>(width - 16 * j, 0, 16);
    const __mmask16 mask = static_cast<__mmask16>((1u << valid) - 1);
    for (int r = 0; r < R; ++r) _mm512_mask_storeu_ps(y + r * s.n + 16 * j, mask, acc[r][j]);
  }
#else
  float acc[R][kPanel] = {};
  for (int64_t k = 0; k < k_len; ++k, w += kPanel)
    for (int r = 0; r < R; ++r)
      for (int64_t c = 0; c < kPanel; ++c) acc[r][c] += x[r * k_len + k] * w[c];
  for (int r = 0; r < R; ++r)
    for (int64_t c = 0; c < width; ++c) y[r * s.n + c] = acc[r][c];
#endif
}

// Panel p's columns of y, for every row. While it computes, the panel that this thread does
// next (from RunShared) is requested into L2, spread over the tiles after the first (which
// read panel p itself from L2 again), or over the only one: one core's product of 32 rows
// with a 66 MB matrix went from 76 to 138 GFLOP/s, with 8 rows from 57 to 88.
void Task(const Work& s, int64_t p, int64_t next) {
  const int64_t width = std::min(kPanel, s.n - p * kPanel);
  const int64_t tiles = (s.m + 7) / 8, spread = std::max<int64_t>(tiles - 1, 1);
  const int64_t lines = s.k * kPanel * sizeof(float) / 64;
  const int64_t quota = (lines + spread - 1) / spread;  // lines per tile
  const char* next_panel = reinterpret_cast<const char*>(s.w + next * s.k * kPanel);
  auto ahead = [&](int64_t tile) {
    const int64_t part = tile - (tiles - spread);
    if (next >= s.tasks.count || part < 0) return Prefetch{};
    const char* begin = next_panel + part * quota * 64;
    return Prefetch{begin, std::min(begin + quota * 64, next_panel + lines * 64),
                    (quota + s.k - 1) / s.k};
  };
  int64_t row = 0, tile = 0;
  for (; row + 8 <= s.m; row += 8, ++tile) Tile<8>(s, row, p, width, ahead(tile));
  const Prefetch last = ahead(tile);
  switch (s.m - row) {
    case 7: Tile<7>(s, row, p, width, last); break;
    case 6: Tile<6>(s, row, p, width, last); break;
    case 5: Tile<5>(s, row, p, width, last); break;
    case 4: Tile<4>(s, row, p, width, last); break;
    case 3: Tile<3>(s, row, p, width, last); break;
    case 2: Tile<2>(s, row, p, width, last); break;
    case 1: Tile<1>(s, row, p, width, last); break;
    default: break;
  }
}

ffi::Error PanelMatmul(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x,
                       ffi::Buffer<ffi::F32> panels, ffi::ResultBuffer<ffi::F32> y) {
  const auto xd = x.dimensions(), pd = panels.dimensions(), yd = y->dimensions();
  if (xd.size() != 2 || pd.size() != 3 || yd.size() != 2 || pd[1] != xd[1] ||
      pd[2] != kPanel || yd[0] != xd[0] || yd[1] > pd[0] * kPanel ||
      yd[1] <= (pd[0] - 1) * kPanel) {
    return ffi::Error::InvalidArgument(
        "mgpt_panel_matmul: expected x (M, K), panels (ceil(N / 48), K, 48) and y (M, N)");
  }
  auto s = std::make_shared<Work>();
  s->x = x.typed_data();
  s->w = panels.typed_data();
  s->y = y->typed_data();
  s->m = xd[0];
  s->k = xd[1];
  s->n = yd[1];
  s->tasks.count = pd[0];
  mgpt::RunShared(pool, s, s->m * s->k * s->n >= mgpt::kParallelWork, Task);
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(MgptPanelMatmul, PanelMatmul,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
