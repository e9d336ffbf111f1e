// The Content-Encoding decoder of the client's response parser: gzip and deflate (zlib's inflate),
// fed the body as llhttp hands it over and emitting the decoded bytes in blocks of up to 64 KiB.
// The consumer of a block may ask to stop (the body's sink paused): the input not yet decoded is
// then kept (at most one piece of the body) and `resume` goes on from it. Private to the client.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace duet::http::detail {

class BodyDecoder {
 public:
  enum class Coding { gzip, deflate };
  /// The coding named by a Content-Encoding value this decoder can undo, if any ("gzip", "x-gzip",
  /// "deflate", any case); null for anything else (identity, br, or several codings).
  static const Coding* coding_of(std::string_view content_encoding) noexcept;

  /// Receives a block of decoded bytes; returns 0 to go on, anything else to stop with that code.
  using Output = int (*)(void* context, const char* data, std::size_t size) noexcept;

  explicit BodyDecoder(Coding coding);
  ~BodyDecoder();
  BodyDecoder(const BodyDecoder&) = delete;
  BodyDecoder& operator=(const BodyDecoder&) = delete;

  /// Decodes `size` bytes at `data`. Returns 0 once all of them are decoded, the output's code if it
  /// stopped (the rest is kept for `resume`), or -1 if the data is not valid (see `error`).
  int decode(const char* data, std::size_t size, Output out, void* context) noexcept;
  /// Goes on with what a stop left over. Same results as `decode`.
  int resume(Output out, void* context) noexcept;
  /// True if a stop left input (or output) to go on with.
  bool pending() const noexcept { return pending_; }
  /// True once the compressed stream has ended (its trailer checked).
  bool finished() const noexcept { return finished_; }
  /// True if no byte was ever given to it.
  bool untouched() const noexcept { return untouched_; }
  const std::string& error() const noexcept { return error_; }

 private:
  int run(Output out, void* context) noexcept;

  struct Stream;
  std::unique_ptr<Stream> z_;
  std::unique_ptr<char[]> block_;
  std::string kept_;  // input a stop left undecoded
  std::string error_;
  Coding coding_;
  bool pending_ = false;
  bool finished_ = false;
  bool untouched_ = true;
  bool format_known_ = false;  // deflate: zlib's format or bare, told from the first two bytes
  std::string start_;          // deflate: the first byte, while the second has not come
};

}  // namespace duet::http::detail
