/* Compiled fast paths of the heap's hottest stores (optional; see docs/heap.md).
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
 * dict_set(heap, d, key, value) is PDict.__setitem__ whole on its common path (a bytes value
 * under a bytes or str key): the lookup in the table's DRAM index, or a probe of its index
 * table in the pool when it has none, then the store above or the insert above (the key
 * hashed as hashing.phash hashes it, the slot found as Heap._ht_free_slot finds it) and the
 * index update through Heap._ix_add.  False, having changed nothing, for anything else.
 *
 * log_read(buf, data, cap, pos) is OpLog.read of an entry that passes its checks.
 *
 * ht_seek(heap, d, es, key) is Heap._ht_seek of a bytes or str key, probed in the pool (a
 * big table of such keys has no DRAM index when this module is used: docs/heap.md).
 *
 * decode_blobs(buf, slots) reads the bytes/str objects at a run of slots out of the pool for
 * materialize (recovery), or declines.
 *
 * The heap's and undo log's attributes are read from their instance dicts, and the layout
 * constants compiled in are exported for native.py to check against its own.
 *
 * The rarer paths (an undo segment that is full, a big object, a heap that must grow, a
 * table that must grow, a read-only heap) stay in Python, which
 * stays the reference implementation: tests hold these functions to it byte for byte.  On
 * a device that persists, an undo entry is flushed and fenced through the device's own
 * methods before the store it covers, as UndoLog.log_block does.
 *
 * The pool format is little-endian; configure() refuses to run elsewhere.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <dlfcn.h>
#include <stdint.h>
#include <string.h>

#define MAXCLASSES 256
#define SMALL_LIMIT 4096 /* objects this big or bigger take the Python path */
#define HT_NENT 16       /* a table header's entry count (layout.py HT_NENT) */
#define HT_ENTS 32       /* a table header's entries array (layout.py HT_ENTS) */
#define ENTRY 24         /* bytes of a dict entry: hash, key slot, value slot */
#define T_BYTES 2
#define T_STR 1
#define PREFETCH_AHEAD 12 /* objects decode_blobs (index slots rehash) prefetches ahead */
#define HT_ITAB 24       /* a table header's index table (layout.py HT_ITAB) */
#define IX_EMPTY 0
#define IX_DUMMY 0xFFFFFFFFu
#define DUMMY 26        /* the key slot of a deleted entry (layout.py DUMMY) */
#define PERTURB_SHIFT 5  /* of the probe sequence (layout.py PERTURB_SHIFT) */
/* Tables of more entries than this whose keys are all bytes or str have no DRAM index when
 * this module is used: they are probed in the pool (native.py PROBE_OVER; docs/heap.md) */
#define PROBE_OVER 4096

static int configured = 0;
static uint32_t small_table[SMALL_LIMIT / 32 + 1];
static uint64_t class_sizes[MAXCLASSES];
static int nclasses = 0;
static uint64_t leaves_mask = 0; /* bit t set: type t is a leaf */
static PyObject *xxh3 = NULL;    /* xxhash.xxh3_64_intdigest */
/* The xxHash library's own functions, found in the xxhash package's extension module (which
 * links the library and exports its symbols) and checked against the Python functions at
 * configure(); NULL when they cannot be had, and the Python functions are called instead. */
typedef uint64_t (*xxh3_fn)(const void *, size_t, uint64_t);
typedef uint32_t (*xxh32_fn)(const void *, size_t, uint32_t);
static xxh3_fn c_xxh3 = NULL;
static xxh32_fn c_xxh32 = NULL;

static PyObject *s_fresh_big, *s_writable, *s_ctop, *s_nolog, *s_undo, *s_pos, *s_end,
    *s_batch, *s_bmix, *s_count, *s_persists, *s_fence, *s_buf, *s_logged, *s_freelists, *s_fresh,
    *s_top, *s_dev, *s_size, *s_rc, *s_deferred, *s_decref, *s_flush, *s_drain, *s_ix,
    *s_ix_add, *s_fast,
    *s_index_limit, *s_ix_adds, *s_ix_budget, *s_own, *s_dc, *s_proxies, *s_parents, *s_load,
    *s_ix_probed, *s_conv, *s_opaque, *s_zero, *s_memo, *s_end_op, *s_call;

static int intern_all(void) {
#define I(var, name) if (!(var = PyUnicode_InternFromString(name))) return -1;
    I(s_fresh_big, "_fresh_big") I(s_writable, "_writable") I(s_ctop, "_ctop")
    I(s_nolog, "_nolog") I(s_undo, "undo") I(s_pos, "_pos") I(s_end, "_end")
    I(s_batch, "batch") I(s_bmix, "_bmix") I(s_count, "count") I(s_persists, "_persists")
    I(s_fence, "_entry_fence")
    I(s_buf, "buf") I(s_logged, "_logged") I(s_freelists, "_freelists") I(s_fresh, "_fresh")
    I(s_top, "_top") I(s_dev, "dev") I(s_size, "size") I(s_rc, "_rc")
    I(s_deferred, "_deferred") I(s_decref, "decref") I(s_flush, "flush")
    I(s_drain, "drain") I(s_ix, "table_indexes") I(s_ix_add, "_ix_add") I(s_ix_probed, "_ix_probed")
    I(s_fast, "fast") I(s_index_limit, "index_limit") I(s_ix_adds, "_ix_adds")
    I(s_ix_budget, "_ix_budget") I(s_own, "_own") I(s_dc, "_dc") I(s_proxies, "live_proxies")
    I(s_parents, "proxy_parents") I(s_load, "load") I(s_conv, "_conv") I(s_opaque, "_opaque")
    I(s_zero, "_zero") I(s_memo, "_memo") I(s_end_op, "end_op")
    I(s_call, "__persimmon_call__")
#undef I
    return 0;
}

/* What this module reads of Python objects by name (the names interned above), exported as
 * CONTRACT for native.py, which compares it with its own declaration at load and checks
 * every Heap against it when the Heap is built: renaming one of these attributes in Python
 * fails there at once instead of silently sending every store down the Python path.
 *   heap: Heap instance-dict attributes;  heap_methods: Heap methods called;
 *   undo: UndoLog instance-dict attributes;  device: attributes and methods of the devices
 *   (heap.dev, undo.dev);  proxy_class: class attributes of the proxy classes;
 *   proxy_slots: __slots__ members of the proxies' base (checked by proxy_method too). */
static const char *const C_HEAP[] = {"_fresh_big", "_writable", "_ctop", "_top", "_nolog",
    "_logged", "_freelists", "_fresh", "_rc", "_deferred", "undo", "buf", "dev", "table_indexes",
    "_ix_adds", "_ix_budget", "index_limit", "live_proxies", "proxy_parents", "fast", "_conv",
    "_opaque", "_zero", "_memo", NULL};
static const char *const C_HEAP_METHODS[] = {"decref", "_ix_add", "_ix_probed", "load",
    "end_op", NULL};
static const char *const C_UNDO[] = {"_persists", "_entry_fence", "dev", "_pos", "_end", "batch", "count",
    "_bmix", NULL};
static const char *const C_DEVICE[] = {"size", "buf", "flush", "drain", NULL};
static const char *const C_PROXY_CLASS[] = {"_own", "_dc", NULL};
static const char *const C_PROXY_SLOTS[] = {"_h", "_o", "_ad", NULL};
/* the fields of ApplyContext, apply_run's context (its keyword arguments and members) */
static const char *const C_APPLY_CONTEXT[] = {"dev", "data", "cap", "apply", "apply_op",
    "root", "heap", "loads", "max_batch", "threshold", "undo", "raised", "end_failed", NULL};

static PyObject *names_tuple(const char *const *names) {
    Py_ssize_t n = 0;
    while (names[n]) n++;
    PyObject *t = PyTuple_New(n);
    for (Py_ssize_t i = 0; t && i < n; i++) {
        PyObject *u = PyUnicode_InternFromString(names[i]);
        if (!u) {
            Py_CLEAR(t);
            break;
        }
        PyTuple_SET_ITEM(t, i, u);
    }
    return t;
}

static PyObject *contract(void) {
    PyObject *d = PyDict_New();
    const char *keys[] = {"heap", "heap_methods", "undo", "device", "proxy_class",
                          "proxy_slots", "apply_context"};
    const char *const *vals[] = {C_HEAP, C_HEAP_METHODS, C_UNDO, C_DEVICE, C_PROXY_CLASS,
                                 C_PROXY_SLOTS, C_APPLY_CONTEXT};
    for (int i = 0; d && i < 7; i++) {
        PyObject *t = names_tuple(vals[i]);
        if (!t || PyDict_SetItemString(d, keys[i], t) < 0) Py_CLEAR(d);
        Py_XDECREF(t);
    }
    return d;
}

/* fn(data, seed) as an unsigned integer in *out, for one of xxhash's Python functions
 * (data: a bytes object): 0, or -1 on error */
static int py_hash(PyObject *fn, PyObject *data, uint64_t seed, uint64_t *out) {
    PyObject *sd = PyLong_FromUnsignedLongLong(seed);
    if (!sd) return -1;
    PyObject *hargs[2] = {data, sd};
    PyObject *hv = PyObject_Vectorcall(fn, hargs, 2, NULL);
    Py_DECREF(sd);
    if (!hv) return -1;
    *out = PyLong_AsUnsignedLongLongMask(hv);
    Py_DECREF(hv);
    return PyErr_Occurred() ? -1 : 0;
}

/* Python's answer and the C function's for one input: 1 same, 0 not, -1 error */
static int same_hash(PyObject *pyfn, const char *data, Py_ssize_t n, uint64_t seed, int bits) {
    PyObject *b = PyBytes_FromStringAndSize(data, n);
    uint64_t want;
    int r = b ? py_hash(pyfn, b, seed, &want) : -1;
    Py_XDECREF(b);
    if (r < 0) return -1;
    uint64_t got = bits == 64 ? c_xxh3(data, (size_t)n, seed)
                              : (uint64_t)c_xxh32(data, (size_t)n, (uint32_t)seed);
    return got == want;
}

/* Bind c_xxh3/c_xxh32 from the shared library at path lib (already loaded: the xxhash
 * package's extension module) when both give what the Python functions give on inputs of
 * every length class xxHash treats apart.  0 (bound or not), -1 on error. */
static int bind_xxhash(PyObject *lib, PyObject *fn, PyObject *fn32) {
    c_xxh3 = NULL;
    c_xxh32 = NULL;
    if (lib == Py_None || fn32 == Py_None) return 0;
    PyObject *enc = PyUnicode_EncodeFSDefault(lib);
    if (!enc) return -1;
    void *handle = dlopen(PyBytes_AS_STRING(enc), RTLD_NOW | RTLD_NOLOAD);
    Py_DECREF(enc);
    if (!handle) return 0;
    xxh3_fn f3 = (xxh3_fn)dlsym(handle, "XXH3_64bits_withSeed");
    xxh32_fn f32 = (xxh32_fn)dlsym(handle, "XXH32");
    dlclose(handle); /* (the module keeps it loaded) */
    if (!f3 || !f32) return 0;
    c_xxh3 = f3;
    c_xxh32 = f32;
    static const Py_ssize_t lens[] = {0, 1, 3, 4, 8, 9, 16, 17, 32, 100, 128, 129, 240, 241,
                                      1000, 4000};
    static const uint64_t seeds[] = {0, 1, 0x9E3779B97F4A7C15ULL, 0xFFFFFFFFULL};
    char data[4000];
    for (int i = 0; i < (int)sizeof data; i++) data[i] = (char)(i * 131 + (i >> 7));
    for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
        for (size_t j = 0; j < sizeof seeds / sizeof *seeds; j++) {
            int a = same_hash(fn, data, lens[i], seeds[j], 64), b = 0;
            if (a > 0) b = same_hash(fn32, data, lens[i], seeds[j] & 0xFFFFFFFF, 32);
            if (a <= 0 || b <= 0) {
                c_xxh3 = NULL;
                c_xxh32 = NULL;
                return a < 0 || b < 0 ? -1 : 0;
            }
        }
    }
    return 0;
}

/* direct_hashes() -> bool: whether configure() bound the xxHash library's functions */
static PyObject *direct_hashes(PyObject *self, PyObject *unused) {
    return PyBool_FromLong(c_xxh3 != NULL && c_xxh32 != NULL);
}

static PyObject *configure(PyObject *self, PyObject *args) {
    PyObject *table, *sizes, *leaves, *fn, *fn32 = Py_None, *lib = Py_None;
    if (!PyArg_ParseTuple(args, "OOOO|OO", &table, &sizes, &leaves, &fn, &fn32, &lib))
        return NULL;
    if (lib != Py_None && !PyUnicode_Check(lib)) {
        PyErr_SetString(PyExc_TypeError, "configure: the library path must be a str");
        return NULL;
    }
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
    if (bind_xxhash(lib, fn, fn32) < 0) return NULL;
    configured = 1;
    Py_RETURN_NONE;
}

static inline void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static inline void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
/* The slot after `i` in a hash table's probe sequence (perturbed linear probing, CPython's
 * dict scheme, as heap.py probes): every probe loop of this module steps with it. */
