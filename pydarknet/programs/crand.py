"""C's rand() as glibc computes it, so that the programs that draw from it (`rnn generate`, `nightmare`) make
darknet's choices for the same srand() seed.

glibc's default generator (TYPE_3): a 34-word state seeded by a Lehmer generator (16807 * s mod 2^31 - 1;
seed 0 counts as 1), then r[i] = r[i-31] + r[i-3] (mod 2^32); the first 310 results are dropped and each
rand() is the next r >> 1 (0 .. RAND_MAX).

Darknet also spends rand() calls while it builds a network (random starting weights, overwritten by
load_weights); `parse_draws` counts them so that a program's draws line up with darknet's.
"""
import numpy as np

RAND_MAX = 2147483647


class CRand:
    def __init__(self, seed=1):
        self.srand(seed)

    def srand(self, seed):
        word = int(seed) & 0xFFFFFFFF or 1
        word = word - 2**32 if word >= 2**31 else word     # glibc keeps the seed in an int32_t
        words = [word]
        for _ in range(1, 31):
            hi = abs(word) // 127773 * (1 if word >= 0 else -1)   # C's division truncates
            word = 16807 * (word - hi * 127773) - 2836 * hi
            word = word + 2147483647 if word < 0 else word
            words.append(word)
        words += words[:3]
        self.state = [w & 0xFFFFFFFF for w in words]
        self.skip(310)

    def rand(self):
        s = self.state
        value = (s[-31] + s[-3]) & 0xFFFFFFFF
        s.append(value)
        del s[0]
        return value >> 1

    def skip(self, count):
        """Draw `count` values and forget them."""
        s = self.state
        for _ in range(count):
            s.append((s[-31] + s[-3]) & 0xFFFFFFFF)
        del s[:-34]

    def uniform(self, low, high):
        """darknet's rand_uniform in float: rand() / RAND_MAX (as a float, 2^31) * (high - low) + low."""
        r = np.float32(np.float32(self.rand()) / np.float32(RAND_MAX))
        return np.float32(r * np.float32(high - low) + np.float32(low))


def parse_draws(net):
    """How many rand() calls darknet's parse_network_cfg makes for `net`: one per [connected] or [local] weight
    (rand_uniform), and the Box-Muller pairs of rand_normal for convolution weights (two calls for every second
    normal, the pairs running on from one layer to the next); recurrent layers count their gates."""
    uniform, normal = 0, 0
    for layer in net.layers:
        for part in getattr(layer, "gates", ()) or (layer,):
            if part.type in ("connected", "local"):
                uniform += part.weights.size
            elif part.type in ("convolutional", "deconvolutional"):
                normal += part.weights.size
    return uniform + 2 * ((normal + 1) // 2)
