// flags_workers — the job of flags in the other classic shape: -m workers take codes from a queue.
// This is the coroutines style: each download reads top-down, awaiting each step.
// examples/callbacks/flags_workers.cpp is the same program with callbacks; diff them to see the difference.
#include "flags.hpp"

#include <optional>
#include <string>

#include "duet/fs.hpp"
#include "duet/queue.hpp"
#include "duet/task_group.hpp"

duet::Task<> start_workers(flags::Job& job, duet::Queue<std::string>& codes);
duet::Task<> work(flags::Job& job, duet::Queue<std::string>& codes);
duet::Task<flags::Outcome> download_one(flags::Job& job, std::string cc);

int main(int argc, char** argv) {
  flags::Job job(argc, argv, "flags_workers");
  if (!job.ready()) return job.exit_code();
  duet::Queue<std::string> codes;
  for (const std::string& cc : job.codes()) codes.try_push(cc);
  codes.close();  // a worker that finds the queue empty stops
  return job.run(duet::spawn(job.loop, start_workers(job, codes)));
}

// Starts -m workers; each takes codes until none are left.
duet::Task<> start_workers(flags::Job& job, duet::Queue<std::string>& codes) {
  duet::TaskGroup workers;
  for (std::size_t i = 0; i < job.concurrency(); ++i) workers.spawn(work(job, codes));
  co_await workers;
}

// Ctrl-C cancels the task: the step each worker waits on throws duet::Cancelled.
duet::Task<> work(flags::Job& job, duet::Queue<std::string>& codes) {
  while (std::optional<std::string> cc = co_await codes.pop()) {
    const flags::Outcome outcome = co_await download_one(job, *cc);
    job.done(*cc, outcome);
    job.progress_bar.step();
  }
}

duet::Task<flags::Outcome> download_one(flags::Job& job, std::string cc) {
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
