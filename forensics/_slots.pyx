# cython: language_level=3, boundscheck=False, wraparound=False
"""The constructors of the frozen records (``model.slot_filler``) in compiled code (optional).

A run makes about eleven records a packet's worth of work: endpoints, markers, TCP options,
DNS answers and responses, connections, transactions, attempts. ``model.slot_filler``'s
constructor in Python stores each field in a slot of a plain class of the same layout and
then gives the object its class: 190 ns an ``Endpoint``, 580 ns a ``TcpConn``, most of it
the interpreter's call, its stores and the class change. ``filler`` makes a built-in
function that allocates the record of its class and puts each argument in its field's slot:
the same object, with no Python frame. ``reader`` makes the other way's: one call gives
several fields of a record as a tuple, read in their slots (``operator.attrgetter``'s
tuple), where each attribute read of compiled code goes through the class's descriptors.

``filler(cls, names)`` gives None where it cannot be sure of that: a field that is not a slot
holding an object, a class with items or a ``__new__`` of its own. The constructor takes its
fields positionally only (keywords are refused), as every caller passes them.
``tests/test_slots.py`` compares it with the Python constructor for every record.
"""

from cpython.object cimport PyObject, PyTypeObject


cdef extern from *:
    """
    #include "structmember.h"

    /* a constructor: its method definition first (the function object points at it), then
       its class and the offset of each field's slot, in the order of the arguments */
    typedef struct {
        PyMethodDef def;
        PyTypeObject *tp;
        PyObject *names;  /* a reader's: the fields' names (a tuple), for an object of another class */
        Py_ssize_t n;
        Py_ssize_t offs[1];
    } forensics_filler;

    static const char FORENSICS_FILLER[] = "forensics._slots.filler";

    /* the offset of a member descriptor's slot holding an object, or -1 */
    static Py_ssize_t forensics_member_offset(PyObject *d) {
        PyMemberDef *m;
        if (d == NULL || !Py_IS_TYPE(d, &PyMemberDescr_Type))
            return -1;
        m = ((PyMemberDescrObject *)d)->d_member;
        if (m->type != T_OBJECT_EX || m->offset <= 0 || (m->flags & READONLY))
            return -1;
        return m->offset;
    }

    static PyObject *forensics_fill(PyObject *cap, PyObject *const *args, Py_ssize_t nargs) {
        forensics_filler *f = (forensics_filler *)PyCapsule_GetPointer(cap, FORENSICS_FILLER);
        PyObject *o;
        Py_ssize_t i;
        if (f == NULL)
            return NULL;
        if (nargs != f->n) {
            PyErr_Format(PyExc_TypeError, "%s() takes %zd positional arguments but %zd were given",
                         f->def.ml_name, f->n, nargs);
            return NULL;
        }
        o = f->tp->tp_alloc(f->tp, 0);  /* zeroed, and tracked by the collector where the class is */
        if (o == NULL)
            return NULL;
        for (i = 0; i < nargs; i++) {
            Py_INCREF(args[i]);
            *(PyObject **)((char *)o + f->offs[i]) = args[i];
        }
        return o;
    }

    /* a reader: the fields of ``o`` as a tuple, read in their slots where ``o`` is of the
       reader's class exactly, through ``getattr`` otherwise (and for an empty slot, whose
       AttributeError that gives) */
    static PyObject *forensics_read(PyObject *cap, PyObject *o) {
        forensics_filler *f = (forensics_filler *)PyCapsule_GetPointer(cap, FORENSICS_FILLER);
        PyObject *t, *v;
        Py_ssize_t i;
        if (f == NULL)
            return NULL;
        t = PyTuple_New(f->n);
        if (t == NULL)
            return NULL;
        if (Py_TYPE(o) == f->tp) {
            for (i = 0; i < f->n; i++) {
                v = *(PyObject **)((char *)o + f->offs[i]);
                if (v == NULL)
                    break;
                Py_INCREF(v);
                PyTuple_SET_ITEM(t, i, v);
            }
            if (i == f->n)
                return t;
            Py_DECREF(t);
            t = PyTuple_New(f->n);
            if (t == NULL)
                return NULL;
        }
        for (i = 0; i < f->n; i++) {
            v = PyObject_GetAttr(o, PyTuple_GET_ITEM(f->names, i));
            if (v == NULL) {
                Py_DECREF(t);
                return NULL;
            }
            PyTuple_SET_ITEM(t, i, v);
        }
        return t;
    }

    static void forensics_filler_free(PyObject *cap) {
        forensics_filler *f = (forensics_filler *)PyCapsule_GetPointer(cap, FORENSICS_FILLER);
        if (f != NULL) {
            Py_XDECREF((PyObject *)f->tp);
            Py_XDECREF(f->names);
            PyMem_Free((void *)f->def.ml_name);
            PyMem_Free(f);
        }
    }

    /* the built-in function ``name`` that makes an object of ``tp`` from ``n`` arguments put
       in the slots at ``offs``; NULL with an exception set where it cannot be made */
    static PyObject *forensics_new_filler(PyTypeObject *tp, const char *name, Py_ssize_t n,
                                          const Py_ssize_t *offs, PyObject *names) {
        forensics_filler *f;
        PyObject *cap, *fn;
        size_t len = strlen(name) + 1;
        char *own;
        f = (forensics_filler *)PyMem_Calloc(1, sizeof(forensics_filler) + (size_t)n * sizeof(Py_ssize_t));
        own = (char *)PyMem_Malloc(len);
        if (f == NULL || own == NULL) {
            PyMem_Free(f);
            PyMem_Free(own);
            return PyErr_NoMemory();
        }
        memcpy(own, name, len);
        f->def.ml_name = own;
        if (names == NULL) {
            f->def.ml_meth = (PyCFunction)(void (*)(void))forensics_fill;
            f->def.ml_flags = METH_FASTCALL;
        } else {
            f->def.ml_meth = (PyCFunction)forensics_read;
            f->def.ml_flags = METH_O;
        }
        Py_XINCREF(names);
        f->names = names;
        f->def.ml_doc = NULL;
        Py_INCREF((PyObject *)tp);
        f->tp = tp;
        f->n = n;
        memcpy(f->offs, offs, (size_t)n * sizeof(Py_ssize_t));
        cap = PyCapsule_New(f, FORENSICS_FILLER, forensics_filler_free);
        if (cap == NULL) {
            Py_DECREF((PyObject *)tp);
            Py_XDECREF(names);
            PyMem_Free(own);
            PyMem_Free(f);
            return NULL;
        }
        fn = PyCFunction_NewEx(&f->def, cap, NULL);  /* the function holds the capsule, and so its def */
        Py_DECREF(cap);
        return fn;
    }
    """
    Py_ssize_t forensics_member_offset(object d)
    object forensics_new_filler(PyTypeObject *tp, const char *name, Py_ssize_t n, const Py_ssize_t *offs,
                                PyObject *names)


