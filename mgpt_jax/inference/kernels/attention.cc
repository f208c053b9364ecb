// Attention for the bundle's LM on CPU, an XLA FFI call:
//   out (B, H, Q, D) = softmax(q . k^T + bias) . v for each (row, head, query), with
//   q (B, H, Q, D), k and v (B, H, L, D) (heads-major, as the decode caches are), bias
//   (1 or B, 1 or H, 1 or Q, L).
// The mask is in the bias: a masked key's bias is layers.NEG_INF (-1e10), and its weight is
// exactly 0, so keys past a query's last unmasked one are not read at all (the self-attention
// cache beyond the current step, a prompt's padding). In XLA the same is two batched dots of
// B * H small products, each on one thread (a decode step), or YNNPACK fusions that ran at 8
// GFLOP/s (the encoder), plus four fusions for the softmax, all over every key.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include "shared_tasks.h"
#include "vector_exp.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// Below any real score: layers.NEG_INF is -1e10 and scores are at most a few hundred.
constexpr float kMasked = -1e9f;

struct Work {
  const float *q, *k, *v, *bias;
  float* out;
  int64_t heads, queries, length, dim, bias_rows, bias_heads, bias_queries, pairs, per_task;
  bool prefetch;  // the work is shared among threads: alone, a thread's next task's keys
                  // follow this one's in memory and the hardware streams them
  mgpt::Tasks tasks;
};

float Dot(const float* __restrict a, const float* __restrict b, int64_t n) {
  int64_t i = 0;
  float sum = 0.f;
#ifdef __AVX512F__
  __m512 acc = _mm512_setzero_ps();
  for (; i + 16 <= n; i += 16)
    acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
  sum = _mm512_reduce_add_ps(acc);
#endif
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// s[i] = exp(s[i] - max) in place; returns their sum. Differences below -87 give 0
// (vector_exp.h).
float ExpSum(float* s, int64_t n, float max) {
  int64_t i = 0;
  float total = 0.f;
#ifdef __AVX512F__
  const __m512 top = _mm512_set1_ps(max);
  __m512 acc = _mm512_setzero_ps();
  for (; i < n; i += 16) {  // the last block masked to the n - i left
    const __mmask16 tail = n - i >= 16 ? 0xffff : (1u << (n - i)) - 1;
    const __m512 e =
        mgpt::ExpAbove87(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, s + i), top), tail);
    _mm512_mask_storeu_ps(s + i, tail, e);
    acc = _mm512_add_ps(acc, e);
  }
  total = _mm512_reduce_add_ps(acc);
#endif
  for (; i < n; ++i) {
    const float x = s[i] - max;
    s[i] = x < -87.f ? 0.f : std::exp(x);
    total += s[i];
  }
  return total;
}

// Requests `left` cache lines from `line` on into L2, `per_step` of them for each key read.
struct Ahead {
  const char* line;
  int64_t left, per_step;
  void Step(int64_t keys) {
    for (int64_t i = 0; i < keys * per_step && left > 0; ++i, --left, line += 64) {
#ifdef __AVX512F__
      _mm_prefetch(line, _MM_HINT_T1);
#endif
    }
  }
};

