{
  # Paths to libtorch come from scripts/libtorch-paths.cjs: Debian's libtorch-dev by default,
  # or the libtorch named by $LIBTORCH (e.g. the one inside a PyTorch installation, for CUDA).
  "targets": [
    {
      "target_name": "crossmax_native",
      "sources": [
        "src/addon.cc",
        "src/tensor_handle.cc",
        "src/dispatch.cc",
        "src/autograd.cc",
        "src/runtime.cc",
        "src/cpu_allocator.cc",
        "src/distributed.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(node ../scripts/libtorch-paths.cjs include)"
      ],
      "libraries": ["<!@(node ../scripts/libtorch-paths.cjs libs)"],
      "ldflags": ["<!@(node ../scripts/libtorch-paths.cjs ldflags)"],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "<!@(node ../scripts/libtorch-paths.cjs defines)"
      ],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++14"],
      "cflags_cc": ["<!@(node ../scripts/libtorch-paths.cjs cxxflags)", "-fexceptions", "-frtti", "-O2", "-Wno-unused-parameter", "-Wno-deprecated-declarations"]
    }
  ]
}
