// flags_workers — the job of flags in the other classic shape: -m workers take codes from a queue.
// This is the callbacks style: each step names the next one as its callback.
// examples/coroutines/flags_workers.cpp is the same program with coroutines; diff them to see the difference.
#include "flags.hpp"

#include <functional>
#include <string>

#include "duet/cancellation.hpp"
#include "duet/fs.hpp"
#include "duet/queue.hpp"

void start_workers(flags::Job& job, duet::Queue<std::string>& codes);
void work(flags::Job& job, duet::Queue<std::string>& codes);
void download_one(flags::Job& job, const std::string& cc, std::function<void(flags::Outcome)> done);

int main(int argc, char** argv) {
  flags::Job job(argc, argv, "flags_workers");
  if (!job.ready()) return job.exit_code();
  duet::Queue<std::string> codes;
  for (const std::string& cc : job.codes()) codes.try_push(cc);
  codes.close();  // a worker that finds the queue empty stops
  start_workers(job, codes);
  return job.run();
}

// Starts -m workers; each takes codes until none are left.
void start_workers(flags::Job& job, duet::Queue<std::string>& codes) {
  for (std::size_t i = 0; i < job.concurrency(); ++i) work(job, codes);
}

// Ctrl-C requests job.stop: every step watches it, and is called back with UV_ECANCELED.
auto watched(flags::Job& job, auto callback) {
  return duet::with_cancellation(job.stop.get_token(), std::move(callback));
}

void work(flags::Job& job, duet::Queue<std::string>& codes) {
  codes.pop(watched(job, [&job, &codes](std::error_code ec, std::string cc) {
    if (ec) return;  // the queue is empty (or Ctrl-C): this worker is done
    download_one(job, cc, [&job, &codes, cc](flags::Outcome outcome) {
      job.done(cc, outcome);
      job.progress_bar.step();
      work(job, codes);
    });
  }));
}

void download_one(flags::Job& job, const std::string& cc, std::function<void(flags::Outcome)> done) {
  const std::string url = job.flag_url(cc);
  job.client.get(url, watched(job, [&job, cc, url, done](std::error_code ec, duet::http::Response res) {
    if (ec || res.status != 200) return done(ec ? flags::failed(ec, res.reason) : flags::from_status(res, url));
    const std::string path = job.save_path(cc + ".gif");
    duet::fs::write_file_atomic(job.loop, path, std::move(res.body),
        watched(job, [path, done](std::error_code ec) { done(ec ? flags::save_failed(path, ec) : flags::ok()); }));
  }));
}
