import json

import pytest

from kseg.config import TrainConfig, parse_crop
from kseg.errors import KsegError


def test_yaml_round_trip(tmp_path):
    config = TrainConfig(model="fcn16s", data="camvid", data_dir="/data/camvid", crop="360x480",
                         class_weights=[1.0, 2.5], epochs=3, weights="none", width=0.125)  # fmt: skip
    path = tmp_path / "config.yaml"
    config.to_yaml(path)
    again = TrainConfig.from_yaml(path)
    assert again == config
    assert again.crop == (360, 480)
    assert config.to_dict()["crop"] == [360, 480]  # YAML has lists


def test_file_then_overrides(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("model: fcn32s\nepochs: 7\nlr: 0.01\n")
    config = TrainConfig.from_yaml(path, overrides={"epochs": 2, "lr": None})
    assert (config.model, config.epochs, config.lr) == ("fcn32s", 2, 0.01)


def test_unknown_key_names_it(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: fcn8s\nlearning_rate: 0.1\n")
    with pytest.raises(KsegError, match="learning_rate") as error:
        TrainConfig.from_yaml(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("values", [{"learning_rate": 0.1}, ["epochs", 3], {"epochs": "ten"}])
def test_from_dict_names_its_source_once(values):
    with pytest.raises(KsegError) as error:
        TrainConfig.from_dict(values, "settings.yaml")
    assert str(error.value).count("settings.yaml") == 1


@pytest.mark.parametrize(
    "key, value",
    [("epochs", "ten"), ("epochs", 2.5), ("lr", "fast"), ("skip_bad", "yes"), ("model", 8),
     ("class_weights", ["a", 1])],
)  # fmt: skip
def test_wrong_type_names_key(key, value):
    with pytest.raises(KsegError, match=key):
        TrainConfig.from_dict({key: value})


@pytest.mark.parametrize(
    "values, key",
    [({"epochs": 0}, "epochs"), ({"optimizer": "rmsprop"}, "optimizer"), ({"width": 2.0}, "width"),
     ({"width": 0.5}, "weights"), ({"class_weights": "inverse"}, "class_weights"), ({"crop": "big"}, "crop")],
)  # fmt: skip
def test_bad_values_name_key(values, key):
    with pytest.raises(KsegError, match=key):
        TrainConfig.from_dict(values)


def test_not_a_mapping_and_bad_yaml(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(KsegError, match="mapping"):
        TrainConfig.from_yaml(path)
    path.write_text("model: [unclosed\n")
    with pytest.raises(KsegError, match="YAML"):
        TrainConfig.from_yaml(path)
    with pytest.raises(KsegError, match="not found"):
        TrainConfig.from_yaml(tmp_path / "missing.yaml")


def test_parse_crop():
    assert parse_crop("512x1024") == (512, 1024)
    assert parse_crop([8, 16]) == (8, 16)
    assert parse_crop("none") is None
    with pytest.raises(KsegError, match="--crop"):
        parse_crop("0x5", key="--crop")


def test_crop_none_means_whole_images_even_where_a_dataset_has_a_default(tmp_path):
    config = TrainConfig(model="fcn8s", data="cityscapes", crop="none")
    assert config.crop is None and TrainConfig(data="cityscapes", crop=None).crop is None
    path = tmp_path / "config.yaml"
    config.to_yaml(str(path))
    assert TrainConfig.from_yaml(str(path)).crop is None
    assert config.replace(lr=0.01).crop is None  # resolved when made, kept by replace
    # left out, the crop is the dataset's, decided when the config is made
    assert TrainConfig(model="fcn8s", data="cityscapes").crop == (512, 1024)
    assert TrainConfig(model="fcn8s", data="camvid").crop is None


def test_resolve_owns_the_precedence(tmp_path):
    from kseg.config import resolve
    from kseg.recipes import load_recipe

    path = tmp_path / "train.yaml"
    path.write_text("data: camvid\nepochs: 7\nlr: 0.01\n")
    config = resolve({"data": "cityscapes", "epochs": 2, "lr": None}, file=str(path))
    # the file's data is replaced before the crop is decided: Cityscapes' default crop
    assert (config.data, config.epochs, config.lr, config.crop) == ("cityscapes", 2, 0.01, (512, 1024))
    assert resolve().to_dict() == TrainConfig().to_dict()
    recipe = load_recipe("camvid-scratch")
    assert resolve({"epochs": 3}, recipe=recipe).epochs == 3
    with pytest.raises(KsegError, match="--recipe and --config"):
        resolve(recipe=recipe, file=str(path))
    with pytest.raises(KsegError, match="--config cannot be given"):
        resolve(file=str(path), resume_dir=str(tmp_path))
    with pytest.raises(KsegError, match="not a kseg run directory"):
        resolve(resume_dir=str(tmp_path))


def test_training_passes_whole_images_for_crop_none(monkeypatch, tmp_path):
    """train() hands make_dataset crop=None for "none", and the Cityscapes default otherwise."""
    import kseg.data
    import kseg.training
    from kseg.config import DEFAULT_CROPS

    seen = []

    def stop(spec, split, **kwargs):
        seen.append(kwargs["options"].crop)
        raise KsegError("stop after the first dataset")

    monkeypatch.setattr(kseg.data, "make_dataset", stop)
    from kseg.data.synthetic import write_synthetic_dataset

    write_synthetic_dataset(str(tmp_path / "d"), num_train=2, num_val=1, size=(32, 32))
    for crop, expected in (("none", None), ("16x16", (16, 16))):
        config = TrainConfig(model="fcn8s", data="synthetic", data_dir=str(tmp_path / "d"), weights="none",
                             width=0.0625, epochs=1, batch_size=1, crop=crop, run_dir=str(tmp_path / crop))
        with pytest.raises(KsegError, match="stop after"):
            kseg.training.train(config, verbose=0)
        assert seen[-1] == expected
    assert DEFAULT_CROPS["cityscapes"] == (512, 1024)


def test_every_numeric_limit_is_a_field_and_refuses_non_finite_values():
    import math

    from kseg.config import NUMBER_RANGES

    fields = set(TrainConfig().to_dict())
    assert set(NUMBER_RANGES) - {"class_weight"} <= fields
    for key, limits in NUMBER_RANGES.items():
        if key == "class_weight":
            continue
        for value in (math.inf, -math.inf, math.nan, limits["high"] * 10 + 1):
            with pytest.raises(KsegError, match=key):
                TrainConfig(**{key: value})


def test_yaml_numbers_are_checked_and_messages_stay_short(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("lr: .nan\n")
    with pytest.raises(KsegError, match="lr: nan is not a finite number"):
        TrainConfig.from_yaml(path)
    path.write_text("model: " + "x" * 100000 + "\n")
    with pytest.raises(KsegError, match="too long") as error:
        TrainConfig.from_yaml(path)
    assert len(str(error.value)) < 300
    path.write_text("seed: -1\n")
    with pytest.raises(KsegError, match="seed: -1 is out of range; expected a whole number from 0"):
        TrainConfig.from_yaml(path)


def test_scale_range_is_checked_and_reaches_config_yaml(tmp_path):
    from kseg.config import parse_scale

    assert TrainConfig().scale == (0.5, 2.0)
    assert TrainConfig(scale="0.75, 1.25").scale == (0.75, 1.25)
    assert TrainConfig(scale=1).scale == (1.0, 1.0)
    assert parse_scale([0.5, 1]) == (0.5, 1.0)
    for bad in ("0,1", "2,1", "1,9", "a,b", "nan", [1, 2, 3], True, "", None):
        with pytest.raises(KsegError, match="scale"):
            TrainConfig(scale=bad)
    path = tmp_path / "config.yaml"
    TrainConfig(scale="1,1").to_yaml(str(path))
    assert TrainConfig.from_yaml(str(path)).scale == (1.0, 1.0)


def test_loss_is_a_setting_in_canonical_form(tmp_path):
    assert TrainConfig().loss == "ce"
    config = TrainConfig(loss="1.0*ce + 0.50*lovasz")
    assert config.loss == "ce+0.5*lovasz"
    path = tmp_path / "config.yaml"
    config.to_yaml(str(path))
    assert "loss: ce+0.5*lovasz" in path.read_text()
    assert TrainConfig.from_yaml(str(path)).loss == "ce+0.5*lovasz"
    path.write_text("loss: 0.25*dice+focal\n")
    assert TrainConfig.from_yaml(str(path)).loss == "0.25*dice+focal"


@pytest.mark.parametrize(
    "text, message",
    [("bce", "unknown loss 'bce'"), ("CE", "unknown loss 'CE'"), ("ce+", "a '+' with no term"),
     ("", "no loss given"), ("ce+dice+ce", "ce appears twice"), ("0*dice", "weight of dice must be in (0, 1000]"),
     ("1e3*ce", "'1e3*ce' is not a term"), ("-1*ce", "is not a term"), ("ce*2", "is not a term"),
     ("2000*ce", "weight of ce"), (["ce"], "expected ce, dice"), (3, "expected ce, dice")],
)  # fmt: skip
def test_bad_losses_give_one_line_naming_the_key(tmp_path, text, message):
    from kseg.config import parse_loss

    with pytest.raises(KsegError, match="^loss: ") as error:
        TrainConfig(loss=text)
    assert message in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(KsegError, match="^--loss: "):
        parse_loss(text, "--loss")
    path = tmp_path / "train.yaml"
    path.write_text(f"loss: {json.dumps(text)}\n")
    with pytest.raises(KsegError, match=f"^{path}: loss: "):
        TrainConfig.from_yaml(str(path))


def test_a_setting_fixed_on_resume_is_named_by_its_option(tmp_path):
    from kseg.config import resolve

    TrainConfig(data="folder", data_dir="d", classes_file="a.yaml").to_yaml(str(tmp_path / "config.yaml"))
    with pytest.raises(KsegError, match="^--classes: cannot change on --resume"):
        resolve({"classes_file": "b.yaml"}, resume_dir=str(tmp_path))
    with pytest.raises(KsegError, match="^--learn-upsampling: cannot change on --resume"):
        resolve({"learn_upsampling": True}, resume_dir=str(tmp_path))
    assert resolve({"classes_file": "a.yaml", "epochs": 3}, resume_dir=str(tmp_path)).epochs == 3


@pytest.mark.parametrize(
    "text, message",
    [("epochs: 3\nlr: 0.1\nepochs: 5\n", r"dup.yaml: not valid YAML at line 3, column 1: 'epochs' is given twice "
                                         r"\(first at line 1\); keep one"),
     ("batch-size: 3\nlr: 0.1\nbatch_size: 5\n", "dup.yaml: 'batch-size' and 'batch_size' are the same setting; "
                                                 "keep one")],
)  # fmt: skip
def test_a_file_that_gives_one_setting_twice_is_refused_in_one_line(tmp_path, text, message):
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(KsegError, match=message):
        TrainConfig.from_yaml(path)
    path.write_text("batch-size: 3\nlr: 0.1\n")  # an option may still change a setting of the file
    assert TrainConfig.from_yaml(path, overrides={"batch_size": 5}).batch_size == 5
