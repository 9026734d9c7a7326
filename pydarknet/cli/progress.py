"""Progress bars on stderr, for people at a terminal; pipelines and -q get none."""
import sys

import click

from ..files.config import chatter


def stderr_is_terminal():
    return sys.stderr.isatty()


def progress_bar(label, lines_on_stdout=False, describe=None):
    """A progress callback, progress(done, total), drawing click's bar (with the time left) on stderr when
    stderr is a terminal and not -q; else None. `lines_on_stdout`: the command prints a line per item, which
    is progress enough when stdout is a terminal too. `describe(done, total)`: the text after the bar
    [done/total]."""
    if chatter["quiet"] or not stderr_is_terminal() or (lines_on_stdout and sys.stdout.isatty()):
        return None
    bar = None

    def show(done, total):
        nonlocal bar
        if bar is None:
            shown = None if describe is None else lambda item: item and describe(*item)
            bar = click.progressbar(length=total, label=label, file=sys.stderr, show_pos=describe is None,
                                    item_show_func=shown)
        bar.update(done - bar.pos, (done, total))
        if done >= total:
            bar.render_finish()
            bar = None
    return show
