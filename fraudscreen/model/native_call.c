/* A CPython callable around a TL2cgen `predict` function pointer.
 *
 * ctypes spends ~1.5 µs per call converting the row and arguments; this does the same
 * work in C for a few hundred ns: read the row (a list or tuple of floats), write a NaN as
 * the all-ones "missing" pattern TL2cgen expects, zero the output, check the width, call.
 * The row buffer is on the stack, so concurrent calls from several threads are safe.
 * `rows` scores a whole batch in one call (ScreenBatch). Built by fraudscreen.model.compile;
 * ctypes remains the fallback.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_WIDTH 4096

typedef void (*predict_fn)(void *data, int pred_margin, double *result);

typedef struct {
    PyObject_HEAD
    predict_fn fn;
    Py_ssize_t width;
} Scorer;

static int Scorer_init(Scorer *self, PyObject *args, PyObject *kwds) {
    unsigned long long address = 0;
    Py_ssize_t width = 0;
    if (!PyArg_ParseTuple(args, "Kn", &address, &width)) return -1;
    if (address == 0 || width <= 0 || width > MAX_WIDTH) {
        PyErr_SetString(PyExc_ValueError, "need a predict function address and 0 < width <= 4096");
        return -1;
    }
    self->fn = (predict_fn)(uintptr_t)address;
    self->width = width;
    return 0;
}

/* Copy one row into `buffer` (NaN -> TL2cgen's all-ones missing); -1 with an exception set. */
static int fill_row(Scorer *self, PyObject *row, double *buffer) {
    PyObject *seq = PySequence_Fast(row, "the row must be a list or tuple of floats");
    if (seq == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n != self->width) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "row has %zd values, the model takes %zd", n, self->width);
        return -1;
    }
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < n; ++i) {
        double value = PyFloat_AsDouble(items[i]);
        if (value == -1.0 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return -1;
        }
        if (isnan(value)) {
            memset(&buffer[i], 0xff, sizeof(double)); /* TL2cgen's missing: all bits set */
        } else {
            buffer[i] = value;
        }
    }
    Py_DECREF(seq);
    return 0;
}

static PyObject *Scorer_call(Scorer *self, PyObject *args, PyObject *kwds) {
    PyObject *row = NULL;
    if (!PyArg_ParseTuple(args, "O", &row)) return NULL;
    double buffer[MAX_WIDTH];
    if (fill_row(self, row, buffer) < 0) return NULL;
    double out = 0.0; /* predict adds into its output */
    self->fn(buffer, 0, &out);
    return PyFloat_FromDouble(out);
}

/* rows(list of rows) -> list of probabilities: one Python call for a whole batch. */
static PyObject *Scorer_rows(Scorer *self, PyObject *rows) {
    PyObject *seq = PySequence_Fast(rows, "rows must be a list or tuple of rows");
    if (seq == NULL) return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    PyObject *scores = PyList_New(count);
    if (scores == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    double buffer[MAX_WIDTH];
    for (Py_ssize_t r = 0; r < count; ++r) {
        if (fill_row(self, items[r], buffer) < 0) {
            Py_DECREF(scores);
            Py_DECREF(seq);
            return NULL;
        }
        double out = 0.0;
        self->fn(buffer, 0, &out);
        PyObject *score = PyFloat_FromDouble(out);
        if (score == NULL) {
            Py_DECREF(scores);
            Py_DECREF(seq);
            return NULL;
        }
        PyList_SET_ITEM(scores, r, score);
    }
    Py_DECREF(seq);
    return scores;
}

static PyMethodDef Scorer_methods[] = {
    {"rows", (PyCFunction)Scorer_rows, METH_O, "rows(list of rows) -> list of probabilities"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ScorerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "_fraudscreen_native.Scorer",
    .tp_basicsize = sizeof(Scorer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Scorer_init,
    .tp_call = (ternaryfunc)Scorer_call,
    .tp_methods = Scorer_methods,
    .tp_doc = "Scorer(predict_address, width)(row) -> probability",
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fraudscreen_native", "Fast calls into TL2cgen predict.", -1, NULL,
};

PyMODINIT_FUNC PyInit__fraudscreen_native(void) {
    if (PyType_Ready(&ScorerType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&ScorerType);
    if (PyModule_AddObject(m, "Scorer", (PyObject *)&ScorerType) < 0) {
        Py_DECREF(&ScorerType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
