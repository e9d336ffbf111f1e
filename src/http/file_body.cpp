#include "duet/http/file_body.hpp"

#include <cstdint>
#include <memory>
#include <optional>

#include "duet/fs.hpp"

namespace duet::http {
namespace {

/// What the pieces share: the open file and where the next read starts.
struct FileReader {
  Loop& loop;
  std::string path;
  std::size_t piece;
  std::optional<fs::File> file;  // open once the first piece is asked for
  std::int64_t offset = 0;

  void next(BodyPiece give, std::shared_ptr<FileReader> self) {
    if (file) return read(std::move(give), std::move(self));
    fs::open(loop, path, UV_FS_O_RDONLY, 0, [self, give = std::move(give)](std::error_code ec, fs::File f) mutable {
      if (ec) return give(ec, std::string());
      self->file.emplace(std::move(f));
      self->read(std::move(give), self);
    });
  }

  void read(BodyPiece give, std::shared_ptr<FileReader> self) {
    fs::read(loop, *file, piece, offset, [self, give = std::move(give)](std::error_code ec, std::string data) mutable {
      if (!ec) self->offset += static_cast<std::int64_t>(data.size());
      give(ec, std::move(data));  // an empty piece at the end of the file ends the body
    });
  }
};

}  // namespace

BodySource file_body(Loop& loop, std::string path, std::size_t piece) {
  auto reader = std::make_shared<FileReader>(FileReader{loop, std::move(path), piece == 0 ? 64 * 1024 : piece, {}, 0});
  return [reader](BodyPiece give) { reader->next(std::move(give), reader); };
}

}  // namespace duet::http
