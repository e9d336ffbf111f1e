// An application built with AddressSanitizer against a duet built without it: the loop's request
// blocks and the coroutine frames are recycled between code compiled into the application (header
// templates) and code compiled into the library. Their poisoning is decided in the library alone, so
// no block is poisoned by one side and handed out unpoisoned by the other (which ASan reported as a
// use-after-poison when the poisoning was in the headers). Prints "asan app ok" and exits 0.
#include <cstdio>
#include <duet/duet.hpp>
#include <string>

namespace {
duet::Task<int> exchange_many(duet::Loop& loop, duet::http::Client& client, std::string url, std::string path) {
  int ok = 0;
  for (int i = 0; i < 200; ++i) {
    co_await duet::sleep(loop, std::chrono::milliseconds(0));
    const duet::http::Response res = co_await client.get(url);
    if (res.status == 200 && res.body == "hello") ++ok;
    co_await duet::fs::write_file_atomic(loop, path, std::string(100 + i, 'x'));
  }
  co_return ok;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: asan_app SCRATCH-FILE\n");
    return 2;
  }
  duet::Loop loop;
  duet::http::Server server(loop, duet::Endpoint::loopback(0), [](duet::http::ServerRequest, duet::http::Reply reply) {
    duet::http::Response res;
    res.status = 200;
    res.body = "hello";
    reply(std::move(res));
  });
  duet::http::Client client(loop);
  const std::string url = "http://127.0.0.1:" + std::to_string(server.local_endpoint().port()) + "/";
  const int ok = duet::run(loop, exchange_many(loop, client, url, argv[1]));
  if (ok != 200) {
    std::printf("asan app failed: %d of 200 exchanges\n", ok);
    return 1;
  }
  std::printf("asan app ok\n");
  return 0;
}
