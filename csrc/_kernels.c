/*
 * _kernels.c: the one binding between CPython and the fastdecode core.
 *
 * This is the only file that includes Python.h or NumPy headers. Its entry points are private,
 * positional METH_FASTCALL functions called by python/fastdecode/ops.py, which owns keywords,
 * defaults, broadcasting and friendly validation (the fast-histogram split). Here the checks are
 * strict and cheap: exact dtypes, native byte order, alignment, unit inner stride, matching shapes;
 * anything else is a TypeError/ValueError naming the argument, never a copy.
 *
 * Per call: parse -> describe arrays as fd_rows/fd_param/fd_ids -> allocate the workspace the core
 * asks for -> release the GIL above FD_GIL_MINSIZE elements -> one core call -> map the status to
 * an exception -> single exit that frees the workspace (CPython _randommodule.c style).
 *
 * Module state: none. Multi-phase initialisation (PEP 489), as in CPython Modules/_bisectmodule.c.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define NPY_NO_DEPRECATED_API NPY_1_25_API_VERSION
#include <numpy/arrayobject.h>

#include "fastdecode/fd.h"

#include <stdint.h>
#include <string.h>

/* Below this many logits the GIL is kept: releasing it costs more than the kernel. */
#define FD_GIL_MINSIZE 16384
/* Below this many logits a batch stays on one thread: starting a thread costs tens of
 * microseconds, about what 2^18 logits of the fused sampler take. */
#define FD_THREAD_MINSIZE (1 << 18)
/* Kernels that only stream through the row once (argmax, the bitmask) are memory-bound and cost
 * ~0.1 ns per logit, so starting and joining a thread (~11 us here) only pays off for larger
 * batches, and a second thread shares the same memory bandwidth. */
#define FD_THREAD_MINSIZE_LIGHT (1 << 21)
#define FD_MAX_THREADS 64

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define FD_HAVE_PTHREAD 1
#endif

/* ------------------------------------------------------------------------------------------ */
/* argument helpers                                                                            */

static int
check_nargs(const char *fname, Py_ssize_t nargs, Py_ssize_t expected)
{
    if (nargs != expected) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd positional arguments (%zd given)", fname,
                     expected, nargs);
        return -1;
    }
    return 0;
}

/* Scalar conversions that stop at the first failure, so no C API call runs with an exception
 * already set (chain them with ||). */
