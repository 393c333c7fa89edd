/* persimmon._commitio: a disk pool's group commit written by a thread of its own.
 *
 * A commit of the operation log on a disk pool is a synced write of the staged ranges
 * (O_DSYNC descriptor) and then an unsynced write of the head (oplog.py, _write_through).
 * A server overlaps it with more requests.  Done by a Python thread, each commit cost a
 * dozen futex calls and several hand-offs of the GIL to a loop that is busy (measured: more
 * server CPU per request than the wait it hides).  This thread never takes the GIL: it
 * reads the bytes of the submitted ranges (immutable, kept alive by the writer until
 * finish()), does the same two writes, and says it is done through an eventfd the event
 * loop watches.
 *
 *   w = Writer(sync_fd, fd[, efd])   # sync_fd: the file opened with O_DSYNC; fd: the file
 *   w.fileno()                   # the eventfd: readable once a submitted commit is done
 *   w.submit(ranges, head_off, head)   # ranges: tuple of (offset, bytes); head: 8 bytes
 *                                # (head_off -1: no head; the caller publishes it)
 *   w.done()                     # True once the writes are over (finish() not called yet)
 *   w.finish()                   # waits for them (GIL released), raises their OSError
 *   w.close()                    # stops the thread (after the commit in flight)
 *
 * One commit is in flight at a time per writer.  The ranges are written in order, each
 * completely (short writes continued), and the head only after every range: the order the
 * crash simulator checks for the Python path (tests/test_disk_crash.py).  Several writers
 * may share one eventfd (efd, which they then do not own: they signal it and never read or
 * close it; its owner reads it and asks each writer done()): the op log keeps several
 * commits in flight that way, and publishes the head itself, in order.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

enum { IDLE = 0, SUBMITTED = 1, WRITTEN = 2 };

typedef struct {
    PyObject_HEAD
    int sync_fd;
    int fd;
    int efd;
    int own_efd;              /* 0: efd is shared, its owner reads and closes it */
    int started;
    int stop;
    int state;
    int error;                /* errno of the failed write, 0 */
    pthread_t thread;
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    Py_ssize_t nranges;
    const char **data;
    Py_ssize_t *lengths;
    long long *offsets;
    long long head_off;
    char head[8];
    PyObject *keep;           /* the submitted ranges, alive until finish() */
} Writer;

static int write_all(int fd, const char *p, Py_ssize_t n, long long off)
{
    while (n > 0) {
        ssize_t k = pwrite(fd, p, (size_t)n, (off_t)off);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return errno ? errno : EIO;
        }
        if (k == 0)
            return EIO;
        p += k;
        n -= k;
        off += k;
    }
    return 0;
}

static void *writer_main(void *arg)
{
    Writer *w = (Writer *)arg;
    /* signals are the main thread's business (Python runs its handlers there) */
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    pthread_mutex_lock(&w->mutex);
    for (;;) {
        while (w->state != SUBMITTED && !w->stop)
            pthread_cond_wait(&w->cond, &w->mutex);
        if (w->state != SUBMITTED)
            break; /* stopped, nothing in flight */
        pthread_mutex_unlock(&w->mutex);
        int err = 0;
        for (Py_ssize_t i = 0; i < w->nranges && !err; i++)
            err = write_all(w->sync_fd, w->data[i], w->lengths[i], w->offsets[i]);
        if (!err && w->head_off >= 0)
            err = write_all(w->fd, w->head, 8, w->head_off);
        pthread_mutex_lock(&w->mutex);
        w->error = err;
        w->state = WRITTEN;
        /* the eventfd is written before anyone can see WRITTEN and drain it */
        uint64_t one = 1;
        ssize_t r;
        do {
            r = write(w->efd, &one, sizeof one);
        } while (r < 0 && errno == EINTR);
        pthread_cond_broadcast(&w->cond);
    }
    pthread_mutex_unlock(&w->mutex);
    return NULL;
}

static void release_job(Writer *w)
{
    PyMem_Free(w->data);
    PyMem_Free(w->lengths);
    PyMem_Free(w->offsets);
    w->data = NULL;
    w->lengths = NULL;
    w->offsets = NULL;
    w->nranges = 0;
    Py_CLEAR(w->keep);
}

static int Writer_init(Writer *w, PyObject *args, PyObject *kw)
{
    static char *names[] = {"sync_fd", "fd", "efd", NULL};
    int efd = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "ii|i", names, &w->sync_fd, &w->fd, &efd))
        return -1;
    if (w->efd >= 0) {
        PyErr_SetString(PyExc_RuntimeError, "Writer initialised twice");
        return -1;
    }
    if (efd >= 0) {
        w->efd = efd;
        w->own_efd = 0;
        return 0;
    }
    w->own_efd = 1;
    w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->efd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

static PyObject *Writer_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    Writer *w = (Writer *)type->tp_alloc(type, 0);
    if (w == NULL)
        return NULL;
    w->efd = -1;
    w->sync_fd = w->fd = -1;
    pthread_mutex_init(&w->mutex, NULL);
    pthread_cond_init(&w->cond, NULL);
    return (PyObject *)w;
}

static void stop_thread(Writer *w)
{
    if (!w->started)
        return;
    pthread_mutex_lock(&w->mutex);
    w->stop = 1;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mutex);
    Py_BEGIN_ALLOW_THREADS
    pthread_join(w->thread, NULL);
    Py_END_ALLOW_THREADS
    w->started = 0;
}

static PyObject *Writer_close(Writer *w, PyObject *unused)
{
    stop_thread(w);
    if (w->state != SUBMITTED)
        release_job(w);
    if (w->efd >= 0) {
        if (w->own_efd)
            close(w->efd);
        w->efd = -1;
    }
    Py_RETURN_NONE;
}

