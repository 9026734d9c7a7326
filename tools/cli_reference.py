"""docs/cli-reference.md from the commands themselves: every command, its arguments, flags, defaults and help, so
that a default is written once, in the code. `python3 tools/cli_reference.py > docs/cli-reference.md` rewrites it;
tests/test_docs.py fails when the page and the code differ."""
import click

from pydarknet.cli import cli

HEAD = """# Command reference

Generated from the commands by `python3 tools/cli_reference.py > docs/cli-reference.md` (the suite checks that
this page and the code agree): every command's arguments and flags, with the defaults the code has. Square brackets
in a description are a default that depends on the files. The guide to the commands is
[commands.md](commands.md).
"""


def commands(group, prefix=()):
    """(words, command) for every command under `group`, in the order `pydarknet --help` lists them."""
    for name in group.list_commands(click.Context(group)):
        command = group.get_command(click.Context(group), name)
        if isinstance(command, click.Group):
            yield from commands(command, prefix + (name,))
        else:
            yield prefix + (name,), command


def default(param):
    if param.required:
        return "required"
    if param.is_flag or param.default is None or callable(param.default):
        return ""
    if "UNSET" in repr(param.default):   # click 8.2's sentinel for "no default"
        return ""
    if isinstance(param.default, (tuple, list)):
        return " ".join(map(str, param.default))
    return f"`{param.default}`"


def cell(text):
    return " ".join((text or "").split()).replace("|", "\\|")


def page():
    lines = [HEAD]
    for words, command in commands(cli):
        usage = " ".join(command.collect_usage_pieces(click.Context(command)))
        lines += [f"## pydarknet {' '.join(words)}", "", f"`pydarknet {' '.join(words)} {usage}`", ""]
        summary = (command.help or "").split("\n\n")[0]
        if summary:
            lines += [" ".join(summary.split()), ""]
        lines += ["| flag | default | what it does |", "| --- | --- | --- |"]
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                flags = ", ".join(f"`{opt}`" for opt in param.opts + param.secondary_opts)
                lines.append(f"| {flags} | {default(param)} | {cell(param.help)} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(page(), end="")
