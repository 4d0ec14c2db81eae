#pragma once

// Runs independent calls on a bounded number of threads, for requests that ask many pods at once
// (ListContainerStats, ListPodSandboxStats): one slow pod costs its own call, not the others'.

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <functional>
#include <system_error>
#include <thread>
#include <vector>

namespace podvisor {

// Calls fn(0) .. fn(n - 1), at most `max_parallel` (at least 1) at a time, and returns when every
// call returned. The calls run on worker threads (on the caller's when
// n is 1 or no thread can be created), so the
// calls must be safe to run concurrently; the caller bounds how long each one takes.
inline void ForEachInParallel(size_t n, size_t max_parallel,
                              const std::function<void(size_t)>& fn) {
  if (n == 0) return;
  if (n == 1) {
    fn(0);
    return;
  }
  std::atomic<size_t> next{0};
  const size_t workers = std::min(n, std::max<size_t>(max_parallel, 1));
  std::vector<std::thread> threads;
  threads.reserve(workers);
  auto work = [&] {
    for (size_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) fn(i);
  };
  for (size_t w = 0; w < workers; ++w) {
    try {
      threads.emplace_back(work);
    } catch (const std::system_error&) {
      break;  // no more threads to be had: the ones running (or this one) do the rest
    }
  }
  if (threads.empty()) work();
  for (std::thread& t : threads) t.join();
}

}  // namespace podvisor
