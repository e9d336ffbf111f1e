#include "body_decoder.hpp"

#include <zlib.h>

#include <cstring>

#include "duet/http/message.hpp"

namespace duet::http::detail {
namespace {
constexpr std::size_t kBlock = 64 * 1024;
constexpr int kGzip = 15 + 16;  // windowBits: gzip wrapper
constexpr int kZlib = 15;       // zlib wrapper (what RFC 9110 calls deflate)
constexpr int kRaw = -15;       // bare deflate data, which some servers send as "deflate"
}  // namespace

struct BodyDecoder::Stream {
  z_stream z{};
  bool ready = false;
  ~Stream() {
    if (ready) inflateEnd(&z);
  }
};

const BodyDecoder::Coding* BodyDecoder::coding_of(std::string_view value) noexcept {
  static constexpr Coding gzip = Coding::gzip;
  static constexpr Coding deflate = Coding::deflate;
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  if (iequals(value, "gzip") || iequals(value, "x-gzip")) return &gzip;
  if (iequals(value, "deflate")) return &deflate;
  return nullptr;
}

BodyDecoder::BodyDecoder(Coding coding)
    : z_(std::make_unique<Stream>()), block_(std::make_unique<char[]>(kBlock)), coding_(coding) {
  if (inflateInit2(&z_->z, coding == Coding::gzip ? kGzip : kZlib) != Z_OK) throw std::bad_alloc();
  z_->ready = true;
}

BodyDecoder::~BodyDecoder() = default;

int BodyDecoder::decode(const char* data, std::size_t size, Output out, void* context) noexcept {
  if (size == 0) return 0;
  if (untouched_) span_start_ = data;
  untouched_ = false;
  if (finished_) return 0;  // bytes after the end of the compressed stream are ignored
  z_->z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data));
  z_->z.avail_in = static_cast<uInt>(size);
  const int rc = run(out, context);
  if (rc > 0 && z_->z.avail_in > 0) {  // stopped: keep what is left, the caller's buffer goes away
    try {
      kept_.assign(reinterpret_cast<const char*>(z_->z.next_in), z_->z.avail_in);
    } catch (...) {
      error_ = "out of memory";
      return -1;
    }
    z_->z.next_in = reinterpret_cast<Bytef*>(kept_.data());
  }
  return rc;
}

int BodyDecoder::resume(Output out, void* context) noexcept {
  if (!pending_) return 0;
  const int rc = run(out, context);
  if (rc == 0) kept_.clear();
  return rc;
}

int BodyDecoder::run(Output out, void* context) noexcept {
  z_stream& z = z_->z;
  pending_ = false;
  for (;;) {
    if (finished_) return 0;
    const uInt in_before = z.avail_in;
    z.next_out = reinterpret_cast<Bytef*>(block_.get());
    z.avail_out = static_cast<uInt>(kBlock);
    int rc = inflate(&z, Z_NO_FLUSH);
    if (rc == Z_DATA_ERROR && coding_ == Coding::deflate && !raw_tried_ && z.total_out == 0 &&
        reinterpret_cast<const char*>(z.next_in) - span_start_ == static_cast<std::ptrdiff_t>(z.total_in)) {
      // Not a zlib header: try bare deflate data, from the start of what it was given.
      raw_tried_ = true;
      z.next_in -= z.total_in;
      z.avail_in += static_cast<uInt>(z.total_in);
      if (inflateReset2(&z, kRaw) != Z_OK) {
        error_ = "cannot decode the deflate body";
        return -1;
      }
      continue;
    }
    if (rc == Z_STREAM_END) {
      finished_ = true;
    } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
      error_ = std::string("the ") + (coding_ == Coding::gzip ? "gzip" : "deflate") + " body is corrupt" +
               (z.msg ? std::string(": ") + z.msg : std::string());
      return -1;
    }
    if (z.total_in > 2) raw_tried_ = true;  // past the header: the format is settled
    const std::size_t produced = kBlock - z.avail_out;
    if (produced > 0) {
      if (const int stop = out(context, block_.get(), produced); stop != 0) {
        // More may follow from the input left, or from zlib's window when the block was full.
        pending_ = !finished_ && (z.avail_in > 0 || produced == kBlock);
        return stop;
      }
    }
    const bool more_output = produced == kBlock;
    if (z.avail_in == 0 && !more_output) return 0;
    if (rc == Z_BUF_ERROR && produced == 0 && z.avail_in == in_before) return 0;  // no progress possible
  }
}

}  // namespace duet::http::detail
