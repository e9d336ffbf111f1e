// duet/detail/chrono.hpp — std::chrono's durations, time points and clocks, without the rest of
// <chrono>.
//
// libstdc++'s <chrono> also brings C++20's calendar, time zones and formatting, and with them
// <sstream> and the iostreams: 7% of the compiler's work for a translation unit that includes
// `<duet/duet.hpp>` (240 million of its 3,660 million instructions at -O0). What duet's API uses
// (durations, time points, `steady_clock`, `system_clock`, `duration_cast`, `ceil` and the
// `std::chrono_literals`) is all in <bits/chrono.h>, the part of libstdc++ that <chrono> itself
// includes first. Other standard libraries get <chrono>. A program that wants the calendar or
// `operator<<` for durations includes <chrono> itself.
#pragma once

#include <version>  // names the standard library (__GLIBCXX__)

#if defined(__GLIBCXX__) && __has_include(<bits/chrono.h>)
#include <bits/chrono.h>
#else
#include <chrono>
#endif
