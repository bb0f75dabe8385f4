# Types for the compiled build of tcp.py (Cython reads this beside the .py; the source runs as it is
# without it): the options are walked, and a connection's rows scanned, with C integers.
cimport cython

@cython.locals(data=bytes, i=Py_ssize_t, kind=Py_ssize_t, ln=Py_ssize_t, sack=bint, tstamp=bint, kinds=list)
cpdef tuple parse_tcp_options(buf, Py_ssize_t l4, Py_ssize_t doff)

@cython.locals(r=tuple, f=long, d=Py_ssize_t, plen=long, code=Py_ssize_t, nrt=list, high=list, starts=list,
               hist=list, ends=list, i_flags=Py_ssize_t, i_dir=Py_ssize_t, i_plen=Py_ssize_t, i_seq=Py_ssize_t,
               i_ts=Py_ssize_t, i_win=Py_ssize_t, rel=cython.longlong, end=cython.longlong, counted=bint,
               syn=long, ack=long, fin_rst=long, mark=long, letter_flags=long, c2s=Py_ssize_t, s2c=Py_ssize_t,
               keepalive=long, code_s2c=Py_ssize_t, code_payload=Py_ssize_t, code_rt=Py_ssize_t,
               code_zero_window=Py_ssize_t)
cpdef tuple _scan(list rows, base)
