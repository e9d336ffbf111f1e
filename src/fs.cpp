#include "duet/fs.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>

namespace duet::fs {

// access(2)'s modes, which AccessMode passes to libuv as they are.
static_assert(static_cast<int>(AccessMode::exists) == F_OK && static_cast<int>(AccessMode::execute) == X_OK &&
              static_cast<int>(AccessMode::write) == W_OK && static_cast<int>(AccessMode::read) == R_OK);

void File::reset() noexcept {
  if (fd_ >= 0) ::close(std::exchange(fd_, -1));
}

namespace detail {

namespace {

/// Closes and frees a uv_dir_t now, on this thread. A synchronous libuv request (no callback) never
/// touches its loop (libuv's own copyfile unlinks this way, with no loop), so this works after the
/// Loop is gone.
void close_dir_now(uv_dir_t* dir) noexcept {
  uv_fs_t req;
  uv_fs_closedir(nullptr, &req, dir, nullptr);
  uv_fs_req_cleanup(&req);
}

EntryType entry_type(uv_dirent_type_t t) noexcept { return static_cast<EntryType>(t); }

}  // namespace

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

TempFile extract_temp_file(uv_fs_t& req, std::string&) {
  TempFile made;
  made.file = File(static_cast<uv_file>(req.result));
  try {
    made.path = req.path;
  } catch (...) {
    ::unlink(req.path);  // its name cannot be delivered: remove it (`made.file` closes it)
    throw;
  }
  return made;
}

void discard_temp_file(uv_fs_t& req) noexcept {
  ::close(static_cast<int>(req.result));
  ::unlink(req.path);
}

std::string extract_temp_dir(uv_fs_t& req, std::string&) {
  try {
    return req.path;
  } catch (...) {
    ::rmdir(req.path);
    throw;
  }
}

void discard_temp_dir(uv_fs_t& req) noexcept { ::rmdir(req.path); }

std::vector<DirEntry> extract_scandir(uv_fs_t& req, std::string&) {
  std::vector<DirEntry> entries;
  entries.reserve(static_cast<std::size_t>(req.result));
  uv_dirent_t ent;
  while (uv_fs_scandir_next(&req, &ent) == 0) entries.push_back(DirEntry{ent.name, entry_type(ent.type)});
  return entries;  // what is left unread (after a throw) is freed by uv_fs_req_cleanup
}

DirState::DirState(uv_dir_t* d) noexcept : dir(d), entries{} {
  dir->dirents = entries;
  dir->nentries = kBatch;
}

DirState::~DirState() {
  if (dir) close_dir_now(dir);
}

Directory extract_directory(uv_fs_t& req, std::string&) {
  auto* dir = static_cast<uv_dir_t*>(req.ptr);
  std::shared_ptr<DirState> state;
  try {
    state = std::make_shared<DirState>(dir);
  } catch (...) {
    close_dir_now(dir);
    throw;
  }
  return DirAccess::make(std::move(state));
}

std::vector<DirEntry> extract_entries(uv_fs_t& req, DirRead& read) {
  std::vector<DirEntry> entries;
  const auto n = static_cast<std::size_t>(req.result);
  entries.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    const uv_dirent_t& e = read.dir->entries[i];
    entries.push_back(DirEntry{e.name, entry_type(e.type)});
  }
  return entries;  // the names libuv allocated are freed by uv_fs_req_cleanup
}

}  // namespace detail
}  // namespace duet::fs
