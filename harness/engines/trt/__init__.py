"""Parts of the TensorRT engine (`harness.engines.tensorrt`), split so that everything that
needs no GPU can be tested as plain functions.

Nothing here imports TensorRT, cuda-python or NVML at import time: functions that need them
take the module as an argument or import it inside their body, after the driver was probed.
"""
