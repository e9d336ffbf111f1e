// flags — download the flags of many countries at once, at most -m requests in flight.
// This is the callbacks style: each step names the next one as its callback.
// examples/coroutines/flags.cpp is the same program with coroutines; diff them to see the difference.
// docs/from-asyncio.md reads it beside the book's flags2_asyncio.py.
#include "flags.hpp"

#include <exception>
#include <functional>
#include <string>

#include "duet/cancellation.hpp"
#include "duet/offload.hpp"

using Done = std::function<void(flags::Outcome)>;

void download_many(flags::Job& job);
void download_one(flags::Job& job, const std::string& cc, Done done);
void save(flags::Job& job, const std::string& cc, std::string image, Done done);

int main(int argc, char** argv) {
  flags::Job job(argc, argv, "flags");
  if (!job.ready()) return job.exit_code();
  download_many(job);
  return job.run();
}

// Starts every download at once: the semaphore lets -m requests through at a time. Each download
// calls back with its outcome, so the outcomes come in the order the downloads finish.
void download_many(flags::Job& job) {
  for (const std::string& cc : job.codes()) {
    download_one(job, cc, [&job, cc](flags::Outcome outcome) {
      job.done(cc, outcome);
      job.progress_bar.step();
    });
  }
}

// Ctrl-C requests job.stop: every step watches it, and is called back with UV_ECANCELED.
auto watched(flags::Job& job, auto callback) {
  return duet::with_cancellation(job.stop.get_token(), std::move(callback));
}

// The permit rides along with the request and is released when it ends; the save runs without it.
void download_one(flags::Job& job, const std::string& cc, Done done) {
  job.semaphore.acquire(watched(job, [&job, cc, done](std::error_code ec, duet::Semaphore::Permit permit) {
    if (ec) return done(flags::failed(ec, ec.message()));
    const std::string url = job.flag_url(cc);
    job.client.get(url, watched(job, [&job, cc, url, done, permit = std::move(permit)](
                                         std::error_code ec, duet::http::Response res) mutable {
      permit.release();  // the request is over: the next one may start while this flag is saved
      if (ec) return done(flags::failed(ec, res.reason));
      if (res.status != 200) return done(flags::from_status(res, url));  // 404: not found; others: errors
      save(job, cc, std::move(res.body), done);
    }));
  }));
}

// An ordinary blocking function, run on the thread pool so that the loop goes on meanwhile.
void save(flags::Job& job, const std::string& cc, std::string image, Done done) {
  const std::string path = job.save_path(cc + ".gif");
  duet::offload(
      job.loop, [path, image = std::move(image)] { flags::save_flag(path, image); },
      watched(job, [done](std::error_code ec, std::exception_ptr thrown) {
        done(ec ? flags::failed(ec, thrown) : flags::ok());
      }));
}
