/* Compiled fast paths of the heap's two hottest stores (optional; see docs/heap.md).
 *
 * store_blob(heap, off, t, data) does what Heap._store_blob does on its common path:
 * undo-log the slot's 32-byte block if it needs it, take a chunk for a new bytes/str object
 * (free list or bump), write its header and payload, store its offset into the slot, and
 * hand the old value to the heap's reference bookkeeping.  It returns False, having changed
 * nothing, whenever a rarer path is needed.
 *
 * insert_blobs(heap, d, h, p, kt, kdata, vdata) does what Heap._ht_insert_blobs does on its
 * common path (a new dict entry whose key and value are new bytes/str objects, in a table
 * with room, whose header block is already logged in this batch): it returns the new
 * entry's offset (the caller adds it to the table's DRAM index), or None, having changed
 * nothing.
 *
 * The rarer paths (an undo segment that is full, a big object, a heap that must grow, a
 * table that must grow, a read-only heap or one with fresh ranges) stay in Python, which
 * stays the reference implementation: tests hold these functions to it byte for byte.  On
 * a device that persists, an undo entry is flushed and fenced through the device's own
 * methods before the store it covers, as UndoLog.log_block does.
 *
 * The pool format is little-endian; configure() refuses to run elsewhere.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAXCLASSES 256
#define SMALL_LIMIT 4096 /* objects this big or bigger take the Python path */
#define HT_NENT 16       /* a table header's entry count (heap.py _HT_NENT) */
#define HT_ENTS 32       /* a table header's entries array (heap.py _HT_ENTS) */
#define ENTRY 24         /* bytes of a dict entry: hash, key slot, value slot */
#define T_BYTES 2

static int configured = 0;
static uint32_t small_table[SMALL_LIMIT / 32 + 1];
static uint64_t class_sizes[MAXCLASSES];
static int nclasses = 0;
static uint64_t leaves_mask = 0; /* bit t set: type t is a leaf */
static PyObject *xxh3 = NULL;    /* xxhash.xxh3_64_intdigest */

static PyObject *s_fresh_big, *s_writable, *s_ctop, *s_nolog, *s_undo, *s_pos, *s_end,
    *s_batch, *s_bmix, *s_count, *s_persists, *s_buf, *s_logged, *s_freelists, *s_fresh,
    *s_top, *s_dev, *s_size, *s_rc, *s_deferred, *s_decref, *s_flush, *s_drain;

static int intern_all(void) {
#define I(var, name) if (!(var = PyUnicode_InternFromString(name))) return -1;
    I(s_fresh_big, "_fresh_big") I(s_writable, "_writable") I(s_ctop, "_ctop")
    I(s_nolog, "_nolog") I(s_undo, "undo") I(s_pos, "_pos") I(s_end, "_end")
    I(s_batch, "batch") I(s_bmix, "_bmix") I(s_count, "count") I(s_persists, "_persists")
    I(s_buf, "buf") I(s_logged, "_logged") I(s_freelists, "_freelists") I(s_fresh, "_fresh")
    I(s_top, "_top") I(s_dev, "dev") I(s_size, "size") I(s_rc, "_rc")
    I(s_deferred, "_deferred") I(s_decref, "_decref") I(s_flush, "flush")
    I(s_drain, "drain")
#undef I
    return 0;
}

