"""conr on NumPy arrays: the fixtures in f64 and f32 on every engine, the
config's construction, density weights, bad inputs, threads and fork."""

import json
import multiprocessing
import pickle
import threading
import time

import numpy as np
import pytest

import conr
from conftest import arrays, budget, close, config_of, has_gpu, loss_cases, weight_cases

ENGINES = ["reference", "fast"] + (["gpu"] if has_gpu() else [])


@pytest.mark.parametrize("engine", ENGINES)
def test_every_fixture(engine, dtype):
    cases = loss_cases()
    assert len(cases) == 18
    # The gpu engine computes in f32 (f64 batches rounded once).
    b = budget(np.float32 if engine == "gpu" else dtype)
    for name, case in cases:
        f, y, p, w = arrays(case, dtype)
        out = conr.compute(f, y, p, w, config=config_of(case), engine=engine)
        want = case["expected"]
        close(out.loss, want["loss"], b["loss"], f"{name} loss")
        close(out.grad_features.ravel(), want["grad_features"], b["grad"], f"{name} grad")
        assert out.grad_features.dtype == dtype and out.grad_features.shape == f.shape
        assert out.anchors.tolist() == want["anchors"], name
        assert out.positives.tolist() == want["positives"], name
        assert out.negatives.tolist() == want["negatives"], name


def test_layouts_and_dtypes_give_the_same_result():
    name, case = loss_cases()[0]
    f, y, p, w = arrays(case, np.float64)
    config = config_of(case)
    want = conr.compute(f, y, p, w, config=config)
    # 1-D labels, a non-contiguous view of the features, f32 labels with f64 features.
    f_view = np.asfortranarray(f)
    assert not f_view.flags["C_CONTIGUOUS"]
    got = conr.compute(f_view, y.ravel(), p.ravel(), w, config=config)
    assert got.loss == want.loss and np.array_equal(got.grad_features, want.grad_features)
    got = conr.compute(f, y.astype(np.float32), p, w.reshape(-1, 1), config=config)
    assert got.loss == want.loss


def test_presets_overrides_and_repr():
    c = conr.Config.paper()
    assert (c.threshold, c.temperature, c.pushing) == (1.0, 0.07, ("exp", 0.01))
    assert c.pred_threshold is None and c.label_metric == "l1" and c.reduction == "mean"
    a = conr.Config.official_agedb(temperature=0.2, label_metric="l2", pred_threshold=0.5)
    assert (a.temperature, a.label_metric, a.pred_threshold) == (0.2, "l2", 0.5)
    assert a.denominator_padding and a.outer_weight
    n = conr.Config.official_nyud2(pushing=("linear", 0.3), reduction="sum")
    assert n.pushing == ("linear", 0.3) and n.self_in_positive_count and n.reduction == "sum"
    assert conr.Config.paper(pushing={"kind": "constant", "scale": 0.0}).pushing == ("constant", 0.0)
    text = repr(a)
    for field in ["threshold=1.0", "pred_threshold=0.5", "temperature=0.2", "pushing=('exp', 0.01)",
                  "label_metric='l2'", "aggregation='mean_of_logs'", "denominator_padding=True",
                  "outer_weight=True", "self_in_positive_count=False", "reduction='mean'"]:
        assert field in text, text
    assert a == conr.Config.from_json(a.to_json()) and a != c
    assert pickle.loads(pickle.dumps(a)) == a
    assert a.replace(temperature=0.07) == conr.Config.official_agedb(label_metric="l2", pred_threshold=0.5)


def test_the_knobs_are_the_cores_table():
    # One table in the core gives the keywords, the attributes, the repr and
    # the JSON: every knob it lists is all four, in its order.
    knobs = conr.Config.knobs()
    names = [name for name, _, _, _ in knobs]
    assert names[:3] == ["threshold", "pred_threshold", "temperature"] and len(names) == 10
    config = conr.Config.official_nyud2()
    assert sorted(json.loads(config.to_json())) == sorted(names)
    text = repr(config)
    positions = [text.index(f" {name}=" if i else f"({name}=") for i, name in enumerate(names)]
    assert positions == sorted(positions), text
    for name, kind, domain, doc in knobs:
        getattr(config, name)
        assert kind and doc, name
    assert dict((k[0], k[2]) for k in knobs)["temperature"] == "[1e-6, 1e6]"
    with pytest.raises(AttributeError, match="no attribute 'temprature'"):
        config.temprature
    with pytest.raises(TypeError, match="threshold must be a number, not str"):
        conr.Config.paper(threshold="far")


def test_bad_configs():
    with pytest.raises(TypeError, match="unexpected keyword argument 'temprature'"):
        conr.Config.paper(temprature=0.1)
    with pytest.raises(ValueError, match="temperature"):
        conr.Config.paper(temperature=0.0)
    with pytest.raises(ValueError, match="threshold"):
        conr.Config.official_agedb(threshold=float("nan"))
    with pytest.raises(ValueError, match="expected one of l1, l2, linf, angular"):
        conr.Config.paper(label_metric="cosine")
    with pytest.raises(TypeError):
        conr.Config.paper(temperature="hot")
    with pytest.raises(TypeError):
        conr.Config.paper(pushing=3)