static void Writer_dealloc(Writer *w)
{
    stop_thread(w);
    release_job(w);
    if (w->efd >= 0 && w->own_efd)
        close(w->efd);
    pthread_mutex_destroy(&w->mutex);
    pthread_cond_destroy(&w->cond);
    Py_TYPE(w)->tp_free((PyObject *)w);
}

static PyObject *Writer_fileno(Writer *w, PyObject *unused)
{
    return PyLong_FromLong(w->efd);
}

static PyObject *Writer_submit(Writer *w, PyObject *args)
{
    PyObject *ranges;
    long long head_off;
    Py_buffer head;
    if (!PyArg_ParseTuple(args, "OLy*", &ranges, &head_off, &head))
        return NULL;
    if (head_off >= 0 && head.len != 8) {
        PyBuffer_Release(&head);
        PyErr_SetString(PyExc_ValueError, "the head is 8 bytes");
        return NULL;
    }
    if (head_off >= 0)
        memcpy(w->head, head.buf, 8);
    PyBuffer_Release(&head);
    if (w->efd < 0) {
        PyErr_SetString(PyExc_ValueError, "the writer is closed");
        return NULL;
    }
    if (w->state != IDLE) {
        PyErr_SetString(PyExc_RuntimeError, "a commit is already in flight");
        return NULL;
    }
    PyObject *seq = PySequence_Tuple(ranges);
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(seq);
    w->data = PyMem_Malloc(sizeof(char *) * (n ? n : 1));
    w->lengths = PyMem_Malloc(sizeof(Py_ssize_t) * (n ? n : 1));
    w->offsets = PyMem_Malloc(sizeof(long long) * (n ? n : 1));
    w->keep = seq;
    if (!w->data || !w->lengths || !w->offsets) {
        release_job(w);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *r = PyTuple_GET_ITEM(seq, i);
        if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) != 2
                || !PyLong_Check(PyTuple_GET_ITEM(r, 0))
                || !PyBytes_Check(PyTuple_GET_ITEM(r, 1))) {
            release_job(w);
            PyErr_SetString(PyExc_TypeError, "ranges: (offset: int, data: bytes) pairs");
            return NULL;
        }
        long long off = PyLong_AsLongLong(PyTuple_GET_ITEM(r, 0));
        if (off < 0) {
            release_job(w);
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "a negative offset");
            return NULL;
        }
        w->offsets[i] = off;
        w->data[i] = PyBytes_AS_STRING(PyTuple_GET_ITEM(r, 1));
        w->lengths[i] = PyBytes_GET_SIZE(PyTuple_GET_ITEM(r, 1));
    }
    w->nranges = n;
    w->head_off = head_off;
    w->error = 0;
    if (!w->started) {
        int rc = pthread_create(&w->thread, NULL, writer_main, w);
        if (rc != 0) {
            release_job(w);
            errno = rc;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        w->started = 1;
    }
    pthread_mutex_lock(&w->mutex);
    w->state = SUBMITTED;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mutex);
    Py_RETURN_NONE;
}

static PyObject *Writer_done(Writer *w, PyObject *unused)
{
    pthread_mutex_lock(&w->mutex);
    int state = w->state;
    pthread_mutex_unlock(&w->mutex);
    return PyBool_FromLong(state == WRITTEN);
}

static PyObject *Writer_finish(Writer *w, PyObject *unused)
{
    if (w->state == IDLE) {
        PyErr_SetString(PyExc_RuntimeError, "no commit in flight");
        return NULL;
    }
    int err;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&w->mutex);
    while (w->state == SUBMITTED)
        pthread_cond_wait(&w->cond, &w->mutex);
    err = w->error;
    w->state = IDLE;
    pthread_mutex_unlock(&w->mutex);
    Py_END_ALLOW_THREADS
    uint64_t count;
    while (w->own_efd && read(w->efd, &count, sizeof count) < 0 && errno == EINTR)
        ;
    release_job(w);
    if (err) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyMethodDef Writer_methods[] = {
    {"submit", (PyCFunction)Writer_submit, METH_VARARGS,
     "submit(ranges, head_off, head): write the (offset, bytes) ranges through the synced "
     "descriptor, then (head_off >= 0) the 8-byte head at head_off through the other, in "
     "the thread."},
    {"done", (PyCFunction)Writer_done, METH_NOARGS,
     "True once the submitted writes are over (successful or not)."},
    {"finish", (PyCFunction)Writer_finish, METH_NOARGS,
     "Wait for the submitted writes (the GIL released) and raise their OSError, if any."},
    {"fileno", (PyCFunction)Writer_fileno, METH_NOARGS,
     "The eventfd that becomes readable when a submitted commit is done."},
    {"close", (PyCFunction)Writer_close, METH_NOARGS,
     "Stop the thread (after the commit in flight) and close the eventfd."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject WriterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "persimmon._commitio.Writer",
    .tp_basicsize = sizeof(Writer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A disk pool's group commits, written by a thread that never takes the GIL.",
    .tp_new = Writer_new,
    .tp_init = (initproc)Writer_init,
    .tp_dealloc = (destructor)Writer_dealloc,
    .tp_methods = Writer_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_commitio",
    "A disk pool's group commit written by a thread of its own (see oplog.py).", -1, NULL,
};

PyMODINIT_FUNC PyInit__commitio(void)
{
    if (PyType_Ready(&WriterType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&WriterType);
    if (PyModule_AddObject(m, "Writer", (PyObject *)&WriterType) < 0) {
        Py_DECREF(&WriterType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
