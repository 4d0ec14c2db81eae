// A CNI plugin for tests. It appends what it was called with (CNI_* environment and stdin) as one
// JSON line to the file named by its config's "recordFile", then:
//   - fails with the error object {code: failCode, msg: failMsg} when "failOn" names the command,
//   - exits 2 with a line on stderr (no JSON) when "crashOn" names the command,
//   - on ADD prints prevResult if it got one, else its config's "result" (or an empty result),
//   - on DEL and CHECK prints nothing.

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>

#include "nlohmann/json.hpp"

namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

}  // namespace

int main() {
  std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  nlohmann::json conf = nlohmann::json::parse(input, nullptr, false);
  if (conf.is_discarded()) {
    std::cout << R"({"cniVersion":"1.0.0","code":6,"msg":"failed to decode config"})";
    return 1;
  }
  const std::string command = Env("CNI_COMMAND");
  const std::string version = conf.value("cniVersion", "1.0.0");
  if (conf.contains("recordFile")) {
    nlohmann::json record = {{"command", command},
                             {"containerId", Env("CNI_CONTAINERID")},
                             {"netns", Env("CNI_NETNS")},
                             {"ifname", Env("CNI_IFNAME")},
                             {"args", Env("CNI_ARGS")},
                             {"path", Env("CNI_PATH")},
                             {"stdin", conf}};
    std::ofstream(conf["recordFile"].get<std::string>(), std::ios::app) << record.dump() << "\n";
  }
  if (conf.value("failOn", "") == command) {
    std::cout << nlohmann::json{{"cniVersion", version},
                                {"code", conf.value("failCode", 100)},
                                {"msg", conf.value("failMsg", "failed")},
                                {"details", conf.value("failDetails", "")}}
                     .dump();
    return 1;
  }
  if (conf.value("crashOn", "") == command) {
    std::cerr << "fake plugin crashed on " << command << "\n";
    return 2;
  }
  if (command == "ADD") {
    nlohmann::json result;
    if (conf.contains("prevResult")) {
      result = conf["prevResult"];
    } else if (conf.contains("result")) {
      result = conf["result"];
    } else {
      result = {{"cniVersion", version}};
    }
    std::cout << result.dump();
  } else if (command == "VERSION") {
    std::cout << R"({"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]})";
  }
  return 0;
}
