// flags — download the flags of many countries at once, at most -m requests in flight.
// This is the coroutines style: each download reads top-down, awaiting each step.
// examples/callbacks/flags.cpp is the same program with callbacks; diff them to see the difference.
// docs/from-asyncio.md reads it beside the book's flags2_asyncio.py.
#include "flags.hpp"

#include <exception>
#include <string>
#include <vector>

#include "duet/as_completed.hpp"
#include "duet/offload.hpp"

duet::Task<> download_many(flags::Job& job);
duet::Task<flags::Outcome> download_one(flags::Job& job, std::string cc);
duet::Task<std::string> get_flag(flags::Job& job, std::string cc);

int main(int argc, char** argv) {
  flags::Job job(argc, argv, "flags");
  if (!job.ready()) return job.exit_code();
  return job.run(duet::spawn(job.loop, download_many(job)));
}

// Starts every download at once: the semaphore lets -m requests through at a time. as_completed
// gives the outcomes in the order the downloads finish; what a download threw is its error.
duet::Task<> download_many(flags::Job& job) {
  std::vector<duet::Task<flags::Outcome>> to_do;
  for (const std::string& cc : job.codes()) to_do.push_back(download_one(job, cc));
  for (auto next : flags::showing_progress(job, duet::as_completed(std::move(to_do)))) {
    flags::Outcome outcome;
    try {
      outcome = (co_await next).value;
    } catch (const duet::Cancelled&) {
      throw;  // Ctrl-C: the run is over, not one more error
    } catch (const std::exception& e) {
      outcome = flags::error(e);  // an HTTP error, a network error, a timeout, a failed save
    }
    job.done(job.codes()[next.index()], outcome);  // which code: its index, no URL to take apart
  }
}

// Ctrl-C cancels the task: the step it waits on throws duet::Cancelled, and the permit is released.
duet::Task<flags::Outcome> download_one(flags::Job& job, std::string cc) {
  std::string image;
  try {
    auto permit = co_await job.semaphore.acquire();  // held for the request, released at the '}'
    image = co_await get_flag(job, cc);
  } catch (const flags::HttpError& e) {
    if (e.status != 404) throw;
    co_return flags::not_found(e.url);
  }
  const std::string path = job.save_path(cc + ".gif");
  co_await duet::offload(job.loop, [&] { flags::save_flag(path, image); });  // this frame waits for it to end
  co_return flags::ok();
}

duet::Task<std::string> get_flag(flags::Job& job, std::string cc) {
  const std::string url = job.flag_url(cc);
  duet::http::Response res = co_await job.client.get(url);
  flags::raise_for_status(res, url);  // a status other than 200 throws flags::HttpError
  co_return std::move(res.body);
}
