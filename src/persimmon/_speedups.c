/* Compiled fast path of the heap's hottest store (optional; see docs/heap.md).
 *
 * store_blob(heap, off, t, data) does exactly what Heap._store_blob does on its common
 * path: undo-log the slot's 32-byte block if it needs it, take a chunk for a new bytes/str
 * object (free list or bump), write its header and payload, store its offset into the slot,
 * and hand the old value to the heap's reference bookkeeping.  It returns False, having
 * changed nothing, whenever a rarer path is needed (an undo segment that is full, a big
 * object, a heap that must grow, a read-only heap or one with fresh ranges): the caller
 * then runs the Python version, which stays the reference implementation.  On a device
 * that persists, the undo entry is flushed and fenced through the device's own methods
 * before the store, as in UndoLog.log_block.
 *
 * The pool format is little-endian; the module refuses to configure itself elsewhere.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAXCLASSES 256
#define SMALL_LIMIT 4096

static int configured = 0;
static uint32_t small_table[SMALL_LIMIT / 32 + 1];
static uint64_t class_sizes[MAXCLASSES];
static int nclasses = 0;
static uint64_t leaves_mask = 0; /* bit t set: type t is a leaf */
static PyObject *xxh3 = NULL;    /* xxhash.xxh3_64_intdigest */

static PyObject *s_fresh_big, *s_writable, *s_ctop, *s_nolog, *s_undo, *s_pos, *s_end,
    *s_batch, *s_bmix, *s_count, *s_persists, *s_buf, *s_logged, *s_freelists, *s_fresh,
    *s_top, *s_dev, *s_size, *s_rc, *s_deferred, *s_decref;

static int intern_all(void) {
#define I(var, name) if (!(var = PyUnicode_InternFromString(name))) return -1;
    I(s_fresh_big, "_fresh_big") I(s_writable, "_writable") I(s_ctop, "_ctop")
    I(s_nolog, "_nolog") I(s_undo, "undo") I(s_pos, "_pos") I(s_end, "_end")
    I(s_batch, "batch") I(s_bmix, "_bmix") I(s_count, "count") I(s_persists, "_persists")
    I(s_buf, "buf") I(s_logged, "_logged") I(s_freelists, "_freelists") I(s_fresh, "_fresh")
    I(s_top, "_top") I(s_dev, "dev") I(s_size, "size") I(s_rc, "_rc")
    I(s_deferred, "_deferred") I(s_decref, "_decref")
#undef I
    return 0;
}

static PyObject *configure(PyObject *self, PyObject *args) {
    PyObject *table, *sizes, *leaves, *fn;
    if (!PyArg_ParseTuple(args, "OOOO", &table, &sizes, &leaves, &fn)) return NULL;
    {
        const uint16_t probe = 1;
        if (*(const uint8_t *)&probe != 1) {
            PyErr_SetString(PyExc_RuntimeError, "the fast path needs a little-endian machine");
            return NULL;
        }
    }
    Py_ssize_t n = PySequence_Length(table);
    if (n != SMALL_LIMIT / 32 + 1) {
        PyErr_SetString(PyExc_ValueError, "unexpected size of the small-class table");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PySequence_GetItem(table, i);
        if (!v) return NULL;
        small_table[i] = (uint32_t)PyLong_AsUnsignedLong(v);
        Py_DECREF(v);
        if (PyErr_Occurred()) return NULL;
    }
    n = PySequence_Length(sizes);
    if (n <= 0 || n > MAXCLASSES) {
        PyErr_SetString(PyExc_ValueError, "unexpected number of size classes");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PySequence_GetItem(sizes, i);
        if (!v) return NULL;
        class_sizes[i] = PyLong_AsUnsignedLongLong(v);
        Py_DECREF(v);
        if (PyErr_Occurred()) return NULL;
    }
    nclasses = (int)n;
    for (Py_ssize_t i = 0; i < SMALL_LIMIT / 32 + 1; i++) {
        if (small_table[i] >= (uint32_t)nclasses) {
            PyErr_SetString(PyExc_ValueError, "small-class table names an unknown class");
            return NULL;
        }
    }
    PyObject *it = PyObject_GetIter(leaves), *v;
    if (!it) return NULL;
    leaves_mask = 0;
    while ((v = PyIter_Next(it))) {
        long t = PyLong_AsLong(v);
        Py_DECREF(v);
        if (t < 0 || t > 63) {
            Py_DECREF(it);
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "bad leaf type");
            return NULL;
        }
        leaves_mask |= (uint64_t)1 << t;
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) return NULL;
    Py_XDECREF(xxh3);
    Py_INCREF(fn);
    xxh3 = fn;
    configured = 1;
    Py_RETURN_NONE;
}

