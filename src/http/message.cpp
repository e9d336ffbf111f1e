#include "duet/http/message.hpp"

#include <algorithm>
#include <array>

#include "duet/http/detail/head_collector.hpp"
#include "owed_piece.hpp"

namespace duet::http {

namespace {
char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
}  // namespace

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return lower(x) == lower(y); });
}

namespace {
// tchar (RFC 9110 5.6.2), one lookup per byte: names are checked on every field of every message.
constexpr auto kTokenChars = [] {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}();
}  // namespace

bool is_token(std::string_view s) noexcept {
  if (s.empty()) return false;
  for (char c : s)
    if (!kTokenChars[static_cast<unsigned char>(c)]) return false;
  return true;
}

bool is_field_value(std::string_view s) noexcept {
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  }
  return true;
}

void Headers::add(std::string name, std::string value) { fields_.emplace_back(std::move(name), std::move(value)); }

void Headers::set(std::string name, std::string value) {
  remove(name);
  add(std::move(name), std::move(value));
}

namespace {

/// The first field named `name`, or null.
const Headers::Field* find_field(const std::vector<Headers::Field>& fields, std::string_view name) noexcept {
  for (const auto& field : fields) {
    if (iequals(field.first, name)) return &field;
  }
  return nullptr;
}

}  // namespace

std::optional<std::string_view> Headers::get(std::string_view name) const noexcept {
  if (const Field* field = find_field(fields_, name)) return std::string_view(field->second);
  return std::nullopt;
}

bool Headers::contains(std::string_view name) const noexcept { return find_field(fields_, name) != nullptr; }

void Headers::reserve(std::size_t n) { fields_.reserve(n); }

std::vector<std::string_view> Headers::get_all(std::string_view name) const {
  std::vector<std::string_view> out;
  for (const auto& [n, v] : fields_) {
    if (iequals(n, name)) out.emplace_back(v);
  }
  return out;
}

void Headers::remove(std::string_view name) {
  std::erase_if(fields_, [&](const Field& f) { return iequals(f.first, name); });
}

namespace detail {
namespace {

/// Calls `element` with each element of a comma-separated field value (RFC 9110 5.6.1), blanks
/// around it trimmed; empty elements do not count.
template <typename F>
void for_each_element(std::string_view list, F&& element) {
  while (!list.empty()) {
    const std::size_t comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    const std::size_t first = item.find_first_not_of(" \t");
    if (first == std::string_view::npos) continue;
    element(item.substr(first, item.find_last_not_of(" \t") - first + 1));
  }
}

}  // namespace

TransferCoding transfer_coding(const Headers& headers, bool llhttp_chunked) noexcept {
  // Every Transfer-Encoding field, as one list; llhttp has already refused a list whose last coding
  // is not chunked, in a request.
  std::size_t codings = 0;
  bool chunked_alone = true;
  for (const auto& [name, value] : headers) {
    if (!iequals(name, "Transfer-Encoding")) continue;
    for_each_element(value, [&](std::string_view coding) {
      ++codings;
      if (!iequals(coding, "chunked")) chunked_alone = false;
    });
  }
  if (codings == 0) return TransferCoding::empty;
  if (codings != 1 || !chunked_alone) return TransferCoding::other;
  return llhttp_chunked ? TransferCoding::chunked : TransferCoding::misread;
}

unsigned connection_options(std::string_view value) noexcept {
  if (equals_lowercase(value, "keep-alive")) return kConnectionKeepAlive;  // nearly always one of these
  if (equals_lowercase(value, "close")) return kConnectionClose;
  unsigned options = 0;
  for_each_element(value, [&](std::string_view option) {
    if (equals_lowercase(option, "close")) options |= kConnectionClose;
    if (equals_lowercase(option, "keep-alive")) options |= kConnectionKeepAlive;
  });
  return options;
}

std::string producer_failure(const std::exception_ptr& threw) {
  if (!threw) return "dropped its piece unanswered";
  try {
    std::rethrow_exception(threw);
  } catch (const std::exception& e) {
    return std::string("threw: ") + e.what();
  } catch (...) {
    return "threw";
  }
}

}  // namespace detail
}  // namespace duet::http
