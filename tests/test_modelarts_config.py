"""deploy/modelarts against Huawei's ModelArts documentation, rule by rule: config.json's fields
(names, types, allowed values), the OBS package folder the README tells users to select, the
health-check timing against our measured cold start, and the Ascend image variant.

The rules, with where they are written:
  CFG  Specifications for editing a model configuration file (Table 1: parameters; Table 3: api;
       Tables 4, 5: request, response; Table 8: health):
       https://support.huaweicloud.com/intl/en-us/usermanual-standard-modelarts/inference-modelarts-0056.html
  OTC  the same specification in Open Telekom Cloud's copy, with the swr_location row:
       https://docs.otc.t-systems.com/modelarts/umn/inference_deployment/inference_specifications/model_package_specifications/specifications_for_editing_a_model_configuration_file.html
  PKG  Model package specifications (the folder containing model/ is the one specified):
       https://github.com/opentelekomcloud-docs/modelarts umn/source/model_package_specifications/model_package_specifications.rst
"""
import json
import os
import re
import subprocess
import sys

import pytest

import cold_ms

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy", "modelarts")


def _read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


CFG = json.loads(_read("deploy", "modelarts", "model", "config.json"))
README = _read("deploy", "modelarts", "README.md")
# CFG Table 1: every parameter the specification defines, with its JSON type
TOP = {"model_algorithm": str, "model_type": str, "runtime": str, "swr_location": str, "metrics": dict,
       "apis": list, "dependencies": list, "health": dict}
# CFG / OTC Table 1, model_type: "the options are TensorFlow, MXNet, Spark_MLlib, Caffe,
# Scikit_Learn, XGBoost, PyTorch, MindSpore, and Image"
MODEL_TYPES = {"TensorFlow", "MXNet", "Spark_MLlib", "Caffe", "Scikit_Learn", "XGBoost", "PyTorch", "MindSpore",
               "Image"}


def test_only_documented_fields_with_their_types():
    assert set(CFG) <= set(TOP), set(CFG) - set(TOP)
    for name, value in CFG.items():
        assert isinstance(value, TOP[name]), (name, type(value))
    assert {"model_algorithm", "model_type"} <= set(CFG)  # CFG Table 1: both mandatory


def test_model_algorithm_as_specified():
    # CFG Table 1: starts with a letter, at most 36 characters, no Chinese characters nor &!'\"<>=
    name = CFG["model_algorithm"]
    assert re.fullmatch(r"[A-Za-z][\x20-\x7e]{0,35}", name) and not set("&!'\\\"<>=") & set(name)


def test_an_image_model_with_its_swr_location_and_no_runtime():
    assert CFG["model_type"] in MODEL_TYPES and CFG["model_type"] == "Image"
    # OTC Table 1, swr_location: mandatory when an Image model is imported from OBS (Route 2)
    assert re.fullmatch(r"swr\.[^/\s]+\.myhuaweicloud\.com/[^/\s]+/[a-z0-9._-]+:[\w.-]+", CFG["swr_location"])
    # ...and it names the image this repository builds, at this version
    assert CFG["swr_location"].endswith(f"/cold-ms:{cold_ms.__version__}")
    assert f"cold-ms:{cold_ms.__version__}" in README
    # CFG Table 1, runtime: "If model_type is set to Image, you do not need to set runtime"
    assert "runtime" not in CFG
    # CFG Table 1, dependencies: "Dependency packages cannot be installed for custom image models"
    assert "dependencies" not in CFG