static PyObject *configure(PyObject *self, PyObject *args) {
    PyObject *table, *sizes, *leaves, *fn;
    if (!PyArg_ParseTuple(args, "OOOO", &table, &sizes, &leaves, &fn)) return NULL;
    const uint16_t probe = 1;
    if (*(const uint8_t *)&probe != 1) {
        PyErr_SetString(PyExc_RuntimeError, "the fast path needs a little-endian machine");
        return NULL;
    }
    Py_ssize_t n = PySequence_Length(table);
    if (n != SMALL_LIMIT / 32 + 1) {
        PyErr_SetString(PyExc_ValueError, "unexpected size of the small-class table");
        return NULL;
    }
    uint32_t tab[SMALL_LIMIT / 32 + 1];
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PySequence_GetItem(table, i);
        if (!v) return NULL;
        tab[i] = (uint32_t)PyLong_AsUnsignedLong(v);
        Py_DECREF(v);
        if (PyErr_Occurred()) return NULL;
    }
    Py_ssize_t nc = PySequence_Length(sizes);
    if (nc <= 0 || nc > MAXCLASSES) {
        PyErr_SetString(PyExc_ValueError, "unexpected number of size classes");
        return NULL;
    }
    uint64_t cs[MAXCLASSES];
    for (Py_ssize_t i = 0; i < nc; i++) {
        PyObject *v = PySequence_GetItem(sizes, i);
        if (!v) return NULL;
        cs[i] = PyLong_AsUnsignedLongLong(v);
        Py_DECREF(v);
        if (PyErr_Occurred()) return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (tab[i] >= (uint32_t)nc) {
            PyErr_SetString(PyExc_ValueError, "small-class table names an unknown class");
            return NULL;
        }
    }
    uint64_t mask = 0;
    PyObject *it = PyObject_GetIter(leaves), *v;
    if (!it) return NULL;
    while ((v = PyIter_Next(it))) {
        long t = PyLong_AsLong(v);
        Py_DECREF(v);
        if (t < 0 || t > 63) {
            Py_DECREF(it);
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "bad leaf type");
            return NULL;
        }
        mask |= (uint64_t)1 << t;
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) return NULL;
    memcpy(small_table, tab, sizeof tab);
    memcpy(class_sizes, cs, sizeof(uint64_t) * (size_t)nc);
    nclasses = (int)nc;
    leaves_mask = mask;
    Py_XDECREF(xxh3);
    Py_INCREF(fn);
    xxh3 = fn;
    configured = 1;
    Py_RETURN_NONE;
}

