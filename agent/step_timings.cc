#include "agent/step_timings.h"

namespace podvisor::agent {
namespace {

thread_local ScopedStepTimings* current = nullptr;

}  // namespace

ScopedStepTimings::ScopedStepTimings(std::chrono::steady_clock::time_point start)
    : previous_(current), last_(start) {
  current = this;
}

ScopedStepTimings::~ScopedStepTimings() { current = previous_; }

void ScopedStepTimings::CopyTo(v1::Response* response) const {
  for (const auto& [step, ns] : steps_) {
    v1::StepTiming* t = response->add_timings();
    t->set_step(step);
    t->set_duration_ns(ns);
  }
}

void MarkStep(const char* step) {
  ScopedStepTimings* t = current;
  if (t == nullptr) return;
  const auto now = std::chrono::steady_clock::now();
  if (t->steps_.size() < kMaxStepTimings) {
    t->steps_.emplace_back(
        step, std::chrono::duration_cast<std::chrono::nanoseconds>(now - t->last_).count());
  }
  t->last_ = now;
}

}  // namespace podvisor::agent
