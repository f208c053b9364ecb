// Greedy choice for the bundle's decode loop on CPU, an XLA FFI call:
//   token (N,) = the first argmax of each row of logits (N, V), lse (N,) = its logsumexp,
// what lm/sampling.py's argmax_and_logsumexp returns. XLA:CPU computed them in three
// reductions and a gather at about 3 ns a logit: 87-113 us a step for the quickstart's
// model at batch 32 (32 x 1152), about a tenth of the step. Here a row is read twice: once for its
// max and first argmax, once for the sum of exp.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>

#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include "shared_tasks.h"
#include "vector_exp.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// Logits below which one thread does the rows alone, and a task's least share.
constexpr int64_t kParallelLogits = 1 << 16;
constexpr int64_t kTaskLogits = 1 << 14;

struct Work {
  const float* logits;
  int32_t* token;
  float* lse;
  int64_t vocab, rows_per_task, rows;
  mgpt::Tasks tasks;
};

// (max, first index of the max) of x[0, n).
std::pair<float, int64_t> FirstMax(const float* x, int64_t n) {
  float top = -std::numeric_limits<float>::infinity();
  int64_t at = 0, i = 0;
#ifdef __AVX512F__
  // Each lane keeps its own first max (a strict >), and lanes hold disjoint indices, so the
  // smallest index among the lanes at the row's max is the row's first.
  __m512 lane_top = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512i lane_at = _mm512_setzero_si512();
  __m512i index = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i sixteen = _mm512_set1_epi32(16);
  for (; i < n; i += 16, index = _mm512_add_epi32(index, sixteen)) {
    const __mmask16 tail = n - i >= 16 ? 0xffff : (1u << (n - i)) - 1;
    const __m512 v = _mm512_mask_loadu_ps(lane_top, tail, x + i);  // past n: no change
    const __mmask16 above = _mm512_cmp_ps_mask(v, lane_top, _CMP_GT_OQ);
    lane_top = _mm512_mask_mov_ps(lane_top, above, v);
    lane_at = _mm512_mask_mov_epi32(lane_at, above, index);
  }
  top = _mm512_reduce_max_ps(lane_top);
  const __mmask16 at_top = _mm512_cmp_ps_mask(lane_top, _mm512_set1_ps(top), _CMP_EQ_OQ);
  at = _mm512_mask_reduce_min_epi32(at_top, lane_at);
#endif
  for (; i < n; ++i) {
    if (x[i] > top) top = x[i], at = i;
  }
  return {top, at};
}

float SumExp(const float* x, int64_t n, float max) {
  int64_t i = 0;
  float total = 0.f;
#ifdef __AVX512F__
  const __m512 top = _mm512_set1_ps(max);
  __m512 acc = _mm512_setzero_ps();
  for (; i < n; i += 16) {
    const __mmask16 tail = n - i >= 16 ? 0xffff : (1u << (n - i)) - 1;
    acc = _mm512_add_ps(
        acc, mgpt::ExpAbove87(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x + i), top), tail));
  }
  total = _mm512_reduce_add_ps(acc);
#endif
  for (; i < n; ++i) total += x[i] - max < -87.f ? 0.f : std::exp(x[i] - max);
  return total;
}

void Task(const Work& s, int64_t t, int64_t /*next*/) {
  const int64_t end = std::min(s.rows, (t + 1) * s.rows_per_task);
  for (int64_t r = t * s.rows_per_task; r < end; ++r) {
    const float* row = s.logits + r * s.vocab;
    const auto [top, at] = FirstMax(row, s.vocab);
    s.token[r] = static_cast<int32_t>(at);
    s.lse[r] = top + std::log(SumExp(row, s.vocab, top));
  }
}

ffi::Error GreedyChoice(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> logits,
                        ffi::ResultBuffer<ffi::S32> token, ffi::ResultBuffer<ffi::F32> lse) {
  const auto ld = logits.dimensions(), td = token->dimensions(), sd = lse->dimensions();
  if (ld.size() != 2 || td.size() != 1 || sd.size() != 1 || td[0] != ld[0] ||
      sd[0] != ld[0] || ld[1] < 1) {
    return ffi::Error::InvalidArgument(
        "mgpt_greedy_choice: expected logits (N, V >= 1), token (N,) and lse (N,)");
  }
  auto s = std::make_shared<Work>();
  s->logits = logits.typed_data();
  s->token = token->typed_data();
  s->lse = lse->typed_data();
  s->rows = ld[0];
  s->vocab = ld[1];
  s->rows_per_task = std::max<int64_t>(1, kTaskLogits / s->vocab);
  s->tasks.count = (s->rows + s->rows_per_task - 1) / s->rows_per_task;
  mgpt::RunShared(pool, s, s->rows * s->vocab >= kParallelLogits, Task);
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(MgptGreedyChoice, GreedyChoice,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
