// The CNI implementation of PodNetworkManager.

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <set>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/status_util.h"
#include "network/cni_exec.h"
#include "network/cni_types.h"
#include "network/netns.h"
#include "network/pod_network.h"
#include "network/process.h"
#include "network/tap.h"

namespace podvisor {
namespace {

using network::CniConfList;
using network::CniExec;
using network::CniResult;
using network::CniRuntimeConf;
using nlohmann::json;

constexpr char kNotReadyReason[] = "NetworkPluginNotReady";

absl::Status CheckSandboxId(const std::string& id) {
  if (id.empty() || id.find('/') != std::string::npos || id == "." || id == "..") {
    return absl::InvalidArgumentError(absl::StrCat("invalid sandbox id \"", id, "\""));
  }
  return absl::OkStatus();
}

// What the cache file holds: enough to run DEL (and answer Get) after a restart.
struct CacheEntry {
  std::string sandbox_id;
  std::string netns;
  std::string ifname;
  std::string tap;
  std::vector<std::pair<std::string, std::string>> args;
  json capability_args = json::object();
  json conflist;       // the list as used at ADD time
  std::string result;  // raw ADD result; empty until ADD finished
  std::string mac;
  int mtu = 0;
  bool torn_down = false;
};

json CacheToJson(const CacheEntry& e) {
  return {{"kind", "podvisor-cni-cache-v1"},
          {"sandboxId", e.sandbox_id},
          {"netns", e.netns},
          {"ifName", e.ifname},
          {"tap", e.tap},
          {"cniArgs", e.args},
          {"capabilityArgs", e.capability_args},
          {"conflist", e.conflist},
          {"result", e.result},
          {"mac", e.mac},
          {"mtu", e.mtu},
          {"tornDown", e.torn_down}};
}

CacheEntry CacheFieldsFromJson(const json& doc) {
  CacheEntry e;
  e.sandbox_id = doc.value("sandboxId", "");
  e.netns = doc.value("netns", "");
  e.ifname = doc.value("ifName", "eth0");
  e.tap = doc.value("tap", "");
  if (doc.contains("cniArgs") && doc["cniArgs"].is_array()) {
    e.args = doc["cniArgs"].get<std::vector<std::pair<std::string, std::string>>>();
  }
  e.capability_args = doc.value("capabilityArgs", json::object());
  e.conflist = doc.value("conflist", json());
  e.result = doc.value("result", "");
  e.mac = doc.value("mac", "");
  e.mtu = doc.value("mtu", 0);
  e.torn_down = doc.value("tornDown", false);
  return e;
}

absl::StatusOr<CacheEntry> CacheFromJson(const std::string& text, const std::string& path) {
  const absl::Status corrupt =
      absl::DataLossError(absl::StrCat("CNI cache ", path, " is not a podvisor cache file"));
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("kind") ||
      doc["kind"] != "podvisor-cni-cache-v1") {
    return corrupt;
  }
  try {  // json::value/get throw on a field of the wrong type
    return CacheFieldsFromJson(doc);
  } catch (const json::exception& e) {
    return absl::DataLossError(absl::StrCat(corrupt.message(), ": ", e.what()));
  }
}

// Splits "10.1.2.3/24".
PodIp ToPodIp(const network::CniIp& ip) {
  PodIp out;
  out.family = ip.version;
  out.gateway = ip.gateway;
  size_t slash = ip.address.find('/');
  out.address = ip.address.substr(0, slash);
  if (slash == std::string::npos ||
      !absl::SimpleAtoi(ip.address.substr(slash + 1), &out.prefix_length)) {
    out.prefix_length = ip.version == 6 ? 128 : 32;
  }
  return out;
}

// The pod's view of a CNI result: the IPs on `ifname` inside the sandbox, and the routes with
// their gateways resolved.
PodNetwork BuildPodNetwork(const CacheEntry& e, const CniResult& result, const std::string& name) {
  PodNetwork net;
  net.sandbox_id = e.sandbox_id;
  net.netns_path = e.netns;
  net.interface_name = e.ifname;
  net.tap_name = e.tap;
  net.mac = e.mac;
  net.mtu = e.mtu;
  net.network_name = name;
  int sandbox_if = -1;
  for (size_t i = 0; i < result.interfaces.size(); ++i) {
    const auto& iface = result.interfaces[i];
    if (iface.name == e.ifname && (sandbox_if < 0 || !iface.sandbox.empty())) {
      sandbox_if = static_cast<int>(i);
    }
  }
  for (const auto& ip : result.ips) {
    if (ip.interface.has_value() && sandbox_if >= 0 && *ip.interface != sandbox_if) continue;
    net.ips.push_back(ToPodIp(ip));
  }
  std::stable_sort(net.ips.begin(), net.ips.end(),
                   [](const PodIp& a, const PodIp& b) { return a.family < b.family; });
  for (const auto& r : result.routes) {
    PodRoute route{r.dst, r.gw};
    int family = r.dst.find(':') != std::string::npos ? 6 : 4;
    if (route.gateway.empty()) {
      for (const auto& ip : net.ips) {
        if (ip.family == family && !ip.gateway.empty()) {
          route.gateway = ip.gateway;
          break;
        }
      }
    }
    net.routes.push_back(route);
  }
  net.dns = {result.dns.nameservers, result.dns.domain, result.dns.search, result.dns.options};
  return net;
}

json CapabilityArgs(const PodNetworkRequest& request) {
  json ports = json::array();
  for (const auto& pm : request.port_mappings) {
    if (pm.host_port <= 0) continue;
    std::string proto = pm.protocol.empty() ? "tcp" : pm.protocol;
    std::transform(proto.begin(), proto.end(), proto.begin(), ::tolower);
    ports.push_back({{"hostPort", pm.host_port},
                     {"containerPort", pm.container_port},
                     {"protocol", proto},
                     {"hostIP", pm.host_ip}});
  }
  return {{"portMappings", ports},
          {"dns",
           {{"servers", request.dns.servers},
            {"searches", request.dns.searches},
            {"options", request.dns.options}}}};
}

class CniPodNetworkManager final : public PodNetworkManager {
 public:
  explicit CniPodNetworkManager(PodNetworkOptions options)
      : options_(std::move(options)),
        exec_(options_.cni.bin_dirs, absl::Seconds(options_.plugin_timeout_seconds)) {}

