// flags_names — download flags and save each under its country's name: two requests per country,
// the metadata first (for the name), then the flag. At most -m countries in progress at once.
// This is the callbacks style: each step names the next one as its callback.
// examples/coroutines/flags_names.cpp is the same program with coroutines; diff them to see the difference.
#include <string>

#include "duet/cancellation.hpp"
#include "duet/fs.hpp"
#include "flags.hpp"

void download_many(flags::Job& job);
void download_one(flags::Job& job, const std::string& cc);

int main(int argc, char** argv) {
  flags::Job job(argc, argv, "flags_names");
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
    const std::string metadata_url = job.metadata_url(cc);
    job.client.get(metadata_url, watched(job, [&job, cc, metadata_url](std::error_code ec, duet::http::Response res) {
      if (ec || res.status != 200) {
        job.semaphore.release();
        return job.done(cc, ec ? flags::failed(ec, res.reason) : flags::from_status(res, metadata_url));
      }
      std::string file_name;
      try {
        file_name = flags::file_name_from_metadata(res.body);
      } catch (const flags::BadMetadata& e) {
        job.semaphore.release();
        return job.done(cc, flags::failed({}, e.what()));
      }
      const std::string url = job.flag_url(cc);
      job.client.get(url, watched(job, [&job, cc, url, file_name](std::error_code ec, duet::http::Response res) {
        if (ec || res.status != 200) {
          job.semaphore.release();
          return job.done(cc, ec ? flags::failed(ec, res.reason) : flags::from_status(res, url));
        }
        const std::string path = job.save_path(file_name);
        duet::fs::write_file_atomic(
            job.loop, path, std::move(res.body), watched(job, [&job, cc, path](std::error_code ec) {
              job.semaphore.release();
              job.done(cc, ec ? flags::save_failed(path, ec) : flags::ok());
            }));
      }));
    }));
  }));
}
