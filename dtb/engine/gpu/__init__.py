"""The GPU backend: CuPy and the CUDA kernels (``*.cu`` of dtb.kernels), or their host build
for tests without a GPU (``gpu-emulated``); device binding, memory estimates and checks."""
