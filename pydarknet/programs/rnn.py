"""darknet's `rnn` programs (examples/rnn.c) on character models: `generate` (sample text), `train` (on a text
file) and `valid` (bits per character of stdin).

A character net takes one-hot rows over `inputs` byte values and predicts the next byte. `generate` and `valid`
feed one character per network call (the recurrent state carries from call to call), so the cfg must have
batch=1 and time_steps=1, as darknet's cfg/rnn.cfg. `train` cuts the text into `batch / time_steps` streams
starting at random offsets, each call going on where the last one stopped.

Randomness is C's rand() (pydarknet.programs.crand), spent as darknet spends it: srand(seed), the draws of darknet's
network parsing, then one per sampled character (generate), or per stream offset and reset (train). Darknet
seeds with time(0) unless -srand is given. These programs compute [softmax] as the gcc 12 -Ofast build of
darknet does (net.softmax_lanes), the build behind the golden text.
"""
import math
import sys
import time
from pathlib import Path

import numpy as np

from ..files.config import DarknetError, note
from ..files.weights import save_weights
from ..kernels import backward
from .crand import CRand, parse_draws
from ..tasks.options import NetworkOptions
from .images import load_network

F32 = np.float32
CUT = 0.0001   # generate zeroes the outputs below this before sampling


