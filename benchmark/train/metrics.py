"""Classification metrics from a confusion matrix, summed across processes before they are derived."""

from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass
class Tally:
    """Sums over the examples of one split; adding tallies from several processes is exact."""

    confusion: torch.Tensor  # (classes, classes) int64: rows true class, columns predicted
    top5_correct: torch.Tensor  # scalar int64
    loss_sum: torch.Tensor  # scalar float64, cross-entropy summed over examples

    @classmethod
    def zeros(cls, num_classes: int, device: torch.device) -> Tally:
        return cls(
            torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device),
            torch.zeros((), dtype=torch.int64, device=device),
            torch.zeros((), dtype=torch.float64, device=device),
        )

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        num_classes = self.confusion.shape[0]
        predicted = logits.argmax(dim=1)
        self.confusion += torch.bincount(labels * num_classes + predicted, minlength=num_classes**2).view(
            num_classes, num_classes
        )
        top5 = logits.topk(min(5, num_classes), dim=1).indices
        self.top5_correct += (top5 == labels[:, None]).any(dim=1).sum()
        self.loss_sum += torch.nn.functional.cross_entropy(logits.float(), labels, reduction="sum").double()

    def tensors(self) -> list[torch.Tensor]:
        return [self.confusion, self.top5_correct, self.loss_sum]

    @property
    def count(self) -> int:
        return int(self.confusion.sum())

    @property
    def top1(self) -> float:
        return float(self.confusion.diag().sum()) / max(self.count, 1)

    @property
    def top5(self) -> float:
        return float(self.top5_correct) / max(self.count, 1)

    @property
    def loss(self) -> float:
        return float(self.loss_sum) / max(self.count, 1)

    def per_class_accuracy(self) -> list[float]:
        support = self.confusion.sum(dim=1).clamp(min=1)
        return (self.confusion.diag().double() / support).tolist()

    def macro_f1(self) -> float:
        """Mean over classes of 2 * precision * recall / (precision + recall); 0 for a class never hit."""
        confusion = self.confusion.double()
        true_positive = confusion.diag()
        precision = true_positive / confusion.sum(dim=0).clamp(min=1)
        recall = true_positive / confusion.sum(dim=1).clamp(min=1)
        f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
        return float(f1.mean())
