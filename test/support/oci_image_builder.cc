#include "test/support/oci_image_builder.h"

#include <archive.h>
#include <archive_entry.h>
#include <openssl/evp.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

extern char** environ;

namespace podvisor::testing {

TarEntry File(std::string path, std::string data, int mode) {
  TarEntry e;
  e.path = std::move(path);
  e.data = std::move(data);
  e.mode = mode;
  return e;
}

TarEntry Dir(std::string path, int mode) {
  TarEntry e;
  e.path = std::move(path);
  e.type = TarEntry::kDir;
  e.mode = mode;
  return e;
}

TarEntry Symlink(std::string path, std::string target) {
  TarEntry e;
  e.path = std::move(path);
  e.link = std::move(target);
  e.type = TarEntry::kSymlink;
  e.mode = 0777;
  return e;
}

TarEntry Hardlink(std::string path, std::string target) {
  TarEntry e;
  e.path = std::move(path);
  e.link = std::move(target);
  e.type = TarEntry::kHardlink;
  return e;
}

std::string MakeTar(const std::vector<TarEntry>& entries) {
  std::string out;
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  archive_write_set_bytes_in_last_block(a, 1);
  archive_write_open(
      a, &out, nullptr,
      [](archive*, void* ctx, const void* buf, size_t n) -> la_ssize_t {
        static_cast<std::string*>(ctx)->append(static_cast<const char*>(buf), n);
        return static_cast<la_ssize_t>(n);
      },
      nullptr);
  for (const TarEntry& t : entries) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, t.path.c_str());
    archive_entry_set_perm(e, t.mode);
    archive_entry_set_uid(e, t.uid);
    archive_entry_set_gid(e, t.gid);
    archive_entry_set_mtime(e, 1700000000, 0);
    switch (t.type) {
      case TarEntry::kFile:
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_size(e, static_cast<la_int64_t>(t.data.size()));
        break;
      case TarEntry::kDir:
        archive_entry_set_filetype(e, AE_IFDIR);
        break;
      case TarEntry::kSymlink:
        archive_entry_set_filetype(e, AE_IFLNK);
        archive_entry_set_symlink(e, t.link.c_str());
        break;
      case TarEntry::kHardlink:
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_hardlink(e, t.link.c_str());
        archive_entry_set_size(e, 0);
        break;
      case TarEntry::kCharDev:
        archive_entry_set_filetype(e, AE_IFCHR);
        archive_entry_set_rdev(e, makedev(1, 3));
        break;
      case TarEntry::kFifo:
        archive_entry_set_filetype(e, AE_IFIFO);
        break;
    }
    archive_write_header(a, e);
    if (t.type == TarEntry::kFile && !t.data.empty()) {
      archive_write_data(a, t.data.data(), t.data.size());
    }
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

std::string Compress(const std::string& data, Compression compression) {
  if (compression == Compression::kNone) return data;
  if (compression == Compression::kZstd) {
    std::string out(ZSTD_compressBound(data.size()), '\0');
    size_t n = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 3);
    if (ZSTD_isError(n)) throw std::runtime_error("zstd");
    out.resize(n);
    return out;
  }
  z_stream zs{};
  deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&zs, data.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

std::string LayerMediaType(Compression compression) {
  switch (compression) {
    case Compression::kNone:
      return "application/vnd.oci.image.layer.v1.tar";
    case Compression::kGzip:
      return "application/vnd.oci.image.layer.v1.tar+gzip";
    case Compression::kZstd:
      return "application/vnd.oci.image.layer.v1.tar+zstd";
  }
  return "";
}

std::string Sha256Hex(const std::string& data) {
  unsigned char md[32];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "sha256:";
  for (unsigned i = 0; i < len; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 15]);
  }
  return out;
}

OciLayout::OciLayout(std::string dir) : dir_(std::move(dir)) {
  std::filesystem::create_directories(dir_ + "/blobs/sha256");
  std::ofstream(dir_ + "/oci-layout") << R"({"imageLayoutVersion":"1.0.0"})";
  WriteIndex();
}

