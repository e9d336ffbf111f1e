#include "flag_tree.hpp"

#include <algorithm>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <system_error>

#include "duet/http/message.hpp"
#include "duet/http/url.hpp"

namespace fs = std::filesystem;

namespace flags_server {

namespace {

// Decodes one path segment's %XX escapes. Nothing for a broken escape, or an encoded '/' or NUL (which
// would let one segment pose as several, or cut a name short).
std::optional<std::string> decode_segment(std::string_view raw) {
  std::string out;
  try {
    out = duet::http::percent_decode(raw);
  } catch (const std::system_error&) {
    return std::nullopt;
  }
  if (out.find_first_of(std::string_view("/\0", 2)) != std::string::npos) return std::nullopt;
  return out;
}

// True if `path` (canonical) is `root` (canonical) or inside it.
bool inside(const fs::path& path, const fs::path& root) {
  auto [r, p] = std::mismatch(root.begin(), root.end(), path.begin(), path.end());
  return r == root.end();
}

bool hidden(const fs::path& name) { return name.filename().string().starts_with('.'); }

std::string read_whole(const fs::path& path, std::size_t limit) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) throw std::runtime_error("cannot read " + path.string() + ": " + ec.message());
  if (size > limit)
    throw std::runtime_error(path.string() + " is larger than the " + std::to_string(limit) + "-byte limit");
  std::ifstream in(path, std::ios::binary);
  if (!in.is_open()) throw std::runtime_error("cannot open " + path.string());
  std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw std::runtime_error("cannot read " + path.string());
  return body;
}

}  // namespace

std::optional<std::string> relative_path(std::string_view target) {
  if (auto q = target.find_first_of("?#"); q != std::string_view::npos) target = target.substr(0, q);
  // Absolute form ("GET http://host:8000/flags/br/br.gif", the scheme in any case): the path starts
  // after the authority.
  if (target.size() >= 7 && duet::http::iequals(target.substr(0, 7), "http://")) {
    const auto slash = target.find('/', 7);
    if (slash == std::string_view::npos) return std::nullopt;
    target = target.substr(slash);
  }
  if (!target.starts_with('/')) return std::nullopt;  // "*", "flags/..", "C:\..."
  target.remove_prefix(1);
  std::string out;
  out.reserve(target.size());
  while (true) {
    const auto end = target.find('/');
    auto segment = decode_segment(target.substr(0, end));
    // A last segment may be empty ("/", "/flags/"): a folder, which is simply not found. An empty one
    // inside the path ("//etc") is refused.
    if (segment && segment->empty() && end == std::string_view::npos) return out;
    if (!segment || segment->empty() || *segment == "." || *segment == "..") return std::nullopt;
    if (!out.empty()) out.push_back('/');
    out += *segment;
    if (end == std::string_view::npos) return out;
    target.remove_prefix(end + 1);
  }
}

std::string_view content_type_for(std::string_view name) {
  const auto dot = name.rfind('.');
  const std::string_view ext = dot == std::string_view::npos ? std::string_view() : name.substr(dot + 1);
  if (ext == "gif") return "image/gif";
  if (ext == "json") return "application/json";
  if (ext == "png") return "image/png";
  if (ext == "svg") return "image/svg+xml";
  if (ext == "txt") return "text/plain; charset=utf-8";
  if (ext == "html") return "text/html; charset=utf-8";
  return "application/octet-stream";
}

FlagTree FlagTree::load(const fs::path& root_arg, std::size_t max_file_bytes) {
  std::error_code ec;
  const fs::path root = fs::canonical(root_arg, ec);
  if (ec) throw std::runtime_error("cannot open the flag tree " + root_arg.string() + ": " + ec.message());
  const fs::path flags = root / "flags";
  if (!fs::is_directory(flags, ec))
    throw std::runtime_error(flags.string() + " is not a folder (a flag tree is ROOT/flags/{cc}/{cc}.gif)");
  if (!inside(fs::canonical(flags, ec), root))
    throw std::runtime_error(flags.string() + " links outside " + root.string() + ": serve its target with --root");

  FlagTree tree;
  // True if `path` is not to be served: a dangling link, a link to a dot-file, or a link out of the
  // root (which is also marked forbidden).
  auto forbid_if_outside = [&](const fs::path& path, const std::string& key) {
    const fs::path real = fs::canonical(path, ec);
    if (ec || hidden(real)) return true;
    if (inside(real, root)) return false;
    tree.forbidden_.insert(key);
    return true;
  };
  for (const auto& dir : fs::directory_iterator(flags)) {
    const std::string dir_key = "flags/" + dir.path().filename().string();
    if (hidden(dir.path()) || !dir.is_directory(ec) || forbid_if_outside(dir.path(), dir_key)) continue;
    for (const auto& file : fs::directory_iterator(dir.path())) {
      const std::string key = dir_key + "/" + file.path().filename().string();
      if (hidden(file.path()) || !file.is_regular_file(ec) || forbid_if_outside(file.path(), key)) continue;
      File f{read_whole(file.path(), max_file_bytes), std::string(content_type_for(key))};
      tree.bytes_ += f.body.size();
      tree.files_.emplace(key, std::move(f));
    }
  }
  return tree;
}

Lookup FlagTree::find(std::string_view target) const {
  const auto path = relative_path(target);
  if (!path) return {Lookup::bad_path};
  if (const auto it = files_.find(*path); it != files_.end()) return {Lookup::found, &it->second};
  // A link out of the root, named directly or through its folder ("flags/xx/..." under a linked "flags/xx").
  if (forbidden_.contains(*path)) return {Lookup::forbidden};
  if (const auto second_slash = path->find('/', path->find('/') + 1); second_slash != std::string::npos) {
    if (forbidden_.contains(path->substr(0, second_slash))) return {Lookup::forbidden};
  }
  return {Lookup::not_found};
}

}  // namespace flags_server
