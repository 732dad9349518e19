// The Python module tconv._C. Importing it loads the shared library, whose static initialisers
// register the tconv operators with the dispatcher (torch.ops.tconv.*). Its only Python functions
// manage the CPU output cache (cpu/output_alloc.h), which is not an operator, name the CPU
// kernels' build that runs (cpu/dispatch.h) and, in a CUDA build, count the CUDA upsampling
// table cache (cuda/upsample_device_tables.h).
#include <Python.h>

#include "cpu/dispatch.h"
#include "cpu/output_alloc.h"
#ifdef TCONV_WITH_CUDA
#include "cuda/table_cache_stats.h"
#endif

namespace {

PyObject* empty_cache(PyObject*, PyObject*) {
  size_t released = 0;
  Py_BEGIN_ALLOW_THREADS  // free() of large blocks can take a while
  released = tconv::cpu::huge_page_allocator().empty_cache();
  Py_END_ALLOW_THREADS
  return PyLong_FromSize_t(released);
}

PyObject* cached_bytes(PyObject*, PyObject*) {
  return PyLong_FromSize_t(tconv::cpu::huge_page_allocator().cached_bytes());
}

PyObject* set_cache_limit(PyObject*, PyObject* arg) {
  const unsigned long long bytes = PyLong_AsUnsignedLongLong(arg);
  if (PyErr_Occurred()) return nullptr;
  Py_BEGIN_ALLOW_THREADS
  tconv::cpu::huge_page_allocator().set_limit(size_t(bytes));
  Py_END_ALLOW_THREADS
  Py_RETURN_NONE;
}

PyObject* cache_stats(PyObject*, PyObject*) {
  const tconv::cpu::OutputCacheStats s = tconv::cpu::huge_page_allocator().stats();
  return Py_BuildValue("{s:K,s:K,s:K,s:K,s:K,s:K}", "cached_bytes", (unsigned long long)s.cached_bytes,
                       "peak_cached_bytes", (unsigned long long)s.peak_cached_bytes, "limit_bytes",
                       (unsigned long long)s.limit_bytes, "hits", (unsigned long long)s.hits, "misses",
                       (unsigned long long)s.misses, "evictions", (unsigned long long)s.evictions);
}

PyObject* reset_peak(PyObject*, PyObject*) {
  tconv::cpu::huge_page_allocator().reset_peak();
  Py_RETURN_NONE;
}

PyObject* cpu_capability(PyObject*, PyObject*) {
  return PyUnicode_FromString(tconv::cpu::cpu_capability_name());
}

#ifdef TCONV_WITH_CUDA
PyObject* cuda_table_cache_stats(PyObject*, PyObject*) {
  const tconv::cuda::TableCacheStats s = tconv::cuda::upsample_table_cache_stats();
  return Py_BuildValue("{s:L,s:L,s:L,s:L}", "hits", (long long)s.hits, "misses", (long long)s.misses,
                       "entries", (long long)s.entries, "captured_entries", (long long)s.captured_entries);
}
#endif

PyMethodDef methods[] = {
    {"_cpu_capability", cpu_capability, METH_NOARGS,
     "The build of the CPU kernels that runs: 'default', 'avx2' or 'avx512'."},
    {"_empty_cache", empty_cache, METH_NOARGS, "Free the cached CPU output buffers; returns the bytes freed."},
    {"_cached_bytes", cached_bytes, METH_NOARGS, "Bytes held by the CPU output cache."},
    {"_set_cache_limit", set_cache_limit, METH_O, "Cap the CPU output cache (bytes; 0 disables it)."},
    {"_cache_stats", cache_stats, METH_NOARGS, "The CPU output cache's counters."},
    {"_reset_peak", reset_peak, METH_NOARGS, "Restart the peak of cached bytes from now."},
#ifdef TCONV_WITH_CUDA
    {"_cuda_table_cache_stats", cuda_table_cache_stats, METH_NOARGS,
     "Counters of the CUDA upsampling table cache (hits, misses, entries, captured_entries)."},
#endif
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, methods};
  return PyModule_Create(&module_def);
}
