"""The ``skvlm`` command line: ``python -m skvlm {demo,fewshot,retrieval,train-tiny,cache}``.

Every study sub-command writes a report folder (``report.md``, CSVs, PNGs, ``summary.json``).
A bad option or bad input ends with one line on stderr (``skvlm: error: ...``) and
exit status 2, never a traceback.
"""

import argparse
import contextlib
import json
import sys
import warnings
from pathlib import Path

from .studies._methods import DEFAULT_FEWSHOT, REGISTRY, RETRIEVAL_METHODS

_FEWSHOT_METHODS = tuple(REGISTRY)
_RETRIEVAL_METHODS = tuple(RETRIEVAL_METHODS)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, without the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_list(text):
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one integer, got {text!r}")
    return values


def _positive_int_list(text):
    values = _int_list(text)
    if min(values) < 1:
        raise argparse.ArgumentTypeError(f"shot counts must be positive, got {text!r}")
    return values


def _methods(choices):
    def parse(text):
        values = [part.strip() for part in text.split(",") if part.strip()]
        unknown = [v for v in values if v not in choices]
        if unknown or not values:
            raise argparse.ArgumentTypeError(
                f"unknown method(s) {', '.join(unknown) or repr(text)}; choose from {', '.join(choices)}"
            )
        return values

    return parse


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _names(text):
    values = [part.strip() for part in text.split(",") if part.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated model names, got {text!r}")
    return values


def _add_real_data_options(parser, default_out, several=False):
    if several:  # retrieval: several datasets and models in one run, one results table
        parser.add_argument(
            "--data",
            required=True,
            nargs="+",
            metavar="DIR_OR_FILE",
            help="image folders (root/<class>/<image>) and captions files "
            "(.csv/.tsv/.jsonl with an image path and a caption per "
            "row, optionally a label); several may follow --data",
        )
        parser.add_argument(
            "--model",
            default=["ViT-B-32"],
            type=_names,
            metavar="M,M,...",
            help="open_clip model name(s) or skvlm-tiny[-shared], comma-"
            "separated (default: ViT-B-32)",
        )
    else:
        parser.add_argument(
            "--data",
            required=True,
            metavar="DIR",
            help="image folder, one sub-folder per class (root/<class>/<image>)",
        )
        parser.add_argument(
            "--model",
            default="ViT-B-32",
            help="open_clip model name or skvlm-tiny[-shared] (default: %(default)s)",
        )
    parser.add_argument(
        "--pretrained",
        default="default",
        metavar="TAG_OR_FILE",
        help="open_clip pretrained tag, a local checkpoint file, or 'none' "
        "for random weights (default: the model's standard weights)",
    )
    parser.add_argument(
        "--cache",
        default=None,
        metavar="DIR",
        help="embedding cache folder: a second run does not re-encode",
    )
    parser.add_argument(
        "--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)"
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=64,
        metavar="N",
        help="encoding batch size (default: %(default)s)",
    )
    parser.add_argument(
        "--out", default=default_out, metavar="DIR", help="report folder (default: %(default)s)"
    )
    parser.add_argument(
        "--skip-unreadable",
        action="store_true",
        help="leave truncated, corrupt or oversized images out (listed in "
        "summary.json) instead of stopping at the first one",
    )
    _add_threads_option(parser)


def _add_threads_option(parser):
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        metavar="N",
        help="torch and BLAS CPU threads for this run (default: their choice); 1 is "
        "much faster for the tiny models on a machine whose cores are busy",
    )


def _add_demo_parser(commands):
    """``demo``: every study on the shipped tiny models."""
    demo = commands.add_parser(
        "demo",
        help="run every study on the shipped tiny models and generated scenes",
        description="Every claim of the seed papers measured on the tiny model zoo "
        "(few-shot study, retrieval with OTI/OVI and PCA←, intra-modal zero-shot, "
        "histogram indicators, image-only few-shot, AlignCLIP's alignment and gap), "
        "on held-out make_scenes images. No network.",
    )
    demo.add_argument(
        "--out", default="skvlm-demo", metavar="DIR", help="report folder (default: %(default)s)"
    )
    demo.add_argument(
        "--quick",
        action="store_true",
        help="fewer scenes, queries and inversion steps (a smoke run)",
    )
    demo.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    demo.add_argument(
        "--models",
        type=_names,
        default=None,
        metavar="M,M,...",
        help="the models to measure (default: the five of the tiny zoo; those "
        "whose weights do not ship are skipped with a note)",
    )
    demo.add_argument(
        "--no-tune",
        action="store_true",
        help="few-shot methods at their default hyper-parameters (not tuned on validation shots)",
    )
    _add_threads_option(demo)


