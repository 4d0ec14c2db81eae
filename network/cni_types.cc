#include "network/cni_types.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"

namespace podvisor::network {
namespace {

using nlohmann::json;

absl::Status Invalid(const std::string& source, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("CNI config ", source, ": ", what));
}

absl::StatusOr<CniPluginConf> ParsePlugin(const json& obj, const std::string& where) {
  if (!obj.is_object()) return absl::InvalidArgumentError(absl::StrCat(where, " is not an object"));
  CniPluginConf plugin;
  auto type = obj.find("type");
  if (type == obj.end() || !type->is_string() || type->get<std::string>().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": \"type\" must be a non-empty string"));
  }
  plugin.type = type->get<std::string>();
  if (auto caps = obj.find("capabilities"); caps != obj.end()) {
    if (!caps->is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": \"capabilities\" must be an object"));
    }
    for (const auto& [k, v] : caps->items())
      plugin.capabilities[k] = v.is_boolean() && v.get<bool>();
  }
  plugin.raw = obj;
  return plugin;
}

std::string StringField(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::vector<std::string> StringList(const json& obj, const char* key) {
  std::vector<std::string> out;
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_array()) return out;
  for (const auto& v : *it) {
    if (v.is_string()) out.push_back(v.get<std::string>());
  }
  return out;
}

int IpVersionOf(const std::string& cidr) { return cidr.find(':') != std::string::npos ? 6 : 4; }

absl::StatusOr<CniRoute> ParseRoute(const json& r) {
  if (!r.is_object() || StringField(r, "dst").empty()) {
    return absl::InvalidArgumentError("CNI result: a route without \"dst\"");
  }
  return CniRoute{StringField(r, "dst"), StringField(r, "gw")};
}

