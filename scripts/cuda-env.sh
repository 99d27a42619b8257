#!/usr/bin/env bash
# Source this before any `cargo build|check --features cuda` of pno-cli on a machine that reaches
# only crates.io and the Debian mirrors (CI, this project's development machines):
#   source scripts/cuda-env.sh && cargo check --locked -p pno-cli --features cuda
#
# burn 0.22.1's `cuda` backend (cubecl-cuda 0.11) compiles its kernels to PTX at run time with an
# embedded LLVM. That LLVM comes from `tracel-llvm-bundler`, whose build script downloads an LLVM
# 23 bundle from GitHub unless one is installed under $XDG_DATA_HOME/tracel/. This script makes
# Debian's LLVM 22 look like that installed bundle (docs/cuda.md explains every step):
#   1. installs llvm-22-dev, libpolly-22-dev and libzstd-dev when missing (apt; root or sudo);
#   2. builds $XDG_DATA_HOME/tracel/tracel-llvm-23.1.0-4/ from symlinks to /usr/lib/llvm-22, an
#      llvm-config wrapper that drops Debian's absolute libz3 path (the bundler would turn it into
#      a bogus `-llibz3`), and the sentinel file that tells the bundler the bundle is installed;
#   3. exports XDG_DATA_HOME (keep it exported for every later CUDA build in this shell).
# Idempotent. Returns non-zero, with a message, when a step fails. Building needs no CUDA toolkit
# and no GPU; running needs the NVIDIA driver (libcuda.so.1).
pno_cuda_env() {
  local llvm=/usr/lib/llvm-22 bundle sudo=""
  if [ ! -x "$llvm/bin/llvm-config" ] || ! dpkg -s libpolly-22-dev libzstd-dev >/dev/null 2>&1; then
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    echo "cuda-env: installing llvm-22-dev libpolly-22-dev libzstd-dev" >&2
    $sudo apt-get update -qq >/dev/null &&
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        llvm-22-dev libpolly-22-dev libzstd-dev >/dev/null || {
      echo "cuda-env: apt could not install LLVM 22 (needs Debian 12 security updates or newer)" >&2
      return 1
    }
  fi
  export XDG_DATA_HOME="${PNO_LLVM_BUNDLE_HOME:-$HOME/.cache/pno-llvm-bundle}"
  bundle="$XDG_DATA_HOME/tracel/tracel-llvm-23.1.0-4"
  mkdir -p "$bundle/bin" || return 1
  ln -sfn "$llvm/lib" "$bundle/lib" && ln -sfn "$llvm/include" "$bundle/include" || return 1
  printf '%s\n' '#!/bin/sh' \
    '# Debian LLVM 22 standing in for the tracel LLVM bundle (scripts/cuda-env.sh).' \
    "$llvm/bin/llvm-config \"\$@\" | sed -e 's#/usr/lib/x86_64-linux-gnu/libz3.so##g'" \
    >"$bundle/bin/llvm-config" && chmod +x "$bundle/bin/llvm-config" || return 1
  : >"$bundle/.tracel-llvm-installed"
  echo "cuda-env: LLVM 22 stands in for the bundle at $bundle" >&2
}
pno_cuda_env
