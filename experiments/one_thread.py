"""Import first: pins every numeric library to one thread before it loads.

Both benchmark scripts compare libraries one thread each; the thread counts
must be in the environment before numpy, numba, faiss or BLAS start a pool,
so this module does nothing but set them.
"""

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
             "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"
