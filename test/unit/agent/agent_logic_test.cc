// The guest agent's own logic, run in-process on the host.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "agent/channel.h"
#include "agent/init.h"
#include "agent/netlink.h"
#include "agent/network_setup.h"
#include "agent/oci_spec.h"
#include "agent/sandbox_setup.h"
#include "agent/step_timings.h"
#include "nlohmann/json.hpp"
#include "test/support/temp_dir.h"

namespace podvisor::agent {
namespace {

// Options for a VM container with the given id and paths; everything else at its default.
OciOptions Options(std::string id, std::string rootfs, std::string cgroups) {
  OciOptions o;
  o.container_id = std::move(id);
  o.rootfs_path = std::move(rootfs);
  o.cgroups_path = std::move(cgroups);
  return o;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void Spit(const std::string& path, const std::string& data) { std::ofstream(path) << data; }

TEST(StepTimingsTest, StepsMarkedWhileARequestIsServedReachItsResponse) {
  MarkStep("before any request");  // no scope: nothing to record, nothing to crash
  v1::Response r;
  {
    ScopedStepTimings timings;
    MarkStep("mount rootfs");
    usleep(2000);
    MarkStep("crun create");
    timings.CopyTo(&r);
  }
  ASSERT_EQ(r.timings_size(), 2);
  EXPECT_EQ(r.timings(0).step(), "mount rootfs");
  EXPECT_EQ(r.timings(1).step(), "crun create");
  EXPECT_GE(r.timings(1).duration_ns(), 2000000u);
  MarkStep("after the request");
  EXPECT_EQ(r.timings_size(), 2);
}

TEST(StepTimingsTest, AResponseCarriesAtMost32Steps) {
  ScopedStepTimings timings;
  for (int i = 0; i < 40; ++i) MarkStep("step");
  v1::Response r;
  timings.CopyTo(&r);
  EXPECT_EQ(r.timings_size(), static_cast<int>(kMaxStepTimings));
}

TEST(ModuleListTest, SkipsCommentsAndBlankLinesKeepsOrder) {
  EXPECT_EQ(ParseModuleList("# deps first\n/lib/modules/a.ko\n\n  /lib/modules/b.ko  \r\n#x\n"),
            (std::vector<std::string>{"/lib/modules/a.ko", "/lib/modules/b.ko"}));
}

TEST(ModuleListTest, MissingListLoadsNothing) {
  EXPECT_TRUE(LoadKernelModules("/nonexistent/load-order").ok());
}

TEST(VirtioPortTest, FindsThePortByName) {
  testing::TempDir dir;
  const std::string ports = dir.path() + "/class/virtio-ports";
  ASSERT_EQ(system(("mkdir -p " + ports + "/vport1p1 " + ports + "/vport2p3").c_str()), 0);
  Spit(ports + "/vport1p1/name", "org.qemu.guest_agent.0\n");
  Spit(ports + "/vport2p3/name", "io.podvisor.agent.0\n");
  std::string device;
  ASSERT_TRUE(FindVirtioPort(dir.path(), kAgentPortName, 0, &device).ok());
  EXPECT_EQ(device, "/dev/vport2p3");
  Error missing = FindVirtioPort(dir.path(), "io.other.0", 0, &device);
  EXPECT_EQ(missing.code(), Code::kNotFound);
}

v1::SetupSandboxRequest GoodSetup() {
  v1::SetupSandboxRequest req;
  req.set_hostname("web-0");
  req.mutable_dns()->add_servers("10.96.0.10");
  req.mutable_dns()->add_servers("fd00::a");
  req.mutable_dns()->add_searches("default.svc.cluster.local");
  req.mutable_dns()->add_options("ndots:5");
  v1::HostEntry* h = req.add_hosts();
  h->set_ip("10.88.0.7");
  h->add_names("web-0");
  h->add_names("web-0.web");
  (*req.mutable_sysctls())["net.ipv4.ip_forward"] = "1";
  return req;
}

TEST(SandboxSetupTest, WritesHostnameResolvConfHostsAndSysctlsUnderRoot) {
  testing::TempDir dir;
  ASSERT_EQ(system(("mkdir -p " + dir.path() + "/proc/sys/net/ipv4").c_str()), 0);
  Spit(dir.path() + "/proc/sys/net/ipv4/ip_forward", "0");
  AgentOptions options;
  options.pid1 = false;
  options.root = dir.path();
  Error err = ApplySandboxSetup(options, GoodSetup());
  ASSERT_TRUE(err.ok()) << err.message();
  EXPECT_EQ(Slurp(dir.Join("etc/hostname")), "web-0\n");
  const std::string resolv = Slurp(dir.Join("etc/resolv.conf"));
  EXPECT_NE(resolv.find("nameserver 10.96.0.10\n"), std::string::npos) << resolv;
  EXPECT_NE(resolv.find("nameserver fd00::a\n"), std::string::npos);
  EXPECT_NE(resolv.find("search default.svc.cluster.local\n"), std::string::npos);
  EXPECT_NE(resolv.find("options ndots:5\n"), std::string::npos);
  const std::string hosts = Slurp(dir.Join("etc/hosts"));
  EXPECT_NE(hosts.find("127.0.0.1\tlocalhost web-0\n"), std::string::npos) << hosts;
  EXPECT_NE(hosts.find("10.88.0.7\tweb-0 web-0.web\n"), std::string::npos) << hosts;
  EXPECT_EQ(Slurp(dir.Join("proc/sys/net/ipv4/ip_forward")), "1");
}

TEST(SandboxSetupTest, AClonedGuestGetsAMachineIdOfItsOwn) {
  testing::TempDir dir;
  AgentOptions options;
  options.pid1 = false;
  options.root = dir.path();
  v1::SetupSandboxRequest req = GoodSetup();
  req.clear_sysctls();
  req.set_machine_id("0123456789abcdef0123456789abcdef");
  req.set_shared_fs_type("9p");
  Error err = ApplySandboxSetup(options, req);
  ASSERT_TRUE(err.ok()) << err.message();
  EXPECT_EQ(Slurp(dir.Join("etc/machine-id")), "0123456789abcdef0123456789abcdef\n");
}

TEST(SandboxSetupTest, RejectsHostileInputBeforeWritingAnything) {
  testing::TempDir dir;
  AgentOptions options;
  options.pid1 = false;
  options.root = dir.path();
  auto expect_invalid = [&](v1::SetupSandboxRequest req, const char* what) {
    Error err = ApplySandboxSetup(options, req);
    EXPECT_EQ(err.code(), Code::kInvalidArgument) << what;
  };
  v1::SetupSandboxRequest r = GoodSetup();
  r.mutable_dns()->add_servers("1.2.3.4\nnameserver 6.6.6.6");
  expect_invalid(r, "newline in DNS server");
  r = GoodSetup();
  r.set_hostname("a b");
  expect_invalid(r, "space in hostname");
  r = GoodSetup();
  (*r.mutable_sysctls())["../../../etc/passwd"] = "x";
  expect_invalid(r, "sysctl path escape");
  r = GoodSetup();
  r.mutable_hosts(0)->add_names("evil\n1.2.3.4 bank.com");
  expect_invalid(r, "newline in hosts name");
  r = GoodSetup();
  r.set_entropy(std::string(4097, 'e'));
  expect_invalid(r, "too much entropy");
  r = GoodSetup();
  r.set_machine_id("../../etc/shadow0123456789abcdef");
  expect_invalid(r, "machine id not hex");
  r = GoodSetup();
  r.set_machine_id("0123456789ABCDEF0123456789ABCDEF");
  expect_invalid(r, "machine id upper case");
  r = GoodSetup();
  r.set_shared_fs_type("nfs");
  expect_invalid(r, "unknown shared filesystem type");
  struct stat st;
  EXPECT_NE(stat(dir.Join("etc/hostname").c_str(), &st), 0);
}

TEST(NetworkSetupTest, ParsesPrefixes) {
  IpPrefix p;
  ASSERT_TRUE(ParseIpPrefix("10.88.0.5/16", true, &p));
  EXPECT_EQ(p.prefix_len, 16);
  ASSERT_TRUE(ParseIpPrefix("fd00::5/64", true, &p));
  EXPECT_EQ(p.prefix_len, 64);
  ASSERT_TRUE(ParseIpPrefix("10.0.0.1", false, &p));
  EXPECT_EQ(p.prefix_len, 32);
  EXPECT_FALSE(ParseIpPrefix("10.0.0.1", true, &p));
  EXPECT_FALSE(ParseIpPrefix("10.0.0.1/33", true, &p));
  EXPECT_FALSE(ParseIpPrefix("10.0.0.1/-1", true, &p));
  EXPECT_FALSE(ParseIpPrefix("host/8", true, &p));
}

TEST(NetworkSetupTest, ValidatesEveryField) {
  v1::SetupNetworkRequest req;
  v1::NetworkInterface* nic = req.add_interfaces();
  nic->set_mac("52:54:00:12:34:56");
  nic->set_name("eth0");
  nic->add_addresses()->set_cidr("10.88.0.5/16");
  v1::Route* route = req.add_routes();
  route->set_gateway("10.88.0.1");
  EXPECT_TRUE(ValidateNetworkSetup(req).ok());

  v1::SetupNetworkRequest bad = req;
  bad.mutable_interfaces(0)->set_mac("52:54:00:12:34");
  EXPECT_EQ(ValidateNetworkSetup(bad).code(), Code::kInvalidArgument);
  bad = req;
  bad.mutable_interfaces(0)->set_name("a-name-far-too-long-for-linux");
  EXPECT_EQ(ValidateNetworkSetup(bad).code(), Code::kInvalidArgument);
  bad = req;
  bad.mutable_interfaces(0)->set_mtu(10);
  EXPECT_EQ(ValidateNetworkSetup(bad).code(), Code::kInvalidArgument);
  bad = req;
  bad.mutable_interfaces(0)->set_set_mac("not a mac");
  EXPECT_EQ(ValidateNetworkSetup(bad).code(), Code::kInvalidArgument);
  v1::SetupNetworkRequest clone = req;
  clone.mutable_interfaces(0)->set_set_mac("0a:58:0a:63:00:02");
  EXPECT_TRUE(ValidateNetworkSetup(clone).ok());
  bad = req;
  bad.mutable_routes(0)->set_destination("fd00::/8");
  EXPECT_EQ(ValidateNetworkSetup(bad).code(), Code::kInvalidArgument);  // v6 dst, v4 gateway
}

TEST(NetworkSetupTest, RefusesTheHostNetworkInNoPid1Mode) {
  AgentOptions options;
  options.pid1 = false;
  v1::SetupNetworkRequest req;
  req.set_loopback_up(true);
  EXPECT_EQ(ApplyNetworkSetup(options, req).code(), Code::kFailedPrecondition);
}

v1::ContainerSpec BasicSpec() {
  v1::ContainerSpec spec;
  spec.mutable_process()->add_args("/bin/sh");
  spec.mutable_process()->add_env("A=1");
  spec.mutable_process()->mutable_capabilities()->add_bounding("CAP_CHOWN");
  spec.mutable_rootfs()->set_readonly(true);
  spec.add_masked_paths("/proc/kcore");
  spec.add_readonly_paths("/proc/sys");
  spec.mutable_resources()->set_memory_limit_bytes(64 << 20);
  spec.mutable_resources()->set_cpu_quota(50000);
  spec.mutable_resources()->set_cpu_period(100000);
  (*spec.mutable_sysctls())["net.ipv4.ping_group_range"] = "0 0";
  v1::Mount* m = spec.add_mounts();
  m->set_destination("/data");
  m->set_type("bind");
  m->set_source("/run/volumes/data");
  m->add_options("rbind");
  return spec;
}

TEST(OciSpecTest, ConfigCarriesTheSpec) {
  OciOptions o = Options("c1", "/run/podvisor/containers/c1/rootfs", "/podvisor/c1");
  std::string json;
  ASSERT_TRUE(BuildConfigJson(BasicSpec(), o, &json).ok());
  nlohmann::json c = nlohmann::json::parse(json);
  EXPECT_EQ(c["root"]["path"], "/run/podvisor/containers/c1/rootfs");
  EXPECT_EQ(c["root"]["readonly"], true);
  EXPECT_EQ(c["process"]["args"][0], "/bin/sh");
  EXPECT_EQ(c["process"]["cwd"], "/");
  EXPECT_EQ(c["process"]["env"].size(), 2u);  // A=1 and a default PATH
  EXPECT_EQ(c["process"]["capabilities"]["bounding"][0], "CAP_CHOWN");
  EXPECT_EQ(c["linux"]["cgroupsPath"], "/podvisor/c1");
  EXPECT_EQ(c["linux"]["resources"]["memory"]["limit"], 64 << 20);
  EXPECT_EQ(c["linux"]["resources"]["cpu"]["quota"], 50000);
  EXPECT_EQ(c["linux"]["resources"]["devices"][0]["allow"], false);
  EXPECT_EQ(c["linux"]["maskedPaths"][0], "/proc/kcore");
  EXPECT_EQ(c["linux"]["readonlyPaths"][0], "/proc/sys");
  EXPECT_EQ(c["linux"]["sysctl"]["net.ipv4.ping_group_range"], "0 0");
  EXPECT_EQ(c["mounts"].back()["destination"], "/data");
  for (const auto& ns : c["linux"]["namespaces"]) {
    EXPECT_NE(ns["type"], "network") << "containers share the VM's (the pod's) network";
    EXPECT_NE(ns["type"], "ipc") << "containers share the VM's (the pod's) IPC";
  }
  EXPECT_EQ(c["mounts"][3]["destination"], "/dev/shm");
  EXPECT_EQ(c["mounts"][3]["type"], "tmpfs");  // no pod shm given: a private one

  o.pod_shm = "/dev/shm";
  ASSERT_TRUE(BuildConfigJson(BasicSpec(), o, &json).ok());
  c = nlohmann::json::parse(json);
  EXPECT_EQ(c["mounts"][3]["destination"], "/dev/shm");
  EXPECT_EQ(c["mounts"][3]["type"], "bind");
  EXPECT_EQ(c["mounts"][3]["source"], "/dev/shm");
}

TEST(OciSpecTest, Base64IsRfc4648) {
  EXPECT_EQ(Base64(""), "");
  EXPECT_EQ(Base64("f"), "Zg==");
  EXPECT_EQ(Base64("fo"), "Zm8=");
  EXPECT_EQ(Base64("foo"), "Zm9v");
  EXPECT_EQ(Base64("foob"), "Zm9vYg==");
  EXPECT_EQ(Base64("fooba"), "Zm9vYmE=");
  EXPECT_EQ(Base64("foobar"), "Zm9vYmFy");
  EXPECT_EQ(Base64(std::string("\x00\xff\xfe", 3)), "AP/+");
}

// The program the agent compiled goes to crun as its annotation, only beside the profile it
// came from, and nothing else in the spec can set that annotation.
TEST(OciSpecTest, TheCompiledSeccompProgramGoesToCrunBesideItsProfile) {
  OciOptions o = Options("c1", "/r", "/podvisor/c1");
  o.seccomp_bpf = std::string("\x06\x00\x00\x00\x00\x00\xff\x7f", 8);
  v1::ContainerSpec spec = BasicSpec();
  (*spec.mutable_annotations())["run.oci.seccomp_bpf_data"] = "AAAA";
  (*spec.mutable_annotations())["io.kubernetes.pod.name"] = "p";
  std::string json;
  ASSERT_TRUE(BuildConfigJson(spec, o, &json).ok());
  nlohmann::json c = nlohmann::json::parse(json);
  EXPECT_FALSE(c["linux"].contains("seccomp"));
  EXPECT_FALSE(c["annotations"].contains("run.oci.seccomp_bpf_data")) << "no profile, no program";
  EXPECT_EQ(c["annotations"]["io.kubernetes.pod.name"], "p");

  spec.mutable_seccomp()->set_oci_json(R"({"defaultAction":"SCMP_ACT_ALLOW"})");
  ASSERT_TRUE(BuildConfigJson(spec, o, &json).ok());
  c = nlohmann::json::parse(json);
  EXPECT_EQ(c["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
  EXPECT_EQ(c["annotations"]["run.oci.seccomp_bpf_data"], "BgAAAAAA/38=");

  spec.set_privileged(true);  // no filter at all
  ASSERT_TRUE(BuildConfigJson(spec, o, &json).ok());
  c = nlohmann::json::parse(json);
  EXPECT_FALSE(c["linux"].contains("seccomp"));
  EXPECT_FALSE(c["annotations"].contains("run.oci.seccomp_bpf_data"));
}

TEST(OciSpecTest, AContainerOfAUserNamespacePodJoinsItAndBindsThePodsMqueue) {
  OciOptions o = Options("c1", "/r", "/podvisor/c1");
  std::string json;
  ASSERT_TRUE(BuildConfigJson(BasicSpec(), o, &json).ok());
  nlohmann::json c = nlohmann::json::parse(json);
  for (const auto& ns : c["linux"]["namespaces"]) EXPECT_NE(ns["type"], "user");
  EXPECT_EQ(c["mounts"][4]["type"], "mqueue");
  o.user_namespace = "/run/podvisor/userns";
  o.pod_mqueue = "/run/podvisor/userns-mqueue";
  ASSERT_TRUE(BuildConfigJson(BasicSpec(), o, &json).ok());
  c = nlohmann::json::parse(json);
  int users = 0;
  for (const auto& ns : c["linux"]["namespaces"]) {
    if (ns["type"] != "user") continue;
    ++users;
    EXPECT_EQ(ns["path"], "/run/podvisor/userns");
  }
  EXPECT_EQ(users, 1);
  // No uidMappings: the namespace joined has them already.
  EXPECT_FALSE(c["linux"].contains("uidMappings"));
  // An mqueue cannot be mounted from a user namespace that does not own the IPC namespace.
  EXPECT_EQ(c["mounts"][4]["destination"], "/dev/mqueue");
  EXPECT_EQ(c["mounts"][4]["type"], "bind");
  EXPECT_EQ(c["mounts"][4]["source"], "/run/podvisor/userns-mqueue");
}

TEST(OciSpecTest, HostContainersJoinTheNamespacesTheyAreGiven) {
  OciOptions o;
  o.container_id = "c1";
  o.rootfs_path = "/r";
  o.cgroups_path = "/kubepods/pod1/c1";
  o.namespaces = std::vector<std::pair<std::string, std::string>>{
      {"mount", ""}, {"network", "/run/netns/p"}, {"ipc", "/run/ns/ipc"}};
  o.rootfs_propagation = "rshared";
  std::string json;
  ASSERT_TRUE(BuildConfigJson(BasicSpec(), o, &json).ok());
  nlohmann::json c = nlohmann::json::parse(json);
  const nlohmann::json& ns = c["linux"]["namespaces"];
  ASSERT_EQ(ns.size(), 3u);
  EXPECT_EQ(ns[0], (nlohmann::json{{"type", "mount"}}));
  EXPECT_EQ(ns[1]["path"], "/run/netns/p");
  EXPECT_EQ(ns[2]["type"], "ipc");
  EXPECT_EQ(c["linux"]["rootfsPropagation"], "rshared");
  // Without them: the guest's layout, and the runtime's default propagation.
  o.namespaces.reset();
  o.rootfs_propagation.clear();
  ASSERT_TRUE(BuildConfigJson(BasicSpec(), o, &json).ok());
  c = nlohmann::json::parse(json);
  EXPECT_FALSE(c["linux"].contains("rootfsPropagation"));
  EXPECT_EQ(c["linux"]["namespaces"][0]["type"], "mount");
}

TEST(OciSpecTest, ResourcesUpdateCarriesOnlyTheSetLimitsAndNoDeviceRules) {
  v1::LinuxResources r;
  r.set_memory_limit_bytes(48 << 20);
  r.set_cpu_quota(-1);
  (*r.mutable_unified())["memory.high"] = "40000000";
  (*r.mutable_hugepage_limits())["2MB"] = 4 << 20;
  std::string json;
  ASSERT_TRUE(BuildResourcesUpdateJson(r, &json).ok());
  nlohmann::json u = nlohmann::json::parse(json);
  EXPECT_EQ(u["memory"]["limit"], 48 << 20);
  EXPECT_FALSE(u["memory"].contains("swap"));
  EXPECT_EQ(u["cpu"]["quota"], -1);
  EXPECT_FALSE(u["cpu"].contains("shares"));
  EXPECT_EQ(u["unified"]["memory.high"], "40000000");
  EXPECT_EQ(u["hugepageLimits"][0]["pageSize"], "2MB");
  EXPECT_FALSE(u.contains("devices"));  // the create-time device program stays
  EXPECT_FALSE(u.contains("pids"));
  (*r.mutable_unified())["../../cgroup.procs"] = "1";
  EXPECT_EQ(BuildResourcesUpdateJson(r, &json).code(), Code::kInvalidArgument);
}

TEST(OciSpecTest, PrivilegedGetsAllCapabilitiesAndNoMasking) {
  v1::ContainerSpec spec = BasicSpec();
  spec.set_privileged(true);
  std::string json;
  ASSERT_TRUE(BuildConfigJson(spec, Options("c1", "/r", "/podvisor/c1"), &json).ok());
  nlohmann::json c = nlohmann::json::parse(json);
  EXPECT_GT(c["process"]["capabilities"]["bounding"].size(), 30u);
  EXPECT_FALSE(c["linux"].contains("maskedPaths"));
}

// An image's /etc/passwd and /etc/group as critest's predefined-group image has them.
void WriteImageUsers(const testing::TempDir& root) {
  mkdir(root.Join("etc").c_str(), 0755);
  Spit(root.Join("etc/passwd"),
       "root:x:0:0:root:/root:/bin/sh\ndefault-user:x:1000:1000::/home/default-user:/bin/sh\n"
       "www-data:x:33:33::/var/www:/bin/sh\n");
  Spit(root.Join("etc/group"),
       "root:x:0:\ndefault-user:x:1000:\ngroup1234:x:1234:www-data,default-user\n"
       "group-defined-in-image:x:50000:default-user\nempty:x:7:\n");
}

std::vector<uint32_t> Gids(const v1::User& u) {
  return std::vector<uint32_t>(u.additional_gids().begin(), u.additional_gids().end());
}

// Merge, the CRI default: the primary gid, the requested groups and the image's, ascending and
// each once, as setgroups(2) leaves them.
TEST(ResolveUserTest, AUidGetsTheImageGroupsItsNameBelongsToWithTheRequestedOnes) {
  testing::TempDir root;
  WriteImageUsers(root);
  v1::User u;
  u.set_uid(1000);
  u.set_has_uid(true);
  u.set_gid_from_passwd(true);  // RunAsUser without RunAsGroup
  u.add_additional_gids(1234);  // CRI SupplementalGroups, also an image group: listed once
  ASSERT_TRUE(ResolveUser(root.path(), &u).ok());
  EXPECT_EQ(u.uid(), 1000u);
  EXPECT_EQ(u.gid(), 1000u);  // default-user's primary group
  EXPECT_EQ(Gids(u), (std::vector<uint32_t>{1000, 1234, 50000}));
}

TEST(ResolveUserTest, AGroupAskedForIsKept) {
  testing::TempDir root;
  WriteImageUsers(root);
  v1::User by_uid;
  by_uid.set_uid(1000);
  by_uid.set_has_uid(true);
  by_uid.set_gid(3000);
  ASSERT_TRUE(ResolveUser(root.path(), &by_uid).ok());
  EXPECT_EQ(by_uid.gid(), 3000u);
  v1::User by_name;
  by_name.set_username("www-data");
  by_name.set_gid(3000);
  ASSERT_TRUE(ResolveUser(root.path(), &by_name).ok());
  EXPECT_EQ(by_name.uid(), 33u);
  EXPECT_EQ(by_name.gid(), 3000u);
}

TEST(ResolveUserTest, AUsernameGetsItsIdsAndGroups) {
  testing::TempDir root;
  WriteImageUsers(root);
  v1::User u;
  u.set_username("www-data");
  u.set_gid_from_passwd(true);
  ASSERT_TRUE(ResolveUser(root.path(), &u).ok());
  EXPECT_TRUE(u.has_uid());
  EXPECT_EQ(u.uid(), 33u);
  EXPECT_EQ(u.gid(), 33u);
  EXPECT_EQ(Gids(u), (std::vector<uint32_t>{33, 1234}));
}

TEST(ResolveUserTest, UnknownUsersAndImagesWithoutGroupFiles) {
  testing::TempDir root;
  WriteImageUsers(root);
  v1::User missing;
  missing.set_username("nobody");
  EXPECT_EQ(ResolveUser(root.path(), &missing).code(), Code::kInvalidArgument);
  v1::User unnamed;  // a uid the image does not name: only the groups asked for
  unnamed.set_uid(4242);
  unnamed.set_has_uid(true);
  unnamed.add_additional_gids(5678);
  ASSERT_TRUE(ResolveUser(root.path(), &unnamed).ok());
  EXPECT_EQ(Gids(unnamed), (std::vector<uint32_t>{0, 5678}));
  testing::TempDir bare;  // no /etc at all
  v1::User u;
  u.set_uid(1000);
  u.set_has_uid(true);
  ASSERT_TRUE(ResolveUser(bare.path(), &u).ok());
  EXPECT_EQ(Gids(u), (std::vector<uint32_t>{0}));
}

// SupplementalGroupsPolicy Strict: the image lists default-user in 1234 and 50000, and neither is
// given; the primary gid (asked for, or the passwd's) and the requested groups are.
TEST(ResolveUserTest, StrictLeavesTheImageGroupsOut) {
  testing::TempDir root;
  WriteImageUsers(root);
  v1::User u;
  u.set_uid(1000);
  u.set_has_uid(true);
  u.set_gid(3000);
  u.add_additional_gids(4000);
  u.set_strict_supplemental_groups(true);
  ASSERT_TRUE(ResolveUser(root.path(), &u).ok());
  EXPECT_EQ(u.gid(), 3000u);
  EXPECT_EQ(Gids(u), (std::vector<uint32_t>{3000, 4000}));
  v1::User merged = u;  // the same request under Merge
  merged.set_strict_supplemental_groups(false);
  merged.clear_additional_gids();
  merged.add_additional_gids(4000);
  ASSERT_TRUE(ResolveUser(root.path(), &merged).ok());
  EXPECT_EQ(Gids(merged), (std::vector<uint32_t>{1234, 3000, 4000, 50000}));

  v1::User by_name;  // a name, its passwd group
  by_name.set_username("default-user");
  by_name.set_gid_from_passwd(true);
  by_name.set_strict_supplemental_groups(true);
  ASSERT_TRUE(ResolveUser(root.path(), &by_name).ok());
  EXPECT_EQ(by_name.uid(), 1000u);
  EXPECT_EQ(by_name.gid(), 1000u);
  EXPECT_EQ(Gids(by_name), (std::vector<uint32_t>{1000}));
}

TEST(ResolveUserTest, BadGroupLinesAreSkippedAndTooManyGroupsRefused) {
  testing::TempDir root;
  WriteImageUsers(root);
  Spit(root.Join("etc/group"),
       "bad:x:12ab:default-user\nhuge:x:99999999999:default-user\nok:x:77:default-user\n");
  v1::User u;
  u.set_uid(1000);
  u.set_has_uid(true);
  u.set_gid(1000);
  ASSERT_TRUE(ResolveUser(root.path(), &u).ok());
  EXPECT_EQ(Gids(u), (std::vector<uint32_t>{77, 1000}));

  v1::User many;
  many.set_uid(1000);
  many.set_has_uid(true);
  for (uint32_t g = 1; g <= static_cast<uint32_t>(kMaxSupplementaryGroups); ++g) {
    many.add_additional_gids(g + 100000);
  }
  many.set_strict_supplemental_groups(true);
  Error e = ResolveUser(root.path(), &many);  // the primary gid makes one too many
  EXPECT_EQ(e.code(), Code::kInvalidArgument);
  EXPECT_NE(e.message().find("65536"), std::string::npos) << e.message();
}

TEST(OciSpecTest, HostileStringsNeverThrow) {
  v1::ContainerSpec spec = BasicSpec();
  spec.mutable_process()->add_args("\xff\xfe not utf-8");
  std::string json;
  EXPECT_TRUE(BuildConfigJson(spec, Options("c1", "/r", "/p"), &json).ok());
  spec = BasicSpec();
  spec.mutable_seccomp()->set_oci_json("{not json");
  EXPECT_EQ(BuildConfigJson(spec, Options("c1", "/r", "/p"), &json).code(), Code::kInvalidArgument);
  spec = BasicSpec();
  spec.mutable_process()->clear_args();
  EXPECT_EQ(BuildConfigJson(spec, Options("c1", "/r", "/p"), &json).code(), Code::kInvalidArgument);
  spec = BasicSpec();
  spec.mutable_mounts(0)->set_destination("relative/path");
  EXPECT_EQ(BuildConfigJson(spec, Options("c1", "/r", "/p"), &json).code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace podvisor::agent
