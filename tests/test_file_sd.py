"""file_sd.py and the target_files / target_defaults config keys: targets from file_sd files."""

from __future__ import annotations

from pathlib import Path

import pytest

from cardguard.errors import ConfigError
from cardguard.run.targetfiles import TargetFileWatcher
from cardguard.settings import file_sd
from cardguard.settings.config import load_config, parse_config
from cardguard.settings.targets import ProfilesConfig


def config(text: str, tmp_path: Path) -> object:
    path = tmp_path / "cardguard.yml"
    path.write_text(text)
    return load_config(path)


def test_defaults_come_from_target_defaults_else_global(tmp_path: Path) -> None:
    cfg = parse_config(
        "global: {scrape_interval: 20s, scrape_timeout: 4s}\n"
        "target_files: [sd/*.json]\n"
        "target_defaults:\n  interval: 1m\n  metrics_path: /m\n  profiles: {heap: false}\n",
        "c.yml",
        base_dir=tmp_path,
    )
    tf = cfg.target_files
    assert tf is not None and tf.patterns == (str(tmp_path / "sd/*.json"),)
    t = tf.template
    assert (t.interval, t.timeout, t.metrics_path) == (60.0, 4.0, "/m")
    assert t.profiles == ProfilesConfig(heap=False, timeout=4.0)
    bare = parse_config("global: {scrape_interval: 20s}\ntarget_files: [/x/*.yml]\n", "c.yml")
    assert bare.target_files is not None
    assert bare.target_files.patterns == ("/x/*.yml",)
    assert (bare.target_files.template.interval, bare.target_files.template.timeout) == (20.0, 10.0)
    assert bare.targets == ()  # target_files alone is a whole config


def test_target_defaults_problems_name_file_and_line() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(
            "target_files: [a.json]\ntarget_defaults:\n  name: x\n  interval: fast\n", "c.yml"
        )
    assert exc.value.problems == [
        "c.yml:3: target_defaults.name: set per target by the target files, not here",
        "c.yml:4: target_defaults.interval: expected a duration like 30s, got 'fast'",
    ]
    with pytest.raises(ConfigError) as exc:
        parse_config("targets: []\ntarget_defaults: {interval: 1m}\n", "c.yml")
    assert exc.value.problems == [
        "c.yml:2: target_defaults: applies to target_files, which is not set"
    ]


def test_groups_become_targets_with_their_labels() -> None:
    cfg = parse_config("target_files: [a.json]\n", "c.yml")
    assert cfg.target_files is not None
    template = cfg.target_files.template
    groups = file_sd.parse(
        '[{"targets": ["10.0.0.1:6060", "[::1]:9090"]},'
        ' {"targets": ["api.prod:443"], "labels": {"__scheme__": "https",'
        ' "__metrics_path__": "/internal/metrics", "cardguard_target": "api", "team": "a"}}]',
        "sd.json",
    )
    targets, problems = file_sd.build(groups, template, "sd.json")
    assert problems == []
    assert [(t.name, t.url, t.metrics_url) for t in targets] == [
        ("10.0.0.1:6060", "http://10.0.0.1:6060", "http://10.0.0.1:6060/metrics"),
        ("_::1_:9090", "http://[::1]:9090", "http://[::1]:9090/metrics"),
        ("api", "https://api.prod:443", "https://api.prod:443/internal/metrics"),
    ]
    assert all(t.interval == template.interval for t in targets)


def test_bad_files_and_targets_are_named() -> None:
    with pytest.raises(ConfigError) as exc:
        file_sd.parse('[{"targets": "10.0.0.1:80"}, {"targets": [1]}]', "sd.json")
    assert exc.value.problems == [
        "sd.json: [0]: expected a mapping with a 'targets' list",
        "sd.json: [1].targets[0]: expected a non-empty string",
    ]
    with pytest.raises(ConfigError, match="invalid JSON"):
        file_sd.parse('[{"targets": ["10.0.0.1:', "sd.json")
    cfg = parse_config("target_files: [a.json]\n", "c.yml")
    assert cfg.target_files is not None
    groups = file_sd.parse(
        "- targets: ['ok:80', 'bad host:80', 'x:99999', 'p:80/path']\n"
        "- targets: ['y:80']\n  labels: {__scheme__: gopher}\n",
        "sd.yml",
    )
    targets, problems = file_sd.build(groups, cfg.target_files.template, "sd.yml")
    assert [t.name for t in targets] == ["ok:80"]
    assert len(problems) == 4
    assert problems[-1] == "sd.yml: [1].targets[0]: __scheme__ must be http or https, got 'gopher'"


def test_watcher_reports_changes_only(tmp_path: Path) -> None:
    cfg = parse_config("target_files: [sd/*.json]\n", "c.yml", base_dir=tmp_path)
    assert cfg.target_files is not None
    (tmp_path / "sd").mkdir()
    w = TargetFileWatcher(cfg.target_files)
    assert w.poll() == ()  # first poll: what there is (nothing)
    assert w.poll() is None
    (tmp_path / "sd" / "a.json").write_text('[{"targets": ["a:1"]}]')
    found = w.poll()
    assert found is not None and [t.name for t in found] == ["a:1"]
    assert w.poll() is None
    (tmp_path / "sd" / "a.json").write_text('[{"targets": ["a:1", "b:')  # half written
    found = w.poll()
    assert found is not None and [t.name for t in found] == ["a:1"]  # kept
    (tmp_path / "sd" / "a.json").unlink()
    assert w.poll() == ()
