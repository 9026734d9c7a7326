"""Training on several GPUs (`-gpus 0,1`): one copy of the network per device, each given its own share of the
images, their updates averaged into one step.

darknet's train_networks gives each GPU a whole batch of its own and, every few iterations, averages the
networks' weights. Here every iteration: each replica runs forward and backward over its share (its own
batch x subdivisions images, chunk by chunk as train_network does), the replicas' accumulated updates are
summed and divided by their number on the first replica, which applies the step; its parameters, with the
batch-norm rolling statistics averaged over the replicas, then go to the others. So each step follows the
average gradient of all the replicas' images, and the replicas never drift apart.

The replicas may be any devices, the CPU included ("cpu", "cuda:0", "cuda:0" twice): one GPU can stand in for two.
"""
import numpy as np

from ..config import DarknetError
from ..network import Network
from .step import update_network

F32 = np.float32
AVERAGED = ("rolling_mean", "rolling_variance")   # what each replica's forward changes on its own


def updates(net, layer):
    """{update array name: host array} of the layer's accumulated updates (copies of a GPU's)."""
    if net.engine is not None:
        return net.engine.host_updates(layer)
    return {u: getattr(layer, u) for _, u, _ in layer.trainable if getattr(layer, u, None) is not None}


def set_updates(net, layer, values):
    if net.engine is not None:
        net.engine.set_updates(layer, values)
        return
    for name, value in values.items():
        getattr(layer, name)[...] = value


class Replicas:
    """`net` (the first replica, kept) and a copy of it on each further device of `devices`."""

    def __init__(self, net, devices):
        if len(devices) < 1:
            raise DarknetError("no device to train on")
        self.nets = [net.to(devices[0])]
        for device in devices[1:]:
            copy = Network(net.cfg_path, quiet_unused=True, darknet=net.darknet)
            copy.quiet = True
            self.nets.append(copy.to(device))
        self.broadcast()

    @property
    def lead(self):
        return self.nets[0]

    def broadcast(self):
        """The first replica's parameters (and training state) into every other."""
        lead = self.lead
        lead.sync_parameters()
        for net in self.nets[1:]:
            for mine, theirs in zip(lead.layers, net.layers):
                for a, b in zip(mine.weight_arrays(), theirs.weight_arrays()):
                    b[...] = a
            net.seen, net.t, net.params_version = lead.seen, lead.t, net.params_version + 1

    def train_batch(self, x, y):
        """darknet's train_networks step on x (n, c, h, w): n must split into one share per replica of whole
        iterations (batch x subdivisions images each). Returns the average cost per image, as train_network."""
        lead, count = self.lead, len(self.nets)
        iteration = lead.batch * lead.subdivisions
        if x.shape[0] % (iteration * count):
            raise DarknetError(f"{x.shape[0]} images do not split into {count} replicas' iterations of "
                               f"{iteration} images (batch x subdivisions)")
        total = F32(0)
        for start in range(0, x.shape[0], iteration * count):
            carried = self._carried()
            for r, net in enumerate(self.nets):
                share = slice(start + r * iteration, start + (r + 1) * iteration)
                total = F32(total + self._accumulate(net, x[share], y[share]))
            self._average_into_lead(carried)
            update_network(lead)
            self.broadcast()
        return F32(total / F32(x.shape[0]))

    @staticmethod
    def _accumulate(net, x, y):
        """Forward and backward over one iteration's images, chunk by chunk, without the update: the chunks'
        costs summed (train_network's total)."""
        total = F32(0)
        try:
            for b in range(0, x.shape[0], net.batch):
                net.seen += net.batch
                total = F32(total + F32(net.forward_train(x[b:b + net.batch], y[b:b + net.batch])))
                net.backward()
        finally:
            net.train = False
        return total

    def _carried(self):
        """The first replica's updates before an iteration: what momentum carried over from the last step."""
        return {i: {name: np.array(value) for name, value in updates(self.lead, layer).items()}
                for i, layer in enumerate(self.lead.layers) if layer.trainable}

    def _average_into_lead(self, carried):
        """The replicas' new updates (the first's less what it carried) averaged, plus the carried momentum, into
        the first's updates (the others start again from 0); the rolling statistics averaged likewise."""
        lead, count = self.lead, F32(len(self.nets))
        for net in self.nets:
            net.sync_parameters()
        for i, layer in enumerate(lead.layers):
            if not layer.trainable:
                continue
            summed = {name: value - carried[i].get(name, 0) for name, value in updates(lead, layer).items()}
            for net in self.nets[1:]:
                theirs = updates(net, net.layers[i])
                for name, value in theirs.items():
                    summed[name] = summed[name] + value
                set_updates(net, net.layers[i], {name: np.zeros_like(value) for name, value in theirs.items()})
            set_updates(lead, layer, {name: carried[i].get(name, 0) + value / count for name, value in summed.items()})
            for name in AVERAGED:
                if getattr(layer, name, None) is not None:
                    values = [getattr(net.layers[i], name) for net in self.nets]
                    getattr(layer, name)[...] = np.sum(values, axis=0, dtype=F32) / count
        lead.params_version += 1
