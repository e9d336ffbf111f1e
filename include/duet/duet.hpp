// duet/duet.hpp — everything in one include.
#pragma once

#include "duet/as_completed.hpp"
#include "duet/awaitable.hpp"
#include "duet/cancellation.hpp"
#include "duet/dns.hpp"
#include "duet/endpoint.hpp"
#include "duet/error.hpp"
#include "duet/fs.hpp"
#include "duet/loop.hpp"
#include "duet/offload.hpp"
#include "duet/semaphore.hpp"
#include "duet/spawn.hpp"
#include "duet/task.hpp"
#include "duet/tcp.hpp"
#include "duet/timer.hpp"
#include "duet/when_all.hpp"
#include "duet/with_timeout.hpp"
