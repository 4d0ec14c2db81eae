#include "test/support/vm_templates.h"

#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <thread>

namespace podvisor::testing {

std::string MakeTemplateDir(const std::string& prefix) {
  std::string path = "/dev/shm/" + prefix + ".XXXXXX";
  if (mkdtemp(path.data()) == nullptr) return "";
  return path;
}

double WaitForTemplate(const std::string& dir, int timeout_s) {
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::seconds(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
      if (std::filesystem::exists(e.path() / "template.txt")) {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return -1;
}

}  // namespace podvisor::testing