static inline uint64_t probe_next(uint64_t i, uint64_t *perturb, uint64_t mask) {
    *perturb >>= PERTURB_SHIFT;
    return (i * 5 + *perturb + 1) & mask;
}
static inline int64_t get64(const uint8_t *p) {
    int64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* xxh3_64 of data[0..n) with seed, by the library's function when bound, else by the Python
 * function (obj: a bytes object holding exactly that data, or NULL to make one): 0, or -1
 * on error. */
static int hash3(const char *data, Py_ssize_t n, uint64_t seed, PyObject *obj, uint64_t *out) {
    if (c_xxh3) {
        *out = c_xxh3(data, (size_t)n, seed);
        return 0;
    }
    PyObject *b = obj ? Py_NewRef(obj) : PyBytes_FromStringAndSize(data, n);
    int r = b ? py_hash(xxh3, b, seed, out) : -1;
    Py_XDECREF(b);
    return r;
}

/* The heap's and the undo log's attributes are read from their instance dicts: neither class
 * defines a descriptor for any of these names, so this is what getattr finds, without the
 * type lookup getattr makes first (a store reads about twenty of them). */

/* an attribute (borrowed), or NULL: with an error set, or without one when it is missing */
static PyObject *d_item(PyObject *dict, PyObject *name) {
    return PyDict_GetItemWithError(dict, name);
}

/* an attribute as a C integer: 1, 0 when it is missing or not an int, -1 on error */
static int d_i64(PyObject *dict, PyObject *name, long long *out) {
    PyObject *v = d_item(dict, name);
    if (!v) return PyErr_Occurred() ? -1 : 0;
    if (!PyLong_CheckExact(v)) return 0;
    *out = PyLong_AsLongLong(v);
    if (*out == -1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* an attribute's truth: 1 or 0; -1 on error; 2 when it is missing */
static int d_truth(PyObject *dict, PyObject *name) {
    PyObject *v = d_item(dict, name);
    if (!v) return PyErr_Occurred() ? -1 : 2;
    return PyObject_IsTrue(v);
}

static int d_set_i64(PyObject *dict, PyObject *name, long long value) {
    PyObject *v = PyLong_FromLongLong(value);
    if (!v) return -1;
    int r = PyDict_SetItem(dict, name, v);
    Py_DECREF(v);
    return r;
}

/* the instance dict of o (a new reference), or NULL: with an error set, or without one when
 * o has none (a class with __slots__: the Python path) */
static PyObject *inst_dict(PyObject *o) {
    PyObject *dict = PyObject_GenericGetDict(o, NULL);
    if (!dict && PyErr_ExceptionMatches(PyExc_AttributeError)) PyErr_Clear();
    if (dict && !PyDict_CheckExact(dict)) {
        Py_DECREF(dict);
        return NULL;
    }
    return dict;
}

/* What the stores read of the heap, fetched once per call (owned references). */
typedef struct {
    PyObject *heap, *hd, *ud, *udev, *nolog, *logged, *freelists, *fresh, *rc, *deferred,
        *buf, *fresh_big;
    Py_buffer view;
    int have_view, persists, fence;
    uint8_t *base;
    Py_ssize_t blen;
    long long ctop, top, size, pos, end, batch, bmix, count;
} H;

static void h_release(H *h) {
    if (h->have_view) PyBuffer_Release(&h->view);
    h->have_view = 0;
    Py_CLEAR(h->hd);
    Py_CLEAR(h->ud);
    Py_CLEAR(h->udev);
    Py_CLEAR(h->nolog);
    Py_CLEAR(h->logged);
    Py_CLEAR(h->freelists);
    Py_CLEAR(h->fresh);
    Py_CLEAR(h->rc);
    Py_CLEAR(h->deferred);
    Py_CLEAR(h->buf);
    Py_CLEAR(h->fresh_big);
}

/* an attribute (a new reference into *dst): 1, 0 when missing, -1 on error */
static int d_ref(PyObject *dict, PyObject *name, PyObject **dst) {
    PyObject *v = d_item(dict, name);
    if (!v) return PyErr_Occurred() ? -1 : 0;
    Py_INCREF(v);
    *dst = v;
    return 1;
}

/* 1: loaded; 0: this heap needs the Python path; -1: error.  Release with h_release.
 * hd: the heap's instance dict when the caller has it (a reference h_load takes over), or
 * NULL. */
static int h_load(H *h, PyObject *heap, PyObject *hd) {
    memset(h, 0, sizeof *h);
    h->heap = heap;
    h->hd = hd;
    int r;
    if (!configured) return 0;
    if (!hd && !(hd = h->hd = inst_dict(heap))) return PyErr_Occurred() ? -1 : 0;
    /* (the big chunks fresh in this batch: their blocks need no undo entry, h_marked) */
    if ((r = d_ref(hd, s_fresh_big, &h->fresh_big)) != 1) return r;
    if (!PyList_CheckExact(h->fresh_big)) return 0;
    if ((r = d_truth(hd, s_writable)) != 1) return r < 0 ? -1 : 0;
    if ((r = d_i64(hd, s_ctop, &h->ctop)) != 1 || (r = d_i64(hd, s_top, &h->top)) != 1)
        return r;
    if ((r = d_ref(hd, s_nolog, &h->nolog)) != 1 || (r = d_ref(hd, s_logged, &h->logged)) != 1 ||
        (r = d_ref(hd, s_freelists, &h->freelists)) != 1 ||
        (r = d_ref(hd, s_fresh, &h->fresh)) != 1 || (r = d_ref(hd, s_rc, &h->rc)) != 1 ||
        (r = d_ref(hd, s_deferred, &h->deferred)) != 1)
        return r;
    if (!PySet_Check(h->nolog) || !PyList_CheckExact(h->logged) ||
        !PyList_CheckExact(h->freelists) || PyList_GET_SIZE(h->freelists) < nclasses ||
        !PyList_CheckExact(h->fresh) || !PyDict_CheckExact(h->rc) ||
        !PyList_CheckExact(h->deferred))
        return 0;
    h->size = -1; /* (read by h_size when a chunk must come from the top) */
    PyObject *undo = d_item(hd, s_undo);
    if (!undo) return PyErr_Occurred() ? -1 : 0;
    if (!(h->ud = inst_dict(undo))) return PyErr_Occurred() ? -1 : 0;
    PyObject *ud = h->ud;
    if ((h->persists = d_truth(ud, s_persists)) != 0 && h->persists != 1)
        return h->persists < 0 ? -1 : 0;
    if (h->persists && (r = d_ref(ud, s_dev, &h->udev)) != 1) return r;
    /* each entry flushed and fenced before its store, or (a device whose write-backs are
     * atomic) flushed with the batch's blocks at commit: UndoLog.batch_ranges */
    if ((h->fence = h->persists ? d_truth(ud, s_fence) : 0) != 0 && h->fence != 1)
        return h->fence < 0 ? -1 : 0;
    if ((r = d_i64(ud, s_pos, &h->pos)) != 1 || (r = d_i64(ud, s_end, &h->end)) != 1 ||
        (r = d_i64(ud, s_batch, &h->batch)) != 1 || (r = d_i64(ud, s_count, &h->count)) != 1)
        return r;
    PyObject *bm = d_item(ud, s_bmix);
    if (!bm) return PyErr_Occurred() ? -1 : 0;
    h->bmix = (long long)PyLong_AsUnsignedLongLongMask(bm);
    if (PyErr_Occurred()) return -1;
    if ((r = d_ref(hd, s_buf, &h->buf)) != 1) return r;
    if (PyObject_GetBuffer(h->buf, &h->view, PyBUF_WRITABLE) < 0) return -1;
    h->have_view = 1;
    h->base = (uint8_t *)h->view.buf;
    h->blen = h->view.len;
    return 1;
}

/* 1 if the block at a lies inside one of the big chunks fresh in this batch (the heap's
 * _fresh_big: sorted, disjoint (start, end) ranges; WriteSet._in_fresh_big), 0 if not, -1
 * on error */
static int h_in_fresh_big(H *h, long long a) {
    Py_ssize_t lo = 0, hi = PyList_GET_SIZE(h->fresh_big);
    long long start = 0, end = 0;
    while (lo < hi) { /* the last range that starts at or below a */
        Py_ssize_t mid = (lo + hi) / 2;
        PyObject *t = PyList_GET_ITEM(h->fresh_big, mid);
        if (!PyTuple_CheckExact(t) || PyTuple_GET_SIZE(t) != 2) {
            PyErr_SetString(PyExc_RuntimeError, "heap._fresh_big holds a non-range");
            return -1;
        }
        long long s0 = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 0));
        if (s0 == -1 && PyErr_Occurred()) return -1;
        if (s0 <= a) {
            start = s0;
            end = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 1));
            if (end == -1 && PyErr_Occurred()) return -1;
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo > 0 && start <= a && a < end;
}

/* 1 if block number b is marked as logged (or lies in a big chunk fresh in this batch), 0
 * if not, -1 on error */
static int h_marked(H *h, long long b) {
    PyObject *k = PyLong_FromLongLong(b);
    if (!k) return -1;
    int c = PySet_Contains(h->nolog, k);
    Py_DECREF(k);
    if (c == 0 && PyList_GET_SIZE(h->fresh_big)) c = h_in_fresh_big(h, b << 5);
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

/* The undo log's append of one entry: UndoLog.log_block's body (the Python method calls
 * undo_log_block below, which calls this; UndoLog._log_block_python is the pure-Python twin)
 * and the undo logging of the compiled stores (h_log_block).  The entry for the block at a
 * (its old 32 bytes, checksummed) at *pos in base, then the log's position and count
 * advanced, in *pos and *count and in ud (the undo log's instance dict), and on a device
 * whose entries are fenced one by one (udev not NULL), flushed and fenced before the
 * caller's store.  The caller checked that the segment has room.  0, or -1 on error. */
static int undo_append(uint8_t *base, PyObject *ud, PyObject *udev, long long *pos,
                       long long *count, long long batch, long long bmix, long long a) {
    uint8_t *e = base + *pos;
    uint64_t sum;
    if (hash3((const char *)base + a, 32, (uint64_t)a ^ (uint64_t)bmix, NULL, &sum) < 0)
        return -1;
    put64(e, (uint64_t)a);
    put64(e + 8, (uint64_t)batch);
    put64(e + 16, sum);
    put64(e + 24, 0);
    memcpy(e + 32, base + a, 32);
    long long at = *pos;
    *pos += 64;
    *count += 1;
    if (d_set_i64(ud, s_pos, *pos) < 0 || d_set_i64(ud, s_count, *count) < 0) return -1;
    if (udev) { /* durable before the store */
        PyObject *res = PyObject_CallMethod(udev, "flush", "LL", at, 64LL);
        if (!res) return -1;
        Py_DECREF(res);
        res = PyObject_CallMethodNoArgs(udev, s_drain);
        if (!res) return -1;
        Py_DECREF(res);
    }
    return 0;
}

/* Undo-log the block holding off (the caller checked it needs it and that the segment has
 * room): the entry (undo_append), and the block marked as logged in the heap's write set
 * and listed for the flush at commit.  0, or -1 on error. */
static int h_log_block(H *h, long long off) {
    long long b = off >> 5;
    if (undo_append(h->base, h->ud, h->fence ? h->udev : NULL, &h->pos, &h->count,
                    h->batch, h->bmix, b << 5) < 0)
        return -1;
    PyObject *bk = PyLong_FromLongLong(b);
    if (!bk) return -1;
    int r = PySet_Add(h->nolog, bk) < 0 || PyList_Append(h->logged, bk) < 0;
    Py_DECREF(bk);
    return r ? -1 : 0;
}

/* undo_log_block(undo, a) -> bool: UndoLog.log_block (one entry for the block at a, durable
 * when this returns True); False, having changed nothing, when the segment is full (the
 * Python method spills) or the undo log is not one this module reads. */
static PyObject *undo_log_block(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "undo_log_block(undo, a)");
        return NULL;
    }
    long long a = PyLong_AsLongLong(args[1]);
    if (a == -1 && PyErr_Occurred()) return NULL;
    if (!configured || a < 0) Py_RETURN_FALSE;
    PyObject *ud = inst_dict(args[0]), *dev = NULL, *buf = NULL;
    if (!ud) {
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_FALSE;
    }
    long long pos, end, batch, count, bmix = 0;
    int ok = -1, r, fence;
    int persists = d_truth(ud, s_persists);
    if (persists < 0) goto out;
    if (persists > 1) goto decline;
    fence = persists ? d_truth(ud, s_fence) : 0;
    if (fence < 0) goto out;
    if (fence > 1) goto decline;
    if ((r = d_i64(ud, s_pos, &pos)) != 1 || (r = d_i64(ud, s_end, &end)) != 1 ||
        (r = d_i64(ud, s_batch, &batch)) != 1 || (r = d_i64(ud, s_count, &count)) != 1) {
        if (r < 0) goto out;
        goto decline;
    }
    PyObject *bm = d_item(ud, s_bmix);
    if (!bm) {
        if (PyErr_Occurred()) goto out;
        goto decline;
    }
    bmix = (long long)PyLong_AsUnsignedLongLongMask(bm);
    if (PyErr_Occurred()) goto out;
    if (pos + 64 > end) goto decline;
    if ((r = d_ref(ud, s_dev, &dev)) != 1) {
        if (r < 0) goto out;
        goto decline;
    }
    if (!(buf = PyObject_GetAttr(dev, s_buf))) goto out;
    Py_buffer view;
    if (PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE) < 0) goto out;
    if (pos < 0 || pos + 64 > view.len || a + 32 > view.len) {
        PyBuffer_Release(&view);
        goto decline;
    }
    r = undo_append((uint8_t *)view.buf, ud, fence ? dev : NULL, &pos, &count, batch,
                    bmix, a);
    PyBuffer_Release(&view);
    ok = r < 0 ? -1 : 1;
    goto out;
