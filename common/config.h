#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace podvisor {

// Settings of the guest VMs. Empty paths are resolved against the guest image built beside the
// daemon binary (<bin>/../guest/).
struct HypervisorConfig {
  std::string accel = "auto";  // auto | kvm | tcg
  std::string libvirt_uri;     // empty: the embedded driver rooted under state_dir
  int64_t default_vcpus = 1;
  int64_t default_memory_mib = 256;
  std::string kernel;
  std::string initrd;
  int64_t boot_timeout_seconds = 30;
  // Host paths (volumes) reach pod VMs over virtiofs, served by this virtiofsd; false: read-only
  // volumes are given as snapshots and writable ones are refused.
  bool shared_filesystem = true;
  std::string virtiofsd = "/usr/lib/qemu/virtiofsd";
  // Hardening of the VM and its console (docs/reliability.md, docs/configuration.md).
  bool qemu_sandbox = true;                 // QEMU's own seccomp filter (-sandbox on,...)
  bool guest_mitigations = true;            // false: the guest kernel boots with mitigations=off
  int64_t console_log_max_bytes = 1 << 20;  // the guest console's log file keeps this much tail
  // What a guest can write through the shared directory (docs/reliability.md): the directory
  // itself is a tmpfs of this size; > 0, kubelet emptyDirs get a tmpfs of that size.
  int64_t shared_dir_max_bytes = 16 << 20;
  int64_t empty_dir_max_bytes = 0;
  // A guest whose agent sends nothing (not even a heartbeat answer) for this long is dead: its
  // sandbox goes NOTREADY. A crashed QEMU closes the channel at once; this bound is for a frozen
  // guest, and must outlast a TCG guest starved of CPU on a loaded node.
  int64_t agent_dead_after_ms = 30000;
  // Pod VMs are cloned from template VMs (one per size, built in the background) when a ready
  // template fits; others boot cold. Needs shared_filesystem (clones share over 9p).
  bool templates = true;
  // Where templates live (on tmpfs); empty: /dev/shm/podvisor-templates-<hash of state_dir>.
  std::string template_dir;
  // Memory sizes templates are built for (with default_vcpus); empty: default_memory_mib only.
  // A pod is cloned from the smallest template at least its size (docs/hypervisor.md).
  std::vector<int64_t> template_memory_mib;
};

struct StreamingConfig {
  std::string address = "127.0.0.1";
  int64_t port = 0;  // 0: an ephemeral port chosen at start
  std::string tls_cert_file;
  std::string tls_key_file;

  // Limits against clients that hold connections open or flood them, and against guests that
  // flood output (docs/reliability.md, "Streaming limits").
  int64_t request_header_timeout_seconds = 10;    // accept -> request head read (and TLS)
  int64_t stream_creation_timeout_seconds = 30;   // upgrade -> every announced stream opened
  int64_t idle_timeout_seconds = 4 * 3600;        // upgraded connection with no traffic
  int64_t max_connections = 512;                  // upgraded connections at once
  int64_t max_unauthenticated_connections = 128;  // connections before their token (oldest go)
  int64_t max_unauthenticated_per_source = 32;    // ... from one client address
  int64_t max_sessions = 4096;                    // session threads (exec, attach, forwards)
  int64_t max_ports_per_request = 64;             // ports of one PortForward
  int64_t max_forwards_per_connection = 256;      // forwarded connections at once on one
  int64_t max_buffered_input_kib = 4096;          // client bytes buffered per connection
  int64_t max_queued_control_frames = 1000;       // replies queued for a client not reading
  int64_t output_window_kib = 1024;               // guest output in flight per session stream
};

struct CniConfig {
  std::string conf_dir = "/etc/cni/net.d";
  std::vector<std::string> bin_dirs = {"/usr/lib/cni", "/opt/cni/bin"};
};

struct RegistryHostConfig {
  std::vector<std::string> mirrors;  // endpoints such as http://127.0.0.1:5001, tried in order
  bool insecure_skip_verify = false;
  bool plain_http = false;
  std::string ca_file;
};

struct RegistryConfig {
  std::map<std::string, RegistryHostConfig> hosts;  // keyed by registry host, e.g. docker.io
  int64_t max_concurrent_downloads = 3;
  // Images reported as pinned (kubelet's image GC keeps them), by tag or digest reference.
  std::vector<std::string> pinned_images;
  // Limits on what a registry or an image can make a pull consume (docs/reliability.md).
  int64_t max_layers = 128;                    // layers in one manifest
  int64_t pull_progress_timeout_seconds = 60;  // a transfer slower than the rate below this long
  int64_t pull_min_bytes_per_second = 1024;    //   aborts (no progress)
  int64_t min_free_disk_bytes = 64 << 20;      // kept free on the image store's filesystem
};

// The runtime handlers (docs/runtime-handlers.md): what the default handler does with pods that
// need the host's namespaces, and the host handler's tools.
struct HandlersConfig {
  std::string host_pods = "host";  // host | refuse
  std::string crun = "/usr/bin/crun";
  std::string monitor;  // podvisor-monitor; empty: the one beside podvisord
};

struct MetricsConfig {
  // host:port of the Prometheus endpoint (GET /metrics); empty disables it. Port 0: an
  // ephemeral port chosen at start (tests).
  std::string address = "127.0.0.1:10251";
};

// ListContainerStats / ListPodSandboxStats (docs/reliability.md, "Stats"): the pods' agents are
// asked in parallel, each with a short deadline, so one stalled guest holds nobody else up.
struct StatsConfig {
  int64_t max_parallel = 16;  // agents asked at once
  int64_t agent_timeout_ms =
      2000;  // per pod; a guest that has not answered is left without figures
};

// The daemon's whole configuration: one YAML file plus its drop-ins, every key optional.
struct Config {
  std::string root_dir = "/var/lib/podvisor";
  std::string state_dir = "/run/podvisor";
  std::string listen = "unix:///run/podvisor/podvisor.sock";
  std::string log_level = "info";  // debug | info | warning | error
  StreamingConfig streaming;
  HypervisorConfig hypervisor;
  CniConfig cni;
  RegistryConfig registry;
  HandlersConfig handlers;
  // The largest seccomp `localhost` profile read from the node (docs/reliability.md).
  int64_t seccomp_profile_max_bytes = 1 << 20;
  MetricsConfig metrics;
  StatsConfig stats;
};

// Parses YAML text. Unknown keys and values of the wrong type or range are errors naming the key
// (INVALID_ARGUMENT).
absl::StatusOr<Config> ParseConfig(const std::string& yaml_text);

// Reads and parses `path` and its drop-ins (ConfigDropIns). A missing main file yields the
// built-in defaults (still under the drop-ins) when `must_exist` is false.
absl::StatusOr<Config> LoadConfig(const std::string& path, bool must_exist);

// The drop-in files of the config file `path`: `<dir of path>/config.d/*.yaml`, in lexical order.
// Each is merged over what came before: mappings key by key, any other value (scalar, list)
// replaced as a whole.
std::vector<std::string> ConfigDropIns(const std::string& path);

// Merges the YAML texts in order (the first is the base) and parses the result. `names` (one per
// text) name the sources in errors.
absl::StatusOr<Config> ParseMergedConfig(const std::vector<std::string>& yaml_texts,
                                         const std::vector<std::string>& names);

// The effective configuration as JSON (for Status verbose output).
nlohmann::json ConfigToJson(const Config& config);

// Path of the unix socket named by a `unix://` (or `unix:`) listen address; empty otherwise.
std::string UnixSocketPath(const std::string& listen);

}  // namespace podvisor
