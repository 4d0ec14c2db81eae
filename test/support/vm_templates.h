#pragma once

// Template VMs for benchmarks and tests that want cloned pods: a template directory of their own
// on tmpfs, and a wait for podvisord's first template in it.

#include <string>

namespace podvisor::testing {

// A fresh directory under /dev/shm (templates must be on tmpfs) named after `prefix`; "" when
// it cannot be made. The caller removes it.
std::string MakeTemplateDir(const std::string& prefix);

// Waits until a template in `dir` is ready (its template.txt exists). Returns the seconds
// waited, or -1 after `timeout_s`.
double WaitForTemplate(const std::string& dir, int timeout_s);

}  // namespace podvisor::testing