def _add_fewshot_parser(commands):
    """``fewshot``: the few-shot study; its method names come from the study registry."""
    fewshot = commands.add_parser(
        "fewshot",
        help="few-shot classification study on an image folder",
        description="k-shot classification of an image folder by "
        + ", ".join(method.label for method in REGISTRY.values())
        + ".",
    )
    _add_real_data_options(fewshot, "skvlm-fewshot")
    fewshot.add_argument(
        "--shots",
        type=_positive_int_list,
        default=[1, 2, 4, 8, 16],
        metavar="K,K,...",
        help="shots per class (default: 1,2,4,8,16)",
    )
    fewshot.add_argument(
        "--seeds",
        type=_int_list,
        default=[0, 1, 2],
        metavar="S,S,...",
        help="one few-shot split per seed (default: 0,1,2)",
    )
    fewshot.add_argument(
        "--methods",
        type=_methods(_FEWSHOT_METHODS),
        default=None,
        metavar="M,M,...",
        help="any of "
        + ", ".join(_FEWSHOT_METHODS)
        + " (default: "
        + ",".join(DEFAULT_FEWSHOT)
        + ")",
    )
    fewshot.add_argument(
        "--templates",
        default="reference",
        choices=["reference", "openai", "simple"],
        help="prompt templates of the class-name classifier: the dataset's "
        "reference ones (CoOp's per dataset; 'a photo of a {}.' for a "
        "folder), or open_clip's 80 / 7 (default: reference)",
    )
    fewshot.add_argument(
        "--coop",
        default=None,
        metavar="DATASET",
        help="read --data as the root of a CoOp benchmark dataset (ImageNet, "
        "Caltech101, OxfordPets, ...): support from train, validation "
        "shots from val (train for ImageNet), scored on test, published "
        "numbers beside the measured ones",
    )
    fewshot.add_argument(
        "--no-tune",
        action="store_true",
        help="fit every method at its default hyper-parameters instead of "
        "choosing them on min(k, 4) validation shots per class",
    )
    fewshot.add_argument(
        "--search",
        default="default",
        choices=["default", "reference"],
        help="hyper-parameter grids: small ones around the published optima, "
        "or the reference code's own (default: default)",
    )
    fewshot.add_argument(
        "--selection",
        default="best",
        choices=["best", "one_se", "paired"],  # classifiers._search.SELECTIONS (stdlib only here)
        help="pick the best validation accuracy, as the references do (default), or keep "
        "each method's defaults unless a combination beats them by more than one "
        "standard error (one_se), or unless the best beats them row by row by more than "
        "a standard error widened for the grid's size (paired)",
    )
    fewshot.add_argument(
        "--views",
        type=_positive_int,
        default=None,
        metavar="N",
        help="encode N augmented views of every training image and add "
        "lda_views (GDA fitted on every view as a row, as its reference "
        "runs it at 1 shot; the reference uses 10)",
    )


