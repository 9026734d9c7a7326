"""darknet's classifier programs: `classify` and `classifier predict`."""
from ..results.output import classification_lines, json_line
from ..tasks.options import NetworkOptions, Preprocessing
from ..tasks.stream import FirstAhead
from .images import command_images, for_each_batch, load_names, load_network, on_cluster


def run_classify(data_file, cfg, weights, images, top, preprocessing=Preprocessing(), as_json=False, darknet=None,
                 batch=1, dask=None, unordered=False, network_options=NetworkOptions()):
    """darknet's `classify` and `classifier predict`. `top`: how many classes [the data file's top=, else 1];
    `preprocessing`: a tasks.options.Preprocessing (its letterbox None: darknet's resize_min; its decoder);
    `batch`: images per forward pass; with resize_min the images of a batch share a pass only when they have the
    same shape. `dask`, `unordered`, `network_options`: as run_detect's."""
    from ..tasks.predict import Classifier

    decoder, preprocess = preprocessing.decoder, preprocessing.classifier_resize

    given = command_images(images, cluster=dask is not None)
    load = FirstAhead(given.loader(decoder), given.listed if dask is None else None)
    net = load_network(cfg, weights, darknet, role="classifier", network_options=network_options)
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
                   decoder=decoder, darknet=darknet, batch=batch, ordered=not unordered, engine=classifier.engine)