decline:
    ok = 0;
out:
    Py_DECREF(ud);
    Py_XDECREF(dev);
    Py_XDECREF(buf);
    if (ok < 0) return NULL;
    return PyBool_FromLong(ok);
}

/* The size class of a new bytes/str object of n payload bytes; -1 for the Python path */
static int blob_class(Py_ssize_t n) {
    long long nb = 16 + (long long)n;
    return nb >= SMALL_LIMIT ? -1 : (int)small_table[(nb + 31) >> 5];
}

/* The device's mapped size, read at the first need: 0, or -1 (an error set, or not: the
 * Python path) */
static int h_size(H *h) {
    if (h->size >= 0) return 0;
    PyObject *dev = d_item(h->hd, s_dev);
    if (!dev) return -1;
    Py_INCREF(dev); /* (a device may define size as a property, which runs Python code) */
    PyObject *sz = PyObject_GetAttr(dev, s_size);
    Py_DECREF(dev);
    if (!sz) return -1;
    h->size = PyLong_AsLongLong(sz);
    Py_DECREF(sz);
    return h->size < 0 ? -1 : 0;
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
    if (top == h->top) return 1;
    if (h_size(h) < 0) {
        PyErr_Clear(); /* (the Python path raises what it must) */
        return 0;
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
        if (h->persists) { /* listed for the flush at commit (nothing to flush otherwise) */
            PyObject *t = Py_BuildValue("(LK)", x, (unsigned long long)class_sizes[xc]);
            if (!t) return -1;
            int r = PyList_Append(h->fresh, t);
            Py_DECREF(t);
            if (r < 0) return -1;
        }
        *chunk_class = xc;
        return x;
    }
    long long x = h->top;
    h->top += (long long)class_sizes[cls];
    if (d_set_i64(h->hd, s_top, h->top) < 0) return -1;
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

/* The body of store_blob on a loaded heap: 1 stored, 0 declined (nothing changed), -1 error.
 * It may release the buffer view (the caller must not use h->base afterwards). */
static int h_store_blob(H *h, long long off, long t, PyObject *data) {
    int cls = blob_class(PyBytes_GET_SIZE(data));
    if (cls < 0 || off <= 0 || (off & 7) || t < 0 || t > 255) return 0;
    int need = h_needs_log(h, off);
    if (need < 0) return -1;
    if (off + 8 > h->blen || (need && h->pos + 64 > h->end) ||
        (need && h->pos + 64 > h->blen) || !h_can_alloc(h, &cls, 1))
        return 0;
    /* ---- from here on the store happens ---- */
    if (need && h_log_block(h, off) < 0) return -1;
    if (need && !h_can_alloc(h, &cls, 1)) /* the device's drain ran Python: look again */
        return 0; /* (the block is logged and marked: the Python path skips that part) */
    uint8_t xc;
    long long x = h_alloc(h, cls, &xc);
    if (x < 0) return -1;
    h_write_blob(h, x, (int)t, xc, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data));
    /* The slot store comes after the undo entry and the new object: a compiler barrier
     * keeps it there (a process killed in between must find them in memory). */
    __asm__ __volatile__("" ::: "memory");
    int64_t old = get64(h->base + off);
    put64(h->base + off, (uint64_t)x);
    if (old <= 0 || (old & 7)) return 1;
    int leaf = 0;
    if (old < h->blen) {
        uint8_t ty = h->base[old];
        leaf = ty < 64 && ((leaves_mask >> ty) & 1);
    }
    PyObject *ok = PyLong_FromLongLong(old);
    if (!ok) return -1;
    int in_rc = PyDict_Contains(h->rc, ok);
    if (in_rc < 0) {
        Py_DECREF(ok);
        return -1;
    }
    if (!in_rc && leaf) { /* count 1 -> 0: freed at the end of the operation */
        int e = PyList_Append(h->deferred, ok);
        Py_DECREF(ok);
        return e < 0 ? -1 : 1;
    }
    PyBuffer_Release(&h->view); /* (the bookkeeping may remap the buffer) */
    h->have_view = 0;
    PyObject *res = PyObject_CallMethodOneArg(h->heap, s_decref, ok);
    Py_DECREF(ok);
    if (!res) return -1;
    Py_DECREF(res);
    return 1;
}

static PyObject *store_blob(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "store_blob(heap, off, t, data)");
        return NULL;
    }
    long long off = PyLong_AsLongLong(args[1]);
    long t = PyLong_AsLong(args[2]);
    if (PyErr_Occurred()) return NULL;
    if (!PyBytes_CheckExact(args[3])) Py_RETURN_FALSE;
    H h;
    int r = h_load(&h, args[0], NULL);
    if (r > 0) r = h_store_blob(&h, off, t, args[3]);
    h_release(&h);
    if (r < 0) return NULL;
    if (r) Py_RETURN_TRUE;
    Py_RETURN_FALSE;
}

/* The body of insert_blobs on a loaded heap: 1 inserted (entry offset in *eout), 0
 * declined (nothing changed), -1 error. */
static int h_insert_blobs(H *h, long long d, uint64_t hv, long long p, long kt,
                          PyObject *kdata, PyObject *vdata, long long *eout) {
    if (d <= 0 || (d & 7) || p <= 0 || (p & 3) || kt < 0 || kt > 255) return 0;
    int cls[2] = {blob_class(PyBytes_GET_SIZE(kdata)), blob_class(PyBytes_GET_SIZE(vdata))};
    if (cls[0] < 0 || cls[1] < 0) return 0;
    if (d + 48 > h->blen || p + 4 > h->blen) return 0;
    long long nent = get64(h->base + d + HT_NENT);
    long long ents = get64(h->base + d + HT_ENTS);
    if (nent < 0 || ents <= 0 || ents + 16 > h->blen) return 0;
    long long cap = get64(h->base + ents + 8);
    if (nent >= cap) return 0; /* the table must grow: Python */
    long long e = ents + 16 + ENTRY * nent;
    if (e + ENTRY > h->blen) return 0;
    /* the header block (the counts) must be logged in this batch already (or be fresh):
     * else Python logs it and the index slot in one round */
    int hneed = h_needs_log(h, d);
    int pneed = h_needs_log(h, p);
    if (hneed < 0 || pneed < 0) return -1;
    if (hneed || (pneed && (h->pos + 64 > h->end || h->pos + 64 > h->blen)) ||
        !h_can_alloc(h, cls, 2))
        return 0;
    /* ---- from here on the insert happens ---- */
    if (e < h->ctop) { /* the entry's blocks: flushed at commit, never undo-logged */
        long long b = e >> 5, b1 = (e + ENTRY - 1) >> 5;
        if (h_list_for_flush(h, b) < 0 || (b1 != b && h_list_for_flush(h, b1) < 0))
            return -1;
    }
    if (pneed) {
        if (h_log_block(h, p) < 0) return -1;
        if (!h_can_alloc(h, cls, 2)) /* the device's drain ran Python: look again */
            return 0; /* (what is done is marked: the Python path skips it, or repeats a
                         block in the flush list, which is harmless) */
    }
    uint8_t kc, vc;
    long long ks = h_alloc(h, cls[0], &kc);
    if (ks < 0) return -1;
    h_write_blob(h, ks, (int)kt, kc, PyBytes_AS_STRING(kdata), PyBytes_GET_SIZE(kdata));
    long long vs = h_alloc(h, cls[1], &vc);
    if (vs < 0) return -1;
    h_write_blob(h, vs, T_BYTES, vc, PyBytes_AS_STRING(vdata), PyBytes_GET_SIZE(vdata));
    /* The stores into committed memory (index slot, counts) come after the undo entry and
     * the new objects: a compiler barrier keeps them there. */
    __asm__ __volatile__("" ::: "memory");
    uint8_t *ep = h->base + e;
    put64(ep, hv);
    put64(ep + 8, (uint64_t)ks);
    put64(ep + 16, (uint64_t)vs);
    put32(h->base + p, (uint32_t)(nent + 1));
    put64(h->base + d + HT_NENT, (uint64_t)(nent + 1));
    put64(h->base + d + 8, (uint64_t)get64(h->base + d + 8) + 1);
    *eout = e;
    return 1;
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
    if (!PyBytes_CheckExact(args[5]) || !PyBytes_CheckExact(args[6])) Py_RETURN_NONE;
    H h;
    long long e = 0;
    int r = h_load(&h, args[0], NULL);
    if (r > 0) r = h_insert_blobs(&h, d, (uint64_t)hv, p, kt, args[5], args[6], &e);
    h_release(&h);
    if (r < 0) return NULL;
    if (r) return PyLong_FromLongLong(e);
    Py_RETURN_NONE;
}

/* Heap._ix_add(d, key, e) for its common case (the table is indexed, the index has room
 * and the heap's budget of additions is not used up): 1 done, 0 left to Heap._ix_add, -1
 * error.  key is a bytes or str object (an index key type). */
static int ix_add(PyObject *hd, PyObject *dobj, PyObject *key, long long e) {
    long long limit, adds, budget;
    int r;
    if ((r = d_i64(hd, s_index_limit, &limit)) != 1 || (r = d_i64(hd, s_ix_adds, &adds)) != 1 ||
        (r = d_i64(hd, s_ix_budget, &budget)) != 1)
        return r;
    PyObject *ixs = d_item(hd, s_ix), *ix;
    if (!ixs || !PyDict_CheckExact(ixs) || !(ix = PyDict_GetItemWithError(ixs, dobj)) ||
        !PyDict_CheckExact(ix))
        return PyErr_Occurred() ? -1 : 0;
    if (PyDict_GET_SIZE(ix) >= limit || adds + 1 > budget) return 0;
    PyObject *eobj = PyLong_FromLongLong(e);
    if (!eobj) return -1;
    Py_INCREF(ix);
    r = PyDict_SetItem(ix, key, eobj);
    Py_DECREF(ix);
    Py_DECREF(eobj);
    if (r < 0) return -1;
    return d_set_i64(hd, s_ix_adds, adds + 1) < 0 ? -1 : 1;
}

/* The stored form of a bytes or str key and its hash, as hashing.phash computes it: 1 (a
 * new reference in *kdata), 0 for the Python path, -1 on error. */
static int key_form(PyObject *key, long kt, PyObject **kdata, uint64_t *hv) {
    if (kt == T_BYTES) {
        Py_INCREF(key);
        *kdata = key;
    } else if (!(*kdata = PyUnicode_AsEncodedString(key, "utf-8", "surrogatepass"))) {
        PyErr_Clear(); /* (the Python path raises what it must) */
        return 0;
    }
    if (hash3(PyBytes_AS_STRING(*kdata), PyBytes_GET_SIZE(*kdata), kt == T_BYTES ? 0 : 1,
              *kdata, hv) < 0)
        goto fail;
    return 1;
fail:
    Py_CLEAR(*kdata);
    return -1;
}

/* Probe table d (entries of es bytes) for a key of type kt (T_BYTES or T_STR) whose stored
 * form is kb[0..n) and whose hash is hv, as Heap._ht_find probes: 1 found (*e its entry,
 * *p its index slot), 0 absent (*p the slot a new entry takes, as Heap._ht_seek gives it:
 * the first dummy slot of the sequence, else the empty slot that ends it), -2 for the
 * Python path (a stored key with that hash of a type whose equality with kb only Python
 * decides, or a table that does not look right). */
static int t_find(const uint8_t *base, Py_ssize_t blen, long long d, long long es,
                  uint64_t hv, long kt, const char *kb, Py_ssize_t n, long long *p_out,
                  long long *e_out) {
    if (d <= 0 || (d & 7) || d + 48 > blen || (es != 16 && es != ENTRY)) return -2;
    long long itab = get64(base + d + HT_ITAB), ents = get64(base + d + HT_ENTS);
    if (itab <= 0 || itab + 16 > blen || ents <= 0 || ents + 16 > blen) return -2;
    uint64_t size = (uint64_t)get64(base + itab + 8);
    long long cap = get64(base + ents + 8);
    if (size == 0 || (size & (size - 1)) || (long long)size > (blen - itab - 16) / 4 ||
        cap < 0 || cap > (blen - ents - 16) / es)
        return -2;
    uint64_t mask = size - 1, i = hv & mask, perturb = hv;
    long long free = -1;
    for (uint64_t tries = 0; tries <= size; tries++) {
        long long p = itab + 16 + 4 * (long long)i;
        uint32_t v;
        memcpy(&v, base + p, 4);
        if (v == IX_EMPTY) {
            *p_out = free >= 0 ? free : p;
            return 0;
        }
        if (v == IX_DUMMY) {
            if (free < 0) free = p;
        } else {
            if ((long long)v > cap) return -2;
            long long e = ents + 16 + ((long long)v - 1) * es;
            if ((uint64_t)get64(base + e) == hv) {
                int64_t x = get64(base + e + 8);
                if (!(x & 7)) { /* a ref (an inline small value never equals bytes or str) */
                    if (x <= 0 || x + 16 > blen) return -2;
                    uint8_t st = base[x];
                    if (st == kt) {
                        if (get64(base + x + 8) == (int64_t)n && x + 16 + n <= blen &&
                            memcmp(base + x + 16, kb, (size_t)n) == 0) {
                            *p_out = p;
                            *e_out = e;
                            return 1;
                        }
                    } else if (st != T_STR && st != T_BYTES) {
                        return -2;
                    }
                }
            }
        }
        i = probe_next(i, &perturb, mask);
    }
    return -2;
}