// 0.1.0 / 0.2.0: {"ip4": {"ip", "gateway", "routes"}, "ip6": {...}, "dns"}.
absl::Status ParseLegacyIps(const json& doc, CniResult& result) {
  for (const char* key : {"ip4", "ip6"}) {
    auto it = doc.find(key);
    if (it == doc.end() || it->is_null()) continue;
    if (!it->is_object() || StringField(*it, "ip").empty()) {
      return absl::InvalidArgumentError(absl::StrCat("CNI result: \"", key, "\" without \"ip\""));
    }
    CniIp ip;
    ip.address = StringField(*it, "ip");
    ip.gateway = StringField(*it, "gateway");
    ip.version = key[2] == '6' ? 6 : 4;
    result.ips.push_back(ip);
    if (auto routes = it->find("routes"); routes != it->end() && routes->is_array()) {
      for (const auto& r : *routes) {
        absl::StatusOr<CniRoute> route = ParseRoute(r);
        if (!route.ok()) return route.status();
        result.routes.push_back(*route);
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ParseCurrentIps(const json& doc, CniResult& result) {
  auto ips = doc.find("ips");
  if (ips != doc.end() && !ips->is_null() && !ips->is_array()) {
    return absl::InvalidArgumentError("CNI result: \"ips\" is not a list");
  }
  for (const auto& v : ips != doc.end() && ips->is_array() ? *ips : json::array()) {
    CniIp ip;
    ip.address = v.is_object() ? StringField(v, "address") : "";
    if (ip.address.empty() || ip.address.find('/') == std::string::npos) {
      return absl::InvalidArgumentError("CNI result: an IP without a CIDR \"address\"");
    }
    ip.gateway = StringField(v, "gateway");
    ip.version = IpVersionOf(ip.address);
    if (auto idx = v.find("interface"); idx != v.end() && idx->is_number_integer()) {
      int i = idx->get<int>();
      if (i < 0 || i >= static_cast<int>(result.interfaces.size())) {
        return absl::InvalidArgumentError(absl::StrCat("CNI result: IP ", ip.address,
                                                       " names interface ", i, " of ",
                                                       result.interfaces.size()));
      }
      ip.interface = i;
    }
    result.ips.push_back(ip);
  }
  auto routes = doc.find("routes");
  if (routes != doc.end() && routes->is_array()) {
    for (const auto& r : *routes) {
      absl::StatusOr<CniRoute> route = ParseRoute(r);
      if (!route.ok()) return route.status();
      result.routes.push_back(*route);
    }
  }
  return absl::OkStatus();
}

}  // namespace

bool IsSupportedCniVersion(absl::string_view version) {
  static const char* const kVersions[] = {"0.1.0", "0.2.0", "0.3.0", "0.3.1",
                                          "0.4.0", "1.0.0", "1.1.0"};
  return std::find(std::begin(kVersions), std::end(kVersions), version) != std::end(kVersions);
}

int CompareCniVersions(absl::string_view a, absl::string_view b) {
  std::vector<absl::string_view> pa = absl::StrSplit(a, '.');
  std::vector<absl::string_view> pb = absl::StrSplit(b, '.');
  for (size_t i = 0; i < std::max(pa.size(), pb.size()); ++i) {
    int x = 0, y = 0;
    if (i < pa.size() && !absl::SimpleAtoi(pa[i], &x)) x = 0;
    if (i < pb.size() && !absl::SimpleAtoi(pb[i], &y)) y = 0;
    if (x != y) return x < y ? -1 : 1;
  }
  return 0;
}

absl::StatusOr<CniConfList> ParseCniConfList(absl::string_view text, const std::string& source,
                                             bool is_single) {
  json doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Invalid(source, "not valid JSON");
  if (!doc.is_object()) return Invalid(source, "not a JSON object");
  CniConfList list;
  list.source = source;
  list.name = StringField(doc, "name");
  if (list.name.empty()) return Invalid(source, "\"name\" must be a non-empty string");
  list.cni_version = StringField(doc, "cniVersion");
  if (list.cni_version.empty()) {
    if (!is_single) return Invalid(source, "\"cniVersion\" is missing");
    list.cni_version = "0.1.0";  // what the spec assumes for a bare plugin config
  }
  if (!IsSupportedCniVersion(list.cni_version)) {
    return Invalid(source, absl::StrCat("unsupported cniVersion \"", list.cni_version, "\""));
  }
  if (is_single) {
    absl::StatusOr<CniPluginConf> plugin = ParsePlugin(doc, absl::StrCat("CNI config ", source));
    if (!plugin.ok()) return plugin.status();
    list.plugins.push_back(*plugin);
    list.raw = {{"cniVersion", list.cni_version}, {"name", list.name}, {"plugins", {doc}}};
    return list;
  }
  if (auto dc = doc.find("disableCheck"); dc != doc.end()) {
    if (!dc->is_boolean()) return Invalid(source, "\"disableCheck\" must be a boolean");
    list.disable_check = dc->get<bool>();
  }
  auto plugins = doc.find("plugins");
  if (plugins == doc.end() || !plugins->is_array() || plugins->empty()) {
    return Invalid(source, "\"plugins\" must be a non-empty list");
  }
  for (size_t i = 0; i < plugins->size(); ++i) {
    absl::StatusOr<CniPluginConf> plugin =
        ParsePlugin((*plugins)[i], absl::StrCat("CNI config ", source, ": plugins[", i, "]"));
    if (!plugin.ok()) return plugin.status();
    list.plugins.push_back(*plugin);
  }
  list.raw = doc;
  return list;
}

absl::StatusOr<CniConfList> LoadCniNetwork(const std::string& conf_dir) {
  std::error_code ec;
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(conf_dir, ec)) {
    std::string ext = entry.path().extension().string();
    if (ext == ".conflist" || ext == ".conf" || ext == ".json") files.push_back(entry.path());
  }
  if (ec) {
    return absl::NotFoundError(
        absl::StrCat("no valid CNI network config: cannot read ", conf_dir, ": ", ec.message()));
  }
  std::sort(files.begin(), files.end());
  std::vector<std::string> rejected;
  for (const auto& file : files) {
    absl::StatusOr<std::string> text = ReadFile(file);
    if (!text.ok()) {
      rejected.push_back(std::string(text.status().message()));
      continue;
    }
    bool single = std::filesystem::path(file).extension() != ".conflist";
    absl::StatusOr<CniConfList> list = ParseCniConfList(*text, file, single);
    if (list.ok()) return list;
    rejected.push_back(std::string(list.status().message()));
  }
  std::string why = files.empty() ? absl::StrCat("no .conflist/.conf/.json file in ", conf_dir)
                                  : absl::StrJoin(rejected, "; ");
  return absl::NotFoundError(absl::StrCat("no valid CNI network config: ", why));
}

absl::StatusOr<CniResult> ParseCniResult(absl::string_view text) {
  json doc = json::parse(text.begin(), text.end(), nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return absl::InvalidArgumentError("CNI result is not a JSON object");
  }
  CniResult result;
  result.cni_version = StringField(doc, "cniVersion");
  if (auto ifs = doc.find("interfaces"); ifs != doc.end() && ifs->is_array()) {
    for (const auto& v : *ifs) {
      if (!v.is_object()) return absl::InvalidArgumentError("CNI result: bad interface entry");
      CniInterface iface{StringField(v, "name"), StringField(v, "mac"), StringField(v, "sandbox")};
      if (auto mtu = v.find("mtu"); mtu != v.end() && mtu->is_number_integer()) {
        iface.mtu = mtu->get<int>();
      }
      result.interfaces.push_back(iface);
    }
  }
  bool legacy = !result.cni_version.empty() && CompareCniVersions(result.cni_version, "0.3.0") < 0;
  absl::Status s = legacy ? ParseLegacyIps(doc, result) : ParseCurrentIps(doc, result);
  if (!s.ok()) return s;
  if (auto dns = doc.find("dns"); dns != doc.end() && dns->is_object()) {
    result.dns.nameservers = StringList(*dns, "nameservers");
    result.dns.domain = StringField(*dns, "domain");
    result.dns.search = StringList(*dns, "search");
    result.dns.options = StringList(*dns, "options");
  }
  return result;
}

absl::StatusOr<CniError> ParseCniError(absl::string_view text) {
  json doc = json::parse(text.begin(), text.end(), nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return absl::InvalidArgumentError("CNI error output is not a JSON object");
  }
  auto code = doc.find("code");
  if (code == doc.end() || !code->is_number_integer()) {
    return absl::InvalidArgumentError("CNI error output has no integer \"code\"");
  }
  CniError error;
  error.code = code->get<int>();
  error.msg = StringField(doc, "msg");
  error.details = StringField(doc, "details");
  return error;
}

absl::Status CniErrorToStatus(const CniError& error, absl::string_view context) {
  absl::StatusCode code = absl::StatusCode::kInternal;
  switch (error.code) {
    case kCniErrTryAgain:
      code = absl::StatusCode::kUnavailable;
      break;
    case kCniErrUnknownContainer:
      code = absl::StatusCode::kNotFound;
      break;
    case kCniErrIncompatibleVersion:
    case kCniErrUnsupportedField:
    case kCniErrInvalidEnv:
    case kCniErrDecode:
    case kCniErrInvalidConfig:
      code = absl::StatusCode::kFailedPrecondition;
      break;
    default:
      break;
  }
  std::string msg = absl::StrCat(context, ": CNI error ", error.code, ": ", error.msg);
  if (!error.details.empty()) absl::StrAppend(&msg, " (", error.details, ")");
  return absl::Status(code, msg);
}

}  // namespace podvisor::network
