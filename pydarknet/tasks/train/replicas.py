"""Training on several devices (`-gpus 0,1`, `-gpus cpu,cpu`) and processes (`mpiexec`, train/mpi.py): one copy
of the network per device, each given its own share of the images, their updates averaged into one step.

darknet's train_networks gives each GPU a whole batch of its own and, every few iterations, averages the
networks' weights. Here every iteration: each replica runs forward and backward over its share (its own
batch x subdivisions images, chunk by chunk as train_network does), the replicas' accumulated updates are
summed and divided by their number on the first replica, which applies the step; its parameters, with the
batch-norm rolling statistics averaged over the replicas, then go to the others. So each step follows the
average gradient of all the replicas' images, and the replicas never drift apart.

Across processes (a `group`), each process does the same with its own replicas, the sums of their updates and
statistics are added over the processes (MPI's Allreduce), and every process applies the same step to its own
first replica: the copies stay equal without sending parameters. The replicas are numbered over all the
processes in rank order; only replica 0 carries momentum into its sum, as the first replica does in one process,
so one process with replicas 0..n-1 and n processes with one each add the same numbers.

The replicas may be any devices, the CPU included ("cpu", "cuda:0", "cuda:0" twice): one GPU can stand in for two.
"""
import numpy as np

from ...files.config import DarknetError
from ...network.network import Network
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
    """`net` (the first replica, kept) and a copy of it on each further device of `devices`; with `group` (an
    mpi.Group), this process's part of the replicas of every process of an MPI job."""

    def __init__(self, net, devices, group=None):
        if len(devices) < 1:
            raise DarknetError("no device to train on")
        self.group = group
        self.nets = [net.to(devices[0])]
        for device in devices[1:]:
            copy = Network(net.cfg_path, quiet_unused=True, darknet=net.darknet)
            copy.quiet = True
            self.nets.append(copy.to(device))
        self.broadcast()

    @property
    def lead(self):
        return self.nets[0]

    @property
    def first(self):
        """The number of this process's first replica among all (0 without a group)."""
        return self.group.first if self.group else 0

    @property
    def total(self):
        """How many replicas train, over every process."""
        return self.group.total if self.group else len(self.nets)

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
        iterations (batch x subdivisions images each). Returns the average cost per image over every replica's
        images (every process's, with a group), as train_network."""
        lead, count = self.lead, len(self.nets)
        iteration = lead.batch * lead.subdivisions
        if x.shape[0] % (iteration * count):
            raise DarknetError(f"{x.shape[0]} images do not split into {count} replicas' iterations of "
                               f"{iteration} images (batch x subdivisions)")
        total = F32(0)
        for start in range(0, x.shape[0], iteration * count):
            carried = self._carried()
            costs = [self._accumulate(net, x[start + r * iteration:start + (r + 1) * iteration],
                                      y[start + r * iteration:start + (r + 1) * iteration])
                     for r, net in enumerate(self.nets)]
            if self.group:
                costs = self.group.check_in(costs)   # every replica's, in their order: or the job stops here
            for cost in costs:
                total = F32(total + cost)
            statistics = self._average_into_lead(carried)
            update_network(lead)
            self._set_statistics(statistics)
            self.broadcast()
        return F32(total / F32(x.shape[0] // count * self.total))

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
        """The first replica's updates before an iteration: what momentum carried over from the last step. The
        first replica of a process other than the job's first starts its sum from 0, as every replica but
        the first does in one process."""
        carried = {i: {name: np.array(value) for name, value in updates(self.lead, layer).items()}
                   for i, layer in enumerate(self.lead.layers) if layer.trainable}
        if self.first:
            for i, layer in enumerate(self.lead.layers):
                if layer.trainable:
                    set_updates(self.lead, layer, {name: np.zeros_like(value) for name, value in carried[i].items()})
        return carried

    def _average_into_lead(self, carried):
        """The replicas' new updates (the job's first replica's less what it carried) averaged, plus the carried
        momentum, into the first's updates (the others start again from 0). With a group, this process's sums are
        added to the other processes' first. Returns the rolling statistics' averages ({layer: {name: array}})."""
        lead, count = self.lead, F32(self.total)
        for net in self.nets:
            net.sync_parameters()
        sums, statistics = {}, {}
        for i, layer in enumerate(lead.layers):
            if not layer.trainable:
                continue
            mine = updates(lead, layer)
            summed = {name: value - carried[i].get(name, 0) if self.first == 0 else np.array(value)
                      for name, value in mine.items()}
            for net in self.nets[1:]:
                theirs = updates(net, net.layers[i])
                for name, value in theirs.items():
                    summed[name] = summed[name] + value
                set_updates(net, net.layers[i], {name: np.zeros_like(value) for name, value in theirs.items()})
            sums[i] = summed
            statistics[i] = {name: np.sum([getattr(net.layers[i], name) for net in self.nets], axis=0, dtype=F32)
                             for name in AVERAGED if getattr(layer, name, None) is not None}
        if self.group:
            self._add_over_processes(sums, statistics)
        for i, summed in sums.items():
            set_updates(lead, lead.layers[i],
                        {name: carried[i].get(name, 0) + value / count for name, value in summed.items()})
        return {i: {name: value / count for name, value in table.items()} for i, table in statistics.items()}

    def _set_statistics(self, statistics):
        """The averaged rolling statistics into the first replica, after its update: a GPU replica's update takes
        every parameter back from the device, its own statistics included, which would undo them before it."""
        lead = self.lead
        for i, table in statistics.items():
            for name, value in table.items():
                getattr(lead.layers[i], name)[...] = value
        lead.params_version += 1   # the device's copies are now older than these

    def _add_over_processes(self, sums, statistics):
        """Every process's sums added into each (in place), in one message: the arrays laid end to end."""
        arrays = [a for i in sums for a in (*sums[i].values(), *statistics[i].values())]
        flat = np.concatenate([np.asarray(a, F32).ravel() for a in arrays])
        self.group.sum(flat)
        offset = 0
        for i in sums:
            for table in (sums[i], statistics[i]):
                for name, value in table.items():
                    table[name] = flat[offset:offset + value.size].reshape(value.shape)
                    offset += value.size