static inline void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static inline void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline int64_t get64(const uint8_t *p) {
    int64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* getattr as a C integer: 0, or -1 with an error set */
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

/* What both stores read of the heap, fetched once per call. */
typedef struct {
    PyObject *heap, *undo, *udev, *nolog, *logged, *freelists, *fresh, *rc, *deferred, *buf;
    Py_buffer view;
    int have_view, persists;
    uint8_t *base;
    Py_ssize_t blen;
    long long ctop, top, size, pos, end, batch, bmix, count;
} H;

static void h_release(H *h) {
    if (h->have_view) PyBuffer_Release(&h->view);
    h->have_view = 0;
    Py_CLEAR(h->undo);
    Py_CLEAR(h->udev);
    Py_CLEAR(h->nolog);
    Py_CLEAR(h->logged);
    Py_CLEAR(h->freelists);
    Py_CLEAR(h->fresh);
    Py_CLEAR(h->rc);
    Py_CLEAR(h->deferred);
    Py_CLEAR(h->buf);
}

/* 1: loaded; 0: this heap needs the Python path; -1: error.  Release with h_release. */
static int h_load(H *h, PyObject *heap) {
    memset(h, 0, sizeof *h);
    h->heap = heap;
    int r;
    if (!configured) return 0;
    if ((r = get_truth(heap, s_fresh_big)) != 0) return r < 0 ? -1 : 0;
    if ((r = get_truth(heap, s_writable)) != 1) return r < 0 ? -1 : 0;
    if (get_i64(heap, s_ctop, &h->ctop) < 0 || get_i64(heap, s_top, &h->top) < 0) return -1;
    if (!(h->nolog = PyObject_GetAttr(heap, s_nolog))) return -1;
    if (!(h->logged = PyObject_GetAttr(heap, s_logged))) return -1;
    if (!(h->freelists = PyObject_GetAttr(heap, s_freelists))) return -1;
    if (!(h->fresh = PyObject_GetAttr(heap, s_fresh))) return -1;
    if (!(h->rc = PyObject_GetAttr(heap, s_rc))) return -1;
    if (!(h->deferred = PyObject_GetAttr(heap, s_deferred))) return -1;
    if (!PySet_Check(h->nolog) || !PyList_CheckExact(h->logged) ||
        !PyList_CheckExact(h->freelists) || PyList_GET_SIZE(h->freelists) < nclasses ||
        !PyList_CheckExact(h->fresh) || !PyDict_CheckExact(h->rc) ||
        !PyList_CheckExact(h->deferred))
        return 0;
    PyObject *dev = PyObject_GetAttr(heap, s_dev);
    if (!dev) return -1;
    r = get_i64(dev, s_size, &h->size);
    Py_DECREF(dev);
    if (r < 0) return -1;
    if (!(h->undo = PyObject_GetAttr(heap, s_undo))) return -1;
    if ((h->persists = get_truth(h->undo, s_persists)) < 0) return -1;
    if (h->persists && !(h->udev = PyObject_GetAttr(h->undo, s_dev))) return -1;
    if (get_i64(h->undo, s_pos, &h->pos) < 0 || get_i64(h->undo, s_end, &h->end) < 0 ||
        get_i64(h->undo, s_batch, &h->batch) < 0 || get_i64(h->undo, s_count, &h->count) < 0)
        return -1;
    PyObject *bm = PyObject_GetAttr(h->undo, s_bmix);
    if (!bm) return -1;
    h->bmix = (long long)PyLong_AsUnsignedLongLongMask(bm);
    Py_DECREF(bm);
    if (PyErr_Occurred()) return -1;
    if (!(h->buf = PyObject_GetAttr(heap, s_buf))) return -1;
    if (PyObject_GetBuffer(h->buf, &h->view, PyBUF_WRITABLE) < 0) return -1;
    h->have_view = 1;
    h->base = (uint8_t *)h->view.buf;
    h->blen = h->view.len;
    return 1;
}

/* 1 if block number b is marked as logged, 0 if not, -1 on error */
static int h_marked(H *h, long long b) {
    PyObject *k = PyLong_FromLongLong(b);
    if (!k) return -1;
    int c = PySet_Contains(h->nolog, k);
    Py_DECREF(k);
    return c;
}

/* 1 if the block holding off must be undo-logged before a store (committed memory not yet
 * logged in this batch), 0 if not, -1 on error */
static int h_needs_log(H *h, long long off) {
    if (off >= h->ctop) return 0;
    int c = h_marked(h, off >> 5);
    return c < 0 ? -1 : !c;
}

/* List block number b for the flush at commit unless it is marked as logged already:
 * 0, or -1 on error */
static int h_list_for_flush(H *h, long long b) {
    PyObject *k = PyLong_FromLongLong(b);
    if (!k) return -1;
    int r = PySet_Contains(h->nolog, k);
    r = r == 0 ? PyList_Append(h->logged, k) : (r < 0 ? -1 : 0);
    Py_DECREF(k);
    return r;
}

/* Undo-log the block holding off (the caller checked it needs it and that the segment has
 * room): the entry, then the log's position and count, the block marked as logged, and on a
 * device that persists, flushed and fenced.  0, or -1 on error. */
static int h_log_block(H *h, long long off) {
    long long b = off >> 5, a = b << 5;
    uint8_t *e = h->base + h->pos;
    PyObject *blk = PyBytes_FromStringAndSize((const char *)h->base + a, 32);
    if (!blk) return -1;
    PyObject *seed = PyLong_FromUnsignedLongLong((uint64_t)a ^ (uint64_t)h->bmix);
    if (!seed) {
        Py_DECREF(blk);
        return -1;
    }
    PyObject *hargs[2] = {blk, seed};
    PyObject *hv = PyObject_Vectorcall(xxh3, hargs, 2, NULL);
    Py_DECREF(seed);
    if (!hv) {
        Py_DECREF(blk);
        return -1;
    }
    uint64_t sum = PyLong_AsUnsignedLongLong(hv);
    Py_DECREF(hv);
    if (PyErr_Occurred()) {
        Py_DECREF(blk);
        return -1;
    }
    put64(e, (uint64_t)a);
    put64(e + 8, (uint64_t)h->batch);
    put64(e + 16, sum);
    put64(e + 24, 0);
    memcpy(e + 32, PyBytes_AS_STRING(blk), 32);
    Py_DECREF(blk);
    long long pos = h->pos;
    h->pos += 64;
    h->count += 1;
    if (set_i64(h->undo, s_pos, h->pos) < 0 || set_i64(h->undo, s_count, h->count) < 0)
        return -1;
    PyObject *bk = PyLong_FromLongLong(b);
    if (!bk) return -1;
    int r = PySet_Add(h->nolog, bk) < 0 || PyList_Append(h->logged, bk) < 0;
    Py_DECREF(bk);
    if (r) return -1;
    if (h->persists) { /* durable before the store, as UndoLog.log_block makes it */
        PyObject *res = PyObject_CallMethod(h->udev, "flush", "LL", pos, 64LL);
        if (!res) return -1;
        Py_DECREF(res);
        res = PyObject_CallMethodNoArgs(h->udev, s_drain);
        if (!res) return -1;
        Py_DECREF(res);
    }
    return 0;
}

/* The size class of a new bytes/str object of n payload bytes; -1 for the Python path */
static int blob_class(Py_ssize_t n) {
    long long nb = 16 + (long long)n;
    return nb >= SMALL_LIMIT ? -1 : (int)small_table[(nb + 31) >> 5];
}

/* Can the chunks for classes c[0..k) be had without the Python path (free list, else bump
 * within the mapped size)?  1 yes, 0 no. */
static int h_can_alloc(H *h, const int *c, int k) {
    Py_ssize_t used[2] = {0, 0};
    long long top = h->top;
    for (int i = 0; i < k; i++) {
        PyObject *fl = PyList_GET_ITEM(h->freelists, c[i]);
        if (!PyList_CheckExact(fl)) return 0;
        Py_ssize_t same = (i == 1 && c[1] == c[0]) ? used[0] : 0;
        if (PyList_GET_SIZE(fl) > same) {
            PyObject *last = PyList_GET_ITEM(fl, PyList_GET_SIZE(fl) - 1 - same);
            long long x = PyLong_AsLongLong(last);
            if (x == -1 && PyErr_Occurred()) {
                PyErr_Clear();
                return 0;
            }
            if (x <= 0 || x + (long long)class_sizes[c[i]] > h->blen ||
                h->base[x + 1] >= nclasses)
                return 0;
            used[i] = 1;
        } else {
            top += (long long)class_sizes[c[i]];
        }
    }
    return top <= h->size && top <= h->blen;
}

/* A chunk of class cls (h_can_alloc said yes): popped from its free list (recorded as fresh
 * in the batch) or bumped from the top.  The offset, or -1 on error. */
static long long h_alloc(H *h, int cls, uint8_t *chunk_class) {
    PyObject *fl = PyList_GET_ITEM(h->freelists, cls);
    Py_ssize_t n = PyList_GET_SIZE(fl);
    if (n > 0) {
        long long x = PyLong_AsLongLong(PyList_GET_ITEM(fl, n - 1));
        if (x == -1 && PyErr_Occurred()) return -1;
        if (PyList_SetSlice(fl, n - 1, n, NULL) < 0) return -1;
        uint8_t xc = h->base[x + 1];
        PyObject *t = Py_BuildValue("(LK)", x, (unsigned long long)class_sizes[xc]);
        if (!t) return -1;
        int r = PyList_Append(h->fresh, t);
        Py_DECREF(t);
        if (r < 0) return -1;
        *chunk_class = xc;
        return x;
    }
    long long x = h->top;
    h->top += (long long)class_sizes[cls];
    if (set_i64(h->heap, s_top, h->top) < 0) return -1;
    *chunk_class = (uint8_t)cls;
    return x;
}

/* Header (type, class, flags 0, reference count 0, aux = length) and payload */
static void h_write_blob(H *h, long long x, int t, uint8_t cls, const char *data,
                         Py_ssize_t n) {
    uint8_t *o = h->base + x;
    o[0] = (uint8_t)t;
    o[1] = cls;
    memset(o + 2, 0, 6); /* flags, reference count */
    put64(o + 8, (uint64_t)n);
    memcpy(o + 16, data, (size_t)n);
}

static PyObject *store_blob(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "store_blob(heap, off, t, data)");
        return NULL;
    }
    long long off = PyLong_AsLongLong(args[1]);
    long t = PyLong_AsLong(args[2]);
    if (PyErr_Occurred()) return NULL;
    PyObject *data = args[3];
    if (!PyBytes_CheckExact(data) || off <= 0 || (off & 7) || t < 0 || t > 255)
        Py_RETURN_FALSE;
    int cls = blob_class(PyBytes_GET_SIZE(data));
    if (cls < 0) Py_RETURN_FALSE;
    H h;
    int r = h_load(&h, args[0]);
    if (r <= 0) goto out;
    int need = h_needs_log(&h, off);
    if (need < 0) {
        r = -1;
        goto out;
    }
    if (off + 8 > h.blen || (need && h.pos + 64 > h.end) || (need && h.pos + 64 > h.blen) ||
        !h_can_alloc(&h, &cls, 1)) {
        r = 0;
        goto out;
    }
    /* ---- from here on the store happens ---- */
    r = -1;
    if (need && h_log_block(&h, off) < 0) goto out;
    if (need && !h_can_alloc(&h, &cls, 1)) { /* the device's drain ran Python: look again */
        r = 0; /* (the block is logged and marked: the Python path skips that part) */
        goto out;
    }
    uint8_t xc;
    long long x = h_alloc(&h, cls, &xc);
    if (x < 0) goto out;
    h_write_blob(&h, x, (int)t, xc, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data));
    /* The slot store comes after the undo entry and the new object: a compiler barrier
     * keeps it there (a process killed in between must find them in memory). */
    __asm__ __volatile__("" ::: "memory");
    int64_t old = get64(h.base + off);
    put64(h.base + off, (uint64_t)x);
    int leaf = 0;
    if (old > 0 && !(old & 7) && old < h.blen) {
        uint8_t ty = h.base[old];
        leaf = ty < 64 && ((leaves_mask >> ty) & 1);
    }
    if (old > 0 && !(old & 7)) {
        PyObject *ok = PyLong_FromLongLong(old);
        if (!ok) goto out;
        int in_rc = PyDict_Contains(h.rc, ok);
        if (in_rc < 0) {
            Py_DECREF(ok);
            goto out;
        }
        if (!in_rc && leaf) { /* count 1 -> 0: freed at the end of the operation */
            int e = PyList_Append(h.deferred, ok);
            Py_DECREF(ok);
            if (e < 0) goto out;
        } else {
            PyBuffer_Release(&h.view); /* (the bookkeeping may remap the buffer) */
            h.have_view = 0;
            PyObject *res = PyObject_CallMethodOneArg(args[0], s_decref, ok);
            Py_DECREF(ok);
            if (!res) goto out;
            Py_DECREF(res);
        }
    }
    r = 1;
