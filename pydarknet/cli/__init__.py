"""The commands: darknet's command line, each click options and one call into programs/ or tasks/.
May import: programs, tasks, network, results, kernels, files.

Results go to stdout, chatter (layer table, warnings) to stderr. Errors are one line on stderr and a
non-zero exit: 1 for bad input files, 2 for usage; a traceback only with --debug.

Each module here is click options and one call into the module that does the work (pydarknet/programs/,
evaluate.py, train/run.py, ...); this one assembles darknet's command tree and runs it.
"""
import difflib
import sys

import click

from ..files.config import DarknetError, set_quiet
from ..files.errors import Interrupted
from ..kernels import startup
from ..programs.images import Failures
from ..tasks import stops
from . import (classify_commands, dataset_commands, detect_commands, evaluate_commands, export_commands,
               program_commands, serve_commands, tool_commands, train_commands)
from .options import CONTEXT

# The commands whose first word names a family (`detector map`).
GROUPS = {"detector", "classifier", "export", "datasets"}
# Commands that run no kernel: no compile listener for them.
KERNEL_FREE_COMMANDS = {"--version", "download", "version", "summary", "print", "ops", "partial", "datasets"}
# Commands that close every file they write before they return: their process may skip Python's own end
# (kernels.startup.end).
QUICK_EXIT_COMMANDS = {"detect", "detector test", "classify", "classifier predict"}


class Group(click.Group):
    """click's group, whose commands (and itself) report a misspelt single-dash long option whole, with the closest
    of theirs: `-threshold 0.3` is `no such option: -threshold (did you mean -thresh?)`, where click alone reads it
    as -t and its value hreshold (No such option '-t'), or worse, as a short option that exists (-iou_threshold:
    -i ou_threshold)."""
    group_class = type   # its groups (`detector`, `classifier`, ...) are Groups too

    def parse_args(self, ctx, args):
        check_long_options(self, ctx.command_path, ctx, args)
        return super().parse_args(ctx, args)

    def resolve_command(self, ctx, args):
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None and not isinstance(command, click.Group):   # a group checks its own
            check_long_options(command, f"{ctx.command_path} {name}", ctx, rest)
        return name, command, rest


def check_long_options(command, path, ctx, args):
    """A UsageError for the first of `args` that looks like a single-dash long option (-x...) and is none of
    `command`'s options, nor an option's value, nor a number: naming the closest of them (difflib), else where they
    are listed (`path`: the command's words, `pydarknet detect`). A group's own options end at its command's name."""
    options = {name: param for param in command.get_params(ctx) if isinstance(param, click.Option)
               for name in param.opts + param.secondary_opts}
    values = 0   # how many of the next arguments are the last option's value
    for arg in args:
        name = arg.split("=", 1)[0]
        if values:
            values -= 1
        elif arg == "--" or (isinstance(command, click.Group) and not arg.startswith("-")):
            return
        elif name in options:
            values = 0 if options[name].is_flag or options[name].count or "=" in arg else options[name].nargs
        elif arg.startswith("-") and not arg.startswith("--") and len(name) > 2 and not is_number(arg):
            close = difflib.get_close_matches(name, list(options), n=1)
            raise click.UsageError(f"no such option: {name} (" + (
                f"did you mean {close[0]}?)" if close else f"`{path} --help` lists the options)"))


def is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def show_version(ctx, param, value):
    if value:
        ctx.invoke(tool_commands.version)
        ctx.exit()


@click.group(cls=Group, context_settings=CONTEXT)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=show_version,
              help="Show the versions (as `pydarknet version`) and exit.")
def cli():
    """darknet's commands, same cfg and weights files, same answers."""


@cli.group(context_settings=CONTEXT)
def detector():
    """darknet's `detector` commands."""


@cli.group(context_settings=CONTEXT)
def classifier():
    """darknet's `classifier` commands."""


@cli.group("export", context_settings=CONTEXT)
def export_group():
    """Write a network for other runtimes."""


@cli.group(context_settings=CONTEXT)
def rnn():
    """darknet's `rnn` commands on character models."""


@cli.group("datasets", context_settings=CONTEXT)
def datasets_group():
    """Data sets to train on, in darknet's layout: made, converted from a labelling tool's export, checked, shown."""


