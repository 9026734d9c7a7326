"""One module per darknet layer type; LAYER_TYPES maps every cfg section name darknet accepts to its class."""
from .convolutional import Convolutional
from .maxpool import Maxpool
from .route import Route
from .shortcut import Shortcut
from .upsample import Upsample
from .yolo import Yolo

LAYER_TYPES = {
    "convolutional": Convolutional, "conv": Convolutional,
    "maxpool": Maxpool, "max": Maxpool,
    "route": Route,
    "shortcut": Shortcut,
    "upsample": Upsample,
    "yolo": Yolo,
}
