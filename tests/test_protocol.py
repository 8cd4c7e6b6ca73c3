"""One table of benchmark pairs: the configs, the report and the docs agree with it."""

import dataclasses
import importlib
import pathlib
import re

import pytest

from figkd_jax import data, models
from figkd_jax.tools import report
from figkd_jax.trainer import protocol

ROOT = pathlib.Path(__file__).resolve().parent.parent
COLUMN_KEYS = [c.key for c in protocol.COLUMNS]


def test_the_table_is_well_formed():
    keys = [(p.dataset, p.teacher, p.student) for p in protocol.PAIRS]
    assert len(keys) == len(set(keys)), "a pair is listed twice"
    for pair in protocol.PAIRS:
        assert pair.dataset in data.names(), pair
        assert {pair.teacher, pair.student} <= set(models.names()), pair
        assert set(pair.top1) <= set(COLUMN_KEYS), pair
        assert all(0 < v < 100 for v in pair.top1.values()), pair
    assert len(COLUMN_KEYS) == len(set(COLUMN_KEYS))


def test_every_setting_names_its_source():
    assert len(protocol.all_sources()) > len(protocol.PAIRS)
    for where, source in protocol.all_sources():
        assert isinstance(source, str) and protocol.is_source(source), (where, source)


def test_every_published_number_names_its_source():
    for pair in protocol.PAIRS:
        for key in pair.top1:
            assert (pair.dataset, key) in protocol.TOP1_SOURCES, (pair, key)
    used = {(p.dataset, key) for p in protocol.PAIRS for key in p.top1}
    assert set(protocol.TOP1_SOURCES) == used, "a source for a column with no number"


@pytest.mark.parametrize(
    "text",
    [
        "megvii-research/mdistiller@a08d46f:configs/cifar100/kd.yaml",
        "megvii-research/mdistiller@a08d46f:README.md (DKD section, KD row)",
        "Zhao et al., CVPR 2022, Table 1, KD row",
        "this project: no recipe released",
    ],
)
def test_source_forms(text):
    assert protocol.is_source(text)


@pytest.mark.parametrize(
    "text", ["", "mdistiller README", "megvii-research/mdistiller:README.md", "TODO"]
)
def test_a_value_without_a_source_fails(text):
    assert not protocol.is_source(text)


@pytest.mark.parametrize(
    "row", [protocol.PAIRS[0], protocol.LS_DEFAULT, protocol.SOLVERS["cifar100"]]
)
def test_a_row_without_a_source_cannot_be_written(row):
    fields = {f.name: getattr(row, f.name) for f in dataclasses.fields(row) if f.name != "source"}
    with pytest.raises(TypeError, match="source"):
        type(row)(**fields)


def test_a_model_trained_alone_has_one_number_and_one_learning_rate_per_dataset():
    alone, rates = {}, {}
    for pair in protocol.PAIRS:
        for role, model in (("teacher", pair.teacher), ("student", pair.student)):
            if role in pair.top1:
                assert alone.setdefault((pair.dataset, model), pair.top1[role]) == pair.top1[role]
        assert rates.setdefault((pair.dataset, pair.student), pair.learning_rate) == (
            pair.learning_rate
        )


def _config(pair, method):
    if pair.dataset in protocol.FINEGRAINED_DATASETS:
        module, arg = "finegrained", f"dataset={pair.dataset},"
    else:
        # configs/imagenet.py serves TFDS's imagenet2012.
        module, arg = {"imagenet2012": "imagenet"}.get(pair.dataset, pair.dataset), ""
    arg += f"teacher={pair.teacher},student={pair.student},method={method}"
    return importlib.import_module(f"configs.{module}").get_config(arg)