/* getattr returning a C integer; -1 with an error set on failure. */
static int get_i64(PyObject *o, PyObject *name, long long *out) {
    PyObject *v = PyObject_GetAttr(o, name);
    if (!v) return -1;
    *out = PyLong_AsLongLong(v);
    Py_DECREF(v);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

static int set_i64(PyObject *o, PyObject *name, long long value) {
    PyObject *v = PyLong_FromLongLong(value);
    if (!v) return -1;
    int r = PyObject_SetAttr(o, name, v);
    Py_DECREF(v);
    return r;
}

/* 1 if truthy, 0 if not, -1 on error */
static int get_truth(PyObject *o, PyObject *name) {
    PyObject *v = PyObject_GetAttr(o, name);
    if (!v) return -1;
    int r = PyObject_IsTrue(v);
    Py_DECREF(v);
    return r;
}

static inline void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static inline int64_t get64(const uint8_t *p) {
    int64_t v;
    memcpy(&v, p, 8);
    return v;
}

static PyObject *store_blob(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "store_blob(heap, off, t, data)");
        return NULL;
    }
    if (!configured) Py_RETURN_FALSE;
    PyObject *heap = args[0], *data = args[3];
    long long off = PyLong_AsLongLong(args[1]);
    long t = PyLong_AsLong(args[2]);
    if (PyErr_Occurred()) return NULL;
    if (!PyBytes_CheckExact(data) || off < 0 || (off & 7) || t < 0 || t > 255)
        Py_RETURN_FALSE;
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    long long nb = 16 + (long long)n;
    if (nb >= SMALL_LIMIT) Py_RETURN_FALSE;

    PyObject *undo = NULL, *nolog = NULL, *logged = NULL, *freelists = NULL, *fl = NULL,
             *fresh = NULL, *dev = NULL, *buf = NULL, *rc = NULL, *deferred = NULL;
    PyObject *result = NULL;
    PyObject *bkey = NULL, *udev = NULL;
    int persists = 0;
    Py_buffer view;
    int have_view = 0;
    int r = 0, need_undo = 0, use_fl;
    long long ctop, pos = 0, end = 0, batch = 0, bmix = 0, count = 0, top = 0, size = 0, b, x;
    uint32_t cls;
    uint8_t *base, xcls;
    Py_ssize_t blen;
    int64_t old;
    int leaf = 0;

    if ((r = get_truth(heap, s_fresh_big)) != 0) goto fallback_or_error;
    if ((r = get_truth(heap, s_writable)) != 1) {
        if (r == 0) goto fallback;
        goto error;
    }
    if (get_i64(heap, s_ctop, &ctop) < 0) goto error;
    b = off >> 5;
    if (off < ctop) {
        if (!(nolog = PyObject_GetAttr(heap, s_nolog))) goto error;
        if (!(bkey = PyLong_FromLongLong(b))) goto error;
        int c = PySet_Contains(nolog, bkey);
        if (c < 0) { Py_DECREF(bkey); goto error; }
        need_undo = !c;
        if (!need_undo) { Py_DECREF(bkey); bkey = NULL; }
    }
    if (need_undo) {
        if (!(undo = PyObject_GetAttr(heap, s_undo))) goto error_key;
        if ((persists = get_truth(undo, s_persists)) < 0) goto error_key;
        if (persists && !(udev = PyObject_GetAttr(undo, s_dev))) goto error_key;
        if (get_i64(undo, s_pos, &pos) < 0 || get_i64(undo, s_end, &end) < 0 ||
            get_i64(undo, s_batch, &batch) < 0 || get_i64(undo, s_count, &count) < 0)
            goto error_key;
        PyObject *bm = PyObject_GetAttr(undo, s_bmix);
        if (!bm) goto error_key;
        bmix = (long long)PyLong_AsUnsignedLongLongMask(bm);
        Py_DECREF(bm);
        if (PyErr_Occurred()) goto error_key;
        if (pos + 64 > end) {
            Py_DECREF(bkey);
            bkey = NULL;
            goto fallback;
        }
    }
    cls = small_table[(nb + 31) >> 5];
    if (!(freelists = PyObject_GetAttr(heap, s_freelists))) goto error_key;
    if (!PyList_CheckExact(freelists) || PyList_GET_SIZE(freelists) <= (Py_ssize_t)cls) {
        Py_XDECREF(bkey);
        bkey = NULL;
        goto fallback;
    }
    fl = PyList_GET_ITEM(freelists, cls);
    Py_INCREF(fl);
    if (!PyList_CheckExact(fl)) {
        Py_XDECREF(bkey);
        bkey = NULL;
        goto fallback;
    }
    use_fl = PyList_GET_SIZE(fl) > 0;
    if (!use_fl) {
        if (get_i64(heap, s_top, &top) < 0) goto error_key;
        if (!(dev = PyObject_GetAttr(heap, s_dev))) goto error_key;
        if (get_i64(dev, s_size, &size) < 0) goto error_key;
        if (top + (long long)class_sizes[cls] > size) {
            Py_XDECREF(bkey);
            bkey = NULL;
            goto fallback;
        }
    }
    if (!(buf = PyObject_GetAttr(heap, s_buf))) goto error_key;
    if (PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE) < 0) goto error_key;
    have_view = 1;
    base = (uint8_t *)view.buf;
    blen = view.len;
    if (off + 8 > blen || (need_undo && pos + 64 > blen) || (!use_fl && top + (long long)nb > blen)) {
        Py_XDECREF(bkey);
        bkey = NULL;
        goto fallback;
    }
    if (use_fl) {
        PyObject *last = PyList_GET_ITEM(fl, PyList_GET_SIZE(fl) - 1);
        x = PyLong_AsLongLong(last);
        if (PyErr_Occurred()) goto error_key;
        if (x < 0 || x + (long long)nb > blen) {
            Py_XDECREF(bkey);
            bkey = NULL;
            goto fallback;
        }
    }
    if (!(fresh = PyObject_GetAttr(heap, s_fresh))) goto error_key;
    if (!(logged = PyObject_GetAttr(heap, s_logged))) goto error_key;
    if (!(rc = PyObject_GetAttr(heap, s_rc))) goto error_key;
    if (!(deferred = PyObject_GetAttr(heap, s_deferred))) goto error_key;

    /* ---- from here on the store happens ---- */
    if (need_undo) {
        long long a = b << 5;
        PyObject *blk = PyBytes_FromStringAndSize((const char *)base + a, 32);
        if (!blk) goto error_key;
        PyObject *seed = PyLong_FromUnsignedLongLong((uint64_t)a ^ (uint64_t)bmix);
        if (!seed) { Py_DECREF(blk); goto error_key; }
        PyObject *hargs[2] = {blk, seed};
        PyObject *hv = PyObject_Vectorcall(xxh3, hargs, 2, NULL);
        Py_DECREF(seed);
        if (!hv) { Py_DECREF(blk); goto error_key; }
        uint64_t h = PyLong_AsUnsignedLongLong(hv);
        Py_DECREF(hv);
        if (PyErr_Occurred()) { Py_DECREF(blk); goto error_key; }
        uint8_t *e = base + pos;
        put64(e, (uint64_t)a);
        put64(e + 8, (uint64_t)batch);
        put64(e + 16, h);
        put64(e + 24, 0);
        memcpy(e + 32, PyBytes_AS_STRING(blk), 32);
        Py_DECREF(blk);
        if (set_i64(undo, s_pos, pos + 64) < 0 || set_i64(undo, s_count, count + 1) < 0)
            goto error_key;
        if (persists) { /* durable before the store, as UndoLog.log_block makes it */
            PyObject *res = PyObject_CallMethod(udev, "flush", "LL", pos, 64LL);
            if (!res) goto error_key;
            Py_DECREF(res);
            res = PyObject_CallMethod(udev, "drain", NULL);
            if (!res) goto error_key;
            Py_DECREF(res);
        }
        if (PySet_Add(nolog, bkey) < 0 || PyList_Append(logged, bkey) < 0) goto error_key;
        Py_DECREF(bkey);
        bkey = NULL;
    }
    if (use_fl) {
        /* (Re-read: the device's drain above is Python code.  Should the free list have
         * changed under it, the Python path finishes the store: the undo entry is made
         * and marked, so it skips that part.) */
        Py_ssize_t last = PyList_GET_SIZE(fl) - 1;
        if (last < 0) goto fallback;
        x = PyLong_AsLongLong(PyList_GET_ITEM(fl, last));
        if (x == -1 && PyErr_Occurred()) goto error;
        if (x < 0 || x + (long long)nb > blen) goto fallback;
        if (PyList_SetSlice(fl, last, last + 1, NULL) < 0) goto error;
        xcls = base[x + 1];
        if (xcls >= nclasses) {
            PyErr_SetString(PyExc_RuntimeError, "a free-list chunk has an unknown size class");
            goto error;
        }
        PyObject *tup = Py_BuildValue("(LK)", x, (unsigned long long)class_sizes[xcls]);
        if (!tup) goto error;
        r = PyList_Append(fresh, tup);
        Py_DECREF(tup);
        if (r < 0) goto error;
    } else {
        x = top;
        xcls = (uint8_t)cls;
        if (set_i64(heap, s_top, top + (long long)class_sizes[cls]) < 0) goto error;
    }
    uint8_t *o = base + x;
    o[0] = (uint8_t)t;
    o[1] = xcls;
    o[2] = o[3] = 0;              /* flags */
    o[4] = o[5] = o[6] = o[7] = 0; /* reference count */
    put64(o + 8, (uint64_t)n);
    memcpy(o + 16, PyBytes_AS_STRING(data), (size_t)n);
    /* The slot store comes last, after the undo entry and the new object: a compiler
     * barrier keeps it there (a process killed in between must find them in memory). */
    __asm__ __volatile__("" ::: "memory");
    old = get64(base + off);
    put64(base + off, (uint64_t)x);
    if (old > 0 && !(old & 7) && old < blen) {
        uint8_t ty = base[old];
        leaf = ty < 64 && ((leaves_mask >> ty) & 1);
    }
    PyBuffer_Release(&view);
    have_view = 0;
    if (old > 0 && !(old & 7)) {
        PyObject *ok = PyLong_FromLongLong(old);
        if (!ok) goto error;
        int in_rc = PyDict_CheckExact(rc) ? PyDict_Contains(rc, ok) : PySequence_Contains(rc, ok);
        if (in_rc < 0) { Py_DECREF(ok); goto error; }
        if (!in_rc && leaf) {
            r = PyList_Append(deferred, ok);
            Py_DECREF(ok);
            if (r < 0) goto error;
        } else {
            PyObject *res = PyObject_CallMethodOneArg(heap, s_decref, ok);
            Py_DECREF(ok);
            if (!res) goto error;
            Py_DECREF(res);
        }
    }
    result = Py_True;
    Py_INCREF(result);
    goto done;

error_key:
    Py_XDECREF(bkey);
    goto error;
fallback_or_error:
    if (r < 0) goto error;
fallback:
    result = Py_False;
    Py_INCREF(result);
    goto done;
error:
    result = NULL;
done:
    if (have_view) PyBuffer_Release(&view);
    Py_XDECREF(undo);
    Py_XDECREF(udev);
    Py_XDECREF(nolog);
    Py_XDECREF(logged);
    Py_XDECREF(freelists);
    Py_XDECREF(fl);
    Py_XDECREF(fresh);
    Py_XDECREF(dev);
    Py_XDECREF(buf);
    Py_XDECREF(rc);
    Py_XDECREF(deferred);
    return result;
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(small_table, class_sizes, leaf_types, xxh3_64_intdigest)"},
    {"store_blob", (PyCFunction)(void (*)(void))store_blob, METH_FASTCALL,
     "store_blob(heap, off, t, data) -> bool: the common path of Heap._store_blob"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speedups",
                                    "Compiled fast paths of the persistent heap.", -1, methods};

PyMODINIT_FUNC PyInit__speedups(void) {
    if (intern_all() < 0) return NULL;
    return PyModule_Create(&module);
}