std::string OciLayout::AddBlob(const std::string& data) {
  std::string digest = Sha256Hex(data);
  std::ofstream(dir_ + "/blobs/sha256/" + digest.substr(7), std::ios::binary) << data;
  return digest;
}

OciLayout::Layer OciLayout::MakeLayer(const std::vector<TarEntry>& entries,
                                      Compression compression) {
  std::string tar = MakeTar(entries);
  return Layer{Compress(tar, compression), LayerMediaType(compression), Sha256Hex(tar)};
}

nlohmann::json OciLayout::AddImage(const std::vector<Layer>& layers, const std::string& arch,
                                   const std::string& user) {
  nlohmann::json diff_ids = nlohmann::json::array();
  nlohmann::json layer_descs = nlohmann::json::array();
  for (const Layer& l : layers) {
    diff_ids.push_back(l.diff_id);
    std::string d = AddBlob(l.blob);
    layer_descs.push_back({{"mediaType", l.media_type}, {"digest", d}, {"size", l.blob.size()}});
  }
  nlohmann::json config = {{"architecture", arch},
                           {"os", "linux"},
                           {"config", {{"User", user}, {"Cmd", {"/bin/sh"}}}},
                           {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
  std::string config_bytes = config.dump();
  std::string config_digest = AddBlob(config_bytes);
  nlohmann::json manifest = {{"schemaVersion", 2},
                             {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                             {"config",
                              {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                               {"digest", config_digest},
                               {"size", config_bytes.size()}}},
                             {"layers", layer_descs}};
  std::string manifest_bytes = manifest.dump();
  std::string digest = AddBlob(manifest_bytes);
  return {{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
          {"digest", digest},
          {"size", manifest_bytes.size()},
          {"platform", {{"architecture", arch}, {"os", "linux"}}}};
}

nlohmann::json OciLayout::AddIndex(const std::vector<nlohmann::json>& manifests) {
  nlohmann::json index = {{"schemaVersion", 2},
                          {"mediaType", "application/vnd.oci.image.index.v1+json"},
                          {"manifests", manifests}};
  std::string bytes = index.dump();
  std::string digest = AddBlob(bytes);
  return {{"mediaType", "application/vnd.oci.image.index.v1+json"},
          {"digest", digest},
          {"size", bytes.size()}};
}

void OciLayout::Tag(const std::string& tag, nlohmann::json descriptor) {
  descriptor.erase("platform");
  descriptor["annotations"] = {{"org.opencontainers.image.ref.name", tag}};
  tagged_.push_back(std::move(descriptor));
  WriteIndex();
}

void OciLayout::WriteIndex() {
  nlohmann::json index = {{"schemaVersion", 2}, {"manifests", nlohmann::json::array()}};
  for (const auto& d : tagged_) index["manifests"].push_back(d);
  std::ofstream(dir_ + "/index.json") << index.dump();
}

int Run(const std::vector<std::string>& argv, std::string* output) {
  int fds[2];
  if (::pipe(fds) != 0) return -1;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 2);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  std::vector<char*> args;
  for (const auto& s : argv) args.push_back(const_cast<char*>(s.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while (rc == 0 && (n = ::read(fds[0], buf, sizeof buf)) > 0) out.append(buf, n);
  ::close(fds[0]);
  if (output) *output = out;
  if (rc != 0) return -1;
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string Push(const OciLayout& layout, const std::string& tag, const std::string& dest,
                 const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {"skopeo", "--insecure-policy", "copy", "--all",
                                   "--dest-tls-verify=false"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back("oci:" + layout.dir() + ":" + tag);
  argv.push_back("docker://" + dest);
  std::string out;
  if (Run(argv, &out) == 0) return "";
  return out.empty() ? "skopeo failed" : out;
}

}  // namespace podvisor::testing
