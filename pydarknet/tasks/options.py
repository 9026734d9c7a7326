"""Detection options as values: one home for each default and its check."""
from dataclasses import dataclass

from ..files.config import check_fractions


@dataclass(frozen=True)
class Thresholds:
    """`thresh` (None: the network's darknet's default), `hier_thresh`, and `nms` (the IoU; 0: none): fractions."""
    thresh: float = None
    hier_thresh: float = 0.5
    nms: float = 0.45

    def __post_init__(self):
        check_fractions(thresh=self.thresh, hier=self.hier_thresh, nms=self.nms)
