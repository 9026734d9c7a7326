"""The wheel built from a checkout and installed in a new virtual environment, as a user installs pydarknet: for the
suite (tests/conftest.py's `installed`) and `make bench-cold` (tools/bench/cold.py)."""
import os
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_wheel(into, root=ROOT):
    """The wheel of the checkout at `root`, built into the folder `into` with this environment's setuptools and
    Numba (no isolated environment fetched from the package index: no network needed). Returns its path."""
    return WheelBuild(into, root).wait()


class WheelBuild:
    """build_wheel in the background: started here, `wait()` returns the wheel's path. From a copy of the checkout
    (built in place, setuptools would leave its build/ folder there, whose stale files later wheels would pick up).
    `niceness` lowers the build's priority (its processes inherit it): the suite starts it at collection, so that
    its minutes of compiling (a process per CPU level) run on the cores the tests before its first user leave idle,
    without taking them from those tests."""

    def __init__(self, into, root=ROOT, niceness=0):
        self.into = Path(into)
        self.source = self.into / "source"
        shutil.copytree(root, self.source, ignore=shutil.ignore_patterns(
            ".git", "build", "*.egg-info", "__pycache__", "tests", "*.nbi", "*.nbc"))
        self.log = tempfile.TemporaryFile("w+")

        def own_group_lowered():
            # a process group of its own, to stop it whole, in the tests' session: Linux's autogroups share the CPU
            # fairly between sessions, whatever their nice values (a new session took half the cores from the tests)
            os.setpgid(0, 0)
            os.nice(niceness)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w",
             str(self.into), str(self.source)], stdout=self.log, stderr=subprocess.STDOUT, text=True,
            preexec_fn=own_group_lowered)

    def wait(self):
        with self.log:
            if self.process.wait() != 0:
                self.log.seek(0)
                raise RuntimeError(f"the wheel did not build:\n{self.log.read()[-6000:]}")
        shutil.rmtree(self.source)
        return next(self.into.glob("pydarknet-*.whl"))

    def stop(self):
        """End the build and every process it started (a session interrupted before its wheel was used)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()


def fresh_environment(wheel, folder):
    """A new virtual environment in `folder` with `wheel` installed, seeing the packages of the interpreter running
    this (numpy, numba, opencv, click): its bin folder."""
    folder = Path(folder)
    venv.create(folder, with_pip=False)
    python = folder / "bin" / "python"
    see_packages_of_this_interpreter(python)
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                              str(wheel)], capture_output=True, text=True)
    if install.returncode != 0:
        raise RuntimeError(f"the wheel did not install:\n{install.stderr[-3000:]}")
    return folder / "bin"


def see_packages_of_this_interpreter(python):
    """Put the site folders of the interpreter running this after the new environment's own, whatever it is:
    a venv, a conda env, a --user install or the system's. (A venv's system_site_packages would show its *base*
    interpreter's instead: inside a venv, numba would be missing.) As plain path lines: the .pth files in those
    folders, an editable install of pydarknet among them, are not run, so the wheel is what imports."""
    folders = site.getsitepackages() + ([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])
    target = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                            capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(target, "_tests_see_the_running_interpreter.pth"), "w") as pth:
        pth.write("".join(f"{folder}\n" for folder in folders if os.path.isdir(folder)))


def clean_environment(**extra):
    """This process's environment without PYTHONPATH and PYTHONHOME (the new environment's own pydarknet runs)."""
    return {**{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}, **extra}
