#include "agent/seccomp_bpf.h"

#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <memory>

#include "nlohmann/json.hpp"

namespace podvisor::agent {
namespace {

using nlohmann::json;

constexpr uint32_t kDefaultErrno = EPERM;  // what runtimes return when a profile names none

struct CtxDeleter {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};
using Ctx = std::unique_ptr<void, CtxDeleter>;

uint32_t ErrnoOf(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number_unsigned()) return kDefaultErrno;
  return it->get<uint32_t>();
}

// The libseccomp action of an OCI action name; `errno_ret` for ERRNO and TRACE.
Error ParseAction(const json& name, uint32_t errno_ret, uint32_t* action) {
  if (!name.is_string()) return Error(Code::kInvalidArgument, "seccomp action is not a string");
  const std::string& a = name.get_ref<const std::string&>();
  if (a == "SCMP_ACT_ALLOW") {
    *action = SCMP_ACT_ALLOW;
  } else if (a == "SCMP_ACT_ERRNO") {
    *action = SCMP_ACT_ERRNO(errno_ret);
  } else if (a == "SCMP_ACT_KILL" || a == "SCMP_ACT_KILL_THREAD") {
    *action = SCMP_ACT_KILL_THREAD;
  } else if (a == "SCMP_ACT_KILL_PROCESS") {
    *action = SCMP_ACT_KILL_PROCESS;
  } else if (a == "SCMP_ACT_TRAP") {
    *action = SCMP_ACT_TRAP;
  } else if (a == "SCMP_ACT_TRACE") {
    *action = SCMP_ACT_TRACE(errno_ret);
  } else if (a == "SCMP_ACT_LOG") {
    *action = SCMP_ACT_LOG;
  } else if (a == "SCMP_ACT_NOTIFY") {
    return Error(Code::kUnimplemented, "seccomp action SCMP_ACT_NOTIFY needs a listener");
  } else {
    return Error(Code::kInvalidArgument, "unknown seccomp action " + a);
  }
  return Error::Ok();
}

Error ParseOperator(const json& name, scmp_compare* op) {
  static const std::pair<const char*, scmp_compare> kOps[] = {
      {"SCMP_CMP_NE", SCMP_CMP_NE},
      {"SCMP_CMP_LT", SCMP_CMP_LT},
      {"SCMP_CMP_LE", SCMP_CMP_LE},
      {"SCMP_CMP_EQ", SCMP_CMP_EQ},
      {"SCMP_CMP_GE", SCMP_CMP_GE},
      {"SCMP_CMP_GT", SCMP_CMP_GT},
      {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ}};
  if (name.is_string()) {
    for (const auto& [n, o] : kOps) {
      if (name.get_ref<const std::string&>() == n) {
        *op = o;
        return Error::Ok();
      }
    }
  }
  return Error(Code::kInvalidArgument, "unknown seccomp operator " + name.dump());
}

// "SCMP_ARCH_X86_64" -> libseccomp's token for "x86_64"; 0 for an unknown one.
uint32_t ArchToken(const std::string& oci) {
  const std::string prefix = "SCMP_ARCH_";
  if (oci.rfind(prefix, 0) != 0) return 0;
  std::string name = oci.substr(prefix.size());
  for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return seccomp_arch_resolve_name(name.c_str());
}

Error ParseArgs(const json& args, std::vector<scmp_arg_cmp>* out) {
  if (args.is_null()) return Error::Ok();
  if (!args.is_array()) return Error(Code::kInvalidArgument, "seccomp args is not an array");
  for (const json& a : args) {
    if (!a.is_object()) return Error(Code::kInvalidArgument, "seccomp arg is not an object");
    scmp_arg_cmp cmp{};
    const json& index = a.value("index", json());
    if (!index.is_number_unsigned() || index.get<uint64_t>() > 5) {
      return Error(Code::kInvalidArgument, "seccomp arg index must be 0..5");
    }
    cmp.arg = index.get<unsigned>();
    if (Error e = ParseOperator(a.value("op", json()), &cmp.op); !e.ok()) return e;
    // Absent is 0; a JSON number that is a non-negative integer otherwise.
    auto datum = [&](const char* key, scmp_datum_t* d) -> bool {
      auto it = a.find(key);
      if (it == a.end() || it->is_null()) return (*d = 0), true;
      if (it->is_number_unsigned()) return (*d = it->get<uint64_t>()), true;
      if (it->is_number_integer() && it->get<int64_t>() >= 0) {
        return (*d = static_cast<uint64_t>(it->get<int64_t>())), true;
      }
      return false;
    };
    if (!datum("value", &cmp.datum_a) || !datum("valueTwo", &cmp.datum_b)) {
      return Error(Code::kInvalidArgument, "seccomp arg values must be unsigned integers");
    }
    out->push_back(cmp);
  }
  return Error::Ok();
}

Error Export(void* ctx, std::vector<sock_filter>* filter) {
  int fd = memfd_create("seccomp-bpf", MFD_CLOEXEC);
  if (fd < 0) return ErrnoError("memfd_create", errno);
  int rc = seccomp_export_bpf(ctx, fd);
  struct stat st {};
  Error err;
  if (rc != 0) {
    err = ErrnoError("seccomp_export_bpf", -rc);
  } else if (fstat(fd, &st) != 0) {
    err = ErrnoError("fstat", errno);
  } else if (st.st_size <= 0 || st.st_size % sizeof(sock_filter) != 0 ||
             st.st_size / sizeof(sock_filter) > BPF_MAXINSNS) {
    err = Error(Code::kInvalidArgument,
                "seccomp profile compiles to " + std::to_string(st.st_size / sizeof(sock_filter)) +
                    " instructions; the kernel loads at most " + std::to_string(BPF_MAXINSNS));
  } else {
    filter->resize(static_cast<size_t>(st.st_size) / sizeof(sock_filter));
    if (pread(fd, filter->data(), static_cast<size_t>(st.st_size), 0) != st.st_size) {
      err = ErrnoError("read the seccomp program", errno);
    }
  }
  close(fd);
  return err;
}

}  // namespace

