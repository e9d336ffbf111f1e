// flags_names — download flags and save each under its country's name: two requests per country,
// the metadata first (for the name), then the flag. At most -m countries in progress at once.
// This is the coroutines style: each download reads top-down, awaiting each step.
// examples/callbacks/flags_names.cpp is the same program with callbacks; diff them to see the difference.
#include <string>
#include <vector>

#include "duet/as_completed.hpp"
#include "duet/fs.hpp"
#include "flags.hpp"

duet::Task<> download_many(flags::Job& job);
duet::Task<flags::Outcome> download_one(flags::Job& job, std::string cc);

int main(int argc, char** argv) {
  flags::Job job(argc, argv, "flags_names");
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
  const std::string metadata_url = job.metadata_url(cc);
  const std::string url = job.flag_url(cc);
  duet::http::Response res;
  std::string file_name;
  try {
    res = co_await job.client.get(metadata_url);
    if (res.status != 200) co_return flags::from_status(res, metadata_url);
    file_name = flags::file_name_from_metadata(res.body);
    res = co_await job.client.get(url);
  } catch (const duet::http::RequestError& e) {
    co_return flags::failed(e.code(), e.what());
  } catch (const flags::BadMetadata& e) {
    co_return flags::failed({}, e.what());
  }
  if (res.status != 200) co_return flags::from_status(res, url);
  const std::string path = job.save_path(file_name);
  try {
    co_await duet::fs::write_file_atomic(job.loop, path, std::move(res.body));
  } catch (const duet::Cancelled&) {
    throw;
  } catch (const std::system_error& e) {
    co_return flags::save_failed(path, e.code());
  }
  co_return flags::ok();
}
