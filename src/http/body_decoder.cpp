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
  untouched_ = false;
  std::string first;  // deflate: the first bytes, gathered until its two formats can be told apart
  if (coding_ == Coding::deflate && !format_known_) {
    try {
      first = std::move(start_);
      first.append(data, size);
    } catch (...) {
      error_ = "out of memory";
      return -1;
    }
    if (first.size() < 2) {
      start_ = std::move(first);
      return 0;
    }
    // A zlib header: CM 8 in the low nibble and the two bytes a multiple of 31 (RFC 1950). Anything
    // else is taken for bare deflate data, which some servers send as "deflate".
    const auto b0 = static_cast<unsigned char>(first[0]), b1 = static_cast<unsigned char>(first[1]);
    const bool zlib = (b0 & 0x0f) == 8 && ((b0 << 8) | b1) % 31 == 0;
    if (!zlib && inflateReset2(&z_->z, kRaw) != Z_OK) {
      error_ = "cannot decode the deflate body";
      return -1;
    }
    format_known_ = true;
    data = first.data();
    size = first.size();
  }
  if (finished_) {
    // gzip allows several members one after the other (RFC 1952); anything after the end of a
    // deflate stream is not part of it.
    if (coding_ != Coding::gzip) {
      error_ = "data after the end of the deflate body";
      return -1;
    }
    if (inflateReset(&z_->z) != Z_OK) {
      error_ = "cannot decode the gzip body";
      return -1;
    }
    finished_ = false;
  }
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
    if (finished_ && z.avail_in > 0) {  // more after the end of a stream
      if (coding_ != Coding::gzip) {
        error_ = "data after the end of the deflate body";
        return -1;
      }
      if (inflateReset(&z) != Z_OK) {  // the next gzip member
        error_ = "cannot decode the gzip body";
        return -1;
      }
      finished_ = false;
    }
    if (finished_) return 0;
    const uInt in_before = z.avail_in;
    z.next_out = reinterpret_cast<Bytef*>(block_.get());
    z.avail_out = static_cast<uInt>(kBlock);
    const int rc = inflate(&z, Z_NO_FLUSH);
    if (rc == Z_STREAM_END) {
      finished_ = true;
    } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
      error_ = std::string("the ") + (coding_ == Coding::gzip ? "gzip" : "deflate") + " body is corrupt" +
               (z.msg ? std::string(": ") + z.msg : std::string());
      return -1;
    }
    const std::size_t produced = kBlock - z.avail_out;
    if (produced > 0) {
      if (const int stop = out(context, block_.get(), produced); stop != 0) {
        // More may follow from the input left, or from zlib's window when the block was full.
        pending_ = z.avail_in > 0 || (!finished_ && produced == kBlock);
        return stop;
      }
    }
    const bool more_output = !finished_ && produced == kBlock;
    if (z.avail_in == 0 && !more_output) return 0;
    if (rc == Z_BUF_ERROR && produced == 0 && z.avail_in == in_before) return 0;  // no progress possible
  }
}

}  // namespace duet::http::detail
