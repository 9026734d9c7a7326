"""train (also `detector train` and `classifier train`); under mpiexec (mpirun, srun), one rank of a job."""
import click

from .options import CONTEXT, common
from .progress import progress_bar


def train_options(fn):
    fn = click.option("--rank-timeout", "rank_timeout", type=click.FloatRange(min=1), default=60, show_default=True,
                      help="Under mpiexec: a rank from which nothing at all comes for this many seconds (stopped, "
                           "frozen or cut off) ends the job; a slow one is waited for.")(fn)
    fn = click.option("--chart/--no-chart", default=True,
                      help="Draw chart.png (loss and rate) in the backup folder.")(fn)
    fn = click.option("--seed", type=int, default=0, show_default=True,
                      help="Seed of the data augmentation (replica r, over every MPI rank: seed + r).")(fn)
    fn = click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True,
                      help="Image-loading threads.")(fn)
    fn = click.option("--max-batches", "max_batches", type=click.IntRange(min=1), default=None,
                      help="Stop after this many iterations [the cfg's max_batches].")(fn)
    fn = click.option("--backup", default=None, help="Folder for the weights [the data file's backup=].")(fn)
    fn = click.option("-dont_show", "dont_show", is_flag=True, help="Accepted (no window is ever shown).")(fn)
    fn = click.option("-clear", "clear", is_flag=True, help="Start counting from 0 (reset `seen`).")(fn)
    fn = click.option("-show_imgs", "show_imgs", is_flag=True,
                      help="Write every augmented training image, its truth boxes drawn, as "
                           "<backup>/aug_<iteration>_<i>.png (the fork shows them).")(fn)
    fn = click.option("-mAP_epochs", "map_epochs", type=click.IntRange(min=1), default=4, show_default=True,
                      help="With -map: evaluate every this many epochs (at least every 100 iterations).")(fn)
    fn = click.option("-map", "calc_map", is_flag=True,
                      help="Evaluate mAP@0.5 on the data file's valid= list during training (after burn_in, "
                           "every -mAP_epochs epochs, and at the end); keep the best as <cfg>_best.weights.")(fn)
    return fn


@click.command(context_settings=CONTEXT)
@click.argument("data")
@click.argument("cfg")
@click.argument("weights", required=False)
@train_options
@common
def train(data, cfg, weights, clear, calc_map, map_epochs, show_imgs, dont_show, backup, max_batches, workers, seed,
          chart, rank_timeout, network_options, quiet, debug):
    """Train a detector or a classifier (by the network's last layer) on DATA's train= list
    (also `detector train` and `classifier train`). With -gpus 0,1 (or cpu,cpu) one replica a device; started by
    mpiexec (mpirun, srun), one rank of a job: see docs/training.md."""
    from ..tasks.train.run import train as run
    run(data, cfg, weights, progress=progress_bar("train", lines_on_stdout=True), rank_timeout=rank_timeout,
        debug=debug, clear=clear, backup=backup, workers=workers, seed=seed, chart=chart, max_batches=max_batches,
        calc_map=calc_map, map_epochs=map_epochs, show_imgs=show_imgs, devices=network_options.trains().devices,
        strict=network_options.strict)
