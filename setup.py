"""Builds tconv._C: the CPU kernels always, the CUDA kernels when torch has CUDA and nvcc is present."""
import glob
import os

from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
import torch

ROOT = os.path.dirname(os.path.abspath(__file__))


def _with_cuda():
    if os.environ.get("FORCE_CUDA", "0") == "1":
        return True
    return torch.version.cuda is not None and CUDA_HOME is not None


SANITIZE = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]


def _sanitize():
    """TCONV_SANITIZE=1: an ASan/UBSan debug build (scripts/sanitize.sh)."""
    return os.environ.get("TCONV_SANITIZE", "0") == "1"


def _cxx_flags():
    # No -march: the build runs on any CPU of its architecture. The CPU kernels are compiled once
    # per instruction set (csrc/cpu/capability/: baseline, AVX2, AVX-512 on x86-64) and the best
    # one the CPU has is chosen at run time (csrc/cpu/dispatch.cpp).
    return ["-O1", "-g", "-std=c++17", "-fopenmp", *SANITIZE] if _sanitize() else ["-O3", "-std=c++17", "-fopenmp"]


def _extension():
    # The kernel sources csrc/cpu/<op>.cpp are compiled through csrc/cpu/capability/, once per CPU
    # capability; dispatch.cpp registers them. csrc/*.cpp (schemas, autograd, autocast) serve every
    # device.
    sources = sorted(glob.glob("csrc/*.cpp") + ["csrc/cpu/dispatch.cpp"]
                     + glob.glob("csrc/cpu/capability/*.cpp"))
    include_dirs = [os.path.join(ROOT, "csrc")]
    if _with_cuda():
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        # -lineinfo: source lines in profiles (Nsight Compute) at no runtime cost.
        nvcc = ["-O3", "-std=c++17", "--expt-relaxed-constexpr", "-lineinfo"]
        # sm_80 and sm_90 by default; TORCH_CUDA_ARCH_LIST (e.g. "9.0") lets torch choose instead,
        # which it does only when no arch flags are given here.
        if not os.environ.get("TORCH_CUDA_ARCH_LIST"):
            nvcc += ["-gencode=arch=compute_80,code=sm_80", "-gencode=arch=compute_90,code=sm_90"]
        return CUDAExtension("tconv._C", sources, include_dirs=include_dirs,
                             define_macros=[("TCONV_WITH_CUDA", None)],
                             extra_compile_args={"cxx": _cxx_flags(), "nvcc": nvcc},
                             extra_link_args=["-fopenmp"])
    return CppExtension("tconv._C", sources, include_dirs=include_dirs,
                        extra_compile_args={"cxx": _cxx_flags()},
                        extra_link_args=["-fopenmp"] + (SANITIZE if _sanitize() else []))


setup(
    packages=find_packages(include=["tconv", "tconv.*"]),
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
