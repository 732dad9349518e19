// The Python module tconv._C. Importing it loads the shared library, whose static initialisers
// register the tconv operators with the dispatcher (torch.ops.tconv.*). Its only Python functions
// manage the CPU output cache (cpu/output_alloc.h), which is not an operator, and name the CPU
// kernels' build that runs (cpu/dispatch.h).
#include <Python.h>

#include "cpu/dispatch.h"
#include "cpu/output_alloc.h"

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

PyObject* cpu_capability(PyObject*, PyObject*) {
  return PyUnicode_FromString(tconv::cpu::cpu_capability_name());
}

PyMethodDef methods[] = {
    {"_cpu_capability", cpu_capability, METH_NOARGS,
     "The build of the CPU kernels that runs: 'default', 'avx2' or 'avx512'."},
    {"_empty_cache", empty_cache, METH_NOARGS, "Free the cached CPU output buffers; returns the bytes freed."},
    {"_cached_bytes", cached_bytes, METH_NOARGS, "Bytes held by the CPU output cache."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, methods};
  return PyModule_Create(&module_def);
}
