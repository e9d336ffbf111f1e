// flags_server as a child process on three ephemeral loopback ports, for the tests that need a server.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "duet/endpoint.hpp"
#include "peer_process.hpp"

namespace duet::test {

/// The flag tree the build made, which flags_server serves by default.
inline const std::filesystem::path kFlagTree = DUET_FLAG_ROOT;

/// flags_server on three ephemeral loopback ports, with `extra` options.
class FlagsServer {
 public:
  explicit FlagsServer(std::vector<std::string> extra = {}, const std::string& stderr_file = "")
      : process_(argv(std::move(extra)), false, stderr_file) {
    for (int i = 0; i < 3; ++i) {
      std::istringstream line(process_.read_line());
      std::string label, url;
      line >> label >> url;
      urls_[label] = url;
      ports_[label] = static_cast<std::uint16_t>(std::stoi(url.substr(url.rfind(':') + 1)));
    }
  }

  std::string url(const std::string& label, const std::string& path = "") const { return urls_.at(label) + path; }
  duet::Endpoint at(const std::string& label) const { return duet::Endpoint::loopback(ports_.at(label)); }
  PeerProcess& process() { return process_; }

 private:
  static std::vector<std::string> argv(std::vector<std::string> extra) {
    std::vector<std::string> args = {DUET_FLAGS_SERVER, "--local-port", "0", "--delay-port", "0", "--error-port", "0"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }
  PeerProcess process_;
  std::map<std::string, std::string> urls_;
  std::map<std::string, std::uint16_t> ports_;
};

}  // namespace duet::test
