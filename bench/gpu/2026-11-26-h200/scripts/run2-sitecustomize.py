import numpy
if not hasattr(numpy, "row_stack"):   # numba-cuda on the device machine still overloads it; numpy 2.5 removed it
    numpy.row_stack = numpy.vstack