for command, names in [
        (detect_commands.detect, ["detect"]), (detect_commands.demo, ["demo"]),
        (classify_commands.classify, ["classify"]),
        (tool_commands.summary, ["summary", "print", "ops"]), (train_commands.train, ["train"]),
        (tool_commands.partial, ["partial"]),
        (tool_commands.anchors, ["anchors"]), (tool_commands.download, ["download"]),
        (tool_commands.version, ["version"]),
        (tool_commands.compile_kernels, ["compile"]), (program_commands.nightmare, ["nightmare"]),
        (serve_commands.serve, ["serve"])]:
    for name in names:
        cli.add_command(command, name)
for command, name in [(detect_commands.detector_test, "test"), (detect_commands.detector_demo, "demo"),
                      (train_commands.train, "train"),
                      (evaluate_commands.detector_map, "map"), (evaluate_commands.detector_valid, "valid"),
                      (evaluate_commands.detector_recall, "recall"), (tool_commands.anchors, "calc_anchors")]:
    detector.add_command(command, name)
for command, name in [(classify_commands.classifier_predict, "predict"), (train_commands.train, "train"),
                      (evaluate_commands.classifier_valid, "valid")]:
    classifier.add_command(command, name)
export_group.add_command(export_commands.export_onnx, "onnx")
for command in (program_commands.generate, program_commands.valid, program_commands.train):
    rnn.add_command(command)
for command in (dataset_commands.shapes, dataset_commands.convert, dataset_commands.check, dataset_commands.show):
    datasets_group.add_command(command)


def main(argv=None):
    """The command line: argv, or the process's own arguments (then the process ends with the command)."""
    if argv is not None:
        return run_command(list(argv))
    stops.stop_on_signals()   # SIGTERM and SIGHUP as Ctrl-C: the process is the command's
    try:
        run_command(sys.argv[1:])
    finally:
        end(sys.argv[1:], sys.exc_info()[1])


def run_command(argv):
    debug = "--debug" in argv
    runs = argv and not {"-h", "--help"} & set(argv)
    Failures.count = 0   # the exit status tells of this command's images, not an earlier main() call's
    if runs:
        startup.start()
    try:
        if runs:
            set_quiet("-q" in argv or "--quiet" in argv)   # before click reads -q: for the notice
            announce_first_compile(argv)
        cli.main(args=argv, prog_name="pydarknet", standalone_mode=False)
    except click.exceptions.Abort as e:
        if not isinstance(e.__context__, KeyboardInterrupt):
            print("pydarknet: aborted", file=sys.stderr)
        elif not isinstance(e.__context__, Interrupted):   # an Interrupted has said what it saved
            print(stops.stopped_line(), file=sys.stderr)
        sys.exit(getattr(e.__context__, "status", None) or stops.exit_status())
    except click.ClickException as e:   # one line, as every other error, with where to read the usage
        ctx = getattr(e, "ctx", None)
        usage = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        print(f"pydarknet: error: {e.format_message()}{usage}", file=sys.stderr)
        sys.exit(e.exit_code)
    except (DarknetError, OSError) as e:
        if debug:
            raise
        print(f"pydarknet: error: {e}", file=sys.stderr)
        sys.exit(getattr(e, "exit_code", 1))   # 2 where the error is one of usage (config.UnusedOptionError)
    except KeyboardInterrupt as e:
        if not isinstance(e, Interrupted):
            print(stops.stopped_line(), file=sys.stderr)
        sys.exit(getattr(e, "status", None) or stops.exit_status())
    sys.exit(1 if Failures.count else 0)


def command(argv):
    """The command `argv` runs: its first word, or two for a family's (`detector test`)."""
    return " ".join(argv[:2] if argv[:1] and argv[0] in GROUPS else argv[:1])


def announce_first_compile(argv):
    """Say on stderr when Numba compiles pydarknet's kernels (a first run on this CPU): the command is slow once.
    The timed figures leave the compile out (predict.timed_forward)."""
    if argv[0] not in KERNEL_FREE_COMMANDS:
        from ..tasks.warmup import announce_compiling
        announce_compiling(command(argv))


def end(argv, ending):
    """The process's end, with `ending` (an exception) on its way: a command that loaded a network records the
    kernels it ran, for the next one to load ahead (preload, only where the command imported it); one of
    QUICK_EXIT_COMMANDS may then skip Python's own end (kernels.startup.end)."""
    preload = sys.modules.get("pydarknet.tasks.preload")
    if preload is not None:
        preload.record_command()
    startup.end(ending, quick=command(argv) in QUICK_EXIT_COMMANDS)