static int
long_from(PyObject *o, long *out)
{
    *out = PyLong_AsLong(o);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

static int
llong_from(PyObject *o, long long *out)
{
    *out = PyLong_AsLongLong(o);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

static int
double_from(PyObject *o, double *out)
{
    *out = PyFloat_AsDouble(o);
    return *out == -1.0 && PyErr_Occurred() ? -1 : 0;
}

static int
bool_from(PyObject *o, int *out)
{
    *out = PyObject_IsTrue(o);
    return *out < 0 ? -1 : 0;
}

static PyArrayObject *
as_array(PyObject *o, const char *name)
{
    if (!PyArray_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy.ndarray, got %.100s", name,
                     Py_TYPE(o)->tp_name);
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)o;
    if (!PyArray_ISNBO(PyArray_DESCR(a)->byteorder)) {
        PyErr_Format(PyExc_ValueError, "%s must be in native byte order", name);
        return NULL;
    }
    if (!PyArray_ISALIGNED(a)) {
        PyErr_Format(PyExc_ValueError, "%s must be aligned", name);
        return NULL;
    }
    return a;
}

/* A 2-D logits matrix: float32 / float64 / float16, or uint16 holding bfloat16 bits. */
static int
rows_from(PyObject *o, const char *name, int writable, fd_rows *r)
{
    PyArrayObject *a = as_array(o, name);
    if (a == NULL) {
        return -1;
    }
    if (PyArray_NDIM(a) != 2) {
        PyErr_Format(PyExc_ValueError, "%s must be 2-D, got %d-D", name, PyArray_NDIM(a));
        return -1;
    }
    switch (PyArray_TYPE(a)) {
    case NPY_FLOAT32:
        r->dtype = FD_F32;
        break;
    case NPY_FLOAT64:
        r->dtype = FD_F64;
        break;
    case NPY_FLOAT16:
        r->dtype = FD_F16;
        break;
    case NPY_UINT16:
        r->dtype = FD_BF16;
        break;
    default:
        PyErr_Format(PyExc_TypeError,
                     "%s must be float32, float64, float16 or bfloat16 (uint16 bits), got %R",
                     name, (PyObject *)PyArray_DESCR(a));
        return -1;
    }
    if (writable && !PyArray_ISWRITEABLE(a)) {
        PyErr_Format(PyExc_ValueError, "%s is read-only", name);
        return -1;
    }
    npy_intp isz = PyArray_ITEMSIZE(a);
    npy_intp *st = PyArray_STRIDES(a);
    npy_intp *sh = PyArray_DIMS(a);
    if (sh[0] == 0) { /* nothing is read: NumPy may report any strides for an empty array */
        r->data = PyArray_DATA(a);
        r->n_rows = 0;
        r->n_cols = sh[1];
        r->row_stride = sh[1];
        return 0;
    }
    if (sh[1] > 1 && st[1] != isz) {
        PyErr_Format(PyExc_ValueError, "%s must have unit stride along the vocabulary axis", name);
        return -1;
    }
    if (sh[0] > 1 && (st[0] % isz != 0 || st[0] / isz < sh[1])) {
        PyErr_Format(PyExc_ValueError,
                     "%s rows must not overlap and their stride must be a multiple of the item "
                     "size",
                     name);
        return -1;
    }
    if (sh[1] > INT32_MAX) {
        PyErr_Format(PyExc_ValueError, "%s has too many columns", name);
        return -1;
    }
    r->data = PyArray_DATA(a);
    r->n_rows = sh[0];
    r->n_cols = sh[1];
    r->row_stride = sh[0] > 1 ? st[0] / isz : sh[1];
    return 0;
}

/* A contiguous 1-D array of the given type and length (len < 0: any length; *n receives it). */
static const void *
vec_from(PyObject *o, const char *name, int typenum, npy_intp len, npy_intp *n, int writable)
{
    PyArrayObject *a = as_array(o, name);
    if (a == NULL) {
        return NULL;
    }
    if (PyArray_TYPE(a) != typenum || PyArray_NDIM(a) != 1 || !PyArray_IS_C_CONTIGUOUS(a)) {
        PyErr_Format(PyExc_TypeError, "%s must be a contiguous 1-D %s array", name,
                     typenum == NPY_FLOAT64 ? "float64"
                     : typenum == NPY_FLOAT32 ? "float32"
                     : typenum == NPY_INT64 ? "int64"
                     : typenum == NPY_UINT64 ? "uint64"
                                             : "int32");
        return NULL;
    }
    if (len >= 0 && PyArray_DIM(a, 0) != len) {
        PyErr_Format(PyExc_ValueError, "%s must have length %zd, got %zd", name, (Py_ssize_t)len,
                     (Py_ssize_t)PyArray_DIM(a, 0));
        return NULL;
    }
    if (writable && !PyArray_ISWRITEABLE(a)) {
        PyErr_Format(PyExc_ValueError, "%s is read-only", name);
        return NULL;
    }
    if (n) {
        *n = PyArray_DIM(a, 0);
    }
    return PyArray_DATA(a);
}

/* A per-row vector of the given type: length 1 (shared, *stride = 0) or n_rows (*stride = 1). */
static const void *
per_row_from(PyObject *o, const char *name, int typenum, int64_t n_rows, int64_t *stride)
{
    npy_intp n;
    const void *v = vec_from(o, name, typenum, -1, &n, 0);
    if (v == NULL) {
        return NULL;
    }
    if (n != 1 && n != n_rows) {
        PyErr_Format(PyExc_ValueError, "%s must have 1 or %lld values (one per row), got %zd", name,
                     (long long)n_rows, (Py_ssize_t)n);
        return NULL;
    }
    *stride = n == 1 ? 0 : 1;
    return v;
}

/* A per-row float64 parameter: length 1 (shared) or n_rows. */
static int
param_from(PyObject *o, const char *name, int64_t n_rows, fd_param *p)
{
    p->values = per_row_from(o, name, NPY_FLOAT64, n_rows, &p->stride);
    return p->values == NULL ? -1 : 0;
}

/* Optional per-row int64 bounds: None or a length-n_rows array. */
static int
bounds_from(PyObject *o, const char *name, int64_t n_rows, const int64_t **out)
{
    if (o == Py_None) {
        *out = NULL;
        return 0;
    }
    *out = vec_from(o, name, NPY_INT64, n_rows, NULL, 0);
    return *out == NULL ? -1 : 0;
}

static int
ids_from(PyObject *o, PyObject *begin, PyObject *end, int64_t n_rows, fd_ids *ids)
{
    PyArrayObject *a = as_array(o, "input_ids");
    if (a == NULL) {
        return -1;
    }
    if (PyArray_TYPE(a) != NPY_INT64 || PyArray_NDIM(a) != 2) {
        PyErr_SetString(PyExc_TypeError, "input_ids must be a 2-D int64 array");
        return -1;
    }
    if (PyArray_DIM(a, 0) != n_rows) {
        PyErr_Format(PyExc_ValueError, "input_ids has %zd rows but logits has %lld",
                     (Py_ssize_t)PyArray_DIM(a, 0), (long long)n_rows);
        return -1;
    }
    npy_intp *st = PyArray_STRIDES(a);
    if (n_rows > 0 && PyArray_DIM(a, 1) > 1 && st[1] != 8) {
        PyErr_SetString(PyExc_ValueError, "input_ids must have unit stride along the time axis");
        return -1;
    }
    if (n_rows > 0 && st[0] % 8 != 0) {
        PyErr_SetString(PyExc_ValueError, "input_ids row stride must be a multiple of 8 bytes");
        return -1;
    }
    ids->data = PyArray_DATA(a);
    ids->n_rows = PyArray_DIM(a, 0);
    ids->n_cols = PyArray_DIM(a, 1);
    ids->row_stride = n_rows > 0 ? st[0] / 8 : 0;
    if (bounds_from(begin, "begin", n_rows, &ids->begin) < 0 ||
        bounds_from(end, "end", n_rows, &ids->end) < 0) {
        return -1;
    }
    return 0;
}

static void *
ws_alloc(size_t n, void **raw)
{
    *raw = PyMem_RawMalloc(n + 64);
    if (*raw == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    uintptr_t p = ((uintptr_t)*raw + 63) & ~(uintptr_t)63;
    return (void *)p;
}

/* Maps a core status to a Python exception. `what` names the array or argument concerned. */
static void
raise_status(fd_status st, const fd_errinfo *e, const char *fname, const char *ids_name)
{
    switch (st) {
    case FD_ENAN:
        PyErr_Format(PyExc_ValueError, "logits row %lld contains NaN (column %lld)",
                     (long long)e->row, (long long)e->index);
        break;
    case FD_EPOSINF:
        PyErr_Format(PyExc_ValueError, "logits row %lld contains +inf (column %lld)",
                     (long long)e->row, (long long)e->index);
        break;
    case FD_ENOFINITE:
        PyErr_Format(PyExc_ValueError,
                     "logits row %lld has no finite value left to choose a token from",
                     (long long)e->row);
        break;
    case FD_ERANGE:
        if (e->row >= 0) {
            PyErr_Format(PyExc_ValueError,
                         "%s row %lld, position %lld: token id outside [0, vocabulary size)",
                         ids_name, (long long)e->row, (long long)e->index);
        }
        else {
            PyErr_Format(PyExc_ValueError, "%s[%lld]: token id outside [0, vocabulary size)",
                         ids_name, (long long)e->index);
        }
        break;
    case FD_ESHAPE:
        PyErr_Format(PyExc_ValueError, "%s(): inconsistent sizes or bounds (row %lld)", fname,
                     (long long)e->row);
        break;
    default:
        PyErr_Format(PyExc_ValueError, "%s(): parameter out of its domain in row %lld", fname,
                     (long long)e->row);
        break;
    }
}

/* The common tail of an entry point: None on success, else the mapped exception. */
static PyObject *
finish(fd_status st, const fd_errinfo *e, const char *fname, const char *ids_name)
{
    if (st != FD_OK) {
        raise_status(st, e, fname, ids_name);
        return NULL;
    }
    Py_RETURN_NONE;
}

static int
same_shape(const fd_rows *a, const fd_rows *b, const char *bname)
{
    if (a->n_rows != b->n_rows || a->n_cols != b->n_cols) {
        PyErr_Format(PyExc_ValueError, "%s must have the shape of logits", bname);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* the row runner: workspace, GIL release and batch threads for the row-wise kernels          */

/* One row-wise kernel applied to rows [r0, r1) of its arguments (ctx), with its own workspace.
 * Error rows it reports are relative to r0. */
typedef fd_status (*rows_fn)(const void *ctx, int64_t r0, int64_t r1, void *ws, fd_errinfo *e);

typedef struct {
    rows_fn fn;
    const void *ctx;
    int64_t r0, r1;
    void *ws;
    fd_status st;
    fd_errinfo e;
} chunk;

static void
run_chunk(chunk *c)
{
    c->e.row = -1;
    c->e.index = -1;
    c->st = c->fn(c->ctx, c->r0, c->r1, c->ws, &c->e);
    if (c->st != FD_OK && c->e.row >= 0) {
        c->e.row += c->r0;
    }
}

#ifdef FD_HAVE_PTHREAD
static void *
chunk_main(void *arg)
{
    run_chunk((chunk *)arg);
    return NULL;
}
#endif

static fd_rows
sub_rows(const fd_rows *x, int64_t r0, int64_t r1)
{
    static const size_t isz[4] = {4, 8, 2, 2}; /* FD_F32, FD_F64, FD_F16, FD_BF16 */
    fd_rows s = *x;
    s.data = (char *)x->data + (size_t)(r0 * x->row_stride) * isz[x->dtype];
    s.n_rows = r1 - r0;
    return s;
}

static fd_param
sub_param(fd_param p, int64_t r0)
{
    p.values += r0 * p.stride;
    return p;
}

/* Whether two matrices share any byte. */
static int
overlaps(const fd_rows *a, const fd_rows *b)
{
    static const size_t isz[4] = {4, 8, 2, 2};
    if (a->n_rows == 0 || a->n_cols == 0 || b->n_rows == 0 || b->n_cols == 0) {
        return 0;
    }
    const char *a0 = a->data, *b0 = b->data;
    const char *a1 = a0 + (size_t)((a->n_rows - 1) * a->row_stride + a->n_cols) * isz[a->dtype];
    const char *b1 = b0 + (size_t)((b->n_rows - 1) * b->row_stride + b->n_cols) * isz[b->dtype];
    return a0 < b1 && b0 < a1;
}

/* For a call that writes over its own input: rejects NaN / +inf anywhere in x before a single
 * row is written, so an error leaves the caller's array as it was. Returns -1 with the
 * exception set. */
static int
precheck_in_place(const fd_rows *x, const fd_rows *out, const char *fname)
{
    if (!overlaps(x, out)) {
        return 0;
    }
    fd_errinfo e = {-1, -1};
    fd_status st = fd_check_rows(x, &e);
    if (st != FD_OK) {
        raise_status(st, &e, fname, "ids");
        return -1;
    }
    return 0;
}

/* Runs fn over all rows: in the calling thread for small batches, else split into up to
 * n_threads contiguous chunks of rows, one workspace each, the GIL released throughout. Rows are
 * independent, so the result is the same whatever the split; the error reported is that of the
 * lowest failing row. Returns None or NULL with the exception set. */
static PyObject *
run_rows_min(rows_fn fn, const void *ctx, int64_t n_rows, int64_t n_cols, size_t ws_size,
             long n_threads, const char *fname, int64_t min_size)
{
    int64_t size = n_rows * n_cols;
    int64_t nt = 1;
#ifdef FD_HAVE_PTHREAD
    if (n_threads > 1 && n_rows > 1 && size >= min_size) {
        nt = n_threads < n_rows ? n_threads : n_rows;
        nt = nt < FD_MAX_THREADS ? nt : FD_MAX_THREADS;
    }
#else
    (void)n_threads;
#endif
    size_t stride = (ws_size + 63) & ~(size_t)63;
    void *raw = NULL;
    char *ws = ws_alloc(stride * (size_t)nt, &raw);
    if (ws == NULL) {
        return NULL;
    }
    chunk chunks[FD_MAX_THREADS];
    int64_t per = (n_rows + nt - 1) / nt;
    for (int64_t t = 0; t < nt; t++) {
        chunks[t].fn = fn;
        chunks[t].ctx = ctx;
        chunks[t].r0 = t * per < n_rows ? t * per : n_rows;
        chunks[t].r1 = (t + 1) * per < n_rows ? (t + 1) * per : n_rows;
        chunks[t].ws = ws + stride * (size_t)t;
    }
    PyThreadState *save = size >= FD_GIL_MINSIZE ? PyEval_SaveThread() : NULL;
#ifdef FD_HAVE_PTHREAD
    pthread_t tid[FD_MAX_THREADS];
    int started[FD_MAX_THREADS] = {0};
    for (int64_t t = 1; t < nt; t++) {
        started[t] = pthread_create(&tid[t], NULL, chunk_main, &chunks[t]) == 0;
    }
    run_chunk(&chunks[0]);
    for (int64_t t = 1; t < nt; t++) {
        if (started[t]) {
            pthread_join(tid[t], NULL);
        }
        else {
            run_chunk(&chunks[t]); /* no thread to be had: do it here */
        }
    }
#else
    run_chunk(&chunks[0]);
#endif
    if (save) {
        PyEval_RestoreThread(save);
    }
    PyMem_RawFree(raw);
    for (int64_t t = 0; t < nt; t++) {
        if (chunks[t].st != FD_OK) {
            return finish(chunks[t].st, &chunks[t].e, fname, "ids");
        }
    }
    Py_RETURN_NONE;
}

static PyObject *
run_rows(rows_fn fn, const void *ctx, int64_t n_rows, int64_t n_cols, size_t ws_size,
         long n_threads, const char *fname)
{
    return run_rows_min(fn, ctx, n_rows, n_cols, ws_size, n_threads, fname, FD_THREAD_MINSIZE);
}

/* ------------------------------------------------------------------------------------------ */
/* entry points                                                                                */

/* filter(kind, x, out, param, min_keep, filter_value) */
typedef struct {
    fd_filter_kind kind;
    fd_rows x, out;
    fd_param param, min_keep;
    double fv;
} filter_ctx;

static fd_status
filter_rows(const void *p, int64_t r0, int64_t r1, void *ws, fd_errinfo *e)
{
    const filter_ctx *c = p;
    fd_rows x = sub_rows(&c->x, r0, r1), out = sub_rows(&c->out, r0, r1);
    return fd_filter(c->kind, &x, &out, sub_param(c->param, r0), sub_param(c->min_keep, r0), c->fv,
                     ws, e);
}

static PyObject *
k_filter(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    filter_ctx c;
    if (check_nargs("filter", nargs, 7) < 0) {
        return NULL;
    }
    long kind = PyLong_AsLong(args[0]);
    if (kind == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (kind < FD_FILTER_TOP_K || kind > FD_FILTER_TOP_N_SIGMA) {
        PyErr_SetString(PyExc_ValueError, "unknown filter kind");
        return NULL;
    }
    c.kind = (fd_filter_kind)kind;
    long nt;
    if (double_from(args[5], &c.fv) < 0 || long_from(args[6], &nt) < 0) {
        return NULL;
    }
    if (rows_from(args[1], "logits", 0, &c.x) < 0 || rows_from(args[2], "out", 1, &c.out) < 0 ||
        same_shape(&c.x, &c.out, "out") < 0 ||
        param_from(args[3], "param", c.x.n_rows, &c.param) < 0 ||
        param_from(args[4], "min_tokens_to_keep", c.x.n_rows, &c.min_keep) < 0) {
        return NULL;
    }
    if (c.x.dtype != c.out.dtype) {
        PyErr_SetString(PyExc_TypeError, "out must have the dtype of logits");
        return NULL;
    }
    if (precheck_in_place(&c.x, &c.out, "filter") < 0) {
        return NULL;
    }
    return run_rows(filter_rows, &c, c.x.n_rows, c.x.n_cols, fd_filter_workspace(c.x.n_cols), nt,
                    "filter");
}

/* softmax(x, out, temperature, log) */
typedef struct {
    fd_rows x, out;
    fd_param t;
    int log;
} softmax_ctx;

static fd_status
softmax_rows(const void *p, int64_t r0, int64_t r1, void *ws, fd_errinfo *e)
{
    const softmax_ctx *c = p;
    fd_rows x = sub_rows(&c->x, r0, r1), out = sub_rows(&c->out, r0, r1);
    return fd_softmax(&x, &out, sub_param(c->t, r0), c->log, ws, e);
}

static PyObject *
k_softmax(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    softmax_ctx c;
    if (check_nargs("softmax", nargs, 5) < 0) {
        return NULL;
    }
    long nt;
    if (bool_from(args[3], &c.log) < 0 || long_from(args[4], &nt) < 0 ||
        rows_from(args[0], "logits", 0, &c.x) < 0 ||
        rows_from(args[1], "out", 1, &c.out) < 0 || same_shape(&c.x, &c.out, "out") < 0 ||
        param_from(args[2], "temperature", c.x.n_rows, &c.t) < 0) {
        return NULL;
    }
    if (c.out.dtype != FD_F32 && c.out.dtype != FD_F64) {
        PyErr_SetString(PyExc_TypeError, "out must be float32 or float64");
        return NULL;
    }
    if (precheck_in_place(&c.x, &c.out, "softmax") < 0) {
        return NULL;
    }
    return run_rows(softmax_rows, &c, c.x.n_rows, c.x.n_cols, fd_softmax_workspace(c.x.n_cols),
                    nt, "softmax");
}

/* entropy(x, entropy_out or None, varentropy_out or None) */
typedef struct {
    fd_rows x;
    double *h, *v;
} entropy_ctx;

static fd_status
entropy_rows(const void *p, int64_t r0, int64_t r1, void *ws, fd_errinfo *e)
{
    const entropy_ctx *c = p;
    fd_rows x = sub_rows(&c->x, r0, r1);
    return fd_entropy(&x, c->h ? c->h + r0 : NULL, c->v ? c->v + r0 : NULL, ws, e);
}

static PyObject *
k_entropy(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    entropy_ctx c = {.h = NULL, .v = NULL};
    if (check_nargs("entropy", nargs, 4) < 0 || rows_from(args[0], "logits", 0, &c.x) < 0) {
        return NULL;
    }
    long nt = PyLong_AsLong(args[3]);
    if (nt == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (args[1] != Py_None &&
        (c.h = (double *)vec_from(args[1], "entropy", NPY_FLOAT64, c.x.n_rows, NULL, 1)) == NULL) {
        return NULL;
    }
    if (args[2] != Py_None &&
        (c.v = (double *)vec_from(args[2], "varentropy", NPY_FLOAT64, c.x.n_rows, NULL, 1)) ==
            NULL) {
        return NULL;
    }
    return run_rows(entropy_rows, &c, c.x.n_rows, c.x.n_cols, fd_softmax_workspace(c.x.n_cols),
                    nt, "entropy");
}

/* argmax(x, out int64 (B,)) */
typedef struct {
    fd_rows x;
    int64_t *out;
} argmax_ctx;

static fd_status
argmax_rows(const void *p, int64_t r0, int64_t r1, void *ws, fd_errinfo *e)
{
    const argmax_ctx *c = p;
    fd_rows x = sub_rows(&c->x, r0, r1);
    return fd_argmax(&x, c->out + r0, e);
}

static PyObject *
k_argmax(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    argmax_ctx c;
    if (check_nargs("argmax", nargs, 3) < 0 || rows_from(args[0], "logits", 0, &c.x) < 0 ||
        (c.out = (int64_t *)vec_from(args[1], "out", NPY_INT64, c.x.n_rows, NULL, 1)) == NULL) {
        return NULL;
    }
    long nt = PyLong_AsLong(args[2]);
    if (nt == -1 && PyErr_Occurred()) {
        return NULL;
    }
    return run_rows_min(argmax_rows, &c, c.x.n_rows, c.x.n_cols, 0, nt, "argmax",
                        FD_THREAD_MINSIZE_LIGHT);
}

typedef struct {
    fd_rows x;
    fd_sample_params sp;
    fd_rng_args rng;
    int64_t *tokens;
    double *logprob;
} sample_ctx;

static fd_status
sample_rows(const void *p, int64_t r0, int64_t r1, void *ws, fd_errinfo *e)
{
    const sample_ctx *c = p;
    fd_rows x = sub_rows(&c->x, r0, r1);
    fd_sample_params sp = c->sp;
    fd_param *ps[8] = {&sp.temperature, &sp.top_k, &sp.top_p, &sp.min_p,
                       &sp.typical_p,   &sp.epsilon, &sp.eta, &sp.top_n_sigma};
    for (int i = 0; i < 8; i++) {
        *ps[i] = sub_param(*ps[i], r0);
    }
    fd_rng_args rng = c->rng;
    rng.seed += r0 * rng.seed_stride;
    rng.position += r0 * rng.position_stride;
    if (rng.uniform) {
        rng.uniform += r0 * rng.uniform_stride;
    }
    return fd_sample(&x, &sp, &rng, c->tokens + r0, c->logprob ? c->logprob + r0 : NULL, ws, e);
}

/* sample(x, temperature, top_k, top_p, min_p, typical_p, epsilon, eta, top_n_sigma, order,
 *        seeds uint64, positions int64, uniforms float64 or None, tokens_out int64,
 *        logprob_out float64 or None, n_threads) */
static PyObject *
k_sample(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    static const char *const pnames[8] = {"temperature", "top_k",     "top_p",
                                          "min_p",       "typical_p", "epsilon_cutoff",
                                          "eta_cutoff",  "top_n_sigma"};
    sample_ctx c = {.logprob = NULL};
    if (check_nargs("sample", nargs, 16) < 0 || rows_from(args[0], "logits", 0, &c.x) < 0) {
        return NULL;
    }
    int64_t B = c.x.n_rows;
    fd_param *ps[8] = {&c.sp.temperature, &c.sp.top_k, &c.sp.top_p, &c.sp.min_p,
                       &c.sp.typical_p,   &c.sp.epsilon, &c.sp.eta, &c.sp.top_n_sigma};
    for (int i = 0; i < 8; i++) {
        if (param_from(args[1 + i], pnames[i], B, ps[i]) < 0) {
            return NULL;
        }
    }
    long order, nt;
    if (long_from(args[9], &order) < 0 || long_from(args[15], &nt) < 0) {
        return NULL;
    }
    if (order != FD_ORDER_HF && order != FD_ORDER_LLAMA) {
        PyErr_SetString(PyExc_ValueError, "order must be 0 (hf) or 1 (llama.cpp)");
        return NULL;
    }
    c.sp.order = (fd_order)order;
    c.rng.uniform = NULL;
    c.rng.uniform_stride = 0;
    if ((c.rng.seed = per_row_from(args[10], "seed", NPY_UINT64, B, &c.rng.seed_stride)) == NULL ||
        (c.rng.position = per_row_from(args[11], "position", NPY_INT64, B,
                                       &c.rng.position_stride)) == NULL) {
        return NULL;
    }
    if (args[12] != Py_None && (c.rng.uniform = per_row_from(args[12], "uniforms", NPY_FLOAT64, B,
                                                             &c.rng.uniform_stride)) == NULL) {
        return NULL;
    }
    if ((c.tokens = (int64_t *)vec_from(args[13], "out", NPY_INT64, B, NULL, 1)) == NULL) {
        return NULL;
    }
    if (args[14] != Py_None &&
        (c.logprob = (double *)vec_from(args[14], "logprobs", NPY_FLOAT64, B, NULL, 1)) == NULL) {
        return NULL;
    }
    return run_rows(sample_rows, &c, B, c.x.n_cols, fd_sample_workspace(c.x.n_cols), nt, "sample");
}

/* Shared front half of the history-based kernels: x (edited in place), ids, begin, end. */
static int
penalty_args(PyObject *const *args, fd_rows *x, fd_ids *ids)
{
    if (rows_from(args[0], "logits", 1, x) < 0 ||
        ids_from(args[1], args[2], args[3], x->n_rows, ids) < 0) {
        return -1;
    }
    return 0;
}

/* history_penalty(kind, x, ids, begin, end, a, b): the penalties that read token histories,
 * editing x in place. kind 0: repetition (a = penalty); 1: presence/frequency (a = presence,
 * b = frequency); 2: no-repeat n-gram (a = n as an int, b = filter_value as a float). */
static PyObject *
k_history_penalty(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    static const char *const fnames[3] = {"repetition_penalty", "presence_frequency_penalty",
                                          "no_repeat_ngram"};
    PyObject *result = NULL;
    void *raw = NULL;
    fd_rows x;
    fd_ids ids;
    fd_param a, b;
    long long n = 0;
    double fv = 0.0;
    if (check_nargs("history_penalty", nargs, 7) < 0) {
        goto done;
    }
    long kind = PyLong_AsLong(args[0]);
    if (kind == -1 && PyErr_Occurred()) {
        goto done;
    }
    if (kind < 0 || kind > 2) {
        PyErr_SetString(PyExc_ValueError, "unknown history penalty kind");
        goto done;
    }
    if (penalty_args(args + 1, &x, &ids) < 0) {
        goto done;
    }
    if (kind == 0) {
        if (param_from(args[5], "penalty", x.n_rows, &a) < 0) {
            goto done;
        }
    }
    else if (kind == 1) {
        if (param_from(args[5], "presence", x.n_rows, &a) < 0 ||
            param_from(args[6], "frequency", x.n_rows, &b) < 0) {
            goto done;
        }
    }
    else {
        n = PyLong_AsLongLong(args[5]);
        if (n == -1 && PyErr_Occurred()) {
            goto done;
        }
        fv = PyFloat_AsDouble(args[6]);
        if (fv == -1.0 && PyErr_Occurred()) {
            goto done;
        }
    }
    void *ws = ws_alloc(fd_penalty_workspace(x.n_cols), &raw);
    if (ws == NULL) {
        goto done;
    }
    fd_errinfo e = {-1, -1};
    fd_status st = kind == 0   ? fd_repetition_penalty(&x, &ids, a, ws, &e)
                   : kind == 1 ? fd_presence_frequency(&x, &ids, a, b, ws, &e)
                               : fd_no_repeat_ngram(&x, &ids, (int64_t)n, fv, ws, &e);
    result = finish(st, &e, fnames[kind], "input_ids");
done:
    PyMem_RawFree(raw);
    return result;
}

/* logit_bias(x, ids int64 (n,), values float64 (n,) or (B, n) C-contiguous) */
static PyObject *
k_logit_bias(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *result = NULL;
    fd_rows x;
    npy_intp n;
    const int64_t *ids;
    if (check_nargs("logit_bias", nargs, 3) < 0 || rows_from(args[0], "logits", 1, &x) < 0 ||
        (ids = vec_from(args[1], "bias ids", NPY_INT64, -1, &n, 0)) == NULL) {
        goto done;
    }
    PyArrayObject *v = as_array(args[2], "bias values");
    if (v == NULL) {
        goto done;
    }
    if (PyArray_TYPE(v) != NPY_FLOAT64 || !PyArray_IS_C_CONTIGUOUS(v) ||
        !((PyArray_NDIM(v) == 1 && PyArray_DIM(v, 0) == n) ||
          (PyArray_NDIM(v) == 2 && PyArray_DIM(v, 0) == x.n_rows && PyArray_DIM(v, 1) == n))) {
        PyErr_SetString(PyExc_ValueError,
                        "bias values must be float64 of shape (n,) or (batch, n) matching the ids");
        goto done;
    }
    fd_errinfo e = {-1, -1};
    fd_status st = fd_logit_bias(&x, ids, n, PyArray_DATA(v), PyArray_NDIM(v) == 2 ? n : 0, &e);
    result = finish(st, &e, "logit_bias", "bias");
done:
    return result;
}

/* suppress_tokens(x, ids int64 (n,), filter_value) */
static PyObject *
k_suppress_tokens(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *result = NULL;
    fd_rows x;
    npy_intp n;
    const int64_t *ids;
    if (check_nargs("suppress_tokens", nargs, 3) < 0 || rows_from(args[0], "logits", 1, &x) < 0 ||
        (ids = vec_from(args[1], "ids", NPY_INT64, -1, &n, 0)) == NULL) {
        goto done;
    }
    double fv = PyFloat_AsDouble(args[2]);
    if (fv == -1.0 && PyErr_Occurred()) {
        goto done;
    }
    fd_errinfo e = {-1, -1};
    fd_status st = fd_suppress_tokens(&x, ids, n, fv, &e);
    result = finish(st, &e, "suppress_tokens", "ids");
done:
    return result;
}

/* apply_bitmask(x, words int32 (B or 1, W) C-contiguous, filter_value) */
typedef struct {
    fd_rows x;
    const int32_t *words;
    int64_t n_words, row_stride;
    double fv;
} bitmask_ctx;

static fd_status
bitmask_rows(const void *p, int64_t r0, int64_t r1, void *ws, fd_errinfo *e)
{
    const bitmask_ctx *c = p;
    fd_rows x = sub_rows(&c->x, r0, r1);
    return fd_apply_bitmask(&x, c->words + r0 * c->row_stride, c->n_words, c->row_stride, c->fv,
                            e);
}

static PyObject *
k_apply_bitmask(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    bitmask_ctx c;
    if (check_nargs("apply_bitmask", nargs, 4) < 0 || rows_from(args[0], "logits", 1, &c.x) < 0) {
        return NULL;
    }
    PyArrayObject *w = as_array(args[1], "bitmask");
    if (w == NULL) {
        return NULL;
    }
    if (PyArray_TYPE(w) != NPY_INT32 || PyArray_NDIM(w) != 2 || !PyArray_IS_C_CONTIGUOUS(w) ||
        (PyArray_DIM(w, 0) != 1 && PyArray_DIM(w, 0) != c.x.n_rows) ||
        PyArray_DIM(w, 1) < (c.x.n_cols + 31) / 32) {
        PyErr_Format(PyExc_ValueError,
                     "bitmask must be int32 of shape (batch or 1, >= %lld words)",
                     (long long)((c.x.n_cols + 31) / 32));
        return NULL;
    }
    c.words = PyArray_DATA(w);
    c.n_words = PyArray_DIM(w, 1);
    c.row_stride = PyArray_DIM(w, 0) == 1 ? 0 : PyArray_DIM(w, 1);
    long nt;
    if (double_from(args[2], &c.fv) < 0 || long_from(args[3], &nt) < 0) {
        return NULL;
    }
    return run_rows_min(bitmask_rows, &c, c.x.n_rows, c.x.n_cols, 0, nt, "allowed_tokens_bitmask",
                        FD_THREAD_MINSIZE_LIGHT);
}

/* bad_words(x, ids, begin, end, flat int64, offsets int64, filter_value) */
static PyObject *
k_bad_words(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *result = NULL;
    fd_rows x;
    fd_ids ids;
    npy_intp nflat, noff;
    const int64_t *flat, *off;
    if (check_nargs("bad_words", nargs, 7) < 0 || penalty_args(args, &x, &ids) < 0 ||
        (flat = vec_from(args[4], "bad_words_ids", NPY_INT64, -1, &nflat, 0)) == NULL ||
        (off = vec_from(args[5], "bad_words_ids offsets", NPY_INT64, -1, &noff, 0)) == NULL) {
        goto done;
    }
    if (noff < 1 || off[0] != 0 || off[noff - 1] != nflat) {
        PyErr_SetString(PyExc_ValueError, "bad_words_ids offsets are inconsistent");
        goto done;
    }
    for (npy_intp i = 0; i + 1 < noff; i++) {
        if (off[i + 1] <= off[i]) {
            PyErr_SetString(PyExc_ValueError, "bad_words_ids entries must be non-empty");
            goto done;
        }
    }
    double fv = PyFloat_AsDouble(args[6]);
    if (fv == -1.0 && PyErr_Occurred()) {
        goto done;
    }
    fd_errinfo e = {-1, -1};
    fd_status st = fd_bad_words(&x, &ids, flat, off, noff - 1, fv, &e);
    result = finish(st, &e, "bad_words", e.row >= 0 ? "input_ids" : "bad_words_ids");
done:
    return result;
}

/* beam_step(x, scores float32 (B,), k, group_size, normalize, n_threads) -> (scores float32
 * (G, k), rows int64 (G, k), tokens int64 (G, k)). Whole groups go to the row runner's chunks
 * (its "rows" are groups here), so every group is computed by the same code whatever the split. */
typedef struct {
    fd_rows x;
    const float *scores;
    int64_t gs, k;
    int normalize;
    float *s;
    int64_t *rows, *tokens;
} beam_ctx;

static fd_status
beam_groups(const void *p, int64_t g0, int64_t g1, void *ws, fd_errinfo *e)
{
    const beam_ctx *c = p;
    int64_t r0 = g0 * c->gs;
    fd_rows x = sub_rows(&c->x, r0, g1 * c->gs);
    fd_status st = fd_beam_step(&x, c->scores + r0, c->gs, c->k, c->normalize, c->s + g0 * c->k,
                                c->rows + g0 * c->k, c->tokens + g0 * c->k, ws, e);
    if (st != FD_OK) {
        if (e->row >= 0) {
            e->row += r0 - g0; /* run_chunk adds g0, the chunk's first "row" (a group) */
        }
        return st;
    }
    /* the core numbers rows from the chunk's first row: make them rows of x */
    for (int64_t i = g0 * c->k; i < g1 * c->k; i++) {
        c->rows[i] += r0;
    }
    return FD_OK;
}

static PyObject *
k_beam_step(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *result = NULL, *s = NULL, *rows = NULL, *tokens = NULL;
    beam_ctx c;
    if (check_nargs("beam_step", nargs, 6) < 0 || rows_from(args[0], "logits", 0, &c.x) < 0 ||
        (c.scores = vec_from(args[1], "beam_scores", NPY_FLOAT32, c.x.n_rows, NULL, 0)) ==
            NULL) {
        goto done;
    }
    long long k, gs;
    long nt;
    if (llong_from(args[2], &k) < 0 || llong_from(args[3], &gs) < 0 ||
        bool_from(args[4], &c.normalize) < 0 || long_from(args[5], &nt) < 0) {
        goto done;
    }
    if (gs < 1 || c.x.n_rows % gs != 0) {
        PyErr_Format(PyExc_ValueError,
                     "group_size must be >= 1 and divide the %lld rows of logits, got %lld",
                     (long long)c.x.n_rows, gs);
        goto done;
    }
    /* k <= gs * V, written so that it cannot overflow */
    if (k < 1 || c.x.n_cols == 0 || (k - 1) / c.x.n_cols >= gs) {
        PyErr_Format(PyExc_ValueError,
                     "k must be in [1, group_size * V] = [1, %lld * %lld], got %lld", gs,
                     (long long)c.x.n_cols, k);
        goto done;
    }
    /* rejected here, before any logits row is read, so the error does not depend on the split */
    for (int64_t r = 0; r < c.x.n_rows; r++) {
        float b = c.scores[r];
        if (b != b || b == INFINITY) {
            PyErr_Format(PyExc_ValueError, "beam_scores[%lld] is %s (-inf is allowed)",
                         (long long)r, b != b ? "NaN" : "+inf");
            goto done;
        }
    }
    c.gs = gs;
    c.k = k;
    npy_intp dims[2] = {(npy_intp)(c.x.n_rows / gs), (npy_intp)k};
    if ((s = PyArray_SimpleNew(2, dims, NPY_FLOAT32)) == NULL ||
        (rows = PyArray_SimpleNew(2, dims, NPY_INT64)) == NULL ||
        (tokens = PyArray_SimpleNew(2, dims, NPY_INT64)) == NULL) {
        goto done;
    }
    c.s = PyArray_DATA((PyArrayObject *)s);
    c.rows = PyArray_DATA((PyArrayObject *)rows);
    c.tokens = PyArray_DATA((PyArrayObject *)tokens);
    PyObject *ok = run_rows(beam_groups, &c, dims[0], gs * c.x.n_cols,
                            fd_beam_step_workspace(c.x.n_cols, k), nt, "beam_step");
    if (ok == NULL) {
        goto done;
    }
    Py_DECREF(ok);
    result = PyTuple_Pack(3, s, rows, tokens);
done:
    Py_XDECREF(s);
    Py_XDECREF(rows);
    Py_XDECREF(tokens);
    return result;
}

/* uniform(seeds uint64 (n,), positions int64 (n,), draw) -> float64 (n,): the sampler's draws. */
static PyObject *
k_uniform(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    npy_intp n, n2;
    const uint64_t *s;
    const int64_t *p;
    if (check_nargs("uniform", nargs, 3) < 0 ||
        (s = vec_from(args[0], "seed", NPY_UINT64, -1, &n, 0)) == NULL ||
        (p = vec_from(args[1], "position", NPY_INT64, n, &n2, 0)) == NULL) {
        return NULL;
    }
    unsigned long long draw = PyLong_AsUnsignedLongLong(args[2]);
    if (draw == (unsigned long long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *out = PyArray_SimpleNew(1, &n, NPY_FLOAT64);
    if (out == NULL) {
        return NULL;
    }
    double *o = PyArray_DATA((PyArrayObject *)out);
    for (npy_intp i = 0; i < n; i++) {
        o[i] = fd_uniform(s[i], (uint64_t)p[i], draw);
    }
    return out;
}

/* spec_verify(target, draft, tokens, gamma, n_draft, greedy, seed, position, out_accepted,
 *             out_next, n_threads): speculative verification of B = target rows / (gamma + 1)
 * rows. target (B * (gamma + 1), V) and draft (B * gamma, V) or None: processed logits; tokens
 * (B, gamma) int64 (C-contiguous rows); n_draft int64 (B,) or None; greedy uint8 (B,) or None;
 * seed uint64 / position int64 per row (1 or B values). */
typedef struct {
    fd_rows target, draft;
    int has_draft;
    const int64_t *tokens;
    int64_t gamma;
    const int64_t *n_draft;
    const uint8_t *greedy;
    const uint64_t *seed;
    int64_t seed_stride;
    const int64_t *position;
    int64_t position_stride;
    int64_t *acc, *next;
} spec_ctx;

static fd_status
spec_rows(const void *p, int64_t r0, int64_t r1, void *ws, fd_errinfo *e)
{
    const spec_ctx *c = p;
    int64_t G = c->gamma;
    fd_rows t = sub_rows(&c->target, r0 * (G + 1), r1 * (G + 1));
    fd_rows d = sub_rows(&c->draft, r0 * G, r1 * G);
    return fd_spec_verify(&t, c->has_draft ? &d : NULL, c->tokens ? c->tokens + r0 * G : NULL, G,
                          G, c->n_draft ? c->n_draft + r0 : NULL,
                          c->greedy ? c->greedy + r0 : NULL,
                          c->seed ? c->seed + r0 * c->seed_stride : NULL, c->seed_stride,
                          c->position ? c->position + r0 * c->position_stride : NULL,
                          c->position_stride, c->acc + r0, c->next + r0, ws, e);
}

static PyObject *
k_spec_verify(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    spec_ctx c;
    memset(&c, 0, sizeof c);
    long long gamma;
    long nt;
    if (check_nargs("spec_verify", nargs, 11) < 0 ||
        rows_from(args[0], "target_logits", 0, &c.target) < 0 || llong_from(args[3], &gamma) < 0 ||
        long_from(args[10], &nt) < 0) {
        return NULL;
    }
    if (gamma < 0 || c.target.n_rows % (gamma + 1) != 0) {
        PyErr_SetString(PyExc_ValueError, "target_logits must have B * (gamma + 1) rows");
        return NULL;
    }
    c.gamma = gamma;
    int64_t B = c.target.n_rows / (gamma + 1), V = c.target.n_cols;
    if (args[1] != Py_None) {
        if (rows_from(args[1], "draft_logits", 0, &c.draft) < 0) {
            return NULL;
        }
        if (c.draft.n_rows != B * gamma || c.draft.n_cols != V) {
            PyErr_SetString(PyExc_ValueError,
                            "draft_logits must have B * gamma rows of the target's vocabulary");
            return NULL;
        }
        c.has_draft = 1;
    }
    else {
        c.draft = c.target; /* unused */
        c.draft.n_rows = 0;
    }
    PyArrayObject *tk = as_array(args[2], "draft_tokens");
    if (tk == NULL) {
        return NULL;
    }
    if (PyArray_TYPE(tk) != NPY_INT64 || PyArray_NDIM(tk) != 2 || !PyArray_IS_C_CONTIGUOUS(tk) ||
        PyArray_DIM(tk, 0) != B || PyArray_DIM(tk, 1) != gamma) {
        PyErr_SetString(PyExc_ValueError, "draft_tokens must be a C-contiguous (B, gamma) int64 array");
        return NULL;
    }
    c.tokens = B * gamma > 0 ? PyArray_DATA(tk) : NULL;
    if (args[4] != Py_None &&
        (c.n_draft = vec_from(args[4], "num_drafts", NPY_INT64, B, NULL, 0)) == NULL) {
        return NULL;
    }
    if (args[5] != Py_None) {
        PyArrayObject *g = as_array(args[5], "greedy");
        if (g == NULL) {
            return NULL;
        }
        if (PyArray_TYPE(g) != NPY_UINT8 || PyArray_NDIM(g) != 1 || PyArray_DIM(g, 0) != B ||
            !PyArray_IS_C_CONTIGUOUS(g)) {
            PyErr_SetString(PyExc_TypeError, "greedy must be a contiguous (B,) uint8 array");
            return NULL;
        }
        c.greedy = PyArray_DATA(g);
    }
    if (args[6] != Py_None &&
        (c.seed = per_row_from(args[6], "seed", NPY_UINT64, B, &c.seed_stride)) == NULL) {
        return NULL;
    }
    if (args[7] != Py_None &&
        (c.position = per_row_from(args[7], "position", NPY_INT64, B, &c.position_stride)) == NULL) {
        return NULL;
    }
    if ((c.acc = (int64_t *)vec_from(args[8], "out_accepted", NPY_INT64, B, NULL, 1)) == NULL ||
        (c.next = (int64_t *)vec_from(args[9], "out_next", NPY_INT64, B, NULL, 1)) == NULL) {
        return NULL;
    }
    /* threads split the B rows (each reads up to gamma + 1 target rows) */
    PyObject *r = run_rows_min(spec_rows, &c, B, (gamma + 1) * V, fd_spec_verify_workspace(V), nt,
                               "spec_verify", FD_THREAD_MINSIZE);
    if (r != NULL || !PyErr_ExceptionMatches(PyExc_ValueError)) {
        return r;
    }
    /* An error: run again on one thread (errors are deterministic, the first failing row fails
     * first) to name the array, row and draft position at fault. */
    PyErr_Clear();
    void *raw = NULL;
    void *ws = ws_alloc(fd_spec_verify_workspace(V), &raw);
    if (ws == NULL) {
        return NULL;
    }
    fd_errinfo e = {-1, -1};
    fd_status st = spec_rows(&c, 0, B, ws, &e);
    PyMem_RawFree(raw);
    long long b = e.row, i = e.index;
    const char *arr = i > gamma ? "draft_logits" : "target_logits";
    long long pos = i > gamma ? i - gamma - 1 : i;
    switch (st) {
    case FD_OK:
        Py_RETURN_NONE; /* not reached */
    case FD_ENAN:
    case FD_EPOSINF:
        PyErr_Format(PyExc_ValueError, "%s[%lld, %lld] contains %s", arr, b, pos,
                     st == FD_ENAN ? "NaN" : "+inf");
        break;
    case FD_ENOFINITE:
        PyErr_Format(PyExc_ValueError, "%s[%lld, %lld] has no finite value to choose a token from",
                     arr, b, pos);
        break;
    case FD_ERANGE:
        PyErr_Format(PyExc_ValueError,
                     "draft_tokens[%lld, %lld] is outside [0, vocabulary size %lld)", b, i,
                     (long long)V);
        break;
    case FD_EINVAL:
        if (i > gamma) {
            PyErr_Format(PyExc_ValueError,
                         "draft_tokens[%lld, %lld] has probability 0 under draft_logits[%lld, %lld]: "
                         "a drafted token must be drawn from the draft's distribution",
                         b, pos, b, pos);
        }
        else if (c.greedy == NULL || !c.greedy[b]) {
            PyErr_Format(PyExc_ValueError,
                         "num_drafts[%lld] must be in [0, gamma = %lld] (or seed/position missing)",
                         b, gamma);
        }
        else {
            PyErr_Format(PyExc_ValueError, "num_drafts[%lld] must be in [0, gamma = %lld]", b, gamma);
        }
        break;
    default:
        PyErr_Format(PyExc_ValueError, "spec_verify(): inconsistent sizes (row %lld)", b);
        break;
    }
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* stateful samplers: mirostat and entropix (csrc/core/mirostat.c, entropix.c)                 */

typedef struct {
    fd_rows x;
    fd_mirostat_params mp;
    fd_rng_args rng;
    double *mu;
    int64_t *tokens, *kept;
    double *logprob;
} mirostat_ctx;

static fd_status
mirostat_rows(const void *p, int64_t r0, int64_t r1, void *ws, fd_errinfo *e)
{
    const mirostat_ctx *c = p;
    fd_rows x = sub_rows(&c->x, r0, r1);
    fd_mirostat_params mp = c->mp;
    mp.tau = sub_param(mp.tau, r0);
    mp.eta = sub_param(mp.eta, r0);
    mp.temperature = sub_param(mp.temperature, r0);
    fd_rng_args rng = c->rng;
    rng.seed += r0 * rng.seed_stride;
    rng.position += r0 * rng.position_stride;
    if (rng.uniform) {
        rng.uniform += r0 * rng.uniform_stride;
    }
    return fd_mirostat(&x, &mp, &rng, c->mu + r0, c->tokens + r0,
                       c->logprob ? c->logprob + r0 : NULL, c->kept ? c->kept + r0 : NULL, ws, e);
}

/* mirostat(x, tau, eta, temperature, version, m, seeds uint64, positions int64, uniforms float64
 *          or None, mu float64 (B,) in/out, tokens_out int64, logprob_out float64 or None,
 *          kept_out int64 or None, n_threads) */
static PyObject *
k_mirostat(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    mirostat_ctx c = {.logprob = NULL, .kept = NULL};
    long version, nt;
    long long mm;
    if (check_nargs("mirostat", nargs, 14) < 0 || rows_from(args[0], "logits", 0, &c.x) < 0) {
        return NULL;
    }
    int64_t B = c.x.n_rows;
    if (param_from(args[1], "tau", B, &c.mp.tau) < 0 ||
        param_from(args[2], "eta", B, &c.mp.eta) < 0 ||
        param_from(args[3], "temperature", B, &c.mp.temperature) < 0 ||
        long_from(args[4], &version) < 0 || llong_from(args[5], &mm) < 0 ||
        long_from(args[13], &nt) < 0) {
        return NULL;
    }
    if (version != 1 && version != 2) {
        PyErr_Format(PyExc_ValueError, "version must be 1 or 2, got %ld", version);
        return NULL;
    }
    if (mm < 1) {
        PyErr_Format(PyExc_ValueError, "m must be >= 1, got %lld", mm);
        return NULL;
    }
    c.mp.version = (int)version;
    c.mp.m = mm;
    c.rng.uniform = NULL;
    c.rng.uniform_stride = 0;
    if ((c.rng.seed = per_row_from(args[6], "seed", NPY_UINT64, B, &c.rng.seed_stride)) == NULL ||
        (c.rng.position = per_row_from(args[7], "position", NPY_INT64, B,
                                       &c.rng.position_stride)) == NULL) {
        return NULL;
    }
    if (args[8] != Py_None && (c.rng.uniform = per_row_from(args[8], "uniforms", NPY_FLOAT64, B,
                                                            &c.rng.uniform_stride)) == NULL) {
        return NULL;
    }
    if ((c.mu = (double *)vec_from(args[9], "mu", NPY_FLOAT64, B, NULL, 1)) == NULL ||
        (c.tokens = (int64_t *)vec_from(args[10], "out", NPY_INT64, B, NULL, 1)) == NULL) {
        return NULL;
    }
    if (args[11] != Py_None &&
        (c.logprob = (double *)vec_from(args[11], "logprobs", NPY_FLOAT64, B, NULL, 1)) == NULL) {
        return NULL;
    }
    if (args[12] != Py_None &&
        (c.kept = (int64_t *)vec_from(args[12], "kept", NPY_INT64, B, NULL, 1)) == NULL) {
        return NULL;
    }
    return run_rows(mirostat_rows, &c, B, c.x.n_cols, fd_mirostat_workspace(c.x.n_cols), nt,
                    "mirostat");
}

typedef struct {
    fd_rows x;
    fd_entropix_params ep;
    const int64_t *last;
    fd_rng_args rng;
    int64_t *tokens, *branch;
    double *h, *v, *logprob;
} entropix_ctx;

static fd_status
entropix_rows(const void *p, int64_t r0, int64_t r1, void *ws, fd_errinfo *e)
{
    const entropix_ctx *c = p;
    fd_rows x = sub_rows(&c->x, r0, r1);
    fd_rng_args rng = c->rng;
    rng.seed += r0 * rng.seed_stride;
    rng.position += r0 * rng.position_stride;
    return fd_entropix(&x, &c->ep, c->last ? c->last + r0 : NULL, &rng, c->tokens + r0,
                       c->branch + r0, c->h ? c->h + r0 : NULL, c->v ? c->v + r0 : NULL,
                       c->logprob ? c->logprob + r0 : NULL, ws, e);
}

/* entropix(x, params float64 (FD_ENTROPIX_NPARAMS,), last_token int64 (B,) or None, seeds uint64,
 *          positions int64, tokens_out int64, branch_out int64, entropy_out float64 or None,
 *          varentropy_out float64 or None, logprob_out float64 or None, n_threads) */
static PyObject *
k_entropix(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    entropix_ctx c = {.last = NULL, .h = NULL, .v = NULL, .logprob = NULL};
    long nt;
    const double *pv;
    if (check_nargs("entropix", nargs, 11) < 0 || rows_from(args[0], "logits", 0, &c.x) < 0 ||
        (pv = vec_from(args[1], "params", NPY_FLOAT64, FD_ENTROPIX_NPARAMS, NULL, 0)) == NULL ||
        long_from(args[10], &nt) < 0) {
        return NULL;
    }
    int64_t B = c.x.n_rows;
    memcpy(&c.ep, pv, sizeof c.ep);
    if (args[2] != Py_None &&
        (c.last = vec_from(args[2], "last_token", NPY_INT64, B, NULL, 0)) == NULL) {
        return NULL;
    }
    c.rng.uniform = NULL;
    c.rng.uniform_stride = 0;
    if ((c.rng.seed = per_row_from(args[3], "seed", NPY_UINT64, B, &c.rng.seed_stride)) == NULL ||
        (c.rng.position = per_row_from(args[4], "position", NPY_INT64, B,
                                       &c.rng.position_stride)) == NULL ||
        (c.tokens = (int64_t *)vec_from(args[5], "out", NPY_INT64, B, NULL, 1)) == NULL ||
        (c.branch = (int64_t *)vec_from(args[6], "branch", NPY_INT64, B, NULL, 1)) == NULL) {
        return NULL;
    }
    if ((args[7] != Py_None &&
         (c.h = (double *)vec_from(args[7], "entropy", NPY_FLOAT64, B, NULL, 1)) == NULL) ||
        (args[8] != Py_None &&
         (c.v = (double *)vec_from(args[8], "varentropy", NPY_FLOAT64, B, NULL, 1)) == NULL) ||
        (args[9] != Py_None &&
         (c.logprob = (double *)vec_from(args[9], "logprobs", NPY_FLOAT64, B, NULL, 1)) == NULL)) {
        return NULL;
    }
    return run_rows(entropix_rows, &c, B, c.x.n_cols, fd_entropix_workspace(c.x.n_cols), nt,
                    "entropix");
}

/* ------------------------------------------------------------------------------------------ */
/* contrastive decoding and classifier-free guidance                                          */

/* contrastive(expert, amateur, out, alpha, amateur_temperature, beta, use_beta, filter_value,
 * n_threads) and guidance(cond, uncond, out, guidance_scale, normalize, n_threads) */
typedef struct {
    int guidance;
    fd_rows a, b, out;
    fd_param p1, p2, p3;
    int flag;
    double fv;
} pair_ctx;

static fd_status
pair_rows(const void *p, int64_t r0, int64_t r1, void *ws, fd_errinfo *e)
{
    const pair_ctx *c = p;
    fd_rows a = sub_rows(&c->a, r0, r1), b = sub_rows(&c->b, r0, r1);
    fd_rows out = sub_rows(&c->out, r0, r1);
    if (c->guidance) {
        return fd_guidance(&a, &b, &out, sub_param(c->p1, r0), c->flag, ws, e);
    }
    return fd_contrastive(&a, &b, &out, sub_param(c->p1, r0), sub_param(c->p2, r0),
                          sub_param(c->p3, r0), c->flag, c->fv, ws, e);
}

/* The kernels report which input is at fault through the column (>= n_cols: the second input);
 * run_rows words errors for a single `logits` argument, so on failure the batch is re-run here,
 * in this thread, to recover the lowest failing row's details and name the argument. */
static PyObject *
pair_run(pair_ctx *c, long nt, const char *fname, const char *an, const char *bn)
{
    int64_t n = c->a.n_cols;
    size_t wsz = c->guidance ? fd_guidance_workspace(n) : fd_contrastive_workspace(n);
    PyObject *r = run_rows(pair_rows, c, c->a.n_rows, n, wsz, nt, fname);
    if (r != NULL || !PyErr_ExceptionMatches(PyExc_ValueError)) {
        return r;
    }
    PyErr_Clear();
    void *raw = NULL;
    void *ws = ws_alloc(wsz, &raw);
    if (ws == NULL) {
        return NULL;
    }
    fd_errinfo e = {-1, -1};
    fd_status st = pair_rows(c, 0, c->a.n_rows, ws, &e);
    PyMem_RawFree(raw);
    const char *arg = e.index >= n ? bn : an;
    long long col = e.index >= n ? (long long)(e.index - n) : (long long)e.index;
    switch (st) {
    case FD_OK: /* cannot happen: the same rows failed a moment ago */
        PyErr_Format(PyExc_RuntimeError, "%s(): inconsistent failure", fname);
        break;
    case FD_ENAN:
        PyErr_Format(PyExc_ValueError, "%s row %lld contains NaN (column %lld)", arg,
                     (long long)e.row, col);
        break;
    case FD_EPOSINF:
        PyErr_Format(PyExc_ValueError, "%s row %lld contains +inf (column %lld)", arg,
                     (long long)e.row, col);
        break;
    case FD_ENOFINITE:
        PyErr_Format(PyExc_ValueError, "%s row %lld has no finite value", arg, (long long)e.row);
        break;
    case FD_EINVAL:
        if (e.index < 0) {
            PyErr_Format(PyExc_ValueError,
                         c->guidance ? "%s(): guidance_scale is not finite in row %lld"
                                     : "%s(): alpha, amateur_temperature or beta outside its "
                                       "domain, or a score that overflows, in row %lld",
                         fname, (long long)e.row);
        }
        else if (c->guidance) {
            PyErr_Format(PyExc_ValueError,
                         "%s(): the guided score overflows in row %lld, column %lld "
                         "(guidance_scale too large)",
                         fname, (long long)e.row, col);
        }
        else {
            PyErr_Format(PyExc_ValueError,
                         "%s row %lld, column %lld is -inf inside the expert's plausibility head: "
                         "the contrastive score would be +inf",
                         bn, (long long)e.row, col);
        }
        break;
    default:
        raise_status(st, &e, fname, "ids");
        break;
    }
    return NULL;
}

static int
pair_args(PyObject *const *args, const char *an, const char *bn, pair_ctx *c)
{
    if (rows_from(args[0], an, 0, &c->a) < 0 || rows_from(args[1], bn, 0, &c->b) < 0 ||
        rows_from(args[2], "out", 1, &c->out) < 0) {
        return -1;
    }
    if (c->a.n_rows != c->b.n_rows || c->a.n_cols != c->b.n_cols) {
        PyErr_Format(PyExc_ValueError, "%s must have the shape of %s", bn, an);
        return -1;
    }
    if (same_shape(&c->a, &c->out, "out") < 0) {
        return -1;
    }
    if (c->out.dtype != FD_F32 && c->out.dtype != FD_F64) {
        PyErr_SetString(PyExc_TypeError, "out must be float32 or float64");
        return -1;
    }
    return 0;
}

static PyObject *
k_contrastive(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    pair_ctx c;
    long nt;
    memset(&c, 0, sizeof c);
    if (check_nargs("contrastive", nargs, 9) < 0 ||
        pair_args(args, "expert_logits", "amateur_logits", &c) < 0 ||
        param_from(args[3], "alpha", c.a.n_rows, &c.p1) < 0 ||
        param_from(args[4], "amateur_temperature", c.a.n_rows, &c.p2) < 0 ||
        param_from(args[5], "beta", c.a.n_rows, &c.p3) < 0 || bool_from(args[6], &c.flag) < 0 ||
        double_from(args[7], &c.fv) < 0 || long_from(args[8], &nt) < 0) {
        return NULL;
    }
    return pair_run(&c, nt, "contrastive_logits", "expert_logits", "amateur_logits");
}

static PyObject *
k_guidance(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    pair_ctx c;
    long nt;
    memset(&c, 0, sizeof c);
    c.guidance = 1;
    if (check_nargs("guidance", nargs, 6) < 0 ||
        pair_args(args, "cond_logits", "uncond_logits", &c) < 0 ||
        param_from(args[3], "guidance_scale", c.a.n_rows, &c.p1) < 0 ||
        bool_from(args[4], &c.flag) < 0 || long_from(args[5], &nt) < 0) {
        return NULL;
    }
    return pair_run(&c, nt, "guidance_logits", "cond_logits", "uncond_logits");
}

/* _floor(x, kind, out float64 (B,), n_threads): the benchmark suite's calibration floors
 * (fd_floor; hidden, not part of the public API). Split over threads like softmax. */
typedef struct {
    fd_rows x;
    int kind;
    double *out;
} floor_ctx;

static fd_status
floor_rows(const void *p, int64_t r0, int64_t r1, void *ws, fd_errinfo *e)
{
    const floor_ctx *c = p;
    fd_rows x = sub_rows(&c->x, r0, r1);
    return fd_floor(&x, c->kind, c->out + r0, ws, e);
}

static PyObject *
k_floor(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    floor_ctx c;
    long kind, nt;
    if (check_nargs("_floor", nargs, 4) < 0 || long_from(args[1], &kind) < 0 ||
        long_from(args[3], &nt) < 0 || rows_from(args[0], "logits", 0, &c.x) < 0) {
        return NULL;
    }
    if (kind != FD_FLOOR_READ && kind != FD_FLOOR_EXP_SUM) {
        PyErr_SetString(PyExc_ValueError, "kind must be 0 (read) or 1 (exp_sum)");
        return NULL;
    }
    c.kind = (int)kind;
    if ((c.out = (double *)vec_from(args[2], "out", NPY_FLOAT64, c.x.n_rows, NULL, 1)) == NULL) {
        return NULL;
    }
    return run_rows(floor_rows, &c, c.x.n_rows, c.x.n_cols, fd_floor_workspace(c.x.n_cols), nt,
                    "_floor");
}

/* ------------------------------------------------------------------------------------------ */
/* adaptive samplers (core/adaptive.c)                                                          */

/* adaptive_temperature(x, out, beta_out float64 (B,) or None, n_threads) and
 * dynamic_temperature(x, out, temperature, delta, exponent, temp_out or None, n_threads) */
typedef struct {
    fd_rows x, out;
    fd_param t, d, e;
    double *aux;
    int dynamic;
} temper_ctx;

static fd_status
temper_rows(const void *p, int64_t r0, int64_t r1, void *ws, fd_errinfo *e)
{
    const temper_ctx *c = p;
    fd_rows x = sub_rows(&c->x, r0, r1), out = sub_rows(&c->out, r0, r1);
    double *aux = c->aux ? c->aux + r0 : NULL;
    if (c->dynamic) {
        return fd_dynamic_temperature(&x, &out, sub_param(c->t, r0), sub_param(c->d, r0),
                                      sub_param(c->e, r0), aux, ws, e);
    }
    return fd_adaptive_temperature(&x, &out, aux, ws, e);
}

static PyObject *
temper_common(temper_ctx *c, PyObject *aux, PyObject *nt_obj, const char *fname)
{
    long nt;
    if (long_from(nt_obj, &nt) < 0) {
        return NULL;
    }
    if (c->x.dtype != c->out.dtype) {
        PyErr_SetString(PyExc_TypeError, "out must have the dtype of logits");
        return NULL;
    }
    c->aux = NULL;
    if (aux != Py_None &&
        (c->aux = (double *)vec_from(aux, c->dynamic ? "temperature_out" : "beta_out",
                                     NPY_FLOAT64, c->x.n_rows, NULL, 1)) == NULL) {
        return NULL;
    }
    if (precheck_in_place(&c->x, &c->out, fname) < 0) {
        return NULL;
    }
    return run_rows(temper_rows, c, c->x.n_rows, c->x.n_cols,
                    fd_adaptive_workspace(c->x.n_cols), nt, fname);
}

static PyObject *
k_adaptive_temperature(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    temper_ctx c = {.dynamic = 0};
    if (check_nargs("adaptive_temperature", nargs, 4) < 0 ||
        rows_from(args[0], "logits", 0, &c.x) < 0 || rows_from(args[1], "out", 1, &c.out) < 0 ||
        same_shape(&c.x, &c.out, "out") < 0) {
        return NULL;
    }
    return temper_common(&c, args[2], args[3], "adaptive_temperature");
}

static PyObject *
k_dynamic_temperature(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    temper_ctx c = {.dynamic = 1};
    if (check_nargs("dynamic_temperature", nargs, 7) < 0 ||
        rows_from(args[0], "logits", 0, &c.x) < 0 || rows_from(args[1], "out", 1, &c.out) < 0 ||
        same_shape(&c.x, &c.out, "out") < 0 ||
        param_from(args[2], "temperature", c.x.n_rows, &c.t) < 0 ||
        param_from(args[3], "delta", c.x.n_rows, &c.d) < 0 ||
        param_from(args[4], "exponent", c.x.n_rows, &c.e) < 0) {
        return NULL;
    }
    return temper_common(&c, args[5], args[6], "dynamic_temperature");
}

/* xtc(x, out, probability, threshold, min_keep, seeds uint64, positions int64,
 *     uniforms float64 or None, filter_value, n_threads) */
typedef struct {
    fd_rows x, out;
    fd_param p, t, mk;
    fd_rng_args rng;
    double fv;
} xtc_ctx;

static fd_status
xtc_rows(const void *p, int64_t r0, int64_t r1, void *ws, fd_errinfo *e)
{
    const xtc_ctx *c = p;
    fd_rows x = sub_rows(&c->x, r0, r1), out = sub_rows(&c->out, r0, r1);
    fd_rng_args rng = c->rng;
    rng.seed += r0 * rng.seed_stride;
    rng.position += r0 * rng.position_stride;
    if (rng.uniform) {
        rng.uniform += r0 * rng.uniform_stride;
    }
    return fd_xtc(&x, &out, sub_param(c->p, r0), sub_param(c->t, r0), sub_param(c->mk, r0), &rng,
                  c->fv, ws, e);
}

static PyObject *
k_xtc(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    xtc_ctx c;
    long nt;
    if (check_nargs("xtc", nargs, 10) < 0 || rows_from(args[0], "logits", 0, &c.x) < 0 ||
        rows_from(args[1], "out", 1, &c.out) < 0 || same_shape(&c.x, &c.out, "out") < 0 ||
        param_from(args[2], "probability", c.x.n_rows, &c.p) < 0 ||
        param_from(args[3], "threshold", c.x.n_rows, &c.t) < 0 ||
        param_from(args[4], "min_tokens_to_keep", c.x.n_rows, &c.mk) < 0) {
        return NULL;
    }
    if (c.x.dtype != c.out.dtype) {
        PyErr_SetString(PyExc_TypeError, "out must have the dtype of logits");
        return NULL;
    }
    int64_t B = c.x.n_rows;
    c.rng.uniform = NULL;
    c.rng.uniform_stride = 0;
    if ((c.rng.seed = per_row_from(args[5], "seed", NPY_UINT64, B, &c.rng.seed_stride)) == NULL ||
        (c.rng.position = per_row_from(args[6], "position", NPY_INT64, B,
                                       &c.rng.position_stride)) == NULL) {
        return NULL;
    }
    if (args[7] != Py_None && (c.rng.uniform = per_row_from(args[7], "uniforms", NPY_FLOAT64, B,
                                                            &c.rng.uniform_stride)) == NULL) {
        return NULL;
    }
    if (double_from(args[8], &c.fv) < 0 || long_from(args[9], &nt) < 0) {
        return NULL;
    }
    if (c.fv != c.fv || c.fv == Py_HUGE_VAL) {
        PyErr_SetString(PyExc_ValueError, "filter_value must not be NaN or +inf");
        return NULL;
    }
    if (precheck_in_place(&c.x, &c.out, "xtc") < 0) {
        return NULL;
    }
    return run_rows(xtc_rows, &c, B, c.x.n_cols, fd_adaptive_workspace(c.x.n_cols), nt, "xtc");
}

/* dry(x, ids, begin, end, multiplier, base, allowed_length, last_n, flat int64, offsets int64):
 * in place on x, like history_penalty. */
static PyObject *
k_dry(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *result = NULL;
    void *raw = NULL;
    fd_rows x;
    fd_ids ids;
    fd_param mult, base, allowed, last_n;
    npy_intp nflat, noff;
    const int64_t *flat, *off;
    if (check_nargs("dry", nargs, 10) < 0 || penalty_args(args, &x, &ids) < 0 ||
        param_from(args[4], "multiplier", x.n_rows, &mult) < 0 ||
        param_from(args[5], "base", x.n_rows, &base) < 0 ||
        param_from(args[6], "allowed_length", x.n_rows, &allowed) < 0 ||
        param_from(args[7], "penalty_last_n", x.n_rows, &last_n) < 0 ||
        (flat = vec_from(args[8], "sequence_breakers", NPY_INT64, -1, &nflat, 0)) == NULL ||
        (off = vec_from(args[9], "sequence_breakers offsets", NPY_INT64, -1, &noff, 0)) == NULL) {
        goto done;
    }
    if (noff < 1 || off[0] != 0 || off[noff - 1] != nflat) {
        PyErr_SetString(PyExc_ValueError, "sequence_breakers offsets are inconsistent");
        goto done;
    }
    for (npy_intp i = 0; i + 1 < noff; i++) {
        if (off[i + 1] <= off[i]) {
            PyErr_SetString(PyExc_ValueError, "sequence_breakers entries must be non-empty");
            goto done;
        }
    }
    if (noff - 1 > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "too many sequence_breakers");
        goto done;
    }
    void *ws = ws_alloc(fd_dry_workspace(x.n_cols, ids.n_cols, noff - 1), &raw);
    if (ws == NULL) {
        goto done;
    }
    fd_errinfo e = {-1, -1};
    fd_status st = fd_dry(&x, &ids, mult, base, allowed, last_n, flat, off, noff - 1, ws, &e);
    result = finish(st, &e, "dry", e.row >= 0 ? "input_ids" : "sequence_breakers");
done:
    PyMem_RawFree(raw);
    return result;
}

static PyMethodDef kernels_methods[] = {
    {"filter", (PyCFunction)(void (*)(void))k_filter, METH_FASTCALL, NULL},
    {"softmax", (PyCFunction)(void (*)(void))k_softmax, METH_FASTCALL, NULL},
    {"entropy", (PyCFunction)(void (*)(void))k_entropy, METH_FASTCALL, NULL},
    {"argmax", (PyCFunction)(void (*)(void))k_argmax, METH_FASTCALL, NULL},
    {"sample", (PyCFunction)(void (*)(void))k_sample, METH_FASTCALL, NULL},
    {"history_penalty", (PyCFunction)(void (*)(void))k_history_penalty, METH_FASTCALL, NULL},
    {"logit_bias", (PyCFunction)(void (*)(void))k_logit_bias, METH_FASTCALL, NULL},
    {"suppress_tokens", (PyCFunction)(void (*)(void))k_suppress_tokens, METH_FASTCALL, NULL},
    {"apply_bitmask", (PyCFunction)(void (*)(void))k_apply_bitmask, METH_FASTCALL, NULL},
    {"bad_words", (PyCFunction)(void (*)(void))k_bad_words, METH_FASTCALL, NULL},
    {"beam_step", (PyCFunction)(void (*)(void))k_beam_step, METH_FASTCALL, NULL},
    {"uniform", (PyCFunction)(void (*)(void))k_uniform, METH_FASTCALL, NULL},
    {"_floor", (PyCFunction)(void (*)(void))k_floor, METH_FASTCALL, NULL},
    {"contrastive", (PyCFunction)(void (*)(void))k_contrastive, METH_FASTCALL, NULL},
    {"guidance", (PyCFunction)(void (*)(void))k_guidance, METH_FASTCALL, NULL},
    {"spec_verify", (PyCFunction)(void (*)(void))k_spec_verify, METH_FASTCALL, NULL},
    {"mirostat", (PyCFunction)(void (*)(void))k_mirostat, METH_FASTCALL, NULL},
    {"entropix", (PyCFunction)(void (*)(void))k_entropix, METH_FASTCALL, NULL},
    {"adaptive_temperature", (PyCFunction)(void (*)(void))k_adaptive_temperature, METH_FASTCALL,
     NULL},
    {"dynamic_temperature", (PyCFunction)(void (*)(void))k_dynamic_temperature, METH_FASTCALL,
     NULL},
    {"xtc", (PyCFunction)(void (*)(void))k_xtc, METH_FASTCALL, NULL},
    {"dry", (PyCFunction)(void (*)(void))k_dry, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static int
kernels_exec(PyObject *module)
{
    if (_import_array() < 0) {
        return -1;
    }
    if (PyModule_AddIntConstant(module, "GIL_MINSIZE", FD_GIL_MINSIZE) < 0 ||
        PyModule_AddIntConstant(module, "THREAD_MINSIZE", FD_THREAD_MINSIZE) < 0 ||
        PyModule_AddIntConstant(module, "THREAD_MINSIZE_LIGHT", FD_THREAD_MINSIZE_LIGHT) < 0) {
        return -1;
    }
    static const struct {
        const char *name;
        int value;
    } consts[] = {
        {"TOP_K", FD_FILTER_TOP_K},     {"TOP_P", FD_FILTER_TOP_P},
        {"MIN_P", FD_FILTER_MIN_P},     {"TYPICAL", FD_FILTER_TYPICAL},
        {"EPSILON", FD_FILTER_EPSILON}, {"ETA", FD_FILTER_ETA},
        {"TOP_N_SIGMA", FD_FILTER_TOP_N_SIGMA},
    };
    for (size_t i = 0; i < sizeof consts / sizeof consts[0]; i++) {
        if (PyModule_AddIntConstant(module, consts[i].name, consts[i].value) < 0) {
            return -1;
        }
    }
    return 0;
}

static PyModuleDef_Slot kernels_slots[] = {
    {Py_mod_exec, kernels_exec},
#ifdef Py_GIL_DISABLED
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef kernels_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "fastdecode._kernels",
    .m_doc = "fastdecode C kernels (private; use the functions in fastdecode).",
    .m_size = 0,
    .m_methods = kernels_methods,
    .m_slots = kernels_slots,
};

PyMODINIT_FUNC
PyInit__kernels(void)
{
    return PyModuleDef_Init(&kernels_module);
}
