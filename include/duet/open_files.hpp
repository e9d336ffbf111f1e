// duet/open_files.hpp — room for many connections: raising this process's open-file limit.
//
//     std::size_t room = duet::raise_open_file_limit();   // e.g. 1024 -> 1048576
//
// Every TCP connection holds a file descriptor, and the usual soft limit (often 1024) is far below
// what a program with thousands of connections in flight needs. This raises the soft limit to the
// hard one, which an unprivileged process may do, and returns the limit now in force (SIZE_MAX when
// unlimited). It never lowers a limit and never throws: if the system refuses to raise it, the old
// limit is returned; if the limit cannot even be read (`getrlimit` fails), it returns 0, meaning
// "unknown". Process-wide and synchronous (two system calls); call it once at start-up.
#pragma once

#include <cstddef>

namespace duet {

std::size_t raise_open_file_limit() noexcept;

}  // namespace duet
