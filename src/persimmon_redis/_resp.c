/* persimmon_redis._resp: the compiled fast path of reading requests (docs/redis.md,
 * "Reading requests").
 *
 * parse_commands(data, max_bulk) -> list[list[bytes]] | None
 * get_reply(data, max_bulk, table, resp3) -> bytes | None  (one GET, answered at once)
 * set_args(data, max_bulk) -> tuple[bytes, bytes, bytes] | None  (one plain SET)
 *
 * Returns the commands of ``data`` when it is made only of whole, plain RESP commands:
 * each an array ('*' count CRLF, count 1 to 1,048,576) of bulk strings ('$' length CRLF,
 * the bytes, CRLF), every count and length written with at most 8 digits and no leading
 * zero, every length at most ``max_bulk``.  Anything else (a command cut at the end of
 * the chunk, an inline command, an empty chunk or array, a negative array, a long length,
 * a malformed byte) gives None, and the caller reads the chunk the general way (hiredis
 * and the checks around it), which says what is wrong with it.  So where it answers, it answers
 * as hiredis does; ``persimmon_redis.resp.parse_commands`` is its pure-Python twin and
 * the reference it is tested against.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define MAX_ARGS (1024 * 1024)
#define MAX_DIGITS 8

/* A decimal number of 1 to MAX_DIGITS digits ending with CRLF at *pos; advances past the
 * CRLF.  -1 when it is anything else (or the data ends first). */
static Py_ssize_t
read_number(const char *buf, Py_ssize_t len, Py_ssize_t *pos)
{
    Py_ssize_t i = *pos, start = i, value = 0;
    while (i < len && buf[i] >= '0' && buf[i] <= '9') {
        if (i - start == MAX_DIGITS)
            return -1;
        value = value * 10 + (buf[i] - '0');
        i++;
    }
    if (i == start || (buf[start] == '0' && i - start > 1))
        return -1;
    if (i + 1 >= len || buf[i] != '\r' || buf[i + 1] != '\n')
        return -1;
    *pos = i + 2;
    return value;
}

static Py_ssize_t
digits(Py_ssize_t n)
{
    Py_ssize_t d = 1;
    while (n >= 10) {
        n /= 10;
        d++;
    }
    return d;
}

static PyObject *
parse_commands(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "parse_commands(data, max_bulk) takes 2 arguments");
        return NULL;
    }
    if (!PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "parse_commands: data must be bytes");
        return NULL;
    }
    Py_ssize_t max_bulk = PyLong_AsSsize_t(args[1]);
    if (max_bulk == -1 && PyErr_Occurred())
        return NULL;
    const char *buf = PyBytes_AS_STRING(args[0]);
    Py_ssize_t len = PyBytes_GET_SIZE(args[0]), pos = 0;
    if (len == 0)
        Py_RETURN_NONE;
    PyObject *commands = PyList_New(0);
    if (commands == NULL)
        return NULL;
    while (pos < len) {
        if (buf[pos] != '*')
            goto decline;
        pos++;
        Py_ssize_t count = read_number(buf, len, &pos);
        if (count < 1 || count > MAX_ARGS)
            goto decline;
        /* the smallest argument takes 6 bytes ("$0\r\n\r\n"): a count the chunk cannot
         * hold is a command cut at its end (declined before anything is allocated) */
        if (count > (len - pos) / 6)
            goto decline;
        PyObject *argv = PyList_New(count);
        if (argv == NULL)
            goto fail;
        if (PyList_Append(commands, argv) < 0) {
            Py_DECREF(argv);
            goto fail;
        }
        Py_DECREF(argv); /* (the list of commands holds it) */
        for (Py_ssize_t j = 0; j < count; j++) {
            if (pos >= len || buf[pos] != '$')
                goto decline;
            pos++;
            Py_ssize_t size = read_number(buf, len, &pos);
            if (size < 0 || size > max_bulk || size > len - pos - 2)
                goto decline;
            if (buf[pos + size] != '\r' || buf[pos + size + 1] != '\n')
                goto decline;
            PyObject *arg = PyBytes_FromStringAndSize(buf + pos, size);
            if (arg == NULL)
                goto fail;
            PyList_SET_ITEM(argv, j, arg);
            pos += size + 2;
        }
    }
    return commands;
