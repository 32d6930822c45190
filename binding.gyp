{
  # node-gyp build of the same sources CMakeLists.txt builds (the fallback node-gyp-build runs
  # at install when no prebuilt binary fits; also what prebuildify drives).
  "targets": [
    {
      "target_name": "sd_native",
      "sources": [ "<!@(node scripts/libtorch.cjs sources)" ],
      "include_dirs": [
        "native/core",
        "native",
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(node scripts/libtorch.cjs include)"
      ],
      "defines": [ "NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED" ],
      "cflags_cc!": [ "-fno-exceptions", "-fno-rtti", "-std=gnu++17" ],
      "cflags_cc": [ "-std=c++17", "-fexceptions", "-frtti", "-O2", "-Wno-unused-parameter", "<!@(node scripts/libtorch.cjs cflags)" ],
      "libraries": [
        "-L<!(node scripts/libtorch.cjs libdir)",
        "-Wl,-rpath,<!(node scripts/libtorch.cjs libdir)",
        "-Wl,--no-as-needed",
        "<!@(node scripts/libtorch.cjs libs)",
        "-Wl,--as-needed"
      ]
    }
  ]
}
