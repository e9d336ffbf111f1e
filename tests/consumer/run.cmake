# Installs the duet build in BUILD_DIR into a scratch prefix, then builds and runs the consumer project
# against it twice: through find_package(duet), and through pkg-config; and, unless the build is
# sanitized itself, an application built with AddressSanitizer against it. Run with cmake -P.
foreach(var SOURCE_DIR BUILD_DIR WORK_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run.cmake needs -D${var}=...")
  endif()
endforeach()

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})

# 1. find_package(duet)
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/build -DCMAKE_PREFIX_PATH=${prefix}
    "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}" "-DCMAKE_EXE_LINKER_FLAGS=${LINK_FLAGS}")
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${WORK_DIR}/build/consumer)
if(NOT last_output MATCHES "consumer ok")
  message(FATAL_ERROR "the find_package consumer did not report success: ${last_output}")
endif()

# 2. pkg-config
file(GLOB_RECURSE pc_file ${prefix}/duet.pc)
get_filename_component(pc_dir "${pc_file}" DIRECTORY)
set(ENV{PKG_CONFIG_PATH} "${pc_dir}")
run(pkg-config --cflags --libs duet)
string(STRIP "${last_output}" pc_flags)
separate_arguments(pc_flags UNIX_COMMAND "${pc_flags}")
separate_arguments(extra_flags UNIX_COMMAND "${CXX_FLAGS} ${LINK_FLAGS}")
run(c++ ${extra_flags} ${SOURCE_DIR}/tests/consumer/main.cpp ${pc_flags} -o ${WORK_DIR}/consumer-pc)
run(${WORK_DIR}/consumer-pc)
if(NOT last_output MATCHES "consumer ok")
  message(FATAL_ERROR "the pkg-config consumer did not report success: ${last_output}")
endif()

# 3. An application built with AddressSanitizer against this library built without it: the pools'
#    poisoning must not differ between the two (it lives in the library only).
if(NOT CXX_FLAGS MATCHES "-fsanitize")
  run(c++ -std=c++20 -g -O1 -fsanitize=address -fno-omit-frame-pointer ${SOURCE_DIR}/tests/consumer/asan_app.cpp
      ${pc_flags} -o ${WORK_DIR}/asan-app)
  run(${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 ${WORK_DIR}/asan-app ${WORK_DIR}/scratch)
  if(NOT last_output MATCHES "asan app ok")
    message(FATAL_ERROR "the AddressSanitizer application did not report success: ${last_output}")
  endif()
endif()
message(STATUS "find_package and pkg-config consumers: ok")