#ifdef __AVX512F__
// The sums of a[0..15]'s lanes, in order, as one vector: a transpose by halves (unpack,
// shuffle, 128-bit shuffles twice), 45 instructions against sixteen horizontal sums.
inline __m512 Sum16(const __m512* a) {
  __m512 b[8], c[4], e[2];
  for (int i = 0; i < 8; ++i)  // per 128 bits: [x, y, x, y]
    b[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]),
                         _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
  for (int i = 0; i < 4; ++i)  // per 128 bits: four keys
    c[i] = _mm512_add_ps(_mm512_shuffle_ps(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  for (int i = 0; i < 2; ++i)  // halves of eight keys' sums
    e[i] = _mm512_add_ps(_mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  return _mm512_add_ps(_mm512_shuffle_f32x4(e[0], e[1], _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(e[0], e[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

// Query for a head size of 16 * V: the query and the output held in registers, scores sixteen
// keys at a time (keys up to the next multiple of 16 are read where the cache holds them).
template <int V>
void QueryFixed(const float* q, const float* k, const float* v, const float* bias, int64_t n,
                 int64_t length, Ahead& keys, Ahead& values, float* scores, float* out) {
  constexpr int64_t d = 16 * V;
  __m512 query[V];
  for (int i = 0; i < V; ++i) query[i] = _mm512_loadu_ps(q + 16 * i);
  __m512 top = _mm512_set1_ps(-INFINITY);
  int64_t j = 0;
  for (; j + 16 <= n || (j < n && j + 16 <= length); j += 16) {
    keys.Step(16);
    __m512 sums[16];
    for (int r = 0; r < 16; ++r) {
      const float* kr = k + (j + r) * d;
      sums[r] = _mm512_mul_ps(query[0], _mm512_loadu_ps(kr));
      for (int i = 1; i < V; ++i)
        sums[r] = _mm512_fmadd_ps(query[i], _mm512_loadu_ps(kr + 16 * i), sums[r]);
    }
    const __mmask16 live = n - j >= 16 ? 0xffff : (1u << (n - j)) - 1;
    const __m512 block = _mm512_add_ps(Sum16(sums), _mm512_maskz_loadu_ps(live, bias + j));
    _mm512_storeu_ps(scores + j, block);
    top = _mm512_mask_max_ps(top, live, top, block);
  }
  float max = _mm512_reduce_max_ps(top);
  for (; j < n; ++j) {  // the tail where the cache ends
    keys.Step(1);
    __m512 sum = _mm512_mul_ps(query[0], _mm512_loadu_ps(k + j * d));
    for (int i = 1; i < V; ++i)
      sum = _mm512_fmadd_ps(query[i], _mm512_loadu_ps(k + j * d + 16 * i), sum);
    scores[j] = _mm512_reduce_add_ps(sum) + bias[j];
    max = std::max(max, scores[j]);
  }
  const __m512 inverse = _mm512_set1_ps(1.f / ExpSum(scores, n, max));
  // Even and odd keys in sums of their own: half as long a chain of dependent additions.
  __m512 even[V], odd[V];
  for (int i = 0; i < V; ++i) even[i] = odd[i] = _mm512_setzero_ps();
  for (j = 0; j + 2 <= n; j += 2) {
    values.Step(2);
    const __m512 p = _mm512_set1_ps(scores[j]), r = _mm512_set1_ps(scores[j + 1]);
    for (int i = 0; i < V; ++i) {
      even[i] = _mm512_fmadd_ps(p, _mm512_loadu_ps(v + j * d + 16 * i), even[i]);
      odd[i] = _mm512_fmadd_ps(r, _mm512_loadu_ps(v + (j + 1) * d + 16 * i), odd[i]);
    }
  }
  if (j < n) {
    values.Step(1);
    const __m512 p = _mm512_set1_ps(scores[j]);
    for (int i = 0; i < V; ++i)
      even[i] = _mm512_fmadd_ps(p, _mm512_loadu_ps(v + j * d + 16 * i), even[i]);
  }
  for (int i = 0; i < V; ++i)
    _mm512_storeu_ps(out + 16 * i, _mm512_mul_ps(_mm512_add_ps(even[i], odd[i]), inverse));
}
#endif

// The output of one query whose first n keys are read (n >= 1).
void Query(const Work& s, const float* q, const float* k, const float* v, const float* bias,
           int64_t n, Ahead& keys, Ahead& values, float* out) {
  const int64_t d = s.dim;
  thread_local std::vector<float> buffer;
  buffer.resize(std::max<int64_t>(n, 16) + 16);
  float* scores = buffer.data();
#ifdef __AVX512F__
  switch (d) {
    case 16: QueryFixed<1>(q, k, v, bias, n, s.length, keys, values, scores, out); return;
    case 32: QueryFixed<2>(q, k, v, bias, n, s.length, keys, values, scores, out); return;
    case 64: QueryFixed<4>(q, k, v, bias, n, s.length, keys, values, scores, out); return;
    case 128: QueryFixed<8>(q, k, v, bias, n, s.length, keys, values, scores, out); return;
  }
#endif
  float max = -INFINITY;
  for (int64_t j = 0; j < n; ++j) {
    keys.Step(1);
    scores[j] = Dot(q, k + j * d, d) + bias[j];
    max = std::max(max, scores[j]);
  }
  const float inverse = 1.f / ExpSum(scores, n, max);
  std::fill(out, out + d, 0.f);
  for (int64_t j = 0; j < n; ++j) {
    values.Step(1);
    const float p = scores[j];
    if (p == 0.f) continue;
    const float* vj = v + j * d;
    for (int64_t c = 0; c < d; ++c) out[c] += p * vj[c];
  }
  for (int64_t c = 0; c < d; ++c) out[c] *= inverse;
}

// How many keys a query reads: 1 + the last whose bias is above kMasked (0 if none).
int64_t Unmasked(const float* bias, int64_t length) {
  int64_t n = length;
#ifdef __AVX512F__
  const __m512 masked = _mm512_set1_ps(kMasked);
  for (; n >= 16; n -= 16) {
    const uint32_t live = _mm512_cmp_ps_mask(_mm512_loadu_ps(bias + n - 16), masked, _CMP_GT_OQ);
    if (live) return n - 16 + 32 - __builtin_clz(live);
  }
#endif
  while (n > 0 && bias[n - 1] <= kMasked) --n;
  return n;
}

// One (row, head) `pair`, every query of it. A query with every key masked (a prompt's
// padding) gets uniform weights, as XLA's softmax gives: the mean of the values, computed once.
// While the first query computes, the keys and values of the pair the thread does next
// (`next`, or pairs when none) are requested, as many as it reads (the caches come from DRAM
// in a decode step: base's 12 layers at batch 32 hold 151 MB).
void Pair(const Work& s, int64_t pair, int64_t next) {
  const int64_t row = pair / s.heads, head = pair % s.heads, d = s.dim, length = s.length;
  const float* k = s.k + pair * length * d;
  const float* v = s.v + pair * length * d;
  const float* bias = s.bias + ((s.bias_rows == 1 ? 0 : row) * s.bias_heads +
                                (s.bias_heads == 1 ? 0 : head)) * s.bias_queries * length;
  thread_local std::vector<float> mean;
  bool have_mean = false;
  for (int64_t query = 0; query < s.queries; ++query) {
    const float* query_bias = bias + (s.bias_queries == 1 ? 0 : query) * length;
    float* out = s.out + (pair * s.queries + query) * d;
    const int64_t n = Unmasked(query_bias, length);
    if (n == 0) {
      if (!have_mean) {
        mean.assign(d, 0.f);
        for (int64_t j = 0; j < length; ++j)
          for (int64_t c = 0; c < d; ++c) mean[c] += v[j * d + c];
        for (int64_t c = 0; c < d; ++c) mean[c] *= 1.f / length;
        have_mean = true;
      }
      std::copy(mean.begin(), mean.end(), out);
      continue;
    }
    const bool ahead = query == 0 && s.prefetch && next < s.pairs;
    const int64_t lines = ahead ? (n * d * sizeof(float) + 63) / 64 : 0;
    const int64_t per_key = (lines + n - 1) / n;
    Ahead keys{reinterpret_cast<const char*>(s.k + next * length * d), lines, per_key};
    Ahead values{reinterpret_cast<const char*>(s.v + next * length * d), lines, per_key};
    Query(s, s.q + (pair * s.queries + query) * d, k, v, query_bias, n, keys, values, out);
  }
}

// Task t is pairs [t * per_task, (t + 1) * per_task): claiming a task is two atomic operations
// on cache lines the threads share, which took as long as one of the quickstart's (row, head)
// pairs of a decode step.
void Task(const Work& s, int64_t t, int64_t next) {
  const int64_t first = t * s.per_task, last = std::min(first + s.per_task, s.pairs);
  for (int64_t pair = first; pair < last; ++pair)
    Pair(s, pair, pair + 1 < last ? pair + 1 : std::min(next * s.per_task, s.pairs));
}

ffi::Error Attention(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> q, ffi::Buffer<ffi::F32> k,
                     ffi::Buffer<ffi::F32> v, ffi::Buffer<ffi::F32> bias,
                     ffi::ResultBuffer<ffi::F32> out) {
  const auto qd = q.dimensions(), kd = k.dimensions(), vd = v.dimensions(),
             bd = bias.dimensions(), od = out->dimensions();
  const bool ok = qd.size() == 4 && kd.size() == 4 && vd.size() == 4 && bd.size() == 4 &&
                  od.size() == 4 && kd[0] == qd[0] && kd[1] == qd[1] && kd[3] == qd[3] &&
                  std::equal(kd.begin(), kd.end(), vd.begin()) &&
                  (bd[0] == 1 || bd[0] == qd[0]) && (bd[1] == 1 || bd[1] == qd[1]) &&
                  (bd[2] == 1 || bd[2] == qd[2]) && bd[3] == kd[2] &&
                  std::equal(qd.begin(), qd.end(), od.begin());
  if (!ok) {
    return ffi::Error::InvalidArgument(
        "mgpt_attention: expected q (B, H, Q, D), k and v (B, H, L, D), bias (1 or B, 1 or H, "
        "1 or Q, L) and out (B, H, Q, D)");
  }
  auto s = std::make_shared<Work>();
  s->q = q.typed_data();
  s->k = k.typed_data();
  s->v = v.typed_data();
  s->bias = bias.typed_data();
  s->out = out->typed_data();
  s->heads = qd[1];
  s->queries = qd[2];
  s->length = kd[2];
  s->dim = qd[3];
  s->bias_rows = bd[0];
  s->bias_heads = bd[1];
  s->bias_queries = bd[2];
  s->pairs = qd[0] * qd[1];
  const int64_t multiply_adds = 2 * s->pairs * s->queries * s->length * s->dim;
  s->prefetch = multiply_adds >= mgpt::kParallelWork;
  // About eight tasks a thread, each of at least kTaskWork multiply-adds.
  s->per_task = std::max<int64_t>(
      {1, s->pairs / (8 * std::max<int64_t>(1, pool.num_threads())),
       mgpt::kTaskWork / std::max<int64_t>(1, multiply_adds / s->pairs)});
  s->tasks.count = (s->pairs + s->per_task - 1) / s->per_task;
  mgpt::RunShared(pool, s, s->prefetch, Task);
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(MgptAttention, Attention,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
