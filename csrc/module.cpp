// The Python module tconv._C. It holds no Python functions: importing it loads the shared library,
// whose static initialisers register the tconv operators with the dispatcher (torch.ops.tconv.*).
#include <Python.h>

extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
