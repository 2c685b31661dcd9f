# The entry module of the fork-server tests' zygotes: main() runs the file named by
# sys.argv[1] as __main__, as `python3 FILE` does.
import sys


def prepare(argv, files):
    # The zygote's prepare hook, for its tests: an offered /work/prepared.txt reaches the
    # program as PREPARED (and is not written); /work/raise.txt makes the hook fail;
    # anything else is declined.
    if "/work/raise.txt" in files:
        raise ValueError("prepare failed")
    return files.get("/work/prepared.txt")


def main(prepared=None):
    path = sys.argv[1]
    sys.argv = sys.argv[1:]
    with open(path, "rb") as f:
        code = compile(f.read(), path, "exec")
    g = {
        "__name__": "__main__",
        "__file__": path,
        "__builtins__": __builtins__,
        "PREPARED": prepared,
    }
    exec(code, g)