def build_parser(with_train_tiny=False):
    """The argument parser of ``python -m skvlm``.

    ``train-tiny``'s options come from :mod:`skvlm.training`'s recipes, which need no
    torch.
    """
    parser = _Parser(
        prog="python -m skvlm",
        description="Few-shot and retrieval studies of vision-language models, as "
        "scikit-learn pipelines. Each command writes report.md, CSV tables, "
        "PNG figures and summary.json to a folder.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    _add_demo_parser(commands)
    _add_fewshot_parser(commands)

    retrieval = commands.add_parser(
        "retrieval",
        help="retrieval on image folders and captioned image-text pairs",
        description="Image→image retrieval mAP (relevant = same class folder) of raw "
        "features, OTI query inversion and PCA← onto ImageNet class names; on "
        "a captions file, also zero-shot image↔text retrieval with "
        "CLIP_benchmark's image_retrieval_recall@k and text_retrieval_recall@k "
        "(k = 1, 5, 10) and text→text retrieval. Several datasets and models "
        "in one run; results.csv and results.jsonl hold one row per model, "
        "dataset, task, method and metric. Published mAPs (skvlm._published) are "
        "printed beside the measured ones where model, method, task and dataset "
        "(the folder's name, e.g. DTD or oxford_pets) match.",
    )
    _add_real_data_options(retrieval, "skvlm-retrieval", several=True)
    retrieval.add_argument(
        "--methods",
        type=_methods(_RETRIEVAL_METHODS),
        default=None,
        metavar="M,M,...",
        help="any of " + ", ".join(_RETRIEVAL_METHODS) + " (default: all)",
    )
    retrieval.add_argument(
        "--n-queries",
        type=_positive_int,
        default=200,
        metavar="N",
        help="queries drawn at random; the rest is the gallery (default: 200)",
    )
    retrieval.add_argument(
        "--seeds",
        type=_int_list,
        default=[0],
        metavar="S",
        help="seed of the query draw and of OTI (first value used; default: 0)",
    )

    cache = commands.add_parser(
        "cache",
        help="report on or empty an embedding cache folder",
        description="Inspect (info) or delete (clear) the embedding cache in DIR, the "
        "folder given as an encoder's cache= (or a joblib.Memory location). "
        "clear removes only the files skvlm wrote.",
    )
    cache.add_argument("action", choices=["info", "clear"])
    cache.add_argument("directory", metavar="DIR", help="the cache folder")
    cache.add_argument(
        "--verify", action="store_true", help="info: read every entry and count the damaged ones"
    )

    # The recipes import without torch, so train-tiny's options are always registered
    # (``with_train_tiny`` is kept for callers and no longer changes anything).
    from .training._cli import add_train_tiny_parser

    add_train_tiny_parser(commands)
    return parser


def _size(n_bytes):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return None  # unreachable


def _run_cache(args):
    from ._embedding_cache import cache_info, clear_cache

    if args.action == "clear":
        freed = clear_cache(args.directory)
        print(
            f"removed {freed['files_removed']} files ({_size(freed['bytes_freed'])}) "
            f"from {freed['folder']}"
        )
        return 0
    info = cache_info(args.directory, verify=args.verify)
    lines = [
        f"folder: {info['folder']}",
        f"entries: {info['entries']}",
        f"size: {_size(info['bytes'])}",
        f"temporary files: {info['temporary_files']}",
    ]
    if info["damaged"] is not None:
        lines.append(f"damaged entries: {info['damaged']}")
    if info["legacy_sqlite"]:
        lines.append("legacy SQLite cache: present (no longer read; 'clear' removes it)")
    print("\n".join(lines))
    return 0


def _run(args):
    from . import studies

    if args.command == "train-tiny":
        return args.func(args)
    if args.threads is not None:
        # The command line owns its process, so it may set torch's thread count; the
        # library never does. BLAS too: on busy cores OpenBLAS's threads wait on each
        # other (a 64 x 64 SVD measured 3 s with 2 threads, 6 ms with 1).
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    verbose = 0 if args.quiet else 1
    if args.command == "demo":
        models = {} if args.models is None else {"models": args.models}
        studies.run_demo(
            args.out,
            quick=args.quick,
            device=args.device,
            tune=not args.no_tune,
            verbose=verbose,
            **models,
        )
        return args.out
    common = dict(
        model=args.model,
        pretrained=_pretrained(args.pretrained),
        cache=args.cache,
        device=args.device,
        batch_size=args.batch_size,
        methods=args.methods,
        on_error="skip" if args.skip_unreadable else "raise",
        verbose=verbose,
    )
    if args.command == "fewshot":
        summary = studies.run_folder_study(
            "fewshot",
            args.data,
            args.out,
            shots=args.shots,
            seeds=args.seeds,
            templates=args.templates,
            coop=args.coop,
            tune=not args.no_tune,
            search=args.search,
            selection=args.selection,
            n_views=args.views or 0,
            **common,
        )
        _print_published(summary)
    else:
        _run_retrieval(args, common)
    return args.out


def _run_retrieval(args, common):
    """One folder and one model: the folder study's report; else the benchmark. Both
    write the flat results table."""
    import os

    from . import studies
    from .studies._retrieval_benchmark import (
        flat_rows_from_summary,
        published_beside,
        published_text,
        run_retrieval_benchmark,
        write_flat_table,
    )

    common = {k: v for k, v in common.items() if k != "model"}
    (model,), (data,) = args.model[:1], args.data[:1]
    if len(args.model) == 1 and len(args.data) == 1 and os.path.isdir(data):
        summary = studies.run_folder_study(
            "retrieval",
            data,
            args.out,
            model=model,
            n_queries=args.n_queries,
            random_state=args.seeds[0],
            **common,
        )
        rows = flat_rows_from_summary(summary, model, common["pretrained"], data)
        summary["files"] += write_flat_table(args.out, rows)
        path = Path(args.out) / "summary.json"
        written = json.loads(path.read_text(encoding="utf-8"))
        written["files"] = summary["files"]
        written["published"] = published_beside(rows)
        if written["published"]:
            print(published_text(written["published"]))
        used = [row["n_queries"] for row in rows]
        if used and max(used) != args.n_queries:  # capped at half the images (warned)
            written["config"].update(n_queries=max(used), n_queries_asked=args.n_queries)
        path.write_text(json.dumps(written, indent=2, ensure_ascii=False), encoding="utf-8")
        return
    summary = run_retrieval_benchmark(
        args.data,
        args.model,
        args.out,
        n_queries=args.n_queries,
        random_state=args.seeds[0],
        **common,
    )
    if summary["published"]:
        print(published_text(summary["published"]))


def _print_published(summary):
    """The measured accuracies that a published number matches, beside it (stdout)."""
    lines = []
    for method, by_shots in summary["fewshot"].get("classes", {}).items():
        for shots, entry in by_shots.items():
            if entry.get("published") is not None:
                lines.append(
                    f"{method:>14} {shots:>3}-shot  measured {100 * entry['acc1']:5.1f}"
                    f"  published {100 * entry['published']:5.1f}  difference "
                    f"{100 * (entry['acc1'] - entry['published']):+5.1f}"
                )
    if lines:
        print("top-1 accuracy (%), measured vs published:")
        print("\n".join(lines))


def _pretrained(text):
    """``--pretrained none`` (any case) asks for random weights, as ``pretrained=None``."""
    return None if text.strip().lower() == "none" else text


def _report_files(out):
    """The files an earlier report in ``out`` listed in its summary.json (names only)."""
    try:
        listed = json.loads((Path(out) / "summary.json").read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    return {name for name in listed if isinstance(name, str) and Path(name).name == name}


def _remove_stale(out, before, prog):
    """Delete what the earlier report in ``out`` wrote and this one did not rewrite."""
    stale = sorted(before - _report_files(out))
    removed = []
    for name in stale:
        with contextlib.suppress(OSError):
            (Path(out) / name).unlink()
            removed.append(name)
    if removed:
        print(
            f"{prog}: removed {len(removed)} file(s) of the earlier report in {out} that "
            f"this run did not write: {', '.join(removed)}",
            file=sys.stderr,
        )


@contextlib.contextmanager
def _one_line_warnings(prog):
    """Format each warning as ``prog: warning: message``, one line without source lines.

    Only the formatting changes (``warnings.formatwarning``): a caller that records
    warnings (``catch_warnings(record=True)``, ``pytest.warns``) still gets them.
    """
    previous = warnings.formatwarning

    def one_line(message, category, filename, lineno, line=None):
        kind = "" if category is UserWarning else f"{category.__name__}: "
        return f"{prog}: warning: {kind}{' '.join(str(message).split())}\n"

    warnings.formatwarning = one_line
    try:
        yield
    finally:
        warnings.formatwarning = previous


def main(argv=None):
    """Entry point; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    train_tiny = bool(argv) and argv[0] == "train-tiny"
    try:
        parser = build_parser(with_train_tiny=train_tiny)
    except ImportError as exc:
        print(
            f"python -m skvlm train-tiny: error: skvlm.training is not available ({exc})",
            file=sys.stderr,
        )
        return 2
    args = parser.parse_args(argv)

    if args.command == "cache":
        return _guarded(f"{parser.prog} cache {args.action}", lambda: _run_cache(args))

    prog = f"{parser.prog} {args.command}"

    def run():
        before = _report_files(args.out) if args.command != "train-tiny" else set()
        out = _run(args)
        if args.command != "train-tiny":
            _remove_stale(out, before, prog)
            print(f"report written to {out}/report.md")
            return 0
        return out

    with _one_line_warnings(prog):
        return _guarded(prog, run, skip_hint=not getattr(args, "skip_unreadable", True))


def _guarded(prog, action, skip_hint=False):
    """Run ``action``; expected failures become one error line and exit status 2.

    ``skip_hint``: an unreadable image's error also names ``--skip-unreadable``.
    """
    try:
        status = action()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError, ImportError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if skip_hint and type(exc).__name__ == "UnreadableImageError":
            message += " (pass --skip-unreadable to leave such files out)"
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    return 0 if status is None else int(status)


if __name__ == "__main__":
    sys.exit(main())