/* The table's DRAM index (borrowed) in *ix, or NULL when it has none: 1, 0 for the Python
 * path, -1 on error. */
static int table_index(PyObject *hd, PyObject *dobj, PyObject **ix) {
    PyObject *ixs = d_item(hd, s_ix);
    *ix = NULL;
    if (!ixs || !PyDict_CheckExact(ixs)) return PyErr_Occurred() ? -1 : 0;
    *ix = PyDict_GetItemWithError(ixs, dobj);
    if (!*ix) return PyErr_Occurred() ? -1 : 1;
    return PyDict_CheckExact(*ix) ? 1 : 0;
}

/* The body of dict_set (below): 1 stored, 0 declined (nothing changed), -1 error.  hd: the
 * heap's instance dict (a reference this takes over), or NULL. */
static int dict_set_impl(PyObject *heap, PyObject *hd, PyObject *dobj, PyObject *key,
                         PyObject *value) {
    long kt = PyBytes_CheckExact(key) ? T_BYTES : PyUnicode_CheckExact(key) ? T_STR : 0;
    if (!kt || !PyBytes_CheckExact(value) || !PyLong_CheckExact(dobj)) {
        Py_XDECREF(hd);
        return 0;
    }
    long long d = PyLong_AsLongLong(dobj);
    if (d == -1 && PyErr_Occurred()) {
        Py_XDECREF(hd);
        return -1;
    }
    H h;
    PyObject *kdata = NULL, *ix = NULL;
    long long e = 0, p = 0;
    uint64_t hv = 0;
    int inserted = 0, probed = 0;
    int r = h_load(&h, heap, hd);
    if (r <= 0) goto out;
    if (d + 48 > h.blen) {
        r = 0;
        goto out;
    }
    if ((r = table_index(h.hd, dobj, &ix)) <= 0) goto out;
    r = 0;
    if (ix) { /* an indexed table: the index says whether the key is there */
        Py_INCREF(ix);
        PyObject *eo = PyDict_GetItemWithError(ix, key);
        Py_XINCREF(eo);
        Py_DECREF(ix);
        if (eo) { /* an overwrite */
            e = PyLong_AsLongLong(eo);
            Py_DECREF(eo);
            if (e == -1 && PyErr_Occurred()) {
                r = -1;
                goto out;
            }
            r = e > 0 ? h_store_blob(&h, e + 16, T_BYTES, value) : 0;
            goto out;
        }
        if (PyErr_Occurred()) {
            r = -1;
            goto out;
        }
    }
    /* Not in the index, or no index: the probe in the pool (for an indexed table, only
     * the slot a new entry takes); a small table without an index counts the probe
     * towards its index, as Heap._ht_seek does */
    probed = !ix && get64(h.base + d + 8) <= PROBE_OVER;
    if ((r = key_form(key, kt, &kdata, &hv)) <= 0) goto out;
    int f = t_find(h.base, h.blen, d, ENTRY, hv, kt, PyBytes_AS_STRING(kdata),
                   PyBytes_GET_SIZE(kdata), &p, &e);
    r = 0;
    if (f < 0 || (f == 1 && ix)) goto out; /* (an index that missed a key: Python) */
    if (f == 1) {
        r = h_store_blob(&h, e + 16, T_BYTES, value);
        goto out;
    }
    /* an insert */
    if (p) r = h_insert_blobs(&h, d, hv, p, kt, kdata, value, &e);
    if (r == 1 && ix) { /* the table's DRAM index learns the entry, as Heap._ix_add adds it */
        int added = ix_add(h.hd, dobj, key, e);
        if (added < 0) r = -1;
        inserted = added == 0; /* (not the common case: Heap._ix_add decides) */
    }
out:
    h_release(&h);
    Py_XDECREF(kdata);
    if (r < 0) return -1;
    if (inserted) {
        PyObject *eobj = PyLong_FromLongLong(e);
        if (!eobj) return -1;
        PyObject *res = PyObject_CallMethodObjArgs(heap, s_ix_add, dobj, key, eobj, NULL);
        Py_DECREF(eobj);
        if (!res) return -1;
        Py_DECREF(res);
    }
    if (r && probed) { /* (after the store: the index built then holds the new entry) */
        PyObject *es = PyLong_FromLong(ENTRY);
        if (!es) return -1;
        PyObject *res = PyObject_CallMethodObjArgs(heap, s_ix_probed, dobj, es, NULL);
        Py_DECREF(es);
        if (!res) return -1;
        Py_DECREF(res);
    }
    return r != 0;
}

/* ht_seek(heap, d, es, key) -> (entry or -1, hash, index slot) or None: Heap._ht_seek of a
 * bytes or str key in a table without a DRAM index (entries of es bytes: 24 for a dict, 16
 * for a set), probed in the pool; None, for the Python probe, whenever t_find declines. */
static PyObject *ht_seek(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "ht_seek(heap, d, es, key)");
        return NULL;
    }
    PyObject *key = args[3];
    long kt = PyBytes_CheckExact(key) ? T_BYTES : PyUnicode_CheckExact(key) ? T_STR : 0;
    long long d = PyLong_AsLongLong(args[1]);
    long long es = PyLong_AsLongLong(args[2]);
    if (PyErr_Occurred()) return NULL;
    if (!kt || !configured) Py_RETURN_NONE;
    PyObject *hd = inst_dict(args[0]);
    if (!hd) {
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_NONE;
    }
    PyObject *buf = d_item(hd, s_buf);
    Py_XINCREF(buf);
    Py_DECREF(hd);
    if (!buf) {
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_NONE;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE) < 0) {
        Py_DECREF(buf);
        return NULL;
    }
    PyObject *kdata = NULL, *out = NULL;
    uint64_t hv = 0;
    int r = key_form(key, kt, &kdata, &hv);
    if (r > 0) {
        long long p = 0, e = -1;
        int f = t_find((const uint8_t *)view.buf, view.len, d, es, hv, kt,
                       PyBytes_AS_STRING(kdata), PyBytes_GET_SIZE(kdata), &p, &e);
        Py_DECREF(kdata);
        if (f >= 0)
            out = Py_BuildValue("(LKL)", f ? e : -1LL, (unsigned long long)hv, p);
        else
            out = Py_NewRef(Py_None);
    } else if (r == 0) {
        out = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&view);
    Py_DECREF(buf);
    return out;
}

/* ---- the operation log's reader ------------------------------------------------------
 * log_read(buf, data, cap, pos) -> (payload, next position) or None: OpLog.read of the
 * entry at logical position pos (the caller checked it is below the head) for its common
 * case, an entry in place that passes its checks (its position, its length, its xxh32
 * checksum seeded with the position); None for a padding marker and for anything that fails
 * a check, which the Python reader then handles (and reports). */
static PyObject *xxh32 = NULL; /* xxhash.xxh32_intdigest, imported at the first read */

#define LOG_PAD 0xFFFFFFFFu

static int need_xxh32(void) {
    if (xxh32) return 0;
    PyObject *m = PyImport_ImportModule("xxhash");
    if (!m) return -1;
    xxh32 = PyObject_GetAttrString(m, "xxh32_intdigest");
    Py_DECREF(m);
    return xxh32 ? 0 : -1;
}

/* The entry at logical position pos of the log whose data region starts at data and holds
 * cap bytes, in the pool buffer b[0..blen): 1 (a new reference to its payload in *payload,
 * the position after it in *next), 0 when the Python reader must read it (a padding marker,
 * or an entry that fails a check), -1 on error. */
/* (an entry's position word holds the writer's epoch above bit 48: oplog.py) */
#define LOG_POS_MASK ((1ULL << 48) - 1)

static int entry_at(const uint8_t *b, Py_ssize_t blen, long long data, long long cap,
                    long long pos, PyObject **payload, long long *next) {
    long long a = data + pos % cap;
    *payload = NULL;
    if (data < 0 || cap <= 0 || pos < 0 || a + 16 > blen) return 0;
    uint32_t ln, chk;
    memcpy(&ln, b + a, 4);
    memcpy(&chk, b + a + 4, 4);
    long long n = (16 + (long long)ln + 63) & ~63LL;
    if (ln == LOG_PAD || (get64(b + a + 8) & LOG_POS_MASK) != (uint64_t)pos || n > cap ||
        a + 16 + (long long)ln > blen)
        return 0;
    uint32_t seed = (uint32_t)(pos & 0xFFFFFFFF);
    if (c_xxh32 && c_xxh32(b + a + 16, ln, seed) != chk) /* (before the copy) */
        return 0;
    PyObject *pl = PyBytes_FromStringAndSize((const char *)b + a + 16, ln);
    if (!pl) return -1;
    uint64_t sum;
    if (!c_xxh32 && (py_hash(xxh32, pl, seed, &sum) < 0 || sum != chk)) {
        Py_DECREF(pl);
        return PyErr_Occurred() ? -1 : 0;
    }
    *payload = pl;
    *next = pos + n;
    return 1;
}

static PyObject *log_read(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "log_read(buf, data, cap, pos)");
        return NULL;
    }
    long long data = PyLong_AsLongLong(args[1]), cap = PyLong_AsLongLong(args[2]);
    long long pos = PyLong_AsLongLong(args[3]);
    if (PyErr_Occurred()) return NULL;
    if (need_xxh32() < 0) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *payload = NULL, *out = NULL;
    long long next = 0;
    int r = entry_at((const uint8_t *)view.buf, view.len, data, cap, pos, &payload, &next);
    PyBuffer_Release(&view);
    if (r < 0) return NULL;
    if (r == 0) Py_RETURN_NONE;
    PyObject *nx = PyLong_FromLongLong(next);
    if (nx) out = PyTuple_Pack(2, payload, nx);
    Py_XDECREF(nx);
    Py_DECREF(payload);
    return out;
}

/* log_put_group(buf, a, pos, payloads, ln) -> bool: OpLog.append_group's write, for a
 * group entry the caller has room for at byte a of buf (no wrap): the 16-byte entry head
 * (ln, xxh32 of the body seeded with pos, pos) and the body opcodec.encode_group would
 * make ('G', u32 count, the u32 lengths, the payloads), written in place with no payload of
 * the whole group built first.  False, nothing written, when the xxHash library's function
 * is not bound (the caller then appends encode_group's bytes); ValueError when ln is not
 * the group's length or the entry does not fit in buf. */
static PyObject *log_put_group(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyList_CheckExact(args[3])) {
        PyErr_SetString(PyExc_TypeError, "log_put_group(buf, a, pos, payloads, ln)");
        return NULL;
    }
    long long a = PyLong_AsLongLong(args[1]), pos = PyLong_AsLongLong(args[2]);
    long long ln = PyLong_AsLongLong(args[4]);
    if (PyErr_Occurred()) return NULL;
    PyObject *g = args[3];
    Py_ssize_t cnt = PyList_GET_SIZE(g);
    long long want = 5 + 4 * (long long)cnt;
    for (Py_ssize_t i = 0; i < cnt; i++) {
        PyObject *x = PyList_GET_ITEM(g, i);
        if (!PyBytes_CheckExact(x)) {
            PyErr_SetString(PyExc_TypeError, "log_put_group: a payload is not bytes");
            return NULL;
        }
        want += PyBytes_GET_SIZE(x);
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_WRITABLE) < 0) return NULL;
    if (want != ln || ln > 0xFFFFFFF0LL || cnt > 0xFFFFFFFFLL || a < 0 || pos < 0 ||
        a + 16 + ln > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "log_put_group: the group's length or place is wrong");
        return NULL;
    }
    if (!c_xxh32) {
        PyBuffer_Release(&view);
        Py_RETURN_FALSE;
    }
    uint8_t *b = (uint8_t *)view.buf + a, *body = b + 16;
    uint32_t u = (uint32_t)cnt;
    body[0] = 'G';
    memcpy(body + 1, &u, 4);
    uint8_t *lens = body + 5, *p = lens + 4 * (size_t)cnt;
    for (Py_ssize_t i = 0; i < cnt; i++) {
        PyObject *x = PyList_GET_ITEM(g, i);
        uint32_t n = (uint32_t)PyBytes_GET_SIZE(x);
        memcpy(lens + 4 * (size_t)i, &n, 4);
        memcpy(p, PyBytes_AS_STRING(x), n);
        p += n;
    }
    uint32_t l32 = (uint32_t)ln, chk = c_xxh32(body, (size_t)ln, (uint32_t)(pos & 0xFFFFFFFF));
    uint64_t p64 = (uint64_t)pos;
    memcpy(b, &l32, 4);
    memcpy(b + 4, &chk, 4);
    memcpy(b + 8, &p64, 8);
    PyBuffer_Release(&view);
    Py_RETURN_TRUE;
}

/* ---- the operation codec ----------------------------------------------------------------
 * pack_op(op) -> bytes or None, unpack_op(payload) -> op: the log's compact form (tag T) of
 * an operation built only of exact tuples, bytes, ints that fit in 64 bits and None (the
 * common shape of a key-value operation), written and read without pickle.  After the T,
 * one value: 't' u32 count + the items; 's' u8 length + the bytes (fewer than 256), 'b' u32
 * length + the bytes; 'i' i64; 'N'.  All little-endian.  pack_op gives None for anything
 * else (another type, a subclass, a big int, nesting deeper than OPC_DEPTH): the caller
 * pickles it.  unpack_op raises ValueError for a payload that is not exactly one such value.
 * opcodec.py holds the same format in Python: change both. */
