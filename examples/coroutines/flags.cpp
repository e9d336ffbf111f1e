// flags — download the flags of many countries at once, at most -m requests in flight.
// This is the coroutines style: each download reads top-down, awaiting each step.
// examples/callbacks/flags.cpp is the same program with callbacks; diff them to see the difference.
#include "flags.hpp"

#include <string>
#include <vector>

#include "duet/as_completed.hpp"
#include "duet/fs.hpp"

duet::Task<> download_many(flags::Job& job);
duet::Task<flags::Outcome> download_one(flags::Job& job, std::string cc);

int main(int argc, char** argv) {
  flags::Job job(argc, argv, "flags");
  if (!job.ready()) return job.exit_code();
  return job.run(duet::spawn(job.loop, download_many(job)));
}

// Starts every download at once: the semaphore lets -m of them through at a time.
duet::Task<> download_many(flags::Job& job) {
  std::vector<duet::Task<flags::Outcome>> downloads;
  for (const std::string& cc : job.codes()) downloads.push_back(download_one(job, cc));
  for (auto next : duet::as_completed(std::move(downloads))) {
    auto [index, outcome] = co_await next;
    job.done(job.codes()[index], outcome);
  }
}

// Ctrl-C cancels the task: the step it waits on throws duet::Cancelled, and the permit is released.
duet::Task<flags::Outcome> download_one(flags::Job& job, std::string cc) {
  auto permit = co_await job.semaphore.acquire();
  const std::string url = job.flag_url(cc);
  duet::http::Response res;
  try {
    res = co_await job.client.get(url);
  } catch (const duet::http::RequestError& e) {
    co_return flags::failed(e.code(), e.what());
  }
  if (res.status != 200) co_return flags::from_status(res, url);
  const std::string path = job.save_path(cc + ".gif");
  try {
    co_await duet::fs::write_file_atomic(job.loop, path, std::move(res.body));
  } catch (const duet::Cancelled&) {
    throw;
  } catch (const std::system_error& e) {
    co_return flags::save_failed(path, e.code());
  }
  co_return flags::ok();
}
