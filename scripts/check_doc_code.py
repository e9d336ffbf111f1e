#!/usr/bin/env python3
"""Checks that the C++ in the course pages is taken from code the build compiles: every ```cpp block
must follow a `<!-- code: PATH -->` line naming the source file it comes from (an example program,
built with the rest), and its lines must appear in that file, in order and together (leading and
trailing spaces aside). A block with no source, or one whose source has since changed, fails.

    scripts/check_doc_code.py docs/from-asyncio.md docs/pitfalls.md ...
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
MARK = re.compile(r"<!-- code: (\S+) -->")


def blocks(text):
    """(source path or None, block lines, line number) for each ```cpp block."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```cpp":
            mark = None
            for back in (1, 2):
                if i - back >= 0 and MARK.fullmatch(lines[i - back].strip()):
                    mark = MARK.fullmatch(lines[i - back].strip()).group(1)
                    break
            end = i + 1
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            yield mark, lines[i + 1 : end], i + 1
            i = end
        i += 1


def contains(haystack, needle):
    hay = [l.strip() for l in haystack]
    need = [l.strip() for l in needle]
    return any(hay[at : at + len(need)] == need for at in range(len(hay) - len(need) + 1))


def main(pages):
    failures, checked = [], 0
    for page in pages:
        path = pathlib.Path(page)
        for source, code, line in blocks(path.read_text()):
            where = f"{page}:{line}"
            if source is None:
                failures.append(f"{where}: a cpp block without <!-- code: PATH -->")
                continue
            file = ROOT / source
            if not file.is_file():
                failures.append(f"{where}: {source} does not exist")
            elif not contains(file.read_text().splitlines(), code):
                failures.append(f"{where}: the block is not in {source} as written")
            checked += 1
    for f in failures:
        print(f)
    print(f"{checked} code blocks checked in {len(pages)} pages, {len(failures)} failures")
    return 1 if failures or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