out:
    h_release(&h);
    if (r < 0) return NULL;
    if (r) Py_RETURN_TRUE;
    Py_RETURN_FALSE;
}

static PyObject *insert_blobs(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "insert_blobs(heap, d, h, p, kt, kdata, vdata)");
        return NULL;
    }
    long long d = PyLong_AsLongLong(args[1]);
    unsigned long long hv = PyLong_AsUnsignedLongLongMask(args[2]);
    long long p = PyLong_AsLongLong(args[3]);
    long kt = PyLong_AsLong(args[4]);
    if (PyErr_Occurred()) return NULL;
    PyObject *kdata = args[5], *vdata = args[6];
    if (!PyBytes_CheckExact(kdata) || !PyBytes_CheckExact(vdata) || d <= 0 || (d & 7) ||
        p <= 0 || (p & 3) || kt < 0 || kt > 255)
        Py_RETURN_NONE;
    int cls[2] = {blob_class(PyBytes_GET_SIZE(kdata)), blob_class(PyBytes_GET_SIZE(vdata))};
    if (cls[0] < 0 || cls[1] < 0) Py_RETURN_NONE;
    H h;
    long long e = 0, nent = 0;
    int r = h_load(&h, args[0]);
    if (r <= 0) goto out;
    r = 0;
    if (d + 48 > h.blen || p + 4 > h.blen) goto out;
    nent = get64(h.base + d + HT_NENT);
    long long ents = get64(h.base + d + HT_ENTS);
    if (nent < 0 || ents <= 0 || ents + 16 > h.blen) goto out;
    long long cap = get64(h.base + ents + 8);
    if (nent >= cap) goto out; /* the table must grow: Python */
    e = ents + 16 + ENTRY * nent;
    if (e + ENTRY > h.blen) goto out;
    /* the header block (the counts) must be logged in this batch already (or be fresh):
     * else Python logs it and the index slot in one round */
    int hneed = h_needs_log(&h, d);
    int pneed = h_needs_log(&h, p);
    if (hneed < 0 || pneed < 0) {
        r = -1;
        goto out;
    }
    if (hneed || (pneed && (h.pos + 64 > h.end || h.pos + 64 > h.blen)) ||
        !h_can_alloc(&h, cls, 2))
        goto out;
    /* ---- from here on the insert happens ---- */
    r = -1;
    if (e < h.ctop) { /* the entry's blocks: flushed at commit, never undo-logged */
        long long b = e >> 5, b1 = (e + ENTRY - 1) >> 5;
        if (h_list_for_flush(&h, b) < 0 || (b1 != b && h_list_for_flush(&h, b1) < 0))
            goto out;
    }
    if (pneed) {
        if (h_log_block(&h, p) < 0) goto out;
        if (!h_can_alloc(&h, cls, 2)) { /* the device's drain ran Python: look again */
            r = 0; /* (what is done is marked: the Python path skips it, or repeats a
                      block in the flush list, which is harmless) */
            goto out;
        }
    }
    uint8_t kc, vc;
    long long ks = h_alloc(&h, cls[0], &kc);
    if (ks < 0) goto out;
    h_write_blob(&h, ks, (int)kt, kc, PyBytes_AS_STRING(kdata), PyBytes_GET_SIZE(kdata));
    long long vs = h_alloc(&h, cls[1], &vc);
    if (vs < 0) goto out;
    h_write_blob(&h, vs, T_BYTES, vc, PyBytes_AS_STRING(vdata), PyBytes_GET_SIZE(vdata));
    /* The stores into committed memory (index slot, counts) come after the undo entry and
     * the new objects: a compiler barrier keeps them there. */
    __asm__ __volatile__("" ::: "memory");
    uint8_t *ep = h.base + e;
    put64(ep, (uint64_t)hv);
    put64(ep + 8, (uint64_t)ks);
    put64(ep + 16, (uint64_t)vs);
    put32(h.base + p, (uint32_t)(nent + 1));
    put64(h.base + d + HT_NENT, (uint64_t)(nent + 1));
    put64(h.base + d + 8, (uint64_t)get64(h.base + d + 8) + 1);
    r = 1;
