"""The FEID/FEAB dataset card: metadata the Hub validates and `datasets` reads, a body computed from the rows."""

from __future__ import annotations

from collections import Counter

import datasets
import pytest
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from hub_server import shared_server
from huggingface_hub import DatasetCard
from publish_data import corpus, release_configs

from seke_hf.publish import build_repo
from seke_hf.publish.card import corpora_metadata
from seke_hf.schema import FEATURES, LEVELS

BUILD_INFO = {
    "model": "gpt-4o-2024-08-06",
    "svuamc": {"min_samples": 3, "max_samples": 16, "temperature": 0.7},
    "requests": 1234,
    "tokens": {"prompt": 90_000, "completion": 10_000, "cached": 60_000},
    "estimated_cost": 12.5,
}


@pytest.fixture(scope="module")
def hub():
    return shared_server()


@pytest.fixture(scope="module")
def configs():
    return release_configs()


@pytest.fixture(scope="module")
def card(configs, tmp_path_factory) -> DatasetCard:
    out = build_repo(configs, tmp_path_factory.mktemp("card") / "feid", kind="feid", build_info=BUILD_INFO)
    return DatasetCard.load(out / "README.md")


def test_card_metadata_passes_the_hubs_validation(hub, card):
    card.validate(repo_type="dataset")  # huggingface_hub's own check, posted to the Hub's /api/validate-yaml


@pytest.mark.parametrize(
    "change, complaint",
    [
        ({"license_name": None}, "license_name"),
        ({"license": "research-only"}, "license"),
        ({"size_categories": ["tiny"]}, "size_categories"),
        ({"extra_gated_fields": {"I hold a licence": "tickbox"}}, "extra_gated_fields"),
        ({"configs": [{"config_name": "a", "default": True}, {"config_name": "b", "default": True}]}, "default"),
    ],
)
def test_the_validation_is_real(hub, card, change, complaint):
    broken = DatasetCard(card.content)
    for key, value in change.items():
        broken.data[key] = value
    broken = DatasetCard(str(broken))
    with pytest.raises(ValueError, match=complaint):
        broken.validate(repo_type="dataset")


def test_card_metadata_describes_configs_features_licence_and_gating(card, configs):
    data = card.data
    assert (data.license, data.license_name, data.license_link) == ("other", "seke-source-corpora", "LICENSE")
    assert data.size_categories == ["n<1K"]
    assert data.source_datasets == ["extended|rafdb", "extended|affectnet", "extended|disfa"]
    metadata_configs = MetadataConfigs.from_dataset_card_data(data)
    assert set(metadata_configs) == set(configs) and metadata_configs.get_default_config_name() == "all"
    infos = DatasetInfosDict.from_dataset_card_data(data)
    for name, dd in configs.items():
        assert infos[name].features == dd["train"].features
        assert infos[name].features["expression"].names == dd["train"].features["expression"].names
        assert {s: infos[name].splits[s].num_examples for s in dd} == {s: len(d) for s, d in dd.items()}
    checkboxes = [label for label, kind in data.extra_gated_fields.items() if kind == "checkbox"]
    meta = corpora_metadata()["corpora"]
    for source in ("rafdb", "affectnet", "disfa"):
        assert sum(meta[source]["short_name"] in label for label in checkboxes) == 1
        assert meta[source]["license_link"] in data.extra_gated_prompt


def _rows(configs):
    return [row for ds in configs["all"].values() for row in ds.remove_columns(["image", "images"]).to_list()]


def test_card_body_is_computed_from_the_rows(card, configs):
    text, rows = card.text, _rows(configs)
    for source, pretty in (("rafdb", "RAF-DB"), ("disfa", "DISFA")):
        per_split = [len(configs[source][s]) for s in ("train", "test")]
        assert f"| {pretty}" in text and f"| {per_split[0]} | {per_split[1]} | {sum(per_split)} |" in text
    for level in LEVELS:
        counts = Counter(row["provenance"][level] for row in rows)
        human, generated = counts["human"], counts["generated"]
        share = f"{human} ({100 * human / len(rows):.1f}%) | {generated} ({100 * generated / len(rows):.1f}%)"
        assert f"| {level} | {share} | 0 |" in text
        values = [row["uncertainty"][level] for row in rows if row["uncertainty"][level] is not None]
        if values:
            assert f"| {level} | {len(values)} | {sum(values) / len(values):.3f} |" in text
    rejected = sum(row["status"] == "rejected" for row in rows)
    assert f"| rejected | {rejected} ({100 * rejected / len(rows):.1f}%) |" in text
    assert f"AU12 contradicts the human expression ({rejected})" in text
    happiness = sum(row["expression"] == 4 for row in configs["all"]["train"].remove_columns(["image", "images"]))
    assert f"| happiness | {happiness} (" in text


def test_card_body_reports_the_build_and_cites_every_corpus(card):
    text = card.text
    assert "`gpt-4o-2024-08-06`" in text and "| max_samples | 16 |" in text
    assert "| model requests (the whole build) | 1,234 |" in text and "$12.50" in text
    # Cached prompt tokens are part of the prompt tokens: shown, never added to the total.
    assert "| tokens (the whole build) | 90,000 prompt (60,000 cached by the provider) + 10,000 completion |" in text
    assert corpora_metadata()["paper"]["bibtex"] in text
    for source in ("rafdb", "affectnet", "disfa"):
        entry = corpora_metadata()["corpora"][source]
        assert entry["bibtex"] in text and entry["license_link"] in text
    assert "ckplus2010" not in text and "lucey2010ckplus" not in text  # only the corpora in the release


def test_sections_for_absent_columns_are_left_out(tmp_path):
    plain = {"rafdb": corpus("rafdb", {"train": 3}, FEATURES)}
    text = DatasetCard.load(build_repo(plain, tmp_path / "r", kind="feab") / "README.md").text
    assert "FEAB" in text and "| rafdb" not in text
    for heading in (
        "Human versus generated",
        "Uncertainty of generated",
        "Accepted, rejected",
        "How it was built\n\n|",
    ):
        assert heading not in text
    assert "| `provenance`" not in text and "| `sample_id`" in text


def test_annotations_only_card_and_licence_say_how_to_get_the_images(configs, tmp_path):
    out = build_repo(configs, tmp_path / "ann", mode="annotations", repo_id="seke-lab/feid-annotations")
    card = DatasetCard.load(out / "README.md")
    assert card.data.pretty_name.endswith("(annotations only)")
    assert 'attach_images(ds, "/path/to/your/corpora")' in card.text and "seke-lab/feid-annotations" in card.text
    assert "| `image`" not in card.text
    assert "contains no images" in (out / "LICENSE").read_text()


def test_a_custom_source_gets_no_licence_claims(tmp_path):
    ds = corpus("rafdb", {"train": 2}, FEATURES)["train"].map(lambda row: {"source": "mylab"})
    card = DatasetCard.load(build_repo({"mylab": ds}, tmp_path / "r") / "README.md")
    assert card.data.source_datasets == ["extended|mylab"]
    assert "see the data owner's terms" in card.text
    card.validate(repo_type="dataset")


def test_feab_default_split_is_test(tmp_path):
    ds = corpus("disfa", {"x": 2}, FEATURES)["x"]
    out = build_repo({"disfa": ds}, tmp_path / "r", kind="feab")
    assert list(datasets.load_dataset(str(out), "disfa", cache_dir=str(tmp_path / "c"))) == ["test"]
