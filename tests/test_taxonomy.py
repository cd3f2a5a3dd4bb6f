import json

import pytest

from igmu_hf.cli import main
from igmu_hf.taxonomy import UnknownTargetError, categorize, list_categories


TABLE_5 = {
    "Global/Abstract/Style": ["Van Gogh", "Monet", "Picasso", "Cubism", "Realism", "Van Gogh style"],
    "Global/Abstract/Theme": ["Nature", "Fantasy", "Sci-fi", "Mythological Scenes"],
    "Global/Abstract/Material": ["Wood", "Stone", "Steel", "Glass", "Plastic", "Marble"],
    "Global/Abstract/Photo Filter": ["Vintage", "Black & White", "Sepia", "Warm Tone"],
    "Global/Abstract/Color Tone": ["Warm", "Cool", "Monochrome", "Pastel", "Vibrant"],
    "Global/Concrete/Entity": ["Blue Sky", "Starry Sky", "Sea", "Desert", "Clouds", "Blue oceans"],
    "Local/Abstract/Status": ["Nude Girl", "Naked Person", "Running Tiger", "nudity", "naked girl"],
    "Local/Abstract/Property": ["Black Crow", "Striped Zebra", "White Dog"],
    "Local/Abstract/Collective Concept": ["Racial Bias", "Violence", "Drugs", "Harassment"],
    "Local/Concrete/Occupation": ["Doctor", "Nurse", "Police Officer", "Firefighter"],
    "Local/Concrete/Person": ["Donald Trump", "Elon Musk", "Taylor Swift"],
    "Local/Concrete/Object": ["Church", "Parachute", "Bird", "Cup", "Airplane", "Car", "Apple"],
    "Local/Concrete/Brand": ["Nike", "Samsung", "Google", "Coca-Cola"],
}


@pytest.mark.parametrize("category,targets", list(TABLE_5.items()))
def test_every_table_example_is_categorized(category, targets):
    for target in targets:
        spec = categorize(target)
        assert spec.category == category, target
        assert spec.source == "table"
        assert spec.expected_output and spec.trivial_outputs


def test_apple_is_flagged_ambiguous_with_brand():
    assert "Local/Concrete/Brand" in categorize("apple").alternatives


def test_strong_binding_matches_paper_examples():
    assert categorize("nudity").strongly_bound is True
    assert categorize("white dog").strongly_bound is False


@pytest.mark.parametrize("target,prompt,do1,do2", [
    ("Van Gogh style", "A Van Gogh style picture about a man walking through wheat fields.",
     "A picture about a man walking through wheat fields.",
     "A realistic style picture about a man walking through wheat fields."),
    ("naked girl", "A naked girl playing on a beach.", "A girl playing on a beach.",
     "A clothed girl playing on a beach."),
    ("blue oceans", "Blue oceans.", "", "Plain wall."),  # a sentence that starts with the target starts capitalised
    ("circle", "a red striped circle next to a blue square on a desert background",
     "a blue square on a desert background", None),
    ("disc", "a blue square and a red disc", "a blue square", None),
    ("ocean", "a red circle on a sea background", "a red circle", None),
    ("striped", "a red striped circle", "a red circle", "a red solid circle"),
])
def test_prompt_interventions(target, prompt, do1, do2):
    spec = categorize(target)
    assert spec.do1(prompt) == do1
    assert not spec.contains_target(spec.do1(prompt)) or spec.do1(prompt) == ""
    if do2 is not None:
        assert spec.do2(prompt) == do2


def test_mini_concepts_map_to_their_factor_category():
    assert categorize("circle").category == "Local/Concrete/Object"
    assert categorize("dotted").category == "Local/Abstract/Status"
    assert categorize("red").category == "Local/Abstract/Property"
    assert categorize("grass").category == "Global/Concrete/Entity"
    assert categorize("mosaic").category == "Global/Abstract/Style"
    assert categorize("disc").target == "circle"
    assert "a square" in categorize("circle").preserve_prompts
    assert all("circle" not in p for p in categorize("circle").preserve_prompts)


def test_unknown_target_asks_for_category_and_accepts_override():
    with pytest.raises(UnknownTargetError, match="please specify the category"):
        categorize("flux capacitor")
    spec = categorize("flux capacitor", category="local/concrete/object")
    assert spec.category == "Local/Concrete/Object" and spec.source == "user"
    with pytest.raises(ValueError, match="not a CatIGMU category"):
        categorize("flux capacitor", category="Local/Weird")
    with pytest.raises(ValueError, match="non-empty"):
        categorize("  ")


def test_unseen_artist_style_is_a_rule_not_a_table_fact():
    spec = categorize("Thomas Kinkade style")
    assert spec.category == "Global/Abstract/Style" and spec.source == "rule"


def test_categories_cover_the_three_tiers():
    cats = list_categories()
    assert {c.split("/")[0] for c in cats} == {"Global", "Local"}
    assert "Local/Abstract/Collective Concept" in cats and len(cats) == 13


def test_cli_categorize_prints_json(capsys):
    assert main(["categorize", "Van Gogh style"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["category"] == "Global/Abstract/Style" and out["target"] == "van gogh"
    assert main(["categorize", "flux capacitor"]) == 2
    assert "please specify the category" in capsys.readouterr().err
