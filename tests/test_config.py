import pytest

from superposition.config import ConfigError, resolve


def test_sparsity_and_decay_resolve_to_full_lists():
    config = resolve({"features": 3, "sparsity": [0, 0.999], "importance_decay": 0.5})
    assert config.feature_probability == [[1.0] * 3, [0.001] * 3]
    assert config.importance == [[1.0, 0.5, 0.25]] * 2
    assert config.instances == 2


def test_explicit_lists_and_dashed_keys():
    config = resolve(
        {"features": 2, "feature-probability": [[0.5, 0.1]], "importance": [2.0, 1.0], "batch-size": 8}
    )
    assert config.feature_probability == [[0.5, 0.1]]
    assert config.importance == [[2.0, 1.0]]
    assert config.batch_size == 8


def test_activations_default_by_model():
    assert (resolve({}).activation, resolve({}).hidden_activation) == ("relu", "linear")
    mlp = resolve({"model": "mlp"})
    assert (mlp.activation, mlp.hidden_activation) == ("linear", "relu")


def test_defaults_are_the_seeds_sweep():
    config = resolve({})
    assert [round(1 - row[0], 6) for row in config.feature_probability] == [0, 0.7, 0.9, 0.99, 0.999]
    assert config.optimizer == "adamw" and config.weight_decay == 0.01 and config.lr == 1e-3


@pytest.mark.parametrize(
    "keys, field",
    [
        ({"sparsity": [0.5, 1.0]}, "sparsity"),
        ({"sparsity": [-0.1]}, "sparsity"),
        ({"features": 0}, "features"),
        ({"hidden": -2}, "hidden"),
        ({"steps": 0}, "steps"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": 0}, "lr"),
        ({"model": "transformer"}, "model"),
        ({"activation": "gelu"}, "activation"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"schedule": "step"}, "schedule"),
        ({"data": "real"}, "data"),
        ({"bogus": 1}, "bogus"),
        ({"steps": "many"}, "steps"),
        ({"importance": [1.0, 2.0]}, "importance"),
        ({"model": "mlp", "activation": "relu"}, "activation"),
        ({"model": "mlp", "hidden_activation": "linear"}, "activation"),
        ({"warmup": 20, "steps": 10}, "warmup"),
        ({"sparsity": [0.5], "feature_probability": [[0.5] * 20]}, "sparsity"),
        ({"correlation": "correlated", "set_size": 3}, "set_size"),
        ({"correlation": "anticorrelated", "set_size": 4, "sparsity": [0.5]}, "feature_probability"),
        ({"correlation": "correlated", "set_size": 2, "data": "seed"}, "correlation"),
        ({"correlation": "sometimes"}, "correlation"),
    ],
)
def test_bad_input_names_the_field(keys, field):
    with pytest.raises(ConfigError) as error:
        resolve(keys)
    message = str(error.value)
    assert field in message
    assert "\n" not in message