#define TAG_T 0x54
#define OPC_DEPTH 16
#define OPC_UNPACKABLE (-1)

/* bytes the value takes, OPC_UNPACKABLE, or -2 with an error set */
static Py_ssize_t opc_size(PyObject *o, int depth) {
    if (PyBytes_CheckExact(o)) {
        Py_ssize_t n = PyBytes_GET_SIZE(o);
        if (n > 0xFFFFFFFFLL) return OPC_UNPACKABLE;
        return (n < 256 ? 2 : 5) + n;
    }
    if (PyLong_CheckExact(o)) {
        int over = 0;
        long long v = PyLong_AsLongLongAndOverflow(o, &over);
        if (v == -1 && PyErr_Occurred()) return -2;
        return over ? OPC_UNPACKABLE : 9;
    }
    if (o == Py_None) return 1;
    if (PyTuple_CheckExact(o)) {
        Py_ssize_t n = PyTuple_GET_SIZE(o), total = 5;
        if (depth >= OPC_DEPTH || n > 0xFFFFFFFFLL) return OPC_UNPACKABLE;
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_ssize_t s = opc_size(PyTuple_GET_ITEM(o, i), depth + 1);
            if (s < 0) return s;
            total += s;
        }
        return total;
    }
    return OPC_UNPACKABLE;
}

/* writes the value (opc_size said it packs) at p; returns the end */
static uint8_t *opc_fill(PyObject *o, uint8_t *p) {
    if (PyBytes_CheckExact(o)) {
        Py_ssize_t n = PyBytes_GET_SIZE(o);
        if (n < 256) {
            *p++ = 's';
            *p++ = (uint8_t)n;
        } else {
            uint32_t u = (uint32_t)n;
            *p++ = 'b';
            memcpy(p, &u, 4);
            p += 4;
        }
        memcpy(p, PyBytes_AS_STRING(o), (size_t)n);
        return p + n;
    }
    if (PyLong_CheckExact(o)) {
        int over = 0;
        int64_t v = (int64_t)PyLong_AsLongLongAndOverflow(o, &over);
        *p++ = 'i';
        memcpy(p, &v, 8);
        return p + 8;
    }
    if (o == Py_None) {
        *p++ = 'N';
        return p;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(o);
    uint32_t u = (uint32_t)n;
    *p++ = 't';
    memcpy(p, &u, 4);
    p += 4;
    for (Py_ssize_t i = 0; i < n; i++) p = opc_fill(PyTuple_GET_ITEM(o, i), p);
    return p;
}

/* the T payload of op, whose packed value opc_size found to take n bytes */
static PyObject *opc_payload(PyObject *op, Py_ssize_t n) {
    PyObject *out = PyBytes_FromStringAndSize(NULL, n + 1);
    if (!out) return NULL;
    uint8_t *p = (uint8_t *)PyBytes_AS_STRING(out);
    *p = TAG_T;
    opc_fill(op, p + 1);
    return out;
}

static PyObject *pack_op(PyObject *self, PyObject *op) {
    Py_ssize_t n = opc_size(op, 0);
    if (n == -2) return NULL;
    if (n < 0) Py_RETURN_NONE;
    return opc_payload(op, n);
}

/* Grouper: PSM.invoke_rw_grouped's common case in C, so a server's per-write call runs no
 * Python frame.  grouper(op) packs op (the T form), appends the payload to the group list,
 * counts its bytes (payload + its u32 length) in `bytes`, and returns apply(op): the same as
 * the Python method.  Anything else goes to slow(op), the Python method, which has every
 * rule: `on` false (closed, verify mode), no `apply`, a 4-tuple (maybe a method-call
 * operation), a bytes operation (tag B), one that does not pack (pickled), or a group that
 * would pass `max` bytes (flushed first). */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *group, *apply, *slow;
    PyObject *func, *obj; /* apply's function and object when it is a bound method */
    Py_ssize_t bytes, max;
    char on;
} Grouper;

/* The common case's logging: op packed and appended to the group (1), or nothing done
 * because op is not the common case (0: grouper(op) hands it to slow), or an error (-1). */
static int grouper_take(Grouper *g, PyObject *op) {
    if (!g->on || g->apply == Py_None || PyBytes_CheckExact(op) ||
        (PyTuple_CheckExact(op) && PyTuple_GET_SIZE(op) == 4))
        return 0;
    Py_ssize_t n = opc_size(op, 0);
    if (n == -2) return -1;
    Py_ssize_t size = g->bytes + n + 1 + 4;
    if (n < 0 || size > g->max) return 0;
    PyObject *payload = opc_payload(op, n);
    if (!payload) return -1;
    int err = PyList_Append(g->group, payload);
    Py_DECREF(payload);
    if (err < 0) return -1;
    g->bytes = size;
    return 1;
}

static PyObject *grouper_call(PyObject *self, PyObject *const *args, size_t nargsf,
                              PyObject *kwnames) {
    Grouper *g = (Grouper *)self;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 1 || kwnames) {
        PyErr_SetString(PyExc_TypeError, "invoke_rw_grouped(op) takes one positional argument");
        return NULL;
    }
    PyObject *op = args[0];
    int taken = grouper_take(g, op);
    if (taken < 0) return NULL;
    if (!taken) return PyObject_CallOneArg(g->slow, op);
    if (g->func) { /* apply(op) without a bound-method call's argument copy */
        PyObject *a[3] = {NULL, g->obj, op};
        return PyObject_Vectorcall(g->func, a + 1, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    }
    return PyObject_CallOneArg(g->apply, op);
}

static PyObject *grouper_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    PyObject *group, *apply, *slow;
    Py_ssize_t bytes, max;
    static char *kwlist[] = {"group", "bytes", "max", "apply", "slow", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!nnOO:Grouper", kwlist, &PyList_Type, &group,
                                     &bytes, &max, &apply, &slow))
        return NULL;
    if ((apply != Py_None && !PyCallable_Check(apply)) || !PyCallable_Check(slow)) {
        PyErr_SetString(PyExc_TypeError, "Grouper: apply (or None) and slow must be callable");
        return NULL;
    }
    Grouper *g = (Grouper *)type->tp_alloc(type, 0);
    if (!g) return NULL;
    g->vectorcall = grouper_call;
    g->group = Py_NewRef(group);
    g->apply = Py_NewRef(apply);
    g->slow = Py_NewRef(slow);
    if (PyMethod_Check(apply)) {
        g->func = Py_NewRef(PyMethod_GET_FUNCTION(apply));
        g->obj = Py_NewRef(PyMethod_GET_SELF(apply));
    }
    g->bytes = bytes;
    g->max = max;
    g->on = 1;
    return (PyObject *)g;
}

static int grouper_traverse(PyObject *self, visitproc visit, void *arg) {
    Grouper *g = (Grouper *)self;
    Py_VISIT(g->group);
    Py_VISIT(g->apply);
    Py_VISIT(g->slow);
    Py_VISIT(g->func);
    Py_VISIT(g->obj);
    return 0;
}

static int grouper_clear(PyObject *self) {
    Grouper *g = (Grouper *)self;
    Py_CLEAR(g->group);
    Py_CLEAR(g->apply);
    Py_CLEAR(g->slow);
    Py_CLEAR(g->func);
    Py_CLEAR(g->obj);
    return 0;
}

static void grouper_dealloc(PyObject *self) {
    PyObject_GC_UnTrack(self);
    grouper_clear(self);
    Py_TYPE(self)->tp_free(self);
}

/* grouper.log(op) -> bool: grouper(op) without the apply, for a caller that applies op to
 * the state itself (PSM.log_rw_grouped).  True: op's payload is in the group.  False:
 * nothing was done, because op is not a tuple or grouper(op) would have handed it to slow
 * (grouper_take); the caller then calls grouper(op). */
static PyObject *grouper_log(PyObject *self, PyObject *op) {
    if (!PyTuple_CheckExact(op)) Py_RETURN_FALSE;
    int taken = grouper_take((Grouper *)self, op);
    if (taken < 0) return NULL;
    return PyBool_FromLong(taken);
}

static PyMethodDef grouper_methods[] = {
    {"log", grouper_log, METH_O,
     "log(op) -> bool: op logged in the group without being applied (False: nothing done; "
     "call the grouper)"},
    {NULL},
};

static PyMemberDef grouper_members[] = {
    {"bytes", T_PYSSIZET, offsetof(Grouper, bytes), 0,
     "bytes of the group so far, its head included"},
    {"on", T_BOOL, offsetof(Grouper, on), 0, "false: every operation goes to slow"},
    {NULL},
};

static PyTypeObject GrouperType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "persimmon._speedups.Grouper",
    .tp_basicsize = sizeof(Grouper),
    .tp_new = grouper_new,
    .tp_dealloc = grouper_dealloc,
    .tp_traverse = grouper_traverse,
    .tp_clear = grouper_clear,
    .tp_vectorcall_offset = offsetof(Grouper, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_members = grouper_members,
    .tp_methods = grouper_methods,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Grouper(group, bytes, max, apply, slow): PSM.invoke_rw_grouped's common case "
              "(see _speedups.c)",
};

static PyObject *opc_damaged(void) {
    PyErr_SetString(PyExc_ValueError, "a T operation payload is damaged");
    return NULL;
}

/* the value at *p (advanced past it), or NULL with ValueError (damaged) or another error */
static PyObject *opc_read(const uint8_t **pp, const uint8_t *end, int depth) {
    const uint8_t *p = *pp;
    if (p >= end) return opc_damaged();
    uint8_t t = *p++;
    PyObject *v;
    uint32_t n;
    switch (t) {
    case 's':
    case 'b':
        if (t == 's') {
            if (end - p < 1) return opc_damaged();
            n = *p++;
        } else {
            if (end - p < 4) return opc_damaged();
            memcpy(&n, p, 4);
            p += 4;
            if (n < 256) return opc_damaged(); /* (not the form pack_op writes) */
        }
        if ((uint64_t)(end - p) < n) return opc_damaged();
        v = PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)n);
        p += n;
        break;
    case 'i': {
        int64_t x;
        if (end - p < 8) return opc_damaged();
        memcpy(&x, p, 8);
        p += 8;
        v = PyLong_FromLongLong((long long)x);
        break;
    }
    case 'N':
        v = Py_NewRef(Py_None);
        break;
    case 't':
        if (depth >= OPC_DEPTH || end - p < 4) return opc_damaged();
        memcpy(&n, p, 4);
        p += 4;
        if ((uint64_t)(end - p) < n) return opc_damaged(); /* every item takes a byte */
        v = PyTuple_New((Py_ssize_t)n);
        for (uint32_t i = 0; v && i < n; i++) {
            PyObject *it = opc_read(&p, end, depth + 1);
            if (!it) Py_CLEAR(v);
            else PyTuple_SET_ITEM(v, i, it);
        }
        break;
    default:
        return opc_damaged();
    }
    *pp = p;
    return v;
}

/* the operation in the T payload b[0..len) (b[0] is the tag), or NULL with an error */
static PyObject *opc_unpack(const uint8_t *b, Py_ssize_t len) {
    if (len < 2 || b[0] != TAG_T) return opc_damaged();
    const uint8_t *p = b + 1, *end = b + len;
    PyObject *v = opc_read(&p, end, 0);
    if (v && p != end) {
        Py_DECREF(v);
        return opc_damaged();
    }
    return v;
}

static PyObject *unpack_op(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *v = opc_unpack((const uint8_t *)view.buf, view.len);
    PyBuffer_Release(&view);
    return v;
}

/* ---- the shadow's apply loop ---------------------------------------------------------
 * apply_run(ctx, pos, head, limit, in_batch) -> (n, pos, in_batch, why), ctx an
 * ApplyContext(dev, data, cap, apply, apply_op, root, heap, loads, max_batch, threshold,
 * undo, raised, end_failed) (the log's device, its entry area and capacity, and the rest
 * below; C_APPLY_CONTEXT, declared in native.APPLY_CONTEXT),
 * is the loop of Applier.run (shadow.py) for the entries it reads in its common forms: an
 * entry that passes its checks (as log_read reads it) holding one operation, or a group of
 * them, each a bytes operation (tag B), a packed one (T) or a pickle.  Per operation:
 * apply(op) (or, for a method-call operation or when apply is None, apply_op(root, op)); an
 * Exception it raises goes to raised(exc, pos, i, k) (the entry's position, the
 * operation's place in it and its count of operations) and the loop goes on; then
 * heap.end_op() unless Heap.end_op's four tests all fail, an Exception from it going to
 * end_failed(exc, pos, i, k).  It stops at entry boundaries: after `limit` operations or
 * at `head` (why 0), when the batch is due for a commit (in_batch >= max_batch or
 * undo.count >= threshold: why 1), or at an entry it leaves to the Python loop (a padding
 * marker, a damaged entry, another tag: why 2).
 * The pool buffer is taken from dev.buf per entry and released before any operation runs
 * (an operation may grow the pool, which remaps it). */