  PodNetworkReadiness Readiness() const override {
    absl::StatusOr<CniConfList> list = LoadNetwork();
    if (!list.ok()) return {false, kNotReadyReason, std::string(list.status().message())};
    return {true, "", ""};
  }

  absl::StatusOr<PodNetwork> Setup(const PodNetworkRequest& request) override;
  absl::StatusOr<PodNetwork> Get(const std::string& sandbox_id) const override;
  absl::Status Check(const std::string& sandbox_id) override;
  absl::Status Teardown(const std::string& sandbox_id) override;
  absl::Status Remove(const std::string& sandbox_id) override;

  std::vector<std::string> ListSandboxIds() const override {
    std::set<std::string> ids;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(options_.cache_dir, ec)) {
      if (e.path().extension() == ".json") ids.insert(e.path().stem().string());
    }
    for (const auto& e : std::filesystem::directory_iterator(options_.netns_dir, ec)) {
      ids.insert(e.path().filename().string());
    }
    return {ids.begin(), ids.end()};
  }

  std::string NetnsPath(const std::string& sandbox_id) const override {
    return absl::StrCat(options_.netns_dir, "/", sandbox_id);
  }

 private:
  std::string CachePath(const std::string& id) const {
    return absl::StrCat(options_.cache_dir, "/", id, ".json");
  }

  // The conf dir's network, with every plugin binary present.
  absl::StatusOr<CniConfList> LoadNetwork() const {
    absl::StatusOr<CniConfList> list = network::LoadCniNetwork(options_.cni.conf_dir);
    if (!list.ok()) return list.status();
    for (const auto& plugin : list->plugins) {
      absl::StatusOr<std::string> path = network::FindExecutable(plugin.type, exec_.bin_dirs());
      if (!path.ok()) {
        return absl::FailedPreconditionError(absl::StrCat("CNI network \"", list->name, "\" (",
                                                          list->source, "): plugin ", plugin.type,
                                                          ": ", path.status().message()));
      }
    }
    return list;
  }

  absl::Status WriteCache(const CacheEntry& e) const {
    return WriteFileAtomic(CachePath(e.sandbox_id), CacheToJson(e).dump(2), 0600);
  }

  absl::StatusOr<CacheEntry> ReadCache(const std::string& id) const {
    absl::StatusOr<std::string> text = ReadFile(CachePath(id));
    if (!text.ok()) return text.status();
    return CacheFromJson(*text, CachePath(id));
  }

  static CniRuntimeConf RuntimeConf(const CacheEntry& e) {
    CniRuntimeConf rt;
    rt.container_id = e.sandbox_id;
    rt.netns = e.netns;
    rt.ifname = e.ifname;
    rt.args = e.args;
    rt.capability_args = e.capability_args;
    return rt;
  }

  static absl::StatusOr<CniConfList> CachedList(const CacheEntry& e) {
    return network::ParseCniConfList(e.conflist.dump(), "cache of " + e.sandbox_id);
  }

  const PodNetworkOptions options_;
  const CniExec exec_;
};

