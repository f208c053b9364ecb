// A product split into tasks, shared with XLA's intra-op thread pool (int8_matmul.cc,
// panel_matmul.cc, attention.cc).
#ifndef MGPT_JAX_KERNELS_SHARED_TASKS_H_
#define MGPT_JAX_KERNELS_SHARED_TASKS_H_

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#ifdef __SSE2__
#include <immintrin.h>
#endif

#include "xla/ffi/api/ffi.h"

namespace mgpt {

// Multiply-adds below which one thread does a float32 product (panels, attention) alone. With
// helpers lingering (kLinger) sharing pays from here: small's attention projections at batch 1 (512 x 384, under the 2^18 this
// was) went 65 -> 78 tokens/s shared, the quickstart's model 6,291 -> 6,699 (alternating runs).
constexpr int64_t kParallelWork = 1 << 14;
// Multiply-adds below which a task is split finer than worth it: claiming one is two atomic
// operations on cache lines the threads pass between them.
constexpr int64_t kTaskWork = 1 << 14;

// How long a helper stays after its work, for the next product. A decode step is a chain of
// products with a few microseconds of XLA's own work between them, and a pool thread woken
// for each one came 15-60 us late: small's products at batch 32 take 70-200 us.
constexpr std::chrono::microseconds kLinger{50};

struct Tasks {
  int64_t count = 0;
  // Apart, so that the caller's waiting on `done` does not take the line claims go through.
  alignas(64) std::atomic<int64_t> next{0};
  alignas(64) std::atomic<int64_t> done{0};
};

// The product being shared now, where lingering helpers find it.
struct Board {
  std::mutex mutex;
  std::shared_ptr<std::function<void()>> drain;  // guarded by mutex
  std::atomic<uint64_t> posted{0};               // products put on the board
  std::atomic<int> lingering{0};                 // helpers that will look at it
};

inline Board& board() {  // one board for the library: inline, so one static in every file
  static Board* const instance = new Board;  // never destroyed: helpers may outlive exit
  return *instance;
}

inline void Relax() {
#ifdef __SSE2__
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// A pool thread's work: drain what is on the board, then whatever is put there next, until
// kLinger passes with nothing new.
inline void Help() {
  Board& b = board();
  b.lingering.fetch_add(1);
  uint64_t seen = 0;
  auto until = std::chrono::steady_clock::now() + kLinger;
  while (std::chrono::steady_clock::now() < until) {
    const uint64_t posted = b.posted.load(std::memory_order_acquire);
    if (posted == seen) {
      Relax();
      continue;
    }
    seen = posted;
    std::shared_ptr<std::function<void()>> drain;
    {
      std::lock_guard<std::mutex> lock(b.mutex);
      drain = b.drain;
    }
    if (drain) (*drain)();
    until = std::chrono::steady_clock::now() + kLinger;
  }
  b.lingering.fetch_sub(1);
}

// Runs task(*work, t, next) for t in [0, work->tasks.count), on the caller and, where
// `shared` (a product of at least kParallelWork multiply-adds, say), on pool threads (those still lingering after the
// last product, and new ones for the rest). Each thread claims its next task before it runs
// one, and `next` (count when there is none) says which, so that a task can fetch the next
// one's data while it computes. The caller claims tasks too, so the product finishes even
// when no helper comes; a late helper finds nothing to claim and touches only the counters,
// which the shared pointers keep alive.
template <typename Work>
void RunShared(xla::ffi::ThreadPool pool, std::shared_ptr<Work> work, bool shared,
               void (*task)(const Work&, int64_t, int64_t)) {
  auto drain = std::make_shared<std::function<void()>>([work, task] {
    Tasks& tasks = work->tasks;
    for (int64_t t = tasks.next.fetch_add(1), next; t < tasks.count; t = next) {
      next = std::min(tasks.next.fetch_add(1), tasks.count);
      task(*work, t, next);
      tasks.done.fetch_add(1, std::memory_order_release);
    }
  });
  const int64_t helpers =
      shared ? std::min<int64_t>(pool.num_threads(), work->tasks.count) - 1 : 0;
  Board& b = board();
  if (helpers > 0) {
    {
      std::lock_guard<std::mutex> lock(b.mutex);
      b.drain = drain;
    }
    b.posted.fetch_add(1, std::memory_order_release);
    for (int64_t i = b.lingering.load(); i < helpers; ++i) pool.Schedule([] { Help(); });
  }
  (*drain)();
  while (work->tasks.done.load(std::memory_order_acquire) < work->tasks.count) Relax();
  if (helpers > 0) {
    std::lock_guard<std::mutex> lock(b.mutex);
    if (b.drain == drain) b.drain.reset();
  }
}

}  // namespace mgpt

#endif  // MGPT_JAX_KERNELS_SHARED_TASKS_H_
