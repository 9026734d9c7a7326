"""darknet's classifier programs: `classify` and `classifier predict`."""
from ..results.output import classification_lines, json_line
from ..tasks.stream import FirstAhead
from .images import command_images, for_each_batch, load_names, load_network, on_cluster


def run_classify(data_file, cfg, weights, images, top, preprocess, as_json, decoder, darknet=None, batch=1, dask=None,
                 unordered=False):
    """darknet's `classify` and `classifier predict`. `top`: how many classes [the data file's top=, else 1];
    `batch`: images per forward pass; with the default resize_min preprocessing the images of a batch share a
    pass only when they have the same shape. `dask`, `unordered`: as run_detect's."""
    from ..tasks.predict import Classifier

    given = command_images(images, cluster=dask is not None)
    load = FirstAhead(given.loader(decoder), given.listed if dask is None else None)
    net = load_network(cfg, weights, darknet, role="classifier")
    outputs = int(net.output_layer.out_shape[0] * net.output_layer.out_shape[1] * net.output_layer.out_shape[2])
    names, data = load_names(data_file, outputs, cfg)
    top = top or data.int("top", 1)
    classifier = Classifier(cfg, weights, names=names, preprocess=preprocess, decoder=decoder, network=net)

    def show(path, _, result):
        result.image = path
        print(json_line(result.as_json()) if as_json else "\n".join(classification_lines(path, result)))

    if dask is None:
        for_each_batch(given.names, lambda path: classifier.prepare(load(path)),
                       lambda prepared: classifier.classify_batch(prepared, top), show, batch)
    else:
        on_cluster(dask, "classify", given.names, show, cfg, weights, names=names, top=top, preprocess=preprocess,
                   decoder=decoder, darknet=darknet, batch=batch, ordered=not unordered)
