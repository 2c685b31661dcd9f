#!/usr/bin/env python3
"""Test-only reference: token ids of each file under the PyPI `tokenizers` library
(Hugging Face's Python binding) loading a tokenizer.json, without added special tokens.

usage: tokenize_ref.py TOKENIZER_JSON FILE...   -> one JSON array of ids per line
"""
import json
import sys

from tokenizers import Tokenizer


def main():
    tok = Tokenizer.from_file(sys.argv[1])
    for path in sys.argv[2:]:
        with open(path, encoding="utf-8") as f:
            print(json.dumps(tok.encode(f.read(), add_special_tokens=False).ids))


if __name__ == "__main__":
    main()
