// Programmatic dependent launch (PDL, sm_90): a kernel launched with
// cudaLaunchAttributeProgrammaticStreamSerialization (common/pdl_launch.h) may start while
// the previous kernel of its stream is still running. It must call grid_dependency_wait()
// before it reads anything the previous kernel wrote (or writes anything it reads); without
// the launch attribute both instructions are no-ops. One instruction per function.
#pragma once

namespace nvfp4moe::kernels::ptx {

// Block until the previous grid of the stream has completed and its writes are visible.
__device__ __forceinline__ void grid_dependency_wait() { asm volatile("griddepcontrol.wait;\n" ::: "memory"); }

// Allow the next grid of the stream to be launched now (its CTAs fill free SM slots and wait
// in grid_dependency_wait); called early, it hides the next kernel's launch latency.
__device__ __forceinline__ void launch_dependents() { asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory"); }

// The usual prologue of a PDL kernel: let the next kernel launch, then wait for the previous.
__device__ __forceinline__ void pdl_prologue() {
  launch_dependents();
  grid_dependency_wait();
}

// The prologue of a kernel whose successor reads, before its own wait, what the kernels
// before this one wrote (the grouped decode GEMM's early L2 prefetch reads the routing
// offsets): wait first, then let the next kernel launch, so everything before this kernel is
// complete when the next one starts. Costs nothing where this kernel runs longer than a launch.
__device__ __forceinline__ void pdl_prologue_ordered() {
  grid_dependency_wait();
  launch_dependents();
}

}  // namespace nvfp4moe::kernels::ptx