decline:
    Py_DECREF(commands);
    Py_RETURN_NONE;
fail:
    Py_DECREF(commands);
    return NULL;
}

/* wire_size(command) -> int: how many bytes hiredis consumed for a command it returned,
 * written the shortest way (the server counts what hiredis holds with it). */
static PyObject *
wire_size(PyObject *self, PyObject *command)
{
    if (command == Py_None)
        return PyLong_FromLong(5); /* "*-1\r\n" */
    if (!PyList_Check(command)) {
        PyErr_SetString(PyExc_TypeError, "wire_size: a list of bytes or None");
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(command);
    Py_ssize_t total = 3 + digits(count);
    for (Py_ssize_t j = 0; j < count; j++) {
        PyObject *arg = PyList_GET_ITEM(command, j);
        if (!PyBytes_Check(arg)) {
            PyErr_SetString(PyExc_TypeError, "wire_size: a list of bytes or None");
            return NULL;
        }
        Py_ssize_t size = PyBytes_GET_SIZE(arg);
        total += 5 + digits(size) + size;
    }
    return PyLong_FromSsize_t(total);
}

/* get_reply(data, max_bulk, table, resp3) -> bytes | None
 *
 * When ``data`` is exactly one plain command GET (any case) of one key, as parse_commands
 * reads it, and ``table`` (a dict: the database's keys) holds no value for the key or a
 * plain bytes value: the reply to send (the bulk string, or the nil of RESP2 or RESP3).
 * None for anything else, and the caller dispatches the chunk the usual way.  The caller
 * checks first that nothing else could change the answer (no key has a TTL in that
 * database, the client is a plain one): see Client.data_received. */
static PyObject *
get_reply(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "get_reply(data, max_bulk, table, resp3) takes 4 arguments");
        return NULL;
    }
    if (!PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "get_reply: data must be bytes");
        return NULL;
    }
    if (!PyDict_CheckExact(args[2]))
        Py_RETURN_NONE; /* (keys held some other way: the handler reads them) */
    Py_ssize_t max_bulk = PyLong_AsSsize_t(args[1]);
    if (max_bulk == -1 && PyErr_Occurred())
        return NULL;
    int resp3 = PyObject_IsTrue(args[3]);
    if (resp3 < 0)
        return NULL;
    const char *buf = PyBytes_AS_STRING(args[0]);
    Py_ssize_t len = PyBytes_GET_SIZE(args[0]);
    /* "*2\r\n$3\r\nGET\r\n$" then the key's length, CRLF, the key, CRLF, and nothing more */
    if (len < 19 || memcmp(buf, "*2\r\n$3\r\n", 8) != 0 || (buf[8] | 0x20) != 'g'
        || (buf[9] | 0x20) != 'e' || (buf[10] | 0x20) != 't'
        || memcmp(buf + 11, "\r\n$", 3) != 0)
        Py_RETURN_NONE;
    Py_ssize_t pos = 14;
    Py_ssize_t size = read_number(buf, len, &pos);
    if (size < 0 || size > max_bulk || size != len - pos - 2 || buf[pos + size] != '\r'
        || buf[pos + size + 1] != '\n')
        Py_RETURN_NONE;
    PyObject *key = PyBytes_FromStringAndSize(buf + pos, size);
    if (key == NULL)
        return NULL;
    PyObject *value = PyDict_GetItemWithError(args[2], key); /* (borrowed) */
    Py_DECREF(key);
    if (value == NULL) {
        if (PyErr_Occurred())
            return NULL;
        return resp3 ? PyBytes_FromStringAndSize("_\r\n", 3)
                     : PyBytes_FromStringAndSize("$-1\r\n", 5);
    }
    if (!PyBytes_CheckExact(value))
        Py_RETURN_NONE; /* (another type, or a string kept another way: the handler) */
    Py_ssize_t vlen = PyBytes_GET_SIZE(value);
    char head[32];
    int hlen = snprintf(head, sizeof head, "$%zd\r\n", vlen);
    PyObject *reply = PyBytes_FromStringAndSize(NULL, hlen + vlen + 2);
    if (reply == NULL)
        return NULL;
    char *out = PyBytes_AS_STRING(reply);
    memcpy(out, head, hlen);
    memcpy(out + hlen, PyBytes_AS_STRING(value), vlen);
    out[hlen + vlen] = '\r';
    out[hlen + vlen + 1] = '\n';
    return reply;
}