typedef struct {
    PyObject_HEAD
    PyObject *dev, *apply, *apply_op, *root, *heap, *loads, *undo, *raised, *end_failed;
    long long data, cap, max_batch, threshold;
} ApplyContext;

static PyObject *actx_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    PyObject *dev, *apply, *apply_op, *root, *heap, *loads, *undo, *raised, *end_failed;
    long long data, cap, max_batch, threshold;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OLLOOOOOLLOOO:ApplyContext",
                                     (char **)C_APPLY_CONTEXT, &dev, &data, &cap, &apply,
                                     &apply_op, &root, &heap, &loads, &max_batch, &threshold,
                                     &undo, &raised, &end_failed))
        return NULL;
    ApplyContext *c = (ApplyContext *)type->tp_alloc(type, 0);
    if (!c) return NULL;
    c->dev = Py_NewRef(dev);
    c->apply = Py_NewRef(apply);
    c->apply_op = Py_NewRef(apply_op);
    c->root = Py_NewRef(root);
    c->heap = Py_NewRef(heap);
    c->loads = Py_NewRef(loads);
    c->undo = Py_NewRef(undo);
    c->raised = Py_NewRef(raised);
    c->end_failed = Py_NewRef(end_failed);
    c->data = data;
    c->cap = cap;
    c->max_batch = max_batch;
    c->threshold = threshold;
    return (PyObject *)c;
}

static int actx_traverse(PyObject *self, visitproc visit, void *arg) {
    ApplyContext *c = (ApplyContext *)self;
    Py_VISIT(c->dev);
    Py_VISIT(c->apply);
    Py_VISIT(c->apply_op);
    Py_VISIT(c->root);
    Py_VISIT(c->heap);
    Py_VISIT(c->loads);
    Py_VISIT(c->undo);
    Py_VISIT(c->raised);
    Py_VISIT(c->end_failed);
    return 0;
}

static int actx_clear(PyObject *self) {
    ApplyContext *c = (ApplyContext *)self;
    Py_CLEAR(c->dev);
    Py_CLEAR(c->apply);
    Py_CLEAR(c->apply_op);
    Py_CLEAR(c->root);
    Py_CLEAR(c->heap);
    Py_CLEAR(c->loads);
    Py_CLEAR(c->undo);
    Py_CLEAR(c->raised);
    Py_CLEAR(c->end_failed);
    return 0;
}

static void actx_dealloc(PyObject *self) {
    PyObject_GC_UnTrack(self);
    actx_clear(self);
    Py_TYPE(self)->tp_free(self);
}

#define ACTX_OBJ(name, doc) {#name, T_OBJECT_EX, offsetof(ApplyContext, name), 0, doc}
#define ACTX_LL(name, doc) {#name, T_LONGLONG, offsetof(ApplyContext, name), 0, doc}
static PyMemberDef actx_members[] = {
    ACTX_OBJ(dev, "the log's device (its buf is read per entry)"),
    ACTX_LL(data, "offset of the log's entry area"),
    ACTX_LL(cap, "the log's capacity"),
    ACTX_OBJ(apply, "the root's apply method, or None"),
    ACTX_OBJ(apply_op, "calls.apply_op (method-call operations)"),
    ACTX_OBJ(root, "the heap's root"),
    ACTX_OBJ(heap, "the heap (its end_op)"),
    ACTX_OBJ(loads, "pickle.loads"),
    ACTX_LL(max_batch, "operations in a batch before a commit"),
    ACTX_LL(threshold, "undo entries in a batch before a commit"),
    ACTX_OBJ(undo, "the heap's undo log (its count)"),
    ACTX_OBJ(raised, "raised(exc, pos, i, k): an operation raised"),
    ACTX_OBJ(end_failed, "end_failed(exc, pos, i, k): end_op raised"),
    {NULL},
};

static PyTypeObject ApplyContextType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "persimmon._speedups.ApplyContext",
    .tp_basicsize = sizeof(ApplyContext),
    .tp_new = actx_new,
    .tp_dealloc = actx_dealloc,
    .tp_traverse = actx_traverse,
    .tp_clear = actx_clear,
    .tp_members = actx_members,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "ApplyContext(dev, data, cap, apply, apply_op, root, heap, loads, max_batch, "
              "threshold, undo, raised, end_failed): apply_run's context (see _speedups.c)",
};

#define WHY_STOPPED 0
#define WHY_COMMIT 1
#define WHY_PYTHON 2
#define TAG_B 0x42
#define TAG_PK 0x80
#define TAG_G 0x47

/* Does op look like a method-call operation (a tuple whose first item is calls.CALL)?
 * 1, 0, -1 on error */
static int is_call(PyObject *op) {
    if (!PyTuple_CheckExact(op) || PyTuple_GET_SIZE(op) == 0) return 0;
    PyObject *first = PyTuple_GET_ITEM(op, 0);
    if (first == s_call) return 1;
    if (!PyUnicode_Check(first)) return PyObject_RichCompareBool(first, s_call, Py_EQ);
    return PyUnicode_Compare(first, s_call) == 0 ? 1 : (PyErr_Occurred() ? -1 : 0);
}

/* The pending Exception handed to handler(exc, pos, i, k): 0, or -1 (not an Exception, or
 * the handler raised: left set) */
static int hand_over(PyObject *handler, long long pos, Py_ssize_t i, Py_ssize_t k) {
    if (!PyErr_ExceptionMatches(PyExc_Exception)) return -1;
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    if (tb) PyException_SetTraceback(v, tb);
    Py_XDECREF(t);
    Py_XDECREF(tb);
    PyObject *res = PyObject_CallFunction(handler, "OLnn", v, pos, i, k);
    Py_XDECREF(v);
    if (!res) return -1;
    Py_DECREF(res);
    return 0;
}

/* 1 when any of Heap.end_op's four tests holds (the call has work to do), 0, -1 */
static int end_op_due(PyObject *heap) {
    PyObject *hd = inst_dict(heap);
    if (!hd) return PyErr_Occurred() ? -1 : 1;
    PyObject *names[4] = {s_conv, s_opaque, s_zero, s_memo};
    int due = 0;
    for (int j = 0; j < 4 && !due; j++) {
        PyObject *v = d_item(hd, names[j]);
        if (!v) {
            due = PyErr_Occurred() ? -1 : 1; /* (missing: let end_op say what it does) */
            break;
        }
        due = PyObject_IsTrue(v);
    }
    Py_DECREF(hd);
    return due;
}

/* one operation of an entry: 0, or -1 on error (a BaseException that is not an Exception,
 * or a handler that raised) */
static int apply_one_of(PyObject *apply, PyObject *apply_op, PyObject *root, PyObject *heap,
                        PyObject *raised, PyObject *end_failed, PyObject *op, long long pos,
                        Py_ssize_t i, Py_ssize_t k) {
    PyObject *res;
    int call = apply == Py_None ? 1 : is_call(op);
    if (call < 0) return -1;
    if (!call) {
        res = PyObject_CallOneArg(apply, op);
    } else {
        PyObject *a[2] = {root, op};
        res = PyObject_Vectorcall(apply_op, a, 2, NULL);
    }
    if (res)
        Py_DECREF(res);
    else if (hand_over(raised, pos, i, k) < 0)
        return -1;
    int due = end_op_due(heap);
    if (due < 0) return -1;
    if (due) {
        res = PyObject_CallMethodNoArgs(heap, s_end_op);
        if (res)
            Py_DECREF(res);
        else if (hand_over(end_failed, pos, i, k) < 0)
            return -1;
    }
    return 0;
}

/* one operation with the context's members, held for the call (the operation runs Python
 * code, which may set them) */
static int apply_one(ApplyContext *c, PyObject *op, long long pos, Py_ssize_t i,
                     Py_ssize_t k) {
    PyObject *o[6] = {c->apply, c->apply_op, c->root, c->heap, c->raised, c->end_failed};
    for (int j = 0; j < 6; j++) Py_INCREF(o[j]);
    int r = apply_one_of(o[0], o[1], o[2], o[3], o[4], o[5], op, pos, i, k);
    for (int j = 0; j < 6; j++) Py_DECREF(o[j]);
    return r;
}

/* 1 when t is the tag of an operation payload this loop decodes itself (B, T, pickle) */
static inline int own_tag(uint8_t t) { return t == TAG_B || t == TAG_T || t == TAG_PK; }

/* The operations of payload pl (its own bytes: one operation; a group: its members), each a
 * B, T or pickle payload, as new references in (*ops)[0..*k): 1 (*ops is `one` for a single
 * operation, else memory to PyMem_Free); 0 for the Python loop (another tag, a damaged
 * group); -1 on error. */
static int entry_ops(PyObject *pl, PyObject *loads, PyObject **one, PyObject ***ops,
                     Py_ssize_t *k) {
    const uint8_t *b = (const uint8_t *)PyBytes_AS_STRING(pl);
    Py_ssize_t len = PyBytes_GET_SIZE(pl), n = 1, o = 0;
    uint32_t whole = (uint32_t)len;
    const uint8_t *lens = (const uint8_t *)&whole;
    *k = 0;
    *ops = one;
    if (len == 0) return 0;
    if (b[0] == TAG_G) { /* G + u32 count + count u32 lengths + the payloads */
        uint32_t cnt;
        if (len < 5) return 0;
        memcpy(&cnt, b + 1, 4);
        if (cnt == 0 || 5 + 4 * (long long)cnt > len) return 0;
        n = (Py_ssize_t)cnt;
        lens = b + 5;
        o = 5 + 4 * n;
        long long at = o;
        for (Py_ssize_t i = 0; i < n; i++) {
            uint32_t ln;
            memcpy(&ln, lens + 4 * i, 4);
            if (ln == 0 || at + ln > len || !own_tag(b[at])) return 0;
            at += ln;
        }
        if (at != len) return 0;
        if (!(*ops = PyMem_Malloc(sizeof(PyObject *) * (size_t)n))) {
            *ops = one;
            PyErr_NoMemory();
            return -1;
        }
    } else if (!own_tag(b[0])) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t ln;
        memcpy(&ln, lens + 4 * i, 4);
        const uint8_t *m = b + o;
        PyObject *op;
        if (m[0] == TAG_B) {
            op = PyBytes_FromStringAndSize((const char *)m + 1, (Py_ssize_t)ln - 1);
        } else if (m[0] == TAG_T) {
            op = opc_unpack(m, (Py_ssize_t)ln);
        } else if (n == 1) {
            op = PyObject_CallOneArg(loads, pl);
        } else {
            PyObject *mb = PyBytes_FromStringAndSize((const char *)m, ln);
            op = mb ? PyObject_CallOneArg(loads, mb) : NULL;
            Py_XDECREF(mb);
        }
        if (!op) {
            for (Py_ssize_t j = 0; j < i; j++) Py_DECREF((*ops)[j]);
            if (*ops != one) PyMem_Free(*ops);
            *ops = one;
            if (m[0] != TAG_T || !PyErr_ExceptionMatches(PyExc_ValueError)) return -1;
            PyErr_Clear(); /* a damaged T payload: the Python loop reports it */
            return 0;
        }
        (*ops)[i] = op;
        o += ln;
    }
    *k = n;
    return 1;
}

static PyObject *apply_run(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || Py_TYPE(args[0]) != &ApplyContextType) {
        PyErr_SetString(PyExc_TypeError,
                        "apply_run(ctx: ApplyContext, pos, head, limit, in_batch)");
        return NULL;
    }
    ApplyContext *c = (ApplyContext *)args[0];
    long long pos = PyLong_AsLongLong(args[1]), head = PyLong_AsLongLong(args[2]);
    long long limit = PyLong_AsLongLong(args[3]), in_batch = PyLong_AsLongLong(args[4]);
    long long data = c->data, cap = c->cap, max_batch = c->max_batch;
    long long threshold = c->threshold;
    if (PyErr_Occurred()) return NULL;
    if (need_xxh32() < 0) return NULL;
    /* (held for the run: an operation runs Python code, which may set ctx's members) */
    PyObject *dev = Py_NewRef(c->dev), *loads = Py_NewRef(c->loads), *undo = Py_NewRef(c->undo);
    PyObject *result = NULL;
    Py_INCREF(c);
    long long n = 0;
    int why = WHY_STOPPED;
    while (n < limit && pos < head) {
        PyObject *buf = PyObject_GetAttr(dev, s_buf), *pl = NULL;
        if (!buf) goto done;
        Py_buffer view;
        int r = PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE);
        Py_DECREF(buf);
        if (r < 0) goto done;
        long long next = 0;
        r = entry_at((const uint8_t *)view.buf, view.len, data, cap, pos, &pl, &next);
        PyBuffer_Release(&view);
        if (r < 0) goto done;
        Py_ssize_t k = 0;
        PyObject *one = NULL, **ops = &one;
        if (r > 0) {
            r = entry_ops(pl, loads, &one, &ops, &k);
            Py_DECREF(pl);
            if (r < 0) goto done;
        }
        if (r == 0) {
            why = WHY_PYTHON;
            break;
        }
        int err = 0;
        for (Py_ssize_t i = 0; i < k; i++) {
            if (!err && apply_one(c, ops[i], pos, i, k) < 0) err = 1;
            Py_DECREF(ops[i]);
        }
        if (ops != &one) PyMem_Free(ops);
        if (err) goto done;
        n += k;
        in_batch += k;
        pos = next;
        long long count = 0;
        PyObject *co = PyObject_GetAttr(undo, s_count);
        if (!co) goto done;
        count = PyLong_AsLongLong(co);
        Py_DECREF(co);
        if (count == -1 && PyErr_Occurred()) goto done;
        if (in_batch >= max_batch || count >= threshold) {
            why = WHY_COMMIT;
            break;
        }
    }
    result = Py_BuildValue("(LLLi)", n, pos, in_batch, why);
