#include "duet/fs.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>

namespace duet::fs {

void File::reset() noexcept {
  if (fd_ >= 0) ::close(std::exchange(fd_, -1));
}

namespace detail {

std::pair<std::string, std::string> split_path(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return {"", path};
  return {path.substr(0, slash + 1), path.substr(slash + 1)};
}

std::string temporary_name_for(const std::string& path) {
  static std::atomic<unsigned long> counter{0};
  auto [folder, name] = split_path(path);
  return folder + "." + name + "." + std::to_string(::getpid()) + "." + std::to_string(++counter) + ".tmp";
}

bool is_directory(const Stat& st) noexcept { return (st.st_mode & S_IFMT) == S_IFDIR; }

void unlink_now(const std::string& path) noexcept { ::unlink(path.c_str()); }

}  // namespace detail
}  // namespace duet::fs
