// flag_tree.hpp — the files flags_server serves, and the one function that maps a request to them.
//
//     FlagTree tree = FlagTree::load("/path/to/root");      // reads ROOT/flags/*/* into memory
//     Lookup found = tree.find("/flags/br/br.gif");         // found.status == Lookup::found
//
// A tree has the layout `ROOT/flags/{cc}/{file}` (`{cc}.gif`, `metadata.json`). `load` reads every
// regular file at that depth into memory once, at start-up, so answering a request touches no disk and
// costs a hash look-up; a flag tree is small (the book's is under 2 MB). Changes on disk are seen on
// the next start.
//
// Safety: only what `load` read can ever be served, so no request can name a file outside the tree.
// On top of that, `find` refuses (`bad_path`, answered 400) a path with `.` or `..` segments — also
// percent-encoded (`%2e%2e`) — an empty segment inside it (`//etc`), an encoded `/` or NUL, or a broken escape;
// and `load` marks a file or folder that is a symlink leading out of ROOT as `forbidden` (403) rather
// than reading it. Dot-files, and links to them, are neither read nor served.
//
// A path that names a folder ("/", "/flags/") is simply not found (404).
//
// Failure: `load` throws `std::runtime_error` naming the path when ROOT/flags is not a readable folder
// (or is a link out of ROOT), or a file cannot be read.
#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

namespace flags_server {

struct File {
  std::string body;
  std::string content_type;  ///< from the extension: "image/gif", "application/json", ...
};

struct Lookup {
  enum Status { found, not_found, bad_path, forbidden } status = not_found;
  const File* file = nullptr;  ///< when found
};

class FlagTree {
 public:
  /// Reads the tree under `root`. Files larger than `max_file_bytes` are refused with an error.
  static FlagTree load(const std::filesystem::path& root, std::size_t max_file_bytes = 64 * 1024 * 1024);

  /// `target` as the request line has it: "/flags/br/br.gif", or absolute-form "http://host/flags/...";
  /// a query ("?x=1") is ignored.
  Lookup find(std::string_view target) const;

  std::size_t files() const noexcept { return files_.size(); }
  std::size_t bytes() const noexcept { return bytes_; }

 private:
  std::unordered_map<std::string, File> files_;  // "flags/br/br.gif" -> contents
  std::unordered_set<std::string> forbidden_;    // "flags/xx" or "flags/xx/xx.gif": links out of ROOT
  std::size_t bytes_ = 0;
};

/// The tree-relative path a request target names ("/flags/br/br.gif" -> "flags/br/br.gif"), decoded;
/// nothing when the path is malformed or tries to climb (see the header comment).
std::optional<std::string> relative_path(std::string_view target);

/// The Content-Type for a file name, from its extension.
std::string_view content_type_for(std::string_view name);

}  // namespace flags_server