BASE = (
    np.array([[1.0, 0.2, 0.0], [0.9, 0.3, 0.1], [0.1, 1.0, 0.2], [0.2, 0.8, 0.1]]),
    np.array([20.0, 20.5, 60.0, 60.5]),
    np.array([40.0, 40.2, 40.4, 40.1]),
    np.array([1.0, 0.5, 2.0, 1.5]),
)


def with_value(i, index, value):
    parts = [a.copy() for a in BASE]
    parts[i].flat[index] = value
    return parts


@pytest.mark.parametrize(
    "parts, error, message",
    [
        (with_value(0, 4, np.nan), ValueError, "features row 1 holds a NaN"),
        (with_value(1, 2, np.inf), ValueError, "labels row 2 holds a NaN or infinite"),
        (with_value(2, 0, np.nan), ValueError, "preds row 0"),
        (with_value(3, 1, 0.0), ValueError, "weights row 1 is zero or negative"),
        (with_value(3, 2, 2e6), ValueError, "weights row 2 exceeds 1e6"),
        ([BASE[0], BASE[1][:3], BASE[2], BASE[3]], ValueError, "labels has length 3, but the shape needs 4"),
        ([BASE[0][:0], BASE[1][:0], BASE[2][:0], None], ValueError, "the batch is empty"),
        ([BASE[0].ravel(), BASE[1], BASE[2], None], ValueError, "features must have shape"),
        ([BASE[0].astype(np.int64), BASE[1], BASE[2], None], TypeError, "float32 or float64 numpy array"),
        ([BASE[0].tolist(), BASE[1], BASE[2], None], TypeError, "not list"),
    ],
)
def test_bad_inputs_are_clear_errors(parts, error, message):
    with pytest.raises(error, match=message):
        conr.compute(*parts, config=conr.Config.official_agedb())
    # The engine still works afterwards.
    assert np.isfinite(conr.compute(*BASE, config=conr.Config.official_agedb()).loss)


def test_bad_engines_and_configs_in_calls():
    with pytest.raises(ValueError, match="unknown `engine`"):
        conr.compute(*BASE, config=conr.Config.paper(), engine="tpu")
    with pytest.raises(TypeError, match="config must be a conr.Config"):
        conr.compute(*BASE, config={"temperature": 0.1})
    angular = conr.Config.paper(label_metric="angular", threshold=0.3)
    labels = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="labels row 1 is the zero vector"):
        conr.compute(BASE[0], labels, labels + 0.5, config=angular)


def test_density_weights_match_the_fixtures():
    cases = weight_cases()
    assert len(cases) == 4
    for name, case in cases:
        config = dict(case["config"])
        got = conr.density_weights(np.array(case["labels"]), **config)
        close(got, case["expected"]["weights"], (0.0, 1e-12), name)
    with pytest.raises(TypeError, match="unexpected keyword argument 'bandwidth'"):
        conr.density_weights(np.array([1.0, 2.0]), bandwidth=3)
    with pytest.raises(ValueError, match="odd size"):
        conr.density_weights(np.array([1.0, 2.0]), kernel="triang", kernel_size=4)


def test_threads_change_nothing_but_the_pool():
    want = conr.compute(*BASE, config=conr.Config.official_agedb())
    before = conr.get_num_threads()
    try:
        conr.set_num_threads(1)
        assert conr.get_num_threads() == 1
        one = conr.compute(*BASE, config=conr.Config.official_agedb())
    finally:
        conr.set_num_threads(0)
    assert conr.get_num_threads() == before
    assert one.loss == want.loss and np.array_equal(one.grad_features, want.grad_features)


def wide_batch(rows=512, dim=64, seed=0):
    """A batch big enough for the fast engine to share it among its threads."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 100, rows).astype(np.float64)
    preds = 50.0 + rng.normal(0.0, 2.0, rows)
    return rng.normal(size=(rows, dim)), labels, preds, rng.uniform(0.5, 2.0, rows)


def _in_child(queue):
    out = conr.compute(*wide_batch(), config=conr.Config.official_agedb())
    queue.put(out.loss)


def test_a_forked_child_computes_without_deadlock():
    # The parent's pool exists and has run before the fork.
    parent = conr.compute(*wide_batch(), config=conr.Config.official_agedb()).loss
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0, "the forked child did not finish"
    assert queue.get(timeout=5) == parent


def test_the_gil_is_released_while_the_engine_runs():
    batch = wide_batch(rows=3072, dim=64)
    config = conr.Config.official_agedb()
    started = time.perf_counter()
    conr.compute(*batch, config=config, engine="reference")
    alone = time.perf_counter() - started
    worker = threading.Thread(target=conr.compute, args=batch, kwargs={"config": config, "engine": "reference"})
    # The longest this thread waits between two of its steps while the
    # engine runs: about the whole computation if the GIL were held.
    longest, last = 0.0, time.perf_counter()
    worker.start()
    while worker.is_alive():
        now = time.perf_counter()
        longest, last = max(longest, now - last), now
    worker.join()
    assert alone > 0.1, alone
    assert longest < 0.5 * alone, (longest, alone)
