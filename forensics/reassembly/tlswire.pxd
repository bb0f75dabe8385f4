# Types for the compiled build of tlswire.py (Cython reads this beside the .py; the source runs as it
# is without it): the parsers walk the bytes with C integers, and read a byte without making an int.
cimport cython

@cython.locals(ln=Py_ssize_t, first=bytes, pos=Py_ssize_t, size=Py_ssize_t)
cpdef tuple _handshake_bytes(bytes data)

@cython.locals(hs=bytes, record_size=Py_ssize_t, body_len=Py_ssize_t, body=bytes, pos=Py_ssize_t,
               clen=Py_ssize_t, ciphers=Py_ssize_t, end=Py_ssize_t, n=Py_ssize_t,
               etype=Py_ssize_t, elen=Py_ssize_t, ext=bytes, i=Py_ssize_t, complete=bint)
cpdef parse_client_hello(data)

@cython.locals(pos=Py_ssize_t, end=Py_ssize_t, ntype=Py_ssize_t, ln=Py_ssize_t)
cpdef str _sni(bytes ext)

@cython.locals(pos=Py_ssize_t, ln=Py_ssize_t, ctype=Py_ssize_t, body=bytes, hello=bint)
cpdef parse_server_reply(data)

@cython.locals(pos=Py_ssize_t, end=Py_ssize_t, etype=Py_ssize_t, elen=Py_ssize_t)
cpdef _selected_version(bytes body)
