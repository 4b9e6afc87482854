"""Listing an image folder: ``load_image_folder`` vs a bare ``os.walk`` listing.

    python benchmarks/bench_datasets.py            # 100 classes x 1000 files
    python benchmarks/bench_datasets.py --small    # 20 classes x 500 files

Builds a class-per-folder tree of empty ``.png`` files (listing never opens them) with
a nested sub-folder per class and a symbolic link back up the tree in each class (the
loop ``load_image_folder`` must not follow), then times, side by side in one run, the
loader and the least a listing can do: one ``os.walk`` without following links, a
suffix test and a sort. Each timing is the best of ``--repeat`` runs (the machine may be
shared); both list the same files. The figures go to the README's performance table.
"""

import argparse
import os
import tempfile

from _timing import best_of

from skvlm.datasets import load_image_folder


def build_tree(root, n_classes, n_files):
    for c in range(n_classes):
        nested = os.path.join(root, f"class_{c:04d}", "nested")
        os.makedirs(nested)
        for i in range(n_files):
            folder = nested if i % 2 else os.path.dirname(nested)
            open(os.path.join(folder, f"img_{i:06d}.png"), "wb").close()
        os.symlink(root, os.path.join(os.path.dirname(nested), "loop"))


def bare_listing(root):
    found = []
    for folder, _, files in os.walk(root):  # links are not followed: no loop to guard
        found.extend(os.path.join(folder, f) for f in files if f.endswith(".png"))
    return sorted(found)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--files", type=int, default=1000, help="files per class")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--small", action="store_true", help="20 classes x 500 files")
    args = parser.parse_args()
    if args.small:
        args.classes, args.files = 20, 500
    with tempfile.TemporaryDirectory() as root:
        build_tree(root, args.classes, args.files)
        loader_s, data = best_of(args.repeat, lambda: load_image_folder(root))
        bare_s, listed = best_of(args.repeat, lambda: bare_listing(root))
        assert sorted(data.paths) == listed, "the two listings differ"
        print(f"{len(listed)} files in {args.classes} class folders (best of {args.repeat})")
        print(f"load_image_folder: {loader_s:.3f} s")
        print(f"bare os.walk     : {bare_s:.3f} s")
        print(f"ratio            : {loader_s / bare_s:.2f}x the bare listing's time")


if __name__ == "__main__":
    main()
