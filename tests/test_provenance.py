"""Provenance records the CPU's model and matmul features, so CPU timings from different machines compare."""

from supporttune.core.provenance import cpu_model, hardware


def test_cpu_model_and_features_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Example CPU 9000\nflags\t\t: fpu avx2 avx512f avx512_bf16 sse\n\n"
                    "processor\t: 1\nmodel name\t: Example CPU 9000\nflags\t\t: fpu avx2\n")
    assert cpu_model(str(info)) == {"cpu_model": "Example CPU 9000", "cpu_features": ["avx2", "avx512_bf16", "avx512f"]}
    assert cpu_model(str(tmp_path / "missing")) == {}


def test_hardware_names_this_cpu():
    hw = hardware()
    assert hw["cpu_threads"] >= 1 and "cpu_features" in hw  # Linux: /proc/cpuinfo is there
