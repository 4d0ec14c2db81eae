// Feeds arbitrary bytes to the CNI parsers (config lists, single confs, results of every version,
// error objects): they must return a status, never crash or throw.

#include <cstddef>
#include <cstdint>
#include <string>

#include "network/cni_types.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  (void)podvisor::network::ParseCniConfList(text, "fuzz.conflist", false);
  (void)podvisor::network::ParseCniConfList(text, "fuzz.conf", true);
  absl::StatusOr<podvisor::network::CniResult> r = podvisor::network::ParseCniResult(text);
  (void)r;
  (void)podvisor::network::ParseCniError(text);
  return 0;
}
