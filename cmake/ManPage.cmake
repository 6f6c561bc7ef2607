# Writes voidrecon(1) from the binary's own help: the top-level --help and --version through
# help2man, and each command's --help (the commands listed under "Commands:") in a section of
# their own, through a help2man include file written here; then gzips it for installing.
#   cmake -DVOIDRECON=<binary> -DHELP2MAN=<help2man> -DINCLUDE=<extra .h2m> -DOUTPUT=<dir>/voidrecon.1.gz
#         -P ManPage.cmake
foreach(var VOIDRECON HELP2MAN INCLUDE OUTPUT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "ManPage.cmake: -D${var}= is required")
  endif()
endforeach()

# roff reads a backslash as an escape and a line that starts with . or ' as a request.
function(vr_roff_literal text out)
  string(REPLACE "\\" "\\e" text "${text}")
  string(REGEX REPLACE "(^|\n)([.'])" "\\1\\\\&\\2" text "${text}")
  set(${out} "${text}" PARENT_SCOPE)
endfunction()

execute_process(COMMAND ${VOIDRECON} --help OUTPUT_VARIABLE usage RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "ManPage.cmake: ${VOIDRECON} --help failed (${rc})")
endif()
string(REGEX MATCH "\nCommands:\n.*" listing "${usage}")
string(REGEX MATCHALL "\n  [a-z][a-z-]* " names "${listing}")

get_filename_component(workdir ${OUTPUT} DIRECTORY)
set(commands "")
foreach(name ${names})
  string(STRIP "${name}" name)
  if(name STREQUAL "help" OR name STREQUAL "version")
    continue()
  endif()
  execute_process(COMMAND ${VOIDRECON} ${name} --help OUTPUT_VARIABLE text RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "ManPage.cmake: ${VOIDRECON} ${name} --help failed (${rc})")
  endif()
  vr_roff_literal("${text}" text)
  string(APPEND commands ".SS \"voidrecon ${name}\"\n.nf\n${text}.fi\n")
endforeach()
if(commands STREQUAL "")
  message(FATAL_ERROR "ManPage.cmake: no command found under \"Commands:\" in --help")
endif()

file(READ ${INCLUDE} extra)
file(WRITE ${workdir}/voidrecon.h2m "[COMMANDS IN DETAIL]\n${commands}\n${extra}")
execute_process(
  COMMAND ${HELP2MAN} --no-info --section=1 "--name=receive airline void webhooks and reconcile void cases"
          --include=${workdir}/voidrecon.h2m --output=${workdir}/voidrecon.1 ${VOIDRECON}
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "ManPage.cmake: help2man failed (${rc})")
endif()
# -n: no name or time stamp inside, so that the same page compresses to the same bytes; -k
# keeps voidrecon.1 for man -l.
execute_process(COMMAND gzip -9nkf ${workdir}/voidrecon.1 RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "ManPage.cmake: gzip failed (${rc})")
endif()
