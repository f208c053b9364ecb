// A product split into tasks, shared with XLA's intra-op thread pool (int8_matmul.cc,
// panel_matmul.cc).
#ifndef MGPT_JAX_KERNELS_SHARED_TASKS_H_
#define MGPT_JAX_KERNELS_SHARED_TASKS_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>

#include "xla/ffi/api/ffi.h"

namespace mgpt {

// Multiply-adds below which one thread does it all: waking a pool thread costs more than a
// small product takes.
constexpr int64_t kParallelWork = 1 << 18;

struct Tasks {
  int64_t count = 0;
  std::atomic<int64_t> next{0}, done{0};
};

// Runs task(*work, t, next) for t in [0, work->tasks.count), on the caller and, for products
// of at least kParallelWork multiply-adds, on pool threads. Each thread claims its next task
// before it runs one, and `next` (count when there is none) says which, so that a task can
// fetch the next one's data while it computes. The caller claims tasks too, so the product
// finishes even when no pool thread is free; a late helper finds nothing to claim and touches
// only the counters, which the shared pointer keeps alive.
template <typename Work>
void RunShared(xla::ffi::ThreadPool pool, std::shared_ptr<Work> work, int64_t multiply_adds,
               void (*task)(const Work&, int64_t, int64_t)) {
  auto drain = [work, task] {
    Tasks& tasks = work->tasks;
    for (int64_t t = tasks.next.fetch_add(1), next; t < tasks.count; t = next) {
      next = std::min(tasks.next.fetch_add(1), tasks.count);
      task(*work, t, next);
      tasks.done.fetch_add(1, std::memory_order_release);
    }
  };
  const int64_t helpers = multiply_adds < kParallelWork
                              ? 0 : std::min<int64_t>(pool.num_threads(), work->tasks.count) - 1;
  for (int64_t i = 0; i < helpers; ++i) pool.Schedule([drain] { drain(); });
  drain();
  while (work->tasks.done.load(std::memory_order_acquire) < work->tasks.count) {
    std::this_thread::yield();
  }
}

}  // namespace mgpt

#endif  // MGPT_JAX_KERNELS_SHARED_TASKS_H_
