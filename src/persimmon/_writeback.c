/* persimmon._writeback: the loops of a disk pool's write-back (filedevice.py), compiled.
 *
 * The shadow's write-back of a disk pool takes every range flushed since the last one
 * (thousands per write-back: one or more per operation applied), merges them into whole
 * 64-byte lines, writes them with their bytes into a side journal, syncs, and writes each
 * in place.  Per range that was a few Python calls; this module does the same per-range
 * work in C.  Each function has a pure-Python twin in filedevice.py (merge_ranges,
 * journal_image, OsFile.pwrite_ranges), used without the compiled module or with
 * PERSIMMON_PURE_PYTHON, and tests/test_writeback_twins.py holds the two to the same
 * results.
 *
 *   merge(ranges, gap, line) -> list    ranges: list of (offset, length), sorted in place
 *       by the twin, copied here; the result: (offset, length) in whole `line`-byte lines,
 *       sorted, overlapping ranges and those less than `gap` bytes apart merged
 *   journal_image(buf, ranges, head) -> bytearray   `head` zero bytes, then the table
 *       (u64 offset, u64 length, little-endian, per range), then each range's bytes of buf
 *   pwrite_ranges(fd, buf, ranges) -> None   each range's bytes of buf written at the same
 *       offset of fd, in order, completely (short writes continued, EINTR retried); the
 *       GIL released meanwhile; OSError on failure (what was written before stays)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    long long off, len;
} Range;

/* The (offset, length) pairs of a list or tuple of 2-tuples of ints; -1 with an exception
 * set when it is something else or a range lies outside [0, limit) (limit < 0: no limit). */
static Py_ssize_t read_ranges(PyObject *seq, Range **out, long long limit) {
    PyObject *fast = PySequence_Fast(seq, "ranges must be a list of (offset, length)");
    if (fast == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    Range *r = PyMem_Malloc(sizeof(Range) * (size_t)(n > 0 ? n : 1));
    if (r == NULL) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return -1;
    }
    PyObject **items = PySequence_Fast_ITEMS(fast);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = items[i];
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 2) {
            PyErr_SetString(PyExc_TypeError, "ranges must be a list of (offset, length)");
            goto fail;
        }
        long long off = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 0));
        if (off == -1 && PyErr_Occurred()) goto fail;
        long long len = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 1));
        if (len == -1 && PyErr_Occurred()) goto fail;
        if (off < 0 || len < 0 || (limit >= 0 && (off > limit || len > limit - off))) {
            PyErr_Format(PyExc_ValueError, "range (%lld, %lld) outside the buffer", off, len);
            goto fail;
        }
        r[i].off = off;
        r[i].len = len;
    }
    Py_DECREF(fast);
    *out = r;
    return n;
fail:
    PyMem_Free(r);
    Py_DECREF(fast);
    return -1;
}

static int by_range(const void *a, const void *b) {
    const Range *x = a, *y = b;
    if (x->off != y->off) return x->off < y->off ? -1 : 1;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return 0;
}

static int append_range(PyObject *list, long long off, long long len) {
    PyObject *t = Py_BuildValue("(LL)", off, len);
    if (t == NULL) return -1;
    int r = PyList_Append(list, t);
    Py_DECREF(t);
    return r;
}

static PyObject *merge(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "merge(ranges, gap, line)");
        return NULL;
    }
    long long gap = PyLong_AsLongLong(args[1]);
    if (gap == -1 && PyErr_Occurred()) return NULL;
    long long line = PyLong_AsLongLong(args[2]);
    if (line == -1 && PyErr_Occurred()) return NULL;
    if (line <= 0 || (line & (line - 1)) != 0) {
        PyErr_SetString(PyExc_ValueError, "line must be a power of two");
        return NULL;
    }
    Range *r;
    Py_ssize_t n = read_ranges(args[0], &r, -1);
    if (n < 0) return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL || n == 0) {
        PyMem_Free(r);
        return out;
    }
    qsort(r, (size_t)n, sizeof(Range), by_range);
    long long mask = line - 1;
    long long start = r[0].off & ~mask, end = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        long long off = r[i].off;
        if (end && off - end >= gap) {
            if (append_range(out, start, end - start) < 0) goto fail;
            start = off & ~mask;
        }
        long long e = (off + (r[i].len > 0 ? r[i].len : 1) + mask) & ~mask;
        if (e > end) end = e;
    }
    if (append_range(out, start, end - start) < 0) goto fail;
    PyMem_Free(r);
    return out;
fail:
    PyMem_Free(r);
    Py_DECREF(out);
    return NULL;
}

static void put_u64(char *p, unsigned long long v) {
    for (int i = 0; i < 8; i++) p[i] = (char)(v >> (8 * i));
}

static PyObject *journal_image(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "journal_image(buf, ranges, head)");
        return NULL;
    }
    Py_ssize_t head = PyLong_AsSsize_t(args[2]);
    if (head == -1 && PyErr_Occurred()) return NULL;
    if (head < 0) {
        PyErr_SetString(PyExc_ValueError, "head must be >= 0");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    Range *r;
    PyObject *img = NULL;
    Py_ssize_t n = read_ranges(args[1], &r, (long long)view.len);
    if (n < 0) goto out;
    long long total = (long long)head + 16LL * n;
    for (Py_ssize_t i = 0; i < n; i++) total += r[i].len;
    img = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (img != NULL) {
        char *p = PyByteArray_AS_STRING(img);
        memset(p, 0, (size_t)head);
        p += head;
        for (Py_ssize_t i = 0; i < n; i++, p += 16) {
            put_u64(p, (unsigned long long)r[i].off);
            put_u64(p + 8, (unsigned long long)r[i].len);
        }
        const char *base = view.buf;
        for (Py_ssize_t i = 0; i < n; i++) {
            memcpy(p, base + r[i].off, (size_t)r[i].len);
            p += r[i].len;
        }
    }
    PyMem_Free(r);
out:
    PyBuffer_Release(&view);
    return img;
}

static PyObject *pwrite_ranges(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "pwrite_ranges(fd, buf, ranges)");
        return NULL;
    }
    int fd = PyObject_AsFileDescriptor(args[0]);
    if (fd < 0) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0) return NULL;
    Range *r;
    Py_ssize_t n = read_ranges(args[2], &r, (long long)view.len);
    if (n < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    int err = 0;
    const char *base = view.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n && !err; i++) {
        long long off = r[i].off, left = r[i].len;
        while (left > 0) {
            ssize_t w = pwrite(fd, base + off, (size_t)left, (off_t)off);
            if (w < 0) {
                if (errno == EINTR) continue;
                err = errno;
                break;
            }
            if (w == 0) {  /* (a regular file never does this; do not spin) */
                err = EIO;
                break;
            }
            off += w;
            left -= w;
        }
    }
    Py_END_ALLOW_THREADS
    PyMem_Free(r);
    PyBuffer_Release(&view);
    if (err) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"merge", (PyCFunction)(void (*)(void))merge, METH_FASTCALL,
     "merge(ranges, gap, line): (offset, length) ranges as whole lines, sorted, merged"},
    {"journal_image", (PyCFunction)(void (*)(void))journal_image, METH_FASTCALL,
     "journal_image(buf, ranges, head): head zero bytes, the range table, the bytes"},
    {"pwrite_ranges", (PyCFunction)(void (*)(void))pwrite_ranges, METH_FASTCALL,
     "pwrite_ranges(fd, buf, ranges): each range of buf written at its offset of fd"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "persimmon._writeback",
    "The loops of a disk pool's write-back, compiled (filedevice.py has their twins).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__writeback(void) { return PyModule_Create(&module); }
