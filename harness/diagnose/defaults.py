"""The diagnose commands' defaults, where both a command's parser (commands.py, loaded for
every `qparity --help`) and its module (numpy, onnx, the engines) read them."""

FLOOR = 0.25  # diff: only boxes scored at least this count
DEFAULT_FRAC = 0.01  # localize, repro: a tensor diverges past this fraction of elements off
MODES = ("exclude-one", "only-one")  # sensitivity
DEFAULT_TARGET = 0.5  # sensitivity: mAP points, as the cross-engine tolerance
DEFAULT_EVAL_IMAGES = 100
DEFAULT_CALIB_IMAGES = 32
# the engines repro has native runners for (repro_runners.RUNNERS; a test holds them equal)
REPRO_ENGINES = ("qdq-ref", "ort-cpu", "openvino")