// The CNI interface joined to a VM's tap, or (no tap: containers on the host use the
// interface itself) just read.
static absl::StatusOr<network::LinkInfo> AttachOrInspect(const CacheEntry& entry) {
  if (!entry.tap.empty()) return network::AttachTap(entry.netns, entry.ifname, entry.tap);
  network::LinkInfo info;
  absl::Status s = network::RunInNetns(entry.netns, [&]() -> absl::Status {
    absl::StatusOr<network::LinkInfo> l = network::GetLinkInfo(entry.ifname);
    if (!l.ok()) return l.status();
    info = *l;
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return info;
}

absl::StatusOr<PodNetwork> CniPodNetworkManager::Setup(const PodNetworkRequest& request) {
  const std::string& id = request.sandbox_id;
  const std::string context = absl::StrCat("set up network of pod ", id);
  if (absl::Status s = CheckSandboxId(id); !s.ok()) return WithContext(s, context);
  absl::StatusOr<CniConfList> list = LoadNetwork();
  if (!list.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(context, ": ", list.status().message()));
  }
  CacheEntry entry;
  entry.sandbox_id = id;
  entry.netns = NetnsPath(id);
  entry.ifname = options_.interface_name;
  entry.tap = options_.tap_name;
  entry.args = {{"IgnoreUnknown", "1"},
                {"K8S_POD_NAMESPACE", request.pod_namespace},
                {"K8S_POD_NAME", request.pod_name},
                {"K8S_POD_INFRA_CONTAINER_ID", id},
                {"K8S_POD_UID", request.pod_uid}};
  entry.capability_args = CapabilityArgs(request);
  entry.conflist = list->raw;

  if (absl::Status s = network::CreateNetns(entry.netns); !s.ok()) return WithContext(s, context);
  absl::Cleanup remove_netns = [&] { (void)network::RemoveNetns(entry.netns); };
  // The cache is written before ADD so that a crash during ADD still lets DEL release the IP.
  if (absl::Status s = WriteCache(entry); !s.ok()) return WithContext(s, context);
  absl::Cleanup remove_cache = [&] { ::unlink(CachePath(id).c_str()); };

  const CniRuntimeConf rt = RuntimeConf(entry);
  absl::StatusOr<std::string> raw = exec_.AddNetworkList(*list, rt);
  absl::Cleanup cni_del = [&] {
    absl::Status del = exec_.DelNetworkList(*list, rt, raw.ok() ? *raw : "");
    if (!del.ok()) {
      PV_LOG(kWarning) << context << ": undo: " << del.message();
    }
  };
  if (!raw.ok()) return WithContext(raw.status(), context);
  absl::StatusOr<CniResult> result = network::ParseCniResult(*raw);
  if (!result.ok()) return WithContext(result.status(), context);

  absl::StatusOr<network::LinkInfo> link = AttachOrInspect(entry);
  if (!link.ok()) return WithContext(link.status(), context);
  absl::Cleanup detach = [&] {
    if (!entry.tap.empty()) (void)network::DetachTap(entry.netns, entry.ifname, entry.tap);
  };
  entry.result = *raw;
  entry.mac = link->mac;
  entry.mtu = link->mtu;
  if (absl::Status s = WriteCache(entry); !s.ok()) return WithContext(s, context);

  PodNetwork net = BuildPodNetwork(entry, *result, list->name);
  if (net.ips.empty()) {
    return absl::InternalError(
        absl::StrCat(context, ": CNI network \"", list->name, "\" gave no IP to ", entry.ifname));
  }
  std::move(detach).Cancel();
  std::move(cni_del).Cancel();
  std::move(remove_cache).Cancel();
  std::move(remove_netns).Cancel();
  PV_LOG(kInfo) << "pod " << id << " network " << list->name << ": ip " << net.PrimaryIp()
                << ", mac " << net.mac << ", tap " << net.tap_name;
  return net;
}

absl::StatusOr<PodNetwork> CniPodNetworkManager::Get(const std::string& sandbox_id) const {
  if (absl::Status s = CheckSandboxId(sandbox_id); !s.ok()) return s;
  absl::StatusOr<CacheEntry> entry = ReadCache(sandbox_id);
  if (!entry.ok()) {
    return WithContext(entry.status(), absl::StrCat("network of pod ", sandbox_id));
  }
  if (entry->result.empty() || entry->torn_down) {
    return absl::NotFoundError(absl::StrCat("pod ", sandbox_id, " has no network set up"));
  }
  absl::StatusOr<CniResult> result = network::ParseCniResult(entry->result);
  if (!result.ok())
    return WithContext(result.status(), absl::StrCat("network of pod ", sandbox_id));
  return BuildPodNetwork(*entry, *result, entry->conflist.value("name", ""));
}

absl::Status CniPodNetworkManager::Check(const std::string& sandbox_id) {
  const std::string context = absl::StrCat("check network of pod ", sandbox_id);
  if (absl::Status s = CheckSandboxId(sandbox_id); !s.ok()) return s;
  absl::StatusOr<CacheEntry> entry = ReadCache(sandbox_id);
  if (!entry.ok()) return WithContext(entry.status(), context);
  if (entry->result.empty() || entry->torn_down) {
    return absl::NotFoundError(absl::StrCat(context, ": no network set up"));
  }
  absl::StatusOr<CniConfList> list = CachedList(*entry);
  if (!list.ok()) return WithContext(list.status(), context);
  if (absl::Status s = exec_.CheckNetworkList(*list, RuntimeConf(*entry), entry->result); !s.ok()) {
    return WithContext(s, context);
  }
  return absl::OkStatus();
}

absl::Status CniPodNetworkManager::Teardown(const std::string& sandbox_id) {
  const std::string context = absl::StrCat("tear down network of pod ", sandbox_id);
  if (absl::Status s = CheckSandboxId(sandbox_id); !s.ok()) return s;
  absl::StatusOr<CacheEntry> entry = ReadCache(sandbox_id);
  if (absl::IsNotFound(entry.status())) return absl::OkStatus();  // never set up, or removed
  if (absl::IsDataLoss(entry.status())) {
    // Without the cache, DEL the best we can: today's config, no prevResult.
    PV_LOG(kWarning) << context << ": " << entry.status().message()
                     << "; running DEL with the current CNI config";
    absl::StatusOr<CniConfList> current = LoadNetwork();
    if (!current.ok()) return WithContext(current.status(), context);
    CacheEntry fallback;
    fallback.sandbox_id = sandbox_id;
    fallback.netns = NetnsPath(sandbox_id);
    fallback.ifname = options_.interface_name;
    fallback.tap = options_.tap_name;
    fallback.conflist = current->raw;
    entry = std::move(fallback);
  }
  if (!entry.ok()) return WithContext(entry.status(), context);
  if (entry->torn_down) return absl::OkStatus();
  absl::StatusOr<CniConfList> list = CachedList(*entry);
  if (!list.ok()) return WithContext(list.status(), context);
  if (!entry->tap.empty()) {
    if (absl::Status s = network::DetachTap(entry->netns, entry->ifname, entry->tap); !s.ok()) {
      return WithContext(s, context);
    }
  }
  if (absl::Status s = exec_.DelNetworkList(*list, RuntimeConf(*entry), entry->result); !s.ok()) {
    return WithContext(s, context);
  }
  entry->torn_down = true;
  if (absl::Status s = WriteCache(*entry); !s.ok()) return WithContext(s, context);
  PV_LOG(kInfo) << "pod " << sandbox_id << " network torn down";
  return absl::OkStatus();
}

absl::Status CniPodNetworkManager::Remove(const std::string& sandbox_id) {
  const std::string context = absl::StrCat("remove network of pod ", sandbox_id);
  if (absl::Status s = CheckSandboxId(sandbox_id); !s.ok()) return s;
  if (absl::Status s = Teardown(sandbox_id); !s.ok()) return s;
  if (absl::Status s = network::RemoveNetns(NetnsPath(sandbox_id)); !s.ok()) {
    return WithContext(s, context);
  }
  if (::unlink(CachePath(sandbox_id).c_str()) != 0 && errno != ENOENT) {
    return WithContext(ErrnoStatus(absl::StrCat("remove ", CachePath(sandbox_id)), errno), context);
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<std::string> PodNetwork::AdditionalIps() const {
  std::vector<std::string> out;
  for (size_t i = 1; i < ips.size(); ++i) out.push_back(ips[i].address);
  return out;
}

PodNetworkOptions PodNetworkOptionsFromConfig(const Config& config) {
  PodNetworkOptions options;
  options.cni = config.cni;
  options.netns_dir = config.state_dir + "/netns";
  options.cache_dir = config.root_dir + "/network";
  return options;
}

absl::StatusOr<std::unique_ptr<PodNetworkManager>> NewCniPodNetworkManager(
    PodNetworkOptions options) {
  if (absl::Status s = MakeDirs(options.netns_dir, 0755); !s.ok()) return s;
  if (absl::Status s = MakeDirs(options.cache_dir, 0700); !s.ok()) return s;
  return std::unique_ptr<PodNetworkManager>(new CniPodNetworkManager(std::move(options)));
}

absl::Status ValidatePodNetworkMode(PodNetworkMode mode) {
  switch (mode) {
    case PodNetworkMode::kPod:
    case PodNetworkMode::kContainer:
      return absl::OkStatus();
    case PodNetworkMode::kNode:
      return absl::InvalidArgumentError(
          "linux.security_context.namespace_options.network=NODE is not supported: every pod "
          "runs in its own VM and cannot share the node's network namespace (host network)");
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("linux.security_context.namespace_options.network=", static_cast<int>(mode),
                       " is not supported for a pod sandbox"));
  }
}

}  // namespace podvisor
