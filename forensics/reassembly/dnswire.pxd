# Types for the compiled build of dnswire.py (Cython reads this beside the .py; the source runs as it
# is without it): names and records walked with C integers, a byte read without making an int.
cimport cython

@cython.locals(labels=list, total=Py_ssize_t, end=Py_ssize_t, jumps=Py_ssize_t, n=Py_ssize_t,
               start=Py_ssize_t, zero=Py_ssize_t, ln=Py_ssize_t, text=str)
cpdef tuple _name(bytes msg, Py_ssize_t pos)

@cython.locals(raw=bytes, got=tuple)
cpdef str _rdata(Py_ssize_t rtype, bytes msg, Py_ssize_t pos, Py_ssize_t rdlen)

@cython.locals(n=Py_ssize_t, txid=Py_ssize_t, flags=Py_ssize_t, qd=Py_ssize_t, an=Py_ssize_t, ns=Py_ssize_t,
               ar=Py_ssize_t, pos=Py_ssize_t, qtype=Py_ssize_t, got=tuple, answers=list, rtype=Py_ssize_t,
               ttl=Py_ssize_t, rdlen=Py_ssize_t)
cpdef _parse(bytes msg)