@pytest.mark.parametrize(
    "pair", protocol.PAIRS, ids=lambda p: f"{p.dataset}:{p.teacher}>{p.student}"
)
def test_configs_and_report_read_the_table(pair):
    config = _config(pair, "dkd")
    assert config.optim.learning_rate == pair.learning_rate
    assert config.method.dkd.beta == pair.dkd_beta
    kd_ls = protocol.ls_recipe("kd", pair.dataset, pair.teacher, pair.student)
    assert (config.method.kd.ls_temperature, config.method.kd.ls_kd_weight) == (
        kd_ls.temperature,
        kd_ls.kd_weight,
    )
    # Every teacher of the table trains at the dataset's base rate.
    solver = protocol.SOLVERS[pair.dataset]
    assert config.sweep.teacher_learning_rate == solver.learning_rate
    assert (config.batch_size, config.num_epochs) == (solver.batch_size, solver.num_epochs)
    assert tuple(config.optim.lr_decay_epochs) == solver.lr_decay_epochs
    for key in COLUMN_KEYS:
        if key in ("teacher", "student"):
            model = pair.teacher if key == "teacher" else pair.student
            if key in pair.top1:
                assert report.reference_top1(pair.dataset, None, model, "ce") == pair.top1[key]
        else:
            expected = pair.top1.get(key)
            assert report.reference_top1(pair.dataset, pair.teacher, pair.student, key) == expected


def _markdown_tables(path):
    """Every Markdown table of `path` as (header cells, rows of cells)."""
    tables, lines = [], path.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            rows = []
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append([c.strip() for c in row.strip().strip("|").split("|")])
            tables.append(([c.strip() for c in line.strip().strip("|").split("|")], rows))
    return tables


def _table(path, *first_headers):
    """The one table of `path` whose header starts with `first_headers`."""
    (table,) = [
        t for t in _markdown_tables(path) if tuple(t[0][: len(first_headers)]) == first_headers
    ]
    return table


def _registry_name(doc_name):
    """'WRN-40-2' -> 'wrn_40_2', 'ResNet32x4' -> 'resnet32x4'."""
    return doc_name.lower().replace("-", "_")


def _pair_names(cell):
    teacher, student = re.fullmatch(r"(\S+) -> (\S+)", cell).groups()
    return _registry_name(teacher), _registry_name(student)


def _value(cell):
    return None if cell == "-" else float(cell)


def test_docs_protocol_shows_the_table():
    path = ROOT / "docs" / "protocol.md"
    cifar = protocol.pairs("cifar100")
    header, rows = _table(path, "teacher -> student", "teacher")
    keys = {c.header: c.key for c in protocol.COLUMNS} | {
        "teacher": "teacher",
        "student": "student",
    }
    assert [_pair_names(r[0]) for r in rows] == list(cifar)
    for row in rows:
        pair = cifar[_pair_names(row[0])]
        for name, cell in zip(header[1:], row[1:], strict=True):
            assert _value(cell) == pair.top1.get(keys[name]), (row[0], name)
    header, rows = _table(path, "teacher -> student", "lr")
    assert header == [
        "teacher -> student",
        "lr",
        "DKD beta",
        "KD+LS T",
        "KD+LS weight",
        "MLKD lr",
        "MLKD epochs",
        "MLKD+LS T",
        "MLKD+LS weight",
    ]
    assert [_pair_names(r[0]) for r in rows] == list(cifar)
    for row in rows:
        names = _pair_names(row[0])
        pair, mlkd = cifar[names], protocol.MLKD_SOLVERS["cifar100"][names]
        kd_ls, mlkd_ls = (
            protocol.ls_recipe("kd", "cifar100", *names),
            protocol.ls_recipe("mlkd", "cifar100", *names),
        )
        assert [float(c) for c in row[1:]] == [
            pair.learning_rate,
            pair.dkd_beta,
            kd_ls.temperature,
            kd_ls.kd_weight,
            mlkd.learning_rate,
            mlkd.num_epochs,
            mlkd_ls.temperature,
            mlkd_ls.kd_weight,
        ]


def test_docs_protocol_names_every_source():
    text = (ROOT / "docs" / "protocol.md").read_text()
    for where, source in protocol.all_sources():
        # The remark in parentheses aside, each source is quoted as written.
        assert source.split(" (")[0] in text, (where, source)


def test_no_figkd_number_is_shown_as_published():
    # The paper's tables could not be read (docs/method.md): no column, no number, no table.
    assert "figkd" not in COLUMN_KEYS
    assert all("figkd" not in pair.top1 for pair in protocol.PAIRS)
    for name in ("protocol.md", "method.md"):
        for header, _ in _markdown_tables(ROOT / "docs" / name):
            assert not any("FiGKD" in cell for cell in header), (name, header)
