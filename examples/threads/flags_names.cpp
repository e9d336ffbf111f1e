// flags_names — download flags and save each under its country's name: two requests per country,
// the flag first, then its metadata (for the name), as the book's flags3 programs do. On -m threads.
// This is the threads style: each download reads top-down, every step a plain blocking call.
// examples/coroutines/flags_names.cpp is the same program with coroutines; diff them to see the difference.
#include <exception>
#include <future>
#include <string>

#include "duet/spawn.hpp"
#include "flags.hpp"
#include "thread_pool.hpp"

void download_many(flags::Job& job, flags::ThreadPool& pool);
flags::Outcome download_one(flags::Job& job, flags::Worker& worker, const std::string& cc);
std::string get_flag(flags::Job& job, flags::Worker& worker, const std::string& cc);
std::string get_country(flags::Job& job, flags::Worker& worker, const std::string& cc);

int main(int argc, char** argv) {
  flags::Job job(argc, argv, "flags_names");
  if (!job.ready()) return job.exit_code();
  flags::ThreadPool pool(job, job.concurrency());  // -m threads, each with its own loop and HTTP client
  download_many(job, pool);
  return job.run();
}

// Submits every download at once: the pool's -m threads take them in turn. Each outcome comes back
// to this thread as its download finishes; what a download threw is its error.
void download_many(flags::Job& job, flags::ThreadPool& pool) {
  for (const std::string& cc : job.codes()) {
    pool.submit([&job, cc](flags::Worker& worker) { return download_one(job, worker, cc); },
        [&job, cc](std::future<flags::Outcome> future) {
      flags::Outcome outcome;
      try {
        outcome = future.get();
      } catch (const duet::Cancelled&) {
        return;  // Ctrl-C: the run is over, not one more error
      } catch (const std::exception& e) {
        outcome = flags::error(e);  // an HTTP error, a network error, a timeout, bad metadata, a failed save
      }
      job.done(cc, outcome);
      job.progress_bar.step();
    });
  }
}

// Runs on a pool thread, which it blocks: one request at a time per thread, -m threads.
flags::Outcome download_one(flags::Job& job, flags::Worker& worker, const std::string& cc) {
  std::string image, country;
  try {
    image = get_flag(job, worker, cc);
    country = get_country(job, worker, cc);
  } catch (const flags::HttpError& e) {
    if (e.status != 404) throw;
    return flags::not_found(e.url);
  }
  flags::save_flag(job.save_path(flags::flag_file_name(country)), image);
  return flags::ok();
}

// A blocking call: this thread's loop runs until the answer is in. Ctrl-C cancels it.
std::string get_flag(flags::Job& job, flags::Worker& worker, const std::string& cc) {
  const std::string url = job.flag_url(cc);
  duet::http::Response res = duet::run(worker.loop, worker.client.get(url), job.stop.get_token());
  flags::raise_for_status(res, url);  // a status other than 200 throws flags::HttpError
  return std::move(res.body);
}

std::string get_country(flags::Job& job, flags::Worker& worker, const std::string& cc) {
  const std::string url = job.metadata_url(cc);
  duet::http::Response res = duet::run(worker.loop, worker.client.get(url), job.stop.get_token());
  flags::raise_for_status(res, url);
  return flags::country_from_metadata(res.body);  // no usable name: flags::BadMetadata
}
