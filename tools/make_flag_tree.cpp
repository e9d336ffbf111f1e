// make_flag_tree — builds the flag tree that flags_server serves, from Debian's data packages.
//
//     make_flag_tree --gifs /usr/share/flags/countries/16x11 --iso-codes /usr/share/iso-codes/json --out DIR
//
// For every two-letter flag image in --gifs (famfamfam-flag-gif) whose code ISO 3166 names, it writes
//
//     DIR/flags/{cc}/{cc}.gif
//     DIR/flags/{cc}/metadata.json      {"country": "Brazil", "iso_cc": "BR", "tld_cc": ".br"}
//
// The country is iso-codes' common name where it has one ("Bolivia"), else its name; codes withdrawn
// from ISO 3166-1 but still drawn (AN, CS) take their name from ISO 3166-3. The tree is written into
// DIR.tmp and renamed over DIR, so an interrupted build never leaves half a tree behind. Exit status 1,
// with the reason on stderr, when an input is missing or unreadable.
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace fs = std::filesystem;

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  return nlohmann::json::parse(in);
}

// Lower-case alpha-2 code -> English name, from one iso-codes table ("3166-1" or "3166-3"). A code
// already named is kept (current names first); among withdrawn ones reused over time (CS was
// Czechoslovakia, then Serbia and Montenegro) the latest withdrawal wins, as the flags are the latest.
void add_names(std::map<std::string, std::string>& names, const fs::path& file, const char* table) {
  const nlohmann::json doc = read_json(file);  // kept in a local: a range-for over a temporary's member dangles
  std::map<std::string, std::pair<std::string, std::string>> latest;  // cc -> (withdrawal date, name)
  for (const auto& entry : doc.at(table)) {
    if (!entry.contains("alpha_2")) continue;  // ISO 3166-3 entries keep only some alpha-2 codes
    const std::string cc = lower(entry.at("alpha_2").get<std::string>());
    const char* key = entry.contains("common_name") ? "common_name" : "name";
    const std::string date = entry.value("withdrawal_date", "");
    auto& best = latest[cc];
    if (best.second.empty() || date > best.first) best = {date, entry.at(key).get<std::string>()};
  }
  for (auto& [cc, dated] : latest) names.emplace(cc, std::move(dated.second));
}

// The country-code top-level domain: the code itself, except for the United Kingdom.
std::string tld_of(const std::string& cc) { return cc == "gb" ? ".uk" : "." + cc; }

struct Args {
  fs::path gifs, iso_codes, out;
};

Args parse(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (i + 1 >= argc) throw std::runtime_error("missing value after " + std::string(flag));
    const fs::path value = argv[++i];
    if (flag == "--gifs")
      args.gifs = value;
    else if (flag == "--iso-codes")
      args.iso_codes = value;
    else if (flag == "--out")
      args.out = value;
    else
      throw std::runtime_error("unknown option " + std::string(flag));
  }
  if (args.gifs.empty() || args.iso_codes.empty() || args.out.empty())
    throw std::runtime_error("usage: make_flag_tree --gifs DIR --iso-codes DIR --out DIR");
  return args;
}

}  // namespace

int main(int argc, char** argv) try {
  const Args args = parse(argc, argv);
  std::map<std::string, std::string> names;
  add_names(names, args.iso_codes / "iso_3166-1.json", "3166-1");
  add_names(names, args.iso_codes / "iso_3166-3.json", "3166-3");

  const fs::path tmp = args.out.string() + ".tmp";
  fs::remove_all(tmp);
  int written = 0;
  for (const auto& entry : fs::directory_iterator(args.gifs)) {
    const std::string stem = entry.path().stem().string();
    if (entry.path().extension() != ".gif" || stem.size() != 2) continue;  // "england", "europeanunion"...
    const std::string cc = lower(stem);
    const auto name = names.find(cc);
    if (name == names.end()) continue;  // not a country code ISO 3166 knows
    const fs::path dir = tmp / "flags" / cc;
    fs::create_directories(dir);
    fs::copy_file(entry.path(), dir / (cc + ".gif"));
    const nlohmann::json metadata = {{"country", name->second}, {"iso_cc", upper(cc)}, {"tld_cc", tld_of(cc)}};
    std::ofstream out(dir / "metadata.json");
    out << metadata.dump() << '\n';
    if (!out.flush()) throw std::runtime_error("cannot write " + (dir / "metadata.json").string());
    ++written;
  }
  if (written == 0) throw std::runtime_error("no flag images found in " + args.gifs.string());
  fs::remove_all(args.out);
  fs::rename(tmp, args.out);
  std::printf("make_flag_tree: %d flags in %s\n", written, args.out.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "make_flag_tree: %s\n", e.what());
  return 1;
}