def read_tokens(path):
    """A -tokens file: one symbol per line, `<NEWLINE>` standing for a line break."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError as e:
        raise DarknetError(f"{path}: cannot read tokens: {e.strerror}") from None
    return ["\n" if line == "<NEWLINE>" else line for line in lines]


def char_network(cfg, weights, temperature=None, network_options=None):
    """Load a character net for one-character calls (see the module's docstring; `network_options`: as
    load_network's)."""
    note(Path(cfg).stem)
    net = load_network(cfg, weights, "pjreddie", network_options=network_options)
    if net.batch != 1:
        raise DarknetError(f"{cfg}: rnn generate and valid feed one character per call, but the net takes "
                           f"{net.batch} rows (batch x time_steps): use batch=1 and time_steps=1")
    net.softmax_lanes = True
    if temperature is not None:
        for layer in net.layers:
            if hasattr(layer, "temperature"):
                layer.temperature = float(F32(temperature))
    return net


def predict_char(net, c):
    """The network's output after feeding character c (a new array)."""
    x = np.zeros((1,) + net.input_shape, np.float32)
    x.reshape(-1)[c] = 1
    return net.forward(x).reshape(-1).copy()


def sample(probabilities, rng):
    """darknet's sample_array: scale by the float reciprocal of the (4-lane) sum, draw r = rand_uniform(0, 1),
    subtract the probabilities in float until r <= 0; the last index if it never does."""
    a = probabilities
    a *= F32(1.0 / np.float64(backward.sum_array(a)))
    r = rng.uniform(0, 1)
    for i, p in enumerate(a):
        r = F32(r - p)
        if r <= 0:
            return i
    return a.size - 1


def generate(cfg, weights, length=1000, seed_text="\n\n", temperature=0.7, srand=None, tokens=None,
             out=None, network_options=None):
    """darknet's `rnn generate`: print the seed, then `length` sampled symbols, then a newline, to `out` (bytes;
    stdout by default). `srand`: C's seed [time(0)]; `tokens`: a -tokens file (symbols printed with a space);
    `network_options`: as load_network's."""
    out = out or sys.stdout.buffer
    symbols = read_tokens(tokens) if tokens else None
    rng = CRand(int(time.time()) if srand is None else srand)
    net = char_network(cfg, weights, temperature, network_options)
    rng.skip(parse_draws(net))
    seed = seed_text.encode("latin-1") if isinstance(seed_text, str) else bytes(seed_text)
    inputs = int(np.prod(net.input_shape))

    def show(c):
        out.write(f"{symbols[c]} ".encode() if symbols else bytes([c & 0xFF]))

    c = 0
    for c in seed[:-1]:
        check_symbol(c, inputs, cfg)
        predict_char(net, c)
        show(c)
    if seed:
        c = seed[-1]
    show(c)
    for _ in range(length):
        check_symbol(c, inputs, cfg)
        p = predict_char(net, c)
        p[p.astype(np.float64) < CUT] = 0
        c = sample(p, rng)
        show(c)
    out.write(b"\n")
    out.flush()


def check_symbol(c, inputs, cfg):
    if c >= inputs:
        raise DarknetError(f"{cfg}: character {c} is beyond the net's {inputs} inputs")


def valid(cfg, weights, seed_text="\n\n", text=None, out=None, network_options=None):
    """darknet's `rnn valid`: feed the seed, then each character of `text` (bytes; stdin by default), printing
    after each the running bits per character, perplexity and word perplexity (words: spaces, tabs, newlines);
    `network_options`: as load_network's."""
    out = out or sys.stdout
    text = sys.stdin.buffer.read() if text is None else text
    net = char_network(cfg, weights, network_options=network_options)
    inputs = int(np.prod(net.input_shape))
    seed = seed_text.encode("latin-1") if isinstance(seed_text, str) else bytes(seed_text)
    for c in seed:
        check_symbol(c, inputs, cfg)
        predict_char(net, c)
    log2 = np.float64(F32(math.log(2)))
    total, count, words = F32(0), 0, 1
    for c, following in zip(text, text[1:]):
        if following >= 255:
            raise DarknetError("Out of range character")
        count += 1
        if following in b" \n\t":
            words += 1
        check_symbol(c, inputs, cfg)
        p = predict_char(net, c)
        total = F32(np.float64(total) + math.log(np.float64(p[following])) / log2)
        bpc = F32(-total / F32(count))
        print(f"{count} BPC: {bpc:4.4f}   Perplexity: {2 ** np.float64(bpc):4.4f}    "
              f"Word Perplexity: {2 ** np.float64(F32(-total / F32(words))):4.4f}", file=out)


# -- training -------------------------------------------------------------------------------------------------
def read_symbols(path, tokenized):
    """The training text as a sequence of symbols: its bytes up to the first NUL (darknet reads it as a C
    string), or with `tokenized` the whitespace-separated integers of the file."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DarknetError(f"{path}: cannot read the training text: {e.strerror}") from None
    if tokenized:
        try:
            return np.array([int(v) for v in data.split()], np.int64)
        except ValueError:
            raise DarknetError(f"{path}: -tokenized expects whitespace-separated integers") from None
    return np.frombuffer(data.split(b"\0", 1)[0], np.uint8).astype(np.int64)


def rand_size(rng):
    """darknet's rand_size_t: eight rand() bytes, the first the most significant."""
    value = 0
    for _ in range(8):
        value = (value << 8) | (rng.rand() & 0xFF)
    return value


def char_batch(symbols, offsets, inputs, steps):
    """darknet's get_rnn_data: for each stream s and step t, row t*streams + s of x is the one-hot symbol at the
    stream's offset, of y the next one; every offset moves on by steps (wrapping around the text)."""
    streams, size = len(offsets), len(symbols)
    x = np.zeros((steps * streams, inputs), np.float32)
    y = np.zeros_like(x)
    for s in range(streams):
        for t in range(steps):
            current, following = symbols[offsets[s] % size], symbols[(offsets[s] + 1) % size]
            if not (0 < current < inputs and 0 < following < inputs):
                raise DarknetError(f"Bad char: {current} -> {following} at offset {offsets[s]} "
                                   f"(the net takes symbols 1..{inputs - 1})")
            x[t * streams + s, current] = 1
            y[t * streams + s, following] = 1
            offsets[s] = (offsets[s] + 1) % size
    return x, y


def train(cfg, weights=None, text_file="data/shakespeare.txt", clear=False, tokenized=False, backup="backup",
          srand=None, max_batches=None, err=None, network_options=None):
    """darknet's `rnn train`: train on `text_file` until max_batches, printing darknet's progress line per
    iteration to `err` (stderr), saving <backup>/<cfg>.backup every 100 iterations, <cfg>_<i>.weights every
    10000 and <cfg>_final.weights at the end (darknet writes to its author's /home/pjreddie/backup/), on
    `network_options`' device (a tasks.options.NetworkOptions; None: the CPU). Returns the network."""
    from ..network.network import Network
    from ..tasks.train.step import get_current_batch, get_current_rate, train_datum

    err = err or sys.stderr
    rng = CRand(int(time.time()) if srand is None else srand)
    symbols = read_symbols(text_file, tokenized)
    if symbols.size < 2:
        raise DarknetError(f"{text_file}: too short to train on")
    base = Path(cfg).stem
    print(base, file=err)
    chosen = (network_options or NetworkOptions()).trains()
    net = Network(cfg, strict=chosen.strict, device=chosen.device)
    rng.skip(parse_draws(net))
    if weights:
        net.load(weights)
    else:
        net.initialize()
    net.softmax_lanes = True
    net.quiet = True
    inputs = int(np.prod(net.input_shape))
    print(f"Learning Rate: {net.learning_rate:g}, Momentum: {net.momentum:g}, Decay: {net.decay:g}, "
          f"Inputs: {inputs} {net.batch} {net.time_steps}", file=err)
    if clear:
        net.seen = 0
    steps = net.time_steps
    streams = net.batch // steps
    iteration = net.seen // net.batch
    offsets = [rand_size(rng) % symbols.size for _ in range(streams)]
    Path(backup).mkdir(parents=True, exist_ok=True)
    stop = net.max_batches if max_batches is None else max_batches
    avg_loss = -1.0
    while get_current_batch(net) < stop:
        iteration += 1
        started = time.process_time()
        x, y = char_batch(symbols, offsets, inputs, steps)
        loss = F32(train_datum(net, x.reshape((-1,) + net.input_shape), y) / F32(net.batch))
        avg_loss = loss if avg_loss < 0 else F32(np.float64(avg_loss) * .9 + np.float64(loss) * .1)
        chars = get_current_batch(net) * net.batch
        print(f"{iteration}: {loss:f}, {avg_loss:f} avg, {get_current_rate(net):f} rate, "
              f"{time.process_time() - started:f} seconds, {F32(chars / symbols.size):f} epochs", file=err)
        for s in range(streams):
            if rng.rand() % 64 == 0:   # darknet then resets the stream's state, which its CPU code cannot do
                offsets[s] = rand_size(rng) % symbols.size
        if iteration % 10000 == 0:
            save_weights(net, Path(backup) / f"{base}_{iteration}.weights")
        if iteration % 100 == 0:
            save_weights(net, Path(backup) / f"{base}.backup")
    save_weights(net, Path(backup) / f"{base}_final.weights")
    return net
