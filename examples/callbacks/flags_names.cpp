// flags_names — download flags and save each under its country's name: two requests per country,
// the flag first, then its metadata (for the name), as the book's flags3_asyncio.py does. At most -m
// requests in flight.
// This is the callbacks style: each step names the next one as its callback.
// examples/coroutines/flags_names.cpp is the same program with coroutines; diff them to see the difference.
#include <exception>
#include <functional>
#include <string>

#include "duet/cancellation.hpp"
#include "duet/offload.hpp"
#include "flags.hpp"

using Done = std::function<void(flags::Outcome)>;
using Got = std::function<void(std::error_code, duet::http::Response)>;

void download_many(flags::Job& job);
void download_one(flags::Job& job, const std::string& cc, Done done);
void get_country(flags::Job& job, const std::string& cc, std::string image, Done done);
void throttled_get(flags::Job& job, const std::string& url, Got then);
void save(flags::Job& job, const std::string& file_name, std::string image, Done done);

int main(int argc, char** argv) {
  flags::Job job(argc, argv, "flags_names");
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

void download_one(flags::Job& job, const std::string& cc, Done done) {
  const std::string url = job.flag_url(cc);
  throttled_get(job, url, [&job, cc, url, done](std::error_code ec, duet::http::Response res) {
    if (ec) return done(flags::failed(ec, res.reason));
    if (res.status != 200) return done(flags::from_status(res, url));  // 404: not found; others: errors
    get_country(job, cc, std::move(res.body), done);
  });
}

void get_country(flags::Job& job, const std::string& cc, std::string image, Done done) {
  const std::string url = job.metadata_url(cc);
  throttled_get(job, url,
      [&job, url, image = std::move(image), done](std::error_code ec, duet::http::Response res) mutable {
    if (ec) return done(flags::failed(ec, res.reason));
    if (res.status != 200) return done(flags::from_status(res, url));
    std::string country;
    try {
      country = flags::country_from_metadata(res.body);
    } catch (const flags::BadMetadata& e) {
      return done(flags::failed({}, e.what()));
    }
    save(job, flags::flag_file_name(country), std::move(image), done);
  });
}

// One request, with a permit that rides along and is released when the request ends.
void throttled_get(flags::Job& job, const std::string& url, Got then) {
  job.semaphore.acquire(
      watched(job, [&job, url, then = std::move(then)](std::error_code ec, duet::Semaphore::Permit permit) mutable {
        if (ec) return then(ec, duet::http::Response{});
        job.client.get(url, watched(job, [then = std::move(then), permit = std::move(permit)](
                                             std::error_code ec, duet::http::Response res) mutable {
          permit.release();  // the request is over: the next one may start
          then(ec, std::move(res));
        }));
      }));
}

// An ordinary blocking function, run on the thread pool so that the loop goes on meanwhile.
void save(flags::Job& job, const std::string& file_name, std::string image, Done done) {
  const std::string path = job.save_path(file_name);
  duet::offload(
      job.loop, [path, image = std::move(image)] { flags::save_flag(path, image); },
      watched(job, [done](std::error_code ec, std::exception_ptr thrown) {
        done(ec ? flags::failed(ec, thrown) : flags::ok());
      }));
}
