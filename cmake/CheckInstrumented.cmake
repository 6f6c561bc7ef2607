# Fails unless the static library LIBRARY references every symbol prefix of PREFIXES (a
# comma-separated list), i.e. unless it was compiled with the instrumentation those prefixes come
# from: __sanitizer_cov_ for libFuzzer's coverage, __asan_ for AddressSanitizer, __ubsan_ for
# UndefinedBehaviorSanitizer. Run with cmake -DNM=... -DLIBRARY=... -DPREFIXES=... -P.
string(REPLACE "," ";" PREFIXES "${PREFIXES}")
execute_process(COMMAND ${NM} ${LIBRARY} OUTPUT_VARIABLE symbols RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${NM} ${LIBRARY} failed (${rc})")
endif()
foreach(prefix ${PREFIXES})
  string(FIND "${symbols}" " ${prefix}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "${LIBRARY} is not instrumented: no ${prefix}* symbol")
  endif()
endforeach()
message(STATUS "${LIBRARY}: ${PREFIXES} all present")
