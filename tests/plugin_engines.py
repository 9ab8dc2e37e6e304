"""Out-of-tree engines the tests plug in through QPARITY_EXTRA_ENGINES (inherited by children)."""

import os
import signal

from harness.engines.ort_cpu import OrtCpuEngine


class SegfaultEngine(OrtCpuEngine):
    """Dies in native-code fashion halfway through the data, as a broken engine would."""

    name = "segfault"

    def run(self, x):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == 3:
            os.kill(os.getpid(), signal.SIGSEGV)
        return super().run(x)


class NotInstalledEngine(OrtCpuEngine):
    name = "notinstalled"

    @classmethod
    def probe(cls):
        return "fakelib is not installed (pip install fakelib)"


class WrongOutputEngine(OrtCpuEngine):
    name = "wrongoutput"

    def run(self, x):
        return super().run(x)[:, :, :4]


class DiesWhileTimedEngine(OrtCpuEngine):
    """Evaluates fine, then dies in the latency loop."""

    name = "dieslate"

    def run(self, x):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls > 15:  # past the evaluation of the test data set (10 images)
            os.kill(os.getpid(), signal.SIGSEGV)
        return super().run(x)


class EchoConfigEngine(OrtCpuEngine):
    """ONNX Runtime, describing the configuration it was built with: what reached the child."""

    name = "echoconfig"

    def describe(self):
        d = super().describe()
        c = self.config
        d["config_seen"] = {"threads": c.threads, "options": dict(c.options),
                            "cache_dir": None if c.cache_dir is None else str(c.cache_dir)}
        return d


class PluginReferenceEngine(OrtCpuEngine):
    """An out-of-tree yardstick: flagged REFERENCE, it must be treated as qdq-ref is."""

    name = "plugref"
    REFERENCE = True


class NoConcatEngine(OrtCpuEngine):
    """An engine with its own check-model rule: it refuses any model with a Concat."""

    name = "noconcat"

    @classmethod
    def preflight(cls, facts):
        from harness.engines.rules import Finding

        nodes = [n.name for n in facts.model.graph.node if n.op_type == "Concat"]
        return [Finding("no-concat", "refuse", [cls.name],
                        f"{len(nodes)} Concat node(s): noconcat has no Concat kernel", nodes)] if nodes else []
