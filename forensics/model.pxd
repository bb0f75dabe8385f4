# Types for the compiled build of model.py (Cython reads this beside the .py; the source runs as it is
# without it): ``round_to`` in C doubles.
cimport cython

@cython.locals(scale=cython.double, t=cython.double, k=cython.double)
cpdef double round_to(double x, int digits) except? -1.0