done:
    Py_DECREF(dev);
    Py_DECREF(loads);
    Py_DECREF(undo);
    Py_DECREF(c);
    return result;
}

/* dict_set(heap, d, key, value) -> bool: PDict.__setitem__ of a bytes value under a bytes
 * or str key, whole (the index lookup or the probe, then the store of store_blob or the
 * insert of insert_blobs and the index update); False, having changed nothing, for every
 * other case. */
static PyObject *dict_set(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "dict_set(heap, d, key, value)");
        return NULL;
    }
    int r = dict_set_impl(args[0], NULL, args[1], args[2], args[3]);
    if (r < 0) return NULL;
    return PyBool_FromLong(r);
}


/* ---- proxy methods ------------------------------------------------------------------
 * proxy_method(kind, full, rest, base) makes a method for a proxy class (a subclass of
 * `base`, whose __slots__ `_h` and `_o` hold the heap and the object's offset) that runs a
 * proxy's hottest method in C, without the Python frames around the compiled store:
 *   PM_SETITEM  __setitem__(key, value): dict_set, and `rest(self, key, value)` (the Python
 *               store) when it declines;
 *   PM_LEN      __len__(): the count in the table header at offset 8;
 *   PM_GETATTR  PObject.__getattribute__(name) for a user attribute: the class has no data
 *               descriptor of that name (the proxy class's `_dc` cache says so), the
 *               object's attribute dict (slot `_ad`) has a DRAM index that holds it; the
 *               value is read, loaded through Heap._load unless it is a live proxy, and a
 *               proxy's parent is noted as the Python method notes it.
 * Whenever the heap's `fast` attribute is not this module (a heap or a test that chose the
 * Python path), or the call is not the plain form, it calls `full` (the Python method)
 * instead.  It is a method descriptor, so `d[k] = v` calls it with `d` as its first argument
 * and no bound method is made. */
#define PM_SETITEM 0
#define PM_LEN 1
#define PM_GETATTR 2

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    int kind;
    PyObject *full, *rest, *module;
    PyTypeObject *base;
    Py_ssize_t h_off, o_off, ad_off;
} PMeth;

/* the heap's instance dict (new reference) when its fast path is `module`, else NULL (an
 * error set, or not) */
static PyObject *pm_heap_dict(PMeth *m, PyObject *self, PyObject **heap, PyObject **off) {
    if (!PyObject_TypeCheck(self, m->base)) return NULL;
    *heap = *(PyObject **)((char *)self + m->h_off);
    *off = *(PyObject **)((char *)self + m->o_off);
    if (!*heap || !*off) return NULL;
    PyObject *hd = inst_dict(*heap);
    if (!hd) return NULL;
    PyObject *fast = d_item(hd, s_fast);
    if (fast != m->module) {
        Py_DECREF(hd);
        return NULL;
    }
    return hd;
}

/* PM_GETATTR's common case: 1 found (*out: a new reference), 0 not this case (nothing
 * changed), -1 error */
static int pm_getattr(PMeth *m, PyObject *self, PyObject *name, PyObject *heap,
                      PyObject *off, PyObject *hd, PyObject **out) {
    if (!PyUnicode_CheckExact(name)) return 0;
    PyTypeObject *pcls = Py_TYPE(self);
    PyObject *own = _PyType_Lookup(pcls, s_own), *dc = _PyType_Lookup(pcls, s_dc);
    if (!own || !PyFrozenSet_CheckExact(own) || !dc || !PyDict_CheckExact(dc)) return 0;
    int c = PySet_Contains(own, name);
    if (c != 0) return c < 0 ? -1 : 0;
    PyObject *r = PyDict_GetItemWithError(dc, name); /* (class attribute, is data) */
    if (!r || !PyTuple_CheckExact(r) || PyTuple_GET_SIZE(r) != 2 ||
        PyTuple_GET_ITEM(r, 1) != Py_False)
        return PyErr_Occurred() ? -1 : 0;
    PyObject *ad = *(PyObject **)((char *)self + m->ad_off);
    if (!ad || !PyLong_CheckExact(ad) || !PyObject_IsTrue(ad)) return 0;
    PyObject *ixs = d_item(hd, s_ix), *ix, *eo;
    if (!ixs || !PyDict_CheckExact(ixs) || !(ix = PyDict_GetItemWithError(ixs, ad)) ||
        !PyDict_CheckExact(ix) || !(eo = PyDict_GetItemWithError(ix, name)))
        return PyErr_Occurred() ? -1 : 0;
    long long e = PyLong_AsLongLong(eo);
    if (e == -1 && PyErr_Occurred()) return -1;
    PyObject *buf = d_item(hd, s_buf);
    Py_buffer view;
    if (e < 0 || !buf || PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        return 0;
    }
    long long x = e + 24 <= view.len ? get64((uint8_t *)view.buf + e + 16) : -1;
    PyBuffer_Release(&view);
    if (x < 0) return 0;
    PyObject *proxies = d_item(hd, s_proxies), *parents = d_item(hd, s_parents);
    if (!proxies || !PyDict_CheckExact(proxies) || !parents || !PyDict_CheckExact(parents))
        return PyErr_Occurred() ? -1 : 0;
    PyObject *xo = PyLong_FromLongLong(x);
    if (!xo) return -1;
    Py_INCREF(proxies);
    Py_INCREF(parents);
    PyObject *v = PyDict_GetItemWithError(proxies, xo);
    int ret = -1;
    if (v) {
        Py_INCREF(v);
    } else if (PyErr_Occurred() || !(v = PyObject_CallMethodOneArg(heap, s_load, xo))) {
        goto done;
    } else if ((c = PyDict_Contains(proxies, xo)) <= 0) { /* a value, not a proxy */
        ret = c < 0 ? -1 : 1;
        goto done;
    }
    /* a proxy: note where it hangs, as the Python method does */
    if ((c = PyDict_Contains(parents, xo)) == 0) {
        PyObject *t = PyTuple_Pack(3, off, name, Py_True);
        c = t ? PyDict_SetItem(parents, xo, t) : -1;
        Py_XDECREF(t);
    }
    ret = c < 0 ? -1 : 1;
done:
    Py_DECREF(xo);
    Py_DECREF(proxies);
    Py_DECREF(parents);
    if (ret == 1)
        *out = v;
    else
        Py_XDECREF(v);
    return ret;
}

static PyObject *pm_call(PyObject *callable, PyObject *const *args, size_t nargsf,
                         PyObject *kwnames) {
    PMeth *m = (PMeth *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *heap, *off, *hd;
    static const Py_ssize_t arity[] = {3, 1, 2};
    if (kwnames || nargs != arity[m->kind] ||
        !(hd = pm_heap_dict(m, args[0], &heap, &off))) {
        if (PyErr_Occurred()) return NULL;
        return PyObject_Vectorcall(m->full, args, nargsf, kwnames);
    }
    if (m->kind == PM_GETATTR) {
        PyObject *v = NULL;
        Py_INCREF(heap); /* (Heap._load runs Python code) */
        Py_INCREF(off);
        int r = pm_getattr(m, args[0], args[1], heap, off, hd, &v);
        Py_DECREF(heap);
        Py_DECREF(off);
        Py_DECREF(hd);
        if (r < 0) return NULL;
        if (r == 0) return PyObject_Vectorcall(m->full, args, nargsf, kwnames);
        return v;
    }
    if (m->kind == PM_SETITEM) {
        Py_INCREF(heap);
        Py_INCREF(off);
        int r = dict_set_impl(heap, hd, off, args[1], args[2]); /* (takes hd over) */
        Py_DECREF(heap);
        Py_DECREF(off);
        if (r < 0) return NULL;
        if (r) Py_RETURN_NONE;
        return PyObject_Vectorcall(m->rest, args, 3, NULL);
    }
    /* PM_LEN */
    long long o = PyLong_CheckExact(off) ? PyLong_AsLongLong(off) : -1;
    PyObject *buf = d_item(hd, s_buf);
    Py_buffer view;
    if (o < 0 || !buf || PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear(); /* (the Python method raises what it must) */
        Py_DECREF(hd);
        return PyObject_Vectorcall(m->rest, args, 1, NULL);
    }
    PyObject *res = NULL;
    if (o + 16 <= view.len)
        res = PyLong_FromUnsignedLongLong((uint64_t)get64((uint8_t *)view.buf + o + 8));
    PyBuffer_Release(&view);
    Py_DECREF(hd);
    if (res || PyErr_Occurred()) return res;
    return PyObject_Vectorcall(m->rest, args, 1, NULL);
}

static PyObject *pm_descr_get(PyObject *self, PyObject *obj, PyObject *type) {
    if (obj == NULL || obj == Py_None) return Py_NewRef(self);
    return PyMethod_New(self, obj);
}

static void pm_dealloc(PyObject *self) {
    PMeth *m = (PMeth *)self;
    Py_XDECREF(m->full);
    Py_XDECREF(m->rest);
    Py_XDECREF(m->module);
    Py_XDECREF(m->base);
    Py_TYPE(self)->tp_free(self);
}

static PyObject *pm_repr(PyObject *self) {
    return PyUnicode_FromFormat("<compiled proxy method for %R>", ((PMeth *)self)->full);
}

static PyTypeObject PMethType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "persimmon._speedups.ProxyMethod",
    .tp_basicsize = sizeof(PMeth),
    .tp_dealloc = pm_dealloc,
    .tp_vectorcall_offset = offsetof(PMeth, vectorcall),
    .tp_repr = pm_repr,
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_doc = "A proxy method run in C (see proxy_method).",
    .tp_descr_get = pm_descr_get,
};

/* the offset of a __slots__ member of type t, or -1 (an error set) */
static Py_ssize_t slot_offset(PyTypeObject *t, const char *name) {
    PyObject *key = PyUnicode_InternFromString(name);
    if (!key) return -1;
    PyObject *d = _PyType_Lookup(t, key); /* (borrowed; found in a base class too) */
    Py_DECREF(key);
    if (!d || !Py_IS_TYPE(d, &PyMemberDescr_Type) ||
        ((PyMemberDescrObject *)d)->d_member->type != T_OBJECT_EX) {
        PyErr_Format(PyExc_TypeError, "%s is not a __slots__ member of %s", name, t->tp_name);
        return -1;
    }
    return ((PyMemberDescrObject *)d)->d_member->offset;
}

static PyObject *proxy_method(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyLong_Check(args[0]) || !PyCallable_Check(args[1]) ||
        !PyCallable_Check(args[2]) || !PyType_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "proxy_method(kind, full, rest, base)");
        return NULL;
    }
    long kind = PyLong_AsLong(args[0]);
    if (kind != PM_SETITEM && kind != PM_LEN && kind != PM_GETATTR) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "unknown proxy method kind");
        return NULL;
    }
    PyTypeObject *base = (PyTypeObject *)args[3];
    Py_ssize_t ho = slot_offset(base, "_h"), oo = ho < 0 ? -1 : slot_offset(base, "_o");
    Py_ssize_t ao = oo < 0 ? -1 : kind == PM_GETATTR ? slot_offset(base, "_ad") : 0;
    if (ao < 0) return NULL;
    PMeth *m = PyObject_New(PMeth, &PMethType);
    if (!m) return NULL;
    m->vectorcall = pm_call;
    m->kind = (int)kind;
    m->full = Py_NewRef(args[1]);
    m->rest = Py_NewRef(args[2]);
    m->module = Py_NewRef(module);
    m->base = (PyTypeObject *)Py_NewRef(args[3]);
    m->h_off = ho;
    m->o_off = oo;
    m->ad_off = ao;
    return (PyObject *)m;
}

/* rehash(buf, old, nent, es, ents, itab, size) -> count: Heap._ht_resize's copy, in place in
 * the pool.  Copies the live entries of the `nent` at `old` (es = 24 or 16 bytes each; a
 * key slot of DUMMY marks a deleted one) in order to `ents`, and writes the index table of
 * `size` slots at `itab` (zeroed first) for them: the bytes the Python path writes, without
 * a Python integer per field.  Both arrays are the caller's fresh allocations, the entries
 * one of size * 2 / 3 entries (Heap._new_table_arrays); every range is checked against the
 * buffer before anything is written. */
