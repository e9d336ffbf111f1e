// flags — download the flags of many countries at once, at most -m requests in flight.
// This is the callbacks style: each step names the next one as its callback.
// examples/coroutines/flags.cpp is the same program with coroutines; diff them to see the difference.
#include "flags.hpp"

#include <string>

#include "duet/cancellation.hpp"
#include "duet/fs.hpp"

void download_many(flags::Job& job);
void download_one(flags::Job& job, const std::string& cc);

int main(int argc, char** argv) {
  flags::Job job(argc, argv, "flags");
  if (!job.ready()) return job.exit_code();
  download_many(job);
  return job.run();
}

// Starts every download at once: the semaphore lets -m of them through at a time.
void download_many(flags::Job& job) {
  for (const std::string& cc : job.codes()) download_one(job, cc);
}

// Ctrl-C requests job.stop: every step watches it, and is called back with UV_ECANCELED.
auto watched(flags::Job& job, auto callback) { return duet::with_cancellation(job.stop.get_token(), callback); }

void download_one(flags::Job& job, const std::string& cc) {
  job.semaphore.acquire(watched(job, [&job, cc](std::error_code ec) {
    if (ec) return job.done(cc, flags::failed(ec, ec.message()));
    const std::string url = job.flag_url(cc);
    job.client.get(url, watched(job, [&job, cc, url](std::error_code ec, duet::http::Response res) {
      if (ec || res.status != 200) {
        job.semaphore.release();
        return job.done(cc, ec ? flags::failed(ec, res.reason) : flags::from_status(res, url));
      }
      const std::string path = job.save_path(cc + ".gif");
      duet::fs::write_file_atomic(
          job.loop, path, std::move(res.body), watched(job, [&job, cc, path](std::error_code ec) {
            job.semaphore.release();
            job.done(cc, ec ? flags::save_failed(path, ec) : flags::ok());
          }));
    }));
  }));
}