Error CompileSeccompProfile(const std::string& oci_json, SeccompProgram* out) {
  json p = json::parse(oci_json, nullptr, false);
  if (p.is_discarded() || !p.is_object()) {
    return Error(Code::kInvalidArgument, "seccomp profile is not a JSON object");
  }
  if (p.contains("listenerPath") && !p["listenerPath"].is_null() &&
      !(p["listenerPath"].is_string() && p["listenerPath"].get<std::string>().empty())) {
    return Error(Code::kUnimplemented, "seccomp profile has a listener");
  }
  uint32_t default_action = 0;
  if (Error e = ParseAction(p.value("defaultAction", json()), ErrnoOf(p, "defaultErrnoRet"),
                            &default_action);
      !e.ok()) {
    return e.With("defaultAction");
  }
  Ctx ctx(seccomp_init(default_action));
  if (!ctx) return Error(Code::kInvalidArgument, "seccomp_init refused the default action");
  if (const json& archs = p.value("architectures", json()); archs.is_array()) {
    for (const json& a : archs) {
      uint32_t token = a.is_string() ? ArchToken(a.get<std::string>()) : 0;
      if (token == 0) return Error(Code::kInvalidArgument, "unknown architecture " + a.dump());
      int rc = seccomp_arch_add(ctx.get(), token);
      if (rc != 0 && rc != -EEXIST) return ErrnoError("add architecture " + a.dump(), -rc);
    }
  }
  out->flags = 0;
  if (const json& flags = p.value("flags", json()); flags.is_array()) {
    for (const json& f : flags) {
      const std::string name = f.is_string() ? f.get<std::string>() : "";
      if (name == "SECCOMP_FILTER_FLAG_LOG") {
        out->flags |= SECCOMP_FILTER_FLAG_LOG;
      } else if (name == "SECCOMP_FILTER_FLAG_SPEC_ALLOW") {
        out->flags |= SECCOMP_FILTER_FLAG_SPEC_ALLOW;
      } else if (name == "SECCOMP_FILTER_FLAG_TSYNC") {
        // The exec'd process is single-threaded when it loads the filter.
      } else {
        return Error(Code::kInvalidArgument, "unknown seccomp flag " + f.dump());
      }
    }
  }
  const json& syscalls = p.value("syscalls", json());
  if (!syscalls.is_null() && !syscalls.is_array()) {
    return Error(Code::kInvalidArgument, "seccomp syscalls is not an array");
  }
  for (const json& rule : syscalls.is_array() ? syscalls : json::array()) {
    if (!rule.is_object()) return Error(Code::kInvalidArgument, "seccomp rule is not an object");
    uint32_t action = 0;
    if (Error e = ParseAction(rule.value("action", json()), ErrnoOf(rule, "errnoRet"), &action);
        !e.ok()) {
      return e;
    }
    std::vector<scmp_arg_cmp> args;
    if (Error e = ParseArgs(rule.value("args", json()), &args); !e.ok()) return e;
    // libseccomp ANDs the conditions of one rule but cannot hold two on one argument: those
    // become one rule per condition (ORed), as other runtimes compile them.
    bool repeated_index = false;
    unsigned seen = 0;
    for (const scmp_arg_cmp& a : args) {
      repeated_index |= (seen & (1u << a.arg)) != 0;
      seen |= 1u << a.arg;
    }
    if (action == default_action) continue;  // libseccomp refuses rules that change nothing
    std::vector<std::string> names;
    if (const json& n = rule.value("names", json()); !n.is_null()) {
      if (!n.is_array()) return Error(Code::kInvalidArgument, "seccomp names is not a list");
      for (const json& s : n) {
        if (!s.is_string()) return Error(Code::kInvalidArgument, "seccomp name is not a string");
        names.push_back(s.get<std::string>());
      }
    }
    if (const json& n = rule.value("name", json()); !n.is_null()) {
      if (!n.is_string()) return Error(Code::kInvalidArgument, "seccomp name is not a string");
      names.push_back(n.get<std::string>());
    }
    for (const std::string& name : names) {
      int nr = seccomp_syscall_resolve_name(name.c_str());
      if (nr == __NR_SCMP_ERROR) continue;  // not a syscall of this kernel's ABI
      int rc = 0;
      if (!repeated_index) {
        rc = seccomp_rule_add_array(ctx.get(), action, nr, static_cast<unsigned>(args.size()),
                                    args.data());
      } else {
        for (const scmp_arg_cmp& a : args) {
          rc = seccomp_rule_add_array(ctx.get(), action, nr, 1, &a);
          if (rc != 0) break;
        }
      }
      if (rc != 0) return ErrnoError("seccomp rule for " + name, -rc);
    }
  }
  return Export(ctx.get(), &out->filter);
}

}  // namespace podvisor::agent
