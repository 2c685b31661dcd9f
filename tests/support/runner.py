# The entry module of the fork-server tests' zygotes: main() runs the file named by
# sys.argv[1] as __main__, as `python3 FILE` does.
import sys


def main():
    path = sys.argv[1]
    sys.argv = sys.argv[1:]
    with open(path, "rb") as f:
        code = compile(f.read(), path, "exec")
    g = {"__name__": "__main__", "__file__": path, "__builtins__": __builtins__}
    exec(code, g)
