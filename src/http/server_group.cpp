#include "duet/http/server_group.hpp"

#include <cstdio>
#include <exception>
#include <future>
#include <memory>
#include <stdexcept>
#include <thread>
#include <utility>

namespace duet::http {

ServerGroup::ServerGroup(MakeServer make_server, LoopGroup& loops, const Endpoint& at, ServerOptions options)
    : loops_(&loops), servers_(loops.size()) {
  check_thread();
  options.reuse_port = true;
  Endpoint where = at;
  try {
    for (std::size_t i = 0; i < loops.size(); ++i) {
      on_loop(i, [&, i] { servers_[i] = make_server(loops[i], where, options); });
      if (i == 0) on_loop(0, [&] { where = servers_[0]->local_endpoint(); });  // port 0: the one it took
    }
  } catch (...) {
    close();
    throw;
  }
  at_ = where;
}

ServerGroup::~ServerGroup() {
  try {
    close();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "duet: ~ServerGroup: %s\n", e.what());
  }
}

std::size_t ServerGroup::size() const noexcept { return servers_.size(); }

std::size_t ServerGroup::connections() {
  check_thread();
  std::size_t n = 0;
  for (std::size_t i = 0; i < servers_.size(); ++i)
    on_loop(i, [&, i] { n += servers_[i] ? servers_[i]->connections() : 0; });
  return n;
}

void ServerGroup::close() {
  check_thread();
  for (std::size_t i = 0; i < servers_.size(); ++i)
    if (servers_[i]) on_loop(i, [&, i] { servers_[i].reset(); });
}

void ServerGroup::check_thread() const {
  for (std::size_t i = 0; i < loops_->size(); ++i)
    if (loops_->thread(i).thread_id() == std::this_thread::get_id())
      throw std::logic_error(
          "duet::http::ServerGroup: used from one of its own loops' threads (it would wait for itself)");
}

void ServerGroup::on_loop(std::size_t i, duet::detail::UniqueFunction<void()> fn) {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> result = done->get_future();
  (*loops_)[i].post([done, fn = std::move(fn)]() mutable {
    try {
      fn();
      done->set_value();
    } catch (...) {
      done->set_exception(std::current_exception());
    }
  });
  if (loops_->thread(i).joined())  // the function waits in a queue nobody reads (dropped unrun later)
    throw std::logic_error("duet::http::ServerGroup: its LoopGroup has stopped; close the servers before joining it");
  try {
    result.get();
  } catch (const std::future_error&) {  // dropped unrun: the loop was destroyed
    throw std::logic_error("duet::http::ServerGroup: a loop was destroyed before the servers were closed");
  }
}

}  // namespace duet::http
