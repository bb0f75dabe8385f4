"""Build the optional compiled record walk; the project's metadata is in pyproject.toml.

The extension is ``optional``: without a C compiler, Python headers or Cython,
the install still succeeds and ``forensics.sources.pcapio`` walks in Python.
"""

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError:  # no Cython: nothing to compile, the Python walk is used
    ext_modules = []
else:
    ext_modules = cythonize(
        [Extension("forensics.sources._walk", ["forensics/sources/_walk.pyx"])],
        compiler_directives={"language_level": 3},
        quiet=True,
    )
    for ext in ext_modules:
        ext.optional = True  # cythonize makes new Extensions and drops this flag: set it on them

setup(ext_modules=ext_modules)
