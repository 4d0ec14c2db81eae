// Feeds arbitrary bytes to the layer unpacker (as plain, gzip or zstd, by magic) inside a temp
// directory, and checks that nothing appeared outside it.

#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "common/fs.h"
#include "image/layer_unpacker.h"

namespace {

int CountEntries(const std::string& dir) {
  int n = 0;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) n += std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, "..");
    closedir(d);
  }
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static std::string base = [] {
    char tmpl[] = "/tmp/podvisor-tar-fuzz-XXXXXX";
    return std::string(mkdtemp(tmpl));
  }();
  const std::string dest = base + "/layer";
  podvisor::RemoveAll(dest).IgnoreError();
  podvisor::MakeDirs(dest, 0755).IgnoreError();
  size_t pos = 0;
  podvisor::ByteReader reader = [&](char* buf, size_t n) -> absl::StatusOr<size_t> {
    size_t k = std::min(n, size - pos);
    std::memcpy(buf, data + pos, k);
    pos += k;
    return k;
  };
  podvisor::UnpackLimits limits;
  limits.max_entry_bytes = 1 << 20;
  limits.max_total_bytes = 8 << 20;
  limits.max_entries = 1000;
  podvisor::UnpackLayer(reader, dest, limits).IgnoreError();
  if (CountEntries(base) != 1) __builtin_trap();  // something escaped the layer dir
  return 0;
}
