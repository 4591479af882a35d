# ctest script: compile the GEMM launchers (every wgmma kernel instantiation) for sm_90a with
# ptxas' verbose report and fail if ptxas serializes any wgmma (C7510..C7515 "Potential
# Performance Loss: wgmma.mma_async instructions are serialized"). A serialized RS wgmma waits
# for completion after every MMA, which cost the 4-warpgroup kernel ~5-20% in docs/GEMM.md v8,
# silently: the results stay exact. Runs on the CI machine (no GPU needed).
#   cmake -DNVCC=... -DSOURCE_DIR=... -P check_wgmma_serialization.cmake
execute_process(
  COMMAND ${NVCC} -cubin -gencode=arch=compute_90a,code=sm_90a -std=c++20 -O3 --expt-relaxed-constexpr
          -I${SOURCE_DIR}/include -Xptxas=-v ${SOURCE_DIR}/src/cuda/gemm.cu -o ${CMAKE_CURRENT_BINARY_DIR}/gemm_check.cubin
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "nvcc failed (${rc}):\n${err}")
endif()
string(REGEX MATCHALL "[^\n]*C751[0-9][^\n]*" serialized "${out}\n${err}")
if(serialized)
  string(REPLACE ";" "\n" serialized "${serialized}")
  message(FATAL_ERROR "ptxas serializes wgmma:\n${serialized}")
endif()
string(REGEX MATCHALL "Compiling entry function '[^']*gemm_w4a16_sm90_kernel[^']*'" kernels "${out}\n${err}")
list(LENGTH kernels n)
if(n LESS 7)
  message(FATAL_ERROR "expected the 7 cp.async wgmma kernel instantiations (token tiles 8-128, 128- and 256-row CTAs) in ptxas' report, found ${n}")
endif()
string(REGEX MATCHALL "Compiling entry function '[^']*gemm_w4a16_ws_sm90_kernel[^']*'" ws_kernels "${out}\n${err}")
list(LENGTH ws_kernels n_ws)
if(n_ws LESS 5)
  message(FATAL_ERROR "expected the 5 warp-specialized kernel instantiations (token tiles 64, 128, 160 in MMA width steps of 32, 160 in steps of 16, 64 on 4 consumer warpgroups) in ptxas' report, found ${n_ws}")
endif()
message(STATUS "wgmma not serialized in ${n} wgmma and ${n_ws} warp-specialized kernel instantiations")