@pytest.mark.parametrize("index", range(len(CFG["apis"])))
def test_each_api_as_specified(index):
    api = CFG["apis"][index]
    assert set(api) <= {"protocol", "url", "method", "request", "response"}  # CFG Table 3
    assert api["protocol"] in ("http", "https")  # CFG Table 3: http or https
    # CFG Table 3, url: for model_type Image, the path the image exposes (any path; else only "/")
    assert api["url"].startswith("/") and api["url"] != "/"
    assert api["method"].upper() in ("GET", "POST", "PUT", "DELETE", "PATCH")  # CFG Table 3: method
    for part in ("request", "response"):  # CFG Tables 4, 5: both mandatory for real-time services
        body = api[part]
        assert set(body) == {"Content-type", "data"}
        assert body["Content-type"] in ("application/json", "multipart/form-data")
        assert isinstance(body["data"], dict) and body["data"]["type"] == "object"  # a JSON schema


def _cold_start_seconds():
    """The cold start measured and written in the README (run.sh, embedded model, 2 cores)."""
    return int(re.search(r"answered 200 after (\d+) s", README).group(1))


def test_health_check_as_specified_and_longer_than_our_cold_start():
    health = CFG["health"]
    # CFG Table 1: health is set only for model_type Image; Table 8: its four parameters
    assert set(health) <= {"url", "protocol", "initial_delay_seconds", "timeout_seconds"} and "url" in health
    assert health["url"] == "/health"
    assert health["protocol"] == "http"  # Table 8: "Only HTTP is supported"
    # Table 8 types both timings as String: digit strings, not JSON numbers
    assert all(isinstance(health[k], str) and health[k].isdigit() for k in ("initial_delay_seconds",
                                                                              "timeout_seconds"))
    # set explicitly, with room over the measured cold start (x5: larger models load for longer)
    assert int(health["initial_delay_seconds"]) >= 5 * _cold_start_seconds()
    assert f"initial delay **{health['initial_delay_seconds']} s**" in README


def test_the_readme_selects_the_folder_that_contains_model():
    # PKG: "When publishing the model, you only need to specify the resnet directory" (which
    # holds model/); the README names that folder and warns against picking model/ itself
    assert "the folder `obs://<bucket>/cold-ms/` (the one\n   that contains `model/`" in README
    assert "obs://<bucket>/cold-ms/model/` folder" not in README
    layout = README[README.index("cold-ms/                     # <- the folder to select"):]
    assert re.match(r"cold-ms/ .*\n      model/\n        config.json", layout)


def test_ascend_dockerfile_builds_on_a_named_base_and_checks_mindspore():
    text = _read("deploy", "modelarts", "Dockerfile.ascend")
    assert re.search(r"^ARG BASE_IMAGE$", text, re.M) and re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.M)
    assert "cann_" in text and "aarch64-snt9b" in text  # the ModelArts MindSpore + CANN family named
    assert re.search(r"COLD_MS_DEVICE=Ascend", text)
    sources = [s for line in re.findall(r"^COPY\s+(.+)$", text, re.M) for s in line.split()[:-1]]
    assert sources and all(os.path.exists(os.path.join(ROOT, s)) for s in sources), sources
    assert "check_mindspore.py" in text and re.search(r'^CMD \["bash", "/home/run.sh"\]$', text, re.M)


def test_supported_mindspore_is_the_pinned_one_and_the_check_enforces_it(tmp_path):
    assert f'"mindspore=={cold_ms.MINDSPORE_SUPPORTED[-1]}"' in _read("setup.py")
    check = os.path.join(DEPLOY, "check_mindspore.py")
    env = {**os.environ, "PYTHONPATH": ROOT}
    ok = subprocess.run([sys.executable, check], env=env, capture_output=True, text=True)
    assert ok.returncode == 0 and "supported" in ok.stdout  # this machine runs the pinned one
    # a MindSpore outside the supported set (a fake dist-info first on the path) fails, naming it
    fake = tmp_path / "mindspore-2.7.0rc1.dist-info"
    fake.mkdir()
    (fake / "METADATA").write_text("Metadata-Version: 2.1\nName: mindspore\nVersion: 2.7.0rc1\n")
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{ROOT}"
    bad = subprocess.run([sys.executable, check], env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and "2.7.0rc1" in bad.stderr and "2.9.0" in bad.stderr
    assert "Traceback" not in bad.stderr