/* set_args(data, max_bulk) -> (name, key, value) | None
 *
 * When ``data`` is exactly one plain command SET (any case) of one key and one value, as
 * parse_commands reads it: its three arguments, as a tuple (the name as it was sent).  None
 * for anything else (SET with options, another command, more than one command, a command
 * cut at the end), and the caller dispatches the chunk the usual way. */
static PyObject *
set_args(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "set_args(data, max_bulk) takes 2 arguments");
        return NULL;
    }
    if (!PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "set_args: data must be bytes");
        return NULL;
    }
    Py_ssize_t max_bulk = PyLong_AsSsize_t(args[1]);
    if (max_bulk == -1 && PyErr_Occurred())
        return NULL;
    const char *buf = PyBytes_AS_STRING(args[0]);
    Py_ssize_t len = PyBytes_GET_SIZE(args[0]);
    /* "*3\r\n$3\r\nSET\r\n$" then the key's length, CRLF, the key, CRLF, '$', the value's
     * length, CRLF, the value, CRLF, and nothing more */
    if (len < 25 || memcmp(buf, "*3\r\n$3\r\n", 8) != 0 || (buf[8] | 0x20) != 's'
        || (buf[9] | 0x20) != 'e' || (buf[10] | 0x20) != 't'
        || memcmp(buf + 11, "\r\n$", 3) != 0)
        Py_RETURN_NONE;
    Py_ssize_t pos = 14;
    Py_ssize_t ksize = read_number(buf, len, &pos);
    if (ksize < 0 || ksize > max_bulk || ksize > len - pos - 2 || buf[pos + ksize] != '\r'
        || buf[pos + ksize + 1] != '\n')
        Py_RETURN_NONE;
    Py_ssize_t kpos = pos;
    pos += ksize + 2;
    if (pos >= len || buf[pos] != '$')
        Py_RETURN_NONE;
    pos++;
    Py_ssize_t vsize = read_number(buf, len, &pos);
    if (vsize < 0 || vsize > max_bulk || vsize != len - pos - 2 || buf[pos + vsize] != '\r'
        || buf[pos + vsize + 1] != '\n')
        Py_RETURN_NONE;
    PyObject *out = PyTuple_New(3);
    if (out == NULL)
        return NULL;
    PyObject *name = PyBytes_FromStringAndSize(buf + 8, 3);
    PyObject *key = name ? PyBytes_FromStringAndSize(buf + kpos, ksize) : NULL;
    PyObject *value = key ? PyBytes_FromStringAndSize(buf + pos, vsize) : NULL;
    PyTuple_SET_ITEM(out, 0, name); /* (a NULL item is fine for the tuple's dealloc) */
    PyTuple_SET_ITEM(out, 1, key);
    PyTuple_SET_ITEM(out, 2, value);
    if (value == NULL) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

static PyMethodDef methods[] = {
    {"set_args", (PyCFunction)(void (*)(void))set_args, METH_FASTCALL,
     "set_args(data, max_bulk) -> (name, key, value) when data is one plain SET of a key "
     "and a value, else None."},
    {"get_reply", (PyCFunction)(void (*)(void))get_reply, METH_FASTCALL,
     "get_reply(data, max_bulk, table, resp3) -> the reply when data is one plain GET whose "
     "value in table is missing or plain bytes, else None."},
    {"wire_size", wire_size, METH_O,
     "wire_size(command) -> bytes of the command written the shortest way (None: '*-1')."},
    {"parse_commands", (PyCFunction)(void (*)(void))parse_commands, METH_FASTCALL,
     "parse_commands(data, max_bulk) -> list of argument lists, or None when data is not "
     "made only of whole plain commands (read it the general way then)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_resp",
    "The compiled fast path of reading requests (see persimmon_redis.resp).", -1, methods,
};

PyMODINIT_FUNC
PyInit__resp(void)
{
    return PyModule_Create(&module);
}
