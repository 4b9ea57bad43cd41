"""A run that does not learn says so, in its epoch lines and at its end."""

import logging

import numpy as np
import pytest

from kseg.config import TrainConfig
from kseg.metrics import at_chance_level, chance_mean_iou, confusion_matrix, segmentation_scores
from kseg.training.loop import learning_problem

NAMES = ["background", "circle", "square"]


def test_chance_level_is_the_score_of_predicting_the_most_frequent_class_everywhere():
    labels = np.array([0] * 70 + [1] * 20 + [2] * 10)
    constant = confusion_matrix(labels, np.zeros_like(labels), 3)
    index, chance = chance_mean_iou(constant)
    assert index == 0
    assert chance == pytest.approx(0.7 / 3)  # IoUs 0.7, 0, 0
    assert segmentation_scores(constant)["mean_iou"] == pytest.approx(chance)
    # the same ground truth, whatever was predicted
    assert chance_mean_iou(confusion_matrix(labels, labels, 3)) == (0, pytest.approx(0.7 / 3))
    # a class absent from the ground truth does not count
    assert chance_mean_iou(confusion_matrix(labels[:90], np.zeros(90, int), 3))[1] == pytest.approx(70 / 90 / 2)
    assert chance_mean_iou(np.zeros((3, 4)))[0] is None


@pytest.mark.parametrize("mean_iou, chance, verdict", [
    (0.137, 0.137, True), (0.140, 0.137, True), (0.20, 0.137, False), (0.775, 0.137, False),
    (float("nan"), 0.137, False),
])  # fmt: skip
def test_at_chance_level(mean_iou, chance, verdict):
    assert at_chance_level(mean_iou, chance) == verdict


def row(epoch, loss, mean_iou=None, chance=0.137, first=None):
    return {"epoch": epoch, "loss": loss, "mean_iou": mean_iou, "chance_mean_iou": chance, "chance_class": 0,
            "first_step_loss": first}  # fmt: skip


def test_the_verdicts_on_histories():
    learning = [row(1, 0.67, 0.20, first=1.79), row(2, 0.43, 0.23), row(3, 0.32, 0.52)]
    assert learning_problem(learning, NAMES) == ""
    # the demo on the CPU whose bf16 training broke: loss 20 after epoch 1, then a plateau at chance
    exploded = [row(1, 20.2, 0.137, first=1.79)]
    assert "diverging" in learning_problem(exploded, NAMES)
    plateau = exploded + [row(2, 1.1, 0.137)]
    problem = learning_problem(plateau, NAMES)
    assert "chance level" in problem and "background" in problem
    assert learning_problem([row(1, 0.9)], NAMES) == ""  # no validation: only the loss speaks
    assert "diverging" in learning_problem([row(1, 1.0), row(2, 2.5)], NAMES)  # older logs: no first step
    # a fine-tuned run that starts near zero: noise, not divergence
    assert learning_problem([row(1, 0.1, first=0.08), row(2, 0.25)], NAMES) == ""


def test_a_run_that_learns_nothing_says_so_and_claims_no_best(tmp_path, caplog):
    from kseg.data.synthetic import write_synthetic_dataset
    from kseg.training import train

    data = write_synthetic_dataset(str(tmp_path / "data"), num_train=8, num_val=4, size=(32, 48), seed=0)
    # A learning rate of 1e-12 leaves the zero-initialised score layers at zero: every pixel
    # is predicted as class 0, the background.
    config = TrainConfig(model="fcn8s_vgg16bn", data="synthetic", data_dir=data, weights="none", width=0.0625,
                         epochs=2, batch_size=4, crop=[32, 32], optimizer="sgd", lr=1e-12, momentum=0,
                         weight_decay=0, run_dir=str(tmp_path / "run"), mixed_precision="off")  # fmt: skip
    with caplog.at_level(logging.INFO, logger="kseg"):
        train(config, verbose=0)
    messages = [record.getMessage() for record in caplog.records]
    assert any(message.startswith("this run did not learn: its validation mIoU") for message in messages)
    assert sum("epoch" in message and "not learning" in message for message in messages) == 2
    assert not any("(best)" in message for message in messages)


def test_evaluate_says_when_a_score_is_chance_level():
    from kseg.evaluation import EvaluationResult

    labels = np.array([0] * 70 + [1] * 20 + [2] * 10)
    constant = EvaluationResult(confusion_matrix(labels, np.zeros_like(labels), 3), NAMES, num_images=1)
    assert constant.to_dict()["at_chance_level"] is True
    assert constant.to_dict()["chance_mean_iou"] == pytest.approx(0.7 / 3)
    assert any(line.startswith("this is chance level: predicting background") for line in constant.report_lines())
    perfect = EvaluationResult(confusion_matrix(labels, labels, 3), NAMES, num_images=1)
    assert perfect.to_dict()["at_chance_level"] is False
    assert not any("chance" in line for line in perfect.report_lines())

