"""[crnn]: [rnn] with 3x3 convolutions (stride 1, padding 1) for gates, on feature maps: the input gate takes
the image to `hidden_filters` channels, the self gate the hidden state to itself, the output gate the state to
`output_filters` channels. State, shortcut and backward as [rnn] (darknet's crnn_layer.c is rnn_layer.c with
convolutions). Darknet builds the gates with make_convolutional_layer, which leaves their learning-rate scale
0: training computes their gradients but never changes their parameters."""
from .recurrent import make_gate
from .rnn import RNN


class CRNN(RNN):
    type = "crnn"
    names = ("crnn",)

    def make_gates(self, in_shape, net):
        if not all(in_shape):
            raise self.error("the layer before it must output an image (c x h x w)")
        _, h, w = in_shape
        hidden = self.section.int("hidden_filters", 1)
        filters = self.section.int("output_filters", 1)
        for key, value in (("hidden_filters", hidden), ("output_filters", filters)):
            if value < 1:
                raise self.error(f"{key}={value} must be positive", key)
        self.state_shape = (hidden, h, w)
        options = dict(size=3, stride=1, pad=1, activation=self.activation, batch_normalize=self.batch_normalize)
        self.input_layer = make_gate(self, "convolutional", in_shape, net, 0.0, filters=hidden, **options)
        self.self_layer = make_gate(self, "convolutional", self.state_shape, net, 0.0, filters=hidden, **options)
        self.output_layer = make_gate(self, "convolutional", self.state_shape, net, 0.0, filters=filters, **options)
        self.outputs = filters * h * w

    def describe(self):
        c, h, w = self.in_shape
        return f"CRNN Layer: {h} x {w} x {c} image, {self.output_layer.filters} filters"