static PyObject *rehash(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    long long v[6];
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "rehash(buf, old, nent, es, ents, itab, size)");
        return NULL;
    }
    for (int k = 0; k < 6; k++) {
        v[k] = PyLong_AsLongLong(args[k + 1]);
        if (v[k] == -1 && PyErr_Occurred()) return NULL;
    }
    long long old = v[0], nent = v[1], es = v[2], ents = v[3], itab = v[4], size = v[5];
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_WRITABLE) < 0) return NULL;
    uint8_t *base = (uint8_t *)view.buf;
    long long blen = (long long)view.len;
    PyObject *out = NULL;
    if ((es != 24 && es != 16) || nent < 0 || size <= 0 || (size & (size - 1)) ||
        nent >= (1LL << 40) || size > (1LL << 40) || old < 0 ||
        ents < 0 || itab < 0 || old > blen - es * nent ||
        ents > blen - es * (size * 2 / 3) || itab > blen - 4 * size) {
        PyErr_SetString(PyExc_ValueError, "rehash: a range outside the pool");
        goto done;
    }
    memset(base + itab, 0, (size_t)size * 4);
    uint64_t mask = (uint64_t)size - 1;
    long long j = 0;
    for (long long k = 0; k < nent; k++) {
        const uint8_t *src = base + old + k * es;
        uint64_t h, kslot;
        if (k + PREFETCH_AHEAD < nent) {  /* the index slots are random: ask for one early */
            uint64_t ha;
            memcpy(&ha, src + PREFETCH_AHEAD * es, 8);
            __builtin_prefetch(base + itab + 4 * (ha & mask), 1);
        }
        memcpy(&h, src, 8);
        memcpy(&kslot, src + 8, 8);
        if (kslot == (uint64_t)DUMMY) continue;
        if (j >= size * 2 / 3) {
            PyErr_SetString(PyExc_ValueError, "rehash: more live entries than the new table holds");
            goto done;
        }
        memmove(base + ents + j * es, src, (size_t)es);
        uint64_t i = h & mask, perturb = h;
        for (;;) {
            uint32_t x;
            memcpy(&x, base + itab + 4 * i, 4);
            if (!x) break;
            i = probe_next(i, &perturb, mask);
        }
        put32(base + itab + 4 * i, (uint32_t)(j + 1));
        j++;
    }
    out = PyLong_FromLongLong(j);
done:
    PyBuffer_Release(&view);
    return out;
}

/* decode_blobs(buf, slots) -> list or None: the objects at these slots when every one is a
 * bytes or str object (a reference to a T_BYTES or T_STR header), read out of buf, as
 * materialize builds them; None, having built nothing that survives, as soon as one is
 * anything else (an immediate, another type, an offset outside buf): the caller takes its
 * own path for those.  A str that is not valid UTF-8 (surrogates allowed) raises the
 * decoding error, as the Python path does. */
static PyObject *decode_blobs(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyList_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "decode_blobs(buf, slots: list)");
        return NULL;
    }
    PyObject *slots = args[1];
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    const uint8_t *base = (const uint8_t *)view.buf;
    long long blen = (long long)view.len;
    Py_ssize_t n = PyList_GET_SIZE(slots);
    /* The offsets first, checked, so that the objects can be prefetched a few ahead: they
     * lie anywhere in the pool, and waiting for each in turn was most of the time. */
    long long small[512], *offs = n <= 512 ? small : PyMem_Malloc(sizeof(long long) * n);
    PyObject *out = offs ? PyList_New(n) : PyErr_NoMemory();
    if (!out) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *s = PyList_GET_ITEM(slots, i);
        long long o = PyLong_CheckExact(s) ? PyLong_AsLongLong(s) : -1;
        if (o == -1 && PyErr_Occurred()) PyErr_Clear();
        if (o <= 0 || (o & 7) || o + 16 > blen) goto decline;
        offs[i] = o;
    }
    for (Py_ssize_t i = 0; i < n && i < PREFETCH_AHEAD; i++) __builtin_prefetch(base + offs[i]);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i + PREFETCH_AHEAD < n) {
            const uint8_t *ahead = base + offs[i + PREFETCH_AHEAD];
            __builtin_prefetch(ahead);
            __builtin_prefetch(ahead + 64);
        }
        long long o = offs[i];
        uint8_t t = base[o];
        long long len = get64(base + o + 8);
        if ((t != T_BYTES && t != T_STR) || len < 0 || len > blen - o - 16) goto decline;
        PyObject *v = t == T_BYTES
            ? PyBytes_FromStringAndSize((const char *)base + o + 16, (Py_ssize_t)len)
            : PyUnicode_DecodeUTF8((const char *)base + o + 16, (Py_ssize_t)len,
                                   "surrogatepass");
        if (!v) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, i, v);
    }
    goto done;
decline:
    Py_DECREF(out); /* (the items not set are NULL, which list_dealloc skips) */
    out = Py_NewRef(Py_None);
done:
    if (offs && offs != small) PyMem_Free(offs);
    PyBuffer_Release(&view);
    return out;
}


/* The body of Heap._mark_slots (the walk from the root at open, heap.py): check each slot
 * value of `slots`; mark each object it refers to in `cover` (2 at its first block, 1 at the
 * others), count a second reference in `rc`, push containers onto `stack`.  Returns the
 * number of blocks marked, or None (declined) at the first slot that is not what a sound
 * pool holds: the Python twin then names the damage. */
#define SLOT_NONE 2
#define SLOT_FALSE 10
#define SLOT_TRUE 18
/* bit t set: an object of type t may be a slot's value (layout.py VALUE_TYPES) */
#define VALUE_TYPES ((1ULL << 1) | (1ULL << 2) | (1ULL << 3) | (1ULL << 4) | (1ULL << 5) | \
                     (1ULL << 6) | (1ULL << 7) | (1ULL << 8) | (1ULL << 9) | (1ULL << 10) | \
                     (1ULL << 11) | (1ULL << 12) | (1ULL << 17))
static PyObject *mark_slots(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7 || !PyList_CheckExact(args[4]) || !PyDict_CheckExact(args[5]) ||
        !PyList_CheckExact(args[6])) {
        PyErr_SetString(PyExc_TypeError,
                        "mark_slots(buf, cover, arena, top, slots: list, rc: dict, stack: list)");
        return NULL;
    }
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError, "mark_slots before configure()");
        return NULL;
    }
    long long arena = PyLong_AsLongLong(args[2]), top = PyLong_AsLongLong(args[3]);
    if ((arena == -1 || top == -1) && PyErr_Occurred()) return NULL;
    Py_buffer view, cview;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    if (PyObject_GetBuffer(args[1], &cview, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    const uint8_t *base = (const uint8_t *)view.buf;
    uint8_t *cover = (uint8_t *)cview.buf;
    PyObject *slots = args[4], *rc = args[5], *stack = args[6], *out = NULL;
    long long covered = 0;
    if (arena <= 0 || (arena & 31) || top > (long long)view.len || top < arena ||
        ((top - arena) >> 5) > (long long)cview.len)
        goto decline;
    Py_ssize_t n = PyList_GET_SIZE(slots);
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *s = PyList_GET_ITEM(slots, k);
        long long x = PyLong_AsLongLong(s);
        if (x == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            goto decline;
        }
        if (x & 7) {
            if ((x & 1) || x == SLOT_NONE || x == SLOT_FALSE || x == SLOT_TRUE) continue;
            goto decline;
        }
        if (x == 0) continue;
        if (x <= arena || x >= top || ((x - arena) & 31)) goto decline;
        long long i = (x - arena) >> 5;
        uint8_t t = base[x], cls = base[x + 1];
        if (cover[i]) {
            if (cover[i] != 2 || t >= 64 || !((VALUE_TYPES >> t) & 1)) goto decline;
            PyObject *old = PyDict_GetItemWithError(rc, s);
            long long c = 1;
            if (old) {
                c = PyLong_AsLongLong(old);
                if (c == -1 && PyErr_Occurred()) goto done;
            } else if (PyErr_Occurred()) {
                goto done;
            }
            PyObject *nv = PyLong_FromLongLong(c + 1);
            if (!nv || PyDict_SetItem(rc, s, nv) < 0) {
                Py_XDECREF(nv);
                goto done;
            }
            Py_DECREF(nv);
            continue;
        }
        if (t >= 64 || !((VALUE_TYPES >> t) & 1) || cls >= nclasses ||
            x + (long long)class_sizes[cls] > top)
            goto decline;
        long long nb = (long long)(class_sizes[cls] >> 5);
        cover[i] = 2;
        if (nb > 1) memset(cover + i + 1, 1, (size_t)(nb - 1));
        covered += nb;
        if (!((leaves_mask >> t) & 1) && PyList_Append(stack, s) < 0) goto done;
    }
    out = PyLong_FromLongLong(covered);
    goto done;
decline:
    out = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&cview);
    PyBuffer_Release(&view);
    return out;
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(small_table, class_sizes, leaf_types, xxh3_64_intdigest[, xxh32_intdigest, "
     "xxhash_library_path])"},
    {"store_blob", (PyCFunction)(void (*)(void))store_blob, METH_FASTCALL,
     "store_blob(heap, off, t, data) -> bool: the common path of Heap._store_blob"},
    {"insert_blobs", (PyCFunction)(void (*)(void))insert_blobs, METH_FASTCALL,
     "insert_blobs(heap, d, h, p, kt, kdata, vdata) -> entry offset or None: the common "
     "path of Heap._ht_insert_blobs"},
    {"dict_set", (PyCFunction)(void (*)(void))dict_set, METH_FASTCALL,
     "dict_set(heap, d, key, value) -> bool: the common path of PDict.__setitem__"},
    {"ht_seek", (PyCFunction)(void (*)(void))ht_seek, METH_FASTCALL,
     "ht_seek(heap, d, es, key) -> (entry or -1, hash, slot) or None: Heap._ht_seek of a "
     "bytes or str key, probed in the pool"},
    {"undo_log_block", (PyCFunction)(void (*)(void))undo_log_block, METH_FASTCALL,
     "undo_log_block(undo, a) -> bool: UndoLog.log_block (False: the segment is full, the "
     "Python method spills)"},
    {"direct_hashes", direct_hashes, METH_NOARGS,
     "direct_hashes() -> bool: the xxHash library's functions are called directly"},
    {"apply_run", (PyCFunction)(void (*)(void))apply_run, METH_FASTCALL,
     "apply_run(ctx, pos, head, limit, in_batch) -> (n, pos, in_batch, why): the shadow's "
     "apply loop (ctx: an ApplyContext)"},
    {"log_put_group", (PyCFunction)(void (*)(void))log_put_group, METH_FASTCALL,
     "log_put_group(buf, a, pos, payloads, ln) -> bool: a group entry written in place"},
    {"log_read", (PyCFunction)(void (*)(void))log_read, METH_FASTCALL,
     "log_read(buf, data, cap, pos) -> (payload, next) or None: OpLog.read's common case"},
    {"proxy_method", (PyCFunction)(void (*)(void))proxy_method, METH_FASTCALL,
     "proxy_method(kind, full, rest, base): a proxy method run in C (PM_SETITEM, PM_LEN, "
     "PM_GETATTR)"},
    {"decode_blobs", (PyCFunction)(void (*)(void))decode_blobs, METH_FASTCALL,
     "decode_blobs(buf, slots) -> list or None: bytes/str objects materialize reads"},
    {"pack_op", pack_op, METH_O,
     "pack_op(op) -> bytes or None: the T payload of an operation made of tuples, bytes, "
     "64-bit ints and None; None for any other"},
    {"unpack_op", unpack_op, METH_O,
     "unpack_op(payload) -> op: the operation in a T payload (ValueError: damaged)"},
    {"mark_slots", (PyCFunction)(void (*)(void))mark_slots, METH_FASTCALL,
     "mark_slots(buf, cover, arena, top, slots, rc, stack): Heap._mark_slots's body, or None"},
    {"rehash", (PyCFunction)(void (*)(void))rehash, METH_FASTCALL,
     "rehash(buf, old, nent, es, ents, itab, size) -> count: Heap._ht_resize's copy and "
     "index, in place"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speedups",
                                    "Compiled fast paths of the persistent heap.", -1, methods};

/* API: what native.py checks before it uses this module (native.API); raise it with any
 * change of these functions' arguments or behaviour. */
#define API 15

PyMODINIT_FUNC PyInit__speedups(void) {
    if (intern_all() < 0) return NULL;
    if (PyType_Ready(&PMethType) < 0 || PyType_Ready(&GrouperType) < 0 ||
        PyType_Ready(&ApplyContextType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    /* the layout constants compiled in, which native.py checks against its own */
    if (m && (PyModule_AddIntConstant(m, "API", API) < 0 ||
              PyModule_AddIntConstant(m, "T_STR", T_STR) < 0 ||
              PyModule_AddIntConstant(m, "T_BYTES", T_BYTES) < 0 ||
              PyModule_AddIntConstant(m, "HT_NENT", HT_NENT) < 0 ||
              PyModule_AddIntConstant(m, "HT_ITAB", HT_ITAB) < 0 ||
              PyModule_AddIntConstant(m, "HT_ENTS", HT_ENTS) < 0 ||
              PyModule_AddIntConstant(m, "PROBE_OVER", PROBE_OVER) < 0 ||
              PyModule_AddIntConstant(m, "DUMMY", DUMMY) < 0 ||
              PyModule_AddIntConstant(m, "PERTURB_SHIFT", PERTURB_SHIFT) < 0 ||
              PyModule_AddObject(m, "VALUE_TYPES",
                                 PyLong_FromUnsignedLongLong(VALUE_TYPES)) < 0 ||
              PyModule_AddIntConstant(m, "PM_SETITEM", PM_SETITEM) < 0 ||
              PyModule_AddIntConstant(m, "PM_LEN", PM_LEN) < 0 ||
              PyModule_AddIntConstant(m, "PM_GETATTR", PM_GETATTR) < 0 ||
              PyModule_AddObject(m, "CONTRACT", contract()) < 0 ||
              PyModule_AddObjectRef(m, "Grouper", (PyObject *)&GrouperType) < 0 ||
              PyModule_AddObjectRef(m, "ApplyContext", (PyObject *)&ApplyContextType) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