cdef enum:
    _MAX_FIELDS = 64  # the most fields a record has here (``TcpConn``: 31), with room to grow

MAX_FIELDS = _MAX_FIELDS


cdef object _made(cls, names, str name, bint reader):
    """``filler``'s or ``reader``'s function, or None (see them)."""
    cdef Py_ssize_t offs[_MAX_FIELDS]
    cdef Py_ssize_t i, n = len(names), off
    cdef PyTypeObject *tp
    if not isinstance(cls, type) or n > _MAX_FIELDS:
        return None
    tp = <PyTypeObject *>cls
    if tp.tp_itemsize != 0 or cls.__new__ is not object.__new__:
        return None
    seen = set()
    for i in range(n):
        nm = names[i]
        off = forensics_member_offset(cls.__dict__.get(nm))
        if off < 0 or off + <Py_ssize_t>sizeof(PyObject *) > tp.tp_basicsize or (off in seen and not reader):
            return None
        seen.add(off)
        offs[i] = off
    raw = name.encode("utf-8")
    if not reader:
        return forensics_new_filler(tp, raw, n, offs, NULL)
    fields = tuple([str(nm) for nm in names])
    return forensics_new_filler(tp, raw, n, offs, <PyObject *>fields)


def filler(cls, names, str name):
    """A built-in function ``name`` making an object of ``cls`` with its fields ``names``
    (in that order) given positionally, each put in its slot; None where ``cls`` is not a
    class whose objects are only those slots (checked here: every name a slot holding an
    object, no items, nothing of its own in ``__new__``)."""
    return _made(cls, names, name, False)


def reader(cls, names, str name):
    """A built-in function ``name`` giving the fields ``names`` of an object as a tuple, as
    ``operator.attrgetter(*names)`` does: read in their slots where the object is of ``cls``
    exactly, through ``getattr`` otherwise. None where a name is not a slot of ``cls``
    holding an object (as ``filler``)."""
    return _made(cls, names, name, True)