out:
    h_release(&h);
    if (r < 0) return NULL;
    if (r) return PyLong_FromLongLong(e);
    Py_RETURN_NONE;
}

/* build_index(hashes, size) -> bytes: the index table of a hash table of `size` slots (a
 * power of two) holding entries 1..n with these hashes, probed as Heap._ht_resize probes
 * (perturbed linear probing, CPython's dict scheme), packed as little-endian u32.  A pure
 * function: the caller writes it into the new (fresh) table. */
static PyObject *build_index(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyList_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "build_index(hashes: list, size: int)");
        return NULL;
    }
    PyObject *hashes = args[0];
    Py_ssize_t size = PyLong_AsSsize_t(args[1]);
    if (size == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(hashes);
    if (size <= 0 || (size & (size - 1)) || n >= size || n >= 0xFFFFFFFE ||
        size > ((Py_ssize_t)1 << 40)) {
        PyErr_SetString(PyExc_ValueError, "size must be a power of two above the entry count");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, size * 4);
    if (!out) return NULL;
    uint8_t *idx = (uint8_t *)PyBytes_AS_STRING(out);
    memset(idx, 0, (size_t)size * 4);
    uint64_t mask = (uint64_t)size - 1;
    for (Py_ssize_t j = 0; j < n; j++) {
        uint64_t h = PyLong_AsUnsignedLongLongMask(PyList_GET_ITEM(hashes, j));
        if (h == (uint64_t)-1 && PyErr_Occurred()) {
            Py_DECREF(out);
            return NULL;
        }
        uint64_t i = h & mask, perturb = h;
        for (;;) {
            uint32_t v;
            memcpy(&v, idx + 4 * i, 4);
            if (!v) break;
            perturb >>= 5;
            i = (i * 5 + perturb + 1) & mask;
        }
        put32(idx + 4 * i, (uint32_t)(j + 1));
    }
    return out;
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(small_table, class_sizes, leaf_types, xxh3_64_intdigest)"},
    {"store_blob", (PyCFunction)(void (*)(void))store_blob, METH_FASTCALL,
     "store_blob(heap, off, t, data) -> bool: the common path of Heap._store_blob"},
    {"insert_blobs", (PyCFunction)(void (*)(void))insert_blobs, METH_FASTCALL,
     "insert_blobs(heap, d, h, p, kt, kdata, vdata) -> entry offset or None: the common "
     "path of Heap._ht_insert_blobs"},
    {"build_index", (PyCFunction)(void (*)(void))build_index, METH_FASTCALL,
     "build_index(hashes, size) -> bytes: the packed index table Heap._ht_resize builds"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speedups",
                                    "Compiled fast paths of the persistent heap.", -1, methods};

/* API: what heap.py checks before it uses this module (heap.FAST_API); raise it with any
 * change of these functions' arguments or behaviour. */
#define API 2

PyMODINIT_FUNC PyInit__speedups(void) {
    if (intern_all() < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "API", API) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
